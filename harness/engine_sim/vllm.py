"""vLLM's OpenAI-compatible server, simulated over SimEngine.

Routes: `GET /health`, `/version`, `/v1/models`, `/metrics`; `POST /v1/completions` (streaming
and not). Chunks follow /work/shared/engine-protocols.md: `choices[0].text`, `finish_reason`
null until the chunk carrying the last token, per-chunk `token_ids` when the request sets
`return_token_ids`, an optional usage chunk (`stream_options.include_usage`), then
`data: [DONE]`. Errors use vLLM's body `{"error": {message, type, param, code}}`; the overload
answer is `503`, and a mid-stream failure is a `data: {"error": {...}}` chunk followed by
`data: [DONE]`, the way vLLM's streaming generators report an exception.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
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
from harness.engine_sim.llamacpp import (
    RawEvent,
    check_fields,
    json_body,
    next_token,
    prometheus_text,
    sse_block,
)

_INTS = ("max_tokens", "seed", "top_k", "n", "logprobs")
_FLOATS = ("temperature", "top_p", "min_p", "repetition_penalty")
_BOOLS = ("stream", "return_token_ids", "echo")
_DONE = RawEvent(b"data: [DONE]\n\n")
_ERROR_TYPES = {400: "BadRequestError", 404: "NotFoundError", 503: "ServiceUnavailableError"}


def _error_body(code: int, message: str) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(code, "InternalServerError")
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _error(resp: falcon.asgi.Response, code: int, message: str) -> None:
    resp.status = code
    resp.media = _error_body(code, message)


class _Completion:
    """One /v1/completions request: validation, then chunks or one JSON answer."""

    def __init__(self, engine: SimEngine, body: dict[str, Any]) -> None:
        self.engine, self.body = engine, body
        self.id = "cmpl-" + secrets.token_hex(16)
        self.created = int(time.time())
        limit = body.get("max_tokens")
        self.max_tokens: int = 16 if limit is None else limit  # vLLM's default for completions
        self.want_ids = bool(body.get("return_token_ids"))
        self.n_out = 0
        self.prompt_n = 0

    def validate(self) -> str | tuple[int, str]:
        """The prompt text, or (status, message) for a refused request."""
        body = self.body
        problem = check_fields(body, _INTS, _FLOATS, _BOOLS)
        if problem is not None:
            return 400, problem
        model = body.get("model", self.engine.config.model)
        if model != self.engine.config.model:
            return 404, f"The model `{model}` does not exist."
        if body.get("n", 1) != 1:
            return 400, "this server answers n=1 only"
        if self.max_tokens < 0:
            return 400, "max_tokens must be at least 0"
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if isinstance(prompt, str):
            return prompt
        if isinstance(prompt, list) and prompt and all(type(t) is int for t in prompt):
            return " ".join(map(str, prompt))  # token ids: never a directive
        return 400, "prompt must be a string or an array of token ids"

    def chunk(self, text: str, ids: list[int] | None, finish: str | None) -> dict[str, Any]:
        choice: dict[str, Any] = {
            "index": 0,
            "text": text,
            "logprobs": None,
            "finish_reason": finish,
            "stop_reason": None,
        }
        if self.want_ids:
            choice["token_ids"] = ids or []
        return {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.engine.config.model,
            "choices": [choice],
            "usage": None,
        }

    def usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_n,
            "completion_tokens": self.n_out,
            "total_tokens": self.prompt_n + self.n_out,
        }

    def finish_reason(self) -> str:
        return "length" if self.n_out >= self.max_tokens else "stop"

    async def run(self, resp: falcon.asgi.Response) -> None:
        checked = self.validate()
        if isinstance(checked, tuple):
            return _error(resp, *checked)
        self.prompt_n = max(1, len(self.engine.tokenize(checked)))
        try:
            _, _, planned = self.engine.plan(checked, self.max_tokens)
        except DirectiveError as exc:
            return _error(resp, 400, f"invalid directive: {exc}")
        tokens = self.engine.generate(checked, self.body.get("seed"), self.max_tokens)
        failed: SimFailure | None = None
        try:
            first = await next_token(tokens)
        except SimOverload:
            return _error(resp, 503, "The server is overloaded (directive); try again later.")
        except SimFailure as exc:
            first, failed = None, exc
        if self.body.get("stream"):
            resp.sse = self._events(first, tokens, failed, planned)
            return None
        ids, text = [], []
        try:
            if failed is not None:
                raise failed
            if first is not None:
                ids.append(first.token_id)
                text.append(first.text)
                async for tok in tokens:
                    ids.append(tok.token_id)
                    text.append(tok.text)
        except SimFailure as exc:
            return _error(resp, 500, str(exc))
        self.n_out = len(ids)
        answer = self.chunk("".join(text), ids, self.finish_reason())
        answer["usage"] = self.usage()
        resp.media = answer
        return None

    async def _events(
        self,
        first: SimToken | None,
        tokens: AsyncIterator[SimToken],
        failed: SimFailure | None,
        planned: int,
    ) -> AsyncIterator[SSEvent]:
        try:
            if failed is not None:
                raise failed
            tok = first
            while tok is not None:
                self.n_out += 1
                finish = self.finish_reason() if self.n_out >= planned else None
                yield sse_block("data", self.chunk(tok.text, [tok.token_id], finish))
                tok = await next_token(tokens)
            if planned == 0:
                yield sse_block("data", self.chunk("", [], self.finish_reason()))
            options = self.body.get("stream_options") or {}
            if options.get("include_usage"):
                chunk = self.chunk("", None, None)
                chunk["choices"], chunk["usage"] = [], self.usage()
                yield sse_block("data", chunk)
        except SimFailure as exc:
            yield sse_block("data", _error_body(500, str(exc)))
        finally:
            await tokens.aclose()  # type: ignore[attr-defined]
        yield _DONE


def create_app(engine: SimEngine) -> falcon.asgi.App:
    """A Falcon ASGI app that answers like `vllm serve` for the engine's model."""
    app = falcon.asgi.App()
    cfg = engine.config

    class Health:
        async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
            resp.status = 200
            resp.text = ""

    class Version:
        async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
            resp.media = {"version": cfg.engine_version}

    class Models:
        async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
            resp.media = {
                "object": "list",
                "data": [
                    {
                        "id": cfg.model,
                        "object": "model",
                        "created": int(engine.started_at),
                        "owned_by": "vllm",
                        "root": cfg.model,
                        "parent": None,
                        "max_model_len": cfg.ctx,
                        "permission": [],
                    }
                ],
            }

    class Metrics:
        async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
            st = engine.stats
            finished = max(0, st.requests - st.running - st.waiting - st.failures)
            resp.content_type = "text/plain; version=0.0.4"
            resp.text = prometheus_text(
                "vllm:",
                [
                    ("num_requests_running", "gauge", st.running),
                    ("num_requests_waiting", "gauge", st.waiting),
                    ("kv_cache_usage_perc", "gauge", st.running / cfg.slots),  # busy slots
                    ("num_preemptions_total", "counter", 0),
                    ("prompt_tokens_total", "counter", st.prompt_tokens),
                    ("generation_tokens_total", "counter", st.generated_tokens),
                    ("request_success_total", "counter", finished),
                    ("prefix_cache_queries_total", "counter", 0),
                    ("prefix_cache_hits_total", "counter", 0),
                ],
            )

    class Completions:
        async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
            body = await json_body(req)
            engine.last_request = body  # type: ignore[attr-defined]
            if not isinstance(body, dict):
                return _error(resp, 400, "request body is not a JSON object")
            await _Completion(engine, body).run(resp)
            return None

    app.add_route("/health", Health())
    app.add_route("/version", Version())
    app.add_route("/v1/models", Models())
    app.add_route("/metrics", Metrics())
    app.add_route("/v1/completions", Completions())
    return app
