"""Hard preemption and ETA-aware eviction in the core (preemption.py, eviction.py).

Invariants of hard preemption, for any interleaving of admissions, dispatches, completions,
preemption passes and the engine's answers (interrupt or refusal):
- a victim ranks strictly below the class that preempts it, is not protected, not pinned, runs
  on a replica that proved interruptible decode, and never refused an interrupt before;
- at most one interrupt is under way per queued task of the preempting class, and no more in
  any rolling minute than `hard_max_per_min`;
- a requeued task frees its slot, waits at the head of its flow, and is dispatched again as
  `resumed`; slot and queue accounting stay exact throughout.
"""

from __future__ import annotations

import pytest
from _hypothesis_profiles import heavy
from hypothesis import given
from hypothesis import strategies as st

from llama_orch.reference_impl.core import Admitted, PreemptionMode, Priority
from llama_orch.reference_impl.core import testing as ct

INTER, BATCH = Priority.INTERACTIVE, Priority.BATCH


def _hard(**kw):
    return ct.pool(preemption=PreemptionMode.HARD, **kw)


def _busy(sched, prio=BATCH, n=2, now=0):
    tasks = [ct.task(priority=prio) for _ in range(n)]
    for t in tasks:
        ct.admitted(sched.admit(t, now))
    sched.dispatch(now)
    return tasks


@pytest.mark.req("ORCH-3086", "ORCH-3088")
def test_hard_preemption_needs_a_replica_that_proved_interruptible_decode() -> None:
    sched = ct.scheduler([_hard()], {"p:r0": 2})
    _busy(sched)
    ct.admitted(sched.admit(ct.task(priority=INTER), 1))
    assert sched.preempt_hard(1) == []  # nothing proven: refused, the urgent task waits
    sched.set_replica("p:r0", ready=True, interruptible=True)
    decisions = sched.preempt_hard(2)
    assert len(decisions) == 1 and decisions[0].for_priority is INTER
    assert sched.preempt_hard(3) == []  # one interrupt per waiting task, already under way


@pytest.mark.req("ORCH-3086", "ORCH-3087")
def test_a_requeued_task_frees_its_slot_and_resumes_first() -> None:
    sched = ct.scheduler([_hard()], {"p:r0": 1})
    sched.set_replica("p:r0", ready=True, interruptible=True)
    (victim,) = _busy(sched, n=1)
    other = ct.task(priority=BATCH)
    ct.admitted(sched.admit(other, 1))
    urgent = ct.task(priority=INTER)
    ct.admitted(sched.admit(urgent, 2))
    (decision,) = sched.preempt_hard(2)
    assert decision.task_id == victim.task_id
    assert sched.requeue(victim.task_id, 3)
    assert sched.counters.preemptions[("p", "hard")] == 1
    assert sched.task_state(victim.task_id) == "queued"
    (first,) = sched.dispatch(4)
    assert first.task_id == urgent.task_id and not first.resumed
    sched.complete(urgent.task_id, 5, 1, True)
    (again,) = sched.dispatch(6)
    assert again.task_id == victim.task_id and again.resumed  # ahead of the older batch task
    assert sched.requeue(victim.task_id, 7) is False  # not being preempted: nothing to do


@pytest.mark.req("ORCH-3089")
def test_guards_protect_classes_and_cap_interrupts_per_minute() -> None:
    protected = ct.scheduler([_hard(hard_protect=frozenset({BATCH, INTER}))], {"p:r0": 1})
    protected.set_replica("p:r0", ready=True, interruptible=True)
    _busy(protected, n=1)
    ct.admitted(protected.admit(ct.task(priority=INTER), 1))
    assert protected.preempt_hard(1) == []

    capped = ct.scheduler([_hard(hard_max_per_min=1)], {"p:r0": 2})
    capped.set_replica("p:r0", ready=True, interruptible=True)
    _busy(capped, n=2)
    for now in (1, 2):
        ct.admitted(capped.admit(ct.task(priority=INTER), now))
    assert len(capped.preempt_hard(2)) == 1  # two waiting, the cap allows one a minute
    assert capped.preempt_hard(30_000) == []
    assert len(capped.preempt_hard(60_002)) == 1


