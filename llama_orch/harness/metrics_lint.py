"""Lint a Prometheus `/metrics` text against the metrics contract (`ci/metrics.lint.json`).

Reusable on its own (a CI step, a notebook) and used by the harness's metrics checks. The
exposition is parsed with `prometheus_client.parser`; the rules are the lint file's metric
names, types and exact label sets, its per-label budgets and its enumerated label values
(specs/71-metrics-contract.md). Every problem is a typed `Finding` that carries the offending
exposition lines, so a report can show exactly what the target exposed.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from llama_orch.resources import data_path

LINT_PATH = data_path("ci", "metrics.lint.json")
# Rows of the contract table that belong to optional features (specs/71 section 3): an
# implementation without the feature may leave them out entirely.
OPTIONAL_FEATURE_METRICS = frozenset(
    {
        "catalog_verifications_total",
        "model_state",
        "admission_share",
        "deadlines_met_ratio",
        "preemptions_total",
        "resumptions_total",
        "policy_calls_total",
        "policy_call_duration_seconds",
        "policy_tool_invocations_total",
    }
)
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")
MAX_LINES = 12  # offending lines kept per finding


class FindingKind(StrEnum):
    """What is wrong; the check maps kinds onto requirement IDs."""

    UNPARSABLE = "unparsable"  # not Prometheus text exposition at all
    MISSING = "missing"  # a required contracted metric is not declared
    WRONG_TYPE = "wrong-type"  # declared with another type (or untyped)
    LABELS = "labels"  # a series whose label set is not exactly the listed one
    LABEL_VALUE = "label-value"  # a value outside the label's enumerated set
    OVER_BUDGET = "over-budget"  # more distinct values of a label than its budget
    COUNTER_DECREASED = "counter-decreased"  # a counter series went down between scrapes
    NOT_COUNTED = "not-counted"  # work the target did (a check knows) is absent from a metric


@dataclass(frozen=True)
class Finding:
    kind: FindingKind
    metric: str | None
    message: str
    lines: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"[{self.kind}] {self.message}"


@dataclass(frozen=True)
class MetricRule:
    name: str  # contract name; counters carry `_total`
    type: str  # counter | gauge | histogram
    labels: tuple[str, ...]


@dataclass(frozen=True)
class LintRules:
    """The machine-readable contract, in lint-file order."""

    metrics: Mapping[str, MetricRule]
    budgets: Mapping[str, int]
    values: Mapping[str, frozenset[str]]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LintRules:
        metrics = {
            m["name"]: MetricRule(m["name"], m["type"], tuple(m["labels"])) for m in data["metrics"]
        }
        values = {k: frozenset(v) for k, v in data.get("label_values", {}).items()}
        return cls(metrics, dict(data.get("label_budgets", {})), values)

    @classmethod
    def load(cls, path: Path = LINT_PATH) -> LintRules:
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))

    def core_metrics(self) -> list[str]:
        """Contracted names every implementation exposes (optional-feature rows left out)."""
        return [n for n in self.metrics if n not in OPTIONAL_FEATURE_METRICS]


@dataclass(frozen=True)
class Sample:
    name: str  # the series name as exposed, e.g. `x_total`, `h_bucket`
    labels: Mapping[str, str]
    value: float

    def key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        return self.name, tuple(sorted(self.labels.items()))


@dataclass
class Family:
    """One contracted metric as the target declared it."""

    rule: MetricRule
    declared_type: str
    samples: list[Sample] = field(default_factory=list)

    def contract_samples(self) -> list[tuple[Sample, dict[str, str]]]:
        """Samples with the labels the contract speaks about (`le` of buckets removed)."""
        out = []
        for s in self.samples:
            labels = dict(s.labels)
            if self.rule.type == "histogram" and s.name.endswith("_bucket"):
                labels.pop("le", None)
            out.append((s, labels))
        return out


@dataclass
class Exposition:
    """A parsed `/metrics` text, indexed by contract name."""

    text: str
    families: dict[str, Family]
    error: str | None = None

    @cached_property
    def _line_index(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], str]:
        index: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
        for line in self.text.splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            try:
                for fam in text_string_to_metric_families(line + "\n"):
                    for s in fam.samples:
                        index.setdefault((s.name, tuple(sorted(s.labels.items()))), line)
            except ValueError:
                continue
        return index

    def line_of(self, sample: Sample) -> str:
        """The exposition line a sample came from (falls back to a rendering of it)."""
        found = self._line_index.get(sample.key())
        if found is not None:
            return found
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
        return f"{sample.name}{{{labels}}} {sample.value}"

    def declaration_lines(self, names: Iterable[str]) -> tuple[str, ...]:
        wanted = tuple(f"# TYPE {n} " for n in names)
        return tuple(line for line in self.text.splitlines() if line.startswith(wanted))

    def counter_values(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], Sample]:
        """Every monotone series: counter `_total` samples, histogram `_count`/`_bucket`."""
        out = {}
        for fam in self.families.values():
            if fam.declared_type != fam.rule.type:
                continue
            for s in fam.samples:
                if (fam.rule.type == "counter" and s.name.endswith("_total")) or (
                    fam.rule.type == "histogram" and s.name.endswith(("_count", "_bucket"))
                ):
                    out[s.key()] = s
        return out

    def total(self, name: str, **labels: str) -> float:
        """Sum of a counter's `_total` (or a gauge's) samples whose labels include `labels`."""
        fam = self.families.get(name)
        if fam is None:
            return 0.0
        want = labels.items()
        return sum(
            s.value
            for s in fam.samples
            if not s.name.endswith(("_created", "_bucket", "_sum")) and want <= s.labels.items()
        )


def _contract_name(name: str, declared_type: str, rules: LintRules) -> str | None:
    candidates = [name]
    if declared_type == "counter":
        candidates.insert(0, f"{name}_total")
    if declared_type == "unknown":
        candidates += [name.removesuffix(sfx) for sfx in HISTOGRAM_SUFFIXES if name.endswith(sfx)]
    return next((c for c in candidates if c in rules.metrics), None)


def _is_created(name: str, rules: LintRules) -> bool:
    """`x_created` series that client libraries add next to counters and histograms."""
    if not name.endswith("_created"):
        return False
    base = name.removesuffix("_created")
    return f"{base}_total" in rules.metrics or base in rules.metrics


def parse_exposition(text: str, rules: LintRules) -> Exposition:
    """Parse a `/metrics` text; contracted families only, everything else is ignored."""
    families: dict[str, Family] = {}
    try:
        parsed = list(text_string_to_metric_families(text))
    except ValueError as exc:
        return Exposition(text, {}, error=str(exc))
    for fam in parsed:
        if _is_created(fam.name, rules):
            continue
        name = _contract_name(fam.name, fam.type, rules)
        if name is None:
            continue
        entry = families.setdefault(name, Family(rules.metrics[name], fam.type))
        samples = (s for s in fam.samples if not s.name.endswith("_created"))
        entry.samples.extend(Sample(s.name, dict(s.labels), float(s.value)) for s in samples)
    return Exposition(text, families)


def _lines(expo: Exposition, samples: Iterable[Sample]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(expo.line_of(s) for s in samples))[:MAX_LINES]


def _check_types(expo: Exposition, required: Iterable[str]) -> list[Finding]:
    findings = []
    for name in required:
        if name not in expo.families:
            findings.append(Finding(FindingKind.MISSING, name, f"{name} is not exposed"))
    for name, fam in expo.families.items():
        if fam.declared_type != fam.rule.type:
            declared = {s.name for s in fam.samples} | {name, name.removesuffix("_total")}
            lines = expo.declaration_lines(sorted(declared)) + _lines(expo, fam.samples[:3])
            msg = f"{name} is exposed as {fam.declared_type}, the contract says {fam.rule.type}"
            findings.append(Finding(FindingKind.WRONG_TYPE, name, msg, lines))
    return findings


def _check_labels(expo: Exposition) -> list[Finding]:
    findings = []
    for name, fam in expo.families.items():
        expected = set(fam.rule.labels)
        bad: dict[tuple[tuple[str, ...], tuple[str, ...]], list[Sample]] = defaultdict(list)
        for sample, labels in fam.contract_samples():
            missing = tuple(sorted(expected - labels.keys()))
            extra = tuple(sorted(labels.keys() - expected))
            if missing or extra:
                bad[(missing, extra)].append(sample)
        for (missing, extra), samples in bad.items():
            parts = [f"missing {', '.join(missing)}" if missing else ""]
            parts.append(f"unexpected {', '.join(extra)}" if extra else "")
            detail = "; ".join(p for p in parts if p)
            msg = (
                f"{name}: {len(samples)} series without exactly the labels "
                f"[{', '.join(fam.rule.labels)}] ({detail})"
            )
            findings.append(Finding(FindingKind.LABELS, name, msg, _lines(expo, samples)))
    return findings


def _check_values(expo: Exposition, rules: LintRules) -> list[Finding]:
    findings = []
    seen: dict[str, dict[str, list[Sample]]] = defaultdict(lambda: defaultdict(list))
    for name, fam in expo.families.items():
        bad: dict[str, list[tuple[str, Sample]]] = defaultdict(list)
        for sample, labels in fam.contract_samples():
            for label, value in labels.items():
                seen[label][value].append(sample)
                allowed = rules.values.get(label)
                if allowed is not None and value not in allowed:
                    bad[label].append((value, sample))
        for label, hits in bad.items():
            values = sorted({v for v, _ in hits})
            msg = (
                f"{name}: label {label} takes {', '.join(repr(v) for v in values)}, "
                f"outside its allowed values"
            )
            lines = _lines(expo, (s for _, s in hits))
            findings.append(Finding(FindingKind.LABEL_VALUE, name, msg, lines))
    for label, by_value in seen.items():
        budget = rules.budgets.get(label)
        if budget is not None and len(by_value) > budget:
            msg = (
                f"label {label} has {len(by_value)} distinct values across the contracted "
                f"series, over its budget of {budget}"
            )
            lines = _lines(expo, (samples[0] for samples in by_value.values()))
            findings.append(Finding(FindingKind.OVER_BUDGET, None, msg, lines))
    return findings


def lint(
    text: str | Exposition, rules: LintRules | None = None, *, required: Iterable[str] = ()
) -> list[Finding]:
    """All contract violations in one exposition; `required` names must be declared."""
    rules = rules or LintRules.load()
    expo = text if isinstance(text, Exposition) else parse_exposition(text, rules)
    if expo.error is not None:
        head = tuple(expo.text.splitlines()[:MAX_LINES])
        msg = f"not Prometheus text exposition: {expo.error}"
        return [Finding(FindingKind.UNPARSABLE, None, msg, head)]
    return _check_types(expo, required) + _check_labels(expo) + _check_values(expo, rules)


def counter_regressions(before: Exposition, after: Exposition) -> list[Finding]:
    """Counter series (and histogram counts/buckets) that went down between two scrapes."""
    earlier = before.counter_values()
    findings = []
    for key, sample in after.counter_values().items():
        old = earlier.get(key)
        if old is not None and sample.value < old.value:
            msg = f"{sample.name} went down from {old.value:g} to {sample.value:g}"
            lines = (f"before: {before.line_of(old)}", f"after:  {after.line_of(sample)}")
            metric = sample.name.removesuffix("_bucket").removesuffix("_count")
            findings.append(Finding(FindingKind.COUNTER_DECREASED, metric, msg, lines))
    return findings


def render(findings: Iterable[Finding]) -> str:
    """Findings as text: one line each, followed by its offending exposition lines."""
    out = []
    for f in findings:
        out.append(str(f))
        out.extend(f"    {line}" for line in f.lines)
    return "\n".join(out)
