"""No hollow passes: targets that refuse everything once discovery is done pass nothing.

A target that answers every request after discovery with 401 (its own valid key included), or
with 503, is judged on the whole core profile. Not one requirement may pass: every check needs
its positive precondition (a success, a setup that happened) and a refused own key breaks the
auth rule, so the checks that rely on it are blocked by ORCH-3035 (root cause) instead of
passing on a documented 401 (OC-HARNESS-8110, issue 10's "hollow passes").
"""

from __future__ import annotations

import pytest

from tests._faulty import Bench, bench, verdicts_of


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory):
    with bench(tmp_path_factory.mktemp("hostile")) as b:
        yield b


@pytest.mark.slow
@pytest.mark.req("OC-HARNESS-8110", "OC-HARNESS-8111")
def test_a_target_refusing_every_request_with_401_passes_nothing(hostile: Bench) -> None:
    run = hostile.run("refuse-all-401").run
    assert run.report is not None, run.output[-3000:]
    passed = verdicts_of(run, "pass")
    assert not passed, f"passed against an all-401 target: {sorted(passed)}"
    assert verdicts_of(run, "fail") == {"ORCH-3035", "OC-CTRL-2040"}, verdicts_of(run, "fail")
    assert run.report["summary"]["root_causes"] == ["ORCH-3035", "OC-CTRL-2040"]
    blocked = [r for r in run.report["requirements"] if (r["reason"] or "").startswith("blocked")]
    assert len(blocked) >= 20, "the other checks must say they are blocked by the auth rule"


@pytest.mark.slow
@pytest.mark.req("OC-HARNESS-8110")
def test_a_target_answering_503_to_everything_passes_nothing(hostile: Bench) -> None:
    run = hostile.run("unavailable-503").run
    assert run.report is not None, run.output[-3000:]
    passed = verdicts_of(run, "pass")
    assert not passed, f"passed against an all-503 target: {sorted(passed)}"
