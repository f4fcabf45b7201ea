"""The catalog over HTTP: registration under the trust policy, verification counting and
logging, lifecycle transitions and what they do to pools and tasks (real HTTP, mock engines)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _api import events, task_body
from _server import TENANT_KEY, Running, running_server
from prometheus_client.parser import text_string_to_metric_families

from llama_orch.harness.signing import Authority, model_entry, tag_reference

REGISTRY = "models.example.org"
VERIFICATIONS = "catalog_verifications_total"
CA = Authority.generate()


def config(ca_file: Path, mode: str = "strict") -> str:
    return f"""
auth:
  api_keys_env: LLORCH_API_KEY
  tenants:
    - {{id: team-a, api_key_env: LLORCH_TENANT_KEY}}
timeouts: {{wall_ms: 8000, idle_ms: 2000}}
catalog:
  trust_policy:
    mode: {mode}
    allowed_registries: [{REGISTRY}]
    ca_roots: ["{ca_file}"]
pools:
  - id: p1
    engine: vllm
    adapter: mock
    model: repo:mock/tiny
    ctx: 4096
    devices: []
    allow_cpu_inference: true
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Running]:
    (tmp_path / "ca.pem").write_text(CA.cert_pem())
    with running_server(config(tmp_path / "ca.pem"), env={"LLORCH_TENANT_KEY": TENANT_KEY}) as s:
        yield s


def client(server: Running) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers=server.headers, timeout=10)


def samples(c: httpx.Client, name: str, *labels: str) -> dict[tuple, float]:
    """Values of a metric by the values of `labels`, in that order."""
    return {
        tuple(s.labels[k] for k in labels): s.value
        for family in text_string_to_metric_families(c.get("/metrics").text)
        for s in family.samples
        if s.name == name
    }


def wait(check, within_s: float = 5.0) -> bool:
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.05)
    return check()


def health(c: httpx.Client) -> dict:
    return c.get("/v1/pools/p1/health").json()


def active_on_pool(c: httpx.Client) -> dict:
    """A signed entry, registered, Active and rolled out to pool p1 by its tag."""
    entry = model_entry(REGISTRY, signer=CA.issue())
    assert c.post("/v1/catalog/models", json=entry).status_code == 201
    assert (
        c.post(f"/v1/catalog/models/{entry['id']}/state", json={"state": "Active"}).status_code
        == 202
    )
    ref = tag_reference(entry, "v1")
    assert c.post("/v1/pools/p1/reload", json={"new_model_ref": ref}).status_code == 202
    assert wait(lambda: health(c)["metrics"]["model_digest"] == entry["digest"])
    assert health(c)["metrics"]["model_ref"] == entry["digest"]  # the digest, not the tag
    return entry


@pytest.mark.req("ORCH-3060", "ORCH-3061", "ORCH-3064", "ORCH-3065", "ORCH-3067")
def test_registration_verifies_counts_and_logs(server: Running) -> None:
    c = client(server)
    signed = model_entry(REGISTRY, signer=CA.issue())
    resp = c.post("/v1/catalog/models", json={**signed, "trust_policy": {"mode": "permissive"}})
    assert resp.status_code == 201
    body = resp.json()
    assert body["state"] == "Draft" and body["signatures"][0]["verified"] is True
    assert body["trust_policy"]["mode"] == "strict"  # the client's policy is not applied
    assert body["sbom"]["content"] == signed["sbom"]["content"]
    assert body["manifests"][0]["content"] == signed["manifests"][0]["content"]
    unsigned = model_entry(REGISTRY, signer=None)
    resp = c.post("/v1/catalog/models", json=unsigned)
    assert (resp.status_code, resp.json()["code"]) == (400, "UNTRUSTED_ARTIFACT")
    assert c.get(f"/v1/catalog/models/{unsigned['id']}").status_code == 404
    assert c.post(f"/v1/catalog/models/{signed['id']}/verify").status_code == 202
    assert c.post("/v1/catalog/models/nope/verify").status_code == 404
    counts = samples(c, VERIFICATIONS, "result", "reason", "engine")
    assert counts[("pass", "verified", "vllm")] == 2
    assert counts[("fail", "signature_missing", "vllm")] == 1
    logged = [json.loads(line) for line in server.logs.getvalue().splitlines() if line.strip()]
    verifications = [r for r in logged if r.get("event") == "catalog_verification"]
    assert [r["model_id"] for r in verifications] == [signed["id"], unsigned["id"], signed["id"]]
    assert {r["stage"] for r in verifications} == {"ingest", "verify"}


