"""What the ops files under ci/ hold: dashboard queries, rule names, SLO objectives.

Shared by the static checks (tests/ops/test_ops_rules.py) and the live render check
(tests/ops/test_ops_render.py), so both read the same queries the same way.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from tests.ops._reference import ROOT

DASHBOARDS = sorted((ROOT / "ci" / "dashboards").glob("*.json"))
RULES = ROOT / "ci" / "alerts" / "slo.rules.yml"
RULE_TESTS = ROOT / "ci" / "alerts" / "slo.tests.yml"
LINT = ROOT / "ci" / "metrics.lint.json"

# Template variables of the dashboards and what stands in for "All" when a test runs a query.
VARIABLES = {"$pool": ".*"}

# The reference's own metrics outside the contract table (specs/20 section 6, specs/30
# section 5) that dashboards may use.
REFERENCE_METRICS = frozenset(
    {
        "tasks_failed_total",
        "pool_ready",
        "pool_preload_total",
        "pool_restarts_total",
        "pool_driver_resets_total",
        "host_memory_used_bytes",
    }
)
PROMETHEUS_METRICS = frozenset({"up", "ALERTS"})


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref_id: str
    expr: str  # as written, with template variables

    @property
    def runnable(self) -> str:
        expr = self.expr
        for name, value in VARIABLES.items():
            expr = expr.replace(name, value)
        return expr

    def __str__(self) -> str:
        return f"{self.dashboard}: {self.panel!r} {self.ref_id}"


def load_yaml(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text(encoding="utf-8"))


def load_dashboard(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def panel_queries() -> list[PanelQuery]:
    out = []
    for path in DASHBOARDS:
        for panel in load_dashboard(path)["panels"]:
            for target in panel.get("targets", []):
                out.append(PanelQuery(path.name, panel["title"], target["refId"], target["expr"]))
    return out


def rule_groups() -> list[dict[str, Any]]:
    return load_yaml(RULES)["groups"]


def recording_rules() -> list[str]:
    """Names of the recording rules, each once, in file order."""
    names: list[str] = []
    for group in rule_groups():
        for rule in group["rules"]:
            if "record" in rule and rule["record"] not in names:
                names.append(rule["record"])
    return names


def alert_names() -> list[str]:
    return [r["alert"] for g in rule_groups() for r in g["rules"] if "alert" in r]


def objectives() -> dict[str, dict[str, float]]:
    """SLO objectives as configured: objective name -> priority -> value."""
    out: dict[str, dict[str, float]] = {}
    for group in rule_groups():
        if group["name"] != "llama-orch-slo-objectives":
            continue
        for rule in group["rules"]:
            value = float(re.fullmatch(r"vector\((.+)\)", rule["expr"].strip()).group(1))
            out.setdefault(rule["record"], {})[rule["labels"]["priority"]] = value
    return out


def contracted_metrics() -> dict[str, str]:
    """Contracted metric name -> type, from ci/metrics.lint.json."""
    lint = json.loads(LINT.read_text(encoding="utf-8"))
    return {m["name"]: m["type"] for m in lint["metrics"]}


def priorities() -> list[str]:
    return json.loads(LINT.read_text(encoding="utf-8"))["label_values"]["priority"]


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACES = re.compile(r"\{[^}]*\}")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_RANGES = re.compile(r"\[[^\]]*\]")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "by", "without", "on"})


def metric_names(expr: str) -> set[str]:
    """Metric (and recording-rule) names a PromQL expression reads; histogram series map to
    their family (`x_bucket` -> `x`). A small reader for the dashboard's own queries, not a
    PromQL parser: it drops strings, label matchers, groupings and ranges, then keeps the
    identifiers that are not function calls or keywords."""
    text = _RANGES.sub(" ", _GROUPING.sub(" ", _BRACES.sub(" ", _STRINGS.sub(" ", expr))))
    names = set()
    for match in _IDENT.finditer(text):
        name = match.group()
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or name in _KEYWORDS:
            continue
        for suffix in ("_bucket", "_count", "_sum"):
            if name.endswith(suffix) and not name.endswith("_total"):
                name = name.removesuffix(suffix)
                break
        names.add(name)
    return names
