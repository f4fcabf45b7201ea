"""Small factories for tests of the core and of the layers above it.

Why here: property tests in several modules build the same pools, replicas and tasks; keeping
the defaults in one place keeps those tests short and consistent.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import count
from typing import Any

from .scheduler import Scheduler
from .types import (
    Admitted,
    FullPolicy,
    PoolSpec,
    Priority,
    Rejected,
    ReplicaSpec,
    SessionPolicy,
    TaskSpec,
)

_ids = count()


def pool(pool_id: str = "p", **overrides: Any) -> PoolSpec:
    """A pool with roomy limits, no deadline rejection surprises and no preemption."""
    base = PoolSpec(
        pool_id=pool_id,
        engine="llamacpp",
        model_ref="repo:org/model",
        ctx_max=8192,
        capacity=1_000,
        full_policy=FullPolicy.REJECT,
    )
    return replace(base, **overrides)


def task(pool_id: str = "p", **overrides: Any) -> TaskSpec:
    """A small batch task with a fresh id and session unless given."""
    n = next(_ids)
    base = TaskSpec(
        task_id=f"task-{n}",
        session_id=f"session-{n}",
        tenant="t0",
        pool_id=pool_id,
        priority=Priority.BATCH,
        ctx=2048,
        prompt_tokens=16,
        max_tokens=32,
    )
    return replace(base, **overrides)


def scheduler(
    pools: list[PoolSpec] | None = None,
    slots: dict[str, int] | None = None,
    sessions: SessionPolicy | None = None,
    ready: bool = True,
) -> Scheduler:
    """A scheduler whose replicas (`slots`: replica_id -> slots; pool = text before ':')
    are all Ready unless `ready` is False. Default: pool "p" with one 1-slot replica."""
    pools = pools or [pool()]
    slots = slots if slots is not None else {f"{pools[0].pool_id}:r0": 1}
    specs = [ReplicaSpec(rid, rid.split(":")[0], n) for rid, n in slots.items()]
    sched = Scheduler(pools, specs, sessions or SessionPolicy())
    if ready:
        for rid in slots:
            sched.set_replica(rid, ready=True)
    return sched


def admitted(result: Admitted | Rejected) -> Admitted:
    """Assert-and-narrow helper for tests."""
    assert isinstance(result, Admitted), result
    return result


def rejected(result: Admitted | Rejected) -> Rejected:
    assert isinstance(result, Rejected), result
    return result
