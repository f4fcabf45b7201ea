"""Core queues: bounds, arrival order per class and tenant, flow structure, enqueue cost."""

from __future__ import annotations

import _hypothesis_profiles  # noqa: F401  (loads the Hypothesis budget first)
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llama_orch.reference_impl.core import (
    PRIORITY_ORDER,
    Admitted,
    FullPolicy,
    PreemptionMode,
    Priority,
    TaskSpec,
)
from llama_orch.reference_impl.core import testing as ct
from llama_orch.reference_impl.core.queue import Flow, TaskEntry

priorities = st.sampled_from(list(Priority))
tenants = st.sampled_from(["a", "b", "c"])
caps = st.one_of(st.none(), st.integers(0, 5))


@pytest.mark.req("OC-CORE-1001", "ORCH-3004")
@given(
    capacity=st.integers(0, 6),
    class_caps=st.tuples(caps, caps),
    policy=st.sampled_from(list(FullPolicy)),
    mode=st.sampled_from(list(PreemptionMode)),
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("admit"), priorities, tenants),
            st.tuples(st.just("cancel"), st.integers(0, 40)),
            st.tuples(st.just("dispatch")),
            st.tuples(st.just("complete")),
        ),
        max_size=40,
    ),
)
def test_queue_bounds_are_never_exceeded(
    capacity: int,
    class_caps: tuple[int | None, int | None],
    policy: FullPolicy,
    mode: PreemptionMode,
    ops: list[tuple],
) -> None:
    """Whatever arrives, no class queue and no pool holds more than its capacity."""
    class_capacity = dict(zip(PRIORITY_ORDER, class_caps, strict=True))
    spec = ct.pool(
        capacity=capacity, class_capacity=class_capacity, full_policy=policy, preemption=mode
    )
    sched = ct.scheduler([spec], {"p:r0": 1})
    ids: list[str] = []
    for now, op in enumerate(ops):
        if op[0] == "admit":
            t = ct.task(priority=op[1], tenant=op[2])
            ids.append(t.task_id)
            sched.admit(t, now)
        elif op[0] == "cancel" and ids:
            sched.cancel(ids[op[1] % len(ids)], now)
        elif op[0] == "dispatch":
            sched.dispatch(now)
        elif op[0] == "complete":
            for tid in sched.tasks_on("p:r0"):
                sched.complete(tid, now, 1, True)
        depth = sched.snapshot(now).pools["p"].queue_depth
        assert sum(depth.values()) <= capacity
        for p, cap in class_capacity.items():
            assert depth[p] <= (capacity if cap is None else cap)


def _drain_order(sched, now: int) -> list[str]:
    """Dispatch everything through one slot, completing each task at once."""
    order: list[str] = []
    while True:
        started = sched.dispatch(now)
        if not started:
            return order
        for d in started:
            order.append(d.task_id)
            sched.complete(d.task_id, now, 1, True)


@pytest.mark.req("OC-CORE-1001", "OC-CORE-1003", "OC-CORE-1004", "ORCH-3004")
@given(
    arrivals=st.lists(st.tuples(priorities, tenants), max_size=40),
    wfq=st.booleans(),
    budget=st.one_of(st.none(), st.integers(100_000, 200_000)),
)
def test_each_tenant_and_class_leaves_in_arrival_order(
    arrivals: list[tuple[Priority, str]], wfq: bool, budget: int | None
) -> None:
    """FIFO within (tenant, class); a shared relative deadline keeps EDF in arrival order."""
    sched = ct.scheduler([ct.pool(wfq=wfq)], {"p:r0": 1}, ready=False)
    sched.set_replica("p:r0", ready=True, slots_total=0)  # Ready, but no free slot yet
    tasks: list[TaskSpec] = []
    for now, (prio, tenant) in enumerate(arrivals):
        t = ct.task(priority=prio, tenant=tenant, deadline_ms=budget)
        assert isinstance(sched.admit(t, now), Admitted)
        tasks.append(t)
    sched.set_replica("p:r0", ready=True, slots_total=1)
    order = _drain_order(sched, len(arrivals))
    assert sorted(order) == sorted(t.task_id for t in tasks)
    by_id = {t.task_id: t for t in tasks}
    for key in {(t.tenant, t.priority) for t in tasks}:
        expected = [t.task_id for t in tasks if (t.tenant, t.priority) == key]
        assert [i for i in order if (by_id[i].tenant, by_id[i].priority) == key] == expected
    if not wfq:  # strict precedence: every interactive task leaves before any batch task
        ranks = [PRIORITY_ORDER.index(by_id[i].priority) for i in order]
        assert ranks == sorted(ranks)


def _entry(seq: int, deadline: int | None) -> TaskEntry:
    spec = ct.task(task_id=f"e{seq}")
    return TaskEntry(spec, seq, 0, deadline, 0)


@pytest.mark.req("OC-CORE-1003")
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("push"), st.one_of(st.none(), st.integers(0, 20))),
            st.tuples(st.just("pop")),
            st.tuples(st.just("remove"), st.integers(0, 200)),
        ),
        max_size=120,
    )
)
def test_flow_matches_a_sorted_model(ops: list[tuple]) -> None:
    """Deadline lane (earliest deadline, then arrival) before FIFO lane; removal anywhere."""
    flow = Flow(("t", Priority.BATCH), 1)
    live: dict[int, TaskEntry] = {}
    seq = 0
    removed = False

    def key(e: TaskEntry) -> tuple:
        return (0, e.abs_deadline, e.seq) if e.abs_deadline is not None else (1, e.seq)

    for op in ops:
        if op[0] == "push":
            e = _entry(seq, op[1])
            seq += 1
            if not removed:
                assert flow.rank_new(e.abs_deadline, e.seq, True) == sum(
                    1 for x in live.values() if key(x) < key(e)
                )
            flow.push(e, use_edf=True)
            live[e.seq] = e
        elif op[0] == "pop" and live:
            expected = min(live.values(), key=key)
            assert flow.pop() is expected
            del live[expected.seq]
        elif op[0] == "remove" and live:
            victim = sorted(live)[op[1] % len(live)]
            flow.remove(live.pop(victim))
            removed = True
        assert len(flow) == len(live)
    for e in live.values():  # exact until something is removed out of order, then an upper bound
        ahead = sum(1 for x in live.values() if key(x) < key(e))
        assert flow.rank_of(e) == ahead if not removed else flow.rank_of(e) >= ahead
    remaining = [flow.pop() for _ in range(len(live))]
    assert remaining == sorted(live.values(), key=key)
