"""The faulty-target proxy itself (fast): each mode changes what it says, and nothing else.

The fault and benign suites are only as good as their proxy: a mode that did not put its fault
on the wire would let them pass without proving anything. One reference, one proxy, a handful
of requests per mode, checked with plain httpx and the harness's own SSE decoder.
"""

from __future__ import annotations

import contextlib
import time

import httpx
import pytest

from llama_orch.harness.client import task_body
from llama_orch.harness.embedded import embedded_reference
from llama_orch.harness.sse import SseDecoder
from tests.fixtures.faulty.benign import BENIGN
from tests.fixtures.faulty.faults import FAULTS
from tests.fixtures.faulty.proxy import registry, serving


@pytest.fixture(scope="module")
def proxied():
    with (
        embedded_reference() as (upstream, key, _),
        serving(upstream, "passthrough", key) as (url, proxy),
    ):
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
            yield client, proxy


@contextlib.contextmanager
def mode(proxied, name: str):
    client, proxy = proxied
    proxy.use(name)
    try:
        yield client
    finally:
        proxy.use("passthrough")
        proxy.reset()


def _submit(client: httpx.Client, prompt: str = "[[sim tokens=3]] proxy", **kw) -> str:
    body = task_body(engine="llamacpp", model_ref="repo:mock/tiny-llama", prompt=prompt, **kw)
    resp = client.post("/v1/tasks", json=body)
    assert resp.status_code == 202, resp.text
    return body["task_id"]


def _stream(client: httpx.Client, task_id: str) -> tuple[httpx.Response, list]:
    resp = client.get(f"/v1/tasks/{task_id}/stream")
    decoder = SseDecoder()
    events = decoder.feed(resp.text)
    decoder.close()
    return resp, events


def test_every_mode_is_catalogued_once() -> None:
    names = [f.name for f in FAULTS] + [p.name for v in BENIGN for p in v.parts]
    assert len(names) == len(set(names)), names
    assert set(names) <= set(registry())
    assert len(FAULTS) >= 30 and len(names) - len(FAULTS) >= 12
    assert all(f.breaks for f in FAULTS)


def test_passthrough_changes_nothing(proxied) -> None:
    with mode(proxied, "passthrough") as client:
        resp, events = _stream(client, _submit(client))
        assert resp.headers["content-type"].startswith("text/event-stream")
        names = [e.event for e in events]
        assert names[0] == "started" and names[-1] == "end" and names.count("token") == 3
        assert all(e.has_id for e in events if e.event == "token")
        assert resp.headers.get("x-correlation-id")
        assert client.get("/v1/capabilities", headers={"Authorization": ""}).status_code == 401


def test_wrong_event_name_renames_tokens(proxied) -> None:
    with mode(proxied, "wrong-event-name") as client:
        _, events = _stream(client, _submit(client))
        assert "token" not in [e.event for e in events] and "tok" in [e.event for e in events]


def test_wrong_sse_order_sends_started_after_the_first_token(proxied) -> None:
    with mode(proxied, "wrong-sse-order") as client:
        names = [e.event for e in _stream(client, _submit(client))[1]]
        assert names.index("token") < names.index("started") and names[-1] == "end"


def test_no_auth_lets_calls_without_a_key_through(proxied) -> None:
    with mode(proxied, "no-auth") as client:
        assert client.get("/v1/capabilities", headers={"Authorization": ""}).status_code == 200


def test_no_retry_after_strips_backoff_headers_from_429_only(proxied) -> None:
    _, proxy = proxied
    proxy.use("no-retry-after")
    try:
        stripped = proxy.mode.head(None, 429, [("retry-after", "1"), ("x-backoff-ms", "1000")])
        kept = proxy.mode.head(None, 503, [("retry-after", "1")])
    finally:
        proxy.use("passthrough")
    assert stripped == (429, []) and kept == (503, [("retry-after", "1")])


@pytest.mark.req("OC-HARNESS-8010")
def test_a_hanging_endpoint_costs_the_clients_timeout_only(proxied) -> None:
    with mode(proxied, "hang-sessions") as client:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            client.get("/v1/sessions/6f1c2a9e-4b7d-4c1e-9a51-0d3e8b7f2c10", timeout=1.0)
        assert time.monotonic() - started < 3.0
        assert client.get("/v1/replicasets").status_code == 200  # only that endpoint hangs


def test_a_stalled_body_sends_half_and_stops(proxied) -> None:
    with mode(proxied, "stall-health") as client:
        pool = client.get("/v1/replicasets").json()[0]["replicas"][0]["pool_id"]
        with pytest.raises(httpx.ReadTimeout):
            client.get(f"/v1/pools/{pool}/health", timeout=1.0)


def test_a_never_ending_stream_sends_its_tokens_and_then_nothing(proxied) -> None:
    with mode(proxied, "stream-never-ends") as client:
        task = _submit(client)
        seen: list[str] = []
        with (
            pytest.raises(httpx.ReadTimeout),
            client.stream("GET", f"/v1/tasks/{task}/stream", timeout=1.0) as resp,
        ):
            decoder = SseDecoder()
            for chunk in resp.iter_text():
                seen += [e.event for e in decoder.feed(chunk)]
        assert seen.count("token") == 3 and not {"end", "error"} & set(seen)


@pytest.mark.req("OC-HARNESS-8009")
@pytest.mark.parametrize("name", ["sse-crlf-split", "sse-cr-slow"])
def test_benign_sse_spellings_decode_to_the_same_events(proxied, name: str) -> None:
    with mode(proxied, "passthrough") as client:
        _, plain = _stream(client, _submit(client, "[[sim tokens=4]] same", seed=7))
    with mode(proxied, name) as client:
        resp, events = _stream(client, _submit(client, "[[sim tokens=4]] same", seed=7))
    raw = resp.text
    assert ("\r\n" in raw) if name == "sse-crlf-split" else ("\r" in raw and "\n" not in raw)
    assert [e.event for e in events] == [e.event for e in plain]
    tokens = [e.data["t"] for e in events if e.event == "token"]
    assert tokens == [e.data["t"] for e in plain if e.event == "token"]


def test_benign_json_changes_keep_the_values(proxied) -> None:
    with mode(proxied, "passthrough") as client:
        plain = client.get("/v1/replicasets").json()
    with mode(proxied, "json-and-headers") as client:
        resp = client.get("/v1/replicasets")
        changed = resp.json()
    assert [next(iter(rs)) for rs in changed] == ["x_vendor"] * len(changed)  # reversed
    assert [rs["id"] for rs in changed] == [rs["id"] for rs in plain]
    assert any(k == b"X-CORRELATION-ID" for k, _ in resp.headers.raw), resp.headers.raw
