"""The two ends of a run inside pytest: set it up (registry, target) and finish it.

Finishing turns every check result (pytest items, the determinism suite's results through the
`pytest_llorch_results` hook, the reference's white-box results) into one verdict per requirement,
writes the four reports and gives the exit code — the same for `llorch check` and for plain
`pytest -p llorch`.
"""

from __future__ import annotations

import contextlib
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import pytest

from llama_orch.harness import claims as claims_mod
from llama_orch.harness import options, whitebox
from llama_orch.harness.collectors import build_registry
from llama_orch.harness.description import TargetDescriptionError
from llama_orch.harness.discovery import Target, TargetError, pools_of
from llama_orch.harness.registry import Kind, RegistryError
from llama_orch.harness.reports import (
    Implementation,
    Pool,
    ReportWriteError,
    RunInfo,
    TargetInfo,
    build_report,
    write_reports,
)
from llama_orch.harness.requirements import RequirementsError, load_requirements
from llama_orch.harness.session import RunState, Selection
from llama_orch.harness.target import open_target
from llama_orch.harness.verdicts import VerdictInputError, compute, exit_code, result_of, summary
from llama_orch.resources import data_path

RUN_KEY = pytest.StashKey["CheckRun"]()
ERROR_KEY = pytest.StashKey[str]()
HARNESS_ERROR_EXIT = 2


class OutsideResultsError(RuntimeError):
    """Results from outside pytest (a determinism report, white-box results) are unreadable."""


HARNESS_ERRORS = (
    OutsideResultsError,
    TargetError,
    TargetDescriptionError,
    RequirementsError,
    RegistryError,
    VerdictInputError,
    ReportWriteError,
    OSError,
)


@dataclass
class CheckRun:
    """What a finished run reports back to `llorch check` (and prints)."""

    exit_code: int
    result: str
    summary: dict[str, int]
    failed: list[str]
    root_causes: list[str]
    claimed_not_shown: list[str]
    paths: list[Path]
    duration_s: float
    notes: list[str] = field(default_factory=list)


def new_state(config: pytest.Config) -> RunState:
    """The run's registry, requirements and selection; a broken input stops the run (2)."""
    try:
        requirements = load_requirements(data_path("requirements"))
        extra = config.hook.pytest_llorch_checks()
        registry = build_registry(extra)
        desc = options.description(config)
        known = {r.id for r in requirements}
        unknown = sorted(set(config.getoption("only")) - known)
        if unknown:
            raise VerdictInputError(f"--only names unknown requirement(s): {', '.join(unknown)}")
    except HARNESS_ERRORS as exc:
        harness_error(config, exc)
        raise  # unreachable: harness_error exits
    selection = Selection(
        config.getoption("profile"),
        frozenset(config.getoption("only")),
        tuple(config.getoption("family")),
    )
    return RunState(registry, requirements, selection, desc)


def open(stack: contextlib.ExitStack, state: RunState, config: pytest.Config) -> Target:
    """Start (embedded) or reach the target and read what it declares."""
    ref = config.getoption("reference_config")
    if ref:
        return stack.enter_context(open_target(state.description, Path(ref)))
    return stack.enter_context(open_target(state.description))


def harness_error(config: pytest.Config, exc: BaseException, session=None) -> None:
    """Stop: print the cause, write no report, exit 2 (OC-HARNESS-8203)."""
    message = f"{exc}"
    config.stash[ERROR_KEY] = message
    if session is not None:
        session.exitstatus = HARNESS_ERROR_EXIT
        return
    pytest.exit(message, returncode=HARNESS_ERROR_EXIT)


def _outside_results(config: pytest.Config, state: RunState) -> list:
    """Results of checks that are not pytest items: determinism reports, white-box tests."""
    target = state.target
    assert target is not None
    known = {r.id for r in state.requirements}
    path = config.getoption("whitebox_results")
    path = Path(path) if path else whitebox.DEFAULT_RESULTS
    try:
        hooked = config.hook.pytest_llorch_results(config=config, target=target, known=known)
        wb = state.registry.of_kind(Kind.WHITE_BOX)
        results = whitebox.results_for(wb, path, target.embedded, known)
    except (ValueError, KeyError, TypeError) as exc:
        raise OutsideResultsError(f"{type(exc).__name__}: {exc}") from exc
    out = [r for group in hooked for r in group]
    out += [r for r in results if state.selected_check_ids(r.requirement_ids)]
    return out


def finish(config: pytest.Config, state: RunState, now: float) -> CheckRun:
    target = state.target
    assert target is not None
    results = state.results + _outside_results(config, state)
    selection = state.selection
    chosen = None  # --only and --family deselect the rest: those requirements are `skipped`
    if selection.only or selection.families:
        chosen = {r.id for r in state.requirements if selection.selects(r)}
    verdicts = compute(
        state.requirements,
        results,
        profile=selection.profile,
        only=chosen,
        waivers=claims_mod.waivers(target.claimed()),
        embedded=target.embedded,
    )
    duration = now - state.started
    opt = config.getoption
    run = RunInfo(
        started_at=state.started_at,
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
        duration_s=round(duration, 2),
        harness_version=version("llama-orch"),
        host=platform.node(),
        target=TargetInfo(
            url=target.url,
            embedded=target.embedded,
            config="examples/mock.yaml" if target.embedded else None,
            pools=tuple(
                Pool(
                    id=",".join(pools_of(s)) or str(s.get("id")),
                    engine=s.get("engine"),
                    engine_version=target.fact(s, "engine_version"),
                )
                for s in target.replica_sets
            ),
        ),
    )
    known = {r.id for r in state.requirements}
    report = build_report(
        verdicts,
        profile=state.selection.profile,
        implementation=Implementation(
            opt("impl_name") or ("llama-orch reference" if target.embedded else None),
            opt("impl_version") or (version("llama-orch") if target.embedded else None),
            opt("impl_url") or (None if target.embedded else target.url),
        ),
        spec_version=version("llama-orch"),
        run=run,
        claims=claims_mod.claims(target.claimed(), known),
        secrets=target.secrets(),
    )
    out = opt("report_dir")
    paths = write_reports(report, Path(out)) if out else []
    result = result_of(verdicts, state.selection.profile)
    check_run = CheckRun(
        exit_code=exit_code(result, int(opt("partial_exit_code"))),
        result=result,
        summary=summary(verdicts),
        failed=[v.requirement.id for v in verdicts if v.verdict.value == "fail"],
        root_causes=list(report.root_causes),
        claimed_not_shown=[c.feature for c in report.claimed_not_shown],
        paths=paths,
        duration_s=duration,
    )
    config.stash[RUN_KEY] = check_run
    return check_run


def summary_text(run: CheckRun) -> str:
    """The closing table: verdict counts, result, failures, claims, report paths (8204)."""
    lines = ["", "verdict          count", "---------------  -----"]
    lines += [f"{name:<15}  {count:>5}" for name, count in run.summary.items()]
    lines += [f"{'total':<15}  {sum(run.summary.values()):>5}", "", f"result: {run.result}"]
    if run.failed:
        lines.append(f"failed: {', '.join(run.failed)}")
    if run.root_causes:
        lines.append(f"root causes: {', '.join(run.root_causes)}")
    if run.claimed_not_shown:
        lines.append(f"claimed but not shown: {', '.join(run.claimed_not_shown)}")
    if run.paths:
        lines.append("reports: " + ", ".join(str(p) for p in run.paths))
    lines.append(f"time: {run.duration_s:.1f} s")
    return "\n".join(lines)
