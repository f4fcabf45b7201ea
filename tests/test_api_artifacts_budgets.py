"""Artifacts and per-session budgets over HTTP (real HTTP and SSE, mock engines)."""

from __future__ import annotations

import hashlib
import json

import httpx
import pytest
from _api import events, task_body
from _server import API_KEY, TENANT_KEY, running_server

from llama_orch.reference_impl.service.artifacts import ArtifactStore

CONFIG = """
auth:
  api_keys_env: LLORCH_API_KEY
  tenants:
    - id: team-a
      api_key_env: LLORCH_TENANT_KEY
      budgets: {tokens: 600, time_ms: 30000, cost: 0.5, cost_per_1k_tokens: 2.0}
artifacts: {max_count: 100}
pools:
  - id: p1
    engine: vllm
    adapter: mock
    model: repo:mock/tiny
    ctx: 4096
    devices: []
    allow_cpu_inference: true
"""
HEADERS = ("x-budget-tokens-remaining", "x-budget-time-remaining-ms", "x-budget-cost-remaining")


def address(value) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def clients(url: str) -> tuple[httpx.Client, httpx.Client]:
    def make(key: str) -> httpx.Client:
        return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=10)

    return make(API_KEY), make(TENANT_KEY)


@pytest.mark.req("ORCH-3097", "ORCH-3098", "OC-CTRL-2065", "OC-CTRL-2066")
def test_artifacts_are_content_addressed_tagged_and_private() -> None:
    with running_server(CONFIG, env={"LLORCH_TENANT_KEY": TENANT_KEY}) as server:
        operator, tenant = clients(server.url)
        plan = {"kind": "plan", "content": {"steps": ["a", "b"], "é": 1}, "tags": ["x"]}
        ref = tenant.post("/v1/artifacts", json=plan).json()
        assert ref["digest"] == address(plan["content"])
        assert ref["id"] == address({"kind": "plan", "content": plan["content"], "parent": None})
        again = tenant.post("/v1/artifacts", json={**plan, "tags": ["y", "x"]})
        assert again.status_code == 201 and again.json()["tags"] == ["x", "y"]
        assert again.json()["id"] == ref["id"]
        diff = {"kind": "diff", "content": {"u": "+1"}, "parent": ref["id"], "metadata": {"a": 1}}
        child = tenant.post("/v1/artifacts", json=diff).json()
        got = tenant.get(f"/v1/artifacts/{child['id']}").json()
        assert (got["parent"], got["metadata"], got["content"]) == (
            ref["id"],
            {"a": 1},
            diff["content"],
        )
        assert operator.get(f"/v1/artifacts/{child['id']}").status_code == 200  # operators read all
        mine = operator.post("/v1/artifacts", json={"kind": "trace", "content": {"t": 1}}).json()
        assert tenant.get(f"/v1/artifacts/{mine['id']}").status_code == 403
        assert tenant.get("/v1/artifacts/sha256:nothing").status_code == 404
        orphan = tenant.post("/v1/artifacts", json={**diff, "parent": mine["id"]})
        assert (orphan.status_code, orphan.json()["field"]) == (400, "parent")
        bad = tenant.post("/v1/artifacts", json={"kind": "poem", "content": {}})
        assert bad.status_code == 400


def test_the_store_is_bounded_and_drops_the_oldest() -> None:
    store = ArtifactStore(max_bytes=10_000, max_count=2)
    ids = [
        store.put("t", "plan", {"n": n}, tags=[], parent=None, metadata=None, now_ms=n).artifact_id
        for n in range(3)
    ]
    assert len(store) == 2
    with pytest.raises(LookupError):
        store.get("t", ids[0])
    assert store.get("t", ids[2]).content == {"n": 2}


@pytest.mark.req("ORCH-3099", "OC-CORE-1023", "OC-CTRL-2068", "OC-METRICS-7111")
def test_budgets_are_reported_everywhere_and_enforced() -> None:
    with running_server(CONFIG, env={"LLORCH_TENANT_KEY": TENANT_KEY}) as server:
        operator, tenant = clients(server.url)
        first = task_body("vllm", prompt="[[sim tokens=10]] budget", max_tokens=100, ctx=4096)
        resp = tenant.post("/v1/tasks", json=first)
        assert resp.status_code == 202
        admitted = {h: resp.headers[h] for h in HEADERS}
        assert int(admitted["x-budget-tokens-remaining"]) < 600 - 100
        streamed = events(tenant, first["task_id"])
        metrics = [d for name, d, _ in streamed if name == "metrics"]
        assert all("tokens_budget_remaining" in m for m in metrics)
        session = tenant.get(f"/v1/sessions/{first['session_id']}").json()
        left = session["tokens_budget_remaining"]
        assert left < 600 and 0 < session["cost_budget_remaining"] < 0.5
        over = {
            **task_body("vllm", max_tokens=left + 1, ctx=4096),
            "session_id": first["session_id"],
        }
        refused = tenant.post("/v1/tasks", json=over)
        assert (refused.status_code, refused.json()["code"]) == (400, "ADMISSION_REJECT")
        assert refused.json()["retriable"] is False
        # The operator key's sessions have no budget: no headers, no budget fields.
        free = task_body("vllm")
        resp = operator.post("/v1/tasks", json=free)
        assert resp.status_code == 202 and not any(h in resp.headers for h in HEADERS)
