"""Steps that read SSE streams and check their framing, order and payloads."""

from __future__ import annotations

import json
import re

from pytest_bdd import then, when

from llama_orch.harness.client import SseEvent
from llama_orch.harness.openapi import ERROR_KINDS, SSE_EVENTS
from llama_orch.harness.steps.fixtures import P
from llama_orch.harness.steps.responses import schema_errors
from llama_orch.harness.steps.watch import read_events
from llama_orch.harness.steps.world import World, precondition

EVENT_NAMES = tuple(SSE_EVENTS)
_FIELD = re.compile(r"^(event|data|id|retry)?:")


def _events(world: World) -> list[SseEvent]:
    assert world.events, "no stream was read (or it had no event)"
    return world.events


def _tokens(world: World) -> list[SseEvent]:
    return [e for e in _events(world) if e.event == "token"]


def _terminal(world: World) -> SseEvent:
    event = _events(world)[-1]
    assert event.event in ("end", "error"), f"the stream ended with {event.event!r}"
    return event


# -- reading ---------------------------------------------------------------------------------
def admitted_id(world: World, task: dict) -> str:
    """The task's id; reading the stream of a task the target refused is a setup failure."""
    status = world.response.status_code if world.response is not None else None
    precondition(
        task["task_id"] in world.admitted, f"the task was not admitted (last answer {status})"
    )
    return task["task_id"]


@when("I read its stream")
def read_its_stream(world: World) -> None:
    resp, world.events = world.orch.stream(admitted_id(world, world.it()))
    world.stream_response = resp
    assert resp.status_code == 200, f"the stream answered {resp.status_code}"


@when(P('I read the stream of task "{label:Q}"'))
def read_named_stream(world: World, label: str) -> None:
    resp, events = world.orch.stream(admitted_id(world, world.named(label)))
    assert resp.status_code == 200, f"the stream of {label} answered {resp.status_code}"
    world.streams[label] = world.events = events


@when(P("I read its stream for at most {seconds:d} seconds"))
def read_bounded(world: World, seconds: int) -> None:
    task_id = admitted_id(world, world.it())
    world.events, _ = read_events(world.orch, task_id, within_s=float(seconds))


@when("I read its stream as raw text")
def read_raw(world: World) -> None:
    resp = world.orch.get(f"/v1/tasks/{admitted_id(world, world.it())}/stream")
    world.stream_response = resp
    world.raw_stream = resp.text


# -- framing ---------------------------------------------------------------------------------
@then("the stream answer is 200 with content type text/event-stream")
def stream_content_type(world: World) -> None:
    resp = world.stream_response
    assert resp is not None and resp.status_code == 200, "the stream did not answer 200"
    ctype = resp.headers.get("content-type", "")
    assert ctype.split(";")[0].strip() == "text/event-stream", f"content type {ctype!r}"


def _frames(raw: str) -> list[list[str]]:
    blocks = re.split(r"\r\n\r\n|\n\n|\r\r", raw.replace("\r\n", "\n"))
    out = []
    for block in blocks:
        lines = [ln for ln in block.split("\n") if ln and not ln.startswith(":")]
        if lines:
            out.append(lines)
    return out


@then("every event is framed as an event line followed by a data line")
def framed(world: World) -> None:
    frames = _frames(world.raw_stream)
    assert frames, "the raw stream holds no event"
    for lines in frames:
        fields = [ln.split(":", 1)[0] for ln in lines]
        assert all(_FIELD.match(ln) for ln in lines), f"not SSE field lines: {lines}"
        assert "event" in fields and "data" in fields, f"event without event/data line: {lines}"
        assert fields.index("event") < fields.index("data"), f"data before event: {lines}"
        assert fields.count("data") == 1, f"payload split over several data lines: {lines}"
        payload = lines[fields.index("data")].split(":", 1)[1].strip()
        json.loads(payload)


@then("the raw stream uses only the events started, token, metrics, end and error")
def raw_event_names(world: World) -> None:
    names = [
        ln.split(":", 1)[1].strip()
        for lines in _frames(world.raw_stream)
        for ln in lines
        if ln.startswith("event:")
    ]
    assert names, "the raw stream names no event"
    unknown = sorted(set(names) - set(EVENT_NAMES))
    assert not unknown, f"event names outside the OrchQueue v1 set: {unknown}"


