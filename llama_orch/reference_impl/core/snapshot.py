"""Counters and the read-only snapshot the API layer turns into `/metrics` and health views.

Counter keys are tuples in the order of the metric labels the API needs (see
specs/71-metrics-contract.md); the API adds `engine` / `engine_version` from the pool:

- enqueued[(pool_id, priority)]                     -> tasks_enqueued_total
- started[(pool_id, replica_id, priority)]          -> tasks_started_total
- canceled[(pool_id, replica_id | "unassigned", reason)], reason "user" or "watchdog"
- rejected[(pool_id, code)]  (pool_id "" when the pool is unknown) -> tasks_rejected_total
- backpressure[(pool_id, policy)]                   -> admission_backpressure_events_total
- preemptions[(pool_id, mode)]                      -> preemptions_total
- evicted[(pool_id, code)]   tasks removed from a queue (drop-lru, shed, preempted, drain)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .types import PRIORITY_ORDER, Priority

if TYPE_CHECKING:
    from .placement import Replica
    from .pools import CorePool

UNASSIGNED = "unassigned"


@dataclass
class Counters:
    """Cumulative event counts since the scheduler was built."""

    enqueued: Counter[tuple[str, str]] = field(default_factory=Counter)
    started: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    canceled: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    rejected: Counter[tuple[str, str]] = field(default_factory=Counter)
    backpressure: Counter[tuple[str, str]] = field(default_factory=Counter)
    preemptions: Counter[tuple[str, str]] = field(default_factory=Counter)
    evicted: Counter[tuple[str, str]] = field(default_factory=Counter)

    def copy(self) -> Counters:
        return Counters(
            **{name: Counter(getattr(self, name)) for name in self.__dataclass_fields__}
        )

    def total(self, name: str, **match: str) -> int:
        """Sum of one counter over the keys whose labels match, e.g. total("canceled",
        reason="user"); label positions are those listed in the module docstring."""
        labels = _LABELS[name]
        pos = {labels.index(k): v for k, v in match.items()}
        items = getattr(self, name).items()
        return sum(n for key, n in items if all(key[i] == v for i, v in pos.items()))


_LABELS: dict[str, tuple[str, ...]] = {
    "enqueued": ("pool_id", "priority"),
    "started": ("pool_id", "replica_id", "priority"),
    "canceled": ("pool_id", "replica_id", "reason"),
    "rejected": ("pool_id", "code"),
    "backpressure": ("pool_id", "policy"),
    "preemptions": ("pool_id", "mode"),
    "evicted": ("pool_id", "code"),
}


@dataclass(frozen=True)
class ReplicaSnapshot:
    replica_id: str
    pool_id: str
    ready: bool
    failed: bool
    slots_total: int
    slots_busy: int
    load: float


@dataclass(frozen=True)
class PoolSnapshot:
    pool_id: str
    engine: str
    queue_depth: dict[Priority, int]
    running: int
    draining: bool
    ready: bool
    slots_total: int
    slots_free: int
    predicted_ms_per_token: float
    predicted_ms_per_task: float


@dataclass(frozen=True)
class Snapshot:
    """Everything observable about the scheduler at `now_ms`."""

    now_ms: int
    pools: dict[str, PoolSnapshot]
    replicas: dict[str, ReplicaSnapshot]
    counters: Counters
    admission_share: dict[tuple[str, Priority], float]
    deadlines_met_ratio: dict[Priority, float | None]
    sessions: int


def build_snapshot(
    now_ms: int,
    pools: Mapping[str, CorePool],
    replicas: Mapping[str, Replica],
    counters: Counters,
    shares: dict[tuple[str, Priority], float],
    met: dict[Priority, float | None],
    sessions: int,
) -> Snapshot:
    """Copy the live state into frozen records (no live object escapes)."""
    pool_views: dict[str, PoolSnapshot] = {}
    for pid, pool in pools.items():
        free, total = pool.slots()
        pool_views[pid] = PoolSnapshot(
            pool_id=pid,
            engine=pool.spec.engine,
            queue_depth={p: pool.queue.depth(p) for p in PRIORITY_ORDER},
            running=pool.running,
            draining=pool.draining,
            ready=pool.unavailability() is None,
            slots_total=total,
            slots_free=free,
            predicted_ms_per_token=pool.predictor.token_ms,
            predicted_ms_per_task=pool.predictor.task_ms,
        )
    replica_views = {
        rid: ReplicaSnapshot(
            replica_id=rid,
            pool_id=r.spec.pool_id,
            ready=r.usable and not pools[r.spec.pool_id].draining,
            failed=r.failed,
            slots_total=r.slots_total,
            slots_busy=len(r.busy),
            load=r.load,
        )
        for rid, r in replicas.items()
    }
    return Snapshot(
        now_ms=now_ms,
        pools=pool_views,
        replicas=replica_views,
        counters=counters.copy(),
        admission_share=dict(shares),
        deadlines_met_ratio=dict(met),
        sessions=sessions,
    )
