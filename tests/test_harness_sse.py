"""The harness's SSE decoder follows the WHATWG event-stream rules, one test per rule.

A third-party stream that is legal SSE must decode to the events a browser would dispatch,
whatever its keep-alives, line ends or TCP chunking; nothing more, nothing less.
"""

from __future__ import annotations

import itertools

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llama_orch.harness.sse import SseDecoder, read_stream


def decode(*chunks: str) -> list[tuple[str, object, str | None]]:
    dec = SseDecoder()
    out = []
    for chunk in chunks:
        out += [(e.event, e.data, e.id) for e in dec.feed(chunk)]
    dec.close()
    return out


def test_an_event_and_its_json_data() -> None:
    assert decode('event: token\ndata: {"i":0}\n\n') == [("token", {"i": 0}, None)]


def test_data_without_the_space_after_the_colon() -> None:
    assert decode('event:token\ndata:{"i":0}\n\n') == [("token", {"i": 0}, None)]


def test_only_one_leading_space_is_dropped() -> None:
    assert decode("data:  two\n\n") == [("message", " two", None)]


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
def test_lf_crlf_and_cr_line_ends(eol: str) -> None:
    text = f"event: end{eol}data: {{}}{eol}{eol}"
    assert decode(text) == [("end", {}, None)]


def test_a_crlf_split_across_chunks_is_one_line_end() -> None:
    assert decode("event: end\r", "\ndata: {}\r", "\n\r", "\n") == [("end", {}, None)]


def test_comment_lines_are_ignored_before_and_inside_events() -> None:
    text = ': ping\n\n: keep-alive\nevent: started\n: inside\ndata: {"queue_position":0}\n\n'
    assert decode(text) == [("started", {"queue_position": 0}, None)]


def test_a_comment_only_block_after_an_id_dispatches_nothing() -> None:
    """The httpx-sse 0.4.3 bug: a blank line after a comment re-sent the last event."""
    text = "event: token\nid: 0\ndata: {}\n\n: ping\n\n: ping\n\n"
    assert decode(text) == [("token", {}, "0")]


def test_an_id_only_block_dispatches_nothing_but_sets_the_id() -> None:
    dec = SseDecoder()
    assert dec.feed("id: 7\n\n") == []
    (event,) = dec.feed("data: x\n\n")
    assert event.id == "7" and event.has_id is False


def test_the_last_event_id_persists_but_has_id_is_per_block() -> None:
    dec = SseDecoder()
    first, second = dec.feed("id: 3\ndata: a\n\ndata: b\n\n")
    assert (first.id, first.has_id) == ("3", True)
    assert (second.id, second.has_id) == ("3", False)


def test_an_id_with_nul_is_ignored() -> None:
    (event,) = SseDecoder().feed("id: a\0b\ndata: x\n\n")
    assert event.id is None and event.has_id is False


def test_several_data_lines_join_with_newlines() -> None:
    assert decode("data: a\ndata: b\n\n") == [("message", "a\nb", None)]


def test_an_empty_data_line_dispatches_an_empty_event() -> None:
    assert decode("data:\n\n") == [("message", "", None)]


def test_a_field_without_colon_has_an_empty_value() -> None:
    assert decode("data\n\n") == [("message", "", None)]


def test_unknown_fields_and_retry_are_ignored() -> None:
    assert decode("retry: 1000\nfoo: bar\nevent: end\ndata: {}\n\n") == [("end", {}, None)]


def test_an_unterminated_event_at_the_end_is_discarded() -> None:
    assert decode('event: token\ndata: {"i":0}\n\nevent: token\ndata: {"i":1}\n') == [
        ("token", {"i": 0}, None)
    ]


def test_a_leading_byte_order_mark_is_dropped() -> None:
    assert decode("\ufeffevent: end\ndata: {}\n\n") == [("end", {}, None)]


def test_non_json_data_stays_text() -> None:
    (event,) = SseDecoder().feed("event: token\ndata: not json\n\n")
    assert event.data == "not json" and event.raw == "not json"


STREAM = (
    ": hello\n\nevent: started\ndata: {}\n\n"
    'event: token\nid: 0\ndata: {"t":"a","i":0}\n\n: ping\n\n'
    'event: end\ndata: {"tokens_out":1,"decode_ms":1}\n\n'
)


@given(st.lists(st.integers(min_value=1, max_value=len(STREAM) - 1), unique=True, max_size=12))
def test_any_chunking_decodes_the_same_events(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(STREAM)]
    chunks = [STREAM[a:b] for a, b in itertools.pairwise(bounds)]
    assert decode(*chunks) == decode(STREAM)
    assert [e for e, _, _ in decode(*chunks)] == ["started", "token", "end"]


def _client(handler) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler), base_url="http://t")


def test_read_stream_stops_at_the_terminal_event_and_keeps_the_raw_text() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, text=STREAM)

    read = read_stream(_client(handler), "/s", gap_s=1, total_s=1)
    assert [e.event for e in read.events] == ["started", "token", "end"]
    assert read.terminal is not None and read.timed_out is None
    assert read.raw.startswith(": hello")


def test_read_stream_gives_the_body_of_a_refusal() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"code": "INVALID_PARAMS", "message": "no such task"})

    read = read_stream(_client(handler), "/s", gap_s=1, total_s=1)
    assert read.status == 404 and "INVALID_PARAMS" in read.body and not read.events
