"""Core admission: full-queue policies, soft preemption, guardrails, readiness, deadlines."""

from __future__ import annotations

import _hypothesis_profiles  # noqa: F401  (loads the Hypothesis budget first)
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llama_orch.reference_impl.core import (
    PRIORITY_ORDER,
    Admitted,
    ErrorCode,
    FullPolicy,
    PreemptionMode,
    Priority,
    Rejected,
    on_time_probability,
)
from llama_orch.reference_impl.core import testing as ct

INTER, BATCH = Priority.INTERACTIVE, Priority.BATCH


def _expected(
    queue: list[tuple[str, Priority]],
    prio: Priority,
    capacity: int,
    caps: dict[Priority, int | None],
    policy: FullPolicy,
    mode: PreemptionMode,
) -> tuple[str, str | None, ErrorCode | None, str | None]:
    """The spec's table (specs/10 section 2) plus soft preemption, written independently:
    ("admit", victim, code, reason) or ("reject", None, code, None)."""
    in_class = [t for t, p in queue if p is prio]
    if caps[prio] is not None and len(in_class) >= caps[prio]:
        scope = "class"
    elif len(queue) >= capacity:
        scope = "pool"
    else:
        return ("admit", None, None, None)
    lower = [t for t, p in queue if PRIORITY_ORDER.index(p) > PRIORITY_ORDER.index(prio)]
    if scope == "pool" and lower and mode is not PreemptionMode.DISABLED:
        if policy is not FullPolicy.SHED_LOW_PRIORITY:
            return ("admit", lower[-1], ErrorCode.ADMISSION_REJECT, "preempted")
    if policy is FullPolicy.DROP_LRU:
        pool_or_class = [t for t, _ in queue] if scope == "pool" else in_class
        if pool_or_class:
            return ("admit", pool_or_class[0], ErrorCode.QUEUE_FULL_DROP_LRU, "drop-lru")
        return ("reject", None, ErrorCode.QUEUE_FULL_DROP_LRU, None)
    if policy is FullPolicy.SHED_LOW_PRIORITY and scope == "pool" and lower:
        return ("admit", lower[0], ErrorCode.ADMISSION_REJECT, "shed-low-priority")
    return ("reject", None, ErrorCode.ADMISSION_REJECT, None)


@pytest.mark.req("OC-CORE-1002", "ORCH-3005", "ORCH-3085")
@given(
    capacity=st.integers(0, 5),
    caps=st.tuples(
        st.one_of(st.none(), st.integers(0, 4)), st.one_of(st.none(), st.integers(0, 4))
    ),
    policy=st.sampled_from(list(FullPolicy)),
    mode=st.sampled_from(list(PreemptionMode)),
    arrivals=st.lists(st.sampled_from([INTER, BATCH]), max_size=14),
)
def test_full_queue_applies_the_configured_policy_exactly(
    capacity: int,
    caps: tuple[int | None, int | None],
    policy: FullPolicy,
    mode: PreemptionMode,
    arrivals: list[Priority],
) -> None:
    """Every arrival at a full queue gets the table's answer and the table's victim."""
    class_caps = dict(zip(PRIORITY_ORDER, caps, strict=True))
    spec = ct.pool(
        capacity=capacity, class_capacity=class_caps, full_policy=policy, preemption=mode
    )
    sched = ct.scheduler([spec], {"p:r0": 0})  # Ready, no slots: nothing leaves the queue
    model: list[tuple[str, Priority]] = []
    for now, prio in enumerate(arrivals):
        t = ct.task(priority=prio)
        verdict, victim, code, reason = _expected(model, prio, capacity, class_caps, policy, mode)
        pressure = sched.counters.total("backpressure")
        result = sched.admit(t, now)
        if verdict == "reject":
            assert isinstance(result, Rejected)
            assert (result.code, result.status, result.policy_label) == (code, 429, policy.value)
            assert result.retriable and result.retry_after_ms and result.retry_after_ms >= 1
            assert sched.counters.total("backpressure") == pressure + 1
            continue
        assert isinstance(result, Admitted)
        evicted = [(e.task_id, e.code, e.reason) for e in result.evicted]
        assert evicted == ([] if victim is None else [(victim, code, reason)])
        if victim is not None:
            assert sched.task_state(victim) == "evicted"
            model = [x for x in model if x[0] != victim]
            applied = 0 if reason == "preempted" else 1
            assert sched.counters.total("backpressure") == pressure + applied
        model.append((t.task_id, prio))
    depth = sched.snapshot(len(arrivals)).pools["p"].queue_depth
    assert depth == {p: sum(1 for _, q in model if q is p) for p in PRIORITY_ORDER}


