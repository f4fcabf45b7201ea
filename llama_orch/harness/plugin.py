"""The `llorch` pytest plugin: the compliance checks, judged and reported inside pytest.

Registered through the `pytest11` entry point, so that in any project that installs llama-orch

    pytest -p llorch --pyargs llama_orch.harness.checks --target URL --report-dir reports

runs the checks, computes one verdict per requirement, writes the four reports and exits by
verdict (0 success, 1 failure or partial, 2 the harness could not run) — exactly what
`llorch check` does, because `llorch check` runs this same plugin in-process. (`-p llorch`
names the plugin; installing llama-orch already registers it, so `-p` matters only where
entry points are disabled.) Each hook hands off to `harness.session` (decisions),
`harness.outcomes` (classification), `harness.finish` (verdicts and reports) or
`harness.progress` (the progress display).

In any other pytest run (the project's own tests) the plugin only records `req`-marked tests'
results to `--report-dir/results.json`, the white-box evidence `llorch check` reads.
"""

from __future__ import annotations

import contextlib
import signal
import time
from datetime import UTC, datetime

import pytest

from llama_orch.harness import finish, options, outcomes, progress, whitebox
from llama_orch.harness.reports import redact
from llama_orch.harness.results import CheckResult, Evidence, Outcome
from llama_orch.harness.session import RunState, Selection, in_checks_package
from llama_orch.spec_extract.model import REF_RE

STATE = pytest.StashKey[RunState]()
STACK = pytest.StashKey[contextlib.ExitStack]()
CLIENT_KEY = pytest.StashKey[object]()  # the evidence-keeping client of one check
DECIDED = pytest.StashKey[CheckResult]()
_RECORDED = pytest.StashKey[bool]()
FLAG_TAG_PREFIXES = ("feature:", "needs:", "stands-on:")


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from llama_orch.harness import hooks

    pluginmanager.add_hookspecs(hooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "req(*ids): requirement IDs this check proves")
    config.addinivalue_line("markers", "slow: a slow check or test; still runs in CI")
    config.addinivalue_line("markers", "shape: a Gherkin scenario that judges answer shapes only")


@pytest.hookimpl(tryfirst=True)
def pytest_bdd_apply_tag(tag: str, function):  # pragma: no cover - exercised via pytest-bdd
    """Requirement-ID tags become `req` markers; descriptive tags are read by the registry."""
    if REF_RE.fullmatch(tag):
        pytest.mark.req(tag)(function)
        return True
    if tag.startswith(FLAG_TAG_PREFIXES):
        return True
    return None


# -- collection: bind items to the registry, then meet the target -------------------------


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from llama_orch.harness.gherkin_lint import flag_items

    if not any(in_checks_package(i) for i in items):
        dropped = whitebox.select(config, items)  # --only / --family on req markers
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        flag_items(items)
        return
    state = finish.new_state(config)
    config.stash[STATE] = state
    dropped = state.bind(items, config.getoption("shuffle"))
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    flag_items(items)


def pytest_collection_finish(session: pytest.Session) -> None:
    state = session.config.stash.get(STATE, None)
    if state is None or session.config.option.collectonly:
        return
    stack = contextlib.ExitStack()
    session.config.stash[STACK] = stack
    try:
        state.target = finish.open(stack, state, session.config)
    except finish.HARNESS_ERRORS as exc:
        stack.close()
        finish.harness_error(session.config, exc)
    state.started_at = datetime.now(UTC).isoformat(timespec="seconds")
    progress.start(session.config, state, session.items)


def pytest_unconfigure(config: pytest.Config) -> None:
    stack = config.stash.get(STACK, None)
    if stack is not None:
        stack.close()


