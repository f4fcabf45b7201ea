"""The reusable metrics lint (harness/metrics_lint.py) on hand-written expositions.

The harness's metrics checks trust this lint to tell a conforming `/metrics` from a broken one,
so each kind of finding is shown here on a small text where the right answer is known.
"""

from __future__ import annotations

import pytest

from llama_orch.harness.metrics_lint import (
    OPTIONAL_FEATURE_METRICS,
    FindingKind,
    LintRules,
    counter_regressions,
    lint,
    parse_exposition,
    render,
)

RULES = LintRules.from_dict(
    {
        "metrics": [
            {"name": "jobs_total", "type": "counter", "labels": ["engine", "priority"]},
            {"name": "depth", "type": "gauge", "labels": ["engine"]},
            {"name": "wait_seconds", "type": "histogram", "labels": ["engine"]},
        ],
        "label_budgets": {"engine": 2, "priority": 8},
        "label_values": {"engine": ["llamacpp", "vllm", "tgi"], "priority": ["interactive"]},
    }
)

GOOD = """\
# HELP jobs_total Jobs.
# TYPE jobs_total counter
jobs_total{engine="llamacpp",priority="interactive"} 3.0
jobs_created{engine="llamacpp",priority="interactive"} 1.7e9
# HELP depth Depth.
# TYPE depth gauge
depth{engine="vllm"} 0.0
# HELP wait_seconds Wait.
# TYPE wait_seconds histogram
wait_seconds_bucket{engine="llamacpp",le="0.5"} 1.0
wait_seconds_bucket{engine="llamacpp",le="+Inf"} 2.0
wait_seconds_count{engine="llamacpp"} 2.0
wait_seconds_sum{engine="llamacpp"} 0.7
wait_seconds_created{engine="llamacpp"} 1.7e9
# HELP process_open_fds Not part of the contract.
# TYPE process_open_fds gauge
process_open_fds{anything="goes"} 7.0
"""


def kinds(findings) -> list[FindingKind]:
    return [f.kind for f in findings]


@pytest.mark.req("OC-METRICS-7101", "OC-METRICS-7102")
def test_conforming_exposition_has_no_findings() -> None:
    findings = lint(GOOD, RULES, required=["jobs_total", "depth", "wait_seconds"])
    assert findings == [], render(findings)


@pytest.mark.req("OC-METRICS-7101")
def test_counter_exposed_as_gauge_is_a_wrong_type_with_its_lines() -> None:
    text = GOOD.replace("# TYPE jobs_total counter", "# TYPE jobs_total gauge")
    findings = lint(text, RULES)
    assert kinds(findings) == [FindingKind.WRONG_TYPE]
    assert findings[0].metric == "jobs_total"
    assert "# TYPE jobs_total gauge" in findings[0].lines
    assert any(line.startswith("jobs_total{") for line in findings[0].lines)


@pytest.mark.req("OC-METRICS-7101")
def test_gauge_exposed_as_counter_and_untyped_histogram_are_wrong_types() -> None:
    text = GOOD.replace("# TYPE depth gauge", "# TYPE depth counter").replace(
        "# TYPE wait_seconds histogram\n", ""
    )
    findings = lint(text, RULES)
    assert sorted((f.kind, f.metric) for f in findings) == [
        (FindingKind.WRONG_TYPE, "depth"),
        (FindingKind.WRONG_TYPE, "wait_seconds"),
    ]


@pytest.mark.req("OC-METRICS-7101")
def test_missing_and_extra_labels_are_reported_per_metric() -> None:
    text = GOOD.replace(
        'jobs_total{engine="llamacpp",priority="interactive"} 3.0',
        'jobs_total{engine="llamacpp"} 3.0\n'
        'jobs_total{engine="vllm",priority="interactive",x="1"} 1',
    )
    findings = lint(text, RULES)
    assert kinds(findings) == [FindingKind.LABELS, FindingKind.LABELS]
    messages = " | ".join(f.message for f in findings)
    assert "missing priority" in messages and "unexpected x" in messages
    assert findings[0].lines == ('jobs_total{engine="llamacpp"} 3.0',)


@pytest.mark.req("OC-METRICS-7101")
def test_histogram_le_label_belongs_to_the_type_not_the_contract() -> None:
    text = GOOD.replace(
        'wait_seconds_count{engine="llamacpp"}', 'wait_seconds_count{engine="llamacpp",le="1"}'
    )
    findings = lint(text, RULES)
    assert kinds(findings) == [FindingKind.LABELS], render(findings)
    assert "unexpected le" in findings[0].message


