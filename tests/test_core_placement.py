"""Core placement: Ready replicas of the task's own pool only, least load, session affinity."""

from __future__ import annotations

import _hypothesis_profiles  # noqa: F401  (loads the Hypothesis budget first)
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llama_orch.reference_impl.core import Admitted
from llama_orch.reference_impl.core import testing as ct

REPLICAS = ["p:r0", "p:r1", "p:r2", "q:r0", "q:r1"]

ops_strategy = st.lists(
    st.one_of(
        st.tuples(st.just("admit"), st.sampled_from("pq"), st.integers(0, 3)),
        st.tuples(st.just("dispatch")),
        st.tuples(st.just("complete"), st.integers(0, 30), st.booleans()),
        st.tuples(
            st.just("replica"),
            st.sampled_from(REPLICAS),
            st.booleans(),
            st.integers(0, 3),
            st.booleans(),
        ),
        st.tuples(st.just("drain"), st.sampled_from("pq"), st.booleans()),
    ),
    max_size=60,
)


@pytest.mark.req(
    "OC-CORE-1010", "OC-CORE-1012", "OC-CORE-1013", "ORCH-3008", "ORCH-3009", "ORCH-3010"
)
@given(slots=st.lists(st.integers(0, 3), min_size=5, max_size=5), ops=ops_strategy)
def test_dispatch_targets_ready_least_loaded_replica_of_own_pool(
    slots: list[int], ops: list[tuple]
) -> None:
    """Every dispatch: a Ready replica of the task's pool with a free slot; the session's
    replica when it qualifies (kv_warmth true), else the least loaded, ties by id."""
    sched = ct.scheduler(
        [ct.pool("p"), ct.pool("q")], dict(zip(REPLICAS, slots, strict=True)), ready=False
    )
    sched.set_replica("p:r0", ready=True)
    sched.set_replica("q:r0", ready=True)
    pool_of: dict[str, str] = {}
    session_of: dict[str, str] = {}
    affinity: dict[str, str] = {}
    running: list[tuple[str, str]] = []
    for now, op in enumerate(ops):
        if op[0] == "admit":
            t = ct.task(pool_id=op[1], session_id=f"s{op[2]}")
            if isinstance(sched.admit(t, now), Admitted):
                pool_of[t.task_id], session_of[t.task_id] = op[1], t.session_id
        elif op[0] == "dispatch":
            _check_dispatches(sched, now, pool_of, session_of, affinity, running)
        elif op[0] == "complete" and running:
            tid, rid = running.pop(op[1] % len(running))
            sched.complete(tid, now, 3, op[2])
            if op[2]:
                affinity[session_of[tid]] = rid
        elif op[0] == "replica":
            _, rid, ready, n, failed = op
            sched.set_replica(rid, ready=ready, slots_total=n, failed=failed)
        elif op[0] == "drain":
            sched.set_draining(op[1], op[2])


def _check_dispatches(sched, now, pool_of, session_of, affinity, running) -> None:
    snap = sched.snapshot(now)
    busy = {rid: r.slots_busy for rid, r in snap.replicas.items()}
    for d in sched.dispatch(now):
        assert d.pool_id == pool_of[d.task_id] == d.replica_id.split(":")[0]
        pool_snap = snap.pools[d.pool_id]
        assert not pool_snap.draining

        def candidate(rid: str, pool_id: str = d.pool_id) -> bool:
            r = snap.replicas[rid]
            return r.pool_id == pool_id and r.ready and busy[rid] < r.slots_total

        assert candidate(d.replica_id)
        warm_rid = affinity.get(session_of[d.task_id])
        if warm_rid is not None and candidate(warm_rid):
            assert (d.replica_id, d.kv_warmth) == (warm_rid, True)
        else:
            assert not d.kv_warmth
            others = [r for r in snap.replicas if candidate(r)]
            best = min(others, key=lambda r: (busy[r] / snap.replicas[r].slots_total, r))
            assert d.replica_id == best
        busy[d.replica_id] += 1
        running.append((d.task_id, d.replica_id))


@pytest.mark.req("OC-CORE-1010", "ORCH-3010")
def test_nothing_dispatches_before_a_replica_is_ready() -> None:
    sched = ct.scheduler([ct.pool()], {"p:r0": 2, "p:r1": 2}, ready=False)
    sched.set_replica("p:r1", ready=True)
    t = ct.task()
    ct.admitted(sched.admit(t, 0))
    sched.set_replica("p:r1", ready=False)  # it went back to loading
    assert sched.dispatch(1) == []
    sched.set_replica("p:r0", ready=True)
    assert [(d.task_id, d.replica_id) for d in sched.dispatch(2)] == [(t.task_id, "p:r0")]


@pytest.mark.req("OC-CORE-1013", "ORCH-3009")
def test_session_returns_to_its_replica_or_fails_over_cold() -> None:
    """Warm while the last replica is Ready with a slot; otherwise placed cold elsewhere."""
    sched = ct.scheduler([ct.pool()], {"p:r0": 1, "p:r1": 1})
    first = ct.task(session_id="s")
    ct.admitted(sched.admit(first, 0))
    sched.admit(ct.task(), 0)  # occupies the other replica
    placed = {d.task_id: d for d in sched.dispatch(0)}
    home = placed[first.task_id].replica_id
    for d in placed.values():
        sched.complete(d.task_id, 5, 4, True)
    assert sched.session("s", 5).kv_bytes > 0
    again = ct.task(session_id="s")
    ct.admitted(sched.admit(again, 6))
    (d,) = sched.dispatch(6)
    assert (d.replica_id, d.kv_warmth) == (home, True)
    sched.complete(d.task_id, 7, 4, True)
    assert sched.session("s", 7).kv_warmth is True
    sched.set_replica(home, ready=False)
    third = ct.task(session_id="s")
    ct.admitted(sched.admit(third, 8))
    (d,) = sched.dispatch(8)
    assert d.replica_id != home and d.kv_warmth is False


