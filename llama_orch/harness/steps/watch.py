"""Bounded and background stream readers for scenarios, on top of the evidence-keeping client.

`OrchClient.stream` reads a stream to its end; scenarios also look at streams that have not
ended (a queued task, a task holding a slot) and follow several streams at once. Every read is
bounded (harness.timeouts) and recorded in the client's evidence log like any other call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx

from llama_orch.harness.client import OrchClient, check_stream
from llama_orch.harness.outcomes import Violation
from llama_orch.harness.sse import TERMINAL, SseEvent, StreamRead, iter_events

__all__ = ["TERMINAL", "StreamWatch", "read_events", "summary"]


def summary(events: list[SseEvent]) -> str:
    return "\n".join(f"event: {e.event} data: {e.raw}" for e in events)[:2000]


def read_events(
    orch: OrchClient,
    task_id: str,
    *,
    within_s: float,
    stop: Callable[[list[SseEvent]], bool] | None = None,
) -> tuple[list[SseEvent], bool]:
    """Read until the terminal event, `stop(events)`, or about `within_s` seconds.

    Returns the events and whether the stream ended with a terminal event. A stream that
    breaks the basic SSE rules raises a Violation (see `client.check_stream`).
    """
    read, events = orch.stream(task_id, within_s=within_s, stop=stop)
    return events, read.terminal is not None


class StreamWatch:
    """Follows one task's stream in a background thread, timestamping each event."""

    def __init__(self, orch: OrchClient, task_id: str, *, limit_s: float | None = None) -> None:
        self.task_id = task_id
        self.events: list[tuple[float, SseEvent]] = []
        self.status: int | None = None
        self.error: str | None = None
        self.violation: Violation | None = None
        self._orch = orch
        self._limit_s = limit_s or 2 * orch.timeouts.stream_s
        self._cond = threading.Condition()
        self.done = False
        self._thread = threading.Thread(target=self._run, name=f"sse-{task_id}", daemon=True)
        self._thread.start()

    def _on_event(self, event: SseEvent) -> None:
        with self._cond:
            self.events.append((time.monotonic(), event))
            self._cond.notify_all()

    def _run(self) -> None:
        orch = self._orch
        ex = orch._exchange(
            "GET", f"{orch.base_url}/v1/tasks/{self.task_id}/stream", orch.http.headers, None
        )
        timeout = httpx.Timeout(orch.timeouts.stream_gap_s, connect=orch.timeouts.connect_s)
        try:
            with orch.http.stream(
                "GET", f"/v1/tasks/{self.task_id}/stream", timeout=timeout
            ) as response:
                self.status = ex.status = response.status_code
                ex.response_headers = orch._redact(response.headers)
                if self.status == 200:
                    read = StreamRead(response.status_code, response.headers)
                    for event in iter_events(
                        response, gap_s=orch.timeouts.stream_gap_s, total_s=self._limit_s, read=read
                    ):
                        try:
                            check_stream([event], False)  # each event as it arrives
                        except Violation as exc:
                            self.violation = exc
                            break
                        self._on_event(event)
                    self.error = read.timed_out
                    if self.violation is None:
                        try:
                            check_stream(read.events, read.ended)
                        except Violation as exc:
                            self.violation = exc
        except httpx.HTTPError as exc:
            self.error = ex.error = f"{type(exc).__name__}: {exc}"
        finally:
            ex.response_body = summary([e for _, e in self.events])
            with self._cond:
                self.done = True
                self._cond.notify_all()

    def tokens(self) -> list[SseEvent]:
        with self._cond:
            return [e for _, e in self.events if e.event == "token"]

    def first_token_at(self) -> float | None:
        with self._cond:
            return next((t for t, e in self.events if e.event == "token"), None)

    def wait(self, check: Callable[[], bool], within_s: float) -> bool:
        """Wait until `check()` holds; a stream that broke the basic SSE rules raises its
        Violation here (the waiting check is blocked by it, see `client.check_stream`)."""
        deadline = time.monotonic() + within_s
        with self._cond:
            while not check():
                if self.violation is not None:
                    raise self.violation
                left = deadline - time.monotonic()
                if left <= 0 or self.done:
                    if self.violation is not None:
                        raise self.violation
                    return check()
                self._cond.wait(left)
            return True

    def wait_tokens(self, n: int, within_s: float) -> bool:
        return self.wait(
            lambda: sum(1 for _, e in self.events if e.event == "token") >= n, within_s
        )

    def wait_done(self, within_s: float) -> bool:
        return self.wait(lambda: self.done, within_s)

    def join(self, within_s: float) -> None:
        self._thread.join(within_s)
