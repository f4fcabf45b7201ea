"""Restart pacing: backoff delays stay in their bounds and restart storms stay bounded."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llama_orch.reference_impl.pool.backoff import (
    BackoffPolicy,
    BreakerPolicy,
    Open,
    RestartGovernor,
    Retry,
)

policies = st.builds(
    BackoffPolicy,
    initial_s=st.floats(0.01, 5),
    factor=st.floats(1, 4),
    max_s=st.floats(5, 120),
    jitter=st.floats(0, 1),
)


@pytest.mark.req("OC-POOL-3011", "ORCH-3053")
@given(policy=policies, attempt=st.integers(1, 5000), u=st.floats(0, 1))
def test_backoff_delay_stays_within_its_bounds(policy: BackoffPolicy, attempt: int, u: float):
    lo, hi = policy.bounds(attempt)
    delay = policy.delay(attempt, u)
    assert lo <= delay <= hi <= policy.max_s * (1 + policy.jitter)
    assert policy.base(attempt) <= policy.base(attempt + 1)  # never shrinks as failures grow
    assert delay >= policy.initial_s


@pytest.mark.req("OC-POOL-3011")
def test_default_backoff_doubles_from_one_second_to_sixty() -> None:
    policy = BackoffPolicy()
    assert [policy.base(k) for k in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert policy.bounds(3) == (4, pytest.approx(4.8))  # up to 20 % jitter


@pytest.mark.req("OC-POOL-3011", "ORCH-3053")
def test_breaker_opens_on_the_nth_failure_in_the_window_and_cools_down() -> None:
    gov = RestartGovernor(
        BackoffPolicy(initial_s=1, jitter=0),
        BreakerPolicy(max_failures=3, window_s=60, cooldown_s=100),
        rand=lambda: 0.0,
    )
    assert gov.on_failure(0) == Retry(at=1, delay_s=1, attempt=1)
    assert gov.on_failure(10) == Retry(at=12, delay_s=2, attempt=2)
    assert gov.on_failure(20) == Open(until=120, failures=3)
    assert gov.is_open(119) and not gov.close_if_cooled(119)
    assert gov.on_failure(50) == Open(until=120, failures=3)  # open stays open
    assert gov.close_if_cooled(120) and not gov.is_open(120)
    assert gov.on_failure(121) == Retry(at=122, delay_s=1, attempt=1)  # clean slate


@pytest.mark.req("OC-POOL-3011")
def test_failures_spread_wider_than_the_window_never_open_the_circuit() -> None:
    gov = RestartGovernor(breaker=BreakerPolicy(max_failures=2, window_s=10, cooldown_s=10))
    for t in range(0, 200, 11):
        assert isinstance(gov.on_failure(t), Retry)
        assert gov.failures(t) == 1


@pytest.mark.req("OC-POOL-3011")
def test_operator_reset_closes_an_open_circuit() -> None:
    gov = RestartGovernor(breaker=BreakerPolicy(max_failures=1, window_s=5, cooldown_s=5))
    assert isinstance(gov.on_failure(0), Open) and gov.is_open(1)
    gov.reset()
    assert not gov.is_open(1) and gov.failures(1) == 0


def test_policies_reject_settings_that_would_break_the_bound() -> None:
    with pytest.raises(ValueError, match="cooldown_s"):
        BreakerPolicy(window_s=60, cooldown_s=30)
    with pytest.raises(ValueError):
        BackoffPolicy(initial_s=10, max_s=1)


@st.composite
def breaker_policies(draw: st.DrawFn) -> BreakerPolicy:
    window = draw(st.floats(1, 50))
    return BreakerPolicy(
        max_failures=draw(st.integers(1, 6)),
        window_s=window,
        cooldown_s=window + draw(st.floats(0, 50)),
    )


@pytest.mark.req("OC-POOL-3011", "ORCH-3053")
@given(
    backoff=policies,
    breaker=breaker_policies(),
    uptimes=st.lists(st.floats(0, 30), min_size=1, max_size=60),
    rands=st.lists(st.floats(0, 1), min_size=1, max_size=60),
)
def test_restarts_per_window_never_exceed_the_breaker_bound(
    backoff: BackoffPolicy, breaker: BreakerPolicy, uptimes: list[float], rands: list[float]
) -> None:
    """Drive a crash loop: the engine runs `uptime` seconds after each (re)start, then fails.

    Whatever the timings, no window of `window_s` seconds holds more than `max_failures`
    starts, and every automatic restart waits at least the initial backoff.
    """
    draws = iter(rands * (len(uptimes) // len(rands) + 1))
    gov = RestartGovernor(backoff, breaker, rand=lambda: next(draws))
    starts = [0.0]
    for uptime in uptimes:
        failed_at = starts[-1] + uptime
        decision = gov.on_failure(failed_at)
        if isinstance(decision, Retry):
            assert decision.delay_s >= backoff.initial_s
            starts.append(decision.at)
        else:
            assert decision.until >= failed_at + breaker.cooldown_s
            assert gov.close_if_cooled(decision.until)
            starts.append(decision.until)
    for t in starts:
        in_window = [s for s in starts if 0 <= t - s < breaker.window_s]
        assert len(in_window) <= breaker.max_failures
