"""Per-call CPU and memory bounds (OC-POLICY-4011) and the fall-back to built-in rules.

Bounds are asserted as outcomes and as the resources a call was allowed (fuel burned equals
the bound, memory never above it), not as wall-clock timings: the measured times live in
bench/RESULTS.md.
"""

from __future__ import annotations

import pytest

from llama_orch.policy_sdk.scaffold import example_snapshot
from llama_orch.reference_impl.policy import Outcome
from tests._policy import (
    ADMIT,
    LOOP,
    MEMORY_BOMB,
    PROBE,
    admission_snapshot,
    host,
    wat_plugin,
)

SMALL = {"fuel": 2_000_000, "memory_bytes": 4 << 20, "wall_ms": 5_000}


def one(path, limits=SMALL, hooks=("admission",)):
    h = host([{"path": str(path), "hooks": list(hooks), "limits": limits}])
    return h, h.plugins[0]


@pytest.mark.req("OC-POLICY-4011")
def test_an_endless_loop_is_stopped_by_its_fuel_bound_and_yields_no_decision(tmp_path) -> None:
    h, plugin = one(wat_plugin(tmp_path / "loop.wasm", bodies={"admission": LOOP}))
    record = h.decide(plugin, "admission", admission_snapshot())
    assert record.outcome is Outcome.CPU_EXCEEDED
    assert record.decision is None
    assert record.fuel == SMALL["fuel"]  # it burned exactly its bound, no more
    assert "fuel bound of 2000000 exhausted" in record.reason
    assert h.admission(admission_snapshot(), None) is None  # no decision: built-in rules


@pytest.mark.req("OC-POLICY-4011")
def test_the_wall_clock_bound_stops_a_call_whose_fuel_would_last_for_minutes(tmp_path) -> None:
    limits = {"fuel": 10**15, "memory_bytes": 4 << 20, "wall_ms": 20}
    h, plugin = one(wat_plugin(tmp_path / "loop.wasm", bodies={"admission": LOOP}), limits)
    record = h.decide(plugin, "admission", admission_snapshot())
    assert record.outcome is Outcome.CPU_EXCEEDED
    assert "wall-clock bound of 20 ms exceeded" in record.reason
    assert record.fuel < limits["fuel"]


@pytest.mark.req("OC-POLICY-4011")
def test_a_memory_bomb_is_held_at_its_memory_bound(tmp_path) -> None:
    h, plugin = one(wat_plugin(tmp_path / "bomb.wasm", bodies={"admission": MEMORY_BOMB}))
    record = h.decide(plugin, "admission", admission_snapshot())
    assert record.outcome is Outcome.MEMORY_EXCEEDED
    assert record.decision is None
    assert "memory bound of 4194304 bytes reached" in record.reason


@pytest.mark.req("OC-POLICY-4011")
def test_the_zig_probe_faults_are_all_contained(tmp_path) -> None:
    h, plugin = one(PROBE, {"fuel": 5_000_000, "memory_bytes": 8 << 20, "wall_ms": 5_000})
    outcomes = {
        n: h.decide(plugin, "admission", admission_snapshot(max_tokens=n)).outcome
        for n in (333, 334, 335, 336, 337, 64)
    }
    assert outcomes == {
        333: Outcome.CPU_EXCEEDED,
        334: Outcome.MEMORY_EXCEEDED,
        335: Outcome.TRAPPED,
        336: Outcome.INVALID,
        337: Outcome.DECIDED,
        64: Outcome.ABSTAINED,
    }


@pytest.mark.req("OC-POLICY-4011")
def test_bounds_are_per_call_so_a_runaway_call_does_not_starve_the_next(tmp_path) -> None:
    # One module, two behaviours keyed on the input length: long input spins, short admits.
    body = (
        "(if (result i64) (i32.gt_u (local.get $len) (i32.const 2000))"
        f" (then {LOOP}) (else $ANSWER))"
    )
    mixed = wat_plugin(
        tmp_path / "mixed.wasm", hooks={"admission": ADMIT}, bodies={"admission": body}
    )
    h, plugin = one(mixed)
    heavy = admission_snapshot(tenant="x" * 3000)
    assert h.decide(plugin, "admission", heavy).outcome is Outcome.CPU_EXCEEDED
    after = h.decide(plugin, "admission", admission_snapshot())
    assert after.outcome is Outcome.DECIDED and after.decision.kind == "admit"
    assert after.fuel < SMALL["fuel"] // 100


@pytest.mark.req("ORCH-3048", "OC-POLICY-4011")
@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ('{"decision":"reject"}', "required property"),
        ('{"decision":"reject","reason":"Has Spaces"}', "does not match"),
        ('{"decision":"prefer","replicas":["r0"]}', "decision must be one of"),
        ('{"decision":"admit","extra":1}', "Additional properties"),
        ("not json at all", "answer is not JSON"),
        ('{"error":"OutOfBudget"}', "plugin error: OutOfBudget"),
    ],
)
def test_an_invalid_answer_is_no_decision_and_says_why(tmp_path, answer, expected) -> None:
    h, plugin = one(wat_plugin(tmp_path / "bad.wasm", hooks={"admission": answer}))
    record = h.decide(plugin, "admission", admission_snapshot())
    assert record.decision is None
    assert record.outcome in (Outcome.INVALID, Outcome.ERROR)
    assert expected in record.reason
    assert h.admission(admission_snapshot(), "c") is None


@pytest.mark.req("ORCH-3048")
def test_a_placement_naming_a_replica_that_was_not_offered_is_invalid(tmp_path) -> None:
    answer = '{"decision":"prefer","replicas":["pool-a-r9"]}'
    plugin_path = wat_plugin(tmp_path / "p.wasm", hooks={"placement": answer})
    h, plugin = one(plugin_path, hooks=["placement"])
    record = h.decide(plugin, "placement", example_snapshot("placement"))
    assert record.outcome is Outcome.INVALID
    assert "not offered" in record.reason


@pytest.mark.req("OC-POLICY-4011")
def test_a_trap_stays_contained_after_another_library_replaces_the_signal_handlers() -> None:
    """faulthandler (or any library) re-installing SIGILL/SIGSEGV handlers after the host
    started must not turn a plugin's trap into a crash of the whole process: the host uses
    explicit trap checks, not signal handlers. Run in a child process, where a crash shows."""
    import subprocess
    import sys

    from tests._policy import ROOT

    code = (
        "import faulthandler\n"
        "from tests._policy import PROBE, host, admission_snapshot\n"
        "h = host([{'path': str(PROBE), 'hooks': ['admission']}])\n"
        "for n in (335, 334):\n"
        "    faulthandler.disable(); faulthandler.enable()\n"
        "    print(h.decide(h.plugins[0], 'admission', admission_snapshot(max_tokens=n)).outcome)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["trapped", "memory_exceeded"]
