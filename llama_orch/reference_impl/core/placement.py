"""Replica state and placement (OC-CORE-1010, OC-CORE-1012, OC-CORE-1013, ORCH-3008..3010,
ORCH-3091, ORCH-3092).

The WFQ and EDF signals pick *which* task leaves the queue next (pools.py, queue.py); placement
then picks *where* it runs. Candidates are only the replicas of the task's own pool that are
Ready (ready, not failed, pool not draining) and have a free slot. Session affinity wins when
its replica is such a candidate (kv_warmth true); otherwise the least-loaded candidate by slot
occupancy, load = busy / slots_total. Candidates otherwise equal go to the better topology
hint (`ReplicaSpec.topology_rank`, lower first: e.g. NVLink before PCIe), then to the lower
replica id; with no hints configured every rank is 0 and ties fall to the id. (A task pinned
to a replica never comes here: it waits in that replica's lane, see pools.py.) Each pool has
few replicas, so a linear pass over them keeps dispatch independent of queue depth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .types import ReplicaSpec


@dataclass(eq=False)
class Replica:
    """Live view of one replica; starts not Ready until the pool manager reports it."""

    spec: ReplicaSpec
    slots_total: int
    ready: bool = False
    failed: bool = False
    busy: set[str] = field(default_factory=set)
    # The adapter proved `interruptible_decode` on this replica (hard preemption may use it).
    interruptible: bool = False

    @property
    def replica_id(self) -> str:
        return self.spec.replica_id

    @property
    def usable(self) -> bool:
        """Ready and not failed (pool draining is checked by the caller)."""
        return self.ready and not self.failed

    @property
    def free(self) -> int:
        return max(0, self.slots_total - len(self.busy))

    @property
    def load(self) -> float:
        if self.slots_total <= 0:
            return 1.0 if self.busy else 0.0
        return len(self.busy) / self.slots_total


def slot_counts(replicas: list[Replica]) -> tuple[int, int]:
    """(free slots, total slots) over the usable replicas of a pool."""
    free = total = 0
    for r in replicas:
        if r.usable:
            free += r.free
            total += max(0, r.slots_total)
    return free, total


def placement_key(r: Replica) -> tuple[float, int, str]:
    """Order of candidates: occupancy, then topology hint, then id (smallest wins)."""
    return (r.load, r.spec.topology_rank, r.replica_id)


def choose(replicas: list[Replica], affinity: str | None) -> tuple[Replica, bool] | None:
    """Pick the replica for the next task: (replica, kv_warmth) or None when nothing is free."""
    best: Replica | None = None
    for r in replicas:
        if not r.usable or r.free <= 0:
            continue
        if r.replica_id == affinity:
            return r, True
        if best is None or placement_key(r) < placement_key(best):
            best = r
    return (best, False) if best is not None else None
