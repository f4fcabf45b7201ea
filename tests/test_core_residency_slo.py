"""KV residency LRU, the SLO circuit breaker and placement ties in the core.

- KV residency (ORCH-3022): per replica, at most slots_total sessions hold KV; the least
  recently used one loses it first (its affinity too); a property over random session turns.
- SLO breaker (ORCH-3040): opens once enough fresh first tokens of the SLO class missed it,
  sheds only the configured classes, closes when fresh samples meet the SLO or age out.
- Placement (ORCH-3091, ORCH-3092): occupancy first, the topology hint only between equal
  candidates, the replica id last.
"""

from __future__ import annotations

import pytest
from _hypothesis_profiles import heavy
from hypothesis import given
from hypothesis import strategies as st

from llama_orch.reference_impl.core import ErrorCode, Priority, ReplicaSpec, Scheduler, SloBreaker
from llama_orch.reference_impl.core import testing as ct
from llama_orch.reference_impl.core.kv_residency import KvResidency
from llama_orch.reference_impl.core.placement import Replica, choose
from llama_orch.reference_impl.core.types import SessionPolicy

INTER, BATCH = Priority.INTERACTIVE, Priority.BATCH


@pytest.mark.req("ORCH-3022")
@given(
    turns=st.lists(st.tuples(st.integers(0, 7), st.sampled_from(["r0", "r1"])), max_size=80),
    capacity=st.integers(1, 4),
)
def test_kv_residency_holds_at_most_capacity_sessions_per_replica_lru(turns, capacity) -> None:
    kv = KvResidency()
    model: dict[str, list[str]] = {"r0": [], "r1": []}  # LRU first
    for session, replica in turns:
        sid = f"s{session}"
        for lane in model.values():
            if sid in lane:
                lane.remove(sid)
        model[replica].append(sid)
        want_evicted = []
        while len(model[replica]) > capacity:
            want_evicted.append(model[replica].pop(0))
        assert kv.place(replica, sid, capacity) == want_evicted
        for rid, lane in model.items():
            assert kv.resident(rid) == lane


@pytest.mark.req("ORCH-3022", "ORCH-3009")
def test_a_session_whose_kv_was_evicted_is_placed_cold() -> None:
    sched = ct.scheduler([ct.pool()], {"p:r0": 1}, sessions=SessionPolicy())
    now = 0

    def turn(session: str) -> bool:
        nonlocal now
        t = ct.task(session_id=session)
        ct.admitted(sched.admit(t, now))
        (d,) = sched.dispatch(now)
        sched.complete(t.task_id, now + 1, 2, True)
        now += 2
        return d.kv_warmth

    assert turn("a") is False
    assert turn("a") is True
    assert sched.session("a", now).kv_bytes > 0
    turn("b")  # one slot: b's KV pushes a's out
    assert sched.session("a", now).kv_bytes == 0
    assert turn("a") is False


def _breaker_sched(**kw) -> Scheduler:
    breaker = SloBreaker(first_token_ms=100, window=4, min_samples=2, horizon_ms=1_000, **kw)
    return ct.scheduler([ct.pool(slo_breaker=breaker)], {"p:r0": 4})


def _first_token(sched: Scheduler, wait_ms: int, now: int) -> None:
    t = ct.task(priority=INTER)
    ct.admitted(sched.admit(t, now))
    sched.dispatch(now)
    sched.progress(t.task_id, now + wait_ms)
    sched.complete(t.task_id, now + wait_ms, 1, True)


@pytest.mark.req("ORCH-3040")
def test_slo_breaker_sheds_batch_while_first_tokens_miss_and_closes_after() -> None:
    sched = _breaker_sched()
    _first_token(sched, 500, 0)
    ct.admitted(sched.admit(ct.task(priority=BATCH), 600))  # one miss is not enough
    _first_token(sched, 500, 600)
    shed = ct.rejected(sched.admit(ct.task(priority=BATCH), 1_200))
    assert (shed.code, shed.status, shed.retriable) == (ErrorCode.ADMISSION_REJECT, 429, True)
    assert shed.retry_after_ms and shed.retry_after_ms > 0
    ct.admitted(sched.admit(ct.task(priority=INTER), 1_200))  # the SLO class is not shed
    for k in range(3):
        _first_token(sched, 10, 1_300 + k)
    ct.admitted(sched.admit(ct.task(priority=BATCH), 1_400))  # fresh samples meet the SLO
    sched2 = _breaker_sched()
    _first_token(sched2, 500, 0)
    _first_token(sched2, 500, 1)
    ct.rejected(sched2.admit(ct.task(priority=BATCH), 600))
    ct.admitted(sched2.admit(ct.task(priority=BATCH), 2_000))  # the misses aged out


@pytest.mark.req("ORCH-3091", "ORCH-3092", "OC-CORE-1012")
def test_placement_uses_occupancy_then_topology_then_id() -> None:
    def replica(rid: str, slots: int, busy: int, rank: int) -> Replica:
        r = Replica(ReplicaSpec(rid, "p", slots, topology_rank=rank), slots, ready=True)
        r.busy = {f"{rid}-{i}" for i in range(busy)}
        return r

    a, b = replica("a", 4, 1, 1), replica("b", 4, 2, 0)
    assert choose([a, b], None) == (a, False)  # occupancy wins over a better topology
    c, d = replica("c", 4, 1, 1), replica("d", 4, 1, 0)
    assert choose([c, d], None) == (d, False)  # equal occupancy: NVLink (0) before PCIe (1)
    e, f = replica("e", 2, 1, 0), replica("f", 4, 2, 0)
    assert choose([f, e], None) == (e, False)  # all equal: the lower replica id
    assert choose([c, d], "c") == (c, True)  # session affinity first


@heavy()
@given(
    deadlines=st.lists(st.one_of(st.none(), st.integers(1_000, 60_000)), min_size=1, max_size=30)
)
@pytest.mark.req("ORCH-3084", "ORCH-3083")
def test_edf_orders_one_flow_by_deadline_then_arrival(deadlines) -> None:
    """With EDF on (the default), deadline tasks leave in deadline order ahead of the rest."""
    sched = ct.scheduler([ct.pool()], {"p:r0": 0})
    tasks = [ct.task(tenant="t", deadline_ms=d) for d in deadlines]
    for t in tasks:
        ct.admitted(sched.admit(t, 0))
    sched.set_replica("p:r0", ready=True, slots_total=len(tasks))
    got = [d.task_id for d in sched.dispatch(1)]
    with_deadline = sorted(
        (t for t in tasks if t.deadline_ms), key=lambda t: (t.deadline_ms, tasks.index(t))
    )
    want = [t.task_id for t in with_deadline] + [t.task_id for t in tasks if not t.deadline_ms]
    assert got == want
