"""Full-queue policies and soft preemption: which queued task leaves (OC-CORE-1002, ORCH-3085).

Order of decisions when an incoming task finds its queue full (`scope` "class": its class
queue is at capacity; "pool": the pool total is):

1. Soft preemption (mode `soft`, or `hard`, whose running-task part is preemption.py): when
   only the pool total is full and a lower class has queued work, one task of the lowest such
   class is evicted with ADMISSION_REJECT, reason "preempted". Which one is ETA-aware ahead of
   LRU (eviction.py, ORCH-3082): a task that will miss its deadline anyway, else the one with
   the latest predicted finish, ties to the newest. Skipped under `shed-low-priority`, whose
   table row already names the victim (the oldest lower-class task), so the spec table stays
   exact.
2. Otherwise the pool's `full_policy`, exactly as the table in specs/10 section 2:
   - reject: nothing leaves; 429 ADMISSION_REJECT;
   - drop-lru: the longest-waiting task of the full queue (the class queue when that is
     full, else the whole pool) leaves with QUEUE_FULL_DROP_LRU; nothing to drop -> 429
     QUEUE_FULL_DROP_LRU;
   - shed-low-priority: the longest-waiting task of the lowest class ranking below the
     incoming task leaves with ADMISSION_REJECT; only when the pool total is what is full
     (shedding another class cannot make room in a full class queue); nothing -> 429
     ADMISSION_REJECT.
One eviction always suffices: the class queue is checked before the pool total.
"""

from __future__ import annotations

from .eviction import eta_victim
from .pools import CorePool
from .queue import PoolQueue, TaskEntry
from .types import PRIORITY_ORDER, RANK, ErrorCode, FullPolicy, PreemptionMode, Priority

REFUSAL_CODE: dict[FullPolicy, ErrorCode] = {
    FullPolicy.REJECT: ErrorCode.ADMISSION_REJECT,
    FullPolicy.DROP_LRU: ErrorCode.QUEUE_FULL_DROP_LRU,
    FullPolicy.SHED_LOW_PRIORITY: ErrorCode.ADMISSION_REJECT,
}
EVICTION_CODE: dict[FullPolicy, ErrorCode] = {
    FullPolicy.DROP_LRU: ErrorCode.QUEUE_FULL_DROP_LRU,
    FullPolicy.SHED_LOW_PRIORITY: ErrorCode.ADMISSION_REJECT,
}


def _lower_classes(incoming: Priority) -> list[Priority]:
    """Classes ranking below `incoming`, lowest first."""
    return [p for p in reversed(PRIORITY_ORDER) if RANK[p] > RANK[incoming]]


def preemption_victim(
    pool: CorePool, incoming: Priority, scope: str | None, now: int
) -> TaskEntry | None:
    """The queued task soft preemption evicts for `incoming`, if any (ETA-aware)."""
    spec = pool.spec
    if scope != "pool" or spec.preemption is PreemptionMode.DISABLED:
        return None
    if spec.full_policy is FullPolicy.SHED_LOW_PRIORITY:
        return None
    for p in _lower_classes(incoming):
        victim = eta_victim(pool, p, now)
        if victim is not None:
            return victim
    return None


def policy_victim(
    queue: PoolQueue, policy: FullPolicy, incoming: Priority, scope: str
) -> TaskEntry | None:
    """The queued task `policy` removes to make room; None means the incoming task is refused."""
    if policy is FullPolicy.DROP_LRU:
        return queue.oldest(incoming if scope == "class" else None)
    if policy is FullPolicy.SHED_LOW_PRIORITY and scope == "pool":
        for p in _lower_classes(incoming):
            victim = queue.oldest(p)
            if victim is not None:
                return victim
    return None
