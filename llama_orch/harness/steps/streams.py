"""Steps that read SSE streams and check their framing, order and payloads."""

from __future__ import annotations

import json
import re

from pytest_bdd import then, when

from llama_orch.harness.client import SseEvent
from llama_orch.harness.openapi import SSE_EVENTS
from llama_orch.harness.outcomes import Violation
from llama_orch.harness.rules import (
    ERROR_ENVELOPE,
    STARTED_FIELDS,
    STREAM_FRAMING,
    STREAM_JSON,
    STREAM_ORDER,
)
from llama_orch.harness.sse import StreamRead
from llama_orch.harness.steps.fixtures import P
from llama_orch.harness.steps.responses import check_envelope, schema_errors
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


def read_whole(world: World, task_id: str, within_s: float | None = None) -> StreamRead:
    """Read a task's stream to its terminal event; the rules every stream reader relies on.

    A stream that does not answer 200 as text/event-stream, or does not end with a terminal
    event within its bound, breaks a basic rule (`harness.rules`): the check of that rule
    fails, any other check reading the stream is blocked by it.
    """
    resp, _ = world.orch.stream(task_id, within_s=within_s)
    world.stream_response = resp
    if resp.status_code != 200:
        raise Violation(
            STREAM_FRAMING, f"the stream of an admitted task answered {resp.status_code}"
        )
    ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "text/event-stream":
        raise Violation(STREAM_FRAMING, f"the stream's content type is {ctype!r}")
    if resp.terminal is None:
        why = resp.timed_out or "the stream closed"
        raise Violation(STREAM_ORDER, f"the stream gave no end or error event: {why}")
    return resp


@when("I read its stream")
def read_its_stream(world: World) -> None:
    world.events = read_whole(world, admitted_id(world, world.it())).events


@when(P('I read the stream of task "{label:Q}"'))
def read_named_stream(world: World, label: str) -> None:
    read = read_whole(world, admitted_id(world, world.named(label)))
    world.streams[label] = world.events = read.events


@when(P("I read its stream for at most {seconds:d} seconds"))
def read_bounded(world: World, seconds: int) -> None:
    task_id = admitted_id(world, world.it())
    world.events, _ = read_events(world.orch, task_id, within_s=float(seconds))


@when("I read its stream as raw text")
def read_raw(world: World) -> None:
    """The raw body of the stream, read to its end like any stream (bounded)."""
    resp, _ = world.orch.stream(admitted_id(world, world.it()), validate=False)
    world.stream_response = resp
    world.raw_stream = resp.text
    if resp.status_code == 200 and resp.terminal is None:
        why = resp.timed_out or "the stream closed"
        raise Violation(STREAM_ORDER, f"the stream gave no end or error event: {why}")


# -- framing ---------------------------------------------------------------------------------
@then("the stream answer is 200 with content type text/event-stream")
def stream_content_type(world: World) -> None:
    resp = world.stream_response
    assert resp is not None and resp.status_code == 200, "the stream did not answer 200"
    ctype = resp.headers.get("content-type", "")
    assert ctype.split(";")[0].strip() == "text/event-stream", f"content type {ctype!r}"


def _frames(raw: str) -> list[list[str]]:
    """The field lines of each block of a raw event stream, by the WHATWG line rules (CRLF, CR
    or LF ends a line; comment lines and comment-only blocks are not events)."""
    lines = raw.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out: list[list[str]] = []
    block: list[str] = []
    for line in lines:
        if line == "":
            if block:
                out.append(block)
            block = []
        elif not line.startswith(":"):
            block.append(line)
    return out  # an unterminated last block is no event (WHATWG)


def _field(line: str) -> tuple[str, str]:
    name, _, value = line.partition(":")
    return name, value[1:] if value.startswith(" ") else value


@then("every event is framed as an event line followed by a data line")
def framed(world: World) -> None:
    frames = [f for f in _frames(world.raw_stream) if any(_field(ln)[0] == "data" for ln in f)]
    assert frames, "the raw stream holds no event"
    for lines in frames:
        fields = [_field(ln)[0] for ln in lines]
        assert "event" in fields, f"an event without an event line: {lines}"
        assert fields.index("event") < fields.index("data"), f"data before event: {lines}"
        assert fields.count("data") == 1, f"payload split over several data lines: {lines}"
        payload = _field(lines[fields.index("data")])[1]
        try:
            json.loads(payload)
        except ValueError:
            raise Violation(STREAM_JSON, f"a data line does not hold JSON: {payload!r}") from None


