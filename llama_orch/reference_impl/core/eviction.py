"""ETA-aware choice of the queued task that soft preemption evicts (ORCH-3080, ORCH-3082).

Under overload a queue must give up a lower-priority task. Which one matters: evicting a task
that is about to start wastes the wait it already did, and keeping one that will miss its
deadline anyway wastes the place it holds. So among the queued tasks of the lowest class that
has any (pinned tasks wait in their replica's lane and are never chosen):

1. a task predicted to miss its deadline (predicted finish after its absolute deadline) goes
   first, the latest one first: it is lost either way;
2. otherwise the task with the latest predicted finish (ETA) goes: it has the most queue ahead
   of it, so it is the one least likely to be served soon;
3. ties go to the newest arrival (the least time spent waiting), which is what plain LRU
   protection would pick. ETA therefore refines LRU; with one flow and no deadlines the two
   agree and the newest task leaves.

ETAs are the same predictions admission and the SSE `metrics` events use (deadlines.py): a
scan of the class's queue, which only runs when a queue is full.
"""

from __future__ import annotations

from .deadlines import expected_tokens
from .pools import CorePool
from .queue import TaskEntry
from .types import Priority


def eta_ms(pool: CorePool, entry: TaskEntry) -> int:
    """Predicted ms from now until a queued task finishes (start wait plus its decode)."""
    free, total = pool.slots()
    start = pool.predictor.start_ms(pool.ahead_of(entry), free, total)
    return start + pool.predictor.decode_ms(expected_tokens(entry.spec))


def eta_victim(pool: CorePool, priority: Priority, now: int) -> TaskEntry | None:
    """The queued task of `priority` that ETA-aware eviction gives up, or None."""
    best: tuple[bool, int, int] | None = None
    victim: TaskEntry | None = None
    for entry in pool.queue.by_class[priority].values():
        if entry.spec.pin_replica is not None:
            continue
        finish = now + eta_ms(pool, entry)
        doomed = entry.abs_deadline is not None and finish > entry.abs_deadline
        key = (doomed, finish, entry.seq)
        if best is None or key > best:
            best, victim = key, entry
    return victim
