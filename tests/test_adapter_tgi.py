"""TgiAdapter against the TGI engine simulator on a loopback port: the adapter contract.

The simulator runs under uvicorn in a background thread (real streaming, real disconnects);
the in-band error form of real TGI routers is exercised through httpx.ASGITransport.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import httpx
import pytest

from llama_orch.engine_sim.engine import SimConfig, SimEngine
from llama_orch.engine_sim.tgi import create_app
from llama_orch.engine_sim.tokens import iter_tokens
from llama_orch.reference_impl.adapters import (
    FINISH_CANCELED,
    FINISH_LENGTH,
    FINISH_STOP,
    AdapterError,
    CompletionRequest,
    EngineAdapter,
    SamplerParams,
    StreamEnd,
    TokenEvent,
    TokenStream,
)
from llama_orch.reference_impl.adapters.tgi import TgiAdapter, tgi_parameters
from tests._server import free_port, serve_asgi

T = TypeVar("T")
V1 = SamplerParams(temperature=0.7, top_k=40, top_p=0.95, min_p=0.05)
GREEDY = SamplerParams(temperature=0.0, top_k=1, top_p=1.0, min_p=0.0)
CFG = SimConfig("tgi", model="bigscience/bloom-560m", engine_version="2.4.1", slots=2, ctx=2048)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def sim() -> Iterator[tuple[str, SimEngine]]:
    engine = SimEngine(CFG)
    with serve_asgi(create_app(engine), what="simulator") as url:
        yield url, engine


def adapter(url: str, **kw: Any) -> TgiAdapter:
    return TgiAdapter("tgi-r0", url, model_ref="hf:bigscience/bloom-560m", ctx_max=1024, **kw)


def req(prompt: str, max_tokens: int = 8, *, sampler: SamplerParams = V1, rid: str = "t1"):
    return CompletionRequest(rid, prompt, max_tokens, 11, sampler, "v1")


async def collect(stream: TokenStream) -> list[TokenEvent]:
    return [ev async for ev in stream]


async def wait_for(cond: Callable[[], bool], timeout: float = 2.0) -> float:
    """Seconds until `cond()` held; fails the test past `timeout`."""
    start = time.monotonic()
    while not cond():
        assert time.monotonic() - start < timeout, "condition not reached in time"
        await asyncio.sleep(0.005)
    return time.monotonic() - start


@pytest.mark.req("OC-ADAPT-5040", "ORCH-3056")
def test_stream_delivers_token_ids_and_the_final_record(sim) -> None:
    url, _ = sim

    async def scenario() -> tuple[list[TokenEvent], StreamEnd | None, list[TokenEvent], Any]:
        a = adapter(url)
        assert isinstance(a, EngineAdapter)
        try:
            s1 = a.stream(req("[[sim tokens=5]] hello", 8))
            evs1 = await collect(s1)
            s2 = a.stream(req("hello", 3, rid="t2"))
            evs2 = await collect(s2)
            return evs1, s1.end, evs2, s2.end
        finally:
            await a.close()

    evs1, end1, evs2, end2 = run(scenario())
    expected = list(iter_tokens("hello", 11, 5))
    assert [(e.index, e.token_id, e.text) for e in evs1] == [
        (i, tid, text) for i, (tid, text) in enumerate(expected)
    ]
    # the special end-of-sequence token produced no event and ended the stream on its own
    assert end1 is not None and (end1.tokens_out, end1.finish_reason) == (5, FINISH_STOP)
    assert [e.token_id for e in evs2] == [tid for tid, _ in expected[:3]]
    assert end2 is not None and (end2.tokens_out, end2.finish_reason) == (3, FINISH_LENGTH)


@pytest.mark.req("ORCH-3058", "ORCH-3056")
def test_sampler_profile_maps_to_tgi_fields_identically(sim) -> None:
    url, engine = sim
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    logger = logging.getLogger("llama_orch.reference_impl.adapters")
    logger.addHandler(handler)

    async def one(a: TgiAdapter, r: CompletionRequest) -> dict[str, Any]:
        await collect(a.stream(r))
        return engine.last_request  # type: ignore[attr-defined,no-any-return]

    async def scenario() -> list[dict[str, Any]]:
        a, b = adapter(url), adapter(url)
        try:
            return [
                await one(a, req("p", 2)),
                await one(b, req("p", 2)),
                await one(a, req("p", 2, rid="t3")),
                await one(a, req("p", 2, sampler=GREEDY, rid="t4")),
            ]
        finally:
            await a.close()
            await b.close()

    try:
        first, other_replica, again, greedy = run(scenario())
    finally:
        logger.removeHandler(handler)
    assert first == other_replica == again
    assert first == {
        "inputs": "p",
        "parameters": {
            "max_new_tokens": 2,
            "seed": 11,
            "details": True,
            "do_sample": True,
            "temperature": 0.7,
            "top_k": 40,
            "top_p": 0.95,
        },
    }
    assert greedy["parameters"] == {
        "max_new_tokens": 2,
        "seed": 11,
        "details": True,
        "do_sample": False,
    }
    warnings = [r for r in seen if "min_p" in r.getMessage()]
    assert len(warnings) == 2  # once per adapter, not once per request
    pure = tgi_parameters(req("p", 2, sampler=SamplerParams(1.0, 0, 1.0, 0.0, 1.1)))
    assert pure == {
        "max_new_tokens": 2,
        "seed": 11,
        "details": True,
        "do_sample": True,
        "temperature": 1.0,
        "repetition_penalty": 1.1,
    }


@pytest.mark.req("OC-HARNESS-8403", "OC-HARNESS-8404")
def test_directives_through_the_adapter(sim) -> None:
    url, _ = sim

    async def outcome(a: TgiAdapter, prompt: str) -> tuple[list[TokenEvent], str | None]:
        evs: list[TokenEvent] = []
        try:
            async for ev in a.stream(req(prompt, 8)):
                evs.append(ev)
        except AdapterError as exc:
            return evs, exc.code
        return evs, None

    async def scenario() -> list[tuple[list[TokenEvent], str | None]]:
        a = adapter(url)
        try:
            return [
                await outcome(a, "[[sim fail_after=3]] f"),
                await outcome(a, "[[sim overload=true]] o"),
                await outcome(a, "[[sim bogus=1]] b"),
            ]
        finally:
            await a.close()

    (failed, code1), (over, code2), (bad, code3) = run(scenario())
    assert code1 == "WORKER_RESET"
    assert [e.token_id for e in failed] == [tid for tid, _ in iter_tokens("f", 11, 3)]
    assert (over, code2) == ([], "REPLICA_EXHAUSTED")
    assert (bad, code3) == ([], "INVALID_PARAMS")


@pytest.mark.req("OC-HARNESS-8403")
@pytest.mark.parametrize("inband", [True, False], ids=["in-band", "status"])
def test_stream_refusals_map_by_error_type_in_both_forms(inband: bool) -> None:
    """TGI reports refusals of `/generate_stream` in-band (HTTP 200, one event `{"error",
    "error_type"}`; overload past `max_concurrent_requests` included), while `/generate` uses
    a status (429 overloaded, 422 validation): huggingface/text-generation-inference
    router/src/server.rs @003eaec0 (`generate_stream_internal` yields `Err(err)`, `impl
    From<InferError> for Event`). The adapter gives both forms the same typed errors."""

    async def code(prompt: str) -> str:
        app = create_app(SimEngine(CFG), inband_errors=inband)
        a = adapter("http://sim", transport=httpx.ASGITransport(app=app))
        try:
            await collect(a.stream(req(prompt)))
        except AdapterError as exc:
            return exc.code
        finally:
            await a.close()
        return "none"

    assert run(code("[[sim overload=true]] x")) == "REPLICA_EXHAUSTED"
    assert run(code("[[sim tokens=-1]] x")) == "INVALID_PARAMS"
    assert run(code("[[sim fail_after=2]] x")) == "WORKER_RESET"


@pytest.mark.req("OC-HARNESS-8404")
def test_aclose_and_cancel_stop_the_engine_promptly(sim) -> None:
    url, engine = sim

    async def scenario() -> tuple[float, float, StreamEnd | None, bool]:
        a = adapter(url)
        try:
            s = a.stream(req("[[sim tokens=500 itl_ms=20]] c", 500))
            assert (await s.__anext__()).index == 0
            await s.aclose()
            t_aclose = await wait_for(lambda: engine.stats.running == 0)

            s2 = a.stream(req("[[sim tokens=500 itl_ms=20]] c", 500, rid="t9"))

            async def consume() -> list[TokenEvent]:
                return await collect(s2)

            task = asyncio.create_task(consume())
            await wait_for(lambda: engine.stats.running == 1)
            await asyncio.sleep(0.05)
            assert await a.cancel("t9") is True
            got = await asyncio.wait_for(task, 2)
            t_cancel = await wait_for(lambda: engine.stats.running == 0)
            return t_aclose, t_cancel, s2.end, len(got) < 500 and await a.cancel("t9") is False
        finally:
            await a.close()

    t_aclose, t_cancel, end, stopped = run(scenario())
    assert t_aclose < 1.0 and t_cancel < 1.0
    assert end is not None and end.finish_reason == FINISH_CANCELED
    assert stopped


def test_close_resets_running_streams_and_refuses_new_ones(sim) -> None:
    url, engine = sim

    async def scenario() -> tuple[str, str]:
        a = adapter(url)
        s = a.stream(req("[[sim tokens=500 itl_ms=20]] z", 500, rid="z"))
        await s.__anext__()
        await a.close()
        codes = []
        for stream in (s, a.stream(req("after", rid="z2"))):
            try:
                await collect(stream)
            except AdapterError as exc:
                codes.append(exc.code)
        await wait_for(lambda: engine.stats.running == 0)
        return codes[0], codes[1]

    assert run(scenario()) == ("WORKER_RESET", "POOL_UNAVAILABLE")


@pytest.mark.req("OC-ADAPT-5040")
def test_unreachable_engine_is_pool_unavailable() -> None:
    async def scenario() -> tuple[Any, str, str]:
        a = adapter(f"http://127.0.0.1:{free_port()}", connect_timeout_s=1.0)
        try:
            health = await a.health()
            try:
                await collect(a.stream(req("x")))
            except AdapterError as exc:
                stream_code = exc.code
            try:
                await a.preload()
            except AdapterError as exc:
                preload_code = exc.code
            return health, stream_code, preload_code
        finally:
            await a.close()

    health, stream_code, preload_code = run(scenario())
    assert (health.live, health.ready) == (False, False)
    assert stream_code == preload_code == "POOL_UNAVAILABLE"


@pytest.mark.req("OC-ADAPT-5040", "OC-ADAPT-5050")
def test_health_preload_props_metrics_and_identity(sim) -> None:
    url, engine = sim

    async def scenario() -> tuple[Any, ...]:
        a = adapter(url)
        try:
            health = await a.health()
            await a.preload()
            idle = await a.metrics()
            s = a.stream(req("[[sim tokens=1 hold_ms=300]] h", 4))
            task = asyncio.create_task(collect(s))
            await wait_for(lambda: engine.stats.running == 1)
            busy, props = await a.metrics(), await a.props()
            await task
            return health, idle, busy, props, dict(a.info)
        finally:
            await a.close()

    health, idle, busy, props, info = run(scenario())
    assert (health.live, health.ready) == (True, True)
    assert (idle.waiting, idle.running, idle.kv_pressure) == (0, 0, None)
    assert (busy.running, busy.waiting) == (1, 0)
    assert props.engine_version == "2.4.1"
    assert props.ctx_max == 2048  # /info max_total_tokens, not the configured 1024
    assert (props.slots_total, props.slots_free) == (2, 1)
    assert props.model_digest == f"hf:bigscience/bloom-560m@{info['model_sha']}"
    assert "token_ids" in props.capabilities
    assert info["model_id"] == "bigscience/bloom-560m"


# -- wire facts of real TGI (issue 12) ---------------------------------------------------------


def split_adapter(**app_kw: Any) -> TgiAdapter:
    app = create_app(SimEngine(CFG), split_multibyte=True, **app_kw)
    return adapter("http://sim", transport=httpx.ASGITransport(app=app))


def multibyte_prompt(min_words: int = 2) -> str:
    """A prompt whose first tokens include non-ASCII words (seed 11, as `req` sends)."""
    for n in range(500):
        prompt = f"mb {n}"
        words = [t for _, t in iter_tokens(prompt, 11, 6)]
        if sum(not w.isascii() for w in words[:4]) >= min_words and words[-1].isascii():
            return prompt
    raise AssertionError("no prompt with multibyte words found")


@pytest.mark.req("OC-ADAPT-5040", "ORCH-3058")
def test_empty_text_tokens_are_counted_and_keep_their_text() -> None:
    """TGI streams `token.text == ""` while the decoded output ends inside a multibyte
    character (`Model.decode_token` returns "" when the text ends in U+FFFD,
    huggingface/text-generation-inference server/text_generation_server/models/model.py
    @00359fcd); the token's id and logprob are real. The adapter counts such tokens in
    `tokens_out`, and the text arrives whole with the token that completes it."""
    prompt = multibyte_prompt()
    words = list(iter_tokens(prompt, 11, 6))
    splits = sum(not t.isascii() for _, t in words)

    async def scenario() -> tuple[list[TokenEvent], StreamEnd | None]:
        a = split_adapter()
        try:
            s = a.stream(req(f"[[sim tokens=6]] {prompt}", 64))
            return await collect(s), s.end
        finally:
            await a.close()

    events, end = run(scenario())
    assert [e.text for e in events] == [t for _, t in words]
    assert [e.token_id for e in events] == [tid for tid, _ in words]
    assert all(e.logprob is not None for e in events)
    assert end is not None and end.tokens_out == 6 + splits and end.finish_reason == FINISH_STOP


@pytest.mark.req("OC-ADAPT-5040")
def test_a_stream_cut_inside_a_character_keeps_the_held_token() -> None:
    """When `max_new_tokens` ends the output inside a multibyte character, the last token's
    text is "" and TGI's `generated_text` (decoded from all ids) ends with U+FFFD; the adapter
    sends that tail with the held token's id, so no id is lost and `tokens_out` is exact."""
    prompt = next(
        f"cut {n}" for n in range(500) if next(iter_tokens(f"cut {n}", 11, 1))[1].isascii() is False
    )
    first_id, first_word = next(iter_tokens(prompt, 11, 1))

    async def scenario() -> tuple[list[TokenEvent], StreamEnd | None]:
        a = split_adapter()
        try:
            s = a.stream(req(prompt, 1))  # one token: the lead byte of a multibyte word
            return await collect(s), s.end
        finally:
            await a.close()

    events, end = run(scenario())
    assert not first_word.isascii()
    assert [e.text for e in events] == ["\ufffd"]
    assert events[0].token_id not in (None, first_id)  # the lead byte token's own id
    assert end is not None and (end.tokens_out, end.finish_reason) == (1, FINISH_LENGTH)


