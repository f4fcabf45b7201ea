"""Bad input, authentication and correlation ids: typed errors, never a crash."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from tests._api import TEST_CONFIG, events, task_body
from tests._server import API_KEY, TENANT_KEY, running_server


@pytest.fixture(scope="module")
def server():
    with running_server(TEST_CONFIG, env={"LLORCH_TENANT_KEY": TENANT_KEY}) as running:
        yield running


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=10) as c:
        yield c


def _envelope(resp: httpx.Response, status: int, code: str | None = "INVALID_PARAMS") -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert isinstance(body["message"], str) and body["message"]
    if code is not None:
        assert body["code"] == code
    return body


@pytest.mark.req("ORCH-2006", "OC-CTRL-2030")
@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b.update(ctx="big"), "ctx"),
        (lambda b: b.pop("max_tokens"), "max_tokens"),
        (lambda b: b.update(temperature=0.2), "temperature"),
        (lambda b: b.update(engine="ollama"), "engine"),
        (lambda b: b.update(task_id="not-a-uuid"), "task_id"),
        (lambda b: b.update(max_tokens=0), "max_tokens"),
        (lambda b: b.update(sampler_profile_version="nope"), "sampler_profile_version"),
        (lambda b: b.update(model_ref="repo:mock/absent"), "model_ref"),
    ],
)
def test_invalid_task_bodies_name_the_field(client, mutate, field) -> None:
    body = task_body()
    mutate(body)
    env = _envelope(client.post("/v1/tasks", json=body), 400)
    assert env["field"] == field


@pytest.mark.req("ORCH-2008")
def test_engine_outside_the_enum_is_refused(client) -> None:
    env = _envelope(client.post("/v1/tasks", json=task_body(engine="sglang")), 400)
    assert env["field"] == "engine"


@pytest.mark.req("ORCH-3014", "ORCH-3015", "OC-CORE-1020", "OC-CORE-1021", "OC-CTRL-2010")
def test_ctx_and_token_budget_are_checked_before_queueing(client) -> None:
    over_ctx = _envelope(client.post("/v1/tasks", json=task_body(ctx=999_999)), 400)
    assert over_ctx["field"] == "ctx"
    over_budget = _envelope(client.post("/v1/tasks", json=task_body(max_tokens=2040)), 400)
    assert over_budget["field"] == "max_tokens"


def test_malformed_json_empty_and_oversized_bodies(client) -> None:
    as_json = {"Content-Type": "application/json"}
    _envelope(client.post("/v1/tasks", content=b"{not json", headers=as_json), 400)
    _envelope(client.post("/v1/tasks", content=b""), 400)
    big = json.dumps(task_body(prompt="x" * (2 << 20))).encode()
    _envelope(client.post("/v1/tasks", content=big), 413)


def test_unknown_ids_and_methods(client) -> None:
    _envelope(client.get(f"/v1/tasks/{uuid.uuid4()}/stream"), 404)
    _envelope(client.post("/v1/tasks/not-a-uuid/cancel"), 404)
    _envelope(client.get(f"/v1/sessions/{uuid.uuid4()}"), 404)
    _envelope(client.get("/v1/pools/nope/health"), 404)
    _envelope(client.delete("/v1/tasks"), 405)
    _envelope(client.get("/v1/no-such-route"), 404)


@pytest.mark.req("ORCH-3035", "OC-CTRL-2040")
def test_authentication_401_and_403(server) -> None:
    AUTH = "ADMISSION_REJECT"  # specs/20 section 5: the ErrorKind of 401 and 403
    with httpx.Client(base_url=server.url, timeout=10) as anon:
        _envelope(anon.post("/v1/tasks", json=task_body()), 401, code=AUTH)
        _envelope(anon.get("/v1/capabilities"), 401, code=AUTH)
        bad = {"Authorization": "Bearer wrong-key"}
        _envelope(anon.get("/v1/replicasets", headers=bad), 401, code=AUTH)
        assert anon.get("/livez").status_code == 200
        assert anon.get("/metrics").status_code == 200
        tenant = {"Authorization": f"Bearer {TENANT_KEY}"}
        _envelope(anon.get("/v1/replicasets", headers=tenant), 403, code=AUTH)
        body = task_body()
        assert anon.post("/v1/tasks", json=body, headers=tenant).status_code == 202
        by_header = {"X-API-Key": API_KEY}
        assert anon.post("/v1/tasks", json=task_body(), headers=by_header).status_code == 202
        other = task_body()
        anon.post("/v1/tasks", json=other, headers={"Authorization": f"Bearer {API_KEY}"})
        _envelope(anon.post(f"/v1/tasks/{other['task_id']}/cancel", headers=tenant), 403, AUTH)


@pytest.mark.req("ORCH-2009", "OC-CTRL-2052")
def test_correlation_id_is_echoed_or_generated_everywhere(client) -> None:
    given = {"X-Correlation-Id": "trace-abc-123"}
    body = task_body(prompt="[[sim tokens=2]] cid")
    resp = client.post("/v1/tasks", json=body, headers=given)
    assert resp.headers["X-Correlation-Id"] == "trace-abc-123"
    with client.stream("GET", f"/v1/tasks/{body['task_id']}/stream", headers=given) as sse:
        assert sse.headers["X-Correlation-Id"] == "trace-abc-123"
        sse.read()
    cancel = client.post(f"/v1/tasks/{body['task_id']}/cancel", headers=given)
    assert cancel.status_code == 204 and cancel.headers["X-Correlation-Id"] == "trace-abc-123"
    generated = client.get("/v1/capabilities").headers["X-Correlation-Id"]
    assert uuid.UUID(generated)
    error = client.post("/v1/tasks", content=b"{", headers=given)
    assert error.headers["X-Correlation-Id"] == "trace-abc-123"


@pytest.mark.req(
    "ORCH-2009", "ORCH-3027", "ORCH-3029", "OC-CORE-1040", "OC-CTRL-2050", "OC-CTRL-2041"
)
def test_logs_are_json_lines_with_fields_and_no_secrets(server, client) -> None:
    body = task_body(prompt="[[sim tokens=3]] logged")
    client.post("/v1/tasks", json=body, headers={"X-Correlation-Id": "log-cid-1"})
    events(client, body["task_id"])
    with httpx.Client(base_url=server.url, timeout=10) as anon:
        anon.get("/v1/capabilities", headers={"Authorization": f"Bearer {API_KEY}x"})
    lines = [json.loads(line) for line in server.logs.getvalue().splitlines() if line.strip()]
    mine = [r for r in lines if r.get("job_id") == body["task_id"]]
    admitted = next(r for r in mine if r["msg"] == "admitted")
    assert admitted["correlation_id"] == "log-cid-1"
    assert {"queue_position", "predicted_start_ms"} <= set(admitted)
    finished = next(r for r in mine if r["msg"] == "task finished")
    for key in (
        "job_id",
        "session_id",
        "engine",
        "pool_id",
        "replica_id",
        "model_id",
        "quant",
        "ctx",
        "queue_time_ms",
        "decode_time_ms",
        "tokens_out",
    ):
        assert key in finished, key
    assert API_KEY not in server.logs.getvalue()
    assert TENANT_KEY not in server.logs.getvalue()


@pytest.mark.req("OC-ADAPT-5002", "OC-ADAPT-5021")
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/completions"),
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/models"),
        ("POST", "/completion"),
        ("POST", "/generate_stream"),
        ("POST", "/v2/models/x/generate_stream"),
    ],
)
def test_engine_endpoints_are_never_exposed(client, method: str, path: str) -> None:
    """OrchQueue v1 is the only public surface: engine APIs stay internal to the adapters."""
    _envelope(client.request(method, path, json={"prompt": "hi"}), 404)
