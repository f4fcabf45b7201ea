"""End to end over real HTTP: orchestrator -> real adapters -> four engine simulators."""

from __future__ import annotations

import contextlib

import httpx
import pytest

from llama_orch.engine_sim.engine import SimConfig
from llama_orch.engine_sim.tokens import iter_tokens
from tests._api import events, task_body
from tests._server import running_server
from tests._sims import running_sim_ports

ENGINES = ("llamacpp", "vllm", "tgi", "triton")


def _config(urls: dict[str, tuple[str, str | None]]) -> str:
    pools = "\n".join(
        f"""  - id: sim-{e}
    engine: {e}
    model: repo:sim/llama-3-8b
    ctx: 8192
    devices: []
    allow_cpu_inference: true
    endpoint: {urls[e][0]}
    served_model_name: llama-3-8b"""
        + (f"\n    metrics_endpoint: {urls[e][1]}" if urls[e][1] else "")
        for e in ENGINES
    )
    return f"auth: {{api_keys_env: LLORCH_API_KEY}}\npools:\n{pools}\n"


@pytest.fixture(scope="module")
def stack():
    with contextlib.ExitStack() as stack:
        urls = {}
        for engine in ENGINES:
            cfg = SimConfig(engine, model="llama-3-8b", engine_version=f"{engine}-sim-2.1")
            url, metrics_url, _ = stack.enter_context(running_sim_ports(cfg))
            urls[engine] = (url, metrics_url)  # Triton: metrics on their own port
        server = stack.enter_context(running_server(_config(urls)))
        yield server


@pytest.fixture
def client(stack):
    with httpx.Client(base_url=stack.url, headers=stack.headers, timeout=15) as c:
        yield c


@pytest.mark.req("ORCH-2008", "ORCH-3054", "ORCH-3055", "ORCH-3056", "ORCH-3057", "ORCH-3058")
@pytest.mark.parametrize("engine", ENGINES)
def test_each_engine_streams_through_its_adapter(client, engine: str) -> None:
    body = task_body(
        engine=engine, prompt="[[sim tokens=6]] hello", model_ref="repo:sim/llama-3-8b", seed=7
    )
    assert client.post("/v1/tasks", json=body).status_code == 202
    evs = events(client, body["task_id"])
    assert evs[-1][0] == "end", evs[-1]
    text = [d["t"] for n, d, _ in evs if n == "token"]
    # Same directive, seed and prompt give the same tokens on every engine's simulator.
    assert text == [t for _, t in iter_tokens("hello", 7, 6)]


@pytest.mark.req("ORCH-3032", "OC-ADAPT-5011", "OC-ADAPT-5030", "OC-ADAPT-5050", "OC-ADAPT-5070")
def test_replica_sets_show_each_engine_version(client) -> None:
    sets = {s["engine"]: s for s in client.get("/v1/replicasets").json()}
    assert set(sets) == set(ENGINES)
    for engine in ENGINES:
        assert sets[engine]["slo"]["engine_version"].startswith(engine), sets[engine]


@pytest.mark.req("ORCH-2006", "OC-CTRL-2030", "OC-CTRL-2031")
@pytest.mark.parametrize("engine", ENGINES)
def test_engine_failure_becomes_a_typed_error_event(client, engine: str) -> None:
    body = task_body(
        engine=engine, prompt="[[sim tokens=6 fail_after=2]] x", model_ref="repo:sim/llama-3-8b"
    )
    client.post("/v1/tasks", json=body)
    evs = events(client, body["task_id"])
    assert [d["i"] for n, d, _ in evs if n == "token"] == [0, 1]
    assert evs[-1][0] == "error" and evs[-1][1]["code"] == "WORKER_RESET"
    assert evs[-1][1]["engine"] == engine
