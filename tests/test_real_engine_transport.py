"""The llama.cpp adapter's connections against the real llama-server (issue 16).

llama-server ends every streamed response by closing the connection (its chunked content
provider stops the exchange), while a plain JSON answer keeps it alive. A client that pools the
stream's connection can send its next request into the closing socket and get "Server
disconnected"; the adapter therefore asks for `Connection: close` on streams. Shown here on the
engine itself, then through the adapter with a control call right after each stream (the pattern
of slot save/restore around hard preemption, where the race first showed; a POST, which
aiohttp never retries on a dead pooled connection).
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from llama_orch.harness.loadgen.client import make_client
from llama_orch.harness.loadgen.engines import EngineTarget, engine_request
from llama_orch.reference_impl.adapters.base import CompletionRequest, SamplerParams
from llama_orch.reference_impl.adapters.llamacpp import LlamaCppAdapter
from tests._engine import llama_server

pytestmark = [pytest.mark.real_engine, pytest.mark.slow]

GREEDY = SamplerParams(temperature=0.0, top_k=1, top_p=1.0, min_p=0.0)


async def _pooled_alive(url: str, stream: bool) -> bool:
    """Whether the connection of one /completion answer is still usable a moment later."""
    async with aiohttp.ClientSession() as session:
        body = {"prompt": "Hi", "n_predict": 4, "stream": stream}
        async with session.post(f"{url}/completion", json=body) as resp:
            await resp.read()
        await asyncio.sleep(0.2)
        pooled = [proto for conns in session.connector._conns.values() for proto, _ in conns]
        return bool(pooled) and all(proto.is_connected() for proto in pooled)


@pytest.mark.req("OC-ADAPT-5001")
def test_llama_server_closes_the_connection_after_a_stream_only() -> None:
    with llama_server("--parallel", "1") as url:
        assert asyncio.run(_pooled_alive(url, stream=False)) is True
        assert asyncio.run(_pooled_alive(url, stream=True)) is False


@pytest.mark.req("OC-ADAPT-5001")
def test_streams_and_control_calls_back_to_back_never_hit_a_closing_connection() -> None:
    with llama_server("--parallel", "1") as url:

        async def go() -> tuple[list[int], list[int]]:
            adapter = LlamaCppAdapter("r0", url, model_ref="repo:gemma", ctx_max=2048)
            try:
                lengths, statuses = [], []
                for n in range(6):
                    req = CompletionRequest(f"r{n}", "The capital of France is", 4, 0, GREEDY, "g")
                    async with adapter.stream(req) as stream:
                        lengths.append(len([e async for e in stream]))
                    # a POST: aiohttp retries an idempotent GET on a dead pooled connection
                    tokenized = await adapter.client.post("/tokenize", json={"content": "hi"})
                    statuses.append(tokenized.status_code)
                return lengths, statuses
            finally:
                await adapter.close()

        lengths, statuses = asyncio.run(go())
    assert lengths == [4] * 6
    assert statuses == [200] * 6


@pytest.mark.req("OC-ADAPT-5001")
def test_the_bench_engine_baseline_runs_back_to_back_llamacpp_tasks_without_errors() -> None:
    """`llorch bench`'s engine-alone side against llama-server (same closing connections)."""
    with llama_server("--parallel", "1") as url:

        async def go() -> list[str]:
            req = engine_request(
                "llamacpp", prompt="The capital of France is", max_tokens=4, seed=0, model=None
            )
            async with make_client(url, api_key=None, max_connections=1) as client:
                target = EngineTarget(client, req)
                return [(await target.run_task(n)).outcome for n in range(8)]

        errors = asyncio.run(go())
    assert errors == ["ok"] * 8
