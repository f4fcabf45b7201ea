"""Bounded and background SSE readers on top of the evidence-keeping client.

`OrchClient.stream` reads a stream to its end; scenarios also need to look at a stream that
has not ended (a queued task, a task holding a slot) and to follow several streams at once.
Both readers record their exchange in the client's evidence log like every other call.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import httpx
from httpx_sse import connect_sse

from llama_orch.harness.client import Exchange, OrchClient, SseEvent, redact_headers

TERMINAL = ("end", "error")


def parse_event(sse) -> SseEvent:
    try:
        data = json.loads(sse.data)
    except ValueError:
        data = sse.data
    return SseEvent(sse.event, data, sse.id or None)


def stream_exchange(orch: OrchClient, task_id: str, *, record: bool = True) -> Exchange:
    """An evidence entry for reading a task's stream (appended now unless `record` is False)."""
    url = f"{orch.base_url}/v1/tasks/{task_id}/stream"
    ex = Exchange("GET", url, redact_headers(dict(orch.http.headers)), None)
    if record:
        orch.exchanges.append(ex)
    return ex


def summary(events: list[SseEvent]) -> str:
    return "\n".join(f"event: {e.event} data: {json.dumps(e.data)}" for e in events)[:2000]


def read_events(
    orch: OrchClient,
    task_id: str,
    *,
    within_s: float,
    stop: Callable[[list[SseEvent]], bool] | None = None,
) -> tuple[list[SseEvent], bool]:
    """Read until the terminal event, `stop(events)`, or about `within_s` seconds of silence.

    Returns the events and whether the stream ended with a terminal event.
    """
    ex = stream_exchange(orch, task_id)
    events: list[SseEvent] = []
    deadline = time.monotonic() + within_s
    timeout = httpx.Timeout(max(within_s, 0.05), connect=5.0)
    try:
        with connect_sse(
            orch.http, "GET", f"/v1/tasks/{task_id}/stream", timeout=timeout
        ) as source:
            ex.status = source.response.status_code
            ex.response_headers = redact_headers(source.response.headers)
            if source.response.status_code != 200:
                source.response.read()
                ex.response_body = source.response.text[:2000]
                return events, False
            for sse in source.iter_sse():
                events.append(parse_event(sse))
                if events[-1].event in TERMINAL:
                    return events, True
                if (stop is not None and stop(events)) or time.monotonic() > deadline:
                    return events, False
    except httpx.ReadTimeout:
        return events, False
    finally:
        ex.response_body = summary(events)
    return events, bool(events) and events[-1].event in TERMINAL


class StreamWatch:
    """Follows one task's stream in a background thread, timestamping each event."""

    def __init__(self, orch: OrchClient, task_id: str, *, limit_s: float = 60.0) -> None:
        self.task_id = task_id
        self.events: list[tuple[float, SseEvent]] = []
        self.status: int | None = None
        self.error: str | None = None
        self._orch = orch
        self._limit_s = limit_s
        self._cond = threading.Condition()
        self.done = False
        self._thread = threading.Thread(target=self._run, name=f"sse-{task_id}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        ex = stream_exchange(self._orch, self.task_id)
        timeout = httpx.Timeout(self._limit_s, connect=5.0)
        try:
            with connect_sse(
                self._orch.http, "GET", f"/v1/tasks/{self.task_id}/stream", timeout=timeout
            ) as source:
                self.status = ex.status = source.response.status_code
                ex.response_headers = redact_headers(source.response.headers)
                if self.status == 200:
                    for sse in source.iter_sse():
                        with self._cond:
                            self.events.append((time.monotonic(), parse_event(sse)))
                            self._cond.notify_all()
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
        deadline = time.monotonic() + within_s
        with self._cond:
            while not check():
                left = deadline - time.monotonic()
                if left <= 0 or self.done:
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
