"""The harness against targets that differ from the reference only in ways the contract allows.

The control run is the reference behind a pass-through proxy, judged on the whole core
profile. Each benign variation of `tests/fixtures/faulty/benign.py` then runs the same checks
with the target description a third party would give (the auth scheme flag, a target file
saying where the facts live): it must get 0 `fail` and the same `pass` verdicts as the control,
except the requirements whose fact it strips, which must be `unverified` saying how to provide
the fact. The control run is also repeated in a shuffled order: same verdicts (OC-HARNESS-8112).
"""

from __future__ import annotations

import pytest

from tests._faulty import Bench, bench, verdicts_of
from tests._harness import ChildRun
from tests.fixtures.faulty.benign import BENIGN, Variation

SHUFFLE_SEED = "20250917"


@pytest.fixture(scope="module")
def benign(tmp_path_factory: pytest.TempPathFactory):
    with bench(tmp_path_factory.mktemp("benign")) as b:
        yield b


@pytest.fixture(scope="module")
def control(benign: Bench) -> ChildRun:
    run = benign.run("passthrough").run
    assert run.report is not None, run.output[-3000:]
    assert not verdicts_of(run, "fail"), run.output[-3000:]
    return run


def _why(run: ChildRun, ids: set[str]) -> dict[str, str | None]:
    reasons = run.reasons()
    return {i: reasons.get(i) for i in sorted(ids)}


@pytest.mark.slow
@pytest.mark.req("OC-HARNESS-8006", "OC-HARNESS-8007", "OC-HARNESS-8009", "OC-HARNESS-8110")
@pytest.mark.parametrize("variation", BENIGN, ids=[v.name for v in BENIGN])
def test_a_benign_variation_changes_no_verdict(
    benign: Bench, control: ChildRun, variation: Variation
) -> None:
    kw = {"target_file": variation.target_file} if variation.target_file else {}
    run = benign.run(variation.name, *variation.args, **kw).run
    assert run.report is not None, run.output[-3000:]
    fails = verdicts_of(run, "fail")
    assert not fails, f"{variation.name} failed {sorted(fails)}: {_why(run, fails)}"
    want = verdicts_of(control, "pass") - variation.stripped
    got = verdicts_of(run, "pass")
    assert got == want, (
        f"{variation.name}: lost {_why(run, want - got)}, gained {sorted(got - want)}"
    )
    for req_id in variation.stripped:
        reason = run.reasons()[req_id] or ""
        assert run.verdicts()[req_id] == "unverified" and "identity" in reason, (req_id, reason)


@pytest.mark.slow
@pytest.mark.req("OC-HARNESS-8112")
def test_a_shuffled_run_gives_the_same_verdicts(benign: Bench, control: ChildRun) -> None:
    shuffled = benign.run("passthrough", "--shuffle", SHUFFLE_SEED).run
    assert shuffled.report is not None, shuffled.output[-3000:]
    differ = {
        i: (v, shuffled.verdicts().get(i))
        for i, v in control.verdicts().items()
        if shuffled.verdicts().get(i) != v
    }
    assert not differ, f"verdicts depend on the order of the checks: {differ}"
