"""Shared config and small HTTP helpers for the API tests (real HTTP, real SSE)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
from httpx_sse import connect_sse

TEST_CONFIG = """
auth:
  api_keys_env: LLORCH_API_KEY
  tenants:
    - {id: team-a, api_key_env: LLORCH_TENANT_KEY}
timeouts: {wall_ms: 4000, idle_ms: 800}
pools:
  - id: p-reject
    engine: llamacpp
    adapter: mock
    model: repo:mock/tiny
    ctx: 2048
    devices: []
    allow_cpu_inference: true
    determinism: true
    queue: {capacity: 2, full_policy: reject}
  - id: p-droplru
    engine: vllm
    adapter: mock
    model: repo:mock/tiny
    ctx: 4096
    devices: []
    allow_cpu_inference: true
    determinism: true
    queue: {capacity: 2, full_policy: drop-lru}
  - id: p-shed
    engine: tgi
    adapter: mock
    model: repo:mock/tiny
    ctx: 4096
    devices: []
    allow_cpu_inference: true
    determinism: true
    queue: {capacity: 2, full_policy: shed-low-priority}
"""


def task_body(engine: str = "llamacpp", prompt: str = "[[sim tokens=5]] hi", **extra: Any):
    body = {
        "task_id": str(uuid.uuid4()),
        "session_id": str(uuid.uuid4()),
        "workload": "completion",
        "model_ref": "repo:mock/tiny",
        "engine": engine,
        "ctx": 1024,
        "priority": "interactive",
        "max_tokens": 64,
        "deadline_ms": 0,
        "prompt": prompt,
    }
    body.update(extra)
    return body


def events(client: httpx.Client, task_id: str, **headers: str) -> list[tuple[str, Any, str]]:
    """All events of a stream as (name, parsed data, id) until the server closes it."""
    out = []
    with connect_sse(client, "GET", f"/v1/tasks/{task_id}/stream", headers=headers) as source:
        assert source.response.status_code == 200
        for sse in source.iter_sse():
            out.append((sse.event, json.loads(sse.data), sse.id))
    return out