@pytest.mark.req("ORCH-3085")
def test_soft_preemption_evicts_newest_batch_task_for_interactive_work() -> None:
    """Pool full of batch work: an interactive task gets in, the newest batch task leaves."""
    for mode, expect_admit in ((PreemptionMode.SOFT, True), (PreemptionMode.DISABLED, False)):
        sched = ct.scheduler([ct.pool(capacity=3, preemption=mode)], {"p:r0": 0})
        batch = [ct.task(priority=BATCH) for _ in range(3)]
        for t in batch:
            ct.admitted(sched.admit(t, 0))
        result = sched.admit(ct.task(priority=INTER), 1)
        if expect_admit:
            assert ct.admitted(result).evicted[0].task_id == batch[-1].task_id
            assert result.evicted[0].code is ErrorCode.ADMISSION_REJECT
            assert sched.counters.preemptions[("p", "soft")] == 1
            assert sched.task_state(batch[0].task_id) == "queued"
        else:
            assert ct.rejected(result).status == 429
            assert sched.counters.total("preemptions") == 0


@pytest.mark.req("OC-CORE-1020", "OC-CORE-1021", "ORCH-3014", "ORCH-3015")
@given(
    ctx_max=st.integers(64, 8192),
    ctx=st.integers(1, 16384),
    prompt=st.integers(0, 10_000),
    max_tokens=st.integers(0, 10_000),
    budget=st.one_of(st.none(), st.integers(1, 16384)),
)
def test_context_and_token_guardrails(
    ctx_max: int, ctx: int, prompt: int, max_tokens: int, budget: int | None
) -> None:
    """ctx over the limit, or prompt + max_tokens over ctx / budget: 400 INVALID_PARAMS with
    the field to fix, and nothing is queued."""
    sched = ct.scheduler([ct.pool(ctx_max=ctx_max, max_tokens_budget=budget)], {"p:r0": 0})
    t = ct.task(ctx=ctx, prompt_tokens=prompt, max_tokens=max_tokens)
    result = sched.admit(t, 0)
    over_tokens = prompt + max_tokens > ctx or (budget is not None and prompt + max_tokens > budget)
    if ctx > ctx_max or over_tokens:
        assert isinstance(result, Rejected)
        assert (result.code, result.status) == (ErrorCode.INVALID_PARAMS, 400)
        assert result.field == ("ctx" if ctx > ctx_max else "max_tokens")
        assert not result.retriable
        assert sched.task_state(t.task_id) is None
        assert sched.counters.total("enqueued") == 0
        assert sched.counters.rejected[("p", "INVALID_PARAMS")] == 1
    else:
        assert isinstance(result, Admitted)
        assert sched.task_state(t.task_id) == "queued"