# -- running one check ----------------------------------------------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Runner decisions first (not-supported, unmet needs, run ceiling), then refuse a
    scenario with undefined steps before its fixtures start (outcome `undefined`)."""
    from llama_orch.harness.gherkin_lint import refusal, undefined_of

    __tracebackhide__ = True
    state = item.config.stash.get(STATE, None)
    if state is not None and item.nodeid in state.checks:
        decided = state.decide(state.checks[item.nodeid])
        if decided is not None:
            item.stash[DECIDED] = decided
            pytest.skip(decided.evidence.message)

    found = undefined_of(item)
    if found:
        raise refusal(found)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):
    """Bound every check by timeouts.check_s (SIGALRM: the main thread runs the checks)."""
    state = item.config.stash.get(STATE, None)
    if state is None or state.target is None or item.nodeid not in state.checks:
        return (yield)
    limit = state.target.timeouts.check_s

    def expire(signum, frame):
        raise outcomes.CheckTimeout(f"the check ran past its ceiling of {limit:g} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        return (yield)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    state = item.config.stash.get(STATE, None)
    if state is None:
        whitebox.record(item, call, report)
        return report
    check = state.checks.get(item.nodeid)
    if check is None:
        return report
    result = None
    if DECIDED in item.stash and report.when == "setup":
        result = item.stash[DECIDED]
    elif report.when == "call" or (report.when == "setup" and not report.passed):
        result = _result(item, call, report, check)
    elif report.when == "teardown" and report.failed and not item.stash.get(_RECORDED, False):
        result = _result(item, call, report, check)
    if result is not None:
        item.stash[_RECORDED] = True
        state.record(result)
        progress.advance(item.config, check, result)
    _scrub(report, state)
    return report


def _scrub(report: pytest.TestReport, state: RunState) -> None:
    """pytest prints failures: a target that echoes the key must not get it onto the console."""
    secrets = state.target.secrets() if state.target is not None else []
    if not secrets or report.longrepr is None:
        return
    text = str(report.longrepr)
    if any(s in text for s in secrets):
        report.longrepr = redact(text, secrets)
    report.sections = [(name, redact(body, secrets) or "") for name, body in report.sections]


def _result(item, call, report, check) -> CheckResult:
    if report.skipped:
        reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else ""
        outcome = outcomes.Classified(Outcome.ERROR, f"not run: {reason.removeprefix('Skipped: ')}")
    elif report.failed and call.excinfo is not None:
        outcome = outcomes.classify(
            call.excinfo.value, check.requirements, in_call=report.when == "call"
        )
    else:
        outcome = outcomes.Classified(Outcome.PASSED, "")
    client = item.stash.get(CLIENT_KEY, None)
    evidence = (
        client.evidence(outcome.message)
        if client is not None and outcome.outcome is not Outcome.PASSED
        else Evidence(outcome.message)
    )
    return CheckResult(
        check.id,
        check.kind.value,
        check.requirements,
        outcome.outcome,
        evidence,
        round(report.duration, 3),
        outcome.blocked_by,
        check.role.value,
        outcome.fails,
    )


# -- the end: verdicts, reports, exit status --------------------------------------------------


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = session.config.stash.get(STATE, None)
    if state is None:
        whitebox.write(session.config)
        return
    progress.stop(session.config)
    if state.target is None:
        return  # the harness could not run; harness_error() already set the exit status
    ran = {r.id for r in state.results}
    state.results += state.not_collected(ran)
    try:
        run = finish.finish(session.config, state, time.monotonic())
    except finish.HARNESS_ERRORS as exc:
        finish.harness_error(session.config, exc, session)
        return
    session.exitstatus = run.exit_code


__all__ = ["CLIENT_KEY", "STATE", "RunState", "Selection"]


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """The pytest route prints the same closing table as `llorch check` (OC-HARNESS-8204)."""
    run = config.stash.get(finish.RUN_KEY, None)
    error = config.stash.get(finish.ERROR_KEY, None)
    if error:
        terminalreporter.write_line(f"error: {error}", red=True)
        terminalreporter.write_line("no report written: the harness could not run (exit 2)")
    elif run is not None:
        for line in finish.summary_text(run).splitlines():
            terminalreporter.write_line(line)
