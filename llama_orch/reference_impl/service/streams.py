"""Per-task SSE event log with live followers and `Last-Event-ID` resume.

Every event of a task is appended once, already serialized, and kept until the stream is
reaped, so any number of readers can replay it and a reconnect resumes after the last token it
saw (specs/20-orchestratord.md, 4.1). Appending is synchronous: on one event loop, a cancel that
closes the stream cannot interleave with a token being appended, which is what makes cancel
race-free.

Each event is kept as its SSE wire block (`frame`), built once with orjson when appended, and
a reader takes every event that is ready at once (`follow` yields batches): the tokens of one
engine read reach the client in one write instead of one write each.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson

TERMINAL = frozenset({"end", "error"})
PING = b": ping\n\n"  # an SSE comment: keeps the connection busy, ignored by readers


# One SSE event: (name, JSON payload as bytes, `id` if any, token index if any, the whole SSE
# block as sent: `event:`, `id:`, `data:` lines and the blank line). A plain tuple, because
# the garbage collector stops tracking a tuple of strings, bytes and ints (an instance of a
# class, or of a tuple subclass, it tracks for good): the thousands of finished streams kept
# for replay then cost a full collection nothing (issue 16: 30-140 ms pauses under load).
StreamEvent = tuple[str, bytes, str | None, int | None, bytes]
NAME, DATA, EVENT_ID, TOKEN_INDEX, FRAME = range(5)


def _dump(payload: dict) -> bytes:
    """Compact JSON, UTF-8 kept as is (orjson's defaults)."""
    return orjson.dumps(payload)


def _event(name: str, data: bytes, index: int | None = None) -> StreamEvent:
    if index is None:
        return (name, data, None, None, b"event: %s\ndata: %s\n\n" % (name.encode(), data))
    frame = b"event: %s\nid: %d\ndata: %s\n\n" % (name.encode(), index, data)
    return (name, data, str(index), index, frame)


class TaskEvents:
    """The ordered events of one task: `started`, tokens and metrics, one terminal event.

    `GET /v1/tasks/{id}/stream` (`api.tasks.TaskStream`) replays and follows them.
    """

    __slots__ = ("_waiters", "events", "finished_at", "first_token_at", "task_id", "tokens")

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.events: list[StreamEvent] = []
        self.tokens = 0
        self.first_token_at: float | None = None
        self.finished_at: float | None = None
        self._waiters: list[asyncio.Future[bool]] = []

    @property
    def closed(self) -> bool:
        """True once a terminal event was appended; nothing may follow it."""
        return self.finished_at is not None

    def emit(self, name: str, payload: dict) -> None:
        """Append a non-token, non-terminal event (`started`, `metrics`)."""
        if not self.closed:
            self._append(_event(name, _dump(payload)))

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
        # {"t": text, "i": index[, "token_id": id]}, written directly: the hottest path
        if token_id is None:
            data = b'{"t":%s,"i":%d}' % (orjson.dumps(text), index)
        else:
            data = b'{"t":%s,"i":%d,"token_id":%d}' % (orjson.dumps(text), index, token_id)
        self._append(_event("token", data, index))
        return True

    def finish(self, name: str, payload: dict, now: float) -> bool:
        """Append the terminal event; False if the stream was already closed."""
        if self.closed or name not in TERMINAL:
            return False
        self._append(_event(name, _dump(payload)))
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
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(True)

    async def follow(
        self, last_event_id: str | None = None, heartbeat_s: float = 15.0
    ) -> AsyncIterator[list[StreamEvent] | None]:
        """Replay then follow live until the terminal event, in batches: each item is every
        event ready at that moment (in order), or None after `heartbeat_s` without one.

        With `last_event_id` (a token index) the replay skips `started` and every event up to
        and including that token, so the reader sees no duplicate and no gap. The server sends
        None as a comment ping; that is also how a vanished client gets noticed.
        """
        position = self._resume_position(last_event_id)
        loop = asyncio.get_running_loop()
        while True:
            events = self.events
            if position < len(events):
                batch = events[position:]
                position = len(events)
                for n, event in enumerate(batch):
                    if event[NAME] in TERMINAL:
                        yield batch[: n + 1]
                        return
                yield batch
                continue
            waiter: asyncio.Future[bool] = loop.create_future()
            self._waiters.append(waiter)
            timer = loop.call_later(heartbeat_s, _expire, waiter)
            try:
                woken = await waiter
            finally:
                timer.cancel()
                if waiter in self._waiters:  # a heartbeat, or the reader went away
                    self._waiters.remove(waiter)
            if not woken:
                yield None

    def _resume_position(self, last_event_id: str | None) -> int:
        if last_event_id is None:
            return 0
        try:
            last = int(last_event_id)
        except ValueError:
            return 0
        for pos, event in enumerate(self.events):
            if event[TOKEN_INDEX] == last:
                return pos + 1
        # The reader claims a token we have not produced (or a bogus id): resume after the
        # tokens we have, never replaying what it may already hold.
        return next((p for p, e in enumerate(self.events) if e[NAME] != "started"), 0)


def _expire(waiter: asyncio.Future[bool]) -> None:
    """Heartbeat timer: wake the reader with "nothing new" (False)."""
    if not waiter.done():
        waiter.set_result(False)
