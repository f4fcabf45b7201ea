"""The llama.cpp simulator speaks llama-server's native wire format byte for byte.

Raw HTTP against the app on a loopback port: field names of partial and final events, no
`[DONE]`, the `error:` line of a mid-stream failure, status codes and bodies of refusals,
`llamacpp:` metric names, and that a client disconnect frees the slot. `SimServer` (one uvicorn
thread per module, a fresh simulator app per test) is shared with the other engine tests.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llama_orch.engine_sim.engine import SimConfig, SimEngine
from llama_orch.engine_sim.tokens import iter_tokens
from tests._server import free_port, serve_asgi


class SimServer:
    """A loopback ASGI server whose app each test swaps for a fresh simulator."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    def fresh(
        self, protocol: str, options: dict[str, Any] | None = None, **config: Any
    ) -> SimEngine:
        """A new simulator of `protocol` (its `create_app` `options`) behind this server."""
        engine = SimEngine(SimConfig(protocol, **config))
        module = importlib.import_module(f"llama_orch.engine_sim.{protocol}")
        self.app = module.create_app(engine, **(options or {}))
        return engine


@contextlib.contextmanager
def sim_server() -> Iterator[SimServer]:
    port = free_port()
    sim = SimServer(f"http://127.0.0.1:{port}")
    with serve_asgi(sim, port=port, what="simulator"):
        yield sim