@pytest.mark.req("OC-METRICS-7101")
def test_required_metric_that_is_absent_is_missing() -> None:
    text = GOOD.replace('# HELP depth Depth.\n# TYPE depth gauge\ndepth{engine="vllm"} 0.0\n', "")
    assert kinds(lint(text, RULES, required=["depth"])) == [FindingKind.MISSING]
    assert lint(text, RULES) == []  # not required: absence alone is fine


@pytest.mark.req("OC-METRICS-7102")
def test_label_value_outside_its_enumerated_set() -> None:
    text = GOOD.replace('depth{engine="vllm"}', 'depth{engine="sglang"}')
    findings = lint(text, RULES)
    assert kinds(findings) == [FindingKind.LABEL_VALUE]
    assert "'sglang'" in findings[0].message
    assert findings[0].lines == ('depth{engine="sglang"} 0.0',)


@pytest.mark.req("OC-METRICS-7102")
def test_distinct_values_over_the_budget_across_all_contracted_series() -> None:
    # engine has a budget of 2; three allowed values spread over two metrics exceed it
    text = GOOD + 'depth{engine="tgi"} 1.0\n'
    findings = lint(text, RULES)
    assert kinds(findings) == [FindingKind.OVER_BUDGET]
    assert "3 distinct values" in findings[0].message and "budget of 2" in findings[0].message
    assert len(findings[0].lines) == 3


@pytest.mark.req("OC-METRICS-7102")
def test_labels_of_uncontracted_metrics_are_not_counted() -> None:
    text = GOOD + "".join(f'process_open_fds{{engine="e{i}"}} 1\n' for i in range(9))
    assert lint(text, RULES) == []


@pytest.mark.req("OC-METRICS-7101")
def test_text_that_is_not_an_exposition_is_unparsable() -> None:
    findings = lint("<html>oops {</html>\n", RULES)
    assert kinds(findings) == [FindingKind.UNPARSABLE]
    assert findings[0].lines == ("<html>oops {</html>",)


@pytest.mark.req("OC-METRICS-7101")
def test_counter_that_goes_down_between_scrapes() -> None:
    before = parse_exposition(GOOD, RULES)
    after = parse_exposition(
        GOOD.replace("} 3.0", "} 2.0").replace(
            '_count{engine="llamacpp"} 2.0', '_count{engine="llamacpp"} 5.0'
        ),
        RULES,
    )
    findings = counter_regressions(before, after)
    assert kinds(findings) == [FindingKind.COUNTER_DECREASED]
    assert findings[0].metric == "jobs_total"
    assert findings[0].lines[0].startswith("before: jobs_total{")
    assert counter_regressions(before, before) == []


def test_totals_sum_the_matching_series() -> None:
    expo = parse_exposition(GOOD + 'jobs_total{engine="vllm",priority="interactive"} 4\n', RULES)
    assert expo.total("jobs_total") == 7.0
    assert expo.total("jobs_total", engine="vllm") == 4.0
    assert expo.total("wait_seconds") == 2.0  # the histogram's count
    assert expo.total("absent_total") == 0.0


@pytest.mark.req("OC-METRICS-7101", "OC-METRICS-7102")
def test_real_lint_file_accepts_a_full_reference_style_exposition() -> None:
    rules = LintRules.load()
    lines = []
    for rule in rules.metrics.values():
        labels = ",".join(
            f'{label}="{sorted(rules.values[label])[0] if label in rules.values else "x"}"'
            for label in rule.labels
        )
        base = rule.name.removesuffix("_total") if rule.type == "counter" else rule.name
        lines.append(f"# TYPE {rule.name if rule.type == 'counter' else base} {rule.type}")
        if rule.type == "histogram":
            lines.append(f'{base}_bucket{{{labels},le="+Inf"}} 1')
            lines.append(f"{base}_count{{{labels}}} 1")
            lines.append(f"{base}_sum{{{labels}}} 0.1")
        else:
            lines.append(f"{rule.name}{{{labels}}} 1")
    text = "\n".join(lines) + "\n"
    findings = lint(text, rules, required=rules.metrics)
    assert findings == [], render(findings)
    assert len(rules.core_metrics()) == len(set(rules.metrics) - OPTIONAL_FEATURE_METRICS)
