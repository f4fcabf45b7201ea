"""Bounded per-pool queues: arrival indexes per class and per-flow FIFOs.

A *flow* is one (tenant, priority) pair. Each queued task sits in two places at once, both
keyed by task_id so that removal from anywhere is O(1):

- its class's arrival index (OrderedDict): class bounds and the oldest/newest task of a class;
  the oldest task of the pool (drop-lru, queued wall timeout) is the oldest of the class heads,
  compared by arrival seq (two classes, so O(1));
- its flow, which decides dispatch order inside (tenant, priority): a FIFO lane and, when EDF
  is on, a deadline lane in front of it.

OrderedDict rather than dict: `next(iter(d))` on a plain dict degrades after many deletions at
the front; OrderedDict keeps first/last/delete O(1).

The deadline lane is a list sorted by (absolute deadline, arrival seq) with a moving front
index and lazy deletion (entries marked dead and compacted once half the list is garbage), so
popping the earliest deadline and cancelling are O(1) amortised; insertion is a bisect (plus a
memmove in C when a deadline lands in front of later ones). EDF therefore refines FIFO: tasks
with no deadline, or with deadlines that grow with arrival (the usual case of one relative
budget), still leave in arrival order.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import OrderedDict
from dataclasses import dataclass

from .types import PRIORITY_ORDER, Priority, TaskSpec, TaskState

FlowKey = tuple[str, Priority]  # (tenant, priority)


@dataclass(slots=True, eq=False)
class TaskEntry:
    """Mutable book-keeping for one live task (queued or running)."""

    spec: TaskSpec
    seq: int
    admit_ms: int
    abs_deadline: int | None
    mem_bytes: int
    state: TaskState = TaskState.QUEUED
    flow_seq: int = 0
    in_edf: bool = False
    dead: bool = False
    replica_id: str | None = None
    dispatch_ms: int = 0
    last_progress_ms: int = 0
    tokens_seen: int = 0
    warm: bool = False
    # Hard preemption (preemption.py): an interrupt is under way; the engine refused one, so
    # this run is never asked again; times the task was preempted and put back in the queue.
    preempting: bool = False
    no_preempt: bool = False
    resumes: int = 0

    @property
    def task_id(self) -> str:
        return self.spec.task_id

    @property
    def flow_key(self) -> FlowKey:
        return (self.spec.tenant, self.spec.priority)


class Flow:
    """Tasks of one (tenant, priority), in dispatch order; also carries its WFQ tags."""

    __slots__ = (
        "edf",
        "edf_dead",
        "edf_live",
        "edf_lo",
        "fifo",
        "in_heap",
        "key",
        "last_finish",
        "next_seq",
        "tag",
        "weight",
    )

    def __init__(self, key: FlowKey, weight: int) -> None:
        self.key = key
        self.weight = weight
        self.fifo: OrderedDict[str, TaskEntry] = OrderedDict()
        self.edf: list[tuple[int, int, TaskEntry]] = []
        self.edf_lo = 0
        self.edf_dead = 0
        self.edf_live = 0
        self.next_seq = 0
        self.tag = 0.0  # finish tag of the head's service while in the WFQ heap
        self.last_finish = 0.0
        self.in_heap = False

    def __len__(self) -> int:
        return len(self.fifo) + self.edf_live

    def push(self, entry: TaskEntry, use_edf: bool) -> None:
        """Append `entry`: deadline lane when EDF applies to it, else the FIFO tail."""
        if use_edf and entry.abs_deadline is not None:
            entry.in_edf = True
            insort(self.edf, (entry.abs_deadline, entry.seq, entry), lo=self.edf_lo)
            self.edf_live += 1
        else:
            entry.flow_seq = self.next_seq  # position among FIFO-lane arrivals
            self.next_seq += 1
            self.fifo[entry.task_id] = entry

    def push_front(self, entry: TaskEntry) -> None:
        """Put a preempted task back at the head of its lane: it has waited already."""
        if entry.in_edf:  # its deadline lane position is its deadline: unchanged
            entry.in_edf = False
            self.push(entry, True)
            return
        head = next(iter(self.fifo.values()), None)
        entry.flow_seq = head.flow_seq - 1 if head is not None else self.next_seq
        if head is None:
            self.next_seq += 1
        self.fifo[entry.task_id] = entry
        self.fifo.move_to_end(entry.task_id, last=False)

    def pop(self) -> TaskEntry:
        """Remove and return the next task: earliest deadline first, then oldest FIFO task."""
        if self.edf_live:
            edf = self.edf
            while True:
                entry = edf[self.edf_lo][2]
                self.edf_lo += 1
                if not entry.dead:
                    break
                self.edf_dead -= 1
            self.edf_live -= 1
            self._maybe_compact()
            return entry
        return self.fifo.popitem(last=False)[1]

    def remove(self, entry: TaskEntry) -> None:
        """Remove a task from anywhere in the flow (cancel, eviction, expiry)."""
        if entry.in_edf:
            entry.dead = True
            self.edf_dead += 1
            self.edf_live -= 1
            self._maybe_compact()
        else:
            del self.fifo[entry.task_id]

    def _maybe_compact(self) -> None:
        garbage = self.edf_lo + self.edf_dead
        if self.edf_live == 0:
            self.edf.clear()
            self.edf_lo = self.edf_dead = 0
        elif garbage > 32 and garbage * 2 > len(self.edf):
            self.edf = [item for item in self.edf[self.edf_lo :] if not item[2].dead]
            self.edf_lo = self.edf_dead = 0

    def rank_new(self, abs_deadline: int | None, seq: int, use_edf: bool) -> int:
        """Tasks of this flow that would leave before a task pushed now."""
        if use_edf and abs_deadline is not None:
            idx = bisect_left(self.edf, (abs_deadline, seq), lo=self.edf_lo) - self.edf_lo
            return min(idx, self.edf_live)
        return self.edf_live + len(self.fifo)

    def rank_of(self, entry: TaskEntry) -> int:
        """Tasks of this flow ahead of `entry`; exact unless tasks ahead were cancelled."""
        if entry.in_edf:
            idx = bisect_left(self.edf, (entry.abs_deadline, entry.seq), lo=self.edf_lo)
            return max(0, min(idx - self.edf_lo, self.edf_live - 1))
        head = next(iter(self.fifo.values()))
        return self.edf_live + min(entry.flow_seq - head.flow_seq, len(self.fifo) - 1)


class PoolQueue:
    """Bounded queue of one pool: class and pool caps, arrival indexes and flows."""

    def __init__(self, capacity: int, class_capacity: dict[Priority, int | None]) -> None:
        self.capacity = capacity
        self.class_limit: dict[Priority, int] = {
            p: capacity if class_capacity.get(p) is None else int(class_capacity[p] or 0)
            for p in PRIORITY_ORDER
        }
        self.class_explicit = frozenset(
            p for p in PRIORITY_ORDER if class_capacity.get(p) is not None
        )
        self.size = 0
        self.by_class: dict[Priority, OrderedDict[str, TaskEntry]] = {
            p: OrderedDict() for p in PRIORITY_ORDER
        }
        self.flows: dict[FlowKey, Flow] = {}

    def __len__(self) -> int:
        return self.size

    def depth(self, priority: Priority) -> int:
        return len(self.by_class[priority])

    def full_scope(self, priority: Priority) -> str | None:
        """Why a task of `priority` cannot be added: "class", "pool" or None (room).

        "class" only for a class with its own capacity: a class bounded by the pool alone is
        full exactly when the pool is, and that is reported as "pool".
        """
        if priority in self.class_explicit and (
            len(self.by_class[priority]) >= self.class_limit[priority]
        ):
            return "class"
        if self.size >= self.capacity:
            return "pool"
        return None

    def flow(self, key: FlowKey, weight: int) -> Flow:
        """The flow for `key`, created on first use."""
        found = self.flows.get(key)
        if found is None:
            found = self.flows[key] = Flow(key, weight)
        return found

    def add(self, entry: TaskEntry, flow: Flow, use_edf: bool) -> None:
        """Index a newly admitted task; caller has checked the bounds."""
        self.index(entry)
        flow.push(entry, use_edf)

    def index(self, entry: TaskEntry) -> None:
        """Count a task against the bounds and arrival indexes only (a pinned task: it waits
        in its replica's lane, not in a flow)."""
        self.size += 1
        self.by_class[entry.spec.priority][entry.task_id] = entry

    def unindex(self, entry: TaskEntry) -> None:
        """Drop a task from the arrival indexes (its flow is handled by the caller)."""
        self.size -= 1
        del self.by_class[entry.spec.priority][entry.task_id]

    def discard(self, entry: TaskEntry) -> Flow:
        """Remove a queued task from everywhere; returns its flow for clean-up."""
        self.unindex(entry)
        flow = self.flows[entry.flow_key]
        flow.remove(entry)
        return flow

    def drop_flow_if_idle(self, flow: Flow) -> None:
        """Forget an empty flow that is not in a WFQ heap (keeps the flow map small)."""
        if not len(flow) and not flow.in_heap and self.flows.get(flow.key) is flow:
            del self.flows[flow.key]

    def oldest(self, priority: Priority | None = None) -> TaskEntry | None:
        if priority is not None:
            return next(iter(self.by_class[priority].values()), None)
        heads = [e for e in (self.oldest(p) for p in PRIORITY_ORDER) if e is not None]
        return min(heads, key=lambda e: e.seq, default=None)

    def newest(self, priority: Priority) -> TaskEntry | None:
        return next(reversed(self.by_class[priority].values()), None)
