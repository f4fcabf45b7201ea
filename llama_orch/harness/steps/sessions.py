"""Session steps: read and delete a task's session, and use up its turns."""

from __future__ import annotations

from pytest_bdd import given, then, when

from llama_orch.harness.outcomes import Violation
from llama_orch.harness.steps.fixtures import P
from llama_orch.harness.steps.responses import json_body
from llama_orch.harness.steps.world import World

SESSION_INFO = ("ORCH-2004",)  # GET /v1/sessions/{id} answers 200 with a SessionInfo
TURN_LIMIT = ("ORCH-3021",)


def _session_path(world: World) -> str:
    return f"/v1/sessions/{world.it()['session_id']}"


@when("I read its session")
def read_session(world: World) -> None:
    world.record(world.orch.get(_session_path(world)))


@given("its session exists")
def session_exists(world: World) -> None:
    """The positive control of a deletion check: before it, the session is there."""
    resp = world.orch.get(_session_path(world))
    if resp.status_code != 200:
        raise Violation(
            SESSION_INFO, f"the session of an admitted task answered {resp.status_code}"
        )


@when("I delete its session")
def delete_session(world: World) -> None:
    world.record(world.orch.request("DELETE", _session_path(world)))


@when(P("I submit turns in its session until one is refused, at most {n:d}"))
def use_up_turns(world: World, n: int) -> None:
    """Short tasks in one session; stops at the first refusal (that response stays last)."""
    session_id = world.it()["session_id"]
    admitted = 0
    for _ in range(n):
        body = world.new_task("[[sim tokens=1]] turn", session_id=session_id)
        resp = world.submit(body)
        if resp.status_code != 202:
            break
        admitted += 1
    world.extra["turns_admitted"] = admitted
    world.extra["turn_refusal"] = world.response


@then(P("the session reports {n:d} turn"))
@then(P("the session reports {n:d} turns"))
def session_turns(world: World, n: int) -> None:
    body = json_body(world.response)
    assert body.get("turns") == n, f"session turns {body.get('turns')!r}, expected {n}"


@then("a turn was refused before the limit of the scenario")
def turn_refused(world: World) -> None:
    refusal = world.extra.get("turn_refusal")
    if refusal is None or not 400 <= refusal.status_code < 500:
        raise Violation(
            TURN_LIMIT,
            f"after {world.extra.get('turns_admitted')} admitted turns no turn was refused with "
            f"a 4xx (last answer {getattr(refusal, 'status_code', None)}): no turn limit",
        )


@then("the session reports as many turns as were admitted")
def turns_match(world: World) -> None:
    resp = world.orch.get(_session_path(world))
    world.record(resp)
    want = world.extra.get("turns_admitted")
    got = json_body(resp).get("turns") if resp.status_code == 200 else None
    if got != want:
        raise Violation(
            SESSION_INFO, f"the session answered {resp.status_code} with turns {got}, not {want}"
        )


@then("the session's ttl_ms_remaining is positive")
def ttl_positive(world: World) -> None:
    ttl = json_body(world.response).get("ttl_ms_remaining")
    assert isinstance(ttl, int) and ttl > 0, f"ttl_ms_remaining {ttl!r}"
