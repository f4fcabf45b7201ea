"""Server-Sent Events, decoded by the WHATWG rules, and read from a target with bounded time.

Why our own decoder: the harness judges other people's streams, so it must accept everything
the SSE standard allows (comment lines such as `: ping` keep-alives, `data:` with or without
the space, CRLF, CR or LF line ends, events split across TCP chunks) and dispatch exactly the
events a browser would. httpx-sse 0.4.3 dispatches a phantom event for a comment-only block
once an `id:` line has been seen, which turns legal keep-alives into protocol violations.

The rules (https://html.spec.whatwg.org/multipage/server-sent-events.html, "event stream
interpretation") in brief: lines end at CRLF, LF or CR; a blank line dispatches the buffered
event, unless its data buffer is empty (then nothing is dispatched); a line starting with `:`
is a comment; `field:value` drops one leading space of the value; a line without a colon is a
field with an empty value; `id` with a NUL is ignored; `retry` needs ASCII digits; unknown
fields are ignored; an unterminated event at the end of the stream is discarded.
"""

from __future__ import annotations

import codecs
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass(frozen=True)
class SseEvent:
    """One dispatched event. `data` is the JSON-decoded payload when it parses, else text."""

    event: str
    data: Any
    id: str | None  # the last event ID in force when the event was dispatched (WHATWG)
    has_id: bool = False  # whether this event's own block carried an `id:` line
    raw: str = ""  # the event's data buffer, undecoded

    @property
    def is_json_object(self) -> bool:
        return isinstance(self.data, dict)


@dataclass
class SseDecoder:
    """Incremental WHATWG event-stream decoder: feed text chunks, get dispatched events."""

    comments: int = 0  # comment lines seen (keep-alives), for diagnostics only
    last_event_id: str = ""
    _pending: str = ""
    _trailing_cr: bool = False
    _event: str = ""
    _data: list[str] = field(default_factory=list)
    _block_has_id: bool = False
    _started: bool = False

    def feed(self, chunk: str) -> list[SseEvent]:
        if not self._started and chunk:
            self._started = True
            chunk = chunk.removeprefix("\ufeff")
        text = self._pending + chunk
        if self._trailing_cr and text.startswith("\n"):
            text = text[1:]  # the LF of a CRLF split across chunks
        self._trailing_cr = False
        events: list[SseEvent] = []
        start = 0
        n = len(text)
        i = 0
        while i < n:
            ch = text[i]
            if ch == "\r" or ch == "\n":
                event = self._line(text[start:i])
                if event is not None:
                    events.append(event)
                if ch == "\r":
                    if i + 1 < n and text[i + 1] == "\n":
                        i += 1
                    elif i + 1 == n:
                        self._trailing_cr = True
                start = i + 1
            i += 1
        self._pending = text[start:]
        return events

    def close(self) -> None:
        """End of stream: an event without its closing blank line is discarded (WHATWG)."""
        self._pending = ""
        self._reset()

    def _reset(self) -> None:
        self._event, self._data, self._block_has_id = "", [], False

    def _line(self, line: str) -> SseEvent | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            self.comments += 1
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
                self._block_has_id = True
        # `retry` and unknown fields carry nothing a check needs; they are legal and ignored.
        return None

    def _dispatch(self) -> SseEvent | None:
        if not self._data:  # nothing to dispatch: a comment-only or id-only block
            self._reset()
            return None
        raw = "\n".join(self._data)
        try:
            data: Any = json.loads(raw)
        except ValueError:
            data = raw
        event = SseEvent(
            self._event or "message", data, self.last_event_id or None, self._block_has_id, raw
        )
        self._reset()
        return event


class StreamTimeout(httpx.TimeoutException):
    """A stream sent no event for too long, or did not end within its overall deadline."""


@dataclass
class StreamRead:
    """What a bounded read of one stream gave: events, how it ended, the raw text."""

    status: int
    headers: httpx.Headers
    events: list[SseEvent] = field(default_factory=list)
    ended: bool = False  # the server closed the stream
    timed_out: str | None = None  # why the read stopped early, when it did
    raw: str = ""
    body: str = ""  # the body of a non-200 answer

    @property
    def terminal(self) -> SseEvent | None:
        return self.events[-1] if self.events and self.events[-1].event in TERMINAL else None

    # Response-like views, so steps can treat a stream answer like any other answer.
    @property
    def status_code(self) -> int:
        return self.status

    @property
    def text(self) -> str:
        return self.body if self.status != 200 else self.raw

    def json(self) -> Any:
        return json.loads(self.text)


TERMINAL = ("end", "error")
RAW_KEEP = 64_000  # raw text kept for framing checks and evidence


def iter_events(
    response: httpx.Response, *, gap_s: float, total_s: float, read: StreamRead
) -> Iterator[SseEvent]:
    """Yield events from an open streaming response, bounded in time.

    `gap_s` bounds the silence between chunks (the client's read timeout does that) and
    `total_s` the whole stream: a target that trickles keep-alives forever costs at most
    `total_s` plus one gap. On either bound, `read.timed_out` says which, and iteration stops.
    """
    decoder = SseDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
    ends_at = time.monotonic() + total_s
    try:
        for chunk in response.iter_bytes():
            text = utf8.decode(chunk)
            if len(read.raw) < RAW_KEEP:
                read.raw += text[: RAW_KEEP - len(read.raw)]
            for event in decoder.feed(text):
                read.events.append(event)
                yield event
            if time.monotonic() > ends_at:
                read.timed_out = f"the stream did not end within {total_s:g} s"
                return
        decoder.close()
        read.ended = True
    except httpx.ReadTimeout:
        read.timed_out = f"the stream sent nothing for {gap_s:g} s"


def read_stream(
    http: httpx.Client,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    gap_s: float,
    total_s: float,
    stop: Callable[[list[SseEvent]], bool] | None = None,
    on_event: Callable[[SseEvent], None] | None = None,
) -> StreamRead:
    """GET an SSE stream and read it until it ends, `stop(events)` holds, or a bound is hit.

    A silent stream is bounded by the shorter of the two bounds: a read of at most `total_s`
    seconds must not wait `gap_s` for a first chunk that never comes.
    """
    silence = min(gap_s, total_s)
    timeout = httpx.Timeout(silence, connect=min(gap_s, 5.0))
    with http.stream("GET", url, headers=headers or {}, timeout=timeout) as response:
        read = StreamRead(response.status_code, response.headers)
        if response.status_code != 200:
            response.read()
            read.body = response.text
            read.ended = True
            return read
        for event in iter_events(response, gap_s=silence, total_s=total_s, read=read):
            if on_event is not None:
                on_event(event)
            if event.event in TERMINAL or (stop is not None and stop(read.events)):
                break
        return read
