"""Control-plane steps: pool health, drain, reload, replica sets and replica identity.

A pool is drained or reloaded only when it alone serves its replica set's engine and model,
so that "not dispatched" can be told apart from "placed on another pool"; the world reloads
it with its original model at the end of the scenario.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pytest_bdd import given, then, when

from llama_orch.harness.outcomes import Violation
from llama_orch.harness.steps.fixtures import P
from llama_orch.harness.steps.responses import assert_schema, json_body, schema_errors
from llama_orch.harness.steps.watch import read_events
from llama_orch.harness.steps.world import PoolRestore, World, poll, precondition

# A model reference no deployment serves; the reference's mock engine also refuses to load it.
UNLOADABLE_MODEL = "repo:mock/unloadable-llorch-compliance"
IDENTITY_KEYS = ("engine_version", "model_digest")


def _health(world: World, pool_id: str) -> dict[str, Any]:
    return world.health(pool_id)


def _pool(world: World) -> str:
    assert world.pool_id is not None, "no pool chosen in this scenario"
    return world.pool_id


def _remember(world: World) -> None:
    """Note the pool's model before changing it, so that teardown can put it back."""
    pool_id = _pool(world)
    if not any(r.pool_id == pool_id for r in world.restore):
        world.restore.append(PoolRestore(pool_id, world.current_group().model_ref))


@given("a pool that alone serves its replica set")
def lone_pool(world: World) -> None:
    for group in world.groups():
        if len(group.pools) == 1 and sum(g.key == group.key for g in world.groups()) == 1:
            world.group, world.pool_id = group, group.pools[0]
            ready = _health(world, world.pool_id).get("ready") is True
            precondition(ready, f"pool {world.pool_id} is not ready")
            return
    pytest.skip("no replica set of the target holds exactly one pool (replicas[].pool_id)")


@given(P("a task on the pool that streams {n:d} tokens over {ms:d} ms is running"))
def running_task(world: World, n: int, ms: int) -> None:
    body = world.new_task(f"[[sim tokens={n} itl_ms={max(1, ms // max(1, n - 1))}]] drain")
    world.tasks["running"] = body
    world.submit_ok(body, setup=True)
    started = world.watch("running", body["task_id"]).wait_tokens(1, 3.0)
    precondition(started, "the task on the pool did not start within 3 s")


@given("the pool is drained")
@when(P("I drain the pool with a deadline of {ms:d} ms"))
def drain(world: World, ms: int = 10_000) -> None:
    _remember(world)
    world.record(
        world.orch.request("POST", f"/v1/pools/{_pool(world)}/drain", json_body={"deadline_ms": ms})
    )


@when("I reload the pool with its current model")
def reload_same(world: World) -> None:
    _remember(world)
    ref = world.current_group().model_ref
    world.record(
        world.orch.request(
            "POST", f"/v1/pools/{_pool(world)}/reload", json_body={"new_model_ref": ref}
        )
    )


@when("I reload the pool with a model that does not exist")
def reload_missing(world: World) -> None:
    _remember(world)
    world.record(
        world.orch.request(
            "POST",
            f"/v1/pools/{_pool(world)}/reload",
            json_body={"new_model_ref": UNLOADABLE_MODEL},
        )
    )


@then("the pool reports draining")
def draining(world: World) -> None:
    health = _health(world, _pool(world))
    assert health.get("draining") is True, f"draining is {health.get('draining')!r}"


@given("the pool reports draining")
def drained_premise(world: World) -> None:
    """The premise of a check of what a drained pool does: the drain took effect."""
    health = _health(world, _pool(world))
    precondition(health.get("draining") is True, f"the drain did not take effect: {health}")


@then(P("the pool becomes ready and stops draining within {seconds:d} seconds"))
def ready_again(world: World, seconds: int) -> None:
    state: dict[str, Any] = {}

    def settled() -> bool:
        state["h"] = _health(world, _pool(world))
        return state["h"].get("ready") is True and state["h"].get("draining") is False

    assert poll(settled, float(seconds), 0.1), f"pool health stays {state.get('h')}"


@then(P("the pool reports the reload failure in last_error within {seconds:d} seconds"))
def failure_reported(world: World, seconds: int) -> None:
    """Within the feature's bound, or the settle bound of a target description that lowers it."""
    seconds = min(seconds, world.orch.timeouts.settle_s)
    state: dict[str, Any] = {}

    def failed() -> bool:
        state["h"] = _health(world, _pool(world))
        return isinstance(state["h"].get("last_error"), str) and bool(state["h"]["last_error"])

    assert poll(failed, seconds, 0.1), f"last_error stays empty: {state.get('h')}"
    world.extra["health"] = state["h"]


@then(P("the pool is ready and not draining within {seconds:d} seconds"))
def settles(world: World, seconds: int) -> None:
    ready_again(world, seconds)


@then("a new task for the pool is not dispatched")
def not_dispatched(world: World) -> None:
    """Refused (503) or left waiting (202 without tokens): either way not run on the pool."""
    body = world.new_task("[[sim tokens=2]] after drain")
    resp = world.submit(body)
    if resp.status_code == 202:
        events, _ = read_events(world.orch, body["task_id"], within_s=2.0)
        tokens = [e for e in events if e.event == "token"]
        assert not tokens, "a task admitted after the drain streamed tokens from the pool"
        return
    assert resp.status_code == 503, f"expected 503 or a queued 202, got {resp.status_code}"


@then(P("a task for the pool completes within {seconds:d} seconds"))
def task_completes(world: World, seconds: int) -> None:
    body = world.new_task("[[sim tokens=2]] served")
    world.submit_ok(body)
    events, ended = read_events(world.orch, body["task_id"], within_s=float(seconds))
    assert ended and events[-1].event == "end", f"the task ended with {events[-1:]}"


