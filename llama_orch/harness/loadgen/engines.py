"""The engine-alone baseline: a bare engine's own streaming API, timed like the orchestrator.

`llorch bench --direct URL` runs the same tasks straight against the engine the orchestrator
fronts, in the same run, so "added latency" is the orchestrator's own cost and not the
engine's or the machine's. One request per task on a shared aiohttp session (keep-alive, like
the orchestrator's HTTP target): TTFT runs from sending the request to the first event with
text, E2E to the engine's end of stream. The request carries the same prompt, token limit
and seed the orchestrator would forward.

Also the client of an OpenAI-compatible proxy (`vllm` protocol at the proxy's URL): the peer
comparison in bench/peers drives LiteLLM this way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from llama_orch.harness.loadgen.client import (
    BAD_STREAM,
    STREAM_INCOMPLETE,
    iter_sse,
    transport_code,
)
from llama_orch.harness.loadgen.load import TaskResult, TaskTimer

PROTOCOLS = ("llamacpp", "vllm", "tgi", "triton")


@dataclass(frozen=True)
class Step:
    """What one `data:` payload of an engine stream means: text of a token, the end, or an
    error the engine reported in-band."""

    text: str = ""
    end: bool = False
    error: str | None = None


def _error(payload: Any) -> str | None:
    if isinstance(payload, dict) and "error" in payload:
        return "ENGINE_ERROR"
    return None


def _vllm(data: str) -> Step:
    if data.strip() == "[DONE]":
        return Step(end=True)
    chunk = json.loads(data)
    if (code := _error(chunk)) is not None:
        return Step(error=code)
    text = "".join(c.get("text") or "" for c in chunk.get("choices") or ())
    return Step(text=text)


def _llamacpp(data: str) -> Step:
    event = json.loads(data)
    if (code := _error(event)) is not None and "content" not in event:
        return Step(error=code)
    return Step(text=event.get("content") or "", end=event.get("stop") is True)


def _tgi(data: str) -> Step:
    event = json.loads(data)
    if (code := _error(event)) is not None:
        return Step(error=code)
    token = event.get("token") or {}
    text = "" if token.get("special") else token.get("text") or ""
    return Step(text=text, end=event.get("generated_text") is not None)


def _triton(data: str) -> Step:
    event = json.loads(data)
    if (code := _error(event)) is not None:
        return Step(error=code)
    text = event.get("text_output")
    return Step(text=text if isinstance(text, str) else "")


@dataclass(frozen=True)
class EngineRequest:
    """The method-less shape of one protocol: path, body and how to read its stream.
    `ends_on_close`: the stream has no end marker of its own (Triton), so the body's end is
    the end of the task. `headers`: extra request headers (llama.cpp: `Connection: close`,
    since llama-server closes the connection after every stream anyway, and a client that
    pools it may send the next request into the closing socket)."""

    path: str
    body: dict[str, Any]
    parse: Callable[[str], Step]
    ends_on_close: bool = False
    headers: dict[str, str] | None = None


def engine_request(
    protocol: str,
    *,
    prompt: str,
    max_tokens: int,
    seed: int | None,
    model: str | None,
    extra: dict[str, Any] | None = None,
) -> EngineRequest:
    """The streaming request `protocol`'s server expects for one task; `extra` fields are
    merged into the top level of its body (e.g. the sampler fields an orchestrator sends, so
    that both sides of a comparison ask the engine for the same work)."""
    request = _request(protocol, prompt, max_tokens, seed, model)
    if extra:
        request.body.update(extra)
    return request


def _request(
    protocol: str, prompt: str, max_tokens: int, seed: int | None, model: str | None
) -> EngineRequest:
    if protocol == "vllm":
        body: dict[str, Any] = {
            "model": model or "",
            "prompt": prompt,
            "max_tokens": max_tokens,
            "stream": True,
        }
        if seed is not None:
            body["seed"] = seed
        return EngineRequest("/v1/completions", body, _vllm)
    if protocol == "llamacpp":
        body = {"prompt": prompt, "n_predict": max_tokens, "stream": True}
        if seed is not None:
            body["seed"] = seed
        return EngineRequest("/completion", body, _llamacpp, headers={"Connection": "close"})
    if protocol == "tgi":
        params: dict[str, Any] = {"max_new_tokens": max_tokens, "details": True}
        if seed is not None:
            params["seed"] = seed
        return EngineRequest("/generate_stream", {"inputs": prompt, "parameters": params}, _tgi)
    if protocol == "triton":
        if not model:
            raise ValueError("the triton protocol needs the model name (--direct-model)")
        body = {"text_input": prompt, "max_tokens": max_tokens, "stream": True}
        if seed is not None:
            body["seed"] = seed
        return EngineRequest(f"/v2/models/{model}/generate_stream", body, _triton, True)
    raise ValueError(f"unknown protocol {protocol!r}; one of {', '.join(PROTOCOLS)}")


async def served_model(client: aiohttp.ClientSession) -> str | None:
    """The first model id of an OpenAI-compatible `/v1/models`, or None."""
    try:
        async with client.get("v1/models") as resp:
            listing = await resp.json(content_type=None) if resp.status == 200 else None
    except (aiohttp.ClientError, ValueError):
        return None
    data = listing.get("data") if isinstance(listing, dict) else None
    if isinstance(data, list) and data and isinstance(data[0], dict):
        return str(data[0].get("id") or "") or None
    return None


class EngineTarget:
    """Runs one task per call straight against an engine (or an OpenAI-compatible proxy)."""

    def __init__(
        self, client: aiohttp.ClientSession, request: EngineRequest, *, name: str = "engine"
    ) -> None:
        self.client = client
        self.request = request
        self.name = name

    async def run_task(self, task_no: int) -> TaskResult:
        timer = TaskTimer(task_no)
        req = self.request
        try:
            post = self.client.post(req.path.lstrip("/"), json=req.body, headers=req.headers)
            async with post as resp:
                if resp.status != 200:
                    await resp.read()
                    return timer.finish(f"HTTP_{resp.status}")
                if resp.content_type != "text/event-stream":
                    await resp.read()
                    return timer.finish(BAD_STREAM, f"content type {resp.content_type!r}")
                result: TaskResult | None = None
                async for _event, data in iter_sse(resp.content):
                    if result is not None:
                        continue  # drain, so the connection is reused
                    try:
                        step = req.parse(data)
                    except (ValueError, AttributeError, TypeError):
                        result = timer.finish(BAD_STREAM, f"unreadable event {data[:80]!r}")
                        continue
                    if step.error is not None:
                        result = timer.finish(step.error, data[:200])
                        continue
                    if step.text:
                        timer.token()
                    if step.end:
                        result = timer.finish()
                if result is None:
                    if req.ends_on_close:
                        return timer.finish()
                    return timer.finish(STREAM_INCOMPLETE, "stream closed before its end event")
                return result
        except (TimeoutError, aiohttp.ClientError) as exc:
            return timer.finish(transport_code(exc), str(exc) or None)
