"""The llama.cpp server (`llama-server`) native API, simulated over SimEngine.

Routes: `GET /health`, `/props`, `/slots`, `/metrics`; `POST /completion` (alias
`/completions`), `/tokenize`, `/detokenize`. Field names, framing and status codes follow
/work/shared/engine-protocols.md: one `data: {json}` block per piece, a final `stop: true`
event with `timings`, no `data: [DONE]`, and a mid-stream failure as the non-standard
`error: {...}` line older builds send. The overload answer is `503` with an
`unavailable_error` body; a malformed directive is `400` with llama.cpp's error body.

The few helpers that the vLLM simulator shares (raw SSE blocks, priming the token iterator,
Prometheus text) live here so that both modules frame bytes the same way.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import falcon
import falcon.asgi
from falcon.asgi import SSEvent

from harness.engine_sim.engine import (
    DirectiveError,
    SimEngine,
    SimFailure,
    SimOverload,
    SimToken,
)
from harness.engine_sim.tokens import VOCAB_SIZE, token_text

DEFAULT_SAMPLERS = ["dry", "top_k", "typ_p", "top_p", "min_p", "xtc", "temperature"]
# llama.cpp's own defaults: what a request gets for every field it leaves out.
DEFAULTS: dict[str, Any] = {
    "n_predict": -1,
    "seed": 4294967295,
    "temperature": 0.8,
    "top_k": 40,
    "top_p": 0.95,
    "min_p": 0.05,
    "stream": False,
    "cache_prompt": True,
    "return_tokens": False,
    "n_probs": 0,
    "samplers": DEFAULT_SAMPLERS,
}
_INTS = ("n_predict", "seed", "top_k", "n_probs", "id_slot")
_FLOATS = ("temperature", "top_p", "min_p")
_BOOLS = ("stream", "cache_prompt", "return_tokens")


# -- helpers shared with the vLLM simulator ---------------------------------------------------


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


# -- llama.cpp --------------------------------------------------------------------------------


def _error(
    resp: falcon.asgi.Response, code: int, message: str, kind: str = "invalid_request_error"
) -> None:
    resp.status = code
    resp.media = {"error": {"code": code, "message": message, "type": kind}}


class _SlotBook:
    """Which slot ids hold a streaming request, so events and /slots name the same ids."""

    def __init__(self, engine: SimEngine) -> None:
        self.engine = engine
        self.busy: dict[int, dict[str, Any]] = {}
        self.next_task = 0

    def take(self, params: dict[str, Any]) -> int:
        free = [i for i in range(self.engine.config.slots) if i not in self.busy]
        slot = free[0] if free else self.engine.config.slots + len(self.busy)
        self.busy[slot] = {"id_task": self.next_task, "params": params}
        self.next_task += 1
        return slot

    def processing(self) -> set[int]:
        """Booked slots, plus free ones for requests the engine runs but not yet streaming."""
        ids = set(self.busy)
        extra = self.engine.stats.running - len(ids)
        for i in range(self.engine.config.slots):
            if extra <= 0:
                break
            if i not in ids:
                ids.add(i)
                extra -= 1
        return ids


def _timings(prompt_n: int, prompt_s: float, predicted_n: int, predicted_s: float) -> dict:
    prompt_ms, predicted_ms = prompt_s * 1000, predicted_s * 1000
    return {
        "prompt_n": prompt_n,
        "prompt_ms": prompt_ms,
        "prompt_per_token_ms": prompt_ms / max(prompt_n, 1),
        "prompt_per_second": prompt_n / prompt_s if prompt_s > 0 else 0.0,
        "predicted_n": predicted_n,
        "predicted_ms": predicted_ms,
        "predicted_per_token_ms": predicted_ms / max(predicted_n, 1),
        "predicted_per_second": predicted_n / predicted_s if predicted_s > 0 else 0.0,
        "cache_n": 0,
    }


class _Completion:
    """One /completion request: validation, then a stream or a single JSON answer."""

    def __init__(self, engine: SimEngine, slots: _SlotBook, body: dict[str, Any]) -> None:
        self.engine, self.slots, self.body = engine, slots, body
        given = {k: v for k, v in body.items() if k in DEFAULTS and v is not None}
        self.params = {**DEFAULTS, **given}
        self.slot = -1
        self.t0 = time.perf_counter()
        self.t_first = self.t0
        self.ids: list[int] = []
        self.text: list[str] = []
        self.prompt = ""
        self.prompt_n = 1

    def prompt_text(self) -> str | None:
        prompt = self.body.get("prompt")
        if isinstance(prompt, str):
            return prompt
        if isinstance(prompt, list) and all(type(t) is int for t in prompt):
            return " ".join(map(str, prompt))  # token ids: never a directive
        return None

    def partial(self, tok: SimToken) -> dict[str, Any]:
        self.ids.append(tok.token_id)
        self.text.append(tok.text)
        event: dict[str, Any] = {
            "index": 0,
            "content": tok.text,
            "tokens": [tok.token_id] if self.params["return_tokens"] else [],
            "stop": False,
            "id_slot": -1,  # current builds name the slot only in the final event
            "tokens_predicted": len(self.ids),
            "tokens_evaluated": self.prompt_n,
        }
        if self.params["n_probs"] > 0:
            event["completion_probabilities"] = [self._probs(tok)]
        return event

    def _probs(self, tok: SimToken) -> dict[str, Any]:
        others = [(tok.token_id + k) % VOCAB_SIZE for k in range(1, self.params["n_probs"])]
        top = [{"id": tok.token_id, "token": tok.text, "logprob": 0.0}]
        top += [{"id": t, "token": token_text(t), "logprob": -9.0} for t in others]
        return {"id": tok.token_id, "token": tok.text, "logprob": 0.0, "top_logprobs": top}

    def final(self, stream: bool) -> dict[str, Any]:
        n = len(self.ids)
        limit = self.params["n_predict"]
        now = time.perf_counter()
        settings = {k: self.params[k] for k in DEFAULTS}
        settings["n_ctx"] = self.engine.config.ctx
        return {
            "index": 0,
            "content": "" if stream else "".join(self.text),
            "tokens": [] if stream or not self.params["return_tokens"] else self.ids,
            "id_slot": self.slot,
            "stop": True,
            "model": self.engine.config.model,
            "tokens_predicted": n,
            "tokens_evaluated": self.prompt_n,
            "generation_settings": settings,
            "prompt": self.prompt,
            "has_new_line": False,
            "truncated": False,
            "stop_type": "limit" if limit >= 0 and n >= limit else "eos",
            "stopping_word": "",
            "tokens_cached": self.prompt_n + n,
            "timings": _timings(self.prompt_n, self.t_first - self.t0, n, now - self.t_first),
        }

    async def run(self, resp: falcon.asgi.Response) -> None:
        problem = check_fields(self.body, _INTS, _FLOATS, _BOOLS)
        prompt = self.prompt_text()
        if problem is None and prompt is None:
            problem = '"prompt" must be a string or an array of token ids'
        if problem is not None:
            return _error(resp, 400, problem, "invalid_request_error")
        self.prompt = prompt
        self.prompt_n = max(1, len(self.engine.tokenize(prompt)))
        limit = self.params["n_predict"]
        tokens = self.engine.generate(prompt, self.params["seed"], None if limit < 0 else limit)
        failed: SimFailure | None = None
        try:
            first = await next_token(tokens)
        except DirectiveError as exc:
            return _error(resp, 400, f"invalid directive: {exc}", "invalid_request_error")
        except SimOverload:
            return _error(resp, 503, "the server is overloaded (directive)", "unavailable_error")
        except SimFailure as exc:
            first, failed = None, exc
        self.t_first = time.perf_counter()
        self.slot = self.slots.take(self.params)
        if self.params["stream"]:
            resp.sse = self._events(first, tokens, failed)
            return None
        try:
            await self._drain(first, tokens, failed)
        except SimFailure as exc:
            return _error(resp, 500, str(exc), "server_error")
        finally:
            self.slots.busy.pop(self.slot, None)
            await tokens.aclose()  # type: ignore[attr-defined]
        resp.media = self.final(stream=False)
        return None

    async def _drain(
        self, first: SimToken | None, tokens: AsyncIterator[SimToken], failed: SimFailure | None
    ) -> None:
        if failed is not None:
            raise failed
        if first is not None:
            self.partial(first)
            async for tok in tokens:
                self.partial(tok)

    async def _events(
        self, first: SimToken | None, tokens: AsyncIterator[SimToken], failed: SimFailure | None
    ) -> AsyncIterator[SSEvent]:
        try:
            if failed is not None:
                raise failed
            if first is not None:
                yield sse_block("data", self.partial(first))
                async for tok in tokens:
                    yield sse_block("data", self.partial(tok))
            yield sse_block("data", self.final(stream=True))
        except SimFailure as exc:
            yield sse_block("error", {"code": 500, "message": str(exc), "type": "server_error"})
        finally:
            self.slots.busy.pop(self.slot, None)
            await tokens.aclose()  # type: ignore[attr-defined]


def create_app(engine: SimEngine) -> falcon.asgi.App:
    """A Falcon ASGI app that answers like `llama-server --metrics` serving `engine`."""
    app = falcon.asgi.App()
    slots = _SlotBook(engine)
    cfg = engine.config

    class Health:
        async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
            resp.media = {"status": "ok"}

    class Props:
        async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
            resp.media = {
                "default_generation_settings": {
                    "id": 0,
                    "id_task": -1,
                    "n_ctx": cfg.ctx,
                    "speculative": False,
                    "is_processing": False,
                    "params": dict(DEFAULTS),
                },
                "total_slots": cfg.slots,
                "model_path": f"/models/{cfg.model}.gguf",
                "chat_template": "",
                "modalities": {"vision": False, "audio": False},
                "build_info": cfg.engine_version,
            }

    class Slots:
        async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
            busy = slots.processing()
            if req.get_param_as_int("fail_on_no_slot") and len(busy) >= cfg.slots:
                return _error(resp, 503, "no slot available", "unavailable_error")
            resp.media = [
                {
                    "id": i,
                    "id_task": slots.busy.get(i, {}).get("id_task", -1),
                    "n_ctx": cfg.ctx,
                    "speculative": False,
                    "is_processing": i in busy,
                    "params": slots.busy.get(i, {}).get("params", dict(DEFAULTS)),
                    "next_token": {"has_next_token": i in busy, "n_remain": -1, "n_decoded": 0},
                }
                for i in range(cfg.slots)
            ]
            return None

    class Metrics:
        async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
            st = engine.stats
            resp.content_type = "text/plain; version=0.0.4"
            resp.text = prometheus_text(
                "llamacpp:",
                [
                    ("prompt_tokens_total", "counter", st.prompt_tokens),
                    ("prompt_seconds_total", "counter", st.prompt_seconds),
                    ("tokens_predicted_total", "counter", st.generated_tokens),
                    ("tokens_predicted_seconds_total", "counter", st.decode_seconds),
                    ("n_decode_total", "counter", st.generated_tokens),
                    ("n_busy_slots_per_decode", "counter", st.running),
                    ("prompt_tokens_seconds", "gauge", 0.0),
                    ("predicted_tokens_seconds", "gauge", 0.0),
                    ("requests_processing", "gauge", st.running),
                    ("requests_deferred", "gauge", st.waiting),
                    ("kv_cache_usage_ratio", "gauge", st.running / cfg.slots),  # busy slots
                ],
            )

    class Completion:
        async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
            body = await json_body(req)
            engine.last_request = body  # type: ignore[attr-defined]
            if not isinstance(body, dict):
                return _error(resp, 400, "request body is not a JSON object")
            await _Completion(engine, slots, body).run(resp)
            return None

    class Tokenize:
        async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
            body = await json_body(req)
            content = body.get("content") if isinstance(body, dict) else None
            if not isinstance(content, str):
                return _error(resp, 400, '"content" must be a string', "invalid_request_error")
            ids = engine.tokenize(content)
            if body.get("with_pieces"):
                pieces = zip(ids, content.split(), strict=True)
                resp.media = {"tokens": [{"id": i, "piece": w} for i, w in pieces]}
            else:
                resp.media = {"tokens": ids}
            return None

    class Detokenize:
        async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
            body = await json_body(req)
            ids = body.get("tokens") if isinstance(body, dict) else None
            if not isinstance(ids, list) or not all(type(t) is int for t in ids):
                return _error(resp, 400, '"tokens" must be an array of ids')
            resp.media = {"content": "".join(token_text(t) for t in ids)}
            return None

    app.add_route("/health", Health())
    app.add_route("/props", Props())
    app.add_route("/slots", Slots())
    app.add_route("/metrics", Metrics())
    app.add_route("/completion", Completion())
    app.add_route("/completions", Completion())
    app.add_route("/tokenize", Tokenize())
    app.add_route("/detokenize", Detokenize())
    return app
