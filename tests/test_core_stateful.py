"""Stateful model test of the core: random interleavings of every Scheduler operation.

The model tracks each admitted task's state. Checked after every step: every admitted task
is in exactly the state the model says, and reaches a terminal state (done, canceled, expired,
evicted) exactly once; a cancelled task is never dispatched; dispatch never fills a replica
beyond its slots or uses an unready replica; queue bounds hold.
"""

from __future__ import annotations

import _hypothesis_profiles  # noqa: F401  (loads the Hypothesis budget first)
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from llama_orch.reference_impl.core import (
    PRIORITY_ORDER,
    Admitted,
    CancelResult,
    FullPolicy,
    PreemptionMode,
    Priority,
    TenantQuota,
)
from llama_orch.reference_impl.core import testing as ct

REPLICAS = {"p:r0": 1, "p:r1": 2, "q:r0": 1}
LIVE = {"queued", "running"}


class CoreMachine(RuleBasedStateMachine):
    tasks = Bundle("tasks")

    @initialize(
        policy_p=st.sampled_from(list(FullPolicy)),
        policy_q=st.sampled_from(list(FullPolicy)),
        mode=st.sampled_from(list(PreemptionMode)),
        wfq=st.booleans(),
    )
    def setup(
        self, policy_p: FullPolicy, policy_q: FullPolicy, mode: PreemptionMode, wfq: bool
    ) -> None:
        caps = {Priority.INTERACTIVE: 2, Priority.BATCH: None}
        tenants = (TenantQuota("a", weight=2, max_concurrent=5), TenantQuota("b", rps=50.0))
        self.pools = {
            "p": ct.pool(
                "p", capacity=4, full_policy=policy_p, preemption=mode, wfq=wfq, tenants=tenants
            ),
            "q": ct.pool(
                "q", capacity=3, class_capacity=caps, full_policy=policy_q, wall_ms=400, idle_ms=60
            ),
        }
        self.sched = ct.scheduler(list(self.pools.values()), dict(REPLICAS))
        self.now = 0
        self.state: dict[str, str] = {}
        self.pool_of: dict[str, str] = {}
        self.replica_of: dict[str, str] = {}
        self.canceled: set[str] = set()

    def _end(self, task_id: str, state: str) -> None:
        assert self.state[task_id] in LIVE, (task_id, self.state[task_id], state)
        self.state[task_id] = state

    @rule(gap=st.integers(0, 120))
    def tick(self, gap: int) -> None:
        self.now += gap

    @rule(
        target=tasks,
        pool=st.sampled_from("pq"),
        prio=st.sampled_from(list(Priority)),
        tenant=st.sampled_from("abc"),
        session=st.integers(0, 3),
        deadline=st.one_of(st.none(), st.integers(1, 5000)),
    )
    def admit(self, pool: str, prio: Priority, tenant: str, session: int, deadline):
        t = ct.task(
            pool_id=pool,
            priority=prio,
            tenant=tenant,
            session_id=f"s{session}",
            deadline_ms=deadline,
            max_tokens=4,
        )
        result = self.sched.admit(t, self.now)
        if not isinstance(result, Admitted):
            assert self.sched.task_state(t.task_id) is None
            return multiple()
        for ev in result.evicted:
            assert self.pool_of[ev.task_id] == pool
            self._end(ev.task_id, "evicted")
        self.state[t.task_id] = "queued"
        self.pool_of[t.task_id] = pool
        return t.task_id

    @rule()
    def dispatch(self) -> None:
        before = self.sched.snapshot(self.now).replicas
        started = self.sched.dispatch(self.now)
        added: dict[str, int] = {}
        for d in started:
            assert d.task_id not in self.canceled
            assert self.state[d.task_id] == "queued"
            assert self.pool_of[d.task_id] == d.pool_id == before[d.replica_id].pool_id
            assert before[d.replica_id].ready
            self.state[d.task_id] = "running"
            self.replica_of[d.task_id] = d.replica_id
            added[d.replica_id] = added.get(d.replica_id, 0) + 1
        for rid, n in added.items():
            assert before[rid].slots_busy + n <= before[rid].slots_total

    @rule(task_id=tasks)
    def cancel(self, task_id: str) -> None:
        result = self.sched.cancel(task_id, self.now)
        prior = self.state[task_id]
        expected = {"queued": CancelResult.QUEUED, "running": CancelResult.RUNNING}
        assert result is expected.get(prior, CancelResult.DONE)
        if prior in LIVE:
            self._end(task_id, "canceled")
            self.canceled.add(task_id)

    @rule(task_id=tasks, ok=st.booleans())
    def complete(self, task_id: str, ok: bool) -> None:
        self.sched.complete(task_id, self.now, 3, ok)
        if self.state[task_id] == "running":
            self._end(task_id, "done")

    @rule(task_id=tasks)
    def progress(self, task_id: str) -> None:
        self.sched.progress(task_id, self.now)

    @rule()
    def expired(self) -> None:
        for timeout in self.sched.expired(self.now):
            assert timeout.running is (self.state[timeout.task_id] == "running")
            self._end(timeout.task_id, "expired")

    @rule(
        rid=st.sampled_from(sorted(REPLICAS)),
        ready=st.booleans(),
        slots=st.one_of(st.none(), st.integers(0, 3)),
        failed=st.one_of(st.none(), st.booleans()),
    )
    def set_replica(self, rid: str, ready: bool, slots: int | None, failed) -> None:
        self.sched.set_replica(rid, ready=ready, slots_total=slots, failed=failed)

    @precondition(lambda self: self.now % 7 == 0)
    @rule(pool=st.sampled_from("pq"), draining=st.booleans())
    def set_draining(self, pool: str, draining: bool) -> None:
        for ev in self.sched.set_draining(pool, draining):
            self._end(ev.task_id, "evicted")

    @invariant()
    def states_match_the_model(self) -> None:
        for task_id, state in self.state.items():
            assert self.sched.task_state(task_id) == state

    @invariant()
    def counts_and_bounds_hold(self) -> None:
        snap = self.sched.snapshot(self.now)
        for pid, spec in self.pools.items():
            queued = [t for t, s in self.state.items() if s == "queued" and self.pool_of[t] == pid]
            depth = snap.pools[pid].queue_depth
            assert sum(depth.values()) == len(queued) <= spec.capacity
            for p in PRIORITY_ORDER:
                cap = spec.class_capacity.get(p)
                assert depth[p] <= (spec.capacity if cap is None else cap)
        for rid, view in snap.replicas.items():
            running = [t for t, s in self.state.items() if s == "running"]
            assert view.slots_busy == sum(1 for t in running if self.replica_of[t] == rid)

    def teardown(self) -> None:
        """Every task still live can be cancelled, and then every admitted task has ended."""
        if not hasattr(self, "sched"):
            return
        for task_id, state in list(self.state.items()):
            if state in LIVE:
                assert self.sched.cancel(task_id, self.now) is not CancelResult.UNKNOWN
                self._end(task_id, "canceled")
        assert all(s not in LIVE for s in self.state.values())
        assert all(self.sched.task_state(t) == s for t, s in self.state.items())


@pytest.mark.req("OC-CORE-1001", "OC-CORE-1005", "OC-CORE-1010", "ORCH-3017", "ORCH-3026")
class TestCoreStateMachine(CoreMachine.TestCase):
    def test_core_state_machine(self) -> None:
        """Runs the machine under the active Hypothesis profile."""
        self.runTest()
