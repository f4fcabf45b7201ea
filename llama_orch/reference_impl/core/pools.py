"""Per-pool state: queue, flows and their WFQ groups, replicas, quotas and predictions.

Scheduling groups: with `wfq` on (the default, ORCH-3078) one SCFQ group spans all flows of
the pool and a flow's weight is class weight x tenant weight, so classes share dispatches by
weight. With `wfq` off classes are served in strict precedence, each class a group of its
tenants weighted by tenant weight only, so tenants inside a class are still never starved
(OC-CORE-1004). Dispatch takes one task per call of `pop_next`: O(log flows).

Tasks pinned to a replica (a diagnostic used by the determinism suite) count against the same
queue bounds but wait in a per-replica lane, in admission order, outside the flows: they are
dispatched first when their replica has a free slot and never delay anyone else.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from .deadlines import Predictor
from .fairness import Wfq
from .placement import Replica, slot_counts
from .queue import Flow, FlowKey, PoolQueue, TaskEntry
from .quotas import TenantState, TokenBucket
from .types import PRIORITY_ORDER, RANK, ErrorCode, PoolSpec, Priority, TaskSpec


@dataclass(slots=True)
class TenantLoad:
    """A tenant's live tasks in one pool and the tokens they reserve (policy snapshots)."""

    queued: int = 0
    running: int = 0
    tokens: int = 0