def wait_until(check: Callable[[], bool], timeout_s: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


@pytest.fixture(scope="module")
def server() -> Iterator[SimServer]:
    with sim_server() as sim:
        yield sim


@pytest.fixture
def sim(server: SimServer) -> tuple[str, SimEngine]:
    return server.url, server.fresh("llamacpp", engine_version="b4242-abc1234", slots=2)


def blocks(text: str) -> list[tuple[str, Any]]:
    """(field, parsed JSON) per SSE block; every block is exactly one line plus a blank."""
    out = []
    for block in text.split("\n\n"):
        if block:
            assert "\n" not in block, block
            field, _, value = block.partition(": ")
            out.append((field, json.loads(value)))
    assert text.endswith("\n\n")
    return out


PARTIAL_KEYS = {"index", "content", "tokens", "stop", "id_slot", "tokens_predicted"}
FINAL_KEYS = {"model", "generation_settings", "prompt", "truncated", "stop_type", "timings"}
TIMING_KEYS = {"prompt_n", "prompt_ms", "predicted_n", "predicted_ms", "predicted_per_second"}


@pytest.mark.req("OC-HARNESS-8404", "OC-HARNESS-8405")
def test_stream_framing_partial_and_final_events(sim: tuple[str, SimEngine]) -> None:
    url, _ = sim
    body = {"prompt": "[[sim tokens=4]] hello world", "n_predict": 10, "seed": 9}
    r = httpx.post(f"{url}/completion", json={**body, "stream": True, "return_tokens": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert "[DONE]" not in r.text
    events = blocks(r.text)
    assert [f for f, _ in events] == ["data"] * 5
    parts, final = [e for _, e in events[:-1]], events[-1][1]
    expected = list(iter_tokens("hello world", 9, 4))
    assert [p["tokens"] for p in parts] == [[tid] for tid, _ in expected]
    assert [p["content"] for p in parts] == [text for _, text in expected]
    assert all(
        PARTIAL_KEYS | {"tokens_evaluated"} <= p.keys() and p["stop"] is False for p in parts
    )
    assert [p["tokens_predicted"] for p in parts] == [1, 2, 3, 4]
    assert {p["id_slot"] for p in parts} == {-1} and final["id_slot"] == 0
    assert final["stop"] is True and final["content"] == "" and FINAL_KEYS <= final.keys()
    assert TIMING_KEYS <= final["timings"].keys() and final["timings"]["predicted_n"] == 4
    assert final["stop_type"] == "eos"  # the directive's count, below n_predict
    assert final["generation_settings"]["seed"] == 9


@pytest.mark.req("OC-HARNESS-8404")
def test_limit_stop_type_and_ids_only_when_asked(sim: tuple[str, SimEngine]) -> None:
    url, engine = sim
    r = httpx.post(f"{url}/completion", json={"prompt": "x", "n_predict": 3, "stream": True})
    events = blocks(r.text)
    assert all(e["tokens"] == [] for _, e in events)
    assert events[-1][1]["stop_type"] == "limit"
    assert engine.last_request == {"prompt": "x", "n_predict": 3, "stream": True}


@pytest.mark.req("OC-HARNESS-8405")
def test_non_streaming_answer(sim: tuple[str, SimEngine]) -> None:
    url, _ = sim
    r = httpx.post(
        f"{url}/completion",
        json={"prompt": "abc", "n_predict": 3, "seed": 2, "return_tokens": True},
    )
    answer = r.json()
    expected = list(iter_tokens("abc", 2, 3))
    assert answer["stop"] is True and answer["stop_type"] == "limit"
    assert answer["tokens"] == [tid for tid, _ in expected]
    assert answer["content"] == "".join(text for _, text in expected)


@pytest.mark.req("OC-HARNESS-8403")
@pytest.mark.parametrize(
    ("prompt", "named"),
    [
        ("[[sim tokens=2 bogus=1]] x", "bogus"),
        ("[[sim tokens=1 tokens=2]] x", "twice"),
        ("[[sim tokens=-1]] x", "tokens"),
        ("[[sim tokens=3 x", "unterminated"),
    ],
)
def test_malformed_directive_is_llamacpp_400(
    sim: tuple[str, SimEngine], prompt: str, named: str
) -> None:
    url, engine = sim
    r = httpx.post(f"{url}/completion", json={"prompt": prompt, "stream": True})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == 400 and error["type"] == "invalid_request_error"
    assert named in error["message"]
    assert engine.stats.requests == 0  # nothing partly applied


@pytest.mark.req("OC-HARNESS-8403")
@pytest.mark.parametrize("body", ['{"prompt": 5}', '{"prompt": "x", "n_predict": "many"}', "[1]"])
def test_bad_request_bodies(sim: tuple[str, SimEngine], body: str) -> None:
    url, _ = sim
    r = httpx.post(f"{url}/completion", content=body)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_unparsable_json_and_unknown_paths_answer_like_llama_server(
    sim: tuple[str, SimEngine],
) -> None:
    """Measured on llama-server b1-0c1e570 (tests/test_sim_vs_real_llamacpp.py compares the
    two): a body that is not JSON is nlohmann's parse error as `500 server_error`; an unknown
    path is `404 not_found_error`; JSON answers are `application/json; charset=utf-8`."""
    url, _ = sim
    bad = httpx.post(f"{url}/completion", content="not json")
    assert bad.status_code == 500 and bad.json()["error"]["type"] == "server_error"
    assert "parse_error" in bad.json()["error"]["message"]
    missing = httpx.get(f"{url}/v2/health/ready")
    assert missing.status_code == 404
    assert missing.json() == {
        "error": {"message": "File Not Found", "type": "not_found_error", "code": 404}
    }
    assert missing.headers["content-type"] == "application/json; charset=utf-8"


@pytest.mark.req("OC-HARNESS-8404")
def test_overload_is_503_unavailable_error(sim: tuple[str, SimEngine]) -> None:
    url, _ = sim
    body = {"prompt": "[[sim overload=2]] same", "stream": True}
    codes = [httpx.post(f"{url}/completion", json=body).status_code for _ in range(3)]
    assert codes == [503, 503, 200]
    r = httpx.post(f"{url}/completion", json={"prompt": "[[sim overload=true]] y"})
    assert r.status_code == 503
    assert r.json()["error"]["type"] == "unavailable_error" and r.json()["error"]["code"] == 503


@pytest.mark.req("OC-HARNESS-8404")
def test_mid_stream_failure_is_an_error_line(sim: tuple[str, SimEngine]) -> None:
    url, _ = sim
    body = {"prompt": "[[sim tokens=5 fail_after=2]] z", "stream": True, "return_tokens": True}
    r = httpx.post(f"{url}/completion", json=body)
    assert r.status_code == 200
    events = blocks(r.text)
    assert [f for f, _ in events] == ["data", "data", "error"]
    assert events[-1][1]["code"] == 500 and events[-1][1]["type"] == "server_error"
    r0 = httpx.post(f"{url}/completion", json={**body, "prompt": "[[sim fail_after=0]] z"})
    assert [f for f, _ in blocks(r0.text)] == ["error"]


@pytest.mark.req("OC-HARNESS-8404")
def test_disconnect_frees_the_slot_within_a_token_interval(sim: tuple[str, SimEngine]) -> None:
    url, engine = sim
    body = {"prompt": "[[sim tokens=500 itl_ms=20]] long", "stream": True}
    with httpx.stream("POST", f"{url}/completion", json=body) as r:
        lines = r.iter_lines()
        assert next(lines).startswith("data: ")
        assert engine.stats.running == 1
        slots = httpx.get(f"{url}/slots").json()
        assert [s["is_processing"] for s in slots] == [True, False]
    assert wait_until(lambda: engine.stats.running == 0, 1.0)
    assert engine.stats.generated_tokens < 20
    assert not any(s["is_processing"] for s in httpx.get(f"{url}/slots").json())


@pytest.mark.req("OC-HARNESS-8404")
def test_ttft_and_itl_are_lower_bounds(sim: tuple[str, SimEngine]) -> None:
    url, _ = sim
    start = time.monotonic()
    body = {"prompt": "[[sim tokens=3 ttft_ms=60 itl_ms=30]] t", "stream": True}
    r = httpx.post(f"{url}/completion", json=body)
    assert r.status_code == 200 and time.monotonic() - start >= 0.06 + 2 * 0.03


def test_health_props_and_slots(sim: tuple[str, SimEngine]) -> None:
    """Shapes of llama-server b1-0c1e570: `/props` `default_generation_settings` is
    `{params, n_ctx}`; a `/slots` entry has four fields until its slot ran a task, then also
    the task's id, prompt counts, `params` and a `next_token` list."""
    url, engine = sim
    assert httpx.get(f"{url}/health").json() == {"status": "ok"}
    props = httpx.get(f"{url}/props").json()
    assert props["build_info"] == "b4242-abc1234" and props["total_slots"] == 2
    assert props["default_generation_settings"]["n_ctx"] == 4096
    assert props["default_generation_settings"]["params"]["samplers"][0] == "penalties"
    assert {"model_path", "chat_template", "modalities"} <= props.keys()
    slots = httpx.get(f"{url}/slots").json()
    assert [s["id"] for s in slots] == [0, 1]
    assert {"id", "n_ctx", "speculative", "is_processing"} <= slots[0].keys()
    assert httpx.get(f"{url}/slots?fail_on_no_slot=1").status_code == 200
    httpx.post(f"{url}/completion", json={"prompt": "[[sim tokens=1]] x", "seed": 5})
    used = next(s for s in httpx.get(f"{url}/slots").json() if "id_task" in s)
    assert used["params"]["seed"] == 5 and isinstance(used["next_token"], list)
    engine.state = "loading"
    try:
        loading = httpx.get(f"{url}/health")
    finally:
        engine.state = "ready"
    assert loading.status_code == 503
    assert loading.json()["error"] == {
        "code": 503,
        "message": "Loading model",
        "type": "unavailable_error",
    }


def test_busy_slots_metrics_and_fail_on_no_slot(sim: tuple[str, SimEngine]) -> None:
    url, engine = sim

    def hold() -> None:
        httpx.post(f"{url}/completion", json={"prompt": "[[sim tokens=1 hold_ms=300]] h"})

    threads = [threading.Thread(target=hold) for _ in range(3)]
    for t in threads:
        t.start()
    assert wait_until(lambda: engine.stats.running == 2 and engine.stats.waiting == 1)
    assert httpx.get(f"{url}/slots?fail_on_no_slot=1").status_code == 503
    text = httpx.get(f"{url}/metrics").text
    samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples["llamacpp:requests_processing"] == 2
    assert samples["llamacpp:requests_deferred"] == 1
    assert samples["llamacpp:kv_cache_usage_ratio"] == 1.0
    for name in ("prompt_tokens_total", "tokens_predicted_total", "n_decode_total"):
        assert f"llamacpp:{name}" in samples
    assert "# TYPE llamacpp:requests_processing gauge" in text
    for t in threads:
        t.join()


def test_tokenize_and_detokenize(sim: tuple[str, SimEngine]) -> None:
    url, engine = sim
    ids = httpx.post(f"{url}/tokenize", json={"content": "a b c"}).json()["tokens"]
    assert ids == engine.tokenize("a b c") and len(ids) == 3
    pieces = httpx.post(f"{url}/tokenize", json={"content": "a b", "with_pieces": True}).json()
    assert [p["piece"] for p in pieces["tokens"]] == ["a", "b"]
    content = httpx.post(f"{url}/detokenize", json={"tokens": [1, 2]}).json()["content"]
    assert isinstance(content, str) and content
    assert httpx.post(f"{url}/detokenize", json={"tokens": "x"}).status_code == 400


@pytest.mark.req("OC-HARNESS-8404")
def test_repetition_penalty_acts_only_when_the_chain_names_it(sim: tuple[str, SimEngine]) -> None:
    """llama.cpp adds the penalties sampler only for "penalties" in `samplers`
    (ggml-org/llama.cpp common/sampling.cpp @00efb3e1, `common_sampler_init`); b1-0c1e570's
    default chain starts with it. The simulator gives other tokens for an active penalty and
    ignores one that the chain does not name."""
    url, _ = sim

    def ids(**extra: Any) -> list[int]:
        body = {"prompt": "p q", "n_predict": 4, "seed": 9, "return_tokens": True, **extra}
        return httpx.post(f"{url}/completion", json=body).json()["tokens"]

    plain = [tid for tid, _ in iter_tokens("p q", 9, 4)]
    assert ids() == plain  # default chain, repeat_penalty 1.0: nothing to apply
    assert ids(samplers=["top_k", "temperature"], repeat_penalty=1.3) == plain
    on = ids(samplers=["penalties", "top_k"], repeat_penalty=1.3)
    assert on != plain and on == ids(repeat_penalty=1.3)  # the default chain names it
    assert ids(samplers=["penalties"], repeat_penalty=1.0) == plain
