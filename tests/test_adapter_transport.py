"""The engine adapters' network path (issue 16): aiohttp under the httpx surface.

Streams read to their end give their connection back for the next request, except on
llama.cpp, whose server closes the connection after every stream (so the adapter asks for
`Connection: close` rather than race the server's close); a cancelled one closes it (that is
how the engine learns the request was abandoned); transport failures keep the typed errors the
adapters had with httpcore; the SSE splitter yields the same fields however the bytes are cut
into network chunks. Everything here runs over real loopback sockets, since the default
transport is only used when no test transport is injected.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llama_orch.engine_sim.engine import SimConfig
from llama_orch.engine_sim.server import build_servers
from llama_orch.reference_impl.adapters.base import (
    AdapterError,
    CompletionRequest,
    SamplerParams,
)
from llama_orch.reference_impl.adapters.http_common import sse_data
from llama_orch.reference_impl.adapters.llamacpp import LlamaCppAdapter
from llama_orch.reference_impl.adapters.tgi import TgiAdapter
from llama_orch.reference_impl.adapters.triton import TritonAdapter
from llama_orch.reference_impl.adapters.vllm import VllmAdapter
from tests._server import serve_asgi

SAMPLER = SamplerParams(temperature=0.7, top_k=40, top_p=0.95, min_p=0.05)
# The streaming-and-cancel requirement of each adapter (specs/40 to 43).
STREAMING = {
    "llamacpp": "OC-ADAPT-5001",
    "vllm": "OC-ADAPT-5020",
    "tgi": "OC-ADAPT-5040",
    "triton": "OC-ADAPT-5060",
}


def per_protocol(*protocols: str) -> list[Any]:
    return [pytest.param(p, marks=pytest.mark.req(STREAMING[p])) for p in protocols]


STREAM_PATHS = ("/completion", "/v1/completions", "/generate_stream")


def request(n: int, prompt: str = "[[sim tokens=4]] hi") -> CompletionRequest:
    return CompletionRequest(f"r{n}", prompt, 8, 7, SAMPLER, "v1")


class _Connections:
    """ASGI wrapper around a simulator that records the client port of each stream request."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.ports: list[int] = []
        self.connection: list[bytes | None] = []  # each stream request's Connection header

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].endswith(STREAM_PATHS):
            self.ports.append(scope["client"][1])
            self.connection.append(dict(scope["headers"]).get(b"connection"))
        await self.app(scope, receive, send)


@contextlib.contextmanager
def recorded_sim(protocol: str) -> Iterator[tuple[str, str | None, _Connections, Any]]:
    model = "tiny" if protocol == "triton" else "sim/tiny-llama"
    servers = build_servers(SimConfig(protocol, model=model, slots=4))
    recorder = _Connections(servers.app)
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(serve_asgi(recorder, what=f"{protocol} simulator"))
        metrics = None
        if servers.metrics_app is not None:
            metrics = (
                stack.enter_context(serve_asgi(servers.metrics_app, what="metrics")) + "/metrics"
            )
        yield url, metrics, recorder, servers.engine


def make(protocol: str, url: str, metrics: str | None, **kw: Any) -> Any:
    common: dict[str, Any] = {"model_ref": "repo:sim/tiny", "ctx_max": 4096, **kw}
    if protocol == "vllm":
        return VllmAdapter("r0", url, served_model_name="sim/tiny-llama", **common)
    if protocol == "llamacpp":
        return LlamaCppAdapter("r0", url, **common)
    if protocol == "tgi":
        return TgiAdapter("r0", url, **common)
    return TritonAdapter("r0", url, model_name="tiny", metrics_url=metrics, **common)


async def collect(adapter: Any, req: CompletionRequest) -> list[str]:
    async with adapter.stream(req) as stream:
        return [event.text async for event in stream]


