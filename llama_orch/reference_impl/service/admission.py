"""Admission steps that need the service's view (pools, config) before the core decides.

The core refuses what it can judge (a reused task id, a bad pin, limits, queues, quotas,
deadlines), each with its one message; these refuse what it cannot: a model no pool serves,
an unknown sampler profile, shutdown.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any

from llama_orch.reference_impl import core
from llama_orch.reference_impl.pool.state import PoolState
from llama_orch.reference_impl.service.records import NewTask


class Refused(Exception):
    """Admission refused the task; carries the typed rejection and where it happened.

    `by_core` says whether the scheduler made (and counted) the decision.
    """

    def __init__(
        self,
        rejected: core.Rejected,
        engine: str | None,
        pool_id: str | None,
        *,
        by_core: bool = False,
    ) -> None:
        super().__init__(rejected.message)
        self.rejected = rejected
        self.engine = engine
        self.pool_id = pool_id
        self.by_core = by_core


def refusal(code: str, message: str, status: int, *, field: str | None = None) -> core.Rejected:
    return core.Rejected(
        code=core.ErrorCode(code),
        message=message,
        status=status,
        field=field,
        retriable=status >= 500,
    )


def seed_from_task_id(task_id: str) -> int:
    """Deterministic default seed (ORCH-3045): the same task id always samples the same way."""
    return int.from_bytes(hashlib.sha256(task_id.encode()).digest()[:8], "big") >> 1


def pick_pool(pools: Iterable[PoolState], task: NewTask, load: Callable[[str], float]) -> PoolState:
    """The pool to queue on: one serving the task's engine and model, Ready and least loaded;
    for a pinned task, the pool that owns the replica. A pin no such pool owns is not judged
    here: the task goes to the usual pool and the core refuses the pin (one rule, one message).
    """
    matching = [p for p in pools if p.engine == task.engine and p.model_ref == task.model_ref]
    if not matching:
        message = f"no pool serves engine {task.engine!r} with model_ref {task.model_ref!r}"
        raise Refused(refusal("INVALID_PARAMS", message, 400, field="model_ref"), task.engine, None)
    if task.pin_replica is not None:
        for pool in matching:
            if any(r.replica_id == task.pin_replica for r in pool.replicas):
                return pool
    if len(matching) == 1:
        return matching[0]
    # Least loaded Ready pool; equal ones by topology hint (ORCH-3092), then by id.
    return min(matching, key=lambda p: (not p.ready, load(p.pool_id), p.topology_rank, p.pool_id))


def estimate_tokens(pool: PoolState, prompt: str) -> int:
    """Prompt tokens as the pool's adapter estimates them (about 4 characters a token else)."""
    adapter = pool.replicas[0].adapter if pool.replicas else None
    if adapter is not None:
        return adapter.estimate_tokens(prompt)
    return max(1, len(prompt) // 4)


def core_task(task: NewTask, pool: PoolState, prompt_tokens: int) -> core.TaskSpec:
    return core.TaskSpec(
        task_id=task.task_id,
        session_id=task.session_id,
        tenant=task.tenant,
        pool_id=pool.pool_id,
        priority=task.priority,
        ctx=task.ctx,
        prompt_tokens=prompt_tokens,
        max_tokens=task.max_tokens,
        deadline_ms=task.deadline_ms or None,
        expected_tokens=task.expected_tokens,
        pin_replica=task.pin_replica,
        correlation_id=task.correlation_id,
    )


def admission_log(task: NewTask, pool: PoolState, decision: core.Admitted) -> dict[str, Any]:
    """Fields of the admission log record (OC-CTRL-2050, ORCH-3029, ORCH-3094)."""
    return {
        "job_id": task.task_id,
        "session_id": task.session_id,
        "tenant_id": task.tenant,
        "engine": pool.engine,
        "pool_id": pool.pool_id,
        "model_id": pool.model_ref,
        "priority": task.priority,
        "weight": decision.weight,
        "ctx": task.ctx,
        "deadline_ms": task.deadline_ms,
        "queue_position": decision.queue_position,
        "predicted_start_ms": decision.predicted_start_ms,
        "on_time_probability": decision.on_time_probability,
        "preempted": False,
        "correlation_id": task.correlation_id,
    }
