"""Cancel steps: cancel at a chosen point of a stream, and what must hold afterwards."""

from __future__ import annotations

import time

import httpx
from pytest_bdd import then, when

from llama_orch.engine_sim.directive import parse_directive
from llama_orch.harness.client import check_stream
from llama_orch.harness.outcomes import Violation
from llama_orch.harness.rules import CANCEL, STREAM_FRAMING, STREAM_ORDER
from llama_orch.harness.sse import SseEvent, StreamRead, iter_events
from llama_orch.harness.steps.fixtures import P
from llama_orch.harness.steps.streams import admitted_id
from llama_orch.harness.steps.watch import read_events, summary
from llama_orch.harness.steps.world import World, precondition


def _cancel(world: World, task_id: str) -> httpx.Response:
    resp = world.orch.cancel(task_id)
    world.extra.setdefault("cancels", []).append(resp)
    return resp


@when("I cancel it")
@when("I cancel it again")
def cancel_it(world: World) -> None:
    _cancel(world, world.it()["task_id"])


@when(P('I cancel task "{label:Q}"'))
def cancel_named(world: World, label: str) -> None:
    _cancel(world, world.named(label)["task_id"])


LATE_TOKENS = 3  # tokens after an acknowledged cancel that show the task was not stopped


@when(P("I cancel it after {n:d} tokens"))
def cancel_after_tokens(world: World, n: int) -> None:
    """Follow the stream; on the n-th token send the cancel and keep reading to the end.

    Events parsed after the 204 arrived are kept apart. The next token cannot be produced
    before `itl_ms` after the n-th one was sent, so when the 204 came back sooner than that
    after the n-th token arrived, the cancel took effect first and no later token may follow.
    A target that goes on streaming has shown it by `LATE_TOKENS` tokens after the cancel:
    the read stops there instead of waiting for the rest of the task.
    """
    task_id = admitted_id(world, world.it())
    orch = world.orch
    before: list[SseEvent] = []
    after: list[SseEvent] = []
    url = f"/v1/tasks/{task_id}/stream"
    ex = orch._exchange("GET", f"{orch.base_url}{url}", orch.http.headers, None)
    orch.exchanges.remove(ex)  # appended last, below: the stream is the evidence of a late token
    timeout = httpx.Timeout(orch.timeouts.stream_gap_s, connect=orch.timeouts.connect_s)
    try:
        with orch.http.stream("GET", url, timeout=timeout) as response:
            ex.status = response.status_code
            if response.status_code != 200:
                raise Violation(STREAM_FRAMING, f"the stream answered {response.status_code}")
            read = StreamRead(response.status_code, response.headers)
            acked = False
            for event in iter_events(
                response,
                gap_s=orch.timeouts.stream_gap_s,
                total_s=orch.timeouts.stream_s,
                read=read,
            ):
                (after if acked else before).append(event)
                check_stream([event], False)  # a broken stream blocks the check at once
                if sum(e.event == "token" for e in after) >= LATE_TOKENS:
                    break
                if not acked and sum(e.event == "token" for e in before) == n:
                    t_token = time.monotonic()
                    _cancel(world, task_id)
                    world.extra["cancel_window_ms"] = (time.monotonic() - t_token) * 1000
                    acked = True
                if event.event in ("end", "error"):
                    break
            ex.error = read.timed_out
    finally:
        ex.response_body = summary(before + after)
        orch.exchanges.append(ex)
    check_stream(before + after, read.ended)
    if not acked:
        precondition(False, f"the stream ended before its token {n}: nothing was canceled")
    went_on = sum(e.event == "token" for e in after) >= LATE_TOKENS
    if not went_on and not any(e.event in ("end", "error") for e in after):
        why = read.timed_out or "it closed"
        raise Violation(STREAM_ORDER, f"the canceled stream gave no terminal event: {why}")
    world.events = before + after
    world.extra["after_cancel"] = after


@when("I cancel the tasks holding the slots")
def cancel_holders(world: World) -> None:
    assert world.holders, "no task holds a slot in this scenario"
    for task_id in world.holders:
        _cancel(world, task_id)


@then(P("the cancel response status is {status:d}"))
@then(P("every cancel response status is {status:d}"))
def cancel_status(world: World, status: int) -> None:
    """A cancel answers 204 (ORCH-2003); for a check of what a cancel does, that is its
    premise, so a wrong answer fails ORCH-2003 and blocks the check."""
    cancels = world.extra.get("cancels", [])
    precondition(cancels, "nothing was canceled")
    got = [r.status_code for r in cancels]
    if not all(s == status for s in got):
        raise Violation(CANCEL, f"cancel answered {got}, expected {status}")


@then("no token event arrived after the cancel was acknowledged")
def no_token_after_cancel(world: World) -> None:
    cancels = world.extra.get("cancels", [])
    if not cancels or cancels[-1].status_code != 204:
        raise Violation(CANCEL, f"the cancel was not acknowledged with 204: {cancels[-1:]}")
    after = world.extra.get("after_cancel", [])
    late = [e.data for e in after if e.event == "token"]
    if not late:
        return
    directive, _ = parse_directive(world.it().get("prompt") or "")
    itl = directive.itl_ms if directive is not None else 0
    window = world.extra.get("cancel_window_ms", float("inf"))
    precondition(
        window < itl,
        f"the cancel took {window:.0f} ms, not less than the {itl} ms between tokens: "
        "a late token cannot be told from one already on its way",
    )
    assert not late, f"{len(late)} token event(s) after the cancel answered 204: {late[:3]}"


@then(P("fewer than {n:d} tokens were streamed"))
def fewer_tokens(world: World, n: int) -> None:
    got = sum(e.event == "token" for e in world.events)
    assert got < n, f"{got} tokens were streamed: the cancel did not stop the task"


@then("the stream ended soon after the cancel")
def ended_after_cancel(world: World) -> None:
    """Stopped, not finished: the directive's 40 tokens 250 ms apart take 10 s."""
    after = world.extra.get("after_cancel", [])
    tokens = sum(e.event == "token" for e in after)
    assert tokens < LATE_TOKENS, f"{tokens} tokens followed the cancel: the task was not stopped"


@then(P('task "{label:Q}" ended without any token'))
def ended_without_token(world: World, label: str) -> None:
    events, ended = read_events(world.orch, world.named(label)["task_id"], within_s=3.0)
    assert ended, f"the stream of canceled task {label} did not end within 3 s"
    tokens = [e for e in events if e.event == "token"]
    assert not tokens, f"canceled task {label} streamed {len(tokens)} token(s)"
    world.streams[label] = events


@then(P('task "{label:Q}" still has no token after {seconds:d} second'))
@then(P('task "{label:Q}" still has no token after {seconds:d} seconds'))
def still_no_token(world: World, label: str, seconds: int) -> None:
    time.sleep(seconds)
    events, _ = read_events(world.orch, world.named(label)["task_id"], within_s=0.5)
    tokens = [e for e in events if e.event == "token"]
    assert not tokens, f"canceled task {label} was dispatched later and streamed a token"
