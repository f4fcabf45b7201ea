"""A determinism report becomes compliance evidence: one check per case, stale or foreign
reports never pass, and divergences fail their requirements with the split as evidence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llama_orch.determinism_suite.corpus import load_corpus
from llama_orch.determinism_suite.evidence import (
    DeterminismReportError,
    determinism_results,
    load_report,
)
from llama_orch.harness.openapi import REQUIREMENTS_DIR
from llama_orch.harness.requirements import load_requirements
from llama_orch.harness.results import Outcome
from llama_orch.harness.verdicts import compute

CORPUS = load_corpus()
SHIPPED = (CORPUS.version, CORPUS.content_hash, len(CORPUS))
REQS = load_requirements(REQUIREMENTS_DIR)
KNOWN = {r.id for r in REQS}
DET_REQS = ("ORCH-3045", "OC-CORE-1030", "OC-TEST-7001", "OC-TEST-7002", "OC-TEST-7003")


def _report(mode: str = "pinned", target: str = "embedded:examples/x.yaml", **over) -> dict:
    cases = [{"id": c.id, "seed": c.seed, "status": "equal"} for c in CORPUS.cases]
    report = {
        "suite": "determinism",
        "mode": mode,
        "target": target,
        "corpus": {
            "version": CORPUS.version,
            "content_hash": CORPUS.content_hash,
            "cases": len(CORPUS),
            "seeds": [c.seed for c in CORPUS.cases],
        },
        "settings_applied": {"engine": "llamacpp", "start_args": ["--parallel", "1"]},
        "settings_confirmed": True,
        "settings_problems": [],
        "cases": cases,
    }
    report.update(over)
    return report


def _verdicts(results) -> dict[str, str]:
    return {v.requirement.id: v.verdict.value for v in compute(REQS, results, profile="core")}


@pytest.mark.req("OC-TEST-7001", "OC-TEST-7002", "OC-TEST-7003", "ORCH-3045")
def test_an_all_equal_pinned_report_passes_the_determinism_requirements() -> None:
    results = determinism_results(_report(), target="embedded", shipped=SHIPPED, known=KNOWN)
    assert len(results) == len(CORPUS) + 2
    assert {r.kind for r in results} == {"determinism"}
    assert all(r.outcome is Outcome.PASSED for r in results)
    case = next(r for r in results if r.id == f"determinism::{CORPUS.cases[0].id}")
    assert set(case.requirement_ids) == {"ORCH-3045", "OC-CORE-1030", "OC-TEST-7001", "ORCH-3050"}
    verdicts = _verdicts(results)
    assert all(verdicts[r] == "pass" for r in DET_REQS)


def test_a_direct_report_proves_only_the_suite_requirements() -> None:
    results = determinism_results(
        _report("direct", None), target="http://x", shipped=SHIPPED, known=KNOWN
    )
    ids = {i for r in results for i in r.requirement_ids}
    assert "ORCH-3045" not in ids and "OC-TEST-7001" in ids


def test_a_divergence_fails_with_the_split_and_the_replay_body() -> None:
    report = _report()
    report["cases"][3] = {
        "id": report["cases"][3]["id"],
        "seed": 1,
        "status": "diverged",
        "first_diff_index": 4,
        "left": {"token_id": 10, "at": " Paris", "error": None},
        "right": {"token_id": 11, "at": " Lyon", "error": None},
        "request_json": {"left": {"prompt": "The capital", "seed": 1}},
    }
    results = determinism_results(report, target="embedded", shipped=SHIPPED, known=KNOWN)
    failed = [r for r in results if r.outcome is Outcome.FAILED]
    assert len(failed) == 1 and "diverged at token 4" in failed[0].evidence.message
    assert "' Paris'" in failed[0].evidence.message and '"seed": 1' in failed[0].evidence.request
    assert _verdicts(results)["ORCH-3045"] == "fail"


@pytest.mark.parametrize(
    ("report", "target", "why"),
    [
        (_report(corpus={"version": "1", "content_hash": "sha256:old"}), "embedded", "corpus 1"),
        (_report(target="http://other:8080"), "http://mine:8080", "not this target"),
    ],
)
def test_stale_or_foreign_reports_never_pass(report, target: str, why: str) -> None:
    results = determinism_results(report, target=target, shipped=SHIPPED, known=KNOWN)
    assert results and all(r.outcome is Outcome.ERROR for r in results)
    assert why in results[0].evidence.message
    assert _verdicts(results)["ORCH-3045"] == "unverified"


def test_unconfirmed_settings_leave_cases_unverified() -> None:
    report = _report(settings_confirmed=False, settings_problems=["r0: slots_total is 4"])
    for case in report["cases"]:
        case["status"] = "unverified"
    results = determinism_results(report, target="embedded", shipped=SHIPPED, known=KNOWN)
    assert {r.outcome for r in results if r.id != "determinism::corpus"} == {Outcome.ERROR}
    verdicts = _verdicts(results)
    assert verdicts["ORCH-3045"] == "unverified" and verdicts["OC-TEST-7002"] == "unverified"


def test_a_file_that_is_not_a_determinism_report_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"suite": "other"}), encoding="utf-8")
    with pytest.raises(DeterminismReportError, match="not a determinism report"):
        load_report(bad)
    bad.write_text("{", encoding="utf-8")
    with pytest.raises(DeterminismReportError, match="cannot read"):
        load_report(bad)


def test_one_equal_case_never_passes_a_report_with_cases_left_uncompared() -> None:
    """The suite passes only as a whole: errors anywhere void every pass (no hidden gaps)."""
    report = _report()
    for case in report["cases"][1:]:
        case["status"] = "error"
        case["note"] = "HTTP_400: INVALID_PARAMS: unknown sampler_profile_version"
    results = determinism_results(
        report,
        target="embedded",
        shipped=SHIPPED,
        known=KNOWN,
        shipped_ids=tuple(c.id for c in CORPUS.cases),
    )
    case_ids = {f"determinism::{c.id}" for c in CORPUS.cases}
    assert not any(r.outcome is Outcome.PASSED for r in results if r.id in case_ids)
    first = next(r for r in results if r.id == f"determinism::{CORPUS.cases[0].id}")
    assert f"{len(CORPUS) - 1} of {len(CORPUS)} cases were not compared" in first.evidence.message
    verdicts = _verdicts(results)
    assert verdicts["ORCH-3045"] == "unverified" and verdicts["OC-TEST-7001"] == "unverified"


def test_a_report_missing_cases_of_the_shipped_corpus_does_not_pass() -> None:
    report = _report()
    report["cases"] = report["cases"][:-1]
    results = determinism_results(
        report,
        target="embedded",
        shipped=SHIPPED,
        known=KNOWN,
        shipped_ids=tuple(c.id for c in CORPUS.cases),
    )
    assert _verdicts(results)["ORCH-3045"] == "unverified"


def test_direct_reports_count_only_for_the_embedded_reference() -> None:
    report = _report("direct", None)
    foreign = determinism_results(report, target="http://other", shipped=SHIPPED, known=KNOWN)
    assert {r.outcome for r in foreign} == {Outcome.ERROR}
    assert "direct-mode report" in foreign[0].evidence.message
    own = determinism_results(report, target="embedded", shipped=SHIPPED, known=KNOWN)
    assert all(r.outcome is Outcome.PASSED for r in own)


def test_text_only_comparisons_and_reports_from_other_code_do_not_pass() -> None:
    report = _report()
    for case in report["cases"]:
        case["compared_by"] = "text"
    results = determinism_results(report, target="embedded", shipped=SHIPPED, known=KNOWN)
    assert "compared by text" in results[0].evidence.message
    assert _verdicts(results)["ORCH-3045"] == "unverified"
    old = _report(environment={"harness_commit": "a" * 40})
    results = determinism_results(
        old, target="embedded", shipped=SHIPPED, known=KNOWN, commit="b" * 40
    )
    assert {r.outcome for r in results} == {Outcome.ERROR}
    assert "made with commit aaaaaaaaaaaa" in results[0].evidence.message


def test_malformed_cases_are_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "d.json"
    bad.write_text(json.dumps(_report(cases=[{"status": "equal"}])), encoding="utf-8")
    with pytest.raises(DeterminismReportError, match="cases"):
        load_report(bad)
