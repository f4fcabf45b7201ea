"""Contract tests for the two OpenAPI documents in contracts/openapi/.

The documents are the public promise of OrchQueue v1; the harness, the reference
implementation and third-party targets all read them. These tests keep them valid, traceable
to requirement IDs, and honest: every example must match its own schema.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]
OPENAPI_DIR = ROOT / "contracts" / "openapi"
REQUIREMENTS_DIR = ROOT / "requirements"
DOC_NAMES = ("data.yaml", "control.yaml")
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
ID_SHAPE = re.compile(
    r"^(ORCH|OC-(CORE|CTRL|POOL|ADAPT|POLICY|CONFIG|TEST|METRICS|HARNESS)"
    r"|OC-POLICY-SDK)-\d{4}$"
)
ERROR_KINDS = [
    "ADMISSION_REJECT",
    "QUEUE_FULL_DROP_LRU",
    "INVALID_PARAMS",
    "POOL_UNREADY",
    "POOL_UNAVAILABLE",
    "REPLICA_EXHAUSTED",
    "DECODE_TIMEOUT",
    "WORKER_RESET",
    "INTERNAL",
    "DEADLINE_UNMET",
    "MODEL_DEPRECATED",
    "UNTRUSTED_ARTIFACT",
]
SSE_EVENTS = {
    "started": "SSEStarted",
    "token": "SSEToken",
    "metrics": "SSEMetrics",
    "end": "SSEEnd",
    "error": "SSEError",
}
CORRELATION = "X-Correlation-Id"


@cache
def load_doc(name: str) -> dict[str, Any]:
    """Load one OpenAPI document with a safe YAML loader (no arbitrary tags)."""
    return YAML(typ="safe").load((OPENAPI_DIR / name).read_text(encoding="utf-8"))


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def deref(doc: dict[str, Any], node: Any, pointer: str) -> tuple[Any, str]:
    """Follow local `$ref`s; return the target and its JSON pointer inside the document."""
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), f"only local refs are allowed, got {ref!r} at {pointer}"
        pointer = ref[1:]
        node = doc
        for part in pointer.split("/")[1:]:
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node, pointer


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """Yield (path, method, pointer, operation) for every operation of a document."""
    for path, item in doc["paths"].items():
        for method in HTTP_METHODS:
            if method in item:
                yield path, method, f"/paths/{_escape(path)}/{method}", item[method]


def all_operations() -> Iterator[tuple[str, str, str, str, dict[str, Any]]]:
    """Yield (document, path, method, pointer, operation) across both documents."""
    for name in DOC_NAMES:
        for path, method, pointer, op in operations(load_doc(name)):
            yield name, path, method, pointer, op


def operations_of(name: str) -> Iterator[tuple[str, str, str, str, dict[str, Any]]]:
    """Like all_operations, restricted to one document."""
    return ((n, p, m, ptr, op) for n, p, m, ptr, op in all_operations() if n == name)


def responses(
    doc: dict[str, Any], op: dict[str, Any], pointer: str
) -> Iterator[tuple[str, dict[str, Any], str]]:
    """Yield (status, resolved response, pointer) for an operation."""
    for status, raw in op["responses"].items():
        resolved, ptr = deref(doc, raw, f"{pointer}/responses/{status}")
        yield str(status), resolved, ptr


def media_types(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], str]]:
    """Yield (label, media type object, pointer) for every request and response body."""
    for path, method, pointer, op in operations(doc):
        if "requestBody" in op:
            body, ptr = deref(doc, op["requestBody"], f"{pointer}/requestBody")
            for mt, media in body["content"].items():
                yield f"{method.upper()} {path} request {mt}", media, f"{ptr}/content/{_escape(mt)}"
        for status, resp, ptr in responses(doc, op, pointer):
            for mt, media in resp.get("content", {}).items():
                label = f"{method.upper()} {path} {status} {mt}"
                yield label, media, f"{ptr}/content/{_escape(mt)}"


def _format_checker() -> FormatChecker:
    checker = FormatChecker()

    def _int_range(bits: int) -> Callable[[object], bool]:
        def check(value: object) -> bool:
            if not isinstance(value, int) or isinstance(value, bool):
                return True  # `type` reports non-integers
            return -(2 ** (bits - 1)) <= value < 2 ** (bits - 1)

        return check

    checker.checks("int32")(_int_range(32))
    checker.checks("int64")(_int_range(64))
    return checker


FORMATS = _format_checker()


@cache
def _registry(name: str) -> Registry:
    resource = Resource.from_contents(load_doc(name), default_specification=DRAFT202012)
    return Registry().with_resource(f"urn:llorch:openapi:{name}", resource)


def validator_at(name: str, pointer: str) -> Draft202012Validator:
    """A 2020-12 validator for the schema at `pointer`, with the whole document as root."""
    ref = f"urn:llorch:openapi:{name}#{pointer}"
    return Draft202012Validator({"$ref": ref}, registry=_registry(name), format_checker=FORMATS)


def collect_req_ids(node: Any) -> set[str]:
    """Every value listed under any `x-req-id` key, anywhere in the document."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "x-req-id":
                found.update(value)
            else:
                found |= collect_req_ids(value)
    elif isinstance(node, list):
        for item in node:
            found |= collect_req_ids(item)
    return found


def known_requirement_ids() -> set[str]:
    """IDs defined in the generated requirements/*.yaml files."""
    known: set[str] = set()
    for path in sorted(REQUIREMENTS_DIR.glob("*.yaml")):
        data = YAML(typ="safe").load(path.read_text(encoding="utf-8")) or {}
        known.update(str(item["id"]) for item in data.get("requirements") or [])
    return known


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
    known = known_requirement_ids()
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
