"""Scheduling features through a running reference: OOM kinds, hard preemption and its proof.

- ORCH-3039: an engine out of device memory shrinks its replica's slot count (a new capacity
  estimate); one out of host memory does not; both end the task with WORKER_RESET and are
  logged as distinct events. Provoked with the `oom` directive on the mock engine.
- ORCH-3086, ORCH-3087, ORCH-3088: a pool in mode `hard` uses a replica only after it proved
  interruptible decode; the mock imitating llama.cpp proves it, the one imitating vLLM does
  not (capabilities say so), and a proven pool preempts, requeues and resumes with counters.
"""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from llama_orch.reference_impl.adapters.base import AdapterError, CompletionRequest
from llama_orch.reference_impl.adapters.mock import MockAdapter
from llama_orch.reference_impl.adapters.oom import classify_oom
from llama_orch.reference_impl.pool.preemption_proof import GREEDY, prove_interruptible
from tests._api import events, task_body
from tests._server import running_server

CONFIG = """
auth: {api_keys_env: LLORCH_API_KEY}
pools:
  - id: hard-llama
    engine: llamacpp
    adapter: mock
    model: repo:mock/tiny
    devices: []
    allow_cpu_inference: true
    determinism: true
    replicas: 1
    preemption: {mode: hard}
  - id: hard-vllm
    engine: vllm
    adapter: mock
    model: repo:mock/tiny
    devices: []
    allow_cpu_inference: true
    preemption: {mode: hard}
"""


@pytest.fixture(scope="module")
def server():
    with running_server(CONFIG) as running:
        yield running


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=10) as c:
        yield c


def _slots(client: httpx.Client, engine: str) -> int:
    return next(
        s["slots_total"] for s in client.get("/v1/replicasets").json() if s["engine"] == engine
    )


def _metric(client: httpx.Client, prefix: str) -> float:
    lines = [ln for ln in client.get("/metrics").text.splitlines() if ln.startswith(prefix)]
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in lines)


@pytest.mark.req("ORCH-3039")
def test_device_oom_shrinks_capacity_and_host_oom_does_not(client) -> None:
    before = _slots(client, "vllm")
    for kind in ("host", "device"):
        body = task_body(engine="vllm", prompt=f"[[sim tokens=4 oom={kind}]] oom")
        assert client.post("/v1/tasks", json=body).status_code == 202
        last = events(client, body["task_id"])[-1]
        assert last[0] == "error" and last[1]["code"] == "WORKER_RESET", last
        expected = before if kind == "host" else before - 1
        assert _slots(client, "vllm") == expected, kind


@pytest.mark.req("ORCH-3039")
@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("CUDA error: out of memory", "device"),
        ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", "device"),
        (
            "ggml_backend_cuda_buffer_type_alloc_buffer: allocating 512 MiB: cudaMalloc failed",
            "device",
        ),
        ("terminate called after throwing an instance of 'std::bad_alloc'", "host"),
        ("failed to allocate host buffer", "host"),
        ("mmap: Cannot allocate memory", "host"),
        ("context size exceeded", None),
    ],
)
def test_oom_messages_are_told_apart(message: str, kind: str | None) -> None:
    assert classify_oom(message) == kind


@pytest.mark.req("ORCH-3088", "ORCH-3090")
def test_capabilities_claim_hard_preemption_only_where_it_was_proven(client) -> None:
    features = {
        e["engine"]: e["features"] for e in client.get("/v1/capabilities").json()["engines"]
    }
    assert features["llamacpp"]["preemption_hard"] is True
    assert features["vllm"]["preemption_hard"] is False  # configured hard, not proven
    assert features["vllm"]["preemption_soft"] is True


@pytest.mark.req("ORCH-3086", "ORCH-3087")
def test_a_proven_pool_preempts_requeues_and_resumes(client) -> None:
    hard_before = _metric(client, 'preemptions_total{engine="llamacpp",mode="hard"}')
    resumed_before = _metric(client, 'resumptions_total{engine="llamacpp"}')
    runner = task_body(prompt="[[sim tokens=20 itl_ms=40]] batch", priority="batch", seed=9)
    assert client.post("/v1/tasks", json=runner).status_code == 202
    seen: list = []
    reader = threading.Thread(target=lambda: seen.extend(events(client, runner["task_id"])))
    reader.start()
    time.sleep(0.2)
    urgent = task_body(prompt="[[sim tokens=1]] urgent")
    assert client.post("/v1/tasks", json=urgent).status_code == 202
    assert events(client, urgent["task_id"])[-1][0] == "end"
    reader.join(10)
    preempted = [d for name, d, _ in seen if name == "metrics" and d.get("preempted")]
    assert len(preempted) == 1 and preempted[0]["resumable_state"]["tokens_done"] > 0
    assert any(name == "metrics" and d.get("resumed") for name, d, _ in seen)
    tokens = [d for name, d, _ in seen if name == "token"]
    assert [t["i"] for t in tokens] == list(range(20)) and seen[-1][0] == "end"
    again = task_body(prompt="[[sim tokens=20 itl_ms=0]] batch", priority="batch", seed=9)
    assert client.post("/v1/tasks", json=again).status_code == 202
    want = [d["token_id"] for name, d, _ in events(client, again["task_id"]) if name == "token"]
    assert [t["token_id"] for t in tokens] == want  # resumed exactly where it stopped
    assert _metric(client, 'preemptions_total{engine="llamacpp",mode="hard"}') == hard_before + 1
    assert _metric(client, 'resumptions_total{engine="llamacpp"}') == resumed_before + 1


@pytest.mark.req("ORCH-3086", "ORCH-3088")
def test_the_proof_passes_only_where_a_decode_resumes_exactly() -> None:
    asyncio.run(_proofs())


async def _proofs() -> None:
    llama = MockAdapter("llamacpp", "r0", model_ref="repo:m/x", ctx_max=512, slots=2)
    vllm = MockAdapter("vllm", "r1", model_ref="repo:m/x", ctx_max=512, slots=2)
    for adapter in (llama, vllm):
        await adapter.preload()
    assert (await prove_interruptible(llama)).proven
    refused = await prove_interruptible(vllm)
    assert not refused.proven and "refused" in refused.reason

    class NoInterrupt:
        replica_id = "r2"

    assert "cannot interrupt" in (await prove_interruptible(NoInterrupt())).reason


@pytest.mark.req("ORCH-3039")
def test_the_mock_reports_which_memory_ran_out() -> None:
    asyncio.run(_mock_oom())


async def _mock_oom() -> None:
    adapter = MockAdapter("llamacpp", "r0", model_ref="repo:m/x", ctx_max=512)
    await adapter.preload()
    req = CompletionRequest("t", "[[sim tokens=5 fail_after=2 oom=device]] x", 5, 0, GREEDY, "v1")
    seen = []
    with pytest.raises(AdapterError) as info:
        async for event in adapter.stream(req):
            seen.append(event)
    assert len(seen) == 2 and info.value.oom == "device" and "out of memory" in info.value.message