@pytest.mark.req("OC-CORE-1010")
@given(
    pins=st.lists(st.sampled_from([None, "p:r0", "p:r1"]), min_size=1, max_size=25),
    cancel=st.sets(st.integers(0, 24), max_size=6),
    order=st.randoms(use_true_random=False),
    edf=st.booleans(),
)
def test_pinned_tasks_run_only_on_their_replica_and_all_of_them_run(
    pins, cancel, order, edf
) -> None:
    """Replica pinning: a pinned task is placed on its replica and nowhere else; the queue
    never deadlocks (queued cancels included), so completing whatever runs eventually runs
    every task that was not cancelled."""
    sched = ct.scheduler([ct.pool(edf=edf)], {"p:r0": 1, "p:r1": 2})
    deadline = {"deadline_ms": 10_000_000} if edf else {}
    tasks = [ct.task(pin_replica=pin, **deadline) for pin in pins]
    for t in tasks:
        ct.admitted(sched.admit(t, 0))
    done = {tasks[i].task_id for i in cancel if i < len(tasks)}
    for tid in done:
        assert sched.cancel(tid, 0).value == "queued"
    pin_of = {t.task_id: t.pin_replica for t in tasks}
    running: list[str] = []
    now = 1
    while len(done) < len(tasks):
        for d in sched.dispatch(now):
            if pin_of[d.task_id] is not None:
                assert d.replica_id == pin_of[d.task_id]
            running.append(d.task_id)
        assert running, "queued tasks but nothing running: the pins deadlocked the queue"
        order.shuffle(running)
        finished = running.pop()
        sched.complete(finished, now, 1, True)
        done.add(finished)
        now += 1
    pool = sched._state.pools["p"]
    assert pool.pinned_queued == 0 and pool.pinned == {} and len(pool.queue) == 0


@pytest.mark.req("OC-CORE-1010")
def test_a_pin_must_name_a_replica_of_the_pool_that_can_become_ready() -> None:
    sched = ct.scheduler([ct.pool(), ct.pool("q")], {"p:r0": 1, "q:r0": 1})
    bad = ct.rejected(sched.admit(ct.task(pin_replica="q:r0"), 0))
    assert (bad.code.value, bad.status, bad.field) == (
        "INVALID_PARAMS",
        400,
        "placement.replica_id",
    )
    unknown = ct.rejected(sched.admit(ct.task(pin_replica="p:r9"), 0))
    assert unknown.field == "placement.replica_id"
    sched.set_replica("p:r0", ready=False, failed=True)
    gone = ct.rejected(sched.admit(ct.task(pin_replica="p:r0"), 0))
    assert (gone.code.value, gone.status, gone.retriable) == ("POOL_UNAVAILABLE", 503, True)


@pytest.mark.req("OC-CORE-1010")
def test_a_pinned_head_waits_for_its_busy_replica_even_when_another_is_free() -> None:
    sched = ct.scheduler([ct.pool()], {"p:r0": 1, "p:r1": 1})
    first = ct.task(pin_replica="p:r0")
    second = ct.task(pin_replica="p:r0")
    ct.admitted(sched.admit(first, 0))
    ct.admitted(sched.admit(second, 0))
    assert [(d.task_id, d.replica_id) for d in sched.dispatch(1)] == [(first.task_id, "p:r0")]
    assert sched.dispatch(2) == []  # p:r1 is free, but the task is pinned to p:r0
    sched.complete(first.task_id, 3, 1, True)
    assert [(d.task_id, d.replica_id) for d in sched.dispatch(4)] == [(second.task_id, "p:r0")]


@pytest.mark.req("OC-CORE-1010")
def test_a_waiting_pinned_task_does_not_hold_up_tasks_that_can_run_elsewhere() -> None:
    sched = ct.scheduler([ct.pool()], {"p:r0": 1, "p:r1": 2})
    busy = ct.task(pin_replica="p:r0")
    ct.admitted(sched.admit(busy, 0))
    assert [d.replica_id for d in sched.dispatch(1)] == ["p:r0"]
    waiting, other, free = (
        ct.task(pin_replica="p:r0"),
        ct.task(pin_replica="p:r1"),
        ct.task(),
    )
    for t in (waiting, other, free):
        ct.admitted(sched.admit(t, 2))
    assert sched.queue_position(waiting.task_id) == 0
    placed = {d.task_id: d.replica_id for d in sched.dispatch(3)}
    assert placed == {other.task_id: "p:r1", free.task_id: "p:r1"}
    assert sched.task_state(waiting.task_id) == "queued"
    sched.complete(busy.task_id, 4, 1, True)
    assert [(d.task_id, d.replica_id) for d in sched.dispatch(5)] == [(waiting.task_id, "p:r0")]


@pytest.mark.req("ORCH-3052")
def test_admission_follows_the_context_the_pool_manager_reports() -> None:
    sched = ct.scheduler([ct.pool(ctx_max=8192)])
    sched.set_ctx_max("p", 1000)  # a split pool's KV cap
    refused = ct.rejected(sched.admit(ct.task(ctx=2048), 0))
    assert (refused.status, refused.field) == (400, "ctx")
    ct.admitted(sched.admit(ct.task(ctx=1000, max_tokens=16), 0))
