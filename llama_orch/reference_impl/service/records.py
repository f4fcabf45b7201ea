"""What the service remembers about a task beyond the scheduler's own state."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from llama_orch.reference_impl.constants import DEFAULT_TENANT
from llama_orch.reference_impl.core import Priority
from llama_orch.reference_impl.service.streams import TaskEvents


@dataclass(frozen=True)
class NewTask:
    """A validated task request, free of HTTP details."""

    task_id: str
    session_id: str
    engine: str
    model_ref: str
    ctx: int
    priority: Priority
    max_tokens: int
    deadline_ms: int
    prompt: str
    seed: int | None = None
    sampler_profile_version: str | None = None
    expected_tokens: int | None = None
    tenant: str = DEFAULT_TENANT
    correlation_id: str | None = None
    stop: tuple[str, ...] = ()
    pin_replica: str | None = None  # placement.replica_id: run only on this replica
    override: bool = False  # the task may use a Deprecated model (ORCH-3070)


@dataclass
class TaskRecord:
    """A task from admission until its stream is reaped."""

    task: NewTask
    pool_id: str
    seed: int
    sampler_profile_version: str
    prompt_tokens: int
    admitted_at: float
    stream: TaskEvents
    replica_id: str | None = None
    runner: asyncio.Task | None = None
    dispatched_at: float | None = None
    outcome: str | None = None
    extra: dict = field(default_factory=dict)
    # The `tokens_out` counter of the replica it runs on, and how many of the stream's tokens
    # it already holds: the orchestrator adds them in batches (Orchestrator._report_tokens).
    tokens_out: Any = None
    tokens_reported: int = 0

    @property
    def task_id(self) -> str:
        return self.task.task_id

    def finish_log(self, pool, outcome: str) -> dict:
        """Fields of the task's final log record (ORCH-3027 list L1, OC-CORE-1040)."""
        stream = self.stream
        queue_ms = (
            round((self.dispatched_at - self.admitted_at) * 1000) if self.dispatched_at else None
        )
        decode_ms = (
            round((stream.finished_at - stream.first_token_at) * 1000)
            if stream.first_token_at and stream.finished_at
            else 0
        )
        return {
            "job_id": self.task_id,
            "session_id": self.task.session_id,
            "client_id": self.task.tenant,
            "tenant_id": self.task.tenant,
            "engine": pool.engine,
            "engine_version": pool.engine_version,
            "pool_id": pool.pool_id,
            "replica_id": self.replica_id,
            "model_id": pool.model_ref,
            "quant": pool.quant,
            "ctx": self.task.ctx,
            "kv_warmth": self.extra.get("kv_warmth", False),
            "sampler_profile_version": self.sampler_profile_version,
            "priority": self.task.priority,
            "deadline_ms": self.task.deadline_ms,
            "outcome": outcome,
            "queue_time_ms": queue_ms,
            "decode_time_ms": decode_ms,
            "tokens_in": self.prompt_tokens,
            "tokens_out": stream.tokens,
            "preempted": self.extra.get("preemptions", 0) > 0,
            "correlation_id": self.task.correlation_id,
        }
