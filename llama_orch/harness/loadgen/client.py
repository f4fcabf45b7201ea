"""The OrchQueue v1 target: POST /v1/tasks, then read GET /v1/tasks/{id}/stream over SSE.

One aiohttp session is shared by all tasks (HTTP/1.1 keep-alive, pool sized to the load).
aiohttp rather than httpx here because the load generator shares the machine with the
server: measured on 2 cores, httpx's pool bookkeeping cost ~5 ms of CPU per task at
concurrency 64 and capped the run at ~200 tasks/s while the server idled (bench/RESULTS.md).
The task's timings end at the terminal event; the body is then read to its end so the
connection goes back to the pool.

Queue wait: SSE `metrics` is an open object, and the reference orchestrator emits one naming the
`replica_id` at the moment it dispatches the task to a slot. The first such event marks the end
of the task's queue wait (time from sending the POST). It is a client-side figure: when a task
is dispatched before its stream is opened, the replayed event arrives on connect, so the figure
is an upper bound that includes the admission round trip. Targets that send no such event
report no queue wait.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from llama_orch.harness.loadgen.load import TaskResult, TaskTimer

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
) -> aiohttp.ClientSession:
    """The shared session: Bearer auth, keep-alive pool of `max_connections`.

    `read_timeout` bounds the silence between two chunks of a stream; waiting for a free
    pooled connection is bounded by it too.
    """
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    connector = aiohttp.TCPConnector(limit=max_connections, limit_per_host=max_connections)
    timeout = aiohttp.ClientTimeout(
        total=None, connect=read_timeout, sock_connect=connect_timeout, sock_read=read_timeout
    )
    return aiohttp.ClientSession(
        base_url=base_url.rstrip("/") + "/", headers=headers, connector=connector, timeout=timeout
    )


async def iter_sse(content: aiohttp.StreamReader) -> AsyncIterator[tuple[str, str]]:
    """(event, data) pairs of a text/event-stream body, per the SSE line rules."""
    event, data = "message", []
    async for raw in content:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)


def transport_code(exc: BaseException) -> str:
    """A stable name for a transport failure, whatever the client library calls it."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "TRANSPORT_ConnectError"
    if isinstance(exc, asyncio.TimeoutError):
        return "TRANSPORT_Timeout"
    return f"TRANSPORT_{type(exc).__name__}"


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


ShapeFn = Callable[[int], TaskTemplate]
AdmittedFn = Callable[[int, int | None], None]


def _names_replica(data: str) -> bool:
    """True for a `metrics` payload that carries `replica_id` (the dispatch marker)."""
    if "replica_id" not in data:  # cheap test first: most metrics events do not
        return False
    payload = _json_or_none(data)
    return isinstance(payload, dict) and isinstance(payload.get("replica_id"), str)


class OrchQueueTarget:
    """Runs one task per call against an OrchQueue v1 server through a shared session.

    `shape(task_no)`, when given, picks each task's template (a priority mix, or a scenario's
    classes); otherwise every task uses `template`. `on_admitted(task_no, status)` is called
    once the POST is answered (status None when it failed in transport), so a scenario can
    start later tasks once earlier ones are queued.
    """

    def __init__(
        self,
        client: aiohttp.ClientSession,
        template: TaskTemplate,
        run_id: str = "",
        *,
        shape: ShapeFn | None = None,
        on_admitted: AdmittedFn | None = None,
    ) -> None:
        self.client = client
        self.template = template
        self.run_id = run_id or uuid.uuid4().hex[:8]
        self.shape = shape
        self.on_admitted = on_admitted

    async def run_task(self, task_no: int) -> TaskResult:
        task_id = str(uuid.uuid4())
        headers = {"X-Correlation-Id": f"bench-{self.run_id}-{task_no}"}
        template = self.template if self.shape is None else self.shape(task_no)
        body = template.body(task_id, str(uuid.uuid4()))
        timer = TaskTimer(task_no)
        timer.result.priority = template.priority
        status: int | None = None
        try:
            try:
                async with self.client.post("v1/tasks", json=body, headers=headers) as resp:
                    text = await resp.text()
                    timer.admitted()
                    status = resp.status
            finally:
                if self.on_admitted is not None:
                    self.on_admitted(task_no, status)
            if status is not None and status != 202:
                return timer.finish(*_error_of(status, _json_or_none(text)))
            return await self._stream(task_id, headers, timer)
        except (TimeoutError, aiohttp.ClientError) as exc:
            return timer.finish(transport_code(exc), str(exc) or None)

    async def _stream(self, task_id: str, headers: dict[str, str], timer: TaskTimer) -> TaskResult:
        async with self.client.get(f"v1/tasks/{task_id}/stream", headers=headers) as resp:
            if resp.status != 200:
                return timer.finish(*_error_of(resp.status, _json_or_none(await resp.text())))
            if resp.content_type != "text/event-stream":
                return timer.finish(BAD_STREAM, f"content type {resp.content_type!r}")
            result: TaskResult | None = None
            async for event, data in iter_sse(resp.content):
                if result is not None:
                    continue  # drain to the end so the connection is reused
                if event == "token":
                    timer.token()
                elif event == "metrics":
                    if timer.result.queue_wait_ms is None and _names_replica(data):
                        timer.dispatched()
                elif event == "end":
                    result = timer.finish()
                elif event == "error":
                    result = timer.finish(*_error_of(200, _json_or_none(data)))
            if result is None:
                return timer.finish(STREAM_INCOMPLETE, "stream closed before `end` or `error`")
            return result
