"""Structure of engine wire data, for comparing two servers (or a server and a transcript).

`shape` keeps what a client can depend on and drops the values: object keys, JSON types (int
and float apart, as both engines write them apart), list element structure. `differences`
lists where two shapes disagree, each as `path: what`, so that a test can fail on anything not
on its allow-list. SSE helpers split a response body into its blocks the way engines write them.
"""

from __future__ import annotations

import json
from typing import Any

Shape = Any  # str for scalars, dict for objects, ("list", Shape | None) for arrays


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "str"


def merge(a: Shape, b: Shape) -> Shape:
    """One shape covering both (object keys united); scalars of two types become `a|b`."""
    if a is None:
        return b
    if b is None or a == b:
        return a
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: merge(a.get(k), b.get(k)) for k in {**a, **b}}
    if isinstance(a, tuple) and isinstance(b, tuple):
        return ("list", merge(a[1], b[1]))
    return "|".join(sorted(set(str(a).split("|")) | set(str(b).split("|"))))


def shape(value: Any) -> Shape:
    """Keys and types of a JSON value; list elements merged into one element shape."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        element = None
        for item in value:
            element = merge(element, shape(item))
        return ("list", element)
    return _scalar(value)


def differences(a: Shape, b: Shape, path: str = "$") -> list[str]:
    """Where shape `a` (left) and `b` (right) disagree; an empty list means the same structure.
    An empty list on one side matches any element shape on the other."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}.{k}: only left" for k in a if k not in b]
        out += [f"{path}.{k}: only right" for k in b if k not in a]
        for k in a:
            if k in b:
                out += differences(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, tuple) and isinstance(b, tuple):
        if a[1] is None or b[1] is None:
            return []
        return differences(a[1], b[1], f"{path}[]")
    if a != b:
        return [f"{path}: {a} vs {b}"]
    return []


def sse_blocks(text: str) -> list[str]:
    """The non-empty blocks of an SSE body, in order."""
    return [block for block in text.replace("\r\n", "\n").split("\n\n") if block.strip()]


def sse_json(block: str) -> tuple[str, Any]:
    """(field, JSON value) of a one-line SSE block such as `data: {...}` or `data:{...}`."""
    field, _, value = block.partition(":")
    value = value[1:] if value.startswith(" ") else value
    try:
        return field, json.loads(value)
    except ValueError:
        return field, value


def prometheus_families(text: str) -> dict[str, str]:
    """{metric name: type} from `# TYPE` lines of Prometheus text."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            out[name] = kind.strip()
    return out
