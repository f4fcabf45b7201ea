"""What the service remembers about a task beyond the scheduler's own state."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from reference_impl.service.streams import TaskStream


@dataclass(frozen=True)
class NewTask:
    """A validated task request, free of HTTP details."""

    task_id: str
    session_id: str
    engine: str
    model_ref: str
    ctx: int
    priority: str
    max_tokens: int
    deadline_ms: int
    prompt: str
    seed: int | None = None
    sampler_profile_version: str | None = None
    expected_tokens: int | None = None
    tenant: str = "default"
    correlation_id: str | None = None


@dataclass
class TaskRecord:
    """A task from admission until its stream is reaped."""

    task: NewTask
    pool_id: str
    seed: int
    sampler_profile_version: str
    prompt_tokens: int
    admitted_at: float
    stream: TaskStream
    replica_id: str | None = None
    runner: asyncio.Task | None = None
    dispatched_at: float | None = None
    outcome: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def task_id(self) -> str:
        return self.task.task_id
