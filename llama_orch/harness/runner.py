"""One compliance run: select the target, run the checks, derive verdicts, write reports.

`llorch check` is a thin CLI over `run_check`; the checks themselves run under pytest with
the `llorch` plugin, in this process, against the target selected here.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import pytest

from llama_orch.harness import claims as claims_mod
from llama_orch.harness.determinism_evidence import determinism_results, load_report
from llama_orch.harness.reports import Implementation, RunInfo, build_report, write_reports
from llama_orch.harness.reports.model import Pool
from llama_orch.harness.reports.model import Target as ReportTarget
from llama_orch.harness.requirements import RequirementRecord, load_requirements
from llama_orch.harness.results import CheckResult, Evidence, Outcome
from llama_orch.harness.target import DEFAULT_CONFIG, Target, select_target
from llama_orch.harness.verdicts import compute, exit_code, result_of, summary
from llama_orch.resources import PACKAGE_DIR, data_path

REQUIREMENTS_DIR = data_path("requirements")
# Written by `make test` in the checkout; relative to the working directory like --report-dir.
WHITEBOX_RESULTS = Path("reports") / "whitebox" / "results.json"
DETERMINISM_REPORT = Path("reports") / "determinism" / "determinism.json"
TENANT_KEY_ENV = "LLORCH_TENANT_KEY"  # the embedded reference's data-plane-only key


class HarnessError(RuntimeError):
    """The harness itself could not run (exit code 2)."""


@dataclass
class CheckOptions:
    target: str | None = None
    api_key_env: str = "LLORCH_API_KEY"
    profile: str = "core"
    report_dir: Path = Path("reports")
    only: tuple[str, ...] = ()
    families: tuple[str, ...] = ()
    partial_exit_code: int = 1
    impl_name: str | None = None
    impl_version: str | None = None
    impl_url: str | None = None
    whitebox: Path | None = WHITEBOX_RESULTS
    # A `llorch determinism` report; None: the default one, for the embedded reference only.
    determinism: Path | None = None
    quiet: bool = False


@dataclass
class CheckRun:
    exit_code: int
    result: str
    summary: dict[str, int]
    failed: list[str]
    claimed_not_shown: list[str]
    paths: list[Path]
    duration_s: float


def load_results(path: Path) -> list[CheckResult]:
    out = []
    for item in json.loads(path.read_text(encoding="utf-8")):
        ev = item.get("evidence") or {}
        out.append(
            CheckResult(
                id=item["id"],
                kind=item["kind"],
                requirement_ids=tuple(item["requirement_ids"]),
                outcome=Outcome(item["outcome"]),
                evidence=Evidence(
                    ev.get("message", ""), ev.get("request"), ev.get("response"), ev.get("curl")
                ),
                duration_s=float(item.get("duration_s", 0.0)),
            )
        )
    return out


def _pytest_args(opts: CheckOptions, target: Target, results_dir: Path) -> list[str]:
    args = [
        "-p",
        "no:cacheprovider",
        "--rootdir",
        str(PACKAGE_DIR.parent),
        "-o",
        "addopts=",
        "--pyargs",
        "llama_orch.harness.checks",
        "--target",
        target.url,
        "--api-key-env",
        opts.api_key_env,
        "--profile",
        opts.profile,
        "--report-dir",
        str(results_dir),
        "-qq",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
    ]
    if not opts.quiet:
        args.append("--family-progress")
    if target.tenant_key:
        args += ["--tenant-key-env", TENANT_KEY_ENV]
    if target.log_path is not None:
        args += ["--target-log", str(target.log_path)]
    if target.embedded:
        args += ["--reference-config", str(DEFAULT_CONFIG)]
    for rid in opts.only:
        args += ["--only", rid]
    for fam in opts.families:
        args += ["--family", fam]
    return args


@contextlib.contextmanager
def _environment(values: dict[str, str]):
    """Set environment variables for the in-process check run only, then restore them."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def run_check(opts: CheckOptions) -> CheckRun:
    started = time.monotonic()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    requirements = load_requirements(REQUIREMENTS_DIR)
    known = {r.id for r in requirements}
    unknown_only = sorted(set(opts.only) - known)
    if unknown_only:
        raise HarnessError(f"--only names unknown requirement(s): {', '.join(unknown_only)}")
    with select_target(opts.target, opts.api_key_env) as target:
        with tempfile.TemporaryDirectory(prefix="llorch-check-") as tmp:
            keys = {opts.api_key_env: target.api_key, TENANT_KEY_ENV: target.tenant_key}
            with _environment({k: v for k, v in keys.items() if v}):
                code = pytest.main(_pytest_args(opts, target, Path(tmp)))
            results_file = Path(tmp) / "results.json"
            if code not in (0, 1) or not results_file.exists():
                raise HarnessError(f"the check suite could not run (pytest exit code {code})")
            results = load_results(results_file)
    if target.embedded and opts.whitebox is not None and opts.whitebox.exists():
        results += whitebox_results(opts.whitebox, known)
    results += determinism_checks(opts, target, known)
    return finish(opts, requirements, results, target, started, started_at)


