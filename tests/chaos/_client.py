"""An OrchQueue v1 client for chaos scenarios that keeps every event and when it arrived.

The bench client (`llorch bench`) reduces a stream to timings; chaos checks need the events
themselves: token indices (lost or duplicated?), the terminal event and its code, whether the
connection closed without one (a truncated stream), and arrival times relative to an action
such as a kill or a cancel. aiohttp, for the same reason as the bench: thousands of concurrent
streams on a 2-core machine.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

TERMINAL = ("end", "error")


def task_body(
    prompt: str,
    *,
    engine: str = "llamacpp",
    model_ref: str = "repo:mock/chaos",
    priority: str = "interactive",
    max_tokens: int = 64,
    ctx: int = 2048,
) -> dict[str, Any]:
    return {
        "task_id": str(uuid.uuid4()),
        "session_id": str(uuid.uuid4()),
        "workload": "completion",
        "model_ref": model_ref,
        "engine": engine,
        "ctx": ctx,
        "priority": priority,
        "max_tokens": max_tokens,
        "deadline_ms": 0,
        "prompt": prompt,
    }


@dataclass
class Event:
    name: str
    data: dict[str, Any]
    at: float  # time.monotonic() on arrival


@dataclass
class Stream:
    """What one reader of `GET /v1/tasks/{id}/stream` saw."""

    task_id: str
    status: int | None = None  # HTTP status of the stream request
    events: list[Event] = field(default_factory=list)
    transport_error: str | None = None
    closed_at: float | None = None

    @property
    def terminal(self) -> Event | None:
        last = self.events[-1] if self.events else None
        return last if last is not None and last.name in TERMINAL else None

    @property
    def tokens(self) -> list[dict[str, Any]]:
        return [e.data for e in self.events if e.name == "token"]

    @property
    def truncated(self) -> bool:
        """Opened (200) and ended without a terminal event."""
        return self.status == 200 and self.terminal is None

    def index_problem(self) -> str | None:
        """None when token indices are 0..n-1 once each, nothing follows the terminal event,
        and an `end` event's `tokens_out` equals n; else what is wrong."""
        indices = [t["i"] for t in self.tokens]
        if indices != list(range(len(indices))):
            dup = len(indices) - len(set(indices))
            return f"indices {indices[:8]}... ({dup} duplicated, {len(indices)} received)"
        names = [e.name for e in self.events]
        if any(n in TERMINAL for n in names[:-1]):
            return f"events after the terminal one: {names[-3:]}"
        term = self.terminal
        if term is not None and term.name == "end" and term.data.get("tokens_out") != len(indices):
            return f"end.tokens_out {term.data.get('tokens_out')} != {len(indices)} tokens"
        return None


@dataclass
class Submitted:
    status: int
    body: dict[str, Any]
    at: float


def session(base_url: str, api_key: str, *, connections: int = 0) -> aiohttp.ClientSession:
    """Keep-alive session with Bearer auth; `connections` 0 is unbounded."""
    return aiohttp.ClientSession(
        base_url=base_url,
        headers={"Authorization": f"Bearer {api_key}"},
        connector=aiohttp.TCPConnector(limit=connections, force_close=False),
        timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_read=60),
    )


async def submit(http: aiohttp.ClientSession, body: dict[str, Any]) -> Submitted:
    async with http.post("/v1/tasks", json=body) as resp:
        try:
            payload = await resp.json(content_type=None)
        except (json.JSONDecodeError, aiohttp.ContentTypeError):
            payload = {}
        return Submitted(
            resp.status, payload if isinstance(payload, dict) else {}, time.monotonic()
        )


async def cancel(http: aiohttp.ClientSession, task_id: str) -> tuple[int, float]:
    """POST the cancel; (status, time the answer arrived)."""
    async with http.post(f"/v1/tasks/{task_id}/cancel") as resp:
        await resp.read()
        return resp.status, time.monotonic()


async def read_stream(
    http: aiohttp.ClientSession,
    task_id: str,
    *,
    on_event: Callable[[Event], None] | None = None,
    out: Stream | None = None,
) -> Stream:
    """Read the task's SSE stream until the terminal event or until the server closes it.

    Never raises for transport trouble: a dropped connection is recorded in the result, which
    is what a chaos check wants to count. `out` lets a caller watch the events arrive.
    """
    result = out or Stream(task_id)
    try:
        async with http.get(f"/v1/tasks/{task_id}/stream") as resp:
            result.status = resp.status
            if resp.status != 200:
                await resp.read()
                return result
            name, data = "message", []
            async for raw in resp.content:
                line = raw.decode("utf-8").rstrip("\r\n")
                if not line:
                    if data:
                        event = Event(name, json.loads("\n".join(data)), time.monotonic())
                        result.events.append(event)
                        if on_event is not None:
                            on_event(event)
                        if name in TERMINAL:
                            break
                    name, data = "message", []
                elif line.startswith(":"):
                    continue
                elif line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip())
    except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
        result.transport_error = f"{type(exc).__name__}: {exc}"
    finally:
        result.closed_at = time.monotonic()
    return result


async def run_task(http: aiohttp.ClientSession, body: dict[str, Any]) -> tuple[Submitted, Stream]:
    """Submit and, if admitted, read the stream to its end."""
    sub = await submit(http, body)
    if sub.status != 202:
        return sub, Stream(body["task_id"])
    return sub, await read_stream(http, body["task_id"])
