"""Byte-level helpers the llama.cpp and vLLM simulators share: raw SSE blocks, JSON bodies,
priming the token iterator, Prometheus text and field type checks."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from typing import Any

import falcon.asgi
from falcon.asgi import SSEvent

from llama_orch.engine_sim.engine import SimToken


class RawEvent(SSEvent):
    """One SSE block written byte for byte (e.g. llama.cpp's non-standard `error:` line)."""

    def __init__(self, raw: bytes) -> None:
        super().__init__()
        self.raw = raw

    def serialize(self, handler: Any = None) -> bytes:
        return self.raw


def dumps(obj: Any) -> str:
    """Compact JSON with UTF-8 kept as is, the way both engines write it."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def sse_block(field: str, obj: Any) -> RawEvent:
    return RawEvent(f"{field}: {dumps(obj)}\n\n".encode())


async def json_body(req: falcon.asgi.Request) -> Any:
    """The parsed JSON body, or None when it is not valid JSON."""
    raw = await req.stream.read()
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return None


async def next_token(tokens: AsyncIterator[SimToken]) -> SimToken | None:
    """The next token, None at the end. Awaited once before the answer starts, so that
    directive errors and overload become a status line rather than a stream event."""
    try:
        return await anext(tokens)
    except StopAsyncIteration:
        return None


def prometheus_text(prefix: str, samples: Iterable[tuple[str, str, float]]) -> str:
    """Exposition text for (name, type, value) under `prefix`, written by hand because the
    engines' names carry a `prefix:` that these simulators reproduce exactly."""
    lines = []
    for name, kind, value in samples:
        full = prefix + name
        lines += [f"# HELP {full} {name.replace('_', ' ')}", f"# TYPE {full} {kind}"]
        lines.append(f"{full} {value:g}")
    return "\n".join(lines) + "\n"


def check_fields(
    body: dict[str, Any], ints: Iterable[str], floats: Iterable[str], bools: Iterable[str]
) -> str | None:
    """Name the first field whose JSON type is wrong (None when all are fine)."""
    for key in ints:
        value = body.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            return f'"{key}" must be an integer'
    for key in floats:
        value = body.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            return f'"{key}" must be a number'
    for key in bools:
        value = body.get(key)
        if value is not None and not isinstance(value, bool):
            return f'"{key}" must be a boolean'
    return None
