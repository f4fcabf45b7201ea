"""`CoreState`: the records one `Scheduler` keeps, in one place so helper modules can take it.

The façade (scheduler.py) makes the decisions and counts the events (`Scheduler.counters`);
endings.py and queries.py update and read these records as plain data. Pools and replicas are
kept in id order so dispatch and snapshots visit them the same way on every run. Live tasks
(queued and running) sit in `tasks`; the running ones also in `running`; ended task ids are
remembered in `ended`, oldest forgotten first past `terminal_memory`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from .deadlines import MetWindow
from .fairness import ShareTracker
from .placement import Replica
from .pools import CorePool
from .preemption import RateWindow
from .queue import TaskEntry
from .sessions import SessionStore
from .slo import BreakerState
from .types import PRIORITY_ORDER, PoolSpec, Priority, ReplicaSpec, SessionPolicy, TaskState


def _met_windows() -> dict[Priority, MetWindow]:
    return {p: MetWindow() for p in PRIORITY_ORDER}


@dataclass(slots=True, eq=False)
class CoreState:
    """Pools, replicas, sessions, live and ended tasks, fairness shares, deadline windows."""

    pools: dict[str, CorePool]
    replicas: dict[str, Replica]
    sessions: SessionStore
    terminal_memory: int
    tasks: dict[str, TaskEntry] = field(default_factory=dict)
    running: dict[str, TaskEntry] = field(default_factory=dict)
    ended: OrderedDict[str, TaskState] = field(default_factory=OrderedDict)
    shares: ShareTracker = field(default_factory=ShareTracker)
    met: dict[Priority, MetWindow] = field(default_factory=_met_windows)
    hard_windows: dict[str, RateWindow] = field(default_factory=dict)  # pool -> interrupts
    breakers: dict[str, BreakerState] = field(default_factory=dict)  # pool -> SLO breaker

    @classmethod
    def build(
        cls,
        pools: list[PoolSpec],
        replicas: list[ReplicaSpec],
        sessions: SessionPolicy,
        terminal_memory: int,
    ) -> CoreState:
        """Empty state for these specs; ValueError on a duplicate id or a replica's unknown pool."""
        by_pool: dict[str, CorePool] = {}
        for spec in sorted(pools, key=lambda p: p.pool_id):
            if spec.pool_id in by_pool:
                raise ValueError(f"duplicate pool_id {spec.pool_id!r}")
            by_pool[spec.pool_id] = CorePool(spec)
        by_id: dict[str, Replica] = {}
        for rs in sorted(replicas, key=lambda r: r.replica_id):
            if rs.replica_id in by_id:
                raise ValueError(f"duplicate replica_id {rs.replica_id!r}")
            if rs.pool_id not in by_pool:
                raise ValueError(f"replica {rs.replica_id!r} names unknown pool {rs.pool_id!r}")
            replica = Replica(rs, slots_total=rs.slots_total)
            by_id[rs.replica_id] = replica
            by_pool[rs.pool_id].replicas.append(replica)
        state = cls(by_pool, by_id, SessionStore(sessions), terminal_memory)
        for pid, pool in by_pool.items():
            state.hard_windows[pid] = RateWindow()
            if pool.spec.slo_breaker is not None:
                state.breakers[pid] = BreakerState(pool.spec.slo_breaker)
        return state
