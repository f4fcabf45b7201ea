"""The TGI engine simulator speaks TGI's wire protocol: framing, fields, status codes, metrics.

Raw HTTP against the ASGI app (httpx.ASGITransport), so these checks see exactly the bytes an
adapter would, without a socket. The adapter contract tests live in test_adapter_tgi.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx
import pytest

from llama_orch.engine_sim.engine import SimConfig, SimEngine
from llama_orch.engine_sim.tgi import create_app
from llama_orch.engine_sim.tgi_wire import EOS_ID
from llama_orch.engine_sim.tokens import iter_tokens

T = TypeVar("T")
CFG = SimConfig("tgi", model="bigscience/bloom-560m", engine_version="2.4.1", slots=2, ctx=64)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def call(
    method: str,
    path: str,
    body: Any = None,
    *,
    engine: SimEngine | None = None,
    app: Any = None,
    **kw: Any,
) -> httpx.Response:
    app = app or create_app(engine or SimEngine(CFG), **kw)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
        return await client.request(method, path, json=body)


def events(text: str) -> list[dict[str, Any]]:
    """Decode a TGI stream, insisting on its exact `data:{json}` framing."""
    blocks = [b for b in text.split("\n\n") if b]
    assert all(b.startswith("data:{") and "\n" not in b for b in blocks), blocks
    return [json.loads(b[len("data:") :]) for b in blocks]


def gen(prompt: str, **params: Any) -> dict[str, Any]:
    return {"inputs": prompt, "parameters": params}


@pytest.mark.req("OC-HARNESS-8404", "OC-HARNESS-8405")
def test_stream_framing_token_fields_and_length_finish() -> None:
    body = gen("hello world", max_new_tokens=3, seed=9, details=True, do_sample=True)
    resp = run(call("POST", "/generate_stream", body))
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert "[DONE]" not in resp.text
    evs = events(resp.text)
    expected = list(iter_tokens("hello world", 9, 3))
    assert [e["index"] for e in evs] == [1, 2, 3]
    assert [(e["token"]["id"], e["token"]["text"]) for e in evs] == expected
    for e in evs:
        assert set(e) == {"index", "token", "generated_text", "details"}
        assert set(e["token"]) == {"id", "text", "logprob", "special"}
        assert e["token"]["special"] is False and isinstance(e["token"]["logprob"], float)
    assert [e["generated_text"] for e in evs[:-1]] == [None, None]
    assert [e["details"] for e in evs[:-1]] == [None, None]
    final = evs[-1]
    assert final["generated_text"] == "".join(t for _, t in expected)
    assert final["details"] == {
        "finish_reason": "length",
        "generated_tokens": 3,
        "seed": 9,
        "input_length": 2,
    }


@pytest.mark.req("OC-HARNESS-8404")
def test_directive_token_count_ends_with_a_special_eos_token() -> None:
    resp = run(call("POST", "/generate_stream", gen("[[sim tokens=2]] hi", max_new_tokens=5)))
    evs = events(resp.text)
    assert len(evs) == 3
    assert evs[-1]["token"] == {"id": EOS_ID, "text": "</s>", "logprob": -0.0001, "special": True}
    assert evs[-1]["generated_text"] == "".join(t for _, t in iter_tokens("hi", 0, 2))
    assert evs[-1]["details"] is None  # details were not asked for


@pytest.mark.req("OC-HARNESS-8404")
def test_mid_stream_failure_is_an_error_event_and_424_on_generate() -> None:
    prompt = "[[sim fail_after=2]] boom"
    evs = events(run(call("POST", "/generate_stream", gen(prompt, max_new_tokens=6))).text)
    assert len(evs) == 3 and all("token" in e for e in evs[:2])
    assert set(evs[-1]) == {"error", "error_type"}
    assert evs[-1]["error_type"] == "generation"
    resp = run(call("POST", "/generate", gen(prompt, max_new_tokens=6)))
    assert resp.status_code == 424
    assert resp.json()["error_type"] == "generation"


def refusal(resp: httpx.Response) -> dict[str, Any]:
    """The refusal of a `/generate_stream` request in TGI's in-band form: HTTP 200, an SSE
    body with exactly one `{"error", "error_type"}` event."""
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/event-stream")
    (event,) = events(resp.text)
    assert set(event) == {"error", "error_type"}, event
    return event


@pytest.mark.req("OC-HARNESS-8403", "OC-HARNESS-8404")
def test_stream_refusals_arrive_in_band_with_status_200() -> None:
    """TGI's router turns every error of `/generate_stream` into an SSE event with status
    200: `generate_stream_internal` yields `Err(err)`, `impl From<InferError> for Event` writes
    `{"error", "error_type"}`; overload (`InferError::Overloaded`, past
    `max_concurrent_requests`) included. Source: huggingface/text-generation-inference
    router/src/server.rs @003eaec0 (`generate_stream`, `generate_stream_internal`)."""
    engine = SimEngine(CFG)
    over = gen("[[sim overload=1]] busy", max_new_tokens=2)
    first = run(call("POST", "/generate_stream", over, engine=engine))
    assert refusal(first) == {"error": "Model is overloaded", "error_type": "overloaded"}
    # overload=1: only the first request with this prompt on this instance is refused
    again = run(call("POST", "/generate_stream", over, engine=engine))
    assert again.status_code == 200 and "token" in events(again.text)[0]
    bad = refusal(run(call("POST", "/generate_stream", gen("[[sim tokens=x]] q"))))
    assert bad["error_type"] == "validation" and "tokens" in bad["error"]


@pytest.mark.req("OC-HARNESS-8403")
def test_generate_and_the_status_option_use_the_status_form() -> None:
    """`/generate` answers refusals with a status (`impl From<InferError> for (StatusCode,
    Json<ErrorResponse>)`: Overloaded 429, Validation 422; router/src/server.rs @003eaec0);
    `inband_errors=False` plays that form on `/generate_stream` too."""
    over = gen("[[sim overload=true]] x", max_new_tokens=2)
    for path, kw in (("/generate", {}), ("/generate_stream", {"inband_errors": False})):
        resp = run(call("POST", path, over, **kw))
        assert resp.status_code == 429, path
        assert resp.json() == {"error": "Model is overloaded", "error_type": "overloaded"}
        bad = run(call("POST", path, gen("[[sim tokens=x]] q", max_new_tokens=2), **kw))
        assert bad.status_code == 422 and bad.json()["error_type"] == "validation"


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"temperature": 0}, "`temperature` must be strictly positive"),
        ({"top_k": 0}, "`top_k` must be strictly positive"),
        ({"top_p": 1.0}, "`top_p` must be > 0.0 and < 1.0"),
        ({"max_new_tokens": 0}, "`max_new_tokens` must be strictly positive"),
        ({"max_new_tokens": 64}, "must be <= 64"),
    ],
)
def test_parameter_validation_mirrors_tgi(params: dict[str, Any], needle: str) -> None:
    stream = refusal(run(call("POST", "/generate_stream", gen("hi there", **params))))
    assert stream["error_type"] == "validation" and needle in stream["error"]
    once = run(call("POST", "/generate", gen("hi there", **params)))
    assert once.status_code == 422 and once.json() == stream


def test_unknown_parameters_are_ignored_and_recorded() -> None:
    engine = SimEngine(CFG)
    body = gen("hi", max_new_tokens=1, min_p=0.05)
    assert run(call("POST", "/generate_stream", body, engine=engine)).status_code == 200
    assert engine.last_request == body  # type: ignore[attr-defined]


def test_generate_returns_text_details_and_tokens() -> None:
    resp = run(call("POST", "/generate", gen("[[sim tokens=2]] ab", max_new_tokens=4, details=1)))
    assert resp.status_code == 200
    out = resp.json()
    assert out["generated_text"] == "".join(t for _, t in iter_tokens("ab", 0, 2))
    assert out["details"]["finish_reason"] == "eos_token"
    assert out["details"]["generated_tokens"] == 3
    assert [t["special"] for t in out["details"]["tokens"]] == [False, False, True]
    assert resp.headers["x-generated-tokens"] == "3"
    compat = run(call("POST", "/", {**gen("ab", max_new_tokens=1), "stream": True}))
    assert len(events(compat.text)) == 1


@pytest.mark.req("OC-HARNESS-8404")
def test_ttft_is_a_lower_bound() -> None:
    start = time.perf_counter()
    run(call("POST", "/generate", gen("[[sim ttft_ms=60 tokens=1]] t", max_new_tokens=1)))
    assert time.perf_counter() - start >= 0.06


def test_health_info_and_metrics_names() -> None:
    assert run(call("GET", "/health")).status_code == 200
    info = run(call("GET", "/info")).json()
    for key in (
        "model_id",
        "model_sha",
        "model_pipeline_tag",
        "max_concurrent_requests",
        "max_best_of",
        "max_stop_sequences",
        "max_input_tokens",
        "max_total_tokens",
        "validation_workers",
        "max_client_batch_size",
        "router",
        "version",
        "sha",
        "docker_label",
    ):
        assert key in info
    assert (info["model_id"], info["version"]) == ("bigscience/bloom-560m", "2.4.1")
    assert (info["max_total_tokens"], info["max_concurrent_requests"]) == (64, 2)

    async def scenario() -> str:
        app = create_app(SimEngine(CFG))
        await call("POST", "/generate_stream", gen("a", max_new_tokens=1), app=app)
        await call("POST", "/generate_stream", gen("[[sim overload=true]] a"), app=app)
        return (await call("GET", "/metrics", app=app)).text

    text = run(scenario())
    lines = set(text.splitlines())
    assert {
        "tgi_queue_size 0",
        "tgi_batch_current_size 0",
        "tgi_request_count 2",
        "tgi_request_success 1",
        'tgi_request_failure{err="overloaded"} 1',
    } <= lines
    for name in (
        "tgi_batch_current_max_tokens",
        "tgi_request_duration",
        "tgi_request_queue_duration",
        "tgi_request_mean_time_per_token_duration",
        "tgi_request_generated_tokens",
        "tgi_request_input_length",
    ):
        assert f"# TYPE {name} " in text


@pytest.mark.req("OC-HARNESS-8404")
def test_split_multibyte_streams_empty_text_tokens_with_real_ids() -> None:
    """TGI sends `text: ""` for a token after which the decoded output ends inside a
    multibyte character, and the whole character with the token that completes it
    (`Model.decode_token`, huggingface/text-generation-inference
    server/text_generation_server/models/model.py @00359fcd). With `split_multibyte` the
    simulator streams each non-ASCII word that way: a lead byte token, then the word."""
    prompt = next(
        f"m{n}" for n in range(500) if any(not t.isascii() for _, t in iter_tokens(f"m{n}", 3, 4))
    )
    words = list(iter_tokens(prompt, 3, 4))
    body = gen(f"[[sim tokens=4]] {prompt}", max_new_tokens=20, seed=3, do_sample=True)
    resp = run(call("POST", "/generate_stream", {**body}, split_multibyte=True))
    evs = events(resp.text)
    tokens = [e["token"] for e in evs if not e["token"]["special"]]
    assert [t["text"] for t in tokens if t["text"]] == [w for _, w in words]
    empty = [t for t in tokens if t["text"] == ""]
    assert len(empty) == sum(not w.isascii() for _, w in words)
    assert all(isinstance(t["id"], int) and t["logprob"] < 0 for t in empty)
    assert evs[-1]["generated_text"] == "".join(w for _, w in words)
    cut = run(
        call(
            "POST",
            "/generate",
            gen(prompt, max_new_tokens=1, seed=3, do_sample=True),
            split_multibyte=True,
        )
    ).json()
    first = words[0][1]
    assert cut["generated_text"] == (first if first.isascii() else "\ufffd")


@pytest.mark.req("OC-HARNESS-8404")
def test_details_only_when_requested() -> None:
    """The last stream event carries `details` only for `parameters.details: true`, else
    `null` (`StreamResponse.details: Option<StreamDetails>`, router/src/lib.rs; filled in
    `generate_stream_internal`, router/src/server.rs @003eaec0)."""
    plain = events(run(call("POST", "/generate_stream", gen("d", max_new_tokens=2))).text)
    asked = events(
        run(call("POST", "/generate_stream", gen("d", max_new_tokens=2, details=True))).text
    )
    assert plain[-1]["details"] is None and plain[-1]["generated_text"]
    assert asked[-1]["details"]["finish_reason"] == "length"
    assert asked[-1]["details"]["generated_tokens"] == 2


@pytest.mark.req("OC-HARNESS-8404")
def test_health_is_503_with_tgi_healthcheck_body_when_not_ready() -> None:
    """`GET /health`: 200 with no body, or 503 `{"error":"unhealthy","error_type":
    "healthcheck"}` (router/src/server.rs @003eaec0, `health`)."""
    engine = SimEngine(CFG)
    ok = run(call("GET", "/health", engine=engine))
    engine.state = "loading"
    down = run(call("GET", "/health", engine=engine))
    assert (ok.status_code, ok.content) == (200, b"")
    assert down.status_code == 503
    assert down.json() == {"error": "unhealthy", "error_type": "healthcheck"}
