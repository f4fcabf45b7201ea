"""Undefined Gherkin steps are found before the run and their scenarios never run (issue 5).

The lint is checked on its own (file:line, outlines, backgrounds, the real `features/`); the
plugin end to end in a child pytest over a copy of `features/` plus one bogus feature: the
scenario with the undefined step is announced on stderr before the run, never executed, and
recorded as `undefined`, which the verdict engine turns into `unverified`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from llama_orch.harness.gherkin_lint import ROOT, lint_features
from llama_orch.harness.openapi import REQUIREMENTS_DIR
from llama_orch.harness.requirements import load_requirements
from llama_orch.harness.results import Outcome
from llama_orch.harness.verdicts import Verdict, compute
from llama_orch.harness.whitebox import load

FEATURE = """\
@ORCH-3004
Feature: Lint fixture
  Scenario: One defined step and one undefined
    Given any replica set
    When the orchestrator is asked to frobnicate
"""

OUTLINE = """\
@ORCH-3035
Feature: Outline fixture
  Background:
    Given any replica set
    And a background step nobody wrote

  @OC-CTRL-2040
  Scenario Outline: Status <code>
    Then the response status is <code>

    Examples:
      | code |
      | 401  |
      | abc  |
"""

BOGUS = """\
Feature: Bogus
  @OC-HARNESS-8106
  Scenario: A scenario with an undefined step
    Given a trace is left as "bogus"
    When the orchestrator is asked to frobnicate

  @OC-HARNESS-8105
  Scenario: A fully defined scenario
    Given a trace is left as "defined"
"""

CONFTEST = """\
import os
from pathlib import Path

from pytest_bdd import given, parsers

from llama_orch.harness.steps import export_steps

export_steps(globals())


@given(parsers.parse('a trace is left as "{name}"'))
def _trace(name):
    Path(os.environ["TRACE_DIR"], name).write_text("ran")
"""

BOUND = """\
from pathlib import Path

from pytest_bdd import scenarios

scenarios("features", features_base_dir=str(Path(__file__).parent))
"""


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_lint_finds_exactly_the_undefined_step_with_file_and_line(tmp_path: Path) -> None:
    _write(tmp_path / "f" / "one.feature", FEATURE)
    [u] = lint_features(tmp_path / "f", root=tmp_path)
    assert (u.feature, u.line) == ("f/one.feature", 5)
    assert u.scenario == "One defined step and one undefined"
    assert u.step == "When the orchestrator is asked to frobnicate"
    assert u.requirement_ids == ("ORCH-3004",)
    assert u.warning().startswith("undefined step: f/one.feature:5 'When the orchestrator")
    assert "(ORCH-3004)" in u.warning() and "unverified" in u.warning()


def test_lint_covers_backgrounds_and_each_outline_row(tmp_path: Path) -> None:
    _write(tmp_path / "outline.feature", OUTLINE)
    found = lint_features(tmp_path, root=tmp_path)
    assert [(u.line, u.step) for u in found] == [
        (5, "And a background step nobody wrote (a given step)"),
        (9, "Then the response status is abc"),  # the 401 row matches `{status:d}`
    ]
    assert all(u.requirement_ids == ("OC-CTRL-2040", "ORCH-3035") for u in found)


def test_lint_names_a_missing_features_dir(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        lint_features(tmp_path / "nowhere")


def test_the_real_features_have_no_undefined_steps() -> None:
    found = lint_features(ROOT / "features")
    assert found == [], "\n".join(u.warning() for u in found)


def _child_pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRACE_DIR": str(tmp_path / "trace"), "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "pytest", "test_bound.py", "-p", "no:cacheprovider"]
    cmd += ["--rootdir", str(tmp_path), "-W", "ignore::pytest.PytestAssertRewriteWarning"]
    cmd += ["--target", "http://127.0.0.1:9", *args]  # unreachable: no check may touch it
    return subprocess.run(
        cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def bound_features(tmp_path: Path) -> Path:
    """A copy of `features/` plus the bogus feature, bound by a module like test_features.py."""
    shutil.copytree(ROOT / "features", tmp_path / "features")
    _write(tmp_path / "features" / "bogus" / "bogus.feature", BOGUS)
    _write(tmp_path / "conftest.py", CONFTEST)
    _write(tmp_path / "test_bound.py", BOUND)
    (tmp_path / "trace").mkdir()
    return tmp_path


def test_plugin_finds_only_the_bogus_step_among_the_real_features(bound_features: Path) -> None:
    proc = _child_pytest(bound_features, "--collect-only", "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("undefined step:")]
    assert warnings == [
        "undefined step: features/bogus/bogus.feature:5 'When the orchestrator is asked to "
        "frobnicate' in scenario 'A scenario with an undefined step' (OC-HARNESS-8106) "
        "- its requirements will be unverified"
    ]


@pytest.mark.req("OC-HARNESS-8106")
def test_plugin_never_runs_an_undefined_scenario_and_records_it(bound_features: Path) -> None:
    report = bound_features / "report"
    only = ["--only", "OC-HARNESS-8106", "--only", "OC-HARNESS-8105"]
    proc = _child_pytest(bound_features, "--report-dir", str(report), *only, "-v")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output  # the refused scenario is an error, not a pass
    assert "undefined step: features/bogus/bogus.feature:5" in proc.stderr
    # Its first step is defined, yet it never ran; the other scenario's did.
    assert sorted(p.name for p in (bound_features / "trace").iterdir()) == ["defined"]
    known = {r.id for r in load_requirements(REQUIREMENTS_DIR)}
    results = {r.requirement_ids: r for r in load(report / "results.json", known)}
    assert set(results) == {("OC-HARNESS-8106",), ("OC-HARNESS-8105",)}
    refused = results[("OC-HARNESS-8106",)]
    assert refused.id == "tests::test_bound.py::test_a_scenario_with_an_undefined_step"
    assert refused.outcome is Outcome.UNDEFINED
    assert "features/bogus/bogus.feature:5" in refused.evidence.message
    assert "When the orchestrator is asked to frobnicate" in refused.evidence.message
    assert results[("OC-HARNESS-8105",)].outcome is Outcome.PASSED

    reqs = [r for r in load_requirements(REQUIREMENTS_DIR) if r.id.startswith("OC-HARNESS-810")]
    verdicts = {v.requirement.id: v for v in compute(reqs, results.values(), profile="core")}
    assert verdicts["OC-HARNESS-8105"].verdict is Verdict.PASS
    unverified = verdicts["OC-HARNESS-8106"]
    assert unverified.verdict is Verdict.UNVERIFIED
    assert unverified.reason is not None and "undefined step" in unverified.reason
    assert "bogus.feature:5" in unverified.reason


def test_list_marks_checks_with_undefined_steps(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`llorch check --list` reads the registry and marks scenarios that would not run."""
    from llama_orch.cli.main import main
    from llama_orch.harness import gherkin_lint

    real = gherkin_lint.lint_features

    def with_one_undefined(features_dir: Path, *args, **kwargs):
        found = real(features_dir, *args, **kwargs)
        fake = gherkin_lint.UndefinedStep(
            "features/streaming/sse.feature",
            12,
            "The started event says where the task stands",
            "Then",
            "then",
            "a step nobody wrote",
            ("ORCH-3029",),
        )
        return [*found, fake]

    monkeypatch.setattr(gherkin_lint, "lint_features", with_one_undefined)
    result = CliRunner().invoke(main, ["check", "--list", "--only", "ORCH-3029"])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if "The started event says" in x)
    assert line.endswith("[undefined step: will not run]")
