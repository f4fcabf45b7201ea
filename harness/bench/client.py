"""The OrchQueue v1 target: POST /v1/tasks, then read GET /v1/tasks/{id}/stream over SSE.

One `httpx.AsyncClient` is shared by all tasks (HTTP/1.1 keep-alive, pool sized to the load).
The task's timings end at the terminal event; the rest of the body is then read to its end so
the connection goes back to the pool instead of being dropped mid-response. That read is never
cut short by cancelling it: cancelling an httpcore read can leave its connection checked out of
the pool for good (encode/httpcore#658). A server that keeps a stream open after `end` therefore
holds the task until `read_timeout`, which shows up as low throughput, not as wrong latencies.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import SSEError, aconnect_sse

from harness.bench.load import TaskResult, TaskTimer

STREAM_INCOMPLETE = "STREAM_INCOMPLETE"
BAD_STREAM = "BAD_STREAM"


@dataclass(frozen=True)
class TaskTemplate:
    """The TaskRequest fields every bench task shares; ids are fresh per task."""

    prompt: str = "[[sim tokens=16]] bench"
    max_tokens: int = 16
    engine: str = "llamacpp"
    model_ref: str = "repo:mock/tiny-llama"
    ctx: int = 4096
    priority: str = "interactive"
    deadline_ms: int = 60_000
    seed: int | None = None
    sampler_profile_version: str | None = None

    def body(self, task_id: str, session_id: str) -> dict[str, Any]:
        """A TaskRequest body; optional fields are sent only when set."""
        body: dict[str, Any] = {
            "task_id": task_id,
            "session_id": session_id,
            "workload": "completion",
            "model_ref": self.model_ref,
            "engine": self.engine,
            "ctx": self.ctx,
            "priority": self.priority,
            "max_tokens": self.max_tokens,
            "deadline_ms": self.deadline_ms,
            "prompt": self.prompt,
        }
        if self.seed is not None:
            body["seed"] = self.seed
        if self.sampler_profile_version is not None:
            body["sampler_profile_version"] = self.sampler_profile_version
        return body


def make_client(
    base_url: str,
    *,
    api_key: str | None,
    max_connections: int,
    connect_timeout: float = 5.0,
    read_timeout: float = 60.0,
) -> httpx.AsyncClient:
    """The shared client: Bearer auth, keep-alive pool of `max_connections`.

    `read_timeout` bounds the silence between two chunks of a stream, and also how long a
    task may wait for a free pooled connection.
    """
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    timeout = httpx.Timeout(
        connect=connect_timeout, read=read_timeout, write=connect_timeout, pool=read_timeout
    )
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/"), headers=headers, limits=limits, timeout=timeout
    )


def _error_of(status: int, payload: Any) -> tuple[str, str | None]:
    """(code, message) from an ErrorEnvelope or SSE error payload; HTTP_<status> otherwise."""
    if isinstance(payload, dict):
        code = payload.get("code")
        message = payload.get("message")
        message = message if isinstance(message, str) else None
        if isinstance(code, str) and code:
            return code, message
        return f"HTTP_{status}", message
    return f"HTTP_{status}", None


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


class OrchQueueTarget:
    """Runs one task per call against an OrchQueue v1 server through a shared client."""

    def __init__(self, client: httpx.AsyncClient, template: TaskTemplate, run_id: str = "") -> None:
        self.client = client
        self.template = template
        self.run_id = run_id or uuid.uuid4().hex[:8]

    async def run_task(self, task_no: int) -> TaskResult:
        task_id = str(uuid.uuid4())
        headers = {"X-Correlation-Id": f"bench-{self.run_id}-{task_no}"}
        body = self.template.body(task_id, str(uuid.uuid4()))
        timer = TaskTimer(task_no)
        try:
            resp = await self.client.post("/v1/tasks", json=body, headers=headers)
            timer.admitted()
            if resp.status_code != 202:
                return timer.finish(*_error_of(resp.status_code, _json_or_none(resp.text)))
            return await self._stream(task_id, headers, timer)
        except httpx.HTTPError as exc:
            return timer.finish(f"TRANSPORT_{type(exc).__name__}", str(exc) or None)

    async def _stream(self, task_id: str, headers: dict[str, str], timer: TaskTimer) -> TaskResult:
        url = f"/v1/tasks/{task_id}/stream"
        async with aconnect_sse(self.client, "GET", url, headers=headers) as source:
            resp = source.response
            if resp.status_code != 200:
                await resp.aread()
                return timer.finish(*_error_of(resp.status_code, _json_or_none(resp.text)))
            events = source.aiter_sse()
            result: TaskResult | None = None
            try:
                async for sse in events:
                    if sse.event == "token":
                        timer.token()
                    elif sse.event == "end":
                        result = timer.finish()
                        break
                    elif sse.event == "error":
                        result = timer.finish(*_error_of(200, _json_or_none(sse.data)))
                        break
            except SSEError as exc:  # not text/event-stream
                return timer.finish(BAD_STREAM, str(exc))
            if result is None:
                return timer.finish(STREAM_INCOMPLETE, "stream closed before `end` or `error`")
            # Read to the end of the body so the connection is reused, not dropped.
            with contextlib.suppress(httpx.HTTPError, SSEError):
                async for _ in events:
                    pass
            return result