@pytest.mark.req("ORCH-3086", "ORCH-3090")
def test_a_refused_interrupt_is_never_asked_again() -> None:
    sched = ct.scheduler([_hard()], {"p:r0": 1})
    sched.set_replica("p:r0", ready=True, interruptible=True)
    (victim,) = _busy(sched, n=1)
    ct.admitted(sched.admit(ct.task(priority=INTER), 1))
    (decision,) = sched.preempt_hard(1)
    sched.preempt_refused(decision.task_id)
    assert sched.preempt_hard(2) == []
    assert sched.task_state(victim.task_id) == "running"
    assert sched.counters.total("preemptions") == 0


ops = st.lists(
    st.one_of(
        st.tuples(st.just("admit"), st.sampled_from(list(Priority)), st.booleans()),
        st.tuples(st.just("dispatch")),
        st.tuples(st.just("complete"), st.integers(0, 50)),
        st.tuples(st.just("preempt"), st.booleans()),
    ),
    max_size=60,
)


@pytest.mark.req("ORCH-3086", "ORCH-3089")
@heavy()
@given(ops=ops, protect=st.sampled_from([frozenset(), frozenset({INTER})]), cap=st.integers(1, 4))
def test_hard_preemption_invariants(ops, protect, cap) -> None:
    sched = ct.scheduler(
        [_hard(hard_protect=protect, hard_max_per_min=cap)], {"p:r0": 1, "p:r1": 2}
    )
    sched.set_replica("p:r0", ready=True, interruptible=True)  # p:r1 never proved it
    prio: dict[str, Priority] = {}
    where: dict[str, str] = {}
    refused: set[str] = set()
    interrupts = 0
    for now, op in enumerate(ops):
        if op[0] == "admit":
            t = ct.task(priority=op[1], pin_replica="p:r1" if op[2] else None)
            if isinstance(sched.admit(t, now), Admitted):
                prio[t.task_id] = t.priority
        elif op[0] == "dispatch":
            for d in sched.dispatch(now):
                where[d.task_id] = d.replica_id
        elif op[0] == "complete" and where:
            tid = sorted(where)[op[1] % len(where)]
            sched.complete(tid, now, 1, True)
            del where[tid]
        elif op[0] == "preempt":
            snap = sched.snapshot(now)
            waiting = {p: n for p, n in snap.pools["p"].queue_depth.items()}
            for d in sched.preempt_hard(now):
                interrupts += 1
                assert d.replica_id == "p:r0" and where.get(d.task_id) == "p:r0"
                victim = prio[d.task_id]
                assert victim not in protect and d.task_id not in refused
                assert victim is BATCH and d.for_priority is INTER and waiting[INTER] > 0
                if op[1]:
                    assert sched.requeue(d.task_id, now)
                    del where[d.task_id]
                else:
                    sched.preempt_refused(d.task_id)
                    refused.add(d.task_id)
        snap = sched.snapshot(now)
        busy = {rid: r.slots_busy for rid, r in snap.replicas.items()}
        assert busy == {r: sum(1 for w in where.values() if w == r) for r in busy}
        assert all(r.slots_busy <= r.slots_total for r in snap.replicas.values())
    assert interrupts <= cap * (1 + len(ops) // 60_000)


@pytest.mark.req("ORCH-3080", "ORCH-3082", "ORCH-3085")
def test_soft_preemption_gives_up_a_doomed_task_first_else_the_latest_eta() -> None:
    sched = ct.scheduler([ct.pool(capacity=3, reject_infeasible=False)], {"p:r0": 0})
    doomed = ct.task(priority=BATCH, deadline_ms=1)  # cannot start before its deadline
    fresh = [ct.task(priority=BATCH) for _ in range(2)]
    for t in (fresh[0], doomed, fresh[1]):
        ct.admitted(sched.admit(t, 0))
    out = ct.admitted(sched.admit(ct.task(priority=INTER), 1))
    assert [e.task_id for e in out.evicted] == [doomed.task_id]
    out = ct.admitted(sched.admit(ct.task(priority=INTER), 2))
    assert [e.task_id for e in out.evicted] == [fresh[1].task_id]  # the latest predicted start
