"""Core sessions: TTL and turn limits with time passed in, token and time budgets."""

from __future__ import annotations

import _hypothesis_profiles  # noqa: F401  (loads the Hypothesis budget first)
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llama_orch.reference_impl.core import (
    Admitted,
    ErrorCode,
    Rejected,
    SessionBudgets,
    SessionPolicy,
)
from llama_orch.reference_impl.core import testing as ct


@pytest.mark.req("ORCH-3021")
@given(
    ttl=st.integers(1, 1000),
    max_turns=st.integers(1, 5),
    ops=st.lists(
        st.tuples(st.sampled_from(["admit", "dispatch", "complete"]), st.integers(0, 600)),
        max_size=40,
    ),
)
def test_session_ttl_and_turn_limit(ttl: int, max_turns: int, ops: list[tuple[str, int]]) -> None:
    """A session lives while busy or for ttl_ms after its last touch; it takes at most
    max_turns turns; an expired session starts again from zero."""
    sched = ct.scheduler(sessions=SessionPolicy(ttl_ms=ttl, max_turns=max_turns))
    alive, touched, ran, queued, running = False, 0, 0, [], []
    now = 0
    for op, gap in ops:
        now += gap
        if alive and not queued and not running and now - touched >= ttl:
            alive, ran = False, 0
        if op == "admit":
            t = ct.task(session_id="s")
            result = sched.admit(t, now)
            if alive and ran + len(queued) + len(running) >= max_turns:
                assert isinstance(result, Rejected)
                assert (result.code, result.status) == (ErrorCode.ADMISSION_REJECT, 400)
                assert not result.retriable
                continue
            assert isinstance(result, Admitted)
            alive, touched = True, now
            queued.append(t.task_id)
        elif op == "dispatch":
            for d in sched.dispatch(now):
                queued.remove(d.task_id)
                running.append(d.task_id)
        elif op == "complete" and running:
            sched.complete(running.pop(0), now, 1, True)
            ran, touched = ran + 1, now
        view = sched.session("s", now)
        if not alive:
            assert view is None
            continue
        assert view is not None
        assert view.turns == ran + len(queued) + len(running)
        busy = bool(queued or running)
        assert view.ttl_ms_remaining == (ttl if busy else ttl - (now - touched))


@pytest.mark.req("ORCH-3021")
def test_session_defaults_are_ten_minutes_and_eight_turns() -> None:
    policy = SessionPolicy()
    assert (policy.ttl_ms, policy.max_turns) == (600_000, 8)
    sched = ct.scheduler(sessions=policy)
    for i in range(8):
        ct.admitted(sched.admit(ct.task(session_id="s"), i))
    assert ct.rejected(sched.admit(ct.task(session_id="s"), 9)).code is ErrorCode.ADMISSION_REJECT
    while started := sched.dispatch(10):
        sched.complete(started[0].task_id, 10, 1, True)
    assert sched.session("s", 10 + 599_999) is not None
    assert sched.session("s", 10 + 600_000) is None
    ct.admitted(sched.admit(ct.task(session_id="s"), 10 + 600_000))
    assert sched.session("s", 10 + 600_000).turns == 1


@pytest.mark.req("OC-CORE-1023")
@given(
    budget=st.integers(50, 400),
    tasks=st.lists(st.tuples(st.integers(0, 60), st.integers(1, 60), st.floats(0, 1)), max_size=20),
)
def test_session_token_budget(budget: int, tasks: list[tuple[int, int, float]]) -> None:
    """prompt + max_tokens is reserved at admission and settled to prompt + generated at the
    end; a task that cannot fit what is left is refused with 400 ADMISSION_REJECT."""
    policy = SessionPolicy(max_turns=1000, token_budget=budget)
    sched = ct.scheduler(sessions=policy)
    used = reserved = 0
    for now, (prompt, max_tokens, frac) in enumerate(tasks):
        t = ct.task(session_id="s", prompt_tokens=prompt, max_tokens=max_tokens, ctx=4096)
        result = sched.admit(t, now)
        need = prompt + max_tokens
        if used + reserved + need > budget:
            assert isinstance(result, Rejected)
            assert (result.code, result.status, result.retriable) == (
                ErrorCode.ADMISSION_REJECT,
                400,
                False,
            )
            continue
        assert isinstance(result, Admitted)
        reserved += need
        (d,) = sched.dispatch(now)
        out = round(frac * max_tokens)
        sched.complete(d.task_id, now, out, True)
        used, reserved = used + prompt + out, reserved - need
        assert sched.session("s", now).tokens_budget_remaining == budget - used - reserved


@pytest.mark.req("OC-CORE-1023")
def test_session_time_budget_counts_decode_wall_time() -> None:
    sched = ct.scheduler(sessions=SessionPolicy(time_budget_ms=100))
    ct.admitted(sched.admit(ct.task(session_id="s"), 0))
    (d,) = sched.dispatch(0)
    sched.complete(d.task_id, 60, 5, True)
    assert sched.session("s", 60).time_budget_remaining_ms == 40
    ct.admitted(sched.admit(ct.task(session_id="s"), 61))
    (d,) = sched.dispatch(70)
    sched.complete(d.task_id, 120, 5, True)
    assert sched.session("s", 120).time_budget_remaining_ms == 0
    r = ct.rejected(sched.admit(ct.task(session_id="s"), 121))
    assert (r.code, r.status) == (ErrorCode.ADMISSION_REJECT, 400)


def test_delete_session_forgets_turns_and_affinity() -> None:
    sched = ct.scheduler()
    assert sched.delete_session("s", 0) is False
    ct.admitted(sched.admit(ct.task(session_id="s"), 0))
    (d,) = sched.dispatch(0)
    sched.complete(d.task_id, 1, 1, True)
    assert sched.delete_session("s", 2) is True
    assert sched.session("s", 2) is None


@pytest.mark.req("OC-CORE-1023")
def test_cost_budget_and_per_tenant_budgets() -> None:
    """Cost accrues per thousand used tokens; a tenant's own budgets replace the default."""
    policy = SessionPolicy(
        max_turns=100,
        token_budget=50,
        tenant_budgets={"big": SessionBudgets(tokens=None, cost=0.15, cost_per_1k_tokens=2.0)},
    )
    sched = ct.scheduler(sessions=policy)
    big = {"tenant": "big", "session_id": "b", "prompt_tokens": 20, "max_tokens": 30, "ctx": 4096}
    for n in range(3):  # 50 tokens a task at 2 units per 1000: 0.2 used after the second
        result = sched.admit(ct.task(task_id=f"b{n}", **big), n)
        if n == 2:
            assert isinstance(result, Rejected) and "cost" in result.message
            break
        ct.admitted(result)
        (d,) = sched.dispatch(n)
        sched.complete(d.task_id, n, 30, True)
    view = sched.session("b", 3)
    assert view.cost_budget_remaining == 0 and view.tokens_budget_remaining is None
    r = ct.rejected(sched.admit(ct.task(task_id="d0", session_id="d", max_tokens=60, ctx=4096), 4))
    assert (r.code, r.status) == (ErrorCode.ADMISSION_REJECT, 400)  # the default token budget
