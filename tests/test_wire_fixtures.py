"""Recorded wire transcripts of vLLM, TGI and Triton (tests/fixtures/wire): every adapter
parses them, every simulator reproduces their structure.

Each transcript cites the upstream source its facts come from (see the fixture README). The
adapter side replays the transcript's answers over `httpx.MockTransport` and checks what the
adapter makes of them; the simulator side sends the transcript's request to the simulator
(configured as the transcript says) and compares the answer's structure with the
transcript's: status, content type, SSE framing, and the keys and JSON types of each run of
events. Values (text, ids, timings) are not compared.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from llama_orch.engine_sim.engine import SimConfig
from llama_orch.engine_sim.server import build_servers
from llama_orch.reference_impl.adapters import (
    AdapterError,
    CompletionRequest,
    SamplerParams,
    TokenEvent,
)
from llama_orch.reference_impl.adapters.tgi import TgiAdapter
from llama_orch.reference_impl.adapters.triton import TritonAdapter
from llama_orch.reference_impl.adapters.vllm import VllmAdapter
from tests._wire_shape import differences, shape, sse_blocks, sse_json

ROOT = Path(__file__).resolve().parent / "fixtures" / "wire"
FIXTURES = sorted(ROOT.glob("*/*.json"))
GREEDY = SamplerParams(temperature=0.0, top_k=1, top_p=1.0, min_p=0.0)
FINISH = {"length": "length", "stop": "stop"}


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def ids(paths: list[Path]) -> list[str]:
    return [f"{p.parent.name}/{p.stem}" for p in paths]


def _answer(response: dict[str, Any]) -> httpx.Response:
    headers = response.get("headers") or {}
    if "sse" in response:
        text = "".join(block + "\n\n" for block in response["sse"])
        return httpx.Response(response["status"], headers=headers, text=text)
    if "body" in response:
        content = json.dumps(response["body"], ensure_ascii=False).encode()
        return httpx.Response(response["status"], headers=headers, content=content)
    return httpx.Response(response["status"], headers=headers, text=response.get("text", ""))


class Replay:
    """A MockTransport handler answering each request with the transcript's answer for the
    same method and path; records what the adapter sent."""

    def __init__(self, fixture: dict[str, Any]) -> None:
        self.exchanges = fixture["exchanges"]
        self.sent: list[tuple[str, str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.sent.append((request.method, request.url.path, body))
        for exchange in self.exchanges:
            want = exchange["request"]
            if (want["method"], want["path"]) == (request.method, request.url.path):
                return _answer(exchange["response"])
        return httpx.Response(599, text=f"no transcript answer for {request.url.path}")


def make_adapter(fixture: dict[str, Any], replay: Replay, **extra: Any) -> Any:
    transport = httpx.MockTransport(replay)
    common = {"model_ref": "repo:wire/fixture", "ctx_max": 4096, "transport": transport}
    engine = fixture["engine"]
    if engine == "vllm":
        spec = fixture["adapter"].get("stream") or {}
        return VllmAdapter(
            "w0",
            "http://engine",
            served_model_name=spec.get("served_model_name", "model"),
            return_token_ids=spec.get("return_token_ids", True),
            **common,
            **extra,
        )
    if engine == "tgi":
        return TgiAdapter("w0", "http://engine", **common, **extra)
    extra.setdefault("metrics_url", "http://engine-metrics/metrics")
    return TritonAdapter("w0", "http://engine", model_name="ensemble", **common, **extra)


async def _stream(adapter: Any, spec: dict[str, Any]) -> tuple[list[TokenEvent], Any, Any]:
    req = CompletionRequest(
        "wire", spec["prompt"], spec["max_tokens"], spec.get("seed", 0), GREEDY, "wire"
    )
    events: list[TokenEvent] = []
    stream = adapter.stream(req)
    try:
        async for event in stream:
            events.append(event)
    except AdapterError as exc:
        return events, None, exc
    return events, stream.end, None


def _check_stream(fixture: dict[str, Any], replay: Replay, result: Any) -> None:
    expect = fixture["adapter"]["expect"]
    events, end, error = result
    assert [e.text for e in events] == expect["texts"]
    if "token_ids" in expect:
        assert [e.token_id for e in events] == expect["token_ids"]
    if "error" in expect:
        assert error is not None and error.code == expect["error"], error
        if "permanent" in expect:
            assert error.permanent is expect["permanent"]
        return
    assert error is None, error
    assert end.tokens_out == expect["tokens_out"]
    assert end.finish_reason == FINISH[expect["finish"]]
    for key, value in (expect.get("sent") or {}).items():
        body = next(b for m, _, b in replay.sent if m == "POST")
        assert body[key] == value, body


@pytest.mark.req("OC-ADAPT-5020", "OC-ADAPT-5040", "OC-ADAPT-5060")
@pytest.mark.parametrize("path", FIXTURES, ids=ids(FIXTURES))
def test_the_adapter_reads_the_transcript(path: Path) -> None:
    fixture = load(path)
    plan = fixture["adapter"]
    replay = Replay(fixture)

    async def scenario() -> Any:
        extra = {"metrics_url": plan["metrics"]["metrics_url"]} if "metrics" in plan else {}
        adapter = make_adapter(fixture, replay, **extra)
        try:
            if "stream" in plan:
                return await _stream(adapter, plan["stream"])
            if "health" in plan:
                return await adapter.health()
            with pytest.raises(AdapterError) as info:
                await adapter.metrics()
            return info.value
        finally:
            await adapter.close()

    result = asyncio.run(scenario())
    if "stream" in plan:
        _check_stream(fixture, replay, result)
    elif "health" in plan:
        want = plan["health"]
        assert (result.live, result.ready) == (want["live"], want["ready"])
        assert want["detail_contains"] in (result.detail or "")
    else:
        want = plan["metrics"]
        assert result.code == want["error"] and want["message_contains"] in result.message


# -- the simulators against the transcripts ----------------------------------------------------


def _runs(blocks: list[str]) -> list[Any]:
    """An SSE body as runs of events: (framing, shape) with consecutive equal ones merged."""
    out: list[Any] = []
    for block in blocks:
        framing = "data: " if block.startswith("data: ") else block.split(":", 1)[0] + ":"
        _field, value = sse_json(block)
        item = (framing, shape(value) if not isinstance(value, str) else value)
        if not out or out[-1] != item:
            out.append(item)
    return out


def _summary(status: int, headers: dict[str, str], answer: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "status": status,
        "content_type": headers.get("content-type", "").replace(" ", ""),
    }
    if "sse" in answer:
        summary["events"] = _runs(answer["sse"])
    elif "body" in answer:
        summary["body"] = shape(answer["body"])
    else:
        summary["text"] = answer.get("text", "")
    return summary


def _sim_answer(fixture: dict[str, Any]) -> dict[str, Any]:
    plan = fixture["sim"]
    exchange = fixture["exchanges"][plan["request"]]
    request = exchange["request"]
    config = SimConfig(fixture["engine"], model=plan.get("model", "sim/tiny-llama"))
    servers = build_servers(config, **plan.get("options", {}))
    servers.engine.state = plan.get("state", "ready")

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=servers.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
            body = plan.get("body", request.get("body"))
            return await client.request(request["method"], request["path"], json=body)

    response = asyncio.run(call())
    answer: dict[str, Any]
    wanted = exchange["response"]
    if "sse" in wanted:
        answer = {"sse": sse_blocks(response.text)}
    elif "body" in wanted:
        answer = {"body": response.json()}
    else:
        answer = {"text": response.text}
    return _summary(response.status_code, dict(response.headers), answer)


@pytest.mark.req("OC-HARNESS-8404")
@pytest.mark.parametrize("path", FIXTURES, ids=ids(FIXTURES))
def test_the_simulator_reproduces_the_transcript(path: Path) -> None:
    fixture = load(path)
    exchange = fixture["exchanges"][fixture["sim"]["request"]]
    response = exchange["response"]
    expected = _summary(response["status"], response.get("headers") or {}, response)
    got = _sim_answer(fixture)
    if not (response.get("headers") or {}).get("content-type"):
        got.pop("content_type")  # the transcript names no content type (status-only answers)
        expected.pop("content_type")
    found = differences(_tuples(expected), _tuples(got))
    assert not found, f"{path.name}: simulator differs from the transcript:\n" + "\n".join(found)


def _tuples(summary: dict[str, Any]) -> Any:
    """Event runs compare position by position (a list of runs is one value per position)."""
    if "events" in summary:
        summary = {**summary, "events": {str(i): run for i, run in enumerate(summary["events"])}}
        summary["events"] = {
            k: {"framing": f, "shape": s} for k, (f, s) in summary["events"].items()
        }
    return summary


def test_every_transcript_cites_its_source() -> None:
    """A transcript without a source could not be checked against upstream."""
    assert FIXTURES, "no wire transcripts found"
    for path in FIXTURES:
        fixture = load(path)
        assert fixture["source"], path
        for source in fixture["source"]:
            assert source["repo"] and source["path"], (path, source)
            assert source.get("commit") or source.get("version"), (path, source)