# -- events ----------------------------------------------------------------------------------
@then("the stream uses only the events started, token, metrics, end and error")
def event_names(world: World) -> None:
    unknown = sorted({e.event for e in _events(world)} - set(EVENT_NAMES))
    assert not unknown, f"event names outside the OrchQueue v1 set: {unknown}"


@then("the first event is started")
def first_started(world: World) -> None:
    events = _events(world)
    assert events[0].event == "started", f"first event is {events[0].event!r}"
    assert [e.event for e in events].count("started") == 1, "started appears more than once"


@then("every event's data is a JSON object")
def data_objects(world: World) -> None:
    for e in _events(world):
        assert isinstance(e.data, dict), f"{e.event} data is not a JSON object: {e.data!r}"


@then("token indices count up from 0 by one")
def token_indices(world: World) -> None:
    got = [e.data.get("i") if isinstance(e.data, dict) else None for e in _tokens(world)]
    assert got == list(range(len(got))), f"token indices {got}"


@then("exactly one terminal event ends the stream")
def one_terminal(world: World) -> None:
    _terminal(world)
    names = [e.event for e in _events(world)]
    assert names.count("end") + names.count("error") == 1, f"terminal events in {names}"


@then(P("the stream has {n:d} token events"))
@then(P("the stream has {n:d} token event"))
def token_count(world: World, n: int) -> None:
    assert len(_tokens(world)) == n, f"expected {n} token events, got {len(_tokens(world))}"


@then(P("the stream ends with {name:W}"))
def ends_with(world: World, name: str) -> None:
    events = _events(world)
    assert events[-1].event == name, (
        f"the stream ended with {events[-1].event!r} {events[-1].data!r}, expected {name!r}"
    )


@then("the end event reports as many tokens as were streamed")
def end_tokens_out(world: World) -> None:
    end = _terminal(world)
    assert end.event == "end", f"the stream ended with {end.event} {end.data!r}"
    assert end.data.get("tokens_out") == len(_tokens(world)), (
        f"tokens_out {end.data.get('tokens_out')} but {len(_tokens(world))} token events"
    )


@then(P("the error event code is {code:W}"))
def error_event_code(world: World, code: str) -> None:
    event = _terminal(world)
    assert event.event == "error", f"the stream ended with {event.event} {event.data!r}"
    got = event.data.get("code") if isinstance(event.data, dict) else None
    assert got in ERROR_KINDS, f"error event code {got!r} is not an ErrorKind"
    assert got == code, f"expected error code {code}, got {got!r}"
    assert isinstance(event.data.get("message"), str), "error event needs a message"


@then("every event payload matches its OrchQueue v1 schema")
def payload_schemas(world: World) -> None:
    for e in _events(world):
        if e.event in SSE_EVENTS:
            errors = schema_errors(SSE_EVENTS[e.event], e.data)
            assert not errors, f"{e.event} payload {e.data!r}: {'; '.join(errors[:3])}"


@then("the started event carries queue_position and predicted_start_ms")
def started_fields(world: World) -> None:
    started = next((e for e in _events(world) if e.event == "started"), None)
    assert started is not None, "the stream has no started event"
    for name in ("queue_position", "predicted_start_ms"):
        value = started.data.get(name) if isinstance(started.data, dict) else None
        assert isinstance(value, int) and not isinstance(value, bool), f"started lacks {name}"
        assert value >= 0, f"started.{name} is negative"


@then(P('tasks "{a:Q}" and "{b:Q}" streamed the same tokens'))
def same_tokens(world: World, a: str, b: str) -> None:
    def tokens(label: str) -> list[tuple]:
        assert label in world.streams, f"the stream of task {label} was not read"
        return [
            (e.data.get("i"), e.data.get("t")) for e in world.streams[label] if e.event == "token"
        ]

    ta, tb = tokens(a), tokens(b)
    assert ta, f"task {a} streamed no token"
    assert ta == tb, f"token streams differ: {a}={ta[:8]} {b}={tb[:8]}"