@then("the raw stream uses only the events started, token, metrics, end and error")
def raw_event_names(world: World) -> None:
    names = [
        _field(ln)[1]
        for lines in _frames(world.raw_stream)
        for ln in lines
        if _field(ln)[0] == "event"
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


@then(P("the stream ends with an error event"))
def ends_with_error(world: World) -> None:
    """The premise of an error-event check (the directive asks the engine to fail)."""
    event = _terminal(world)
    precondition(event.event == "error", f"the stream ended with {event.event} {event.data!r}")


@then("the error event is a typed error envelope")
def error_event_typed(world: World) -> None:
    check_envelope(_terminal(world).data, "the SSE error event")


@then(P("the error event code is {code:W}"))
def error_event_code(world: World, code: str) -> None:
    event = _terminal(world)
    assert event.event == "error", f"the stream ended with {event.event} {event.data!r}"
    got = event.data.get("code") if isinstance(event.data, dict) else None
    assert got == code, f"expected error code {code}, got {got!r}"


@then("every event payload matches its OrchQueue v1 schema")
def payload_schemas(world: World) -> None:
    """Each payload against its schema in the contract; the started and error payloads are
    also the business of their own requirements, which a mismatch there breaks."""
    for e in _events(world):
        if e.event not in SSE_EVENTS:
            continue
        errors = schema_errors(SSE_EVENTS[e.event], e.data)
        if not errors:
            continue
        message = f"{e.event} payload {e.data!r}: {'; '.join(errors[:3])}"
        if e.event == "started":
            raise Violation(STARTED_FIELDS, message)
        if e.event == "error":
            raise Violation(ERROR_ENVELOPE, message)
        raise AssertionError(message)


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


# -- resume (OC-CTRL-2024) ---------------------------------------------------------------------
def _indices(events: list[SseEvent]) -> list[object]:
    return [e.data.get("i") if isinstance(e.data, dict) else None for e in events]


@then("every token event has its own id line equal to its index")
def token_ids(world: World) -> None:
    tokens = _tokens(world)
    precondition(tokens, "the stream has no token event")
    bad = [
        (e.data.get("i") if isinstance(e.data, dict) else None, e.id if e.has_id else None)
        for e in tokens
        if not e.has_id or not isinstance(e.data, dict) or e.id != str(e.data.get("i"))
    ]
    assert not bad, f"token events whose id line is missing or differs from i (i, id): {bad[:5]}"


@when(P("I read its stream until {n:d} tokens arrived and drop the connection"))
def read_part(world: World, n: int) -> None:
    task_id = admitted_id(world, world.it())

    def enough(events: list[SseEvent]) -> bool:
        return sum(e.event == "token" for e in events) >= n

    resp, events = world.orch.stream(task_id, stop=enough)
    if resp.status_code != 200:
        raise Violation(
            STREAM_FRAMING, f"the stream of an admitted task answered {resp.status_code}"
        )
    tokens = [e for e in events if e.event == "token"]
    precondition(len(tokens) >= n, f"the stream ended after {len(tokens)} tokens, before {n}")
    world.extra["first_part"] = events


@when("I reconnect with Last-Event-ID of the last token received")
def reconnect(world: World) -> None:
    first = [e for e in world.extra["first_part"] if e.event == "token"]
    last = first[-1]
    assert last.has_id and last.id, f"the last token received carries no id line: {last.raw!r}"
    resp, events = world.orch.stream(world.it()["task_id"], last_event_id=last.id)
    if resp.status_code != 200:
        raise AssertionError(f"the stream with Last-Event-ID {last.id} answered {resp.status_code}")
    if resp.terminal is None:
        raise AssertionError(f"the resumed stream gave no end or error event: {resp.timed_out}")
    world.extra["resumed"] = events


@then("the resumed stream starts at the next token without started")
def resumed_start(world: World) -> None:
    first = [e for e in world.extra["first_part"] if e.event == "token"]
    resumed = world.extra["resumed"]
    names = [e.event for e in resumed]
    assert "started" not in names, f"the resumed stream repeats started: {names[:5]}"
    tokens = [e for e in resumed if e.event == "token"]
    assert tokens, f"the resumed stream has no token: {names}"
    want = _indices(first)[-1]
    assert isinstance(want, int), f"the last token received has no index: {first[-1].raw!r}"
    got = _indices(tokens)[0]
    assert got == want + 1, f"the resumed stream starts at token {got}, not {want + 1}"


@then("the tokens before and after the reconnect count up from 0 by one to the end")
def resumed_whole(world: World) -> None:
    first = [e for e in world.extra["first_part"] if e.event == "token"]
    resumed = world.extra["resumed"]
    got = _indices(first) + _indices([e for e in resumed if e.event == "token"])
    assert got == list(range(len(got))), f"token indices across the reconnect: {got}"
    assert resumed[-1].event == "end", f"the resumed stream ended with {resumed[-1].event!r}"
