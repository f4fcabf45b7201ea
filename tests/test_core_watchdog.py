"""Core watchdog: wall and idle timeouts with time passed in; the slot is freed at once."""

from __future__ import annotations

import _hypothesis_profiles  # noqa: F401  (loads the Hypothesis budget first)
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llama_orch.reference_impl.core import CancelResult, Timeout
from llama_orch.reference_impl.core import testing as ct


@pytest.mark.req("OC-CORE-1022", "ORCH-3016")
@given(
    wall=st.integers(50, 500),
    idle=st.integers(10, 200),
    gaps=st.lists(st.integers(1, 250), min_size=1, max_size=30),
)
def test_running_task_times_out_on_wall_or_idle(wall: int, idle: int, gaps: list[int]) -> None:
    """Tokens arrive after `gaps`; the watchdog fires exactly when more than wall_ms passed
    since dispatch ("wall") or more than idle_ms since the last token ("idle")."""
    sched = ct.scheduler([ct.pool(wall_ms=wall, idle_ms=idle)])
    t = ct.task()
    ct.admitted(sched.admit(t, 0))
    sched.dispatch(0)
    now = last = 0
    for gap in gaps:
        now += gap
        fired = sched.expired(now)
        expected = "wall" if now > wall else "idle" if now - last > idle else None
        if expected is None:
            assert fired == []
            sched.progress(t.task_id, now)
            last = now
            continue
        assert fired == [Timeout(t.task_id, expected, running=True)]
        assert sched.task_state(t.task_id) == "expired"
        assert sched.snapshot(now).replicas["p:r0"].slots_busy == 0
        assert sched.counters.canceled[("p", "p:r0", "watchdog")] == 1
        assert sched.expired(now + 10_000) == []  # reported once
        sched.complete(t.task_id, now, 5, True)  # a late end changes nothing
        assert sched.cancel(t.task_id, now) is CancelResult.DONE
        nxt = ct.task()
        ct.admitted(sched.admit(nxt, now))
        assert [d.task_id for d in sched.dispatch(now)] == [nxt.task_id]
        return
    assert sched.task_state(t.task_id) == "running"


@pytest.mark.req("OC-CORE-1022")
def test_queued_task_expires_after_wall_ms_in_the_queue() -> None:
    sched = ct.scheduler([ct.pool(wall_ms=100)], {"p:r0": 0})
    first, second = ct.task(), ct.task()
    ct.admitted(sched.admit(first, 0))
    ct.admitted(sched.admit(second, 50))
    assert sched.expired(100) == []
    assert sched.expired(101) == [Timeout(first.task_id, "wall", running=False)]
    assert sched.queue_position(second.task_id) == 0
    assert sched.counters.canceled[("p", "unassigned", "watchdog")] == 1
