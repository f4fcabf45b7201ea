"""Steps that pick a replica set, build tasks and send requests (data and control plane)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pytest_bdd import given, when

from llama_orch.harness.outcomes import Violation
from llama_orch.harness.rules import AUTH
from llama_orch.harness.steps.fixtures import P
from llama_orch.harness.steps.watch import read_events
from llama_orch.harness.steps.world import NO_SUCH_POOL, Group, World, fresh_uuid, precondition

CORRELATION = "X-Correlation-Id"


# -- choosing where tasks go -----------------------------------------------------------------
@given("any replica set")
def any_replica_set(world: World) -> None:
    world.group = world.groups()[0]


@given(P("a replica set with at least {n:d} slots"))
@given(P("a replica set with at least {n:d} slot"))
def replica_set_with_slots(world: World, n: int) -> None:
    """The smallest set that has `n` slots: the one where placement and queueing show most."""
    best: tuple[int, Group] | None = None
    for group in world.groups():
        _, total = world.slots(group)
        if total >= n and (best is None or total < best[0]):
            best = (total, group)
    if best is None:
        pytest.skip(f"no replica set of the target has {n} slots")
    world.group = best[1]


# -- building tasks --------------------------------------------------------------------------
@given(P('a task with prompt "{prompt:Q}"'))
def task_with_prompt(world: World, prompt: str) -> None:
    world.task = world.new_task(prompt)


@given(P('a task "{label:Q}" with prompt "{prompt:Q}"'))
def named_task(world: World, label: str, prompt: str) -> None:
    world.tasks[label] = world.task = world.new_task(prompt)


@given(P("a task with a prompt of {n:d} characters"))
def task_with_long_prompt(world: World, n: int) -> None:
    head = "[[sim tokens=1]] "
    world.task = world.new_task(head + "x" * max(0, n - len(head)))


@given(P('the task has field "{name:Q}" set to {value}'))
def task_field(world: World, name: str, value: str) -> None:
    world.it()[name] = json.loads(value)


@given(P('task "{label:Q}" has field "{name:Q}" set to {value}'))
def named_task_field(world: World, label: str, name: str, value: str) -> None:
    world.named(label)[name] = json.loads(value)


@given(P('the task has no field "{name:Q}"'))
def task_without_field(world: World, name: str) -> None:
    world.it().pop(name, None)


@given("the task asks for a context one above the engine's ctx_max")
def task_ctx_over_limit(world: World) -> None:
    task = world.it()
    task["ctx"] = world.ctx_max(task["engine"]) + 1


@given(P('a task that has finished, with prompt "{prompt:Q}"'))
def finished_task(world: World, prompt: str) -> None:
    world.task = world.new_task(prompt)
    world.submit_ok(world.task, setup=True)
    events, ended = read_events(world.orch, world.task["task_id"], within_s=10.0)
    precondition(ended, "a short task did not finish within 10 s")
    world.events = events


@given("a valid task like it is admitted")
def valid_twin_admitted(world: World) -> None:
    """The positive control of a refusal check: the same task with valid fields (and fresh
    ids) is admitted, so a target that refuses everything cannot pass it."""
    twin = world.new_task("[[sim tokens=1]] control")
    world.submit_ok(twin, setup=True)
    world.response = None
    world.responses.clear()


# -- submitting ------------------------------------------------------------------------------
@when("I submit it")
@when("I submit it again")
def submit_it(world: World) -> None:
    world.submit(world.it())


@when(P('I submit task "{label:Q}"'))
def submit_named(world: World, label: str) -> None:
    world.task = world.named(label)
    world.submit(world.task)


@when("I submit a body that is not JSON")
def submit_not_json(world: World) -> None:
    world.record(
        world.orch.request(
            "POST",
            "/v1/tasks",
            content=b'{"task_id": "unterminated',
            headers={"Content-Type": "application/json"},
        )
    )


@when("I submit a short task to every replica set")
def submit_everywhere(world: World) -> None:
    for group in world.groups():
        world.submit(world.new_task("[[sim tokens=1]] everywhere", group=group))


# -- raw requests ----------------------------------------------------------------------------
def _existing_task(world: World) -> dict[str, Any]:
    if world.task is None or world.task["task_id"] not in world.admitted:
        world.task = world.new_task("[[sim tokens=1]] exists")
        world.submit_ok(world.task, setup=True)
    return world.task


def _any_pool(world: World) -> str:
    for group in world.groups():
        if group.pools:
            return group.pools[0]
    pytest.skip("the target's replica sets name no pool (replicas[].pool_id)")


def resolve_path(world: World, path: str) -> str:
    """Fill {task}, {session}, {unknown}, {pool} and {no_pool} in a request path."""
    if "{task}" in path or "{session}" in path:
        task = _existing_task(world)
        path = path.replace("{task}", task["task_id"]).replace("{session}", task["session_id"])
    if "{pool}" in path:
        path = path.replace("{pool}", _any_pool(world))
    return path.replace("{unknown}", fresh_uuid()).replace("{no_pool}", NO_SUCH_POOL)


def body_for(world: World, method: str, path: str) -> Any:
    """A well-formed body for the operation, so that only the point under test can fail."""
    if method != "POST" or path.endswith("/cancel"):
        return None
    if path == "/v1/tasks":
        world.task = world.new_task("[[sim tokens=1]] body")
        return world.task
    if path.endswith("/drain"):
        return {"deadline_ms": 1000}
    if path.endswith("/reload"):
        return {"new_model_ref": world.current_group().model_ref}
    return {
        "model": world.current_group().model_ref,
        "prompt": "hello",
        "messages": [{"role": "user", "content": "hello"}],
        "input": "hello",
    }


def send(
    world: World,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    auth: bool = True,
) -> None:
    path = resolve_path(world, path)
    body = body_for(world, method, path)
    resp = world.orch.request(method, path, json_body=body, headers=headers, auth=auth)
    if resp.status_code == 202 and path == "/v1/tasks" and body is not None:
        world.admitted.append(body["task_id"])  # a broken target admitted it: clean it up
    world.record(resp)


@when(P('I send {method:w} "{path:Q}"'))
def send_request(world: World, method: str, path: str) -> None:
    send(world, method, path)


@when(P('I send {method:w} "{path:Q}" without credentials'))
def send_without_key(world: World, method: str, path: str) -> None:
    send(world, method, path, auth=False)


@when(P('I send {method:w} "{path:Q}" with the bearer key "{key:Q}"'))
def send_with_bearer(world: World, method: str, path: str, key: str) -> None:
    world.extra["presented_key"] = key
    send(world, method, path, headers={"Authorization": f"Bearer {key}"}, auth=False)


@when(P('I send {method:w} "{path:Q}" with the X-API-Key "{key:Q}"'))
def send_with_x_api_key(world: World, method: str, path: str, key: str) -> None:
    world.extra["presented_key"] = key
    send(world, method, path, headers={"X-API-Key": key}, auth=False)


@when(P('I send {method:w} "{path:Q}" with the unknown key "{key:Q}"'))
def send_with_unknown_key(world: World, method: str, path: str, key: str) -> None:
    """An unknown key, sent the way the target takes its keys (its auth scheme)."""
    world.extra["presented_key"] = key
    send(world, method, path, headers=world.target.headers(key), auth=False)


@given(P('the target accepts {method:w} "{path:Q}" with its key'))
def accepted_with_key(world: World, method: str, path: str) -> None:
    """The positive control of an auth check: the same request with the target's own key is
    not refused, so a target that refuses everything cannot pass a "refused without a key"
    check (a 401 here breaks the auth rule: see `client.refused_own_key`)."""
    send(world, method, path)
    resp = world.response
    precondition(resp.status_code != 403, f"{method} {path} with the target's key answered 403")


@given("a data-plane-only API key")
def data_plane_key(world: World) -> None:
    key = world.target.data_plane_key
    precondition(key, "needs a key limited to the data plane (--data-plane-key-env VAR)")
    world.extra["tenant_key"] = key


@given(P('that key is accepted for {method:w} "{path:Q}"'))
def tenant_key_accepted(world: World, method: str, path: str) -> None:
    """The positive control of the 403 check: the key works where it is allowed."""
    key = world.extra["tenant_key"]
    send(world, method, path, headers=world.target.headers(key), auth=False)
    resp = world.response
    if resp.status_code == 401:
        raise Violation(AUTH, f"the data-plane key was refused with 401 on {method} {path}")
    precondition(
        resp.status_code < 400, f"{method} {path} with that key answered {resp.status_code}"
    )


@when(P('I send {method:w} "{path:Q}" with that key'))
def send_with_tenant_key(world: World, method: str, path: str) -> None:
    key = world.extra["tenant_key"]
    send(world, method, path, headers=world.target.headers(key), auth=False)


# -- correlation ids -------------------------------------------------------------------------
OPERATIONS = {
    "submit a task": ("POST", "/v1/tasks"),
    "cancel a task": ("POST", "/v1/tasks/{task}/cancel"),
    "read a session": ("GET", "/v1/sessions/{session}"),
    "delete a session": ("DELETE", "/v1/sessions/{session}"),
    "read pool health": ("GET", "/v1/pools/{pool}/health"),
    "list replica sets": ("GET", "/v1/replicasets"),
    "read capabilities": ("GET", "/v1/capabilities"),
    "drain an unknown pool": ("POST", "/v1/pools/{no_pool}/drain"),
    "read an unknown task": ("GET", "/v1/tasks/{unknown}/stream"),
}


def call(world: World, operation: str, headers: dict[str, str], auth: bool = True) -> None:
    if operation == "stream a task":
        task = _existing_task(world)
        resp, events = world.orch.stream(task["task_id"], headers=headers, stop=lambda ev: True)
        world.record(resp)
        world.events = events
        return
    if operation == "submit an invalid task":
        task = world.new_task("[[sim tokens=1]] invalid", ctx=-1)
        world.record(world.orch.submit(task, headers=headers))
        return
    if operation == "call without a key":
        operation, auth = "list replica sets", False
    assert operation in OPERATIONS, f"unknown operation {operation!r} in the feature file"
    method, path = OPERATIONS[operation]
    send(world, method, path, headers=headers, auth=auth)


@when(P('I call "{operation:Q}" with correlation id "{cid:Q}"'))
def call_with_correlation(world: World, operation: str, cid: str) -> None:
    call(world, operation, {CORRELATION: cid})


@when(P('I call "{operation:Q}" without a correlation id'))
def call_without_correlation(world: World, operation: str) -> None:
    call(world, operation, {})
