"""VllmAdapter against the vLLM simulator, and against llama-server-shaped OpenAI answers.

Contract: chunks become TokenEvents with the ids of `return_token_ids`, `[DONE]` ends the
stream with a StreamEnd (usage for the count), the sampler profile reaches the engine under
vLLM's field names, directive failures map to typed errors, cancel stops the engine, and
props/metrics/identity come from `/v1/models`, `/version` and `/metrics`. The canned-server
cases cover what llama-server's `/v1/completions` does differently (no `/version`, no ids,
`error:` lines), since the adapter also has to work there.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import httpx
import pytest

from llama_orch.engine_sim.engine import SimEngine
from llama_orch.engine_sim.tokens import iter_tokens
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
from llama_orch.reference_impl.adapters.vllm import VllmAdapter
from tests._server import free_port
from tests.test_sim_llamacpp import SimServer, sim_server

T = TypeVar("T")
MODEL = "org/served-name"
SAMPLER = SamplerParams(temperature=0.0, top_k=0, top_p=1.0, min_p=0.0)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def req(prompt: str, max_tokens: int = 8, seed: int = 3, rid: str = "t1") -> CompletionRequest:
    return CompletionRequest(rid, prompt, max_tokens, seed, SAMPLER, "prof-v1")


def adapter(url: str, **kw: Any) -> VllmAdapter:
    kw.setdefault("model_ref", "sha256:" + "cd" * 32)
    return VllmAdapter("r0", url, ctx_max=1024, **kw)


async def collect(stream: TokenStream) -> list[TokenEvent]:
    return [ev async for ev in stream]


async def until(check: Callable[[], bool], timeout_s: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


async def failure(a: VllmAdapter, prompt: str, sink: list[TokenEvent]) -> AdapterError:
    with pytest.raises(AdapterError) as info:
        async for ev in a.stream(req(prompt)):
            sink.append(ev)
    return info.value


@pytest.fixture(scope="module")
def server() -> Iterator[SimServer]:
    with sim_server() as sim:
        yield sim


@pytest.fixture
def sim(server: SimServer) -> tuple[str, SimEngine]:
    engine = server.fresh("vllm", model=MODEL, engine_version="0.11.2", ctx=16384, slots=2)
    return server.url, engine


@pytest.mark.req("OC-ADAPT-5020", "ORCH-3055")
def test_stream_yields_ids_text_and_end(sim: tuple[str, SimEngine]) -> None:
    url, _ = sim

    async def go() -> tuple[list[TokenEvent], Any]:
        a = adapter(url)
        assert isinstance(a, EngineAdapter)
        stream = a.stream(req("a prompt", max_tokens=4, seed=99))
        events = await collect(stream)
        await a.close()
        return events, stream.end

    events, end = run(go())
    expected = list(iter_tokens("a prompt", 99, 4))
    assert [(e.index, e.token_id, e.text) for e in events] == [
        (i, tid, text) for i, (tid, text) in enumerate(expected)
    ]
    assert end.tokens_out == 4 and end.finish_reason == FINISH_LENGTH


@pytest.mark.req("ORCH-3058", "OC-HARNESS-8406")
def test_profile_fields_reach_the_engine(sim: tuple[str, SimEngine]) -> None:
    url, engine = sim
    prompt = "[[sim tokens=2]] as  is"

    async def go(**kw: Any) -> Any:
        a = adapter(url, **kw)
        stream = a.stream(req(prompt, max_tokens=5, seed=2**40))
        events = await collect(stream)
        await a.close()
        return len(events), stream.end

    count, end = run(go())
    sent = engine.last_request
    assert sent["model"] == MODEL and sent["prompt"] == prompt
    assert sent["max_tokens"] == 5 and sent["seed"] == 2**40
    assert (sent["temperature"], sent["top_p"], sent["min_p"]) == (0.0, 1.0, 0.0)
    assert sent["top_k"] == -1  # vLLM's "disabled"
    assert sent["stream"] is True and sent["return_token_ids"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert count == 2 and end.finish_reason == FINISH_STOP and end.tokens_out == 2
    with pytest.raises(AdapterError):  # the simulator serves MODEL only: 404 for "alias"
        run(go(served_model_name="alias", return_token_ids=False, include_usage=False))
    sent = engine.last_request
    assert sent["model"] == "alias"
    assert "return_token_ids" not in sent and "stream_options" not in sent


@pytest.mark.req("OC-ADAPT-5020", "OC-HARNESS-8404")
def test_directive_outcomes_map_to_typed_errors(sim: tuple[str, SimEngine]) -> None:
    url, _ = sim

    async def go(prompt: str) -> tuple[AdapterError, list[TokenEvent]]:
        a = adapter(url)
        got: list[TokenEvent] = []
        error = await failure(a, prompt, got)
        await a.close()
        return error, got

    error, got = run(go("[[sim tokens=5 fail_after=2]] f"))
    assert error.code == "WORKER_RESET" and len(got) == 2
    assert [e.token_id for e in got] == [tid for tid, _ in iter_tokens("f", 3, 2)]
    assert run(go("[[sim overload=true]] o"))[0].code == "REPLICA_EXHAUSTED"
    invalid, none = run(go("[[sim tokens=1 tokens=2]] i"))
    assert invalid.code == "INVALID_PARAMS" and none == []


@pytest.mark.req("OC-ADAPT-5020", "OC-HARNESS-8404")
def test_cancel_and_aclose_stop_the_engine(sim: tuple[str, SimEngine]) -> None:
    url, engine = sim

    async def go() -> tuple[Any, bool, bool]:
        a = adapter(url)
        stream = a.stream(req("[[sim tokens=1000 itl_ms=10]] c", max_tokens=1000, rid="c1"))
        got: list[TokenEvent] = []

        async def consume() -> None:
            async for ev in stream:
                got.append(ev)

        task = asyncio.create_task(consume())
        while len(got) < 2:
            await asyncio.sleep(0.005)
        canceled = await a.cancel("c1")
        await asyncio.wait_for(task, 1.0)
        first_stopped = await until(lambda: engine.stats.running == 0)
        other = a.stream(req("[[sim tokens=1000 itl_ms=10]] d", max_tokens=1000, rid="d1"))
        await other.__anext__()
        await other.aclose()
        second_stopped = await until(lambda: engine.stats.running == 0)
        await a.close()
        return stream.end, canceled and first_stopped, second_stopped

    end, canceled, closed = run(go())
    assert end is not None and end.finish_reason == FINISH_CANCELED
    assert canceled and closed and engine.stats.generated_tokens < 30


@pytest.mark.req("OC-ADAPT-5020")
def test_unreachable_engine() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    async def go() -> tuple[AdapterError, Any, AdapterError]:
        a = adapter(url, served_model_name=MODEL, preload_timeout_s=0.2)
        error = await failure(a, "x", [])
        health = await a.health()
        with pytest.raises(AdapterError) as preload:
            await a.preload()
        await a.close()
        return error, health, preload.value

    error, health, preload = run(go())
    assert error.code == "POOL_UNAVAILABLE" and not health.live
    assert preload.code == "POOL_UNAVAILABLE"


@pytest.mark.req("OC-ADAPT-5020", "OC-ADAPT-5030", "ORCH-3055")
def test_health_props_metrics_version(sim: tuple[str, SimEngine]) -> None:
    url, engine = sim

    async def go() -> tuple[Any, ...]:
        a = adapter(url, max_num_seqs=2)
        health = await a.health()
        await a.preload()
        idle = await a.props()
        stream = a.stream(req("[[sim tokens=1 hold_ms=400]] busy"))
        await stream.__anext__()
        busy, load = await a.props(), await a.metrics()
        await stream.aclose()
        await a.close()
        return health, idle, busy, load, a.served_model_name

    health, idle, busy, load, name = run(go())
    assert health.ready and name == MODEL and engine.stats.requests == 2  # preload decoded
    assert idle.engine_version == "0.11.2" and idle.ctx_max == 16384
    assert (idle.slots_total, idle.slots_free) == (2, 2) and busy.slots_free == 1
    assert idle.model_digest == "sha256:" + "cd" * 32
    assert (load.running, load.waiting, load.kv_pressure) == (1, 0, 0.5)


# -- llama-server's OpenAI-compatible answers, served from canned bytes ----------------------

LLAMA_MODELS = {"object": "list", "data": [{"id": "gemma.gguf", "object": "model"}]}


def canned(stream_blocks: list[str], **routes: Any) -> httpx.MockTransport:
    body = "".join(b + "\n\n" for b in stream_blocks).encode()
    answers: dict[str, Callable[[], httpx.Response]] = {
        "/health": lambda: httpx.Response(200, json={"status": "ok"}),
        "/v1/models": lambda: httpx.Response(200, json=LLAMA_MODELS),
        "/v1/completions": lambda: httpx.Response(200, content=body),
        **routes,
    }

    def handle(request: httpx.Request) -> httpx.Response:
        answer = answers.get(request.url.path)
        return answer() if answer else httpx.Response(404, json={"error": {"code": 404}})

    return httpx.MockTransport(handle)


def chunk(text: str, finish: str | None = None) -> str:
    choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}
    payload = {"choices": [choice], "object": "text_completion", "model": "gemma.gguf"}
    return "data: " + json.dumps(payload)


def through(transport: httpx.MockTransport, **kw: Any) -> tuple[list[TokenEvent], Any]:
    async def go() -> tuple[list[TokenEvent], Any]:
        a = adapter("http://llama", transport=transport, **kw)
        stream = a.stream(req("p"))
        try:
            return await collect(stream), stream.end
        finally:
            await a.close()

    return run(go())


def test_llama_server_stream_without_ids() -> None:
    usage = 'data: {"choices":[],"usage":{"completion_tokens":3,"prompt_tokens":1}}'
    t = canned([chunk(" a"), chunk(" b"), chunk("", "length"), usage, "data: [DONE]"])
    events, end = through(t)
    assert [(e.text, e.token_id) for e in events] == [(" a", None), (" b", None)]
    assert end.finish_reason == FINISH_LENGTH and end.tokens_out == 3


@pytest.mark.parametrize(
    "tail",
    [
        'error: {"code":500,"message":"boom","type":"server_error"}',
        'data: {"error":{"code":500,"message":"boom","type":"server_error"}}',
    ],
)
def test_llama_server_mid_stream_errors(tail: str) -> None:
    with pytest.raises(AdapterError) as info:
        through(canned([chunk(" a"), tail, "data: [DONE]"]))
    assert info.value.code == "WORKER_RESET" and "boom" in info.value.message


def test_stream_cut_before_done_is_a_reset() -> None:
    with pytest.raises(AdapterError) as info:
        through(canned([chunk(" a")]))
    assert info.value.code == "WORKER_RESET"


@pytest.mark.req("OC-ADAPT-5030")
def test_llama_server_identity_without_version_route() -> None:
    async def go(**kw: Any) -> Any:
        a = adapter("http://llama", transport=canned([]), **kw)
        props = await a.props()
        load = await a.metrics()
        await a.close()
        return props, load

    props, load = run(go(engine_version="b1-0c1e570"))
    assert props.engine_version == "b1-0c1e570" and props.ctx_max == 1024
    assert (load.running, load.waiting, load.kv_pressure) == (0, 0, None)
    assert run(go())[0].engine_version == "unknown"


@pytest.mark.req("OC-ADAPT-5020")
@pytest.mark.parametrize("null_usage", [True, False])
def test_chunks_with_or_without_a_usage_key_give_the_same_stream(
    server: SimServer, null_usage: bool
) -> None:
    """Current vLLM writes `"usage": null` in ordinary completion chunks
    (vllm/entrypoints/openai/serving_completion.py @00463e62, `exclude_unset=False`); a
    server that leaves unset fields out omits the key. The adapter reads usage only from the
    final usage chunk, so both give the same events and count."""
    server.fresh("vllm", {"null_usage": null_usage}, model=MODEL)

    async def go() -> tuple[list[TokenEvent], Any]:
        a = adapter(server.url)
        try:
            s = a.stream(req("[[sim tokens=3]] usage", 5))
            return await collect(s), s.end
        finally:
            await a.close()

    events, end = run(go())
    assert [e.token_id for e in events] == [tid for tid, _ in iter_tokens("usage", 3, 3)]
    assert end.tokens_out == 3 and end.finish_reason == FINISH_STOP


@pytest.mark.req("OC-ADAPT-5020")
def test_dead_engine_is_live_but_never_ready(sim: tuple[str, SimEngine]) -> None:
    """`/health` answers 503 once vLLM's engine core has died (`EngineDeadError`,
    vllm/entrypoints/serve/instrumentator/health.py @98b137c6); the adapter says so."""
    url, engine = sim
    engine.state = "dead"

    async def go() -> Any:
        a = adapter(url)
        try:
            return await a.health()
        finally:
            await a.close()

    health = run(go())
    assert (health.live, health.ready) == (True, False)
    assert "dead" in health.detail and "503" in health.detail
