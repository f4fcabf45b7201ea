"""Repetition penalties on the real llama-server: they act only when the sampler chain names
"penalties", and the adapter's chain does.

llama.cpp builds the sampler chain from the request's `samplers` list and adds the penalties
sampler only for `COMMON_SAMPLER_TYPE_PENALTIES` (ggml-org/llama.cpp common/sampling.cpp
@00efb3e1, `common_sampler_init`), so a `repeat_penalty` with a chain lacking "penalties" is
silently ignored. Checked here on the build this project compiles (b1-0c1e570) with Gemma 3
270M: same prompt and seed, penalty on versus off, greedy decoding.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest

from llama_orch.reference_impl.adapters.base import CompletionRequest, SamplerParams
from llama_orch.reference_impl.adapters.llamacpp import LlamaCppAdapter
from tests._engine import llama_server

pytestmark = [pytest.mark.real_engine, pytest.mark.slow]

PROMPT = "Repeat after me forever: cat cat cat cat cat cat cat cat cat cat cat cat"
N = 24
BASE = {
    "prompt": PROMPT,
    "n_predict": N,
    "seed": 1,
    "temperature": 0.0,
    "top_k": 1,
    "cache_prompt": False,
    "return_tokens": True,
}


@pytest.fixture(scope="module")
def server_url():
    with llama_server("--parallel", "1", "--no-cont-batching") as url:
        yield url


def _ids(url: str, **extra: object) -> list[int]:
    answer = httpx.post(f"{url}/completion", json={**BASE, **extra}, timeout=120)
    assert answer.status_code == 200, answer.text
    return answer.json()["tokens"]


def _most_repeated(ids: list[int]) -> int:
    return Counter(ids).most_common(1)[0][1]


@pytest.mark.req("ORCH-3058", "OC-ADAPT-5010")
def test_repeat_penalty_acts_only_with_penalties_in_the_chain(server_url: str) -> None:
    """Greedy output repeats a token; `repeat_penalty` changes it only when "penalties" is in
    `samplers`, and then the ids differ where the repetition was."""
    off = _ids(server_url, samplers=["top_k", "temperature"])
    ignored = _ids(server_url, samplers=["top_k", "temperature"], repeat_penalty=1.5)
    on = _ids(server_url, samplers=["penalties", "top_k", "temperature"], repeat_penalty=1.5)
    assert _most_repeated(off) >= 4, off  # the baseline does repeat
    assert ignored == off  # without "penalties" the penalty is a no-op
    assert on != off
    # they part where the unpenalized output repeats a token of the prompt or of itself
    prompt_ids = httpx.post(f"{server_url}/tokenize", json={"content": PROMPT}).json()["tokens"]
    first = next(i for i, (a, b) in enumerate(zip(on, off, strict=True)) if a != b)
    assert off[first] in prompt_ids + off[:first], (first, off, on)
    assert _most_repeated(on) < _most_repeated(off)


@pytest.mark.req("ORCH-3058", "OC-ADAPT-5010")
def test_the_adapter_chain_applies_the_profiles_penalty(server_url: str) -> None:
    """Through LlamaCppAdapter: a profile with `repeat_penalty` gives other token ids than the
    same profile without one (same prompt, seed and greedy decoding); a profile without one
    sends `repeat_penalty: 1.0`, which matches the server's own unpenalized output."""
    plain = SamplerParams(temperature=0.0, top_k=1, top_p=1.0, min_p=0.0)
    penalized = SamplerParams(temperature=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.5)

    async def ids(sampler: SamplerParams, rid: str) -> list[int | None]:
        adapter = LlamaCppAdapter(
            "r0", server_url, model_ref="repo:test/gemma", ctx_max=2048, cache_prompt=False
        )
        try:
            req = CompletionRequest(rid, PROMPT, N, 1, sampler, "p")
            return [e.token_id async for e in adapter.stream(req)]
        finally:
            await adapter.close()

    without = asyncio.run(ids(plain, "plain"))
    with_penalty = asyncio.run(ids(penalized, "pen"))
    assert without == _ids(server_url, samplers=["top_k", "temperature"])
    assert with_penalty != without
    assert _most_repeated([i for i in with_penalty if i is not None]) < _most_repeated(without)
