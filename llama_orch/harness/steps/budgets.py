"""Budget steps: per-session budgets reported and enforced, and the SSE planning fields.

Budgets are judged with the second tenant's key (`--tenant-key-env`): a deployment may give
budgets to some tenants only (the reference's examples budget that tenant's sessions). Its
tasks ask for the engine's whole context, so that a refusal can only be the budget's.
"""

from __future__ import annotations

from typing import Any

import pytest
from pytest_bdd import given, then, when

from llama_orch.harness.client import OrchClient
from llama_orch.harness.steps.fixtures import P
from llama_orch.harness.steps.responses import json_body
from llama_orch.harness.steps.world import World, precondition

HEADERS = {
    "x-budget-tokens-remaining": "tokens_budget_remaining",
    "x-budget-time-remaining-ms": "time_budget_remaining_ms",
    "x-budget-cost-remaining": "cost_budget_remaining",
}
FIELDS = tuple(HEADERS.values())
PLANNING = {"on_time_probability": (int, float), "queue_depth": (int,), "kv_warmth": (bool,)}


def tenant(world: World, request: pytest.FixtureRequest) -> OrchClient:
    client = world.extra.get("tenant_client")
    if client is None:
        key = world.target.tenant_key
        precondition(key, "no second tenant's key (--tenant-key-env)")
        client = world.extra["tenant_client"] = OrchClient.for_target(world.target, key=key)
        request.addfinalizer(client.close)
    return client


def _number(name: str, value: Any) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise AssertionError(f"{name} is not a number: {value!r}") from None
    assert isinstance(value, int | float) and not isinstance(value, bool), f"{name} = {value!r}"
    assert value >= 0, f"{name} is negative: {value}"
    return float(value)


def reports(world: World) -> list[dict[str, float]]:
    """Every budget report seen so far: admission headers, stream headers, metrics events."""
    return world.extra.setdefault("budget_reports", [])


def _note_headers(world: World, headers: Any) -> None:
    found = {HEADERS[k.lower()]: _number(k, v) for k, v in headers.items() if k.lower() in HEADERS}
    if found:
        reports(world).append(found)


def submit_as_tenant(world: World, request: pytest.FixtureRequest, body: dict[str, Any]):
    client = tenant(world, request)
    resp = world.record(client.submit(body))
    world.orch.exchanges.extend(client.exchanges[-1:])
    if resp.status_code == 202:
        world.admitted.append(body["task_id"])
        _note_headers(world, resp.headers)
    return resp


def budget_task(world: World, prompt: str, **extra: Any) -> dict[str, Any]:
    group = world.current_group()
    ctx = world.ctx_max(group.engine)
    return world.new_task(prompt, group=group, ctx=ctx, **extra)


@given(P('a task of the second tenant with prompt "{prompt:Q}"'))
def tenant_task(world: World, prompt: str) -> None:
    world.task = budget_task(world, prompt, max_tokens=16)


@when("I submit it with the second tenant's key")
def submit_it(world: World, request: pytest.FixtureRequest) -> None:
    submit_as_tenant(world, request, world.it())


@when("I read its stream with the second tenant's key")
def read_stream(world: World, request: pytest.FixtureRequest) -> None:
    client = tenant(world, request)
    read, events = client.stream(world.it()["task_id"])
    world.orch.exchanges.extend(client.exchanges[-1:])
    assert read.status == 200, f"the stream answered {read.status}"
    _note_headers(world, read.headers)
    for event in events:
        if event.event == "metrics" and isinstance(event.data, dict):
            found = {k: _number(k, event.data[k]) for k in FIELDS if k in event.data}
            if found:
                reports(world).append(found)
    world.events = events


@when("I read its session with the second tenant's key")
def read_session(world: World, request: pytest.FixtureRequest) -> None:
    client = tenant(world, request)
    resp = world.record(client.get(f"/v1/sessions/{world.it()['session_id']}"))
    assert resp.status_code == 200, f"GET of the session answered {resp.status_code}"
    body = json_body(resp)
    world.extra["session_budget"] = {k: _number(k, body[k]) for k in FIELDS if k in body}


@then("the remaining budget was reported in budget headers or SSE metrics events")
def reported(world: World) -> None:
    assert reports(world), (
        "neither the 202, nor the stream's headers, nor its metrics events report a budget"
    )


@then("a second task in the session lowers the reported token budget")
def second_lowers(world: World, request: pytest.FixtureRequest) -> None:
    before = world.extra.get("session_budget", {}).get("tokens_budget_remaining")
    precondition(before is not None, "SessionInfo reports no tokens_budget_remaining")
    body = budget_task(world, "[[sim tokens=1]] second", session_id=world.it()["session_id"])
    resp = submit_as_tenant(world, request, body)
    assert resp.status_code == 202, f"the second task got {resp.status_code}: {resp.text[:300]}"
    after = reports(world)[-1].get("tokens_budget_remaining")
    precondition(after is not None, "the second admission reports no token budget in headers")
    assert after < before, f"the token budget went from {before} to {after}, not down"


@when("I submit a task in its session asking for one token more than the remaining budget")
def over_budget(world: World, request: pytest.FixtureRequest) -> None:
    left = world.extra.get("session_budget", {}).get("tokens_budget_remaining")
    precondition(left is not None, "SessionInfo reports no tokens_budget_remaining")
    group = world.current_group()
    room = world.ctx_max(group.engine) - int(left) - 1
    precondition(room >= 64, f"the remaining budget {left} is not below the context limit")
    body = budget_task(
        world,
        "[[sim tokens=1]] over",
        session_id=world.it()["session_id"],
        max_tokens=int(left) + 1,
    )
    submit_as_tenant(world, request, body)


@then("the refusal is not retriable")
def not_retriable(world: World) -> None:
    body = json_body(world.response)
    assert body.get("retriable") in (False, None), f"retriable is {body.get('retriable')!r}"


@then("a task in its session that fits the remaining budget is admitted")
def fits(world: World, request: pytest.FixtureRequest) -> None:
    body = budget_task(
        world, "[[sim tokens=1]] fits", session_id=world.it()["session_id"], max_tokens=1
    )
    resp = submit_as_tenant(world, request, body)
    assert resp.status_code == 202, f"a fitting task got {resp.status_code}: {resp.text[:300]}"


@then("a metrics event carries planning fields of the documented types")
def planning_fields(world: World) -> None:
    metrics = [e.data for e in world.events if e.event == "metrics" and isinstance(e.data, dict)]
    assert metrics, "the stream carries no metrics event"
    present = [(k, d[k]) for d in metrics for k in PLANNING if k in d]
    assert present, f"no metrics event carries any of {sorted(PLANNING)}: {metrics[:3]}"
    for key, value in present:
        typed = isinstance(value, PLANNING[key])
        if key != "kv_warmth":
            typed = typed and not isinstance(value, bool)
        assert typed, f"{key} = {value!r} is not of its documented type"
        if key == "on_time_probability":
            assert 0 <= value <= 1, f"on_time_probability {value} is outside [0, 1]"