@then("the running task finished normally")
def running_finished(world: World) -> None:
    w = world.watches["running"]
    assert w.wait_done(10.0), "the running task did not finish within 10 s"
    events = [e for _, e in w.events]
    assert events and events[-1].event == "end", f"it ended with {events[-1:]}"


# -- health and replica sets -----------------------------------------------------------------
@when("I read the health of every pool")
def read_all_health(world: World) -> None:
    pools = [p for g in world.groups() for p in g.pools]
    if not pools:
        pytest.skip("the target's replica sets name no pool (replicas[].pool_id)")
    world.extra["health"] = {
        p: world.record(world.orch.get(f"/v1/pools/{p}/health")) for p in pools
    }


@then("every pool health answer is a complete PoolHealth")
def complete_health(world: World) -> None:
    """live, ready, draining and metrics (ORCH-2103, OC-CTRL-2001); `last_error` is named by
    ORCH-2103 alone, so its absence fails only that."""
    no_last_error = []
    for pool_id, resp in world.extra["health"].items():
        assert resp.status_code == 200, f"health of {pool_id} answered {resp.status_code}"
        body = json_body(resp)
        assert_schema("PoolHealth", body)
        for key in ("live", "ready", "draining"):
            assert isinstance(body.get(key), bool), f"{pool_id}: {key} must be a boolean"
        assert isinstance(body.get("metrics"), dict), f"{pool_id}: metrics must be an object"
        if "last_error" not in body or not isinstance(body["last_error"], str | None):
            no_last_error.append(pool_id)
    if no_last_error:
        raise Violation(("ORCH-2103",), f"no last_error (string or null) in {no_last_error}")


@when("I list the replica sets")
def list_sets(world: World) -> None:
    world.record(world.orch.get("/v1/replicasets"))


@then("every replica set reports its id, engine, load, slots and slo")
def complete_sets(world: World) -> None:
    """load and slo (ORCH-2104, OC-CTRL-2004); id, engine and the slot counts are named by
    ORCH-2104 alone, so a fault there fails only that."""
    sets = json_body(world.response)
    assert isinstance(sets, list) and sets, "the target lists no replica set"
    for rs in sets:
        assert isinstance(rs, dict), f"a replica set is not an object: {rs!r}"
        name = rs.get("id")
        load = rs.get("load")
        ok = isinstance(load, int | float) and not isinstance(load, bool) and load >= 0
        assert ok, f"replica set {name!r}: load {load!r}"
        assert isinstance(rs.get("slo"), dict), f"replica set {name!r}: slo must be an object"
    for rs in sets:
        errors = schema_errors("ReplicaSet", rs)
        if errors:
            raise Violation(("ORCH-2104",), f"not a valid ReplicaSet: {'; '.join(errors[:5])}")
        slots = (rs.get("slots_free"), rs.get("slots_total"))
        if not all(isinstance(v, int) for v in slots) or not 0 <= slots[0] <= slots[1]:
            raise Violation(("ORCH-2104",), f"replica set {rs.get('id')!r}: slots {slots}")


def _identity(world: World, rs: dict[str, Any]) -> dict[str, Any]:
    """engine_version and model_digest of a replica set, where the target description says
    the target keeps them (the contract leaves them to open objects)."""
    return {k: world.target.fact(rs, k) for k in IDENTITY_KEYS}


@then("every replica set names one engine_version and one model_digest")
def set_identity(world: World) -> None:
    sets = json_body(world.response)
    versions = world.extra.setdefault("engine_versions", set())
    for rs in sets:
        ident = _identity(world, rs)
        for key in IDENTITY_KEYS:
            assert isinstance(ident[key], str) and ident[key], (
                f"replica set {rs.get('id')!r} shows no single {key} (got {ident[key]!r})"
            )
        versions.add((rs["engine"], ident["engine_version"]))


@then("the metrics exposition labels series with those engine versions")
def metric_labels(world: World) -> None:
    resp = world.orch.get("/metrics")
    assert resp.status_code == 200, f"GET /metrics answered {resp.status_code}"
    labelled = set(re.findall(r'engine_version="([^"]*)"', resp.text))
    for engine, version in world.extra.get("engine_versions", set()):
        assert version in labelled, f"no metric series labels engine {engine} with {version!r}"


# -- metrics exposition ----------------------------------------------------------------------
def _samples(world: World, name: str) -> list[tuple[dict[str, str], float]]:
    text = world.extra.get("metrics_text", "")
    return [
        (s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]


@when("I read the metrics exposition")
def read_metrics(world: World) -> None:
    resp = world.record(world.orch.get("/metrics"))
    assert resp.status_code == 200, f"GET /metrics answered {resp.status_code}"
    world.extra["metrics_text"] = resp.text


@then(P("{name:W} is exported for every engine, between 0 and 1"))
def ratio_per_engine(world: World, name: str) -> None:
    samples = _samples(world, name)
    engines = {labels.get("engine") for labels, _ in samples}
    missing = sorted({g.engine for g in world.groups()} - engines)
    assert not missing, f"{name} has no series for engines {missing}"
    bad = [(labels, v) for labels, v in samples if not 0.0 <= v <= 1.0]
    assert not bad, f"{name} values outside [0, 1]: {bad[:3]}"


@then(P("{name:W} of the replica set's engine is above 0"))
def ratio_above_zero(world: World, name: str) -> None:
    engine = world.current_group().engine
    values = [v for labels, v in _samples(world, name) if labels.get("engine") == engine]
    assert any(v > 0 for v in values), f"{name} for {engine} stays at {values} under load"
