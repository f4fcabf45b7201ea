"""A determinism report (`llorch determinism`) as checks for the compliance verdicts.

One check per corpus case, plus one for the settings and one for the corpus itself. A report
counts only for the target it was made against, for the corpus shipped with this harness and
for the code it was made with; a direct-mode report counts only for the embedded reference
(it drove the reference adapters). A stale or foreign report turns its checks into `error`
outcomes (so the requirements read `unverified` with the reason), never into passes. So does
a report in which any case was not compared: the suite passes only when every case did.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llama_orch.harness.results import CheckResult, Evidence, Outcome

# Requirements a case comparison proves. Pinned mode goes through the orchestrator's public
# API (the black-box promise); direct mode shows the suite and the engine settings only.
CASE_REQS = {
    "pinned": ("ORCH-3045", "OC-CORE-1030", "OC-TEST-7001", "ORCH-3050"),
    "direct": ("OC-TEST-7001", "ORCH-3050"),
}
SETTINGS_REQS = ("OC-TEST-7002", "ORCH-3050")
CORPUS_REQS = ("OC-TEST-7003",)
MIN_CASES = 64
_OUTCOME = {
    "equal": Outcome.PASSED,
    "diverged": Outcome.FAILED,
    "error": Outcome.ERROR,
    "unverified": Outcome.ERROR,
}


class DeterminismReportError(ValueError):
    """The report file cannot be read as a determinism report (names the file and why)."""


def load_report(path: Path) -> dict[str, Any]:
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DeterminismReportError(f"{path}: cannot read a determinism report ({exc})") from exc
    if not isinstance(report, dict) or report.get("suite") != "determinism":
        raise DeterminismReportError(f"{path}: not a determinism report (no suite: determinism)")
    cases = report.get("cases")
    if not isinstance(cases, list) or not all(
        isinstance(c, dict) and isinstance(c.get("id"), str) and isinstance(c.get("status"), str)
        for c in cases
    ):
        raise DeterminismReportError(f"{path}: `cases` must be a list of {{id, status}} objects")
    if not isinstance(report.get("corpus"), dict):
        raise DeterminismReportError(f"{path}: no `corpus` object")
    return report


def _case_check(report: dict[str, Any], case: dict[str, Any], reqs: tuple[str, ...]) -> CheckResult:
    status = case.get("status")
    outcome = _OUTCOME.get(status, Outcome.ERROR)
    if outcome is Outcome.PASSED and case.get("compared_by") == "text":
        # Equal text is not equal tokens: a target without token ids cannot show ORCH-3045.
        outcome = Outcome.ERROR
        evidence = Evidence(f"case {case['id']} was compared by text: the target sent no token ids")
    elif outcome is Outcome.PASSED:
        evidence = Evidence("")
    elif status == "diverged":
        left, right = case.get("left", {}), case.get("right", {})
        message = (
            f"case {case['id']} (seed {case.get('seed')}) diverged at token "
            f"{case.get('first_diff_index')}: left id {left.get('token_id')} "
            f"{left.get('at')!r}, right id {right.get('token_id')} {right.get('at')!r}"
            + (f"; left error {left['error']}" if left.get("error") else "")
            + (f"; right error {right['error']}" if right.get("error") else "")
        )
        request = (case.get("request_json") or {}).get("left")
        evidence = Evidence(message, json.dumps(request, ensure_ascii=False) if request else None)
    elif status == "unverified":
        why = case.get("note") or "; ".join(report.get("settings_problems") or [])
        evidence = Evidence(f"case {case['id']} was equal, but {why or 'not confirmed'}")
    else:
        why = case.get("note") or (case.get("left") or {}).get("error") or status
        evidence = Evidence(f"case {case['id']} could not be compared: {why}")
    return CheckResult(f"determinism::{case['id']}", "determinism", reqs, outcome, evidence)


def _settings_check(report: dict[str, Any]) -> CheckResult:
    applied = report.get("settings_applied") or {}
    if report.get("settings_confirmed") and applied:
        outcome, message = Outcome.PASSED, ""
    else:
        outcome = Outcome.ERROR
        message = "; ".join(report.get("settings_problems") or []) or "no settings recorded"
    return CheckResult(
        "determinism::settings", "determinism", SETTINGS_REQS, outcome, Evidence(message)
    )


def _corpus_check(report: dict[str, Any], shipped: tuple[str, str, int]) -> CheckResult:
    corpus = report.get("corpus") or {}
    seeds = corpus.get("seeds") or []
    version, digest, count = shipped
    problems = []
    if (corpus.get("version"), corpus.get("content_hash")) != (version, digest):
        problems.append("the report's corpus is not the shipped one")
    if corpus.get("cases", 0) < MIN_CASES or count < MIN_CASES:
        problems.append(f"fewer than {MIN_CASES} cases")
    if len(seeds) != corpus.get("cases") or len(set(seeds)) != len(seeds):
        problems.append("cases do not each have their own seed")
    outcome = Outcome.FAILED if problems else Outcome.PASSED
    return CheckResult(
        "determinism::corpus", "determinism", CORPUS_REQS, outcome, Evidence("; ".join(problems))
    )


def determinism_results(
    report: dict[str, Any],
    *,
    target: str,
    shipped: tuple[str, str, int],
    known: set[str],
    shipped_ids: tuple[str, ...] = (),
    commit: str | None = None,
) -> list[CheckResult]:
    """Checks from one report; `target` is what the report must have run against
    (`embedded` for the embedded reference, else the target URL), `shipped_ids` the case ids
    of the shipped corpus in order, `commit` the code the report must come from (if known)."""
    mode = report.get("mode", "direct")
    reqs = tuple(r for r in CASE_REQS.get(mode, CASE_REQS["direct"]) if r in known)
    cases = report.get("cases") or []
    out = [_case_check(report, c, reqs) for c in cases]
    incomplete = _incomplete(cases, shipped_ids)
    if incomplete:  # a pass needs every case compared: keep failures, void the passes
        out = [_void(r, incomplete) if r.outcome is Outcome.PASSED else r for r in out]
    out += [_settings_check(report), _corpus_check(report, shipped)]
    stale = _stale(report, target, shipped, commit)
    if stale:
        out = [_void(r, stale) for r in out]
    return [r for r in out if r.requirement_ids]


def _void(check: CheckResult, why: str) -> CheckResult:
    return CheckResult(check.id, check.kind, check.requirement_ids, Outcome.ERROR, Evidence(why))


def _incomplete(cases: list[dict[str, Any]], shipped_ids: tuple[str, ...]) -> str | None:
    """Why the report does not show every shipped case compared, or None."""
    if shipped_ids and [c["id"] for c in cases] != list(shipped_ids):
        return "the report's cases are not the shipped corpus's cases"
    open_cases = [c["id"] for c in cases if c.get("status") not in ("equal", "diverged")]
    if open_cases:
        shown = ", ".join(open_cases[:5]) + (" ..." if len(open_cases) > 5 else "")
        return f"{len(open_cases)} of {len(cases)} cases were not compared ({shown})"
    return None


def _stale(
    report: dict[str, Any], target: str, shipped: tuple[str, str, int], commit: str | None
) -> str | None:
    corpus = report.get("corpus") or {}
    if (corpus.get("version"), corpus.get("content_hash")) != shipped[:2]:
        return (
            f"determinism report is for corpus {corpus.get('version')} "
            f"({corpus.get('content_hash')}); this harness ships {shipped[0]} ({shipped[1]}): "
            "run `llorch determinism` again"
        )
    made_with = (report.get("environment") or {}).get("harness_commit")
    if commit and made_with and made_with != commit:
        return (
            f"determinism report was made with commit {made_with[:12]}, this is "
            f"{commit[:12]}: run `llorch determinism` again"
        )
    made_for = report.get("target") or ""
    if report.get("mode") == "direct":
        if target != "embedded":
            return "a direct-mode report shows the reference's adapters, not this target"
        return None
    same = made_for == target or (made_for.startswith("embedded:") and target == "embedded")
    if not same:
        return f"determinism report was made against {made_for!r}, not this target ({target})"
    return None