@pytest.mark.req("ORCH-3024")
def test_unknown_pool_and_duplicate_task_id_are_invalid() -> None:
    """Refused before anything else, with the field to fix; job ids stay unique."""
    sched = ct.scheduler()
    r = ct.rejected(sched.admit(ct.task(pool_id="nope"), 0))
    assert (r.code, r.status, r.field) == (ErrorCode.INVALID_PARAMS, 400, "pool_id")
    t = ct.task()
    ct.admitted(sched.admit(t, 0))
    dup = ct.rejected(sched.admit(t, 1))
    assert (dup.code, dup.status, dup.field) == (ErrorCode.INVALID_PARAMS, 400, "task_id")
    sched.cancel(t.task_id, 2)  # still known once terminal
    assert ct.rejected(sched.admit(t, 3)).field == "task_id"
    assert ct.rejected(sched.admit(ct.task(priority="urgent"), 4)).field == "priority"
    plain = ct.admitted(sched.admit(ct.task(priority="interactive"), 4))
    assert sched.queue_position(plain.task_id) == 0


@pytest.mark.req("ORCH-3010")
def test_pool_without_ready_replica_answers_503() -> None:
    """Loading -> POOL_UNREADY; failed or draining -> POOL_UNAVAILABLE; both retriable."""
    sched = ct.scheduler([ct.pool()], {"p:r0": 1, "p:r1": 1}, ready=False)
    r = ct.rejected(sched.admit(ct.task(), 0))
    assert (r.code, r.status, r.retriable) == (ErrorCode.POOL_UNREADY, 503, True)
    assert r.retry_after_ms and r.retry_after_ms > 0
    sched.set_replica("p:r0", ready=False, failed=True)
    assert ct.rejected(sched.admit(ct.task(), 0)).code is ErrorCode.POOL_UNREADY
    sched.set_replica("p:r1", ready=False, failed=True)
    r = ct.rejected(sched.admit(ct.task(), 0))
    assert (r.code, r.status, r.retriable) == (ErrorCode.POOL_UNAVAILABLE, 503, True)
    sched.set_replica("p:r1", ready=True, failed=False)
    queued = ct.task()
    ct.admitted(sched.admit(queued, 1))
    evictions = sched.set_draining("p", True)
    assert [(e.task_id, e.code) for e in evictions] == [
        (queued.task_id, ErrorCode.POOL_UNAVAILABLE)
    ]
    assert ct.rejected(sched.admit(ct.task(), 2)).code is ErrorCode.POOL_UNAVAILABLE
    assert sched.dispatch(2) == []


@pytest.mark.req("ORCH-3079", "ORCH-3084")
@given(max_tokens=st.integers(1, 500), deadline=st.integers(1, 5000))
def test_infeasible_deadline_is_refused_with_deadline_unmet(max_tokens: int, deadline: int) -> None:
    """Idle pool, prior of 5 ms/token: feasible iff 5 * max_tokens <= deadline_ms."""
    sched = ct.scheduler()
    result = sched.admit(ct.task(max_tokens=max_tokens, deadline_ms=deadline), 0)
    if 5 * max_tokens <= deadline:
        assert ct.admitted(result).on_time_probability >= 0.5
    else:
        r = ct.rejected(result)
        assert (r.code, r.status, r.retriable) == (ErrorCode.DEADLINE_UNMET, 400, False)
        assert sched.counters.rejected[("p", "DEADLINE_UNMET")] == 1


@pytest.mark.req("ORCH-3079", "ORCH-3084")
def test_edf_overlay_makes_a_tight_deadline_feasible() -> None:
    """Slot busy, three tasks queued: with EDF the deadline task is next (one wave, 50 ms,
    + 5 ms x 10 tokens = 100 ms); in plain FIFO it waits four waves (250 ms)."""
    for edf, expect in ((True, True), (False, False)):
        sched = ct.scheduler([ct.pool(edf=edf)])
        for _ in range(4):
            ct.admitted(sched.admit(ct.task(), 0))
        assert len(sched.dispatch(0)) == 1
        result = sched.admit(ct.task(max_tokens=10, deadline_ms=120), 0)
        assert isinstance(result, Admitted) is expect
        if not expect:
            assert ct.rejected(result).code is ErrorCode.DEADLINE_UNMET


