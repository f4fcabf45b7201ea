"""Per-task SSE event log with live followers and `Last-Event-ID` resume.

Every event of a task is appended once, already serialized, and kept until the stream is
reaped, so any number of readers can replay it and a reconnect resumes after the last token it
saw (specs/20-orchestratord.md, 4.1). Appending is synchronous: on one event loop, a cancel that
closes the stream cannot interleave with a token being appended, which is what makes cancel
race-free.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

TERMINAL = frozenset({"end", "error"})


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One SSE event: its name, JSON payload as bytes, and `id` (token index) if any."""

    name: str
    data: bytes
    event_id: str | None = None
    token_index: int | None = None


def _dump(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


class TaskEvents:
    """The ordered events of one task: `started`, tokens and metrics, one terminal event.

    `GET /v1/tasks/{id}/stream` (`api.tasks.TaskStream`) replays and follows them.
    """

    __slots__ = ("_waiter", "events", "finished_at", "first_token_at", "task_id", "tokens")

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.events: list[StreamEvent] = []
        self.tokens = 0
        self.first_token_at: float | None = None
        self.finished_at: float | None = None
        self._waiter: asyncio.Future[None] | None = None

    @property
    def closed(self) -> bool:
        """True once a terminal event was appended; nothing may follow it."""
        return self.finished_at is not None

    def emit(self, name: str, payload: dict) -> None:
        """Append a non-token, non-terminal event (`started`, `metrics`)."""
        if not self.closed:
            self._append(StreamEvent(name, _dump(payload)))

    def token(self, text: str, now: float, token_id: int | None = None) -> bool:
        """Append the next token; False (and nothing appended) once the stream is closed.

        `token_id` (the engine's id, where it gives one) lets clients compare streams by id
        rather than by text, which can hide a multibyte character split differently.
        """
        if self.closed:
            return False
        index = self.tokens
        self.tokens += 1
        if self.first_token_at is None:
            self.first_token_at = now
        payload: dict = {"t": text, "i": index}
        if token_id is not None:
            payload["token_id"] = token_id
        self._append(StreamEvent("token", _dump(payload), str(index), index))
        return True

    def finish(self, name: str, payload: dict, now: float) -> bool:
        """Append the terminal event; False if the stream was already closed."""
        if self.closed or name not in TERMINAL:
            return False
        self._append(StreamEvent(name, _dump(payload)))
        self.finished_at = now
        return True

    def end(self, now: float, finish_reason: str | None = None) -> bool:
        """Terminate successfully (also used for a cancel): `tokens_out` is what was sent."""
        decode_ms = 0 if self.first_token_at is None else round((now - self.first_token_at) * 1e3)
        payload: dict = {"tokens_out": self.tokens, "decode_ms": decode_ms}
        if finish_reason is not None:
            payload["finish_reason"] = finish_reason
        return self.finish("end", payload, now)

    def _append(self, event: StreamEvent) -> None:
        self.events.append(event)
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def follow(
        self, last_event_id: str | None = None, heartbeat_s: float = 15.0
    ) -> AsyncIterator[StreamEvent | None]:
        """Replay then follow live until the terminal event.

        With `last_event_id` (a token index) the replay skips `started` and every event up to
        and including that token, so the reader sees no duplicate and no gap. While idle it
        yields None every `heartbeat_s`, which the server sends as a comment ping; that is
        also how a vanished client gets noticed.
        """
        position = self._resume_position(last_event_id)
        while True:
            while position < len(self.events):
                event = self.events[position]
                position += 1
                yield event
                if event.name in TERMINAL:
                    return
            if self._waiter is None:
                self._waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._waiter), heartbeat_s)
            except TimeoutError:
                yield None

    def _resume_position(self, last_event_id: str | None) -> int:
        if last_event_id is None:
            return 0
        try:
            last = int(last_event_id)
        except ValueError:
            return 0
        for pos, event in enumerate(self.events):
            if event.token_index == last:
                return pos + 1
        # The reader claims a token we have not produced (or a bogus id): resume after the
        # tokens we have, never replaying what it may already hold.
        return next((p for p, e in enumerate(self.events) if e.name != "started"), 0)
