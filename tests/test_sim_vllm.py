"""The vLLM simulator speaks vLLM's OpenAI-compatible wire format.

Raw HTTP against the app on a loopback port: chunk fields, `finish_reason` null until the
last content chunk, per-chunk `token_ids`, the usage chunk, `data: [DONE]` last, vLLM's error
body for refusals and for a mid-stream failure, `vllm:` metric names, and disconnects.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llama_orch.engine_sim.engine import SimEngine
from llama_orch.engine_sim.tokens import iter_tokens
from tests.test_sim_llamacpp import SimServer, sim_server, wait_until

MODEL = "org/tiny-chat"


@pytest.fixture(scope="module")
def server() -> Iterator[SimServer]:
    with sim_server() as sim:
        yield sim


@pytest.fixture
def sim(server: SimServer) -> tuple[str, SimEngine]:
    engine = server.fresh("vllm", model=MODEL, engine_version="0.11.0", ctx=8192, slots=2)
    return server.url, engine


def chunks(text: str) -> list[Any]:
    """Parsed `data:` payloads; the last one must be the literal [DONE]."""
    out = []
    for block in text.split("\n\n"):
        if block:
            assert block.startswith("data: ") and "\n" not in block, block
            out.append(block[6:])
    assert out[-1] == "[DONE]" and text.endswith("\n\n")
    return [json.loads(c) for c in out[:-1]]


def body(prompt: str, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "prompt": prompt, "stream": True, **extra}


@pytest.mark.req("OC-HARNESS-8404", "OC-HARNESS-8405")
def test_stream_chunks_token_ids_usage_and_done(sim: tuple[str, SimEngine]) -> None:
    url, engine = sim
    req = body(
        "[[sim tokens=3]] hi there",
        max_tokens=3,
        seed=5,
        return_token_ids=True,
        stream_options={"include_usage": True},
    )
    r = httpx.post(f"{url}/v1/completions", json=req)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    data = chunks(r.text)
    content, usage = data[:-1], data[-1]
    expected = list(iter_tokens("hi there", 5, 3))
    for c in data:
        assert c["object"] == "text_completion" and c["model"] == MODEL
        assert c["id"].startswith("cmpl-") and c["id"] == data[0]["id"]
    choices = [c["choices"][0] for c in content]
    assert [ch["text"] for ch in choices] == [text for _, text in expected]
    assert [ch["token_ids"] for ch in choices] == [[tid] for tid, _ in expected]
    assert [ch["finish_reason"] for ch in choices] == [None, None, "length"]
    assert all(ch["index"] == 0 and ch["logprobs"] is None for ch in choices)
    assert all(c["usage"] is None for c in content)
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 3
    assert engine.last_request["seed"] == 5


@pytest.mark.req("OC-HARNESS-8404")
def test_directive_count_below_limit_finishes_with_stop(sim: tuple[str, SimEngine]) -> None:
    url, _ = sim
    data = chunks(httpx.post(f"{url}/v1/completions", json=body("[[sim tokens=2]] a")).text)
    assert [c["choices"][0]["finish_reason"] for c in data] == [None, "stop"]
    assert "token_ids" not in data[0]["choices"][0]  # only when the request asks
    empty = chunks(httpx.post(f"{url}/v1/completions", json=body("[[sim tokens=0]] a")).text)
    assert [(c["choices"][0]["text"], c["choices"][0]["finish_reason"]) for c in empty] == [
        ("", "stop")
    ]


@pytest.mark.req("OC-HARNESS-8405")
def test_non_streaming_answer_defaults_to_16_tokens(sim: tuple[str, SimEngine]) -> None:
    url, _ = sim
    r = httpx.post(f"{url}/v1/completions", json={"model": MODEL, "prompt": "p"})
    answer = r.json()
    assert answer["choices"][0]["text"] == "".join(t for _, t in iter_tokens("p", 0, 16))
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] == 16


@pytest.mark.req("OC-HARNESS-8403")
def test_refusals_use_vllm_error_body(sim: tuple[str, SimEngine]) -> None:
    url, engine = sim
    r = httpx.post(f"{url}/v1/completions", json=body("[[sim itl_ms=x]] a"))
    assert r.status_code == 400
    error = r.json()["error"]
    assert (
        error["code"] == 400 and error["type"] == "BadRequestError" and "itl_ms" in error["message"]
    )
    assert {"message", "type", "param", "code"} == error.keys()
    wrong = httpx.post(f"{url}/v1/completions", json={**body("a"), "model": "other"})
    assert wrong.status_code == 404 and wrong.json()["error"]["type"] == "NotFoundError"
    for bad in ({**body("a"), "max_tokens": "x"}, {**body("a"), "prompt": {}}):
        assert httpx.post(f"{url}/v1/completions", json=bad).status_code == 400
    assert engine.stats.requests == 0


@pytest.mark.req("OC-HARNESS-8404")
def test_overload_is_503(sim: tuple[str, SimEngine]) -> None:
    url, _ = sim
    codes = [
        httpx.post(f"{url}/v1/completions", json=body("[[sim overload=1]] same")).status_code
        for _ in range(2)
    ]
    assert codes == [503, 200]
    r = httpx.post(f"{url}/v1/completions", json=body("[[sim overload=true]] b"))
    assert r.status_code == 503 and r.json()["error"]["code"] == 503


@pytest.mark.req("OC-HARNESS-8404")
def test_mid_stream_failure_is_an_error_chunk_then_done(sim: tuple[str, SimEngine]) -> None:
    url, _ = sim
    r = httpx.post(f"{url}/v1/completions", json=body("[[sim tokens=4 fail_after=1]] c"))
    assert r.status_code == 200
    data = chunks(r.text)
    assert data[0]["choices"][0]["text"] and data[0]["choices"][0]["finish_reason"] is None
    assert set(data[1]) == {"error"} and data[1]["error"]["code"] == 500
    assert len(data) == 2


@pytest.mark.req("OC-HARNESS-8404")
def test_disconnect_stops_generation(sim: tuple[str, SimEngine]) -> None:
    url, engine = sim
    req = body("[[sim tokens=500 itl_ms=20]] long", max_tokens=500)
    with httpx.stream("POST", f"{url}/v1/completions", json=req) as r:
        assert next(r.iter_lines()).startswith("data: {")
        assert engine.stats.running == 1
    assert wait_until(lambda: engine.stats.running == 0, 1.0)
    assert engine.stats.generated_tokens < 20


def test_health_version_models(sim: tuple[str, SimEngine]) -> None:
    url, _ = sim
    assert httpx.get(f"{url}/health").status_code == 200
    assert httpx.get(f"{url}/version").json() == {"version": "0.11.0"}
    models = httpx.get(f"{url}/v1/models").json()
    assert models["object"] == "list"
    assert models["data"][0]["id"] == MODEL and models["data"][0]["max_model_len"] == 8192


def test_metrics_names_follow_vllm(sim: tuple[str, SimEngine]) -> None:
    url, engine = sim

    def hold() -> None:
        httpx.post(f"{url}/v1/completions", json=body("[[sim tokens=1 hold_ms=300]] h"))

    threads = [threading.Thread(target=hold) for _ in range(3)]
    for t in threads:
        t.start()
    assert wait_until(lambda: engine.stats.running == 2 and engine.stats.waiting == 1)
    text = httpx.get(f"{url}/metrics").text
    samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples["vllm:num_requests_running"] == 2
    assert samples["vllm:num_requests_waiting"] == 1
    assert samples["vllm:kv_cache_usage_perc"] == 1.0
    for name in ("prompt_tokens_total", "generation_tokens_total", "num_preemptions_total"):
        assert f"vllm:{name}" in samples
    for t in threads:
        t.join()
    started = time.monotonic()
    assert wait_until(lambda: engine.stats.running == 0)
    assert time.monotonic() - started < 1.0


@pytest.mark.req("OC-HARNESS-8405")
def test_divergent_replica_departs_at_diverge_at(server: SimServer) -> None:
    req = body("[[sim tokens=5 diverge_at=2]] same", seed=4, return_token_ids=True)

    def ids() -> list[int]:
        data = chunks(httpx.post(f"{server.url}/v1/completions", json=req).text)
        return [c["choices"][0]["token_ids"][0] for c in data]

    server.fresh("vllm", model=MODEL)
    normal = ids()
    server.fresh("vllm", model=MODEL, divergent_salt="replica-b")
    divergent = ids()
    assert normal == [tid for tid, _ in iter_tokens("same", 4, 5)]
    assert divergent[:2] == normal[:2]
    assert all(d != n for d, n in zip(divergent[2:], normal[2:], strict=True))


@pytest.mark.req("OC-HARNESS-8404")
@pytest.mark.parametrize("null_usage", [True, False])
def test_ordinary_chunks_carry_usage_null_or_no_usage_key(
    server: SimServer, null_usage: bool
) -> None:
    """vLLM's completions stream serializes each chunk with every field, unset ones too
    (`chunk.model_dump_json(exclude_unset=False)` in vllm-project/vllm
    vllm/entrypoints/openai/serving_completion.py @2d5f987d and @00463e62), so ordinary chunks
    carry `"usage": null`; servers that leave unset fields out send no `usage` key
    (`null_usage=False`). Either way only the `include_usage` chunk has a usage object."""
    server.fresh("vllm", {"null_usage": null_usage}, model=MODEL)
    options = {"stream_options": {"include_usage": True}}
    answer = httpx.post(f"{server.url}/v1/completions", json=body("u", max_tokens=2, **options))
    got = chunks(answer.text)
    ordinary, last = got[:-1], got[-1]
    assert len(ordinary) == 2
    for chunk in ordinary:
        assert ("usage" in chunk) is null_usage
        assert chunk.get("usage") is None
    assert last["choices"] == [] and last["usage"]["completion_tokens"] == 2


@pytest.mark.req("OC-HARNESS-8404")
def test_health_is_503_with_no_body_once_the_engine_died(sim: tuple[str, SimEngine]) -> None:
    """vLLM's `/health` returns `Response(status_code=503)` when `check_health()` raises
    `EngineDeadError` (vllm-project/vllm vllm/entrypoints/serve/instrumentator/health.py
    @98b137c6)."""
    url, engine = sim
    assert httpx.get(f"{url}/health").status_code == 200
    engine.state = "dead"
    dead = httpx.get(f"{url}/health")
    assert (dead.status_code, dead.content) == (503, b"")
