"""Real responses of the reference app validate against contracts/openapi/*.yaml."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from llama_orch.harness.openapi import (
    CORRELATION,
    SSE_EVENTS,
    find_operation,
    response_schema_pointer,
    validator_at,
)
from tests._api import TEST_CONFIG, events, task_body
from tests._server import running_server


def _check(resp: httpx.Response) -> list[str]:
    """Problems with one response against its documented operation, status and schema."""
    req = resp.request
    found = find_operation(req.method, req.url.path)
    if found is None:
        return [f"{req.method} {req.url.path}: no such operation in the contract"]
    name, pointer, op = found
    problems = []
    if CORRELATION.lower() not in {k.lower() for k in resp.headers}:
        problems.append(f"{req.method} {req.url.path} {resp.status_code}: no {CORRELATION}")
    media = resp.headers.get("content-type", "").split(";")[0].strip()
    try:
        schema_ptr = response_schema_pointer(name, pointer, op, resp.status_code, media)
    except KeyError as exc:
        return [*problems, str(exc)]
    if schema_ptr is not None and media == "application/json":
        for err in validator_at(name, schema_ptr).iter_errors(resp.json()):
            problems.append(f"{req.method} {req.url.path} {resp.status_code}: {err.message}")
    return problems


@pytest.mark.req("ORCH-2001", "ORCH-2006", "ORCH-2104", "ORCH-2103", "ORCH-3044")
def test_responses_match_the_contract() -> None:
    seen: list[httpx.Response] = []

    def record(resp: httpx.Response) -> None:
        if "text/event-stream" not in resp.headers.get("content-type", ""):
            resp.read()
        seen.append(resp)

    with running_server(TEST_CONFIG) as server:
        hooks = {"response": [record]}
        with httpx.Client(
            base_url=server.url, headers=server.headers, timeout=10, event_hooks=hooks
        ) as c:
            body = task_body(prompt="[[sim tokens=4]] contract")
            c.post("/v1/tasks", json=body)
            stream = events(c, body["task_id"])
            c.post(f"/v1/tasks/{body['task_id']}/cancel")
            c.get(f"/v1/sessions/{body['session_id']}")
            c.delete(f"/v1/sessions/{body['session_id']}")
            c.get(f"/v1/sessions/{uuid.uuid4()}")
            c.post("/v1/tasks", json=task_body(ctx=10**6))
            c.post("/v1/tasks", content=b"{")
            c.get(f"/v1/tasks/{uuid.uuid4()}/stream")
            c.get("/v1/pools/p-reject/health")
            c.get("/v1/pools/nope/health")
            c.post("/v1/pools/p-reject/drain", json={"deadline_ms": "soon"})
            c.get("/v1/replicasets")
            c.get("/v1/capabilities")
            c.post("/v1/tasks", json=task_body(), headers={"Authorization": "Bearer nope"})
    problems = [p for resp in seen for p in _check(resp)]
    assert len(seen) >= 14
    assert not problems, "\n".join(problems)
    for name, data, _ in stream:
        errors = list(
            validator_at("data.yaml", f"/components/schemas/{SSE_EVENTS[name]}").iter_errors(data)
        )
        assert not errors, (name, json.dumps(data), [e.message for e in errors])
