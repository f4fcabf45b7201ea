"""The OrchQueue v1 contract documents, loaded and navigable, with schema validators.

Used by the contract tests and by checks that validate a target's real responses against
`contracts/openapi/*.yaml`. Only local `$ref`s are supported; the documents are self-contained.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from ruamel.yaml import YAML

from llama_orch.resources import data_path

OPENAPI_DIR = data_path("contracts", "openapi")
REQUIREMENTS_DIR = data_path("requirements")
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


def _path_regex(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")


def find_operation(method: str, path: str) -> tuple[str, str, dict[str, Any]] | None:
    """(document, pointer, operation) serving a concrete request path, or None."""
    for name, template, meth, pointer, op in all_operations():
        if meth == method.lower() and _path_regex(template).match(path):
            return name, pointer, op
    return None


def response_schema_pointer(
    name: str, op_pointer: str, op: dict[str, Any], status: int, media: str
) -> str | None:
    """Pointer of the schema documented for (status, media), falling back to `default`."""
    doc = load_doc(name)
    for key in (str(status), "default"):
        if key in op["responses"]:
            resp, ptr = deref(doc, op["responses"][key], f"{op_pointer}/responses/{key}")
            if media in resp.get("content", {}):
                return f"{ptr}/content/{_escape(media)}/schema"
            return None
    raise KeyError(f"status {status} is not documented for {op_pointer}")
