"""TritonAdapter reads what the deployment declares (issue 12): metrics port, seed input name,
decoupled mode, readiness answers, and how streamed text is detokenized.

Every case runs against the Triton simulator playing the deployment in question
(`create_apps` options), in process: `tests.test_adapter_triton.in_process` routes the
inference and metrics servers by host behind one transport.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx
import pytest

from llama_orch.engine_sim.engine import SimConfig, SimEngine
from llama_orch.engine_sim.tokens import iter_tokens
from llama_orch.engine_sim.triton import create_apps
from llama_orch.reference_impl.adapters import AdapterError, CompletionRequest, SamplerParams
from llama_orch.reference_impl.adapters.triton import TritonAdapter
from llama_orch.reference_impl.pool.preflight import PoolFault
from llama_orch.reference_impl.pool.selftest import raise_on_failure, run_self_test
from tests.test_adapter_triton import adapter, by_host, in_process

T = TypeVar("T")
CFG = SimConfig("triton", model="meta/llama-3-8b", engine_version="2.52.0", slots=3, ctx=4096)
V1 = SamplerParams(temperature=0.7, top_k=40, top_p=0.95, min_p=0.0)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def req(prompt: str, seed: int, max_tokens: int = 4, rid: str = "d1") -> CompletionRequest:
    return CompletionRequest(rid, prompt, max_tokens, seed, V1, "v1")


async def texts(a: TritonAdapter, prompt: str, seed: int, n: int = 4) -> list[str]:
    return [e.text async for e in a.stream(req(prompt, seed, n, rid=f"{prompt}-{seed}"))]


class Warnings(logging.Handler):
    """Collects the adapters' warnings."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> Warnings:
        logging.getLogger("llama_orch.reference_impl.adapters").addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("llama_orch.reference_impl.adapters").removeHandler(self)


@pytest.mark.req("OC-ADAPT-5060", "ORCH-3057")
def test_metrics_are_scraped_from_the_metrics_server_not_the_inference_port() -> None:
    """Real Triton serves `/metrics` only on its metrics server (8002 by default); the
    inference port answers 404 (triton-inference-server/server src/http_server.cc @00a165a6:
    `HTTPMetricsServer::Handle`, and `HTTPAPIServer::Handle` ends in 404 "Not Found";
    docs/user_guide/metrics.md). With the metrics URL the telemetry self-test passes; pointed
    at the inference port, it fails with an error that says where metrics live."""

    async def scenario() -> tuple[Any, Any]:
        good = in_process()
        api, metrics = create_apps(SimEngine(CFG))
        transport = httpx.ASGITransport(app=by_host({"sim": api, "sim-metrics": metrics}))
        wrong = adapter("http://sim", transport=transport, metrics_url="http://sim/metrics")
        try:
            return await run_self_test(good), await run_self_test(wrong)
        finally:
            await good.close()
            await wrong.close()

    good, wrong = run(scenario())
    assert good.passed, good.event()
    assert wrong.failure is not None and wrong.failure.item == "telemetry"
    assert "8002" in str(wrong.failure.reason) and "metrics_endpoint" in str(wrong.failure.reason)
    assert (
        TritonAdapter(
            "r", "http://10.1.2.3:8000", model_ref="m", ctx_max=1, model_name="e"
        ).metrics_url
        == "http://10.1.2.3:8002/metrics"
    )


@pytest.mark.req("OC-ADAPT-5060", "ORCH-3058", "ORCH-3050")
@pytest.mark.parametrize("seed_input", ["seed", "random_seed"])
def test_the_seed_goes_under_the_input_name_the_model_declares(seed_input: str) -> None:
    """The TensorRT-LLM ensemble's seed input is `seed` (NVIDIA/TensorRT-LLM
    triton_backend/all_models/inflight_batcher_llm/ensemble/config.pbtxt @2a9abd95) and was
    `random_seed` in triton-inference-server/tensorrtllm_backend up to v0.19.0 (same path
    @fca166cc). A key that names no input becomes an ignored request parameter (Triton's
    `ExactMappingInput`, src/http_server.cc @00a165a6), so a hard-coded name loses seeding
    silently on the other version. The adapter reads `GET /v2/models/{m}` and seeds either."""
    engine = SimEngine(CFG)

    async def scenario() -> tuple[list[str], list[str], list[str], dict[str, Any]]:
        a = in_process(engine, seed_input=seed_input)
        try:
            return (
                await texts(a, "s", 5),
                await texts(a, "s", 5),
                await texts(a, "s", 6),
                dict(engine.last_request),  # type: ignore[attr-defined]
            )
        finally:
            await a.close()

    first, again, other, sent = run(scenario())
    assert first == again == [t for _, t in iter_tokens("s", 5, 4)]
    assert other == [t for _, t in iter_tokens("s", 6, 4)] != first
    other_name = "random_seed" if seed_input == "seed" else "seed"
    assert sent[seed_input] == 6 and other_name not in sent


