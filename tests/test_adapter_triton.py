"""TritonAdapter against the Triton engine simulator on a loopback port: the adapter contract.

The simulator runs under uvicorn in a background thread (real streaming, real disconnects);
variants of the deployment (no recorded TensorRT-LLM version, token-id output) run through
httpx.ASGITransport.
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
from llama_orch.engine_sim.tokens import iter_tokens
from llama_orch.engine_sim.triton import create_apps
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
from llama_orch.reference_impl.adapters.triton import TritonAdapter, triton_inputs
from tests._server import free_port
from tests._sims import running_sim_ports

T = TypeVar("T")
V1 = SamplerParams(temperature=0.7, top_k=40, top_p=0.95, min_p=0.05)
GREEDY = SamplerParams(temperature=0.0, top_k=1, top_p=1.0, min_p=0.0)
CFG = SimConfig("triton", model="meta/llama-3-8b", engine_version="2.52.0", slots=3, ctx=4096)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def triton_sim() -> Iterator[tuple[str, str | None, SimEngine]]:
    """The simulator's inference port and its metrics server's URL, as real Triton has."""
    with running_sim_ports(CFG) as ports:
        yield ports


@pytest.fixture(scope="module")
def sim(triton_sim: tuple[str, str | None, SimEngine]) -> tuple[str, SimEngine]:
    url, _metrics, engine = triton_sim
    return url, engine


def adapter(url: str, model_name: str = "ensemble", **kw: Any) -> TritonAdapter:
    return TritonAdapter(
        "tr-r0", url, model_ref="hf:meta/llama-3-8b", ctx_max=4096, model_name=model_name, **kw
    )


def by_host(apps: dict[str, Any]) -> Any:
    """One ASGI app for an in-process client: each request goes to the app of its host, so a
    Triton's inference and metrics servers can sit behind one transport."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        host = dict(scope.get("headers") or []).get(b"host", b"").decode()
        await apps[host](scope, receive, send)

    return app


def in_process(engine: SimEngine | None = None, **app_kw: Any) -> TritonAdapter:
    """An adapter on an in-process simulator: inference at http://sim, metrics at
    http://sim-metrics/metrics."""
    api, metrics = create_apps(engine or SimEngine(CFG), **app_kw)
    transport = httpx.ASGITransport(app=by_host({"sim": api, "sim-metrics": metrics}))
    return adapter("http://sim", transport=transport, metrics_url="http://sim-metrics/metrics")


def req(prompt: str, max_tokens: int = 8, *, sampler: SamplerParams = V1, rid: str = "t1"):
    return CompletionRequest(rid, prompt, max_tokens, 13, sampler, "v1")


async def collect(stream: TokenStream) -> list[TokenEvent]:
    return [ev async for ev in stream]


async def wait_for(cond: Callable[[], bool], timeout: float = 2.0) -> float:
    start = time.monotonic()
    while not cond():
        assert time.monotonic() - start < timeout, "condition not reached in time"
        await asyncio.sleep(0.005)
    return time.monotonic() - start


@pytest.mark.req("OC-ADAPT-5060", "ORCH-3057")
def test_stream_text_pieces_and_final_record(sim) -> None:
    url, _ = sim

    async def scenario() -> list[Any]:
        a = adapter(url)
        assert isinstance(a, EngineAdapter)
        try:
            s1, s2 = a.stream(req("[[sim tokens=4]] hi", 8)), a.stream(req("hi", 2, rid="t2"))
            return [await collect(s1), s1.end, await collect(s2), s2.end]
        finally:
            await a.close()

    evs1, end1, evs2, end2 = run(scenario())
    expected = list(iter_tokens("hi", 13, 4))
    assert [(e.index, e.text) for e in evs1] == [(i, t) for i, (_, t) in enumerate(expected)]
    assert all(e.token_id is None for e in evs1)  # the stock ensemble returns no ids
    assert (end1.tokens_out, end1.finish_reason) == (4, FINISH_STOP)
    assert [e.text for e in evs2] == [t for _, t in expected[:2]]
    assert (end2.tokens_out, end2.finish_reason) == (2, FINISH_LENGTH)


def test_token_ids_are_used_when_the_deployment_outputs_them() -> None:
    async def scenario() -> list[TokenEvent]:
        a = in_process(output_ids=True)
        try:
            return await collect(a.stream(req("ids", 3)))
        finally:
            await a.close()

    assert [e.token_id for e in run(scenario())] == [t for t, _ in iter_tokens("ids", 13, 3)]


@pytest.mark.req("ORCH-3058", "ORCH-3057")
def test_sampler_profile_maps_to_ensemble_inputs_identically(sim) -> None:
    url, engine = sim

    async def one(a: TritonAdapter, r: CompletionRequest) -> dict[str, Any]:
        await collect(a.stream(r))
        return engine.last_request  # type: ignore[attr-defined,no-any-return]

    async def scenario() -> list[dict[str, Any]]:
        a, b = adapter(url), adapter(url)
        try:
            return [
                await one(a, req("p", 2)),
                await one(b, req("p", 2)),
                await one(a, req("p", 2, sampler=GREEDY, rid="g")),
            ]
        finally:
            await a.close()
            await b.close()

    first, other_replica, greedy = run(scenario())
    assert (
        first
        == other_replica
        == {
            "text_input": "p",
            "max_tokens": 2,
            "seed": 13,
            "stream": True,
            "temperature": 0.7,
            "top_k": 40,
            "top_p": 0.95,
        }
    )
    assert greedy == {
        "text_input": "p",
        "max_tokens": 2,
        "seed": 13,
        "stream": True,
        "top_k": 1,
    }
    penalty = triton_inputs(req("p", 2, sampler=SamplerParams(1.0, 0, 1.0, 0.3, 1.2)))
    assert "min_p" not in penalty and penalty["repetition_penalty"] == 1.2


