"""Purity of plugin calls (OC-POLICY-4001, ORCH-3048) and their logging (OC-POLICY-4020)."""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import generate_latest

from llama_orch.policy_sdk.scaffold import example_snapshot
from llama_orch.reference_impl.policy import Outcome
from tests._policy import ADMIT, BUDGET, LOOP, PLACEMENT, admission_snapshot, host, wat_plugin

BUDGETS = {"tenant-a": 2048, "tenant-b": 0}
_budget_host = host([{"path": str(BUDGET), "hooks": ["admission"], "config": {"budgets": BUDGETS}}])
_placement_host = host(
    [{"path": str(PLACEMENT), "hooks": ["placement"], "config": {"label": "tier", "value": "a"}}]
)

counts = st.integers(min_value=0, max_value=10**6)
admissions = st.fixed_dictionaries(
    {
        "task": st.fixed_dictionaries(
            {
                "tenant": st.sampled_from(["tenant-a", "tenant-b", "tenant-c", "ü-tenant"]),
                "pool_id": st.just("pool-a"),
                "engine": st.just("llamacpp"),
                "priority": st.sampled_from(["interactive", "batch"]),
                "ctx": counts,
                "prompt_tokens": counts,
                "max_tokens": counts,
                "deadline_ms": st.none() | counts,
                "pinned": st.booleans(),
            }
        ),
        "pool": st.just(example_snapshot("admission")["pool"]),
        "tenant": st.fixed_dictionaries(
            {
                "tenant": st.just("tenant-a"),
                "queued": counts,
                "running": counts,
                "tokens_in_flight": counts,
            }
        ),
        "session": st.none() | st.just(example_snapshot("admission")["session"]),
    }
)
candidate = st.fixed_dictionaries(
    {
        "replica_id": st.from_regex(r"pool-a-r[0-9]{1,2}", fullmatch=True),
        "load": st.floats(min_value=0, max_value=1),
        "slots_free": st.integers(1, 8),
        "slots_total": st.integers(1, 8),
        "labels": st.dictionaries(st.sampled_from(["tier", "zone"]), st.sampled_from("abc")),
    }
)
placements = st.builds(
    lambda cands: {
        **example_snapshot("placement"),
        "candidates": list({c["replica_id"]: c for c in cands}.values()),
    },
    st.lists(candidate, min_size=2, max_size=6),
)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def policy_log():
    """Records of the policy logger, whatever another test did to logging's configuration."""
    logger = logging.getLogger("llama_orch.reference_impl.policy")
    handler, level = _Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(level)


def _outcome(record):
    return record.outcome, record.decision


@pytest.mark.req("OC-POLICY-4001", "ORCH-3048")
@given(snapshot=admissions)
def test_same_admission_snapshot_twice_gives_the_same_decision(snapshot) -> None:
    plugin = _budget_host.plugins[0]
    first = _budget_host.decide(plugin, "admission", snapshot, "c-1")
    second = _budget_host.decide(plugin, "admission", snapshot, "c-2")  # another request
    assert first.outcome in (Outcome.DECIDED, Outcome.ABSTAINED)
    assert _outcome(first) == _outcome(second)
    assert first.fuel == second.fuel  # the very same computation, instruction for instruction
    task, usage = snapshot["task"], snapshot["tenant"]
    budget = BUDGETS.get(task["tenant"])
    if budget is None:
        assert first.decision.kind == "abstain"
    else:
        over = usage["tokens_in_flight"] + task["prompt_tokens"] + task["max_tokens"] > budget
        assert first.decision.kind == ("reject" if over else "admit")


@pytest.mark.req("OC-POLICY-4001", "ORCH-3048")
@given(snapshot=placements)
def test_same_placement_snapshot_twice_gives_the_same_ranking(snapshot) -> None:
    plugin = _placement_host.plugins[0]
    first = _placement_host.decide(plugin, "placement", snapshot)
    second = _placement_host.decide(plugin, "placement", snapshot)
    assert _outcome(first) == _outcome(second)
    wanted = [c["replica_id"] for c in snapshot["candidates"] if c["labels"].get("tier") == "a"]
    if wanted:
        assert first.decision.replicas == tuple(wanted)
    else:
        assert first.decision.kind == "abstain"