@pytest.mark.req("OC-ADAPT-5040")
def test_final_event_without_details_still_ends_right() -> None:
    """TGI fills the last event's `details` only when the request set `details: true`
    (`StreamDetails` only for `details == true`, router/src/server.rs @003eaec0); without
    them the adapter tells `length` from an end of sequence by the token count."""
    lines = {
        "length": [
            'data:{"index":1,"token":{"id":5,"text":" a","logprob":-0.1,"special":false},'
            '"generated_text":null,"details":null}',
            'data:{"index":2,"token":{"id":6,"text":" b","logprob":-0.2,"special":false},'
            '"generated_text":" a b","details":null}',
        ],
        "eos": [
            'data:{"index":1,"token":{"id":5,"text":" a","logprob":-0.1,"special":false},'
            '"generated_text":null,"details":null}',
            'data:{"index":2,"token":{"id":2,"text":"</s>","logprob":-0.01,"special":true},'
            '"generated_text":" a","details":null}',
        ],
    }

    async def end(kind: str) -> StreamEnd | None:
        def reply(request: httpx.Request) -> httpx.Response:
            body = "\n\n".join(lines[kind]) + "\n\n"
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, text=body)

        a = adapter("http://tgi", transport=httpx.MockTransport(reply))
        try:
            s = a.stream(req("x", 2))
            await collect(s)
            return s.end
        finally:
            await a.close()

    length, eos = run(end("length")), run(end("eos"))
    assert length is not None and (length.tokens_out, length.finish_reason) == (2, FINISH_LENGTH)
    assert eos is not None and (eos.tokens_out, eos.finish_reason) == (1, FINISH_STOP)


@pytest.mark.req("OC-ADAPT-5040")
def test_unhealthy_tgi_is_live_not_ready_with_its_own_words() -> None:
    """`GET /health` answers `503 {"error":"unhealthy","error_type":"healthcheck"}` when the
    model cannot serve (router/src/server.rs @003eaec0, `health`)."""
    engine = SimEngine(CFG)
    engine.state = "dead"

    async def scenario() -> Any:
        a = adapter("http://sim", transport=httpx.ASGITransport(app=create_app(engine)))
        try:
            return await a.health()
        finally:
            await a.close()

    health = run(scenario())
    assert (health.live, health.ready) == (True, False)
    assert "503" in health.detail and "healthcheck" in health.detail