def _without_seed_input(app: Any) -> Any:
    """The simulator's app with the seed input removed from the model's metadata."""

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("path") != "/v2/models/ensemble":
            return await app(scope, receive, send)
        chunks: list[bytes] = []
        start: dict[str, Any] = {}

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            else:
                chunks.append(message.get("body", b""))

        await app(scope, receive, capture)
        meta = json.loads(b"".join(chunks))
        meta["inputs"] = [i for i in meta["inputs"] if i["name"] not in ("seed", "random_seed")]
        body = json.dumps(meta).encode()
        headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return None

    return wrapped


def _preload_fault(adapter_: TritonAdapter) -> PoolFault:
    async def scenario() -> Any:
        try:
            return await run_self_test(adapter_)
        finally:
            await adapter_.close()

    result = run(scenario())
    with pytest.raises(PoolFault) as info:
        raise_on_failure([result])
    return info.value


@pytest.mark.req("OC-ADAPT-5060", "ORCH-3050")
def test_a_model_without_a_seed_input_is_a_permanent_pool_fault_naming_it() -> None:
    """A model that declares neither `seed` nor `random_seed` cannot honour a task's seed;
    the preload fails permanently (no restart loop: an operator must fix the deployment),
    and the fault names the model."""
    api, metrics = create_apps(SimEngine(CFG))
    apps = {"sim": _without_seed_input(api), "sim-metrics": metrics}
    a = adapter(
        "http://sim",
        transport=httpx.ASGITransport(app=by_host(apps)),
        metrics_url="http://sim-metrics/metrics",
    )
    fault = _preload_fault(a)
    assert fault.permanent
    assert "'ensemble'" in str(fault) and "seed" in str(fault)


@pytest.mark.req("OC-ADAPT-5060")
def test_a_model_that_is_not_decoupled_fails_clearly_and_permanently() -> None:
    """TensorRT-LLM refuses `stream: true` unless the model is decoupled (NVIDIA/TensorRT-LLM
    triton_backend/inflight_batcher_llm/src/utils.cc @19290813, "Streaming is only supported
    if model is deployed using decoupled mode."); the configuration says so in
    `model_transaction_policy.decoupled` (for an ensemble: when a step is decoupled,
    triton-inference-server/core src/ensemble_utils.cc @1b3d5b80). The adapter checks it at
    preload: a permanent fault naming the model, and a stream fails the same way."""
    fault = _preload_fault(in_process(decoupled=False))
    assert fault.permanent and "not decoupled" in str(fault) and "'ensemble'" in str(fault)

    async def stream_error() -> AdapterError:
        a = in_process(decoupled=False)
        try:
            with pytest.raises(AdapterError) as info:
                await texts(a, "x", 1)
            return info.value
        finally:
            await a.close()

    error = run(stream_error())
    assert error.code == "POOL_UNAVAILABLE" and error.permanent and not error.retriable


@pytest.mark.req("OC-ADAPT-5060")
def test_not_ready_triton_is_live_and_unready_with_its_reason() -> None:
    """Triton answers readiness probes with `400`, not `503` (`HandleServerHealth` sends
    `EVHTP_RES_BADREQ`; `HandleModelReady` adds `{"error":"Model version not ready"}`,
    src/http_server.cc @00a165a6)."""
    engine = SimEngine(CFG)
    engine.state = "loading"

    async def scenario() -> Any:
        a = in_process(engine)
        try:
            return await a.health()
        finally:
            await a.close()

    health = run(scenario())
    assert (health.live, health.ready) == (True, False)
    assert "400" in health.detail and "/v2/health/ready" in health.detail


