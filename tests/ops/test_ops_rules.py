"""Alert and recording rules and dashboards under ci/, checked with the real `promtool`.

`promtool check rules` parses the rules; `promtool test rules` runs ci/alerts/slo.tests.yml,
whose synthetic series show each SLO alert firing when its objective is breached and staying
quiet when it is met. The static checks here make sure every alert has both kinds of case, that
every priority class has objectives, that the unit tests can fail at all, and that every
dashboard query names only metrics that exist. tests/ops/test_ops_render.py runs the same
queries against a live reference.
"""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.ops import _dashboards as ops
from tests.ops._prometheus import binary

LATENCY_OR_THROUGHPUT = (
    "slo:first_token_budget:ratio",
    "slo:decode_budget:ratio",
    "slo:throughput_floor:ratio",
)


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool"), *args], capture_output=True, text=True, timeout=300, cwd=cwd
    )


def test_rules_pass_promtool_check() -> None:
    done = promtool("check", "rules", str(ops.RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@pytest.mark.slow
@pytest.mark.req("ORCH-3041")
def test_slo_alerts_fire_when_breached_and_stay_quiet_when_met() -> None:
    done = promtool("test", "rules", str(ops.RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    tests = ops.load_yaml(ops.RULE_TESTS)["tests"]
    cases = [c for t in tests for c in t.get("alert_rule_test", [])]
    for alert in ops.alert_names():
        mine = [c for c in cases if c["alertname"] == alert]
        assert any(c["exp_alerts"] for c in mine), f"{alert}: no case where it fires"
        assert any(not c["exp_alerts"] for c in mine), f"{alert}: no case where it stays quiet"
    assert {c["alertname"] for c in cases} <= set(ops.alert_names()), "a test names no alert"


@pytest.mark.req("ORCH-3041")
def test_slo_objectives_are_configured_per_priority() -> None:
    """Each priority class of the contract has an error objective and at least one latency or
    throughput objective, every objective a share strictly between 0 and 1."""
    got = ops.objectives()
    for priority in ops.priorities():
        assert priority in got["slo:error_budget:ratio"], f"{priority}: no error objective"
        others = [name for name in LATENCY_OR_THROUGHPUT if priority in got.get(name, {})]
        assert others, f"{priority}: no latency or throughput objective"
    values = [v for per in got.values() for v in per.values()]
    assert values and all(0 < v < 1 for v in values), got


@pytest.mark.slow
def test_rule_tests_catch_a_wrong_objective(tmp_path: Path) -> None:
    """The unit tests can fail: with the interactive error budget raised tenfold, the case
    where 0.8 % errors spend that budget no longer sees its alert."""
    rules = ops.RULES.read_text(encoding="utf-8")
    objective = "labels: {priority: interactive}\n        expr: vector(0.005)"
    loose = rules.replace(objective, objective.replace("0.005", "0.05"))
    assert loose != rules, "the interactive error objective moved; update this test"
    (tmp_path / "slo.rules.yml").write_text(loose, encoding="utf-8")
    yaml = YAML(typ="safe")
    doc = yaml.load(ops.RULE_TESTS.read_text(encoding="utf-8"))
    doc["tests"] = [t for t in doc["tests"] if t["name"].startswith("errors: 0.8 %")]
    assert len(doc["tests"]) == 1
    with (tmp_path / "slo.tests.yml").open("w", encoding="utf-8") as fh:
        YAML().dump(doc, fh)
    done = promtool("test", "rules", "slo.tests.yml", cwd=tmp_path)
    assert done.returncode != 0
    assert "OrchTaskErrorsBudgetSpent" in done.stdout + done.stderr


def test_dashboards_are_well_formed() -> None:
    assert ops.DASHBOARDS, "no dashboard under ci/dashboards/"
    for path in ops.DASHBOARDS:
        dash = ops.load_dashboard(path)
        assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 36, path.name
        panels = dash["panels"]
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)), f"{path.name}: panel ids repeat"
        cells: set[tuple[int, int]] = set()
        for panel in panels:
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, f"{panel['title']}: wider than the grid"
            area = set(
                itertools.product(
                    range(grid["x"], grid["x"] + grid["w"]), range(grid["y"], grid["y"] + grid["h"])
                )
            )
            assert not area & cells, f"{path.name}: {panel['title']!r} overlaps another panel"
            cells |= area
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            refs = [t["refId"] for t in panel["targets"]]
            assert refs and len(refs) == len(set(refs)), f"{panel['title']}: refIds"
            assert all(t["expr"].strip() for t in panel["targets"]), panel["title"]


def test_dashboard_queries_name_only_existing_metrics() -> None:
    """A typo in a metric name would show an empty panel: every name a query reads is a
    contracted metric, one of the reference's own, or a recording rule of ci/alerts."""
    known = (
        set(ops.contracted_metrics())
        | ops.REFERENCE_METRICS
        | ops.PROMETHEUS_METRICS
        | set(ops.recording_rules())
    )
    queries = ops.panel_queries()
    assert queries
    for query in queries:
        unknown = ops.metric_names(query.expr) - known
        assert not unknown, f"{query}: unknown metric {sorted(unknown)} in {query.expr!r}"
    # The reader itself: it must see the names inside a typical query.
    typical = (
        "histogram_quantile(0.95, sum by (priority, le) "
        '(rate(latency_decode_seconds_bucket{pool_id=~"$pool"}[5m])))'
    )
    assert ops.metric_names(typical) == {"latency_decode_seconds"}
    assert ops.metric_names("a:b:c / on (priority) slo:x:ratio and up == 0") == {
        "a:b:c",
        "slo:x:ratio",
        "up",
    }


def test_dashboard_covers_the_operating_signals() -> None:
    """The panels the issue asks for: queue depth, admissions and rejections by policy label,
    latency per priority, tokens, readiness, KV, preemptions, deadlines."""
    read = set().union(*(ops.metric_names(q.expr) for q in ops.panel_queries()))
    wanted = {
        "queue_depth",
        "tasks_enqueued_total",
        "admission_backpressure_events_total",
        "tasks_rejected_total",
        "latency_first_token_seconds",
        "latency_decode_seconds",
        "tokens_in_total",
        "tokens_out_total",
        "pool_ready",
        "kv_cache_usage_ratio",
        "preemptions_total",
        "deadlines_met_ratio",
    }
    assert wanted <= read, f"missing panels for {sorted(wanted - read)}"
