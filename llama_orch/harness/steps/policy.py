"""Steps of features/policy: a policy host judged through its probe plugin, over HTTP only.

The target must claim a policy host (`policy_host` in GET /v1/capabilities, specs/50) and list
the harness's probe plugin `llorch-probe` on the admission hook; the probe is driven by the
task's `max_tokens` (examples/policies/llorch_probe/plugin.zig). A target without a policy host
makes these checks not-supported; one that claims a host without the probe loaded cannot be
judged (a precondition error, so the requirements stay unverified, never passed).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from pytest_bdd import given, then, when

from llama_orch.harness.steps.fixtures import P
from llama_orch.harness.steps.responses import envelope
from llama_orch.harness.steps.watch import read_events
from llama_orch.harness.steps.world import World, precondition

PROBE_ID = "llorch-probe"
PROBE_PROMPT = "[[sim tokens=2]] policy probe"


def policy_host(world: World) -> dict[str, Any]:
    """The `policy_host` object of GET /v1/capabilities; the feature is tagged
    `@feature:policy_host`, the engine feature flag a target with a policy host sets."""
    host = world.target.capabilities.get("policy_host")
    precondition(
        isinstance(host, dict),
        "the target claims the policy_host feature but GET /v1/capabilities describes no "
        "policy host (capabilities.policy_host)",
    )
    return host


@given("the target runs the policy probe plugin")
def probe_loaded(world: World) -> None:
    plugins = policy_host(world).get("plugins") or []
    probe = [p for p in plugins if isinstance(p, dict) and p.get("id") == PROBE_ID]
    precondition(
        probe and "admission" in (probe[0].get("hooks") or []),
        f"the target claims a policy host but does not list the probe plugin {PROBE_ID!r} on "
        "the admission hook; load examples/policies/llorch_probe/plugin.wasm to be judged",
    )


@given(P("a probe task with max_tokens {n:d}"))
def probe_task(world: World, n: int) -> None:
    world.task = world.new_task(PROBE_PROMPT, max_tokens=n)


@when("I submit it and time the answer")
def submit_timed(world: World) -> None:
    started = time.monotonic()
    world.submit(world.it())
    world.extra["answer_s"] = time.monotonic() - started


@when("I submit a fresh copy of it")
def submit_copy(world: World) -> None:
    body = world.new_task(world.it()["prompt"], max_tokens=world.it()["max_tokens"])
    world.submit(body)


@when(P('I submit it with correlation id "{cid:Q}"'))
def submit_with_correlation(world: World, cid: str) -> None:
    world.extra["correlation_id"] = cid
    world.submit(world.it(), headers={"X-Correlation-Id": cid})


def _log_records(world: World) -> list[dict[str, Any]]:
    path = world.target.log_path
    if path is None or not Path(path).exists():
        pytest.skip("needs the target's JSON-lines log (--target-log FILE)")
    out = []
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


@then(P('the target\'s log records the call of "{plugin:Q}" on the {hook:W} hook'))
def call_logged(world: World, plugin: str, hook: str) -> None:
    cid = world.extra["correlation_id"]
    deadline = time.monotonic() + 5.0
    while True:
        calls = [
            r
            for r in _log_records(world)
            if r.get("plugin_id") == plugin and r.get("correlation_id") == cid
        ]
        if calls or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert calls, f"no log record of a call of {plugin!r} with correlation id {cid!r}"
    record = calls[-1]
    assert record.get("hook") == hook, record
    assert isinstance(record.get("plugin_version"), str) and record["plugin_version"], record
    duration = record.get("duration_ms")
    assert isinstance(duration, int | float) and duration >= 0, record
    world.extra["policy_call"] = record


@then(P('that record names the decision "{reason:Q}" and the correlation id'))
def call_decision_logged(world: World, reason: str) -> None:
    record = world.extra["policy_call"]
    assert reason in str(record.get("decision")), record
    assert record.get("correlation_id") == world.extra["correlation_id"], record


@then(P("the answer came within {seconds:d} seconds"))
def answered_within(world: World, seconds: int) -> None:
    took = world.extra["answer_s"]
    assert took <= seconds, f"admission took {took:.2f} s: a faulting plugin stalled it"


@then("both answers are the same refusal")
def same_refusal(world: World) -> None:
    first, second = world.responses[-2:]
    assert first.status_code == second.status_code, (first.status_code, second.status_code)
    a, b = envelope(first), envelope(second)
    keys = ("code", "policy_label", "retriable", "retry_after_ms")
    assert {k: a.get(k) for k in keys} == {k: b.get(k) for k in keys}, (a, b)


@then("an ordinary task submitted now is admitted and finishes")
def ordinary_task_served(world: World) -> None:
    body = world.new_task("[[sim tokens=2]] after the fault")
    world.submit_ok(body)
    _, ended = read_events(world.orch, body["task_id"], within_s=10.0)
    assert ended, "an ordinary task did not finish after the plugin fault: the queue stalled"
