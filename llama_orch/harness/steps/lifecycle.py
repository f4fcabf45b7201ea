"""Lifecycle steps: state changes of a catalogued model and what they do to its pools and tasks.

Tasks for a catalogued model name it by its digest (what a rollout makes a pool serve); the
pool is the one the scenario rolled the entry out to (catalog steps), and the world gives it
back its original model at the end.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from pytest_bdd import given, then, when

from llama_orch.harness.steps.catalog import entry_of, move
from llama_orch.harness.steps.fixtures import P
from llama_orch.harness.steps.responses import json_body
from llama_orch.harness.steps.watch import read_events
from llama_orch.harness.steps.world import World, poll, precondition

STATES = ("Draft", "Active", "Canary", "Deprecated", "Retired")


def entry_task(world: World, prompt: str, **extra: Any) -> dict[str, Any]:
    """A task for the catalogued model: its digest on the scenario's replica set's engine."""
    group = world.current_group()
    body = world.new_task(prompt, group=group, **extra)
    body["model_ref"] = entry_of(world)["digest"]
    return body


@when(P("I move the entry to {state:W}"))
def move_to(world: World, state: str) -> None:
    move(world, state)


@when(P("I move the entry to {state:W} with a drain deadline of {ms:d} ms"))
def move_with_deadline(world: World, state: str, ms: int) -> None:
    move(world, state, ms)


@then("the state change is accepted")
def accepted(world: World) -> None:
    resp = world.response
    assert resp.status_code == 202, f"expected 202, got {resp.status_code}: {resp.text[:300]}"


@given(P("a task for the entry that streams {n:d} tokens over {ms:d} ms is running"))
def running_entry_task(world: World, n: int, ms: int) -> None:
    body = entry_task(world, f"[[sim tokens={n} itl_ms={max(1, ms // max(1, n - 1))}]] deprecate")
    world.tasks["running"] = body
    world.extra["running_tokens"] = n
    world.submit_ok(body, setup=True)
    started = world.watch("running", body["task_id"]).wait_tokens(1, 3.0)
    precondition(started, "the task on the entry's pool did not start within 3 s")


@then("a new task for the entry without override is refused with MODEL_DEPRECATED")
def deprecated_refusal(world: World) -> None:
    resp = world.submit(entry_task(world, "[[sim tokens=1]] no override"))
    assert resp.status_code == 400, f"expected 400, got {resp.status_code}: {resp.text[:300]}"
    code = json_body(resp).get("code")
    assert code == "MODEL_DEPRECATED", f"expected MODEL_DEPRECATED, got {code!r}"


@then("the pool reports draining")
def pool_draining(world: World) -> None:
    resp = world.orch.get(f"/v1/pools/{world.pool_id}/health")
    health = json_body(resp)
    assert health.get("draining") is True, f"the pool does not drain: {health}"


@then(P("the running task ended within {seconds:d} seconds, before its last token"))
def running_ended(world: World, seconds: int) -> None:
    w = world.watches["running"]
    assert w.wait_done(float(seconds)), f"the running task still runs after {seconds} s"
    events = [e for _, e in w.events]
    tokens = sum(e.event == "token" for e in events)
    assert events and events[-1].event in ("end", "error"), f"it ended with {events[-1:]}"
    full = world.extra["running_tokens"]
    assert tokens < full, f"the task streamed all {full} tokens: the drain did not end it"


@then(P("the pool stops draining within {seconds:d} seconds"))
def stops_draining(world: World, seconds: int) -> None:
    seen: dict[str, Any] = {}

    def calm() -> bool:
        seen["h"] = json_body(world.orch.get(f"/v1/pools/{world.pool_id}/health"))
        return seen["h"].get("draining") is False and seen["h"].get("ready") is True

    assert poll(calm, float(seconds), 0.1), f"the pool stays {seen.get('h')}"


@then(P("a task for the entry with override completes within {seconds:d} seconds"))
def override_completes(world: World, seconds: int) -> None:
    body = entry_task(world, "[[sim tokens=2]] override", override=True)
    resp = world.submit(body)
    assert resp.status_code == 202, f"the override task got {resp.status_code}: {resp.text[:300]}"
    events, ended = read_events(world.orch, body["task_id"], within_s=float(seconds))
    assert ended and events[-1].event == "end", f"the override task ended with {events[-1:]}"


@then(P("a task for the entry is refused with {code:W}"))
def entry_refused(world: World, code: str) -> None:
    resp = world.submit(entry_task(world, "[[sim tokens=1]] after", override=True))
    assert 400 <= resp.status_code < 600, f"a task for the entry got {resp.status_code}"
    got = json_body(resp).get("code")
    assert got == code, f"expected {code}, got {got!r} ({resp.status_code})"


@then(P("the pool reports not ready within {seconds:d} seconds"))
def pool_unready(world: World, seconds: int) -> None:
    seen: dict[str, Any] = {}

    def down() -> bool:
        seen["h"] = json_body(world.orch.get(f"/v1/pools/{world.pool_id}/health"))
        return seen["h"].get("ready") is False and seen["h"].get("draining") is False

    assert poll(down, float(seconds), 0.1), f"the pool stays {seen.get('h')}"


@then(P("the model_state gauge shows the entry {state:W}"))
def gauge_shows(world: World, state: str) -> None:
    resp = world.orch.get("/metrics")
    assert resp.status_code == 200, f"GET /metrics answered {resp.status_code}"
    model_id = entry_of(world)["id"]
    values = {
        s.labels.get("state"): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
        if s.name == "model_state" and s.labels.get("model_id") == model_id
    }
    assert values.get(state) == 1, f"model_state of {model_id}: {values}"
    others = {k: v for k, v in values.items() if k != state and v != 0}
    assert not others, f"model_state is not 0 on the other states: {others}"
    unknown = set(values) - set(STATES)
    assert not unknown, f"model_state uses unknown states {unknown}"
