"""Provider states for a black-box target, set up through its public OrchQueue v1 API only.

The Pact verifier asks for a state before it replays an interaction and tears it down after.
A harness cannot reach into a third-party orchestrator, so each state is made true the way a
client would make it true: admitting a task (with `[[sim ...]]` directives for its timing),
holding slots and filling a queue, picking a pool that reports itself ready. The values the
interaction needs (a task id, a served engine and model, a pool id) are returned to the
verifier, which puts them into the request (`ProviderState` generators).

A state that cannot be created on this target raises `StateError`; the check of the
interaction then ends as `error` ("cannot be set up"), never as a pass. Teardown cancels what
the state admitted and reloads any pool it changed, so later checks find the target as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from llama_orch.harness.client import OrchClient
from llama_orch.harness.contracts import interactions as names
from llama_orch.harness.steps.load import fill_until
from llama_orch.harness.steps.watch import read_events
from llama_orch.harness.steps.world import (
    HOLD_PROMPT,
    PoolRestore,
    PreconditionError,
    World,
    precondition,
)

Values = dict[str, Any]
RUN_WITHIN_S = 5.0


class StateError(RuntimeError):
    """A provider state cannot be set up on the target under test."""


def _ctx(world: World, engine: str) -> tuple[int, int]:
    """A context size within the engine's limit, and one just above it."""
    ctx_max = world.ctx_max(engine)
    return min(512, ctx_max), ctx_max + 1


def _served(world: World, params: Values) -> Values:
    group = world.current_group()
    ctx, over = _ctx(world, group.engine)
    return {"engine": group.engine, "model_ref": group.model_ref, "ctx": ctx, "ctx_over": over}


def _queue_full(world: World, params: Values) -> Values:
    run = fill_until(world, None, "interactive")
    ctx, _ = _ctx(world, run.group.engine)
    return {"engine": run.group.engine, "model_ref": run.group.model_ref, "ctx": ctx}


def _streaming(world: World, params: Values) -> Values:
    body = world.new_task(f"[[sim tokens={int(params.get('tokens', 2))}]] pact: stream")
    world.submit_ok(body, setup=True)
    return {"task_id": body["task_id"]}


def _running(world: World, params: Values) -> Values:
    body = world.new_task(HOLD_PROMPT)
    world.submit_ok(body, setup=True)
    started = world.watch("running", body["task_id"]).wait_tokens(1, RUN_WITHIN_S)
    precondition(started, f"the task did not start running within {RUN_WITHIN_S:.0f} s")
    return {"task_id": body["task_id"]}


def _session(world: World, params: Values) -> Values:
    body = world.new_task("[[sim tokens=1]] pact: session")
    world.submit_ok(body, setup=True)
    _, ended = read_events(world.orch, body["task_id"], within_s=RUN_WITHIN_S)
    precondition(ended, f"the session's task did not finish within {RUN_WITHIN_S:.0f} s")
    world.extra["session_id"] = body["session_id"]
    return {"session_id": body["session_id"]}


def _ready(world: World, pool_id: str) -> bool:
    resp = world.orch.pool_health(pool_id)
    return resp.status_code == 200 and resp.json().get("ready") is True


def _pool_ready(world: World, params: Values) -> Values:
    for group in world.groups():
        for pool_id in group.pools:
            if _ready(world, pool_id):
                return {"pool_id": pool_id, "model_ref": group.model_ref}
    raise PreconditionError("no pool of the replica sets' replicas reports ready")


def _lone_pool(world: World, params: Values) -> Values:
    """The last ready pool that alone serves its replica set; teardown reloads its model."""
    groups = world.groups()
    lone = [g for g in groups if len(g.pools) == 1 and sum(h.key == g.key for h in groups) == 1]
    for group in reversed(lone):
        if _ready(world, group.pools[0]):
            world.group, world.pool_id = group, group.pools[0]
            world.restore.append(PoolRestore(group.pools[0], group.model_ref))
            return {"pool_id": group.pools[0], "model_ref": group.model_ref}
    raise PreconditionError("no ready pool serves a replica set alone (replicas[].pool_id)")


HANDLERS: dict[str, Callable[[World, Values], Values]] = {
    names.SERVED: _served,
    names.QUEUE_FULL: _queue_full,
    names.STREAMING: _streaming,
    names.RUNNING: _running,
    names.SESSION: _session,
    names.POOL_READY: _pool_ready,
    names.LONE_POOL: _lone_pool,
}


class ProviderStates:
    """Sets up and tears down provider states on one target, one `World` per active state."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.orch = OrchClient.for_target(target)
        self._active: dict[str, World] = {}

    def setup(self, state: str, params: Values | None) -> Values:
        """Make `state` true; the values the interaction's request needs."""
        if state == "":  # Pact's generic per-interaction hook; nothing to do
            return {}
        handler = HANDLERS.get(state)
        if handler is None:
            raise StateError(f"provider state {state!r} is not known to this harness")
        world = World(self.orch, self.target)
        self._active[state] = world
        try:
            return handler(world, params or {})
        except (PreconditionError, AssertionError, httpx.HTTPError) as exc:
            raise StateError(
                f"provider state {state!r} cannot be set up on this target: {exc}"
            ) from exc
        except pytest.skip.Exception as exc:
            raise StateError(
                f"provider state {state!r} cannot be set up on this target: {exc.msg}"
            ) from None

    def teardown(self, state: str) -> None:
        """Undo `state`: cancel what it admitted, delete its session, reload changed pools."""
        world = self._active.pop(state, None)
        if world is None:
            return
        session_id = world.extra.get("session_id")
        if session_id:
            try:
                world.orch.delete_session(session_id)
            except httpx.HTTPError:
                pass  # best effort: the session expires on its own
        world.cleanup()

    def reset(self) -> None:
        """Tear down every state still active (the verifier skipped a teardown)."""
        for state in list(self._active):
            self.teardown(state)

    def close(self) -> None:
        self.reset()
        self.orch.close()
