"""Metrics contract checks: the target's `/metrics` against `ci/metrics.lint.json`.

`/metrics` is scraped before, during and after a small workload on every engine the target
serves (two finished tasks per engine, one per priority; one task canceled while running; one
request refused at admission), then linted by `harness.metrics_lint`. A failing check shows the
offending exposition lines as the response of a reproducible `GET /metrics`.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import pytest

from llama_orch.harness.client import Exchange, OrchClient, task_body
from llama_orch.harness.metrics_lint import (
    Exposition,
    Finding,
    FindingKind,
    LintRules,
    counter_regressions,
    lint,
    parse_exposition,
    render,
)
from llama_orch.harness.outcomes import precondition
from llama_orch.harness.registry import Kind, check

PROMPT = "[[sim tokens=4]] metrics contract load"
SLOW_PROMPT = "[[sim tokens=40 itl_ms=100]] metrics contract load, canceled"
SLOW_TOKENS = 40
MAX_TOKENS = 8  # keeps the load small on a real engine that ignores the directive
SETTLE_S = 3.0
# Series that every engine with finished tasks shows (counters, latencies, its queue).
PER_ENGINE = (
    "tasks_enqueued_total",
    "tasks_started_total",
    "tokens_out_total",
    "latency_first_token_seconds",
    "latency_decode_seconds",
    "queue_depth",
)


@dataclass
class MetricsRun:
    """Three scrapes around a small workload, and what the workload achieved."""

    rules: LintRules
    scrapes: dict[str, Exposition] = field(default_factory=dict)
    exchanges: dict[str, Exchange] = field(default_factory=dict)
    admitted: int = 0
    engines: list[str] = field(default_factory=list)  # engines with an admitted task
    rejected: bool = False  # the over-limit request was refused with 400
    canceled: bool = False  # the running task's cancel answered 204 and stopped it
    problems: list[str] = field(default_factory=list)

    def exposition(self, name: str) -> Exposition:
        if name not in self.scrapes:
            raise AssertionError("; ".join(self.problems) or f"no {name} scrape of /metrics")
        return self.scrapes[name]


def _served(target) -> list[tuple[str, str]]:
    """One (engine, model_ref) per engine the target serves."""
    out: dict[str, str] = {}
    for group in target.groups():
        out.setdefault(group.engine, group.model_ref)
    return sorted(out.items())


def _scrape(client: OrchClient, run: MetricsRun, name: str) -> None:
    resp = client.get("/metrics")
    run.exchanges[name] = client.exchanges[-1]
    if resp.status_code != 200:
        run.problems.append(f"GET /metrics answered {resp.status_code} ({name} scrape)")
        return
    run.scrapes[name] = parse_exposition(resp.text, run.rules)


def _settle(client: OrchClient, run: MetricsRun, done: Callable[[Exposition], bool]) -> None:
    """Scrape `after` until the workload shows (metrics may trail the stream's end)."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        _scrape(client, run, "after")
        expo = run.scrapes.get("after")
        if expo is None or expo.error or done(expo) or time.monotonic() > deadline:
            return
        time.sleep(0.2)


def _load(client: OrchClient, run: MetricsRun, served: list[tuple[str, str]]) -> int:
    """Finished tasks on every engine and priority; returns how many streams ended."""
    ended = 0
    for engine, model in served:
        for priority in ("interactive", "batch"):
            body = task_body(
                engine=engine,
                model_ref=model,
                prompt=PROMPT,
                priority=priority,
                max_tokens=MAX_TOKENS,
                deadline_ms=client.timeouts.deadline_ms,
            )
            resp = client.submit(body)
            if resp.status_code != 202:
                run.problems.append(f"{engine}/{priority} task answered {resp.status_code}")
                continue
            run.admitted += 1
            if engine not in run.engines:
                run.engines.append(engine)
            _, events = client.stream(body["task_id"])
            ended += any(e.event in ("end", "error") for e in events)
    return ended


def _cancel_and_reject(client: OrchClient, run: MetricsRun, engine: str, model: str) -> None:
    """One task canceled while it runs (scraping meanwhile), one refused at admission."""
    body = task_body(
        engine=engine,
        model_ref=model,
        prompt=SLOW_PROMPT,
        max_tokens=SLOW_TOKENS,
        deadline_ms=client.timeouts.deadline_ms,
    )
    if client.submit(body).status_code == 202:
        run.admitted += 1
        _scrape(client, run, "during")
        acked = client.cancel(body["task_id"]).status_code == 204
        _, events = client.stream(body["task_id"])
        tokens = sum(e.event == "token" for e in events)
        run.canceled = acked and tokens < SLOW_TOKENS  # it was still running: a user cancel
    too_big = task_body(engine=engine, model_ref=model, prompt=PROMPT, ctx=2**31 - 1)
    run.rejected = client.submit(too_big).status_code == 400


@pytest.fixture(scope="module")
def metrics_run(target) -> MetricsRun:
    """Scrape, load every served engine, scrape again; shared by the checks below."""
    run = MetricsRun(LintRules.load())
    client = OrchClient.for_target(target)
    try:
        _scrape(client, run, "before")
        served = _served(target)
        if not served:
            run.problems.append(target.why_no_groups())
            return run
        ended = _load(client, run, served)
        _cancel_and_reject(client, run, *served[0])
        before = run.scrapes.get("before")
        if before is None:
            _scrape(client, run, "after")
            return run

        def done(expo: Exposition) -> bool:
            grew = expo.total("tasks_enqueued_total") - before.total("tasks_enqueued_total")
            started = expo.total("tasks_started_total") - before.total("tasks_started_total")
            return grew >= run.admitted and started >= ended

        _settle(client, run, done)
    finally:
        client.close()
    return run


def _newest_scrape(orch: OrchClient, run: MetricsRun) -> None:
    """Make the newest `GET /metrics` this check's evidence, whatever it fails on.

    A check that saw no workload judged nothing: it ends as `error`, never as a pass.
    """
    precondition(
        run.admitted,
        "no task was admitted, so no metric could show a workload: "
        + ("; ".join(run.problems) or "no load ran"),
    )
    for name in ("after", "during", "before"):
        if name in run.exchanges:
            orch.exchanges.append(run.exchanges[name])
            return


def _fail(orch: OrchClient, run: MetricsRun, message: str, findings: list[Finding]) -> None:
    """Fail with the offending lines as the response of the newest scrape, for evidence."""
    scrape = run.exchanges.get("after") or next(iter(run.exchanges.values()), None)
    lines = "\n".join(line for f in findings for line in f.lines)
    if scrape is not None:
        orch.exchanges.append(replace(scrape, response_body=lines or scrape.response_body))
    raise AssertionError(f"{message}\n{render(findings)}".strip())


def _lint_all(run: MetricsRun, kinds: set[FindingKind], required: Iterable[str] = ()) -> list:
    """Findings of `kinds` in the newest scrape, plus earlier ones about other metrics."""
    names = [n for n in ("after", "during", "before") if n in run.scrapes]
    if not names:
        raise AssertionError("; ".join(run.problems) or "no scrape of /metrics succeeded")
    found: dict[tuple, list[Finding]] = {}
    for name in names:
        scrape_findings: dict[tuple, list[Finding]] = {}
        req = required if name == "after" else ()
        for f in lint(run.scrapes[name], run.rules, required=req):
            if f.kind in kinds:
                scrape_findings.setdefault((f.kind, f.metric), []).append(f)
        for key, group in scrape_findings.items():
            found.setdefault(key, group)
    return [f for group in found.values() for f in group]


@check("OC-METRICS-7101", kind=Kind.METRICS)
def test_contracted_metrics_have_the_listed_types_and_exact_labels(orch, metrics_run) -> None:
    _newest_scrape(orch, metrics_run)
    after = metrics_run.exposition("after")
    contracted = set(metrics_run.rules.metrics) & set(after.families)
    precondition(contracted, "the exposition holds no contracted metric: nothing to judge")
    kinds = {FindingKind.UNPARSABLE, FindingKind.WRONG_TYPE, FindingKind.LABELS}
    findings = _lint_all(metrics_run, kinds)
    if findings:
        _fail(orch, metrics_run, "metrics differ from ci/metrics.lint.json:", findings)


@check("OC-METRICS-7102", kind=Kind.METRICS)
def test_label_values_stay_in_their_sets_and_budgets(orch, metrics_run) -> None:
    _newest_scrape(orch, metrics_run)
    findings = _lint_all(metrics_run, {FindingKind.LABEL_VALUE, FindingKind.OVER_BUDGET})
    if findings:
        _fail(orch, metrics_run, "label values break the contract:", findings)


@check("ORCH-3028", "OC-CORE-1041", "OC-CTRL-2051", kind=Kind.METRICS)
def test_operational_metrics_are_exported_per_engine(orch, metrics_run) -> None:
    run = metrics_run
    _newest_scrape(orch, run)
    findings = _lint_all(run, {FindingKind.MISSING}, required=run.rules.core_metrics())
    before, after = run.exposition("before"), run.exposition("after")
    for engine in run.engines:
        for name in PER_ENGINE:
            fam = after.families.get(name)
            if fam is not None and not any(s.labels.get("engine") == engine for s in fam.samples):
                msg = f"no {name} series with engine={engine!r} after tasks ran on {engine}"
                findings.append(Finding(FindingKind.NOT_COUNTED, name, msg))
    if run.rejected and "tasks_rejected_total" in after.families:
        grew = after.total("tasks_rejected_total", reason="INVALID_PARAMS") - before.total(
            "tasks_rejected_total", reason="INVALID_PARAMS"
        )
        if grew < 1:
            msg = 'tasks_rejected_total{reason="INVALID_PARAMS"} did not grow after a 400'
            findings.append(Finding(FindingKind.NOT_COUNTED, "tasks_rejected_total", msg))
    if run.canceled and "tasks_canceled_total" in after.families:
        grew = after.total("tasks_canceled_total", reason="user") - before.total(
            "tasks_canceled_total", reason="user"
        )
        if grew < 1:
            msg = 'tasks_canceled_total{reason="user"} did not grow after a cancel'
            findings.append(Finding(FindingKind.NOT_COUNTED, "tasks_canceled_total", msg))
    if findings:
        _fail(orch, run, "operational metrics are missing or do not show the workload:", findings)


@check("ORCH-3028", "OC-CTRL-2051", kind=Kind.METRICS)
def test_counters_only_grow_and_count_admitted_tasks(orch, metrics_run) -> None:
    run = metrics_run
    _newest_scrape(orch, run)
    names = [n for n in ("before", "during", "after") if n in run.scrapes]
    findings: list[Finding] = []
    for earlier, later in itertools.pairwise(names):
        findings += counter_regressions(run.scrapes[earlier], run.scrapes[later])
    before, after = run.exposition("before"), run.exposition("after")
    grew = after.total("tasks_enqueued_total") - before.total("tasks_enqueued_total")
    if grew < run.admitted:
        msg = f"tasks_enqueued_total grew by {grew:g} while {run.admitted} tasks were admitted"
        fam = after.families.get("tasks_enqueued_total")
        lines = tuple(after.line_of(s) for s in (fam.samples if fam else []))[:12]
        findings.append(Finding(FindingKind.NOT_COUNTED, "tasks_enqueued_total", msg, lines))
    if findings:
        _fail(orch, run, "counters do not follow the workload:", findings)
