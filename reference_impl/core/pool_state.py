"""Per-pool state: queue, flows and their WFQ groups, replicas, quotas and predictions.

Scheduling groups: with `wfq` on (the default, ORCH-3078) one SCFQ group spans all flows of
the pool and a flow's weight is class weight x tenant weight, so classes share dispatches by
weight. With `wfq` off classes are served in strict precedence, each class a group of its
tenants weighted by tenant weight only, so tenants inside a class are still never starved
(OC-CORE-1004). Dispatch takes one task per call of `pop_next`: O(log flows).
"""

from __future__ import annotations

from .deadlines import Predictor
from .fairness import Wfq
from .placement import Replica, slot_counts
from .queue import Flow, FlowKey, PoolQueue, TaskEntry
from .quotas import TenantState, TokenBucket
from .types import PRIORITY_ORDER, RANK, ErrorCode, PoolSpec, Priority, TaskSpec


class PoolState:
    """Everything the scheduler keeps for one pool."""

    def __init__(self, spec: PoolSpec) -> None:
        if spec.capacity < 0:
            raise ValueError(f"pool {spec.pool_id}: capacity must not be negative")
        self.spec = spec
        self.queue = PoolQueue(spec.capacity, spec.class_capacity)
        self.replicas: list[Replica] = []
        self.draining = False
        self.predictor = Predictor()
        self.running = 0
        self.pinned_queued = 0  # queued tasks with a replica pin (0: dispatch skips the peek)
        self.tenants = {q.tenant: TenantState.for_quota(q) for q in spec.tenants}
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
        key = (task.tenant, task.priority)
        flow = self.queue.flows.get(key) or Flow(key, self.weight(key))
        return self._ahead(flow, flow.rank_new(abs_deadline, seq, self.spec.edf))

    def ahead_of(self, entry: TaskEntry) -> int:
        """Estimated tasks that dispatch before queued `entry` (its queue position)."""
        flow = self.queue.flows[entry.flow_key]
        return self._ahead(flow, flow.rank_of(entry))

    # -- queue operations --------------------------------------------------------------------

    def enqueue(self, entry: TaskEntry) -> None:
        if entry.spec.pin_replica is not None:
            self.pinned_queued += 1
        key = entry.flow_key
        flow = self.queue.flow(key, self.weight(key))
        self.queue.add(entry, flow, self.spec.edf)
        self.group(key[1]).activate(flow)

    def remove_queued(self, entry: TaskEntry) -> None:
        if entry.spec.pin_replica is not None:
            self.pinned_queued -= 1
        self.queue.drop_flow_if_idle(self.queue.discard(entry))

    def _next_group(self) -> Wfq | None:
        if self.spec.wfq:
            return self.groups[None]
        busy = [p for p in PRIORITY_ORDER if self.queue.depth(p)]
        return self.groups[busy[0]] if busy else None

    def peek_next(self) -> TaskEntry | None:
        """The task `pop_next` would return, still queued (to check where it may run)."""
        group = self._next_group()
        flow = group.peek(on_skip=self.queue.drop_flow_if_idle) if group is not None else None
        return flow.peek() if flow is not None else None

    def pop_next(self) -> TaskEntry | None:
        """Next task by WFQ (or class precedence), EDF/FIFO inside its flow."""
        group = self._next_group()
        if group is None:
            return None
        flow = group.pop(on_skip=self.queue.drop_flow_if_idle)
        if flow is None:
            return None
        entry = flow.pop()
        if entry.spec.pin_replica is not None:
            self.pinned_queued -= 1
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

    def mem_bytes(self, task: TaskSpec) -> int:
        """Memory a task holds against its tenant's cap: KV for every token it may use."""
        tokens = task.prompt_tokens + task.max_tokens
        return tokens * self.spec.kv_bytes_per_token + self.spec.scratch_bytes_per_task

    def retry_after_ms(self) -> int:
        """Expected wait for one slot to free up."""
        _, total = self.slots()
        return max(1, round(self.predictor.task_ms / max(1, total)))
