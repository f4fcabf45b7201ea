"""Hard preemption: which running tasks to interrupt for urgent queued work (ORCH-3086..3089).

Soft preemption only ever evicts queued work (policies.py). Hard preemption interrupts a
running decode and puts the task back at the head of its queue, to be resumed from the state
the engine handed back. The core only decides; the service asks the adapter to interrupt, and
reports back whether the engine gave a resumable state (`Scheduler.requeue`) or refused
(`Scheduler.preempt_refused`). Rules, per pool in mode `hard`:

- only while no usable replica has a free slot and unpinned work is queued; the most urgent
  queued class is the one that may preempt;
- a victim runs on a replica whose adapter proved `interruptible_decode` (the service marks it
  with `set_replica(..., interruptible=True)`), ranks strictly below that class, is not in
  `hard_protect` (default: interactive), is not pinned, and has not refused an interrupt;
- at most one victim per queued task of the preempting class, counting interrupts already
  under way, and at most `hard_max_per_min` interrupts in any rolling minute;
- victims in order: lowest class first, then the one with the most predicted decode left (the
  latest ETA, as in eviction.py), then the newest dispatch.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from .deadlines import expected_tokens
from .pools import CorePool
from .queue import TaskEntry
from .types import PRIORITY_ORDER, RANK, HardPreemption, PreemptionMode, Priority

WINDOW_MS = 60_000


class RateWindow:
    """Times of the interrupts of one pool in the last minute (max_preemptions_per_min)."""

    __slots__ = ("_times",)

    def __init__(self) -> None:
        self._times: deque[int] = deque()

    def room(self, cap: int | None, now: int) -> int | None:
        """How many more interrupts the cap allows now (None: no cap)."""
        while self._times and now - self._times[0] >= WINDOW_MS:
            self._times.popleft()
        return None if cap is None else max(0, cap - len(self._times))

    def add(self, now: int) -> None:
        self._times.append(now)


def _urgent_class(pool: CorePool) -> tuple[Priority, int] | None:
    """The highest class with unpinned queued work and how many such tasks wait."""
    for p in PRIORITY_ORDER:
        n = pool.queue.depth(p) - sum(
            1 for e in pool.queue.by_class[p].values() if e.spec.pin_replica is not None
        )
        if n > 0:
            return p, n
    return None


def _left_ms(pool: CorePool, entry: TaskEntry) -> int:
    tokens_left = max(0, expected_tokens(entry.spec) - entry.tokens_seen)
    return pool.predictor.decode_ms(tokens_left)


def hard_victims(
    pool: CorePool, running: Iterable[TaskEntry], window: RateWindow, now: int
) -> list[HardPreemption]:
    """The interrupts to ask for now in one pool (see the module docstring); marks them."""
    spec = pool.spec
    if spec.preemption is not PreemptionMode.HARD or pool.draining or pool.has_free_slot():
        return []
    urgent = _urgent_class(pool)
    if urgent is None:
        return []
    cls, waiting = urgent
    mine = [e for e in running if e.spec.pool_id == spec.pool_id]
    wanted = waiting - sum(1 for e in mine if e.preempting)
    room = window.room(spec.hard_max_per_min, now)
    if room is not None:
        wanted = min(wanted, room)
    if wanted <= 0:
        return []
    replicas = {r.replica_id: r for r in pool.replicas}
    candidates = [
        e
        for e in mine
        if not e.preempting
        and not e.no_preempt
        and e.spec.pin_replica is None
        and RANK[e.spec.priority] > RANK[cls]
        and e.spec.priority not in spec.hard_protect
        and replicas[e.replica_id or ""].interruptible
    ]
    candidates.sort(key=lambda e: (-RANK[e.spec.priority], -_left_ms(pool, e), -e.dispatch_ms))
    out = []
    for entry in candidates[:wanted]:
        entry.preempting = True
        window.add(now)
        out.append(HardPreemption(entry.task_id, spec.pool_id, entry.replica_id or "", cls))
    return out
