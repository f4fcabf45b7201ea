"""Contract tests for the two OpenAPI documents in contracts/openapi/.

The documents are the public promise of OrchQueue v1; the harness, the reference
implementation and third-party targets all read them. These tests keep them valid, traceable
to requirement IDs, and honest: every example must match its own schema.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from llama_orch.harness.openapi import (
    CORRELATION,
    DOC_NAMES,
    ERROR_KINDS,
    ID_SHAPE,
    REQUIREMENTS_DIR,
    SSE_EVENTS,
    all_operations,
    collect_req_ids,
    deref,
    load_doc,
    media_types,
    operations_of,
    responses,
    validator_at,
)
from llama_orch.harness.requirements import load_requirements


def parse_sse(text: str) -> list[dict[str, str]]:
    """Split SSE text into frames of field -> value (one optional space after the colon)."""
    frames = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        frame: dict[str, str] = {}
        for line in block.split("\n"):
            field, _, value = line.partition(":")
            frame[field] = value[1:] if value.startswith(" ") else value
        frames.append(frame)
    return frames


def stream_operation() -> dict[str, Any]:
    return load_doc("data.yaml")["paths"]["/v1/tasks/{id}/stream"]["get"]


@pytest.mark.parametrize("name", DOC_NAMES)
def test_document_is_valid_openapi_3_1(name: str) -> None:
    """Each document must stand alone as a valid OpenAPI 3.1 description."""
    doc = load_doc(name)
    assert doc["openapi"] == "3.1.0"
    validate(doc, cls=OpenAPIV31SpecValidator)


@pytest.mark.req("ORCH-3044")
def test_every_public_api_carries_an_explicit_version() -> None:
    """Both planes declare the same semver info.version, and every path is under /v1/."""
    versions = {name: load_doc(name)["info"].get("version") for name in DOC_NAMES}
    assert all(isinstance(v, str) and re.fullmatch(r"\d+\.\d+\.\d+", v) for v in versions.values())
    assert len(set(versions.values())) == 1, versions
    for name in DOC_NAMES:
        unversioned = [p for p in load_doc(name)["paths"] if not p.startswith("/v1/")]
        assert not unversioned, f"{name}: paths without a version prefix: {unversioned}"


def test_operations_have_id_summary_and_req_ids() -> None:
    """Operations are addressable (unique operationId) and traceable (x-req-id)."""
    seen: dict[str, str] = {}
    for name, path, method, _, op in all_operations():
        where = f"{name} {method.upper()} {path}"
        op_id = op.get("operationId")
        assert op_id, f"{where}: no operationId"
        assert op_id not in seen, f"{where}: operationId {op_id} also used by {seen[op_id]}"
        seen[op_id] = where
        assert op.get("summary"), f"{where}: no summary"
        req_ids = op.get("x-req-id")
        assert isinstance(req_ids, list) and req_ids, f"{where}: empty x-req-id"
        bad = [i for i in req_ids if not ID_SHAPE.match(str(i))]
        assert not bad, f"{where}: malformed requirement IDs {bad}"
        assert len(set(req_ids)) == len(req_ids), f"{where}: duplicate IDs in x-req-id"


def test_req_ids_exist_in_requirements() -> None:
    """A contract may only cite requirements that the specs actually define."""
    cited = set().union(*(collect_req_ids(load_doc(n)) for n in DOC_NAMES))
    known = {r.id for r in load_requirements(REQUIREMENTS_DIR)}
    unknown = sorted(cited - known)
    assert not unknown, (
        f"x-req-id values not defined in {REQUIREMENTS_DIR}/*.yaml "
        f"({len(known)} IDs known; run `llorch spec extract` if none): {unknown}"
    )


def test_every_body_has_examples() -> None:
    """Request bodies and responses with content carry at least one named example."""
    missing = []
    for name in DOC_NAMES:
        for label, media, _ in media_types(load_doc(name)):
            examples = media.get("examples")
            if not examples or not all("value" in ex for ex in examples.values()):
                missing.append(f"{name}: {label}")
    assert not missing, "bodies without `examples` (each with a `value`):\n" + "\n".join(missing)


@pytest.mark.parametrize("name", DOC_NAMES)
def test_examples_validate_against_their_schemas(name: str) -> None:
    """An example that contradicts its schema would mislead every client that copies it."""
    failures = []
    checked = 0
    for label, media, pointer in media_types(load_doc(name)):
        validator = validator_at(name, f"{pointer}/schema")
        for ex_name, example in media.get("examples", {}).items():
            checked += 1
            for error in validator.iter_errors(example["value"]):
                failures.append(f"{label} example {ex_name!r}: {error.message}")
    assert checked > 0
    assert not failures, "\n".join(failures)


@pytest.mark.req("ORCH-3093")
@pytest.mark.parametrize("name", DOC_NAMES)
def test_error_kind_is_the_single_twelve_code_enum(name: str) -> None:
    """ErrorKind holds exactly the 12 codes (base nine plus the three scheduling additions)."""
    schemas = load_doc(name)["components"]["schemas"]
    assert schemas["ErrorKind"]["enum"] == ERROR_KINDS
    assert {"DEADLINE_UNMET", "MODEL_DEPRECATED", "UNTRUSTED_ARTIFACT"} <= set(ERROR_KINDS)
    envelope = schemas["ErrorEnvelope"]
    assert set(envelope["properties"]) == {
        "code",
        "message",
        "engine",
        "pool_id",
        "retriable",
        "retry_after_ms",
        "policy_label",
        "field",
    }
    assert envelope["properties"]["code"] == {"$ref": "#/components/schemas/ErrorKind"}


def test_create_task_429_declares_backoff_headers_and_policy_label() -> None:
    """Backpressure answers must tell clients when to retry and which policy refused them."""
    doc = load_doc("data.yaml")
    op = doc["paths"]["/v1/tasks"]["post"]
    resp, _ = deref(doc, op["responses"]["429"], "")
    assert {"Retry-After", "X-Backoff-Ms", CORRELATION} <= set(resp["headers"])
    backoff, _ = deref(doc, resp["headers"]["X-Backoff-Ms"], "")
    assert backoff["schema"]["type"] == "integer"
    validator = validator_at("data.yaml", "/components/schemas/BackpressureErrorEnvelope")
    assert not validator.is_valid({"code": "ADMISSION_REJECT", "message": "full"})
    assert not validator.is_valid({"policy_label": "fifo"})
    for label in ("reject", "drop-lru", "shed-low-priority"):
        assert validator.is_valid({"code": "ADMISSION_REJECT", "policy_label": label})


def test_every_response_declares_correlation_id() -> None:
    """Each operation accepts X-Correlation-Id and every response (204 and SSE too) returns it."""
    problems = []
    for name, path, method, pointer, op in all_operations():
        doc = load_doc(name)
        where = f"{name} {method.upper()} {path}"
        params = [deref(doc, p, "")[0] for p in op.get("parameters", [])]
        request = [p for p in params if p["in"] == "header" and p["name"] == CORRELATION]
        if len(request) != 1 or request[0].get("required", False):
            problems.append(f"{where}: no optional {CORRELATION} request header")
        for status, resp, _ in responses(doc, op, pointer):
            header = resp.get("headers", {}).get(CORRELATION)
            if header is None or not deref(doc, header, "")[0].get("required"):
                problems.append(f"{where} {status}: {CORRELATION} not declared as required")
    assert not problems, "\n".join(problems)


def test_every_operation_is_authenticated() -> None:
    """Both planes require an API key globally and document 401/403 with an ErrorEnvelope."""
    for name in DOC_NAMES:
        doc = load_doc(name)
        schemes = doc["components"]["securitySchemes"]
        api_key = [
            s
            for s in schemes.values()
            if s["type"] == "apiKey" and s["in"] == "header" and s["name"] == "X-API-Key"
        ]
        assert api_key, f"{name}: no X-API-Key scheme"
        assert doc["security"], f"{name}: no global security requirement"
        for req in doc["security"]:
            assert set(req) <= set(schemes)
        for _, path, method, pointer, op in operations_of(name):
            assert op.get("security", doc["security"]), f"{name} {path}: security disabled"
            codes = {s: r for s, r, _ in responses(doc, op, pointer)}
            for status in ("401", "403"):
                assert status in codes, f"{name} {method.upper()} {path}: no {status}"
                schema = codes[status]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorEnvelope"}


def test_sse_event_schemas_and_framing_are_declared() -> None:
    """The stream names its five payload schemas, documents framing and Last-Event-ID."""
    doc = load_doc("data.yaml")
    op = stream_operation()
    assert set(SSE_EVENTS.values()) <= set(doc["components"]["schemas"])
    assert op["x-sse-events"] == {
        event: {"$ref": f"#/components/schemas/{schema}"} for event, schema in SSE_EVENTS.items()
    }
    assert doc["components"]["schemas"]["SSEMetrics"]["additionalProperties"] is True
    ok = op["responses"]["200"]
    assert "text/event-stream" in ok["content"]
    for marker in ("event: <name>", "data: <json>", "id:", "Last-Event-ID"):
        assert marker in ok["description"], f"framing description lacks {marker!r}"
    params = [deref(doc, p, "")[0] for p in op["parameters"]]
    assert any(p["in"] == "header" and p["name"] == "Last-Event-ID" for p in params)


def test_sse_examples_are_well_framed_and_payloads_match() -> None:
    """Every frame in the stream examples is a known event whose JSON matches its schema."""
    op = stream_operation()
    examples = op["responses"]["200"]["content"]["text/event-stream"]["examples"]
    assert examples
    for ex_name, example in examples.items():
        frames = parse_sse(example["value"])
        assert frames, ex_name
        names = [frame.get("event") for frame in frames]
        assert set(names) <= set(SSE_EVENTS), f"{ex_name}: unknown events {names}"
        terminal = [i for i, n in enumerate(names) if n in ("end", "error")]
        assert terminal == [len(names) - 1], f"{ex_name}: one terminal event, last: {names}"
        if "started" in names:
            assert names.index("started") == 0, f"{ex_name}: started must come first"
        for frame in frames:
            payload = json.loads(frame["data"])
            validator = validator_at(
                "data.yaml", f"/components/schemas/{SSE_EVENTS[frame['event']]}"
            )
            errors = [e.message for e in validator.iter_errors(payload)]
            assert not errors, f"{ex_name} {frame['event']}: {errors}"
            if frame["event"] == "token":
                assert frame.get("id") == str(payload["i"]), f"{ex_name}: token id != i"
            else:
                assert "id" not in frame, f"{ex_name}: only token frames carry id"


def test_task_request_names_a_sampler_profile_but_no_sampler_params() -> None:
    """Tasks pick a configured sampler profile; raw sampling knobs are refused by the schema."""
    task = load_doc("data.yaml")["components"]["schemas"]["TaskRequest"]
    assert task["additionalProperties"] is False
    props = set(task["properties"])
    assert "sampler_profile_version" in props
    knobs = {"temperature", "top_k", "top_p", "min_p", "repeat_penalty", "typical_p"}
    assert not props & knobs
    override = task["properties"]["override"]
    assert override["type"] == "boolean"
    assert override.get("default") is False
    assert "override" not in task["required"]


def test_capabilities_api_version_matches_info_version() -> None:
    """The capability document's api_version is required and its example tracks info.version."""
    doc = load_doc("control.yaml")
    assert "api_version" in doc["components"]["schemas"]["Capabilities"]["required"]
    op = doc["paths"]["/v1/capabilities"]["get"]
    for example in op["responses"]["200"]["content"]["application/json"]["examples"].values():
        assert example["value"]["api_version"] == doc["info"]["version"]


def test_pool_health_has_nullable_last_error() -> None:
    """Pool health reports the latest failure cause in an additive, nullable field."""
    validator = validator_at("control.yaml", "/components/schemas/PoolHealth")
    base = {"live": True, "ready": False, "draining": False, "metrics": {}}
    assert validator.is_valid(base)
    assert validator.is_valid({**base, "last_error": None})
    assert validator.is_valid({**base, "last_error": "preload failed: out of VRAM"})
    assert not validator.is_valid({**base, "last_error": 3})
    assert not validator.is_valid({"live": True, "ready": True, "metrics": {}})
