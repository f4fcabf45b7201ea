"""The Triton engine simulator speaks KServe v2 plus the generate extension as Triton does.

Raw HTTP against the ASGI app (httpx.ASGITransport): framing, field names, status codes,
metadata, configuration and metrics. Adapter contract tests live in test_adapter_triton.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx
import pytest

from llama_orch.engine_sim.engine import SimConfig, SimEngine
from llama_orch.engine_sim.tokens import iter_tokens
from llama_orch.engine_sim.triton import create_app, create_apps

T = TypeVar("T")
CFG = SimConfig("triton", model="meta/llama-3-8b", engine_version="2.52.0", slots=3, ctx=4096)
GEN = "/v2/models/ensemble/generate"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def calls(app: Any, *requests: tuple[str, str, Any]) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
        return [await client.request(m, p, json=b) for m, p, b in requests]


def call(method: str, path: str, body: Any = None, **kw: Any) -> httpx.Response:
    engine = kw.pop("engine", None) or SimEngine(CFG)
    return run(calls(create_app(engine, **kw), (method, path, body)))[0]


def events(text: str) -> list[dict[str, Any]]:
    """Decode a Triton stream, insisting on `data: {json}` framing."""
    blocks = [b for b in text.split("\n\n") if b]
    assert all(b.startswith("data: {") and "\n" not in b for b in blocks), blocks
    return [json.loads(b[len("data: ") :]) for b in blocks]


@pytest.mark.req("OC-HARNESS-8404", "OC-HARNESS-8405")
def test_stream_events_carry_model_and_text_output() -> None:
    body = {"text_input": "hello world", "max_tokens": 4, "stream": True, "seed": 5}
    resp = call("POST", f"{GEN}_stream", body)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    evs = events(resp.text)
    expected = list(iter_tokens("hello world", 5, 4))
    assert [e["text_output"] for e in evs] == [t for _, t in expected]
    for e in evs:
        assert (e["model_name"], e["model_version"]) == ("ensemble", "1")
        assert "output_ids" not in e  # the stock ensemble returns text only
    ids = call("POST", f"{GEN}_stream", body, output_ids=True)
    # a one-element tensor is written as a bare value (Triton's `ExactMappingOutput`)
    assert [e["output_ids"] for e in events(ids.text)] == [tid for tid, _ in expected]
    keys = [
        "batch_index",
        "context_logits",
        "cum_log_probs",
        "generation_logits",
        "model_name",
        "model_version",
        "output_log_probs",
        "sequence_end",
        "sequence_id",
        "sequence_index",
        "sequence_start",
        "text_output",
    ]
    assert [list(e) for e in evs] == [keys] * 4  # every output, in sorted order


def test_fields_under_parameters_are_accepted_and_top_level_wins() -> None:
    engine = SimEngine(CFG)
    body = {
        "text_input": "p",
        "max_tokens": 2,
        "parameters": {"max_tokens": 9, "seed": 5, "stream": True},
    }
    evs = events(call("POST", f"{GEN}_stream", body, engine=engine).text)
    assert [e["text_output"] for e in evs] == [t for _, t in iter_tokens("p", 5, 2)]
    assert engine.last_request == body  # type: ignore[attr-defined]


def test_without_stream_flag_one_event_carries_the_whole_text() -> None:
    evs = events(call("POST", f"{GEN}_stream", {"text_input": "w", "max_tokens": 3}).text)
    assert len(evs) == 1
    assert evs[0]["text_output"] == "".join(t for _, t in iter_tokens("w", 0, 3))
    one = call(
        "POST", "/v2/models/ensemble/versions/1/generate", {"text_input": "w", "max_tokens": 3}
    )
    assert one.status_code == 200
    assert one.headers["content-type"].startswith("application/json")
    assert one.json()["text_output"] == evs[0]["text_output"]


@pytest.mark.req("OC-HARNESS-8404")
def test_mid_stream_failure_is_an_error_object_with_status_200() -> None:
    body = {"text_input": "[[sim fail_after=2]] x", "max_tokens": 5, "stream": True}
    resp = call("POST", f"{GEN}_stream", body)
    assert resp.status_code == 200
    evs = events(resp.text)
    assert len(evs) == 3 and "text_output" in evs[1]
    assert set(evs[-1]) == {"error"} and "failure" in evs[-1]["error"]
    assert call("POST", GEN, body).status_code == 500


@pytest.mark.req("OC-HARNESS-8403", "OC-HARNESS-8404")
def test_refusals_before_inference_are_json_errors_with_a_status() -> None:
    engine = SimEngine(CFG)
    over = {"text_input": "[[sim overload=2]] busy", "max_tokens": 2, "stream": True}
    codes = [call("POST", f"{GEN}_stream", over, engine=engine).status_code for _ in range(3)]
    assert codes == [503, 503, 200]
    overloaded = call("POST", GEN, {**over, "text_input": "[[sim overload=true]] b"})
    assert overloaded.json() == {"error": "Exceeds maximum queue size"}
    bad = call(
        "POST", f"{GEN}_stream", {"text_input": "[[sim tokens=1 tokens=2]] q", "max_tokens": 2}
    )
    assert bad.status_code == 400
    assert bad.headers["content-type"].startswith("application/json")
    assert "given twice" in bad.json()["error"]
    missing = call("POST", GEN, {"text_input": "q"})
    assert missing.status_code == 400 and "max_tokens" in missing.json()["error"]
    assert call("POST", GEN, {"text_input": "q", "max_tokens": 2, "top_p": 3}).status_code == 400


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/nope",
        "/v2/models/nope/config",
        "/v2/models/nope/ready",
        "/v2/models/ensemble/versions/7",
        "/v2/models/nope/generate_stream",
    ],
)
def test_unknown_model_or_version_is_404(path: str) -> None:
    method = "POST" if path.endswith("stream") else "GET"
    resp = call(method, path, {"text_input": "q", "max_tokens": 1})
    assert resp.status_code == 404
    assert resp.json()["error"].startswith("Request for unknown model")


def test_health_server_and_model_metadata() -> None:
    app = create_app(SimEngine(CFG))
    live, ready, model_ready, server, meta, meta_v = run(
        calls(
            app,
            ("GET", "/v2/health/live", None),
            ("GET", "/v2/health/ready", None),
            ("GET", "/v2/models/ensemble/ready", None),
            ("GET", "/v2", None),
            ("GET", "/v2/models/ensemble", None),
            ("GET", "/v2/models/ensemble/versions/1", None),
        )
    )
    assert [r.status_code for r in (live, ready, model_ready)] == [200, 200, 200]
    assert live.content == b""
    assert server.json()["name"] == "triton" and server.json()["version"] == "2.52.0"
    assert "statistics" in server.json()["extensions"]
    assert meta.json() == meta_v.json()
    assert set(meta.json()) == {"name", "versions", "platform", "inputs", "outputs"}
    inputs = {i["name"]: i["datatype"] for i in meta.json()["inputs"]}
    assert inputs["text_input"] == "BYTES" and inputs["seed"] == "UINT64"
    assert "random_seed" not in inputs
    assert "min_p" not in inputs
    assert meta.json()["outputs"][0]["name"] == "text_output"


def test_config_records_the_trtllm_version_when_the_deployment_does() -> None:
    cfg = call("GET", "/v2/models/ensemble/config").json()
    assert cfg["parameters"] == {"trtllm_version": {"string_value": "sim-trtllm-1.0"}}
    assert cfg["max_batch_size"] == 3
    steps = [s["model_name"] for s in cfg["ensemble_scheduling"]["step"]]
    assert "tensorrt_llm" in steps
    bare = call("GET", "/v2/models/ensemble/config", trtllm_version=None).json()
    assert bare["parameters"] == {}
    named = call("GET", "/v2/models/llama/config", model_name="llama")
    assert named.json()["name"] == "llama"


def test_metrics_and_statistics() -> None:
    """Metrics come from the metrics server's app; the inference app answers `/metrics` with
    404 (see test_metrics_live_only_on_the_metrics_server)."""
    app, metrics_app = create_apps(SimEngine(CFG))
    ok = {"text_input": "m", "max_tokens": 2, "stream": True}
    *_, stats = run(
        calls(
            app,
            ("POST", f"{GEN}_stream", ok),
            ("POST", f"{GEN}_stream", {**ok, "text_input": "[[sim overload=true]] m"}),
            ("GET", "/v2/models/ensemble/stats", None),
        )
    )
    (metrics,) = run(calls(metrics_app, ("GET", "/metrics", None)))
    lines = set(metrics.text.splitlines())
    mv = 'model="ensemble",version="1"'
    trt = 'model="tensorrt_llm",version="1"'
    assert {
        f"nv_inference_request_success{{{mv}}} 1",
        f"nv_inference_count{{{mv}}} 1",
        f"nv_inference_pending_request_count{{{mv}}} 0",
        f'nv_inference_request_failure{{{mv},reason="REJECTED"}} 1',
        f'nv_trt_llm_request_metrics{{{trt},request_type="active"}} 0',
        f'nv_trt_llm_request_metrics{{{trt},request_type="max"}} 3',
        f'nv_trt_llm_request_metrics{{{trt},request_type="waiting"}} 0',
        f'nv_trt_llm_kv_cache_block_metrics{{{trt},kv_cache_block_type="fraction"}} 0.0',
    } <= lines
    for name in ("nv_inference_queue_duration_us", "nv_inference_request_duration_us"):
        assert f"# TYPE {name} counter" in metrics.text
    model = stats.json()["model_stats"][0]
    assert (model["name"], model["inference_count"]) == ("ensemble", 1)
    assert model["inference_stats"]["success"]["count"] == 1


@pytest.mark.req("OC-ADAPT-5060")
def test_metrics_live_only_on_the_metrics_server() -> None:
    """Triton serves Prometheus text only from its metrics server (`HTTPMetricsServer`, port
    8002 by default): `GET /metrics` there, `400` with no body for any other path; the
    inference server answers `/metrics` like any unknown path, `404 {"error":"Not Found"}`
    (`HTTPAPIServer::Handle`). Sources: triton-inference-server/server src/http_server.cc
    @00a165a6, docs/user_guide/metrics.md ("available at http://localhost:8002/metrics")."""
    app, metrics_app = create_apps(SimEngine(CFG))
    (on_api,) = run(calls(app, ("GET", "/metrics", None)))
    assert on_api.status_code == 404 and on_api.json() == {"error": "Not Found"}
    good, other = run(
        calls(metrics_app, ("GET", "/metrics", None), ("GET", "/v2/health/ready", None))
    )
    assert good.status_code == 200
    assert good.headers["content-type"] == "text/plain; charset=utf-8"
    assert "nv_inference_count" in good.text
    assert other.status_code == 400 and other.content == b""


@pytest.mark.req("OC-ADAPT-5060", "ORCH-3058")
def test_seed_input_name_follows_the_deployed_ensemble() -> None:
    """The TensorRT-LLM ensemble's seed input is `seed` (UINT64) in NVIDIA/TensorRT-LLM
    triton_backend/all_models/inflight_batcher_llm/ensemble/config.pbtxt @2a9abd95, and was
    `random_seed` in triton-inference-server/tensorrtllm_backend (same path, @fca166cc, up to
    v0.19.0). Triton binds a top-level key to the input of that name and makes any other key
    a request parameter the model ignores (src/http_server.cc `ExactMappingInput`), so the
    wrong name runs the request unseeded: two seeds give the same tokens."""
    for name, other in (("seed", "random_seed"), ("random_seed", "seed")):
        app = create_app(SimEngine(CFG), seed_input=name)
        meta, cfg = run(
            calls(
                app,
                ("GET", "/v2/models/ensemble", None),
                ("GET", "/v2/models/ensemble/config", None),
            )
        )
        assert name in {i["name"] for i in meta.json()["inputs"]}
        assert other not in {i["name"] for i in meta.json()["inputs"]}
        assert name in {i["name"] for i in cfg.json()["input"]}

        def texts(field: str, seed: int, app: Any = app) -> list[str]:
            body = {"text_input": "s", "max_tokens": 3, "stream": True, field: seed}
            (resp,) = run(calls(app, ("POST", f"{GEN}_stream", body)))
            return [e["text_output"] for e in events(resp.text)]

        assert texts(name, 5) == [t for _, t in iter_tokens("s", 5, 3)]
        assert texts(name, 5) != texts(name, 6)
        assert texts(other, 5) == texts(other, 6) == [t for _, t in iter_tokens("s", 0, 3)]


@pytest.mark.req("OC-ADAPT-5060")
def test_stream_needs_a_decoupled_model() -> None:
    """TensorRT-LLM refuses `stream: true` unless the model is decoupled ("Streaming is only
    supported if model is deployed using decoupled mode.", NVIDIA/TensorRT-LLM
    triton_backend/inflight_batcher_llm/src/utils.cc @19290813,
    `createRequestsFromInputTensors`). The refusal is the first response, which Triton sends
    as status 400 with an SSE `data: {"error": ...}` body on generate_stream
    (`GenerateRequestClass::InferResponseComplete`, src/http_server.cc @00a165a6). An
    ensemble's configuration reports `decoupled: true` when a step is decoupled
    (triton-inference-server/core src/ensemble_utils.cc @1b3d5b80)."""
    app = create_app(SimEngine(CFG), decoupled=False)
    cfg, stream, plain, once = run(
        calls(
            app,
            ("GET", "/v2/models/ensemble/config", None),
            ("POST", f"{GEN}_stream", {"text_input": "d", "max_tokens": 2, "stream": True}),
            ("POST", f"{GEN}_stream", {"text_input": "d", "max_tokens": 2}),
            ("POST", GEN, {"text_input": "d", "max_tokens": 2, "stream": True}),
        )
    )
    assert cfg.json()["model_transaction_policy"] == {"decoupled": False}
    assert stream.status_code == 400
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert events(stream.text) == [
        {"error": "Streaming is only supported if model is deployed using decoupled mode."}
    ]
    assert plain.status_code == 200 and len(events(plain.text)) == 1  # one whole response
    assert once.status_code == 400 and "decoupled" in once.json()["error"]
    (decoupled,) = run(
        calls(create_app(SimEngine(CFG)), ("GET", "/v2/models/ensemble/config", None))
    )
    assert decoupled.json()["model_transaction_policy"] == {"decoupled": True}


@pytest.mark.req("OC-ADAPT-5060")
def test_text_modes_of_the_postprocessing() -> None:
    """How the deployment detokenizes streamed responses. The stock ensemble's
    postprocessing decodes each response's tokens on their own (`tokenizer.batch_decode` per
    response, NVIDIA/TensorRT-LLM triton_backend/all_models/inflight_batcher_llm/
    postprocessing/1/model.py @2e2327b9): with a SentencePiece tokenizer a lone `▁word`
    decodes without its space. The BLS model with `accumulate_tokens` decodes all tokens so
    far (`Decoder.postprocess`, tensorrt_llm_bls/1/lib/decode.py @4db68284; the parameter in
    tensorrt_llm_bls/config.pbtxt @0193dbd4)."""
    words = [t for _, t in iter_tokens("w", 4, 3)]
    got = {}
    for mode in ("piece", "sentencepiece", "accumulate"):
        body = {"text_input": "w", "max_tokens": 3, "stream": True, "seed": 4}
        resp, cfg = run(
            calls(
                create_app(SimEngine(CFG), text_mode=mode),
                ("POST", f"{GEN}_stream", body),
                ("GET", "/v2/models/ensemble/config", None),
            )
        )
        got[mode] = ([e["text_output"] for e in events(resp.text)], cfg.json())
    assert got["piece"][0] == words
    assert got["sentencepiece"][0] == [w.lstrip(" ") for w in words]
    assert got["accumulate"][0] == ["".join(words[: i + 1]) for i in range(3)]
    assert got["accumulate"][1]["parameters"]["accumulate_tokens"] == {"string_value": "true"}
    assert "accumulate_tokens" not in got["piece"][1]["parameters"]


def test_not_ready_is_400_on_server_and_model_readiness() -> None:
    """Triton answers readiness with a status only: `200`, or `400` (`EVHTP_RES_BADREQ`, not
    503) when not ready; model readiness says `{"error":"Model version not ready"}`
    (`HandleServerHealth`, `HandleModelReady`, src/http_server.cc @00a165a6)."""
    engine = SimEngine(CFG)
    engine.state = "loading"
    app = create_app(engine)
    live, ready, model = run(
        calls(
            app,
            ("GET", "/v2/health/live", None),
            ("GET", "/v2/health/ready", None),
            ("GET", "/v2/models/ensemble/ready", None),
        )
    )
    assert (live.status_code, ready.status_code, ready.content) == (200, 400, b"")
    assert model.status_code == 400 and model.json() == {"error": "Model version not ready"}
    engine.state = "dead"
    (live,) = run(calls(app, ("GET", "/v2/health/live", None)))
    assert live.status_code == 400