@pytest.mark.parametrize("protocol", per_protocol("vllm", "tgi", "triton"))
def test_streams_read_to_the_end_reuse_one_connection(protocol: str) -> None:
    with recorded_sim(protocol) as (url, metrics, recorder, _engine):

        async def go() -> list[list[str]]:
            adapter = make(protocol, url, metrics)
            try:
                return [await collect(adapter, request(n)) for n in range(6)]
            finally:
                await adapter.close()

        outputs = asyncio.run(go())
    assert all(len(tokens) == 4 for tokens in outputs), outputs
    assert len(recorder.ports) == 6
    # One keep-alive connection served all six (before issue 16: a new one per stream).
    assert len(set(recorder.ports)) == 1, recorder.ports
    assert recorder.connection == [None] * 6


@pytest.mark.req("OC-ADAPT-5001")
def test_llamacpp_streams_ask_for_connection_close() -> None:
    """llama-server closes the connection after each stream (tests/test_real_engine_transport.py
    shows it on the real engine): each stream asks for `Connection: close`, so it is never
    pooled, and the control call right after it gets a fresh connection."""
    with recorded_sim("llamacpp") as (url, metrics, recorder, _engine):

        async def go() -> tuple[list[list[str]], list[int]]:
            adapter = make("llamacpp", url, metrics)
            try:
                outputs, health = [], []
                for n in range(4):
                    outputs.append(await collect(adapter, request(n)))
                    health.append((await adapter.client.get("/health")).status_code)
                return outputs, health
            finally:
                await adapter.close()

        outputs, health = asyncio.run(go())
    assert all(len(tokens) == 4 for tokens in outputs), outputs
    assert health == [200] * 4
    assert recorder.connection == [b"close"] * 4
    assert len(set(recorder.ports)) == 4, recorder.ports


@pytest.mark.parametrize("protocol", per_protocol("vllm", "llamacpp"))
def test_cancel_closes_the_connection_and_frees_the_slot(protocol: str) -> None:
    with recorded_sim(protocol) as (url, metrics, recorder, engine):

        async def go() -> tuple[list[str], list[str], int]:
            adapter = make(protocol, url, metrics)
            try:
                req = request(0, "[[sim tokens=60 itl_ms=20]] slow")
                got = []
                async with adapter.stream(req) as stream:
                    async for event in stream:
                        got.append(event.text)
                        if len(got) == 2:
                            assert await adapter.cancel(req.request_id)
                for _ in range(100):  # the engine notices the closed connection
                    if engine.stats.running == 0:
                        break
                    await asyncio.sleep(0.02)
                running = engine.stats.running
                after = await collect(adapter, request(1))
                return got, after, running
            finally:
                await adapter.close()

        got, after, running = asyncio.run(go())
    assert len(got) == 2 and running == 0
    assert len(after) == 4
    assert len(set(recorder.ports)) == 2  # the cancelled stream's connection was not reused


# -- failures on the aiohttp path keep their types ---------------------------------------------


@contextlib.contextmanager
def raw_engine(script: Any) -> Iterator[str]:
    """A TCP server whose connection handler is `script(reader, writer)`, in its own thread."""
    import socket
    import threading

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop: asyncio.Future[None] = loop.create_future()

    async def serve() -> None:
        server = await asyncio.start_server(script, sock=sock)
        ready.set()
        async with server:
            await stop
        handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)

    thread = threading.Thread(target=lambda: loop.run_until_complete(serve()), daemon=True)
    thread.start()
    ready.wait(5)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(stop.set_result, None)
        thread.join(5)
        loop.close()


HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
CHUNK = b'data: {"choices":[{"text":" a","token_ids":[5]}]}\n\n'


async def _read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    await reader.readexactly(length)


def _stream_error(url: str, **kw: Any) -> tuple[list[str], AdapterError]:
    async def go() -> tuple[list[str], AdapterError]:
        adapter = VllmAdapter("r0", url, model_ref="m", ctx_max=64, served_model_name="m", **kw)
        got: list[str] = []
        try:
            with pytest.raises(AdapterError) as info:
                async with adapter.stream(request(0)) as stream:
                    async for event in stream:
                        got.append(event.text)
            return got, info.value
        finally:
            await adapter.close()

    return asyncio.run(go())


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@pytest.mark.req("OC-ADAPT-5020")
def test_refused_connection_is_pool_unavailable() -> None:
    from tests._server import free_port

    got, error = _stream_error(f"http://127.0.0.1:{free_port()}", connect_timeout_s=1.0)
    assert got == [] and error.code == "POOL_UNAVAILABLE"