@pytest.mark.req("ORCH-3061")
def test_a_permissive_policy_accepts_and_counts_a_failed_verification(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text(CA.cert_pem())
    with running_server(config(tmp_path / "ca.pem", "permissive")) as server:
        c = client(server)
        resp = c.post("/v1/catalog/models", json=model_entry(REGISTRY, signer=Authority.stranger()))
        assert resp.status_code == 201 and resp.json()["signatures"][0]["verified"] is False
        assert (
            samples(c, VERIFICATIONS, "result", "reason", "engine")[
                ("fail", "signature_invalid", "vllm")
            ]
            == 1
        )


@pytest.mark.req("ORCH-3062", "ORCH-3072", "ORCH-3061")
def test_rollout_resolves_the_tag_and_needs_an_active_trusted_entry(server: Running) -> None:
    c = client(server)
    draft = model_entry(REGISTRY, signer=CA.issue())
    assert c.post("/v1/catalog/models", json=draft).status_code == 201
    assert c.post("/v1/pools/p1/reload", json={"new_model_ref": draft["id"]}).status_code == 202
    assert wait(lambda: "Draft" in str(health(c)["last_error"]))
    assert health(c)["metrics"]["model_ref"] == "repo:mock/tiny" and health(c)["ready"]
    entry = active_on_pool(c)
    task = task_body("vllm", model_ref=tag_reference(entry, "v1"))  # a tag reference resolves
    assert c.post("/v1/tasks", json=task).status_code == 202
    assert events(c, task["task_id"])[-1][0] == "end"
    expiring = model_entry(REGISTRY, signer=CA.issue(valid_for_s=1))
    assert c.post("/v1/catalog/models", json=expiring).status_code == 201
    path = f"/v1/catalog/models/{expiring['id']}/state"
    assert c.post(path, json={"state": "Active"}).status_code == 202
    time.sleep(1.5)
    assert c.post("/v1/pools/p1/reload", json={"new_model_ref": expiring["id"]}).status_code == 202
    assert wait(lambda: "UNTRUSTED_ARTIFACT" in str(health(c)["last_error"]))
    assert health(c)["metrics"]["model_digest"] == entry["digest"]  # the pool kept its model
    assert (
        samples(c, VERIFICATIONS, "result", "reason", "engine")[
            ("fail", "signature_invalid", "vllm")
        ]
        == 1
    )


@pytest.mark.req("ORCH-3070", "ORCH-3073", "ORCH-3074")
def test_deprecation_refuses_without_override_and_drains(server: Running) -> None:
    c = client(server)
    entry = active_on_pool(c)
    running = task_body("vllm", model_ref=entry["digest"], prompt="[[sim tokens=50 itl_ms=100]] r")
    assert c.post("/v1/tasks", json=running).status_code == 202
    time.sleep(0.3)
    path = f"/v1/catalog/models/{entry['id']}/state"
    assert c.post(path, json={"state": "Deprecated", "deadline_ms": 200}).status_code == 202
    assert health(c)["draining"] is True
    refused = c.post("/v1/tasks", json=task_body("vllm", model_ref=entry["digest"]))
    assert (refused.status_code, refused.json()["code"]) == (400, "MODEL_DEPRECATED")
    ended = events(c, running["task_id"])
    assert ended[-1][0] == "error" and sum(e[0] == "token" for e in ended) < 50
    assert wait(lambda: health(c)["ready"] and not health(c)["draining"])
    override = task_body("vllm", model_ref=entry["digest"], override=True)
    assert c.post("/v1/tasks", json=override).status_code == 202
    assert events(c, override["task_id"])[-1][0] == "end"
    state = samples(c, "model_state", "model_id", "state")
    assert state[(entry["id"], "Deprecated")] == 1 and state[(entry["id"], "Active")] == 0
    rejected = samples(c, "tasks_rejected_total", "reason", "engine")
    assert rejected[("MODEL_DEPRECATED", "vllm")] == 1


@pytest.mark.req("ORCH-3070", "ORCH-3074")
def test_retirement_unloads_and_a_reload_brings_a_model_back(server: Running) -> None:
    c = client(server)
    entry = active_on_pool(c)
    path = f"/v1/catalog/models/{entry['id']}/state"
    assert c.post(path, json={"state": "Retired", "deadline_ms": 0}).status_code == 202
    assert wait(lambda: health(c)["metrics"]["preload_state"] == "unloaded")
    assert health(c)["ready"] is False
    refused = c.post("/v1/tasks", json=task_body("vllm", model_ref=entry["digest"], override=True))
    assert (refused.status_code, refused.json()["code"]) == (400, "MODEL_DEPRECATED")
    assert c.get(f"/v1/catalog/models/{entry['id']}").json()["state"] == "Retired"
    assert c.post(path, json={"state": "Active"}).status_code == 400
    assert (
        c.post("/v1/pools/p1/reload", json={"new_model_ref": "repo:mock/tiny"}).status_code == 202
    )
    assert wait(lambda: health(c)["ready"])


def test_tenant_keys_reach_artifacts_but_not_the_catalog(server: Running) -> None:
    tenant = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TENANT_KEY}"})
    assert tenant.get("/v1/catalog/models/x").status_code == 403
    assert tenant.get("/v1/artifacts/x").status_code == 404
