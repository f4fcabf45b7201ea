"""White-box evidence: the reference's own tests, recorded by pytest and read by the harness.

`pytest --report-dir reports/whitebox` (the project's test run) writes every `req`-marked
test's outcome to `results.json`; `llorch check` against the embedded reference reads it and
counts each test as a check of kind `white-box`. Against any other target those checks cannot
run: they test the reference's internals.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llama_orch.harness.collectors import whitebox_check_id
from llama_orch.harness.outcomes import classify
from llama_orch.harness.registry import Check
from llama_orch.harness.results import CheckResult, Evidence, Outcome

RESULTS = pytest.StashKey[list[CheckResult]]()
DEFAULT_RESULTS = Path("reports") / "whitebox" / "results.json"
NOT_REFERENCE = "white-box test of the reference implementation: it runs only against the reference"


def _ids(item: pytest.Item) -> tuple[str, ...]:
    ids: list[str] = []
    for mark in item.iter_markers("req"):
        ids.extend(str(a) for a in mark.args)
    return tuple(dict.fromkeys(ids))


def select(config: pytest.Config, items: list[pytest.Item]) -> list[pytest.Item]:
    """Keep the tests naming a requirement selected by --only / --family; the dropped ones."""
    only = set(config.getoption("only") or [])
    families = tuple(f"{f}-" for f in config.getoption("family") or [])
    if not only and not families:
        return []
    keep, drop = [], []
    for item in items:
        ids = _ids(item)
        ok = (not only or only.intersection(ids)) and (
            not families or any(i.startswith(families) for i in ids)
        )
        (keep if ok else drop).append(item)
    items[:] = keep
    return drop


def record(item: pytest.Item, call: pytest.CallInfo, report: pytest.TestReport) -> None:
    """Keep the outcome of a `req`-marked test (any pytest run outside the checks package)."""
    ids = _ids(item)
    if not ids or not (report.when == "call" or (report.when == "setup" and not report.passed)):
        return
    if report.skipped:
        reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else ""
        outcome, message = Outcome.ERROR, f"not run: {reason.removeprefix('Skipped: ')}"
    elif report.failed:
        exc = call.excinfo.value if call.excinfo else None
        if exc is None:
            outcome, message = Outcome.ERROR, "failed"
        else:
            found = classify(exc, ids, in_call=report.when == "call")
            outcome, message = found.outcome, found.message
    else:
        outcome, message = Outcome.PASSED, ""
    item.config.stash.setdefault(RESULTS, []).append(
        CheckResult(
            item.nodeid, "white-box", ids, outcome, Evidence(message), round(report.duration, 3)
        )
    )


def write(config: pytest.Config) -> None:
    out = config.getoption("report_dir", None)
    results = config.stash.get(RESULTS, None)
    if not out or results is None:
        return
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    payload = [
        {
            "id": r.id,
            "requirement_ids": list(r.requirement_ids),
            "outcome": r.outcome.value,
            "evidence": r.evidence.to_json(),
            "duration_s": r.duration_s,
        }
        for r in sorted(results, key=lambda r: r.id)
    ]
    (path / "results.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


# Which outcome of a test's parameter cases speaks for the test: the worst one.
_RANK = {Outcome.FAILED: 0, Outcome.UNDEFINED: 1, Outcome.ERROR: 2, Outcome.PASSED: 3}


def load(path: Path, known: set[str]) -> list[CheckResult]:
    """A results.json as white-box checks, one per test function as the registry names them
    (parameter cases merged, the worst outcome speaking), keeping only known requirement IDs."""
    merged: dict[str, CheckResult] = {}
    for item in json.loads(path.read_text(encoding="utf-8")):
        ids = tuple(i for i in item["requirement_ids"] if i in known)
        if not ids:
            continue
        ev = item.get("evidence") or {}
        test_id = item["id"].partition("[")[0]
        result = CheckResult(
            whitebox_check_id(test_id),
            "white-box",
            ids,
            Outcome(item["outcome"]),
            Evidence(ev.get("message", ""), ev.get("request"), ev.get("response"), ev.get("curl")),
            float(item.get("duration_s", 0.0)),
        )
        old = merged.get(result.id)
        if old is None or _RANK.get(result.outcome, 2) < _RANK.get(old.outcome, 2):
            merged[result.id] = result
    return list(merged.values())


def results_for(
    registry_checks: list[Check], path: Path | None, embedded: bool, known: set[str]
) -> list[CheckResult]:
    """White-box results of this run: recorded ones for the reference, `error` for others."""
    if embedded and path is not None and path.exists():
        return load(path, known)
    why = NOT_REFERENCE if not embedded else f"no white-box results at {path}: run `make test`"
    return [
        CheckResult(c.id, "white-box", c.requirements, Outcome.ERROR, Evidence(why))
        for c in registry_checks
    ]
