"""The policy host inside the running reference: plugins loaded from config, seen over HTTP.

The example plugins (examples/policies, built with the SDK) refuse a tenant over its token
budget with a typed reason and prefer a labelled replica; the probe faults on demand. What a
client sees: the typed refusal with its policy label, the placement, and a queue that keeps
serving while a plugin spins, bombs its memory or traps (ORCH-3048, OC-POLICY-4011/4020).
"""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llama_orch.harness.steps.responses import schema_errors
from tests._api import events, task_body
from tests._policy import BUDGET, PLACEMENT, PROBE
from tests._server import TENANT_KEY, running_server

CONFIG = f"""
auth:
  api_keys_env: LLORCH_API_KEY
  tenants:
    - {{id: team-a, api_key_env: LLORCH_TENANT_KEY}}
pools:
  - id: p
    engine: llamacpp
    adapter: mock
    model: repo:mock/tiny
    ctx: 2048
    devices: []
    allow_cpu_inference: true
    determinism: true
    replicas: 2
policy:
  limits: {{fuel: 5000000, memory_bytes: 8388608, wall_ms: 200}}
  replica_labels:
    p-r1: {{tier: fast}}
  plugins:
    - path: {BUDGET}
      hooks: [admission]
      config: {{budgets: {{team-a: 600}}, retry_after_ms: 1500}}
    - path: {PLACEMENT}
      hooks: [placement]
      config: {{label: tier, value: fast}}
    - path: {PROBE}
      hooks: [admission]
"""

HOLD = "[[sim tokens=2 itl_ms=300]] hold"


@pytest.fixture(scope="module")
def server():
    with running_server(CONFIG, env={"LLORCH_TENANT_KEY": TENANT_KEY}) as running:
        yield running


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=15) as c:
        yield c


@pytest.fixture
def tenant(server):
    auth = {"Authorization": f"Bearer {TENANT_KEY}"}
    with httpx.Client(base_url=server.url, headers=auth, timeout=15) as c:
        yield c


def _log_lines(server) -> list[dict]:
    return [json.loads(x) for x in server.logs.getvalue().splitlines() if x.startswith("{")]


@pytest.mark.req("ORCH-3048", "OC-POLICY-4020")
def test_a_tenant_over_its_budget_gets_the_plugins_typed_refusal(server, tenant) -> None:
    cid = f"budget-{uuid.uuid4()}"
    alone_too_big = tenant.post(
        "/v1/tasks", json=task_body(max_tokens=700), headers={"X-Correlation-Id": cid}
    )
    assert alone_too_big.status_code == 400, alone_too_big.text
    body = alone_too_big.json()
    assert body["code"] == "ADMISSION_REJECT"
    assert body["policy_label"] == "policy:admission-budget:tenant_over_budget"
    assert body["retriable"] is False
    assert "tenant team-a:" in body["message"] and "of 600 left" in body["message"]

    first = tenant.post("/v1/tasks", json=task_body(prompt=HOLD, max_tokens=300))
    assert first.status_code == 202, first.text
    over = tenant.post("/v1/tasks", json=task_body(prompt=HOLD, max_tokens=300))
    assert over.status_code == 429, over.text
    assert over.json()["policy_label"] == "policy:admission-budget:tenant_over_budget"
    assert over.headers["X-Backoff-Ms"] == "1500" and over.headers["Retry-After"] == "2"
    assert not schema_errors("BackpressureErrorEnvelope", over.json())

    calls = [x for x in _log_lines(server) if x["msg"] == "policy call"]
    mine = [x for x in calls if x["correlation_id"] == cid]
    assert [(x["plugin_id"], x["decision"]) for x in mine] == [
        ("admission-budget", "reject:tenant_over_budget")
    ]
    assert mine[0]["plugin_version"] == "1.0.0" and mine[0]["duration_ms"] > 0
    events(tenant, first.json()["task_id"])


@pytest.mark.req("ORCH-3048")
def test_other_tenants_are_not_limited_by_the_budget_plugin(client) -> None:
    resp = client.post("/v1/tasks", json=task_body(max_tokens=1500, ctx=2048))
    assert resp.status_code == 202, resp.text
    assert events(client, resp.json()["task_id"])[-1][0] == "end"


@pytest.mark.req("ORCH-3048")
def test_the_placement_plugin_sends_work_to_the_labelled_replica(client) -> None:
    body = task_body(prompt="[[sim tokens=2]] placed")
    assert client.post("/v1/tasks", json=body).status_code == 202
    placed = [d for n, d, _ in events(client, body["task_id"]) if "replica_id" in d]
    assert placed[0]["replica_id"] == "p-r1"  # the least-loaded rule alone picks p-r0


@pytest.mark.req("OC-POLICY-4011", "ORCH-3048")
@pytest.mark.parametrize("trigger", [333, 334, 335, 336])
def test_a_faulting_plugin_neither_refuses_nor_stalls(server, client, trigger) -> None:
    runner = task_body(prompt="[[sim tokens=6 itl_ms=50]] keeps streaming")
    assert client.post("/v1/tasks", json=runner).status_code == 202
    started = time.monotonic()
    faulting = client.post("/v1/tasks", json=task_body(max_tokens=trigger))
    took = time.monotonic() - started
    assert faulting.status_code == 202, faulting.text  # built-in rules: admitted
    assert took < 2.0, f"admission took {took:.2f} s"
    assert events(client, faulting.json()["task_id"])[-1][0] == "end"
    assert events(client, runner["task_id"])[-1][0] == "end"
    outcome = {333: "cpu_exceeded", 334: "memory_exceeded", 335: "trapped", 336: "invalid"}
    text = httpx.get(f"{server.url}/metrics").text
    samples = {
        (s.labels.get("plugin"), s.labels.get("outcome")): s.value
        for f in text_string_to_metric_families(text)
        if f.name == "policy_calls"
        for s in f.samples
    }
    assert samples[("llorch-probe", outcome[trigger])] >= 1


@pytest.mark.req("ORCH-3048")
def test_capabilities_declare_the_policy_host(client) -> None:
    caps = client.get("/v1/capabilities").json()
    assert not schema_errors("Capabilities", caps)
    assert all(e["features"]["policy_host"] is True for e in caps["engines"])
    host = caps["policy_host"]
    assert host["abi_version"] == "1.0" and host["accepted_abi_majors"] == [1]
    assert host["hooks"] == ["admission", "placement"]
    assert [(p["id"], p["hooks"]) for p in host["plugins"]] == [
        ("admission-budget", ["admission"]),
        ("placement-label", ["placement"]),
        ("llorch-probe", ["admission"]),
    ]


def test_a_config_without_policy_declares_no_host() -> None:
    plain = CONFIG.split("policy:")[0]
    with running_server(plain) as running:
        caps = httpx.get(f"{running.url}/v1/capabilities", headers=running.headers).json()
        assert "policy_host" not in caps
        assert all(e["features"]["policy_host"] is False for e in caps["engines"])
        metrics = httpx.get(f"{running.url}/metrics").text
        assert "# TYPE policy_calls_total counter" in metrics  # declared from start-up
        tool = httpx.post(
            f"{running.url}/v1/tools/fetch",
            json={"tool_abi": "1.0", "args": {"url": "http://127.0.0.1/"}},
            headers=running.headers,
        )
        assert tool.status_code == 404 and tool.json()["code"] == "INVALID_PARAMS"
