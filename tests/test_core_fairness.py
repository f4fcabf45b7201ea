"""Core fairness and quotas: WFQ shares, strict classes, token buckets, tenant caps.

WFQ tolerance (stated and asserted): with k flows kept backlogged, after N = 2,000 dispatches
every flow's count n_i satisfies |n_i - N * w_i / W| <= k + 1 (W = sum of weights, w_i = class
weight x tenant weight), i.e. each share is within (k + 1) / N, at most 0.3 percentage points
for k <= 5. The `admission_share` EWMA (alpha 0.02) stays within 0.05 of w_i / W.
"""

from __future__ import annotations

import pytest
from _hypothesis_profiles import heavy  # loads the Hypothesis budget first
from hypothesis import given
from hypothesis import strategies as st

from llama_orch.reference_impl.core import Admitted, ErrorCode, Priority, Rejected, TenantQuota
from llama_orch.reference_impl.core import testing as ct

N_DISPATCHES = 2_000


@pytest.mark.req("ORCH-3075", "ORCH-3078", "OC-CORE-1004")
@heavy()
@given(
    flows=st.lists(
        st.tuples(st.sampled_from("abcd"), st.sampled_from(list(Priority))),
        min_size=2,
        max_size=5,
        unique=True,
    ),
    tenant_w=st.fixed_dictionaries({t: st.integers(1, 6) for t in "abcd"}),
    class_w=st.tuples(st.integers(1, 10), st.integers(1, 10)),
)
def test_wfq_shares_converge_to_weights(
    flows: list[tuple[str, Priority]], tenant_w: dict[str, int], class_w: tuple[int, int]
) -> None:
    """All flows backlogged: dispatch counts follow class weight x tenant weight."""
    weights = dict(zip(list(Priority), class_w, strict=True))
    spec = ct.pool(
        class_weights=weights,
        tenants=tuple(TenantQuota(t, weight=w) for t, w in tenant_w.items()),
    )
    sched = ct.scheduler([spec], {"p:r0": 1})
    counts = _backlogged_counts(sched, flows, N_DISPATCHES)
    w = {key: weights[key[1]] * tenant_w[key[0]] for key in flows}
    total_w = sum(w.values())
    for key in flows:
        assert abs(counts[key] - N_DISPATCHES * w[key] / total_w) <= len(flows) + 1, counts
    shares = sched.snapshot(N_DISPATCHES).admission_share
    for key in flows:
        assert shares[key] == pytest.approx(w[key] / total_w, abs=0.05)


def _backlogged_counts(sched, flows: list[tuple[str, Priority]], n: int) -> dict:
    """One slot; after each dispatch the served flow gets a new task, so all stay backlogged."""
    owner: dict[str, tuple[str, Priority]] = {}

    def add(key: tuple[str, Priority], now: int) -> None:
        t = ct.task(tenant=key[0], priority=key[1])
        owner[t.task_id] = key
        assert isinstance(sched.admit(t, now), Admitted)

    for key in flows:
        add(key, 0)
        add(key, 0)
    counts = dict.fromkeys(flows, 0)
    for step in range(n):
        (started,) = sched.dispatch(step)
        key = owner.pop(started.task_id)
        counts[key] += 1
        sched.complete(started.task_id, step, 1, True)
        add(key, step)
    return counts


@pytest.mark.req("ORCH-3078", "ORCH-3075")
def test_default_weights_give_interactive_eight_ninths() -> None:
    """Defaults (wfq on, interactive 8, batch 1): 2,000 dispatches split 8:1 within 2 tasks."""
    sched = ct.scheduler([ct.pool()], {"p:r0": 1})
    flows = [("t0", Priority.INTERACTIVE), ("t0", Priority.BATCH)]
    counts = _backlogged_counts(sched, flows, N_DISPATCHES)
    assert abs(counts[flows[0]] - N_DISPATCHES * 8 / 9) <= 2
    shares = sched.snapshot(N_DISPATCHES).admission_share
    assert shares[flows[0]] == pytest.approx(8 / 9, abs=0.05)


@pytest.mark.req("OC-CORE-1004")
def test_strict_classes_still_share_a_class_between_tenants() -> None:
    """wfq off: interactive always first; inside batch, tenants a:b = 1:3, nobody starves."""
    spec = ct.pool(wfq=False, tenants=(TenantQuota("a", weight=1), TenantQuota("b", weight=3)))
    sched = ct.scheduler([spec], {"p:r0": 1})
    flows = [("a", Priority.BATCH), ("b", Priority.BATCH)]
    counts = _backlogged_counts(sched, flows, 400)
    assert abs(counts[flows[0]] - 100) <= 3 and abs(counts[flows[1]] - 300) <= 3
    urgent = ct.task(tenant="a", priority=Priority.INTERACTIVE)
    assert isinstance(sched.admit(urgent, 500), Admitted)
    assert sched.queue_position(urgent.task_id) == 0  # ahead of the whole batch backlog
    assert sched.dispatch(500)[0].task_id == urgent.task_id


