"""LlamaCppAdapter against the llama.cpp simulator (and canned wire variants of real builds).

Contract: token ids and text of the native stream become TokenEvents, the final event becomes
StreamEnd, the sampler profile reaches the engine under llama.cpp's field names identically on
every replica, directive failures map to the typed adapter errors, cancel frees the slot, and
health, props, metrics and identity come from `/health`, `/props`, `/slots` and `/metrics`.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import httpx
import pytest

from llama_orch.engine_sim.engine import SimEngine
from llama_orch.engine_sim.tokens import iter_tokens, variant_key
from llama_orch.reference_impl.adapters import (
    FINISH_CANCELED,
    FINISH_LENGTH,
    FINISH_STOP,
    AdapterError,
    CompletionRequest,
    EngineAdapter,
    SamplerParams,
    TokenEvent,
    TokenStream,
)
from llama_orch.reference_impl.adapters.llamacpp import LlamaCppAdapter, llama_seed
from tests._server import free_port
from tests.test_sim_llamacpp import SimServer, sim_server

T = TypeVar("T")
SAMPLER = SamplerParams(temperature=0.7, top_k=20, top_p=0.9, min_p=0.02, repeat_penalty=1.1)
# The adapter's chain names "penalties", so the profile's repeat_penalty takes effect and the
# simulator answers with the penalized token variant of the prompt.
PENALIZED = "penalties=1.1/0.0/0.0"


def expected(prompt: str, seed: int, count: int) -> list[tuple[int, str]]:
    """The simulator's tokens for SAMPLER's requests (penalty active)."""
    return list(iter_tokens(variant_key(prompt, PENALIZED), seed, count))


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def req(prompt: str, max_tokens: int = 8, seed: int = 11, rid: str = "t1") -> CompletionRequest:
    return CompletionRequest(rid, prompt, max_tokens, seed, SAMPLER, "prof-v3")


def adapter(url: str, **kw: Any) -> LlamaCppAdapter:
    kw.setdefault("model_ref", "hf:org/model@rev")
    return LlamaCppAdapter("r0", url, ctx_max=2048, **kw)


async def until(check: Callable[[], bool], timeout_s: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


async def collect(stream: TokenStream) -> list[TokenEvent]:
    return [ev async for ev in stream]


async def failure(stream: TokenStream, sink: list[TokenEvent]) -> AdapterError:
    with pytest.raises(AdapterError) as info:
        async for ev in stream:
            sink.append(ev)
    return info.value


@pytest.fixture(scope="module")
def server() -> Iterator[SimServer]:
    with sim_server() as sim:
        yield sim


@pytest.fixture
def sim(server: SimServer) -> tuple[str, SimEngine]:
    return server.url, server.fresh("llamacpp", engine_version="b4242-abc1234", slots=2, ctx=3000)


@pytest.mark.req("OC-ADAPT-5001", "ORCH-3054")
def test_stream_yields_ids_text_and_end(sim: tuple[str, SimEngine]) -> None:
    url, _ = sim

    async def go() -> tuple[list[TokenEvent], Any]:
        a = adapter(url)
        assert isinstance(a, EngineAdapter)
        stream = a.stream(req("hello there", max_tokens=5, seed=7))
        events = await collect(stream)
        await a.close()
        return events, stream.end

    events, end = run(go())
    assert [(e.index, e.token_id, e.text) for e in events] == [
        (i, tid, text) for i, (tid, text) in enumerate(expected("hello there", 7, 5))
    ]
    assert end.tokens_out == 5 and end.finish_reason == FINISH_LENGTH and end.decode_ms >= 0


@pytest.mark.req("ORCH-3058", "OC-ADAPT-5010", "OC-HARNESS-8406")
def test_profile_fields_reach_the_engine_unchanged(sim: tuple[str, SimEngine]) -> None:
    url, engine = sim
    prompt = "[[sim tokens=2]] keep  me\nas is"

    async def go(**kw: Any) -> Any:
        a = adapter(url, **kw)
        stream = a.stream(req(prompt, max_tokens=6, seed=2**40 + 5))
        events = await collect(stream)
        await a.close()
        return events, stream.end

    events, end = run(go())
    sent = engine.last_request
    assert sent["prompt"] == prompt  # the directive is plain text to the adapter
    assert sent["n_predict"] == 6 and sent["seed"] == 5  # uint32 seed, as llama.cpp reads it
    assert (sent["temperature"], sent["top_k"], sent["top_p"], sent["min_p"]) == (
        0.7,
        20,
        0.9,
        0.02,
    )
    assert sent["repeat_penalty"] == 1.1 and sent["samplers"] == [
        "penalties",
        "top_k",
        "top_p",
        "min_p",
        "temperature",
    ]
    assert sent["stream"] is True and sent["return_tokens"] is True and sent["id_slot"] == -1
    assert sent["cache_prompt"] is True
    assert len(events) == 2 and end.finish_reason == FINISH_STOP
    run(go(cache_prompt=False))
    assert engine.last_request["cache_prompt"] is False


@pytest.mark.req("ORCH-3058", "OC-ADAPT-5010")
def test_replicas_get_identical_bodies_and_tokens(server: SimServer) -> None:
    a_engine = server.fresh("llamacpp")
    task = req("same prompt", max_tokens=6, seed=123456789012)

    async def one() -> list[int | None]:
        a = adapter(server.url)
        ids = [e.token_id for e in await collect(a.stream(task))]
        await a.close()
        return ids

    first_ids, first_body = run(one()), a_engine.last_request
    b_engine = server.fresh("llamacpp")
    assert run(one()) == first_ids and b_engine.last_request == first_body
    assert LlamaCppAdapter("x", "http://h", model_ref="m", ctx_max=1).completion_body(
        task
    ) == adapter("http://other").completion_body(task)


def test_seed_mapping_stays_off_the_random_marker() -> None:
    assert llama_seed(7) == 7 and llama_seed(2**32 + 7) == 7
    assert llama_seed(0xFFFFFFFF) == 0xFFFFFFFE and llama_seed(2**63 - 1) == 0xFFFFFFFE


@pytest.mark.req("OC-ADAPT-5001", "OC-HARNESS-8404")
def test_directive_outcomes_map_to_typed_errors(sim: tuple[str, SimEngine]) -> None:
    url, _ = sim

    async def go(prompt: str) -> tuple[AdapterError, list[TokenEvent]]:
        a = adapter(url)
        got: list[TokenEvent] = []
        error = await failure(a.stream(req(prompt)), got)
        await a.close()
        return error, got

    error, got = run(go("[[sim tokens=6 fail_after=3]] f"))
    assert error.code == "WORKER_RESET" and error.retriable and len(got) == 3
    assert [e.token_id for e in got] == [tid for tid, _ in expected("f", 11, 3)]
    assert run(go("[[sim overload=true]] o"))[0].code == "REPLICA_EXHAUSTED"
    invalid, none = run(go("[[sim speed=3]] i"))
    assert invalid.code == "INVALID_PARAMS" and "speed" in invalid.message and none == []


@pytest.mark.req("OC-ADAPT-5001", "OC-HARNESS-8404")
def test_cancel_from_another_task_ends_stream_and_frees_slot(sim: tuple[str, SimEngine]) -> None:
    url, engine = sim

    async def go() -> tuple[list[TokenEvent], Any, bool, bool]:
        a = adapter(url)
        stream = a.stream(req("[[sim tokens=1000 itl_ms=10]] c", max_tokens=1000))
        got: list[TokenEvent] = []

        async def consume() -> None:
            async for ev in stream:
                got.append(ev)

        task = asyncio.create_task(consume())
        while len(got) < 3:
            await asyncio.sleep(0.005)
        started = time.monotonic()
        canceled = await a.cancel("t1")
        assert time.monotonic() - started < 1.0
        freed = engine.stats.running == 0  # cancel() returns once /slots shows the slot idle
        await asyncio.wait_for(task, 1.0)
        again = await a.cancel("t1")
        await a.close()
        return got, stream.end, canceled and freed, again

    got, end, canceled, again = run(go())
    assert canceled and not again
    assert end is not None and end.finish_reason == FINISH_CANCELED and end.tokens_out == len(got)
    assert engine.stats.running == 0 and engine.stats.generated_tokens < len(got) + 5


@pytest.mark.req("OC-ADAPT-5001")
def test_cancel_while_waiting_for_the_first_token(sim: tuple[str, SimEngine]) -> None:
    url, _ = sim

    async def go() -> tuple[Any, bool, float]:
        a = adapter(url)
        stream = a.stream(req("[[sim ttft_ms=600]] slow", rid="w1"))
        task = asyncio.create_task(collect(stream))
        await asyncio.sleep(0.1)  # the engine holds the headers until its first token
        started = time.monotonic()
        canceled = await a.cancel("w1")
        events = await asyncio.wait_for(task, 1.0)
        elapsed = time.monotonic() - started
        await a.close()
        assert events == []
        return stream.end, canceled, elapsed

    end, canceled, elapsed = run(go())
    assert canceled and end is not None and end.finish_reason == FINISH_CANCELED
    assert end.tokens_out == 0 and elapsed < 0.3


@pytest.mark.req("OC-ADAPT-5001", "OC-HARNESS-8404")
@pytest.mark.parametrize("cross_task", [False, True])
def test_aclose_stops_the_engine(sim: tuple[str, SimEngine], cross_task: bool) -> None:
    url, engine = sim

    async def go() -> bool:
        a = adapter(url)
        stream = a.stream(req("[[sim tokens=1000 itl_ms=10]] d", max_tokens=1000))
        await stream.__anext__()
        if cross_task:
            pending = asyncio.ensure_future(stream.__anext__())
            await asyncio.sleep(0)
            await stream.aclose()  # a read is pending: closes the upstream response instead
            await asyncio.wait([pending], timeout=1.0)
        else:
            await stream.aclose()
        stopped = await until(lambda: engine.stats.running == 0)  # before close() cleans up
        await a.close()
        return stopped

    assert run(go())
    assert engine.stats.generated_tokens < 20


@pytest.mark.req("OC-ADAPT-5001")
def test_unreachable_engine() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    async def go() -> tuple[AdapterError, Any, AdapterError]:
        a = adapter(url, preload_timeout_s=0.2)
        error = await failure(a.stream(req("x")), [])
        health = await a.health()
        with pytest.raises(AdapterError) as preload:
            await a.preload()
        await a.close()
        return error, health, preload.value

    error, health, preload = run(go())
    assert error.code == "POOL_UNAVAILABLE" and error.retriable
    assert not health.live and not health.ready
    assert preload.code == "POOL_UNAVAILABLE"


@pytest.mark.req("OC-ADAPT-5001", "OC-ADAPT-5011", "ORCH-3054")
def test_health_props_metrics_identity(sim: tuple[str, SimEngine]) -> None:
    url, engine = sim

    async def go() -> tuple[Any, ...]:
        a = adapter(url, model_ref="sha256:" + "ab" * 32)
        health = await a.health()
        await a.preload()
        idle = await a.props()
        stream = a.stream(req("[[sim tokens=1 hold_ms=400]] busy"))
        await stream.__anext__()
        busy, load, count = await a.props(), await a.metrics(), await a.tokenize("a b c")
        await stream.aclose()
        await a.close()
        return health, idle, busy, load, count

    health, idle, busy, load, count = run(go())
    assert health.live and health.ready
    assert engine.stats.requests == 2  # preload decoded one token
    assert (idle.slots_total, idle.slots_free, idle.ctx_max) == (2, 2, 3000)
    assert idle.engine_version == "b4242-abc1234" and idle.model_digest == "sha256:" + "ab" * 32
    assert "token_ids" in idle.capabilities
    assert busy.slots_free == 1 and load.running == 1 and load.waiting == 0
    assert load.kv_pressure == 0.5 and count == 3


# -- variants of real builds, served from canned bytes ---------------------------------------


def canned(routes: dict[str, Callable[[httpx.Request], httpx.Response]]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        route = routes.get(request.url.path)
        return route(request) if route else httpx.Response(404, json={"error": {"code": 404}})

    return httpx.MockTransport(handle)


def sse(*blocks: str) -> Callable[[httpx.Request], httpx.Response]:
    body = "".join(b + "\n\n" for b in blocks).encode()
    return lambda _: httpx.Response(
        200, content=body, headers={"content-type": "text/event-stream"}
    )


def stream_through(transport: httpx.MockTransport, **kw: Any) -> tuple[list[TokenEvent], Any]:
    async def go() -> tuple[list[TokenEvent], Any]:
        a = adapter("http://llama", transport=transport, **kw)
        stream = a.stream(req("p"))
        try:
            return await collect(stream), stream.end
        finally:
            await a.close()

    return run(go())


def test_newer_build_error_data_event_and_pings() -> None:
    t = canned(
        {
            "/completion": sse(
                ": ping",
                'data: {"content":" a","tokens":[5],"stop":false}',
                'data: {"error":{"code":500,"message":"boom","type":"server_error"}}',
            )
        }
    )
    with pytest.raises(AdapterError) as info:
        stream_through(t)
    assert info.value.code == "WORKER_RESET" and "boom" in info.value.message


def test_older_build_without_tokens_or_stop_type() -> None:
    final = '{"content":"","stop":true,"stopped_limit":true,"tokens_predicted":2}'
    t = canned(
        {
            "/completion": sse(
                'data: {"content":" a","stop":false,"id_slot":0}',
                'data: {"content":"","stop":false}',
                'data: {"content":" b","stop":false}',
                f"data: {final}",
            )
        }
    )
    events, end = stream_through(t)
    assert [(e.index, e.text, e.token_id) for e in events] == [(0, " a", None), (1, " b", None)]
    assert end.finish_reason == FINISH_LENGTH and end.tokens_out == 2


def test_error_line_before_any_token_keeps_its_status_meaning() -> None:
    line = 'error: {"code":400,"message":"the request exceeds the available context size"}'
    with pytest.raises(AdapterError) as info:
        stream_through(canned({"/completion": sse(line)}))
    assert info.value.code == "INVALID_PARAMS"
    with pytest.raises(AdapterError) as cut:
        stream_through(canned({"/completion": sse('data: {"content":" a","stop":false}')}))
    assert cut.value.code == "WORKER_RESET"  # no final event: truncated


@pytest.mark.req("OC-ADAPT-5011")
def test_fallbacks_without_build_info_slots_or_metrics() -> None:
    t = canned(
        {
            "/props": lambda _: httpx.Response(200, json={"total_slots": 3}),
            "/health": lambda _: httpx.Response(
                503, json={"error": {"code": 503, "message": "Loading model"}}
            ),
        }
    )

    async def go(**kw: Any) -> tuple[Any, ...]:
        a = adapter("http://llama", transport=t, **kw)
        out = await a.health(), await a.props(), await a.metrics()
        await a.close()
        return out

    health, props, load = run(go(engine_version="b99-launch"))
    assert health.live and not health.ready and "Loading model" in (health.detail or "")
    assert props.engine_version == "b99-launch" and props.slots_free == 3
    assert props.ctx_max == 2048  # configured ctx_max when /props has no n_ctx
    assert props.model_digest == "sha256:" + hashlib.sha256(b"hf:org/model@rev").hexdigest()
    assert (load.running, load.waiting) == (0, 0)
    assert run(go())[1].engine_version == "unknown"


@pytest.mark.req("ORCH-3058", "OC-ADAPT-5010")
def test_repeat_penalty_is_sent_with_penalties_in_the_chain(sim: tuple[str, SimEngine]) -> None:
    """llama.cpp applies `repeat_penalty` only when "penalties" is in `samplers`
    (ggml-org/llama.cpp common/sampling.cpp @00efb3e1); the adapter's chain names it, so a
    profile's penalty changes the tokens, and a profile without one sends the neutral 1.0
    explicitly (so no build default leaks in) and gets the unpenalized tokens.
    tests/test_real_engine_penalties.py checks the same on the real llama-server."""
    url, engine = sim
    plain_profile = SamplerParams(temperature=0.7, top_k=20, top_p=0.9, min_p=0.02)

    async def go(sampler: SamplerParams) -> list[int | None]:
        a = adapter(url)
        try:
            r = CompletionRequest("pen", "p q", 4, 9, sampler, "v")
            return [e.token_id for e in await collect(a.stream(r))]
        finally:
            await a.close()

    penalized = run(go(SAMPLER))
    assert engine.last_request["samplers"][0] == "penalties"
    assert engine.last_request["repeat_penalty"] == 1.1
    plain = run(go(plain_profile))
    assert engine.last_request["repeat_penalty"] == 1.0
    assert "penalties" in engine.last_request["samplers"]
    assert plain == [tid for tid, _ in iter_tokens("p q", 9, 4)]
    assert penalized == [tid for tid, _ in expected("p q", 9, 4)] != plain