def _misses(deadlines: list[int], edf: bool, duration: int = 10) -> tuple[int, float | None]:
    """Run tasks one at a time (fixed duration) and count missed deadlines."""
    sched = ct.scheduler([ct.pool(edf=edf, reject_infeasible=False)])
    ids = {}
    for d in deadlines:
        t = ct.task(deadline_ms=d, max_tokens=1)
        ids[t.task_id] = d
        ct.admitted(sched.admit(t, 0))
    now, missed = 0, 0
    while started := sched.dispatch(now):
        now += duration
        missed += now > ids[started[0].task_id]
        sched.complete(started[0].task_id, now, 1, True)
    return missed, sched.snapshot(now).deadlines_met_ratio[Priority.BATCH]


@pytest.mark.req("ORCH-3084")
@given(st.permutations(list(range(8))), st.lists(st.integers(0, 30), min_size=8, max_size=8))
def test_edf_meets_every_deadline_that_some_order_meets(order: list[int], slack: list[int]) -> None:
    """Deadlines that a schedule can meet (the k-th earliest >= (k+1) x duration), in random
    arrival order: EDF misses none, FIFO misses at least as many, and the gauge agrees."""
    feasible = [10 * (k + 1) + s for k, s in enumerate(sorted(slack))]
    deadlines = [feasible[i] for i in order]
    edf_missed, ratio = _misses(deadlines, edf=True)
    fifo_missed, _ = _misses(deadlines, edf=False)
    assert edf_missed == 0 and ratio == 1.0
    assert fifo_missed >= edf_missed
    assert _misses([80, 10, 20], edf=False)[0] > _misses([80, 10, 20], edf=True)[0] == 0


@given(
    start=st.integers(0, 10_000),
    decode=st.integers(0, 10_000),
    d1=st.integers(1, 40_000),
    d2=st.integers(1, 40_000),
)
def test_on_time_probability_is_a_monotone_probability(
    start: int, decode: int, d1: int, d2: int
) -> None:
    """In [0, 1], 0.5 at zero slack, never lower for a later deadline, 1 without one."""
    lo, hi = sorted((d1, d2))
    p_lo, p_hi = (on_time_probability(start, decode, d) for d in (lo, hi))
    assert 0.0 <= p_lo <= p_hi <= 1.0
    assert on_time_probability(start, decode, None) == 1.0
    if start + decode > 0:
        assert on_time_probability(start, decode, start + decode) == pytest.approx(0.5)


@given(slots=st.integers(1, 4), n=st.integers(1, 30), busy=st.booleans())
def test_predicted_start_grows_with_queue_position(slots: int, n: int, busy: bool) -> None:
    """FIFO arrivals get positions 0, 1, 2, ...; the predicted start is 0 while a free slot
    awaits the task, then grows by one mean task duration (prior 50 ms) per wave of slots."""
    sched = ct.scheduler([ct.pool()], {"p:r0": slots})
    if busy:
        for _ in range(slots):
            ct.admitted(sched.admit(ct.task(), 0))
        sched.dispatch(0)
    free = 0 if busy else slots
    for k in range(n):
        a = ct.admitted(sched.admit(ct.task(), 1))
        assert a.queue_position == k
        expected = 0 if k < free else 50 * -(-(k - free + 1) // slots)
        assert a.predicted_start_ms == expected
        assert sched.estimate(a.task_id, 1) == (k, expected, 1.0)


def test_estimate_of_a_running_task_with_deadline() -> None:
    sched = ct.scheduler()
    t = ct.task(max_tokens=10, deadline_ms=200)
    ct.admitted(sched.admit(t, 0))
    sched.dispatch(0)
    position, start, p = sched.estimate(t.task_id, 20)
    assert (position, start) == (0, 0) and 0.5 < p <= 1.0
    assert sched.estimate(t.task_id, 250)[2] == 0.0
    assert sched.estimate("unknown", 250) is None