@pytest.mark.req("ORCH-3006", "ORCH-3077")
@given(
    rps=st.integers(1, 20),
    burst=st.integers(1, 10),
    gaps=st.lists(st.integers(0, 400), min_size=1, max_size=60),
)
def test_tenant_rate_limit_is_a_token_bucket(rps: int, burst: int, gaps: list[int]) -> None:
    """Admissions in any window [t0, t1] never exceed burst + rps * (t1 - t0) / 1000, and a
    task is admitted whenever an independent model bucket clearly holds a token."""
    spec = ct.pool(tenants=(TenantQuota("t0", rps=rps, burst=burst),))
    sched = ct.scheduler([spec], {"p:r0": 0})
    tokens, last, now = float(burst), 0, 0
    admitted: list[int] = []
    for gap in gaps:
        now += gap
        tokens = min(burst, tokens + (now - last) * rps / 1000)
        last = now
        result = sched.admit(ct.task(), now)
        if isinstance(result, Admitted):
            admitted.append(now)
            tokens -= 1
        else:
            assert (result.code, result.status) == (ErrorCode.ADMISSION_REJECT, 429)
            assert result.retry_after_ms and result.retry_after_ms >= 1
            assert tokens < 1 + 1e-6
            tokens = max(tokens, 0.0)
        assert tokens > -1e-6
    for i, t0 in enumerate(admitted):
        for j in range(i, len(admitted)):
            assert j - i + 1 <= burst + rps * (admitted[j] - t0) / 1000 + 1e-6


@pytest.mark.req("ORCH-3006")
def test_retry_after_of_a_rate_limit_is_enough() -> None:
    spec = ct.pool(tenants=(TenantQuota("t0", rps=2, burst=1),))
    sched = ct.scheduler([spec], {"p:r0": 0})
    assert isinstance(sched.admit(ct.task(), 0), Admitted)
    r = sched.admit(ct.task(), 100)
    assert isinstance(r, Rejected) and r.retry_after_ms == 400
    assert isinstance(sched.admit(ct.task(), 100 + r.retry_after_ms), Admitted)


@pytest.mark.req("ORCH-3077", "ORCH-3036")
@given(
    cap=st.integers(1, 4),
    ops=st.lists(st.sampled_from(["admit", "dispatch", "complete", "cancel"]), max_size=50),
)
def test_max_concurrent_counts_queued_and_running(cap: int, ops: list[str]) -> None:
    """A tenant never holds more than max_concurrent queued + running tasks, and is refused
    only while it holds exactly that many."""
    spec = ct.pool(tenants=(TenantQuota("t0", max_concurrent=cap),))
    sched = ct.scheduler([spec], {"p:r0": 2})
    live: list[str] = []
    for now, op in enumerate(ops):
        if op == "admit":
            t = ct.task()
            result = sched.admit(t, now)
            if isinstance(result, Admitted):
                live.append(t.task_id)
            else:
                assert result.code is ErrorCode.ADMISSION_REJECT and len(live) == cap
        elif op == "dispatch":
            sched.dispatch(now)
        elif op == "complete":
            for tid in sched.tasks_on("p:r0")[:1]:
                sched.complete(tid, now, 1, True)
                live.remove(tid)
        elif op == "cancel" and live:
            sched.cancel(live.pop(0), now)
        assert len(live) <= cap


@pytest.mark.req("ORCH-3036")
@given(sizes=st.lists(st.integers(1, 64), max_size=20), cap_tokens=st.integers(16, 256))
def test_tenant_memory_cap(sizes: list[int], cap_tokens: int) -> None:
    """KV bytes reserved by a tenant's live tasks stay within max_memory_bytes."""
    per_token = 1_000
    spec = ct.pool(
        kv_bytes_per_token=per_token,
        tenants=(TenantQuota("t0", max_memory_bytes=cap_tokens * per_token),),
    )
    sched = ct.scheduler([spec], {"p:r0": 0})
    held = 0
    for now, size in enumerate(sizes):
        result = sched.admit(ct.task(prompt_tokens=0, max_tokens=size), now)
        if held + size <= cap_tokens:
            assert isinstance(result, Admitted)
            held += size
        else:
            assert isinstance(result, Rejected) and result.status == 429
            assert result.retriable is (size <= cap_tokens)


def test_class_rate_limit_refuses_with_retry_after() -> None:
    spec = ct.pool(class_rps={Priority.INTERACTIVE: 1.0, Priority.BATCH: None})
    sched = ct.scheduler([spec], {"p:r0": 0})
    assert isinstance(sched.admit(ct.task(priority=Priority.INTERACTIVE), 0), Admitted)
    r = sched.admit(ct.task(priority=Priority.INTERACTIVE), 1)
    assert isinstance(r, Rejected) and r.status == 429 and r.retry_after_ms == 999
    assert isinstance(sched.admit(ct.task(priority=Priority.BATCH), 1), Admitted)
