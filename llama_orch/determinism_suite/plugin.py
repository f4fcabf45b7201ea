"""The determinism suite as part of a compliance run (the `llorch-determinism` pytest plugin).

`llorch determinism` runs on its own (it needs replicas of one replica set and minutes on a
real engine) and writes a report; a compliance run counts that report's cases as checks of
kind `determinism` (specs/80 §5.4). This plugin registers those checks and turns the report
into their results through the harness's `pytest_llorch_checks` / `pytest_llorch_results`
hooks, so the harness itself never imports this package.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from llama_orch.determinism_suite.corpus import load_corpus
from llama_orch.determinism_suite.evidence import (
    CASE_REQS,
    CORPUS_REQS,
    SETTINGS_REQS,
    determinism_results,
    load_report,
)
from llama_orch.determinism_suite.report import source_commit
from llama_orch.harness.registry import Check, Kind
from llama_orch.harness.results import CheckResult, Evidence, Outcome

DEFAULT_REPORT = Path("reports") / "determinism" / "determinism.json"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("llorch").addoption(
        "--determinism-report",
        default=None,
        metavar="FILE",
        help="A `llorch determinism` report to count as evidence (default for the embedded "
        "reference: reports/determinism/determinism.json when present).",
    )


def determinism_checks() -> list[Check]:
    """One check per shipped corpus case (pinned mode's requirements), settings, corpus."""
    corpus = load_corpus()
    case_reqs = CASE_REQS["pinned"]
    checks = [
        Check(f"determinism::{c.id}", Kind.DETERMINISM, case_reqs, "determinism", source=c.id)
        for c in corpus.cases
    ]
    checks.append(Check("determinism::settings", Kind.DETERMINISM, SETTINGS_REQS, "determinism"))
    checks.append(Check("determinism::corpus", Kind.DETERMINISM, CORPUS_REQS, "determinism"))
    return checks


@pytest.hookimpl
def pytest_llorch_checks() -> list[Check]:
    return determinism_checks()


@pytest.hookimpl
def pytest_llorch_results(config: pytest.Config, target, known: set[str]) -> list:
    """The report's cases as results; without a report every case is an `error` saying so."""
    option = config.getoption("determinism_report", None)
    path = Path(option) if option else None
    if path is None:
        if not (target.embedded and DEFAULT_REPORT.exists()):
            why = (
                "no determinism report for this target: run `llorch determinism` against it "
                "and pass the report with --determinism-report"
            )
            return [
                CheckResult(c.id, c.kind.value, c.requirements, Outcome.ERROR, Evidence(why))
                for c in determinism_checks()
                if set(c.requirements) & known
            ]
        path = DEFAULT_REPORT
    corpus = load_corpus()
    return determinism_results(
        load_report(path),
        target="embedded" if target.embedded else target.url,
        shipped=(corpus.version, corpus.content_hash, len(corpus)),
        known=known,
        shipped_ids=tuple(c.id for c in corpus.cases),
        commit=source_commit(),
    )
