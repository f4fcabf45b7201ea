"""Admission checks that need live state: pins, sessions, pool readiness, quotas, queue room.

Kept apart from the façade so each check reads on its own; the scheduler applies the outcome
(counting, evicting, committing). The pin check of step 1 and steps 2-4 and 6 of the order
documented in scheduler.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import guardrails
from .placement import Replica
from .policies import EVICTION_CODE, REFUSAL_CODE, policy_victim, preemption_victim
from .pools import CorePool
from .queue import TaskEntry
from .sessions import SessionStore
from .types import ErrorCode, Rejected, TaskSpec

POOL_UNREADY_RETRY_MS = 1_000
POOL_UNAVAILABLE_RETRY_MS = 5_000


def pin_refusal(task: TaskSpec, replicas: dict[str, Replica]) -> Rejected | None:
    """A pin must name a replica of the task's pool that can still become Ready."""
    if task.pin_replica is None:
        return None
    replica = replicas.get(task.pin_replica)
    if replica is None or replica.spec.pool_id != task.pool_id:
        msg = f"replica {task.pin_replica!r} is not a replica of pool {task.pool_id!r}"
        return guardrails.invalid(msg, "placement.replica_id")
    if replica.failed:
        msg = f"replica {task.pin_replica!r} cannot become Ready"
        return Rejected(ErrorCode.POOL_UNAVAILABLE, msg, 503, retriable=True)
    return None


def live_refusal(
    task: TaskSpec, pool: CorePool, sessions: SessionStore, now: int
) -> Rejected | None:
    """Session, availability and quota checks, in that order; None when all pass."""
    why = sessions.refusal(task.session_id, task.prompt_tokens + task.max_tokens, now, task.tenant)
    if why is not None:
        return Rejected(ErrorCode.ADMISSION_REJECT, why, 400)
    down = pool.unavailability()
    if down is not None:
        code, msg = down
        unready = code is ErrorCode.POOL_UNREADY
        retry = POOL_UNREADY_RETRY_MS if unready else POOL_UNAVAILABLE_RETRY_MS
        return guardrails.unavailable(code, msg, retry)
    label = pool.spec.full_policy.value
    tenant = pool.tenants.get(task.tenant)
    if tenant is not None:
        hit = tenant.refusal(pool.mem_bytes(task), now)
        if hit is not None:
            msg, wait, retriable = hit
            retry = wait if wait is not None else round(pool.predictor.task_ms)
            return guardrails.too_busy(ErrorCode.ADMISSION_REJECT, msg, label, retry, retriable)
    bucket = pool.class_buckets.get(task.priority)
    if bucket is not None:
        wait = bucket.wait_ms(now)
        if wait:
            msg = f"class {task.priority.value} over its rate limit"
            return guardrails.too_busy(ErrorCode.ADMISSION_REJECT, msg, label, wait)
    return None


@dataclass(frozen=True)
class Room:
    """How the queue makes room: evict `victim` with `code`/`reason` (or nothing to do)."""

    victim: TaskEntry | None = None
    code: ErrorCode | None = None
    reason: str = ""
    preempted: bool = False


def make_room(task: TaskSpec, pool: CorePool, now: int) -> Room | Rejected:
    """Soft preemption, then the full policy (policies.py); a Rejected when nothing fits."""
    q, spec = pool.queue, pool.spec
    scope = q.full_scope(task.priority)
    if scope is None:
        return Room()
    victim = preemption_victim(pool, task.priority, scope, now)
    if victim is not None:
        return Room(victim, ErrorCode.ADMISSION_REJECT, "preempted", preempted=True)
    victim = policy_victim(q, spec.full_policy, task.priority, scope)
    if victim is None:
        return guardrails.too_busy(
            REFUSAL_CODE[spec.full_policy],
            f"queue full ({scope}); policy {spec.full_policy.value}",
            spec.full_policy.value,
            pool.retry_after_ms(),
        )
    code = EVICTION_CODE[spec.full_policy]
    return Room(victim, code, spec.full_policy.value)