@pytest.mark.req("OC-HARNESS-8403", "OC-HARNESS-8404")
def test_directives_through_the_adapter(sim) -> None:
    url, _ = sim

    async def outcome(a: TritonAdapter, prompt: str) -> tuple[list[str], str | None]:
        texts: list[str] = []
        try:
            async for ev in a.stream(req(prompt, 8)):
                texts.append(ev.text)
        except AdapterError as exc:
            return texts, exc.code
        return texts, None

    async def scenario() -> list[tuple[list[str], str | None]]:
        a, unknown = adapter(url), adapter(url, model_name="missing")
        try:
            return [
                await outcome(a, "[[sim fail_after=2]] f"),
                await outcome(a, "[[sim overload=true]] o"),
                await outcome(a, "[[sim ttft_ms=x]] b"),
                await outcome(unknown, "u"),
            ]
        finally:
            await a.close()
            await unknown.close()

    (failed, c1), (over, c2), (bad, c3), (missing, c4) = run(scenario())
    assert c1 == "WORKER_RESET"
    assert failed == [t for _, t in iter_tokens("f", 13, 2)]
    assert (over, c2) == ([], "REPLICA_EXHAUSTED")
    assert (bad, c3) == ([], "INVALID_PARAMS")
    assert (missing, c4) == ([], "POOL_UNAVAILABLE")


@pytest.mark.req("OC-HARNESS-8404")
def test_aclose_and_cancel_stop_the_engine_promptly(sim) -> None:
    url, engine = sim

    async def scenario() -> tuple[float, float, Any]:
        a = adapter(url)
        try:
            s = a.stream(req("[[sim tokens=500 itl_ms=20]] c", 500))
            await s.__anext__()
            await s.aclose()
            t_aclose = await wait_for(lambda: engine.stats.running == 0)
            s2 = a.stream(req("[[sim tokens=500 itl_ms=20]] c", 500, rid="t9"))
            task = asyncio.create_task(collect(s2))
            await wait_for(lambda: engine.stats.running == 1)
            await asyncio.sleep(0.05)
            assert await a.cancel("t9") is True
            got = await asyncio.wait_for(task, 2)
            assert len(got) < 500
            return t_aclose, await wait_for(lambda: engine.stats.running == 0), s2.end
        finally:
            await a.close()

    t_aclose, t_cancel, end = run(scenario())
    assert t_aclose < 1.0 and t_cancel < 1.0
    assert end is not None and end.finish_reason == FINISH_CANCELED


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


@pytest.mark.req("OC-ADAPT-5060")
def test_unreachable_engine_is_pool_unavailable() -> None:
    async def scenario() -> tuple[Any, list[str]]:
        a = adapter(f"http://127.0.0.1:{free_port()}", connect_timeout_s=1.0)
        codes: list[str] = []
        try:
            health = await a.health()
            for op in (lambda: collect(a.stream(req("x"))), a.preload, a.metrics):
                try:
                    await op()
                except AdapterError as exc:
                    codes.append(exc.code)
            return health, codes
        finally:
            await a.close()

    health, codes = run(scenario())
    assert (health.live, health.ready) == (False, False)
    assert codes == ["POOL_UNAVAILABLE"] * 3


@pytest.mark.req("OC-ADAPT-5060", "OC-ADAPT-5070")
def test_health_preload_props_metrics_statistics_and_versions(triton_sim) -> None:
    url, metrics_url, engine = triton_sim

    async def scenario() -> tuple[Any, ...]:
        a = adapter(url, model_version="1", metrics_url=metrics_url)
        try:
            health = await a.health()
            await a.preload()
            idle = await a.metrics()
            task = asyncio.create_task(collect(a.stream(req("[[sim tokens=1 hold_ms=300]] h"))))
            await wait_for(lambda: engine.stats.running == 1)
            busy, props = await a.metrics(), await a.props()
            await task
            stats, meta = await a.statistics(), await a.metadata()
            return health, idle, busy, props, a.trtllm_version, stats, meta
        finally:
            await a.close()

    health, idle, busy, props, trtllm, stats, meta = run(scenario())
    assert (health.live, health.ready) == (True, True)
    assert (idle.waiting, idle.running, idle.kv_pressure) == (0, 0, 0.0)
    assert busy.running == 1 and 0 < busy.kv_pressure <= 1
    assert props.engine_version == "2.52.0"
    assert trtllm == "sim-trtllm-1.0"
    assert "trtllm_version=sim-trtllm-1.0" in props.capabilities
    assert (props.slots_total, props.slots_free, props.ctx_max) == (3, 2, 4096)
    assert props.model_digest.startswith("sha256:")
    assert stats["model_stats"][0]["inference_count"] >= 1
    assert meta["name"] == "ensemble"


@pytest.mark.req("OC-ADAPT-5070")
def test_missing_trtllm_version_is_unknown_with_a_warning() -> None:
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    logger = logging.getLogger("llama_orch.reference_impl.adapters")
    logger.addHandler(handler)

    async def scenario() -> tuple[Any, str | None]:
        a = in_process(trtllm_version=None)
        try:
            await a.preload()
            return await a.props(), a.trtllm_version
        finally:
            await a.close()

    try:
        props, trtllm = run(scenario())
    finally:
        logger.removeHandler(handler)
    assert trtllm == "unknown"
    assert "trtllm_version=unknown" in props.capabilities
    assert props.engine_version == "2.52.0"
    warned = [r for r in seen if r.levelno == logging.WARNING and "trtllm" in r.getMessage()]
    assert len(warned) == 1  # preload and props both read the config; one warning