class CorePool:
    """Everything the scheduler keeps for one pool (not `pool.state.PoolState`, which is the
    pool manager's view of its lifecycle)."""

    def __init__(self, spec: PoolSpec) -> None:
        if spec.capacity < 0:
            raise ValueError(f"pool {spec.pool_id}: capacity must not be negative")
        self.spec = spec
        self.queue = PoolQueue(spec.capacity, spec.class_capacity)
        self.replicas: list[Replica] = []
        self.draining = False
        self.predictor = Predictor()
        self.running = 0
        # Pinned tasks wait in their replica's lane (admit order), outside the WFQ flows, so
        # one waiting for a busy replica never holds up tasks that could run elsewhere.
        self.pinned: dict[str, OrderedDict[str, TaskEntry]] = {}
        self.pinned_queued = 0
        self.tenants = {q.tenant: TenantState.for_quota(q) for q in spec.tenants}
        # Every tenant's live load, kept up to date so a snapshot reads it in O(1).
        self.loads: dict[str, TenantLoad] = {}
        self._tenant_weight = {q.tenant: q.weight for q in spec.tenants}
        self.class_buckets = {
            p: TokenBucket(rps) for p, rps in spec.class_rps.items() if rps is not None and rps > 0
        }
        self.groups: dict[Priority | None, Wfq] = (
            {None: Wfq()} if spec.wfq else {p: Wfq() for p in PRIORITY_ORDER}
        )

    # -- flows and weights -------------------------------------------------------------------

    def weight(self, key: FlowKey) -> int:
        tenant, priority = key
        w = max(1, self._tenant_weight.get(tenant, self.spec.default_tenant_weight))
        if self.spec.wfq:
            w *= max(1, self.spec.class_weights.get(priority, 1))
        return w

    def group(self, priority: Priority) -> Wfq:
        return self.groups[None] if self.spec.wfq else self.groups[priority]

    def _peers(self, priority: Priority) -> list[Flow]:
        flows = self.queue.flows.values()
        return list(flows) if self.spec.wfq else [f for f in flows if f.key[1] == priority]

    def _ahead(self, flow: Flow, rank: int) -> int:
        priority = flow.key[1]
        n = self.group(priority).tasks_ahead(flow, rank, self._peers(priority))
        if not self.spec.wfq:
            n += sum(self.queue.depth(p) for p in PRIORITY_ORDER if RANK[p] < RANK[priority])
        return n

    def ahead_new(self, task: TaskSpec, abs_deadline: int | None, seq: int) -> int:
        """Estimated tasks that would dispatch before `task` if it were queued now."""
        if task.pin_replica is not None:
            return len(self.pinned.get(task.pin_replica, ()))
        key = (task.tenant, task.priority)
        flow = self.queue.flows.get(key) or Flow(key, self.weight(key))
        return self._ahead(flow, flow.rank_new(abs_deadline, seq, self.spec.edf))

    def ahead_of(self, entry: TaskEntry) -> int:
        """Estimated tasks that dispatch before queued `entry` (its queue position)."""
        if entry.spec.pin_replica is not None:  # lanes are short: a linear scan is fine
            return list(self.pinned[entry.spec.pin_replica]).index(entry.task_id)
        flow = self.queue.flows[entry.flow_key]
        return self._ahead(flow, flow.rank_of(entry))

    # -- queue operations --------------------------------------------------------------------

    def enqueue(self, entry: TaskEntry) -> None:
        pin = entry.spec.pin_replica
        if pin is not None:
            self.queue.index(entry)
            self.pinned.setdefault(pin, OrderedDict())[entry.task_id] = entry
            self.pinned_queued += 1
            return
        key = entry.flow_key
        flow = self.queue.flow(key, self.weight(key))
        self.queue.add(entry, flow, self.spec.edf)
        self.group(key[1]).activate(flow)

    def requeue(self, entry: TaskEntry) -> None:
        """A preempted running task goes back to the head of its flow (never a pinned one:
        hard preemption does not pick pinned tasks)."""
        key = entry.flow_key
        flow = self.queue.flow(key, self.weight(key))
        self.queue.index(entry)
        flow.push_front(entry)
        self.group(key[1]).activate(flow)

    def remove_queued(self, entry: TaskEntry) -> None:
        pin = entry.spec.pin_replica
        if pin is not None:
            lane = self.pinned[pin]
            del lane[entry.task_id]
            self._unpin(pin, lane, entry)
            return
        self.queue.drop_flow_if_idle(self.queue.discard(entry))

    def _unpin(self, pin: str, lane: OrderedDict[str, TaskEntry], entry: TaskEntry) -> None:
        if not lane:
            del self.pinned[pin]
        self.queue.unindex(entry)
        self.pinned_queued -= 1

    @property
    def unpinned_queued(self) -> int:
        """Queued tasks that wait in the WFQ flows (any replica will do)."""
        return len(self.queue) - self.pinned_queued

    def pop_pinned(self, replica_id: str) -> TaskEntry | None:
        """The oldest task pinned to `replica_id`, or None."""
        lane = self.pinned.get(replica_id)
        if not lane:
            return None
        _, entry = lane.popitem(last=False)
        self._unpin(replica_id, lane, entry)
        return entry

    def _next_group(self) -> Wfq | None:
        if self.spec.wfq:
            return self.groups[None]
        for priority in PRIORITY_ORDER:  # strict class precedence over backlogged flows
            group = self.groups[priority]
            if group.peek(on_skip=self.queue.drop_flow_if_idle) is not None:
                return group
        return None

    def pop_next(self) -> TaskEntry | None:
        """Next unpinned task by WFQ (or class precedence), EDF/FIFO inside its flow."""
        group = self._next_group()
        if group is None:
            return None
        flow = group.pop(on_skip=self.queue.drop_flow_if_idle)
        if flow is None:
            return None
        entry = flow.pop()
        self.queue.unindex(entry)
        group.served(flow)
        self.queue.drop_flow_if_idle(flow)
        return entry

    # -- replicas and admission helpers ------------------------------------------------------

    def slots(self) -> tuple[int, int]:
        """(free, total) slots on usable replicas; zero while draining."""
        return (0, 0) if self.draining else slot_counts(self.replicas)

    def has_free_slot(self) -> bool:
        return not self.draining and any(r.usable and r.free > 0 for r in self.replicas)

    def unavailability(self) -> tuple[ErrorCode, str] | None:
        """Why the pool cannot take work now (specs/10 section 3), or None."""
        pid = self.spec.pool_id
        if self.draining:
            return ErrorCode.POOL_UNAVAILABLE, f"pool {pid} is draining"
        if not any(not r.failed for r in self.replicas):
            return ErrorCode.POOL_UNAVAILABLE, f"pool {pid} has no replica that can become Ready"
        if not any(r.usable for r in self.replicas):
            return ErrorCode.POOL_UNREADY, f"pool {pid} has no Ready replica yet"
        return None

    def load_queued(self, task: TaskSpec) -> None:
        load = self.loads.setdefault(task.tenant, TenantLoad())
        load.queued += 1
        load.tokens += task.prompt_tokens + task.max_tokens

    def load_started(self, task: TaskSpec) -> None:
        load = self.loads[task.tenant]
        load.queued -= 1
        load.running += 1

    def load_ended(self, task: TaskSpec, running: bool) -> None:
        load = self.loads[task.tenant]
        if running:
            load.running -= 1
        else:
            load.queued -= 1
        load.tokens -= task.prompt_tokens + task.max_tokens
        if load.queued == load.running == 0:
            del self.loads[task.tenant]

    def mem_bytes(self, task: TaskSpec) -> int:
        """Memory a task holds against its tenant's cap: KV for every token it may use."""
        tokens = task.prompt_tokens + task.max_tokens
        return tokens * self.spec.kv_bytes_per_token + self.spec.scratch_bytes_per_task

    def retry_after_ms(self) -> int:
        """Expected wait for one slot to free up."""
        _, total = self.slots()
        return max(1, round(self.predictor.task_ms / max(1, total)))
