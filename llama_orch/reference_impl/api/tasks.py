"""Data plane: admission, the SSE stream and cancel of tasks (OrchQueue v1)."""

from __future__ import annotations

import uuid

import falcon
from falcon.asgi import SSEvent

from llama_orch.reference_impl.api.body import read_model
from llama_orch.reference_impl.api.errors import ApiError
from llama_orch.reference_impl.api.schemas import TaskRequest
from llama_orch.reference_impl.constants import DEFAULT_TENANT
from llama_orch.reference_impl.service.admission import Refused
from llama_orch.reference_impl.service.orchestrator import Orchestrator
from llama_orch.reference_impl.service.records import NewTask
from llama_orch.reference_impl.service.streams import FRAME
from llama_orch.reference_impl.service.views import (
    SERVED_WORKLOADS,
    NoSuchTask,
    NotYourTask,
    TaskView,
    budget_headers,
)


def task_id_param(raw: str) -> str:
    """Data-plane ids are UUIDs; anything else cannot name a task (404)."""
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise ApiError(404, "INVALID_PARAMS", f"no task {raw!r}") from None


def owned_task(orch: Orchestrator, req, raw_id: str) -> TaskView:
    """The task, if it exists and the caller may see it (404 / 403 otherwise)."""
    principal = req.context.principal
    tenant = None if principal is None or principal.operator else principal.tenant
    try:
        return orch.task_view(task_id_param(raw_id), tenant)
    except NoSuchTask:
        raise ApiError(404, "INVALID_PARAMS", f"no task {raw_id!r}") from None
    except NotYourTask:
        raise ApiError(403, None, "this task belongs to another tenant") from None


def refusal_error(exc: Refused) -> ApiError:
    r = exc.rejected
    return ApiError(
        r.status,
        r.code.value,
        r.message,
        engine=exc.engine,
        pool_id=exc.pool_id,
        retriable=r.retriable or r.status in (429, 503),
        retry_after_ms=r.retry_after_ms,
        policy_label=r.policy_label,
        field=r.field,
    )


class Tasks:
    """`POST /v1/tasks`: validate, admit, answer 202 with the admission facts."""

    def __init__(self, orch: Orchestrator, max_body: int) -> None:
        self._orch = orch
        self._max_body = max_body

    async def on_post(self, req, resp) -> None:
        body = await read_model(req, TaskRequest, self._max_body)
        if body.workload not in SERVED_WORKLOADS:
            served = ", ".join(repr(w) for w in SERVED_WORKLOADS)
            raise ApiError(
                400, "INVALID_PARAMS", f"only workload {served} is served", field="workload"
            )
        prompt = body.prompt if body.prompt is not None else "\n".join(body.inputs or [])
        principal = req.context.principal
        task = NewTask(
            task_id=str(body.task_id),
            session_id=str(body.session_id),
            engine=body.engine.value,
            model_ref=body.model_ref,
            ctx=body.ctx,
            priority=body.priority,
            max_tokens=body.max_tokens,
            deadline_ms=body.deadline_ms,
            prompt=prompt,
            seed=body.seed,
            sampler_profile_version=body.sampler_profile_version,
            expected_tokens=body.expected_tokens,
            tenant=principal.tenant if principal is not None else DEFAULT_TENANT,
            correlation_id=req.context.correlation_id,
            stop=tuple(body.stop or ()),
            pin_replica=body.placement.replica_id if body.placement is not None else None,
            override=body.override,
        )
        try:
            rec, admitted = self._orch.submit(task)
        except Refused as exc:
            raise refusal_error(exc) from None
        resp.status = falcon.HTTP_202
        resp.set_header("X-Queue-Position", str(admitted.queue_position))
        resp.set_header("X-Queue-ETA-Ms", str(admitted.predicted_start_ms))
        for name, value in budget_headers(self._orch.session(task.session_id)).items():
            resp.set_header(name, value)
        resp.media = {
            "task_id": rec.task_id,
            "queue_position": admitted.queue_position,
            "predicted_start_ms": admitted.predicted_start_ms,
            "backoff_ms": admitted.backoff_ms,
        }


class TaskStream:
    """`GET /v1/tasks/{id}/stream`: replay and follow the task's events (Last-Event-ID resume)."""

    def __init__(self, orch: Orchestrator) -> None:
        self._orch = orch

    async def on_get(self, req, resp, task_id: str) -> None:
        task = owned_task(self._orch, req, task_id)
        last = req.get_header("Last-Event-ID")
        resp.set_header("Cache-Control", "no-cache")
        resp.set_header("X-Accel-Buffering", "no")
        for name, value in budget_headers(self._orch.session(task.session_id)).items():
            resp.set_header(name, value)

        async def events():
            async for batch in task.events.follow(last):
                if batch is None:
                    yield None  # ping comment; lets the server notice a gone client
                else:  # every event ready now, in one write
                    yield _Frames(b"".join([e[FRAME] for e in batch]))

        resp.sse = events()


class _Frames(SSEvent):
    """Several SSE events already in wire form (service.streams builds each block once);
    Falcon sends what `serialize` returns as one body chunk."""

    __slots__ = ("_body",)

    def __init__(self, body: bytes) -> None:
        self._body = body

    def serialize(self, handler: object = None) -> bytes:
        return self._body


class TaskCancel:
    """`POST /v1/tasks/{id}/cancel`: takes effect before the 204 is sent (OC-CTRL-2012)."""

    def __init__(self, orch: Orchestrator) -> None:
        self._orch = orch

    async def on_post(self, req, resp, task_id: str) -> None:
        task = owned_task(self._orch, req, task_id)
        self._orch.cancel(task.task_id)
        resp.status = falcon.HTTP_204
