"""pytest plugin: run the harness checks against a target and collect one result per check.

Registered as the `llorch` pytest plugin, so `pytest --pyargs harness.checks --target URL`
in another project's CI is a release gate; `llorch check` drives the same plugin. Options:
--target (default: the embedded reference), --api-key-env, --profile, --only, --family,
--report-dir. Checks name their requirements with `@pytest.mark.req(...)` or a Gherkin tag
`@ORCH-2001`; a check skipped with a reason starting "not-supported:" is `not-supported`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from pytest_bdd.scenario import scenario_wrapper_template_registry
from pytest_bdd.utils import registry_get_safe

from llama_orch.harness.results import CheckResult, Evidence, Outcome
from llama_orch.spec_extract.model import REF_RE

RESULTS_KEY = pytest.StashKey[list]()
CLIENT_KEY = pytest.StashKey[object]()
NOT_SUPPORTED = "not-supported:"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llorch", "llama-orch compliance checks")
    group.addoption(
        "--target", default=None, help="OrchQueue v1 base URL (default: embedded reference)."
    )
    group.addoption(
        "--api-key-env", default="LLORCH_API_KEY", help="Env var holding the target's API key."
    )
    group.addoption(
        "--profile", default="core", choices=("core", "extended"), help="Compliance profile."
    )
    group.addoption(
        "--only", action="append", default=[], metavar="ID", help="Only these requirement IDs."
    )
    group.addoption(
        "--family",
        action="append",
        default=[],
        metavar="FAMILY",
        help="Only these families, e.g. OC-CTRL.",
    )
    group.addoption("--report-dir", default=None, help="Write check results (and reports) here.")
    group.addoption(
        "--family-progress", action="store_true", help="Print progress per requirement family."
    )
    group.addoption(
        "--target-log",
        default=None,
        metavar="FILE",
        help="The target's JSON-lines log, for the log-contract checks.",
    )
    group.addoption(
        "--reference-config",
        default=None,
        metavar="FILE",
        help="The target is the reference started from this config (enables start-up checks).",
    )
    group.addoption(
        "--model-ref",
        default=None,
        help="Model reference for tasks when the target's replica sets do not name one (slo).",
    )
    group.addoption(
        "--tenant-key-env",
        default=None,
        metavar="VAR",
        help="Env var holding an API key limited to the data plane (enables the 403 check).",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "kind(name): the check kind reported for this test")
    config.addinivalue_line("markers", "req(*ids): requirement IDs this check proves")
    config.stash[RESULTS_KEY] = []


@pytest.hookimpl(tryfirst=True)
def pytest_bdd_apply_tag(tag: str, function):  # pragma: no cover - exercised via pytest-bdd
    """Gherkin tags that are requirement IDs become `req` markers (not bare marker names)."""
    if REF_RE.fullmatch(tag):
        pytest.mark.req(tag)(function)
        return True
    return None


def requirement_ids(item: pytest.Item) -> tuple[str, ...]:
    ids: list[str] = []
    for mark in item.iter_markers("req"):
        ids.extend(str(a) for a in mark.args)
    return tuple(dict.fromkeys(ids))


def _kind(item: pytest.Item) -> str:
    mark = item.get_closest_marker("kind")
    if mark is not None:
        return str(mark.args[0])
    scenario = registry_get_safe(scenario_wrapper_template_registry, getattr(item, "obj", None))
    return "bdd" if scenario is not None else "check"


def _selected(item: pytest.Item, config: pytest.Config) -> bool:
    only = set(config.getoption("only") or [])
    families = tuple(config.getoption("family") or [])
    ids = requirement_ids(item)
    if only and not only.intersection(ids):
        return False
    return not families or any(i.startswith(f"{f}-") for i in ids for f in families)


def _family(item: pytest.Item) -> str:
    ids = requirement_ids(item)
    return ids[0].rpartition("-")[0] if ids else "other"


class FamilyProgress:
    """One stderr line per family as its checks finish: `[OC-CTRL] 5/12 (1 failed)`."""

    def __init__(self, items: list[pytest.Item]) -> None:
        self.total: dict[str, int] = {}
        self.done: dict[str, int] = {}
        self.failed: dict[str, int] = {}
        self.family_of = {}
        for item in items:
            fam = _family(item)
            self.family_of[item.nodeid] = fam
            self.total[fam] = self.total.get(fam, 0) + 1

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "teardown":
            if report.failed:
                fam = self.family_of.get(report.nodeid, "other")
                self.failed[fam] = self.failed.get(fam, 0) + 1
            return
        fam = self.family_of.get(report.nodeid, "other")
        self.done[fam] = self.done.get(fam, 0) + 1
        failed = self.failed.get(fam, 0)
        note = f" ({failed} failed)" if failed else ""
        sys.stderr.write(f"[{fam}] {self.done[fam]}/{self.total[fam]}{note}\n")
        sys.stderr.flush()


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.getoption("family_progress") and session.items:
        session.config.pluginmanager.register(FamilyProgress(session.items), "llorch-progress")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("only") or config.getoption("family"):
        keep, drop = [], []
        for item in items:
            (keep if _selected(item, config) else drop).append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep
    _flag_undefined_steps(items)


# -- undefined Gherkin steps: found at collection, their scenarios never run -----------------


def _flag_undefined_steps(items: list[pytest.Item]) -> None:
    """Warn (stderr) about each undefined step of the selected scenarios before any check runs."""
    from llama_orch.harness.gherkin_lint import flag_items

    flag_items(items)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Refuse a scenario with undefined steps before its fixtures start: outcome `undefined`."""
    __tracebackhide__ = True
    from llama_orch.harness.gherkin_lint import refusal, undefined_of

    found = undefined_of(item)
    if found:
        raise refusal(found)