@pytest.mark.req("OC-ADAPT-5020")
def test_silence_mid_stream_is_decode_timeout() -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(HEAD + _chunk(CHUNK))
        await writer.drain()
        await asyncio.sleep(5)

    with raw_engine(stall) as url:
        got, error = _stream_error(url, idle_timeout_s=0.3)
    assert got == [" a"] and error.code == "DECODE_TIMEOUT"


@pytest.mark.req("OC-ADAPT-5020")
def test_connection_dropped_mid_stream_is_worker_reset() -> None:
    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(HEAD + _chunk(CHUNK) + b'40\r\ndata: {"cho')
        await writer.drain()
        writer.close()

    with raw_engine(drop) as url:
        got, error = _stream_error(url)
    assert got == [" a"] and error.code == "WORKER_RESET"


@pytest.mark.req("OC-ADAPT-5020")
def test_engine_that_keeps_the_body_open_after_done_still_ends_the_stream() -> None:
    async def linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(HEAD + _chunk(CHUNK + b"data: [DONE]\n\n"))
        await writer.drain()
        await asyncio.sleep(5)  # never ends the chunked body

    async def go(url: str) -> tuple[list[str], Any, float]:
        adapter = VllmAdapter("r0", url, model_ref="m", ctx_max=64, served_model_name="m")
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            stream = adapter.stream(request(0))
            got = [event.text async for event in stream]
            return got, stream.end, loop.time() - started
        finally:
            await adapter.close()

    with raw_engine(linger) as url:
        got, end, took = asyncio.run(go(url))
    assert got == [" a"] and end is not None and end.finish_reason == "stop"
    assert took < 3.0  # bounded by the drain timeout, not the idle timeout (60 s)


# -- SSE splitting -----------------------------------------------------------------------------


class _Chunks(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


def _fields_of(chunks: list[bytes]) -> list[tuple[str, str]]:
    async def go() -> list[tuple[str, str]]:
        response = httpx.Response(200, stream=_Chunks(chunks))
        return [item async for item in sse_data(response)]

    return asyncio.run(go())


_VALUES = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=12
)
_LINES = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["data", "error"]), _VALUES),
        st.tuples(st.just(":"), _VALUES),  # comment
        st.tuples(st.just("event"), _VALUES),  # a field the adapters do not read
        st.tuples(st.just(""), st.just("")),  # blank line
    ),
    max_size=12,
)


@pytest.mark.req(*STREAMING.values())
@settings(max_examples=120, deadline=None)
@given(
    lines=_LINES,
    ending=st.sampled_from(["\n", "\r\n", "\r"]),
    spaced=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
)
def test_sse_fields_do_not_depend_on_chunk_boundaries(
    lines: list[tuple[str, str]], ending: str, spaced: bool, cuts: list[int]
) -> None:
    text = ""
    expected = []
    for name, value in lines:
        if name == ":":
            text += f":{value}{ending}"
        elif name == "":
            text += ending
        else:
            text += f"{name}:{' ' if spaced else ''}{value}{ending}"
            if name in ("data", "error"):
                expected.append((name, value))
    body = text.encode()
    points = sorted({min(c, len(body)) for c in cuts})
    chunks = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    assert _fields_of([c for c in chunks if c]) == expected


@pytest.mark.req(*STREAMING.values())
def test_sse_value_keeps_one_leading_space_and_multibyte_text() -> None:
    body = "data:  two spaces\r\ndata: é€😀\r\n\r\n: ping\n".encode()
    cut = body.index("€".encode()) + 1  # inside a multibyte character
    assert _fields_of([body[:cut], body[cut:]]) == [("data", " two spaces"), ("data", "é€😀")]