@pytest.mark.req("OC-POLICY-4001")
def test_state_kept_in_a_plugin_does_not_survive_between_calls(tmp_path) -> None:
    # The module counts its calls in a global and answers garbage from the second call on;
    # every call runs in a fresh instance, so every call is its first.
    body = (
        "(global.set $n (i32.add (global.get $n) (i32.const 1)))"
        "(if (result i64) (i32.eq (global.get $n) (i32.const 1)) (then $ANSWER)"
        " (else (i64.const 0)))"
    )
    plugin_path = wat_plugin(
        tmp_path / "counter.wasm",
        hooks={"admission": ADMIT},
        bodies={"admission": body},
        globals_="(global $n (mut i32) (i32.const 0))",
    )
    h = host([{"path": str(plugin_path), "hooks": ["admission"]}])
    outcomes = {h.decide(h.plugins[0], "admission", admission_snapshot()).outcome for _ in range(5)}
    assert outcomes == {Outcome.DECIDED}


@pytest.mark.req("OC-POLICY-4020")
def test_every_call_is_logged_with_plugin_version_decision_duration_and_correlation(
    tmp_path, policy_log
) -> None:
    loop = wat_plugin(tmp_path / "loop.wasm", bodies={"admission": LOOP})
    h = host(
        [
            {"path": str(BUDGET), "hooks": ["admission"], "config": {"budgets": {"tenant-a": 10}}},
            {"path": str(loop), "hooks": ["admission"], "limits": {"fuel": 100_000}},
        ]
    )
    h.admission(admission_snapshot(tenant="tenant-a"), "corr-42")
    calls = [r for r in policy_log if r.getMessage() == "policy call"]
    assert [r.plugin_id for r in calls] == ["admission-budget"]  # a refusal ends the round
    (call,) = calls
    assert (call.plugin_version, call.hook, call.outcome) == ("1.0.0", "admission", "decided")
    assert call.decision == "reject:tenant_over_budget"
    assert call.correlation_id == "corr-42"
    assert call.duration_ms > 0 and call.fuel > 0

    policy_log.clear()
    h.admission(admission_snapshot(tenant="tenant-z"), None)
    by_plugin = {r.plugin_id: r for r in policy_log if r.getMessage() == "policy call"}
    assert by_plugin["admission-budget"].outcome == "abstained"
    aborted = by_plugin["wat-test"]
    assert aborted.levelno == logging.WARNING
    assert (aborted.outcome, aborted.decision) == ("cpu_exceeded", None)
    assert "fuel bound of 100000 exhausted" in aborted.reason


@pytest.mark.req("OC-POLICY-4020")
def test_calls_are_counted_in_metrics_by_plugin_hook_and_outcome(tmp_path) -> None:
    from prometheus_client import CollectorRegistry

    from llama_orch.reference_impl.config.policy import PolicyConfig
    from llama_orch.reference_impl.policy import PolicyHost, PolicyMetrics

    registry = CollectorRegistry()
    config = PolicyConfig.model_validate(
        {"plugins": [{"path": str(BUDGET), "hooks": ["admission"], "config": {}}]}
    )
    h = PolicyHost.from_config(config, metrics=PolicyMetrics(registry))
    for _ in range(3):
        h.admission(admission_snapshot(), None)
    text = generate_latest(registry).decode()
    assert (
        'policy_calls_total{hook="admission",outcome="abstained",plugin="admission-budget"} 3.0'
        in text
    )
    assert (
        'policy_call_duration_seconds_count{hook="admission",plugin="admission-budget"} 3.0' in text
    )


@pytest.mark.req("OC-POLICY-4020")
def test_the_log_line_is_json_with_the_contract_fields(tmp_path) -> None:
    import io

    from llama_orch.reference_impl.service.logs import configure_logging

    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    h = host([{"path": str(BUDGET), "hooks": ["admission"], "config": {"budgets": {"t": 5}}}])
    h.admission(admission_snapshot(tenant="t"), "corr-7")
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    call = next(x for x in lines if x["msg"] == "policy call")
    for key in ("plugin_id", "plugin_version", "hook", "outcome", "decision", "duration_ms"):
        assert call[key] is not None, key
    assert call["correlation_id"] == "corr-7"
