"""vLLM's OpenAI-compatible server, simulated over SimEngine.

Routes: `GET /health`, `/version`, `/v1/models`, `/metrics`; `POST /v1/completions` (streaming
and not). Chunks follow /work/shared/engine-protocols.md: `choices[0].text`, `finish_reason`
null until the chunk carrying the last token, per-chunk `token_ids` when the request sets
`return_token_ids`, an optional usage chunk (`stream_options.include_usage`), then
`data: [DONE]`. Errors use vLLM's body `{"error": {message, type, param, code}}`; the overload
answer is `503`, and a mid-stream failure is a `data: {"error": {...}}` chunk followed by
`data: [DONE]`, the way vLLM's streaming generators report an exception.

Ordinary chunks carry `"usage": null`: vLLM's completions stream serializes every field, set or
not (vllm-project/vllm vllm/entrypoints/openai/serving_completion.py, `model_dump_json(
exclude_unset=False)` at 2d5f987d and 00463e62); `create_app(engine, null_usage=False)` plays a
server that leaves unset fields out, so chunks have no `usage` key. `GET /health` answers `503`
with no body once the engine has died (`engine.state`; vllm/entrypoints/serve/instrumentator/
health.py catches `EngineDeadError`).

`stop` (a string or a list) follows vLLM's rule (`stops.VllmStops`: the stop text is cut, the
streamed text lags behind while stop strings are set, `stop_reason` names the match);
`include_stop_str_in_output` keeps it. `logprobs: N` (at most 20, vLLM's default
`max_logprobs`) adds the legacy `{text_offset, token_logprobs, tokens, top_logprobs}` object per
chunk; `return_tokens_as_token_ids` writes tokens as `token_id:<id>`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import falcon
import falcon.asgi
from falcon.asgi import SSEvent

from llama_orch.engine_sim.engine import (
    DirectiveError,
    SimEngine,
    SimFailure,
    SimOverload,
    SimToken,
)
from llama_orch.engine_sim.stops import VllmStops
from llama_orch.engine_sim.tokens import token_text
from llama_orch.engine_sim.wire import (
    RawEvent,
    check_fields,
    json_body,
    next_token,
    prometheus_text,
    sse_block,
)

_INTS = ("max_tokens", "seed", "top_k", "n", "logprobs")
_FLOATS = ("temperature", "top_p", "min_p", "repetition_penalty")
_BOOLS = (
    "stream",
    "return_token_ids",
    "echo",
    "include_stop_str_in_output",
    "return_tokens_as_token_ids",
)
MAX_LOGPROBS = 20
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

    def __init__(self, engine: SimEngine, body: dict[str, Any], null_usage: bool = True) -> None:
        self.engine, self.body, self.null_usage = engine, body, null_usage
        self.id = "cmpl-" + secrets.token_hex(16)
        self.created = int(time.time())
        limit = body.get("max_tokens")
        self.max_tokens: int = 16 if limit is None else limit  # vLLM's default for completions
        self.want_ids = bool(body.get("return_token_ids"))
        self.as_ids = bool(body.get("return_tokens_as_token_ids"))
        self.logprobs: int | None = body.get("logprobs")
        stop = body.get("stop")
        self.stop_list = [stop] if isinstance(stop, str) else stop if stop is not None else []
        self.stops = VllmStops([], False)
        self.n_out = 0
        self.prompt_n = 0
        self.streamed = 0  # characters of text already sent (logprobs `text_offset`)

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
        if not isinstance(self.stop_list, list) or not all(
            isinstance(s, str) for s in self.stop_list
        ):
            return 400, "stop must be a string or a list of strings"
        if self.logprobs is not None and not 0 <= self.logprobs <= MAX_LOGPROBS:
            return 400, (
                f"Requested sample logprobs of {self.logprobs}, which is greater than max "
                f"allowed: {MAX_LOGPROBS}"
            )
        self.stops = VllmStops(self.stop_list, bool(body.get("include_stop_str_in_output")))
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if isinstance(prompt, str):
            return prompt
        if isinstance(prompt, list) and prompt and all(type(t) is int for t in prompt):
            return " ".join(map(str, prompt))  # token ids: never a directive
        return 400, "prompt must be a string or an array of token ids"

    def chunk(
        self,
        text: str,
        toks: list[SimToken] | None,
        finish: str | None,
        stop_reason: str | None = None,
    ) -> dict[str, Any]:
        choice: dict[str, Any] = {
            "index": 0,
            "text": text,
            "logprobs": self._logprobs(toks) if toks and self.logprobs is not None else None,
            "finish_reason": finish,
            "stop_reason": stop_reason,
        }
        if self.want_ids:
            choice["token_ids"] = [t.token_id for t in toks or ()]
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.engine.config.model,
            "choices": [choice],
        }
        if self.null_usage:
            chunk["usage"] = None
        return chunk

    def _token(self, tid: int) -> str:
        return f"token_id:{tid}" if self.as_ids else token_text(tid)

    def _logprobs(self, toks: list[SimToken]) -> dict[str, Any]:
        """The legacy completions form: the sampled token leads each `top_logprobs` dict,
        then the `logprobs` most likely tokens (a dict: equal keys collapse, as in vLLM)."""
        out: dict[str, list[Any]] = {
            "text_offset": [],
            "token_logprobs": [],
            "tokens": [],
            "top_logprobs": [],
        }
        offset = self.streamed
        for tok in toks:
            name = self._token(tok.token_id)
            top = {name: tok.logprob}
            top.update((self._token(t), lp) for t, lp in tok.top)
            out["text_offset"].append(offset)
            out["token_logprobs"].append(tok.logprob)
            out["tokens"].append(name)
            out["top_logprobs"].append(top)
            offset += len(name)
        return out

    def usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_n,
            "completion_tokens": self.n_out,
            "total_tokens": self.prompt_n + self.n_out,
        }

    def finish_reason(self) -> str:
        if self.stops.matched is not None:
            return "stop"
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
        top_n = self.logprobs or 0
        tokens = self.engine.generate(checked, self.body.get("seed"), self.max_tokens, top_n=top_n)
        failed: SimFailure | None = None
        try:
            first = await next_token(tokens)
        except SimOverload:
            return _error(resp, 503, "The server is overloaded (directive); try again later.")
        except SimFailure as exc:
            first, failed = None, exc
        if self.body.get("stream"):
            # FastAPI's StreamingResponse adds the charset to text/* media types
            resp.content_type = "text/event-stream; charset=utf-8"
            resp.sse = self._events(first, tokens, failed, planned)
            return None
        toks: list[SimToken] = []
        try:
            async for tok, _finished in self._steps(first, tokens, failed, planned):
                toks.append(tok)
        except SimFailure as exc:
            return _error(resp, 500, str(exc))
        finally:
            await tokens.aclose()  # type: ignore[attr-defined]
        answer = self.chunk(self.stops.text, toks, self.finish_reason(), self.stops.matched)
        answer["usage"] = self.usage()
        resp.media = answer
        return None

    async def _steps(
        self,
        first: SimToken | None,
        tokens: AsyncIterator[SimToken],
        failed: SimFailure | None,
        planned: int,
    ) -> AsyncIterator[tuple[SimToken, bool]]:
        """(token, finished) until the tokens run out or a stop string matched."""
        if failed is not None:
            raise failed
        tok = first
        while tok is not None:
            self.n_out += 1
            stopped = self.stops.push(tok.text) is not None
            finished = stopped or self.n_out >= planned
            yield tok, finished
            if stopped:
                return
            tok = await next_token(tokens)  # past the last token: runs out `hold_ms`

    async def _events(
        self,
        first: SimToken | None,
        tokens: AsyncIterator[SimToken],
        failed: SimFailure | None,
        planned: int,
    ) -> AsyncIterator[SSEvent]:
        try:
            async for tok, finished in self._steps(first, tokens, failed, planned):
                text = self.stops.delta(finished)
                finish = self.finish_reason() if finished else None
                chunk = self.chunk(text, [tok], finish, self.stops.matched)
                self.streamed += len(text)
                yield sse_block("data", chunk)
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


def create_app(engine: SimEngine, *, null_usage: bool = True) -> falcon.asgi.App:
    """A Falcon ASGI app that answers like `vllm serve` for the engine's model; `null_usage`
    False leaves the `usage` key out of ordinary chunks."""
    app = falcon.asgi.App()
    cfg = engine.config

    class Health:
        async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
            resp.status = 200 if engine.state == "ready" else 503
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
            await _Completion(engine, body, null_usage).run(resp)
            return None

    app.add_route("/health", Health())
    app.add_route("/version", Version())
    app.add_route("/v1/models", Models())
    app.add_route("/metrics", Metrics())
    app.add_route("/v1/completions", Completions())
    return app