# -- results ------------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.when == "call" or (report.when == "setup" and not report.passed):
        item.config.stash[RESULTS_KEY].append(_result(item, call, report))
    return report


def _result(item: pytest.Item, call: pytest.CallInfo, report: pytest.TestReport) -> CheckResult:
    ids = requirement_ids(item)
    outcome, message = Outcome.PASSED, ""
    if report.skipped:
        reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else ""
        reason = reason.removeprefix("Skipped: ")
        outcome = Outcome.NOT_SUPPORTED if reason.startswith(NOT_SUPPORTED) else Outcome.ERROR
        message = reason
    elif report.failed:
        exc = call.excinfo.value if call.excinfo else None
        name = type(exc).__name__ if exc is not None else ""
        if name == "StepDefinitionNotFoundError":
            outcome = Outcome.UNDEFINED
        elif isinstance(exc, AssertionError) and report.when == "call":
            outcome = Outcome.FAILED
        else:
            outcome = Outcome.ERROR
        message = f"{name}: {exc}".strip(": ")[:2000] if exc is not None else "failed"
    client = item.stash.get(CLIENT_KEY, None)
    evidence = (
        client.evidence(message)
        if client is not None and outcome is Outcome.FAILED
        else Evidence(message)
    )
    return CheckResult(item.nodeid, _kind(item), ids, outcome, evidence, round(report.duration, 3))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    out = session.config.getoption("report_dir")
    if not out:
        return
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    results = session.config.stash[RESULTS_KEY]
    payload = [
        {
            "id": r.id,
            "kind": r.kind,
            "requirement_ids": list(r.requirement_ids),
            "outcome": r.outcome.value,
            "evidence": r.evidence.to_json(),
            "duration_s": r.duration_s,
        }
        for r in sorted(results, key=lambda r: r.id)
    ]
    (path / "results.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    (path / ".finished").write_text(str(time.time()), encoding="utf-8")


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest):
    """The orchestrator under test, described by its own capabilities and replica sets."""
    from llama_orch.harness.target import select_target

    log = request.config.getoption("target_log")
    with select_target(
        request.config.getoption("target"),
        request.config.getoption("api_key_env"),
        Path(log) if log else None,
    ) as t:
        yield t


@pytest.fixture
def orch(request: pytest.FixtureRequest, target):
    """An evidence-keeping OrchQueue v1 client for one check."""
    from llama_orch.harness.client import OrchClient

    client = OrchClient(target.url, target.api_key, api_key_env=target.api_key_env)
    request.node.stash[CLIENT_KEY] = client
    yield client
    client.close()