def whitebox_results(path: Path, known: set[str]) -> list[CheckResult]:
    """White-box tests of the reference (`make test` writes them) as checks of kind white-box."""
    out = []
    for r in load_results(path):
        ids = tuple(i for i in r.requirement_ids if i in known)
        if ids:
            out.append(
                CheckResult(f"tests::{r.id}", "white-box", ids, r.outcome, r.evidence, r.duration_s)
            )
    return out


def determinism_checks(opts: CheckOptions, target: Target, known: set[str]) -> list[CheckResult]:
    """The determinism suite's cases as checks (kind determinism), when a report applies."""
    path = opts.determinism
    if path is None:
        if not (target.embedded and DETERMINISM_REPORT.exists()):
            return []
        path = DETERMINISM_REPORT
    from llama_orch.determinism_suite.corpus import load_corpus
    from llama_orch.determinism_suite.report import source_commit

    corpus = load_corpus()
    return determinism_results(
        load_report(path),
        target="embedded" if target.embedded else target.url,
        shipped=(corpus.version, corpus.content_hash, len(corpus)),
        known=known,
        shipped_ids=tuple(c.id for c in corpus.cases),
        commit=source_commit(),
    )


def finish(
    opts: CheckOptions,
    requirements: list[RequirementRecord],
    results: list[CheckResult],
    target: Target,
    started: float,
    started_at: str,
) -> CheckRun:
    known = {r.id for r in requirements}
    verdicts = compute(
        requirements,
        results,
        profile=opts.profile,
        only=set(opts.only) or None,
        waivers=claims_mod.waivers(target.capabilities),
    )
    if opts.families:
        fams = tuple(f"{f}-" for f in opts.families)
        verdicts = [v for v in verdicts if v.requirement.id.startswith(fams)]
    duration = time.monotonic() - started
    run = RunInfo(
        started_at=started_at,
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
        duration_s=round(duration, 2),
        harness_version=version("llama-orch"),
        host=platform.node(),
        target=ReportTarget(
            url=target.url,
            embedded=target.embedded,
            config="examples/mock.yaml" if target.embedded else None,
            pools=tuple(
                Pool(
                    id=",".join(s.get("slo", {}).get("pools", [])) or s["id"],
                    engine=s.get("engine"),
                    engine_version=s.get("slo", {}).get("engine_version"),
                )
                for s in target.replica_sets
            ),
        ),
    )
    report = build_report(
        verdicts,
        profile=opts.profile,
        implementation=Implementation(
            opts.impl_name or ("llama-orch reference" if target.embedded else None),
            opts.impl_version or (version("llama-orch") if target.embedded else None),
            opts.impl_url or (None if target.embedded else target.url),
        ),
        spec_version=version("llama-orch"),
        run=run,
        claims=claims_mod.claims(target.capabilities, known),
        secrets=[target.api_key] if target.api_key else [],
    )
    paths = write_reports(report, opts.report_dir)
    result = result_of(verdicts, opts.profile)
    return CheckRun(
        exit_code=exit_code(result, opts.partial_exit_code),
        result=result,
        summary=summary(verdicts),
        failed=[v.requirement.id for v in verdicts if v.verdict.value == "fail"],
        claimed_not_shown=[c.feature for c in report.claimed_not_shown],
        paths=paths,
        duration_s=duration,
    )