@pytest.mark.req("OC-ADAPT-5060", "OC-ADAPT-5010")
def test_cumulative_text_of_an_accumulating_deployment_becomes_pieces() -> None:
    """The BLS model with `accumulate_tokens` decodes all tokens so far and sends the whole
    text in every response (`Decoder.postprocess`, NVIDIA/TensorRT-LLM
    triton_backend/all_models/inflight_batcher_llm/tensorrt_llm_bls/1/lib/decode.py
    @4db68284); the adapter sees `accumulate_tokens` in the model configuration and sends
    only the new text of each response, so pieces are exact (no per-piece decoding)."""

    async def scenario() -> tuple[list[str], Any]:
        a = in_process(text_mode="accumulate")
        try:
            s = a.stream(req("acc", 9, 5))
            got = [e.text async for e in s]
            return got, s.end
        finally:
            await a.close()

    got, end = run(scenario())
    assert got == [t for _, t in iter_tokens("acc", 9, 5)]
    assert end is not None and end.tokens_out == 5


@pytest.mark.req("OC-ADAPT-5060")
def test_per_piece_detokenization_is_reported_once() -> None:
    """The stock ensemble detokenizes each streamed response on its own (postprocessing's
    `tokenizer.batch_decode` per response, NVIDIA/TensorRT-LLM
    triton_backend/all_models/inflight_batcher_llm/postprocessing/1/model.py @2e2327b9): a
    SentencePiece tokenizer then loses each piece's leading space, which no client can
    restore. The adapter streams what it gets and warns once, at preload, naming the model
    and the fix (BLS with `accumulate_tokens`); an accumulating deployment gets no warning."""

    async def scenario(**kw: Any) -> tuple[list[str], list[logging.LogRecord]]:
        with Warnings() as seen:
            a = in_process(**kw)
            try:
                await a.preload()
                got = await texts(a, "sp", 2, 3)
                await a.preload()  # a reload reads the deployment again: still one warning
            finally:
                await a.close()
        return got, [r for r in seen.records if "detokenizes" in r.getMessage()]

    pieces, warned = run(scenario(text_mode="sentencepiece"))
    assert pieces == [t.lstrip(" ") for _, t in iter_tokens("sp", 2, 3)]
    assert len(warned) == 1 and warned[0].model_name == "ensemble"  # type: ignore[attr-defined]
    assert "accumulate_tokens" in warned[0].getMessage()
    _, quiet = run(scenario(text_mode="accumulate"))
    assert quiet == []


@pytest.mark.req("OC-ADAPT-5060", "OC-POOL-3002")
def test_the_pool_of_a_model_that_is_not_decoupled_stays_failed_without_restarts() -> None:
    """End to end through the pool manager: a Triton pool whose model is not decoupled fails
    its start-up self-test with the model named, and is not restarted in a loop (a permanent
    fault waits for an operator's reload)."""
    from llama_orch.reference_impl.pool import factory
    from llama_orch.reference_impl.pool.devices import DeviceRegistry
    from llama_orch.reference_impl.pool.manager import PoolManager
    from tests._sims import running_sim_ports
    from tests.fixtures.pool_kit import config, no_nvml

    with running_sim_ports(CFG, decoupled=False) as (url, metrics_url, _engine):
        cfg = config(
            engine="triton",
            adapter=None,
            endpoint=url,
            metrics_endpoint=metrics_url,
            served_model_name="ensemble",
        )

        async def scenario() -> tuple[bool, str | None, int]:
            pm = PoolManager(cfg, factory.make_adapter, devices=DeviceRegistry(no_nvml))
            await pm.start()
            try:
                await asyncio.sleep(0.5)  # a restart loop would have counted by now
                pool = pm.pools["p0"]
                return pool.ready, pool.last_error, pool.restarts
            finally:
                await pm.close()

        ready, last_error, restarts = run(scenario())
    assert not ready and restarts == 0
    assert last_error is not None and "not decoupled" in last_error and "'ensemble'" in last_error
