"""Control plane, sessions and /metrics over real HTTP against the reference app."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from ruamel.yaml import YAML

from tests._api import TEST_CONFIG, events, task_body
from tests._server import ROOT, running_server


@pytest.fixture(scope="module")
def server():
    with running_server(TEST_CONFIG) as running:
        yield running


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=10) as c:
        yield c


@pytest.mark.req(
    "ORCH-2103", "OC-CTRL-2001", "OC-POOL-3001", "OC-POOL-3003", "ORCH-3002", "ORCH-3032"
)
def test_pool_health_after_preload(client) -> None:
    health = client.get("/v1/pools/p-reject/health").json()
    assert health["live"] is True and health["ready"] is True and health["draining"] is False
    assert health["last_error"] is None
    assert health["metrics"]["preload_state"] == "ready"
    assert health["metrics"]["engine_version"] and health["metrics"]["model_digest"]


@pytest.mark.req("ORCH-2104", "OC-CTRL-2004", "ORCH-3007")
def test_replica_sets_group_identical_pools(client) -> None:
    sets = client.get("/v1/replicasets").json()
    assert {s["engine"] for s in sets} == {"llamacpp", "vllm", "tgi"}
    for s in sets:
        assert 0.0 <= s["load"] <= 1.0 and isinstance(s["slo"], dict)
        assert s["slots_total"] >= s["slots_free"] >= 0


@pytest.mark.req("ORCH-3095", "ORCH-3096", "OC-CTRL-2060", "OC-CTRL-2061", "ORCH-3044")
def test_capabilities_declare_the_openapi_version(client) -> None:
    caps = client.get("/v1/capabilities").json()
    for doc in ("data.yaml", "control.yaml"):
        info = YAML(typ="safe").load((ROOT / "contracts" / "openapi" / doc).read_text())["info"]
        assert caps["api_version"] == info["version"]
    engines = {e["engine"]: e for e in caps["engines"]}
    assert engines["llamacpp"]["ctx_max"] == 2048
    assert engines["llamacpp"]["features"]["cpu_inference"] is True


@pytest.mark.req("ORCH-2004", "ORCH-2005", "ORCH-3021")
def test_session_info_and_delete(client) -> None:
    body = task_body(prompt="[[sim tokens=4]] session")
    client.post("/v1/tasks", json=body)
    events(client, body["task_id"])
    info = client.get(f"/v1/sessions/{body['session_id']}").json()
    assert 0 < info["ttl_ms_remaining"] <= 600_000
    assert info["turns"] == 1
    assert isinstance(info["kv_bytes"], int) and isinstance(info["kv_warmth"], bool)
    assert client.delete(f"/v1/sessions/{body['session_id']}").status_code == 204
    assert client.get(f"/v1/sessions/{body['session_id']}").status_code == 404


@pytest.mark.req("ORCH-2101", "OC-CTRL-2002", "ORCH-3010", "OC-CORE-1010")
def test_drain_stops_dispatch_and_reload_switches_back(client) -> None:
    assert client.post("/v1/pools/p-shed/drain", json={"deadline_ms": 1000}).status_code == 202
    health = client.get("/v1/pools/p-shed/health").json()
    assert health["draining"] is True and health["ready"] is False
    refused = client.post("/v1/tasks", json=task_body(engine="tgi"))
    assert refused.status_code == 503
    assert refused.json()["code"] in ("POOL_UNAVAILABLE", "POOL_UNREADY")
    reload = client.post("/v1/pools/p-shed/reload", json={"new_model_ref": "repo:mock/tiny"})
    assert reload.status_code == 202
    _wait(lambda: client.get("/v1/pools/p-shed/health").json()["ready"])
    assert client.get("/v1/pools/p-shed/health").json()["draining"] is False


@pytest.mark.req("ORCH-2102", "OC-CTRL-2003")
def test_failed_reload_rolls_back(client) -> None:
    before = client.get("/v1/pools/p-droplru/health").json()
    broken = {"new_model_ref": "repo:mock/unloadable-x"}
    resp = client.post("/v1/pools/p-droplru/reload", json=broken)
    assert resp.status_code == 202
    _wait(lambda: client.get("/v1/pools/p-droplru/health").json()["last_error"])
    after = client.get("/v1/pools/p-droplru/health").json()
    assert "unloadable-x" in after["last_error"]
    assert after["ready"] is True
    assert after["metrics"]["model_ref"] == before["metrics"]["model_ref"]
    body = task_body(engine="vllm", prompt="[[sim tokens=2]] still served")
    assert client.post("/v1/tasks", json=body).status_code == 202
    assert events(client, body["task_id"])[-1][0] == "end"


@pytest.mark.req("ORCH-3028", "OC-CORE-1041", "OC-CTRL-2051", "OC-METRICS-7101")
def test_metrics_follow_the_contract(server, client) -> None:
    body = task_body(prompt="[[sim tokens=3]] metrics")
    client.post("/v1/tasks", json=body)
    events(client, body["task_id"])
    text = httpx.get(f"{server.url}/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    lint = json.loads((ROOT / "ci" / "metrics.lint.json").read_text())
    for metric in lint["metrics"]:
        name = metric["name"].removesuffix("_total")
        assert name in families, f"{metric['name']} missing from /metrics"
        family = families[name]
        assert family.type == metric["type"], metric["name"]
        for sample in family.samples:
            if sample.name.endswith(("_bucket", "_count", "_sum")):
                continue
            assert set(metric["labels"]) <= set(sample.labels), (metric["name"], sample.labels)
    assert any(s.value >= 1 for s in families["tasks_enqueued"].samples)
    assert "_created" not in text


def _wait(predicate, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


RELOAD_CONFIG = """
auth: {api_keys_env: LLORCH_API_KEY}
pools:
  - id: only
    engine: llamacpp
    adapter: mock
    model: repo:mock/tiny
    devices: []
    allow_cpu_inference: true
"""


@pytest.mark.req("ORCH-2102", "OC-CTRL-2003", "ORCH-3031")
def test_reload_is_atomic_for_in_flight_and_later_tasks() -> None:
    with running_server(RELOAD_CONFIG) as server:
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=10) as c:
            old = c.get("/v1/pools/only/health").json()["metrics"]
            running = task_body(prompt="[[sim tokens=8 itl_ms=100]] in flight")
            assert c.post("/v1/tasks", json=running).status_code == 202
            time.sleep(0.2)
            switch = {"new_model_ref": "repo:mock/tiny-v2"}
            assert c.post("/v1/pools/only/reload", json=switch).status_code == 202
            _wait(
                lambda: (
                    c.get("/v1/pools/only/health").json()["metrics"]["model_ref"]
                    == "repo:mock/tiny-v2"
                )
            )
            new = c.get("/v1/pools/only/health").json()["metrics"]
            assert new["model_digest"] != old["model_digest"]
            finished = events(c, running["task_id"])
            assert finished[-1][0] == "end" and finished[-1][1]["tokens_out"] == 8
            stale = c.post("/v1/tasks", json=task_body(prompt="x"))
            assert stale.status_code == 400 and stale.json()["field"] == "model_ref"
            fresh = task_body(prompt="[[sim tokens=2]] new model", model_ref="repo:mock/tiny-v2")
            assert c.post("/v1/tasks", json=fresh).status_code == 202
            assert events(c, fresh["task_id"])[-1][0] == "end"
