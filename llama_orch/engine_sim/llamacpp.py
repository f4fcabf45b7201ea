"""The llama.cpp server (`llama-server`) native API, simulated over SimEngine.

Routes: `GET /health`, `/props`, `/slots`, `/metrics`; `POST /completion` (alias
`/completions`), `/tokenize`, `/detokenize`. Field names, framing and status codes follow
/work/shared/engine-protocols.md: one `data: {json}` block per piece, a final `stop: true`
event with `timings`, no `data: [DONE]`, and a mid-stream failure as the non-standard
`error: {...}` line older builds send. The overload answer is `503` with an
`unavailable_error` body; a malformed directive is `400` with llama.cpp's error body.

Stop words (`stop`) follow llama-server's rule (`stops.LlamaCppStops`: the stop text is never
sent, text that may begin one is held back); `n_probs` adds `completion_probabilities`, one
entry per token: `{id, token, bytes, logprob, top_logprobs: [{id, token, bytes, logprob}]}`,
pre-sampling log-probabilities as llama-server sends them by default, where `token` is the text
this event sends for the token ("" while held); `post_sampling_probs` is not simulated. The
byte helpers shared with the vLLM simulator live in `wire.py`.
"""

from __future__ import annotations

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
from llama_orch.engine_sim.stops import LlamaCppStops
from llama_orch.engine_sim.tokens import token_text
from llama_orch.engine_sim.wire import (
    check_fields,
    json_body,
    next_token,
    prometheus_text,
    sse_block,
)

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
    "stop": [],
}
_INTS = ("n_predict", "seed", "top_k", "n_probs", "id_slot")
_FLOATS = ("temperature", "top_p", "min_p")
_BOOLS = ("stream", "cache_prompt", "return_tokens")


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
        stop = body.get("stop")  # llama.cpp reads only an array; anything else is ignored
        self.params["stop"] = stop if isinstance(stop, list) else []
        self.stops = LlamaCppStops(w for w in self.params["stop"] if isinstance(w, str))
        self.slot = -1
        self.t0 = time.perf_counter()
        self.t_first = self.t0
        self.ids: list[int] = []
        self.probs: list[dict[str, Any]] = []
        self.prompt = ""
        self.prompt_n = 1

    def prompt_text(self) -> str | None:
        prompt = self.body.get("prompt")
        if isinstance(prompt, str):
            return prompt
        if isinstance(prompt, list) and all(type(t) is int for t in prompt):
            return " ".join(map(str, prompt))  # token ids: never a directive
        return None

    def problem(self) -> str | None:
        """What llama-server refuses in this body (None: nothing)."""
        problem = check_fields(self.body, _INTS, _FLOATS, _BOOLS)
        if problem is None and any(not isinstance(w, str) for w in self.params["stop"]):
            return "[json.exception.type_error.302] type must be string"
        if problem is None and self.prompt_text() is None:
            return '"prompt" must be a string or an array of token ids'
        return problem

    def partial(self, tok: SimToken) -> dict[str, Any]:
        """The event of one token: its text less any stop word, "" while text is held."""
        self.ids.append(tok.token_id)
        content = self.stops.push(tok.text)
        event = self._partial(content, [tok.token_id])
        if self.params["n_probs"] > 0:
            entry = self._probs(tok, content)
            self.probs.append(entry)
            event["completion_probabilities"] = [entry]
        if self.stops.word is not None:  # the stopping token's event carries the timings
            event["timings"] = self._timings()
        return event

    def _partial(self, content: str, ids: list[int]) -> dict[str, Any]:
        return {
            "index": 0,
            "content": content,
            "tokens": ids if self.params["return_tokens"] else [],
            "stop": False,
            "id_slot": -1,  # current builds name the slot only in the final event
            "tokens_predicted": len(self.ids),
            "tokens_evaluated": self.prompt_n,
        }

    def _probs(self, tok: SimToken, sent: str) -> dict[str, Any]:
        """llama.cpp's pre-sampling `completion_probabilities` entry: the chosen token as sent
        in this event (so "" while held), and the `n_probs` most likely tokens in full."""
        top = [
            {"id": t, "token": token_text(t), "bytes": list(token_text(t).encode()), "logprob": lp}
            for t, lp in tok.top
        ]
        return {
            "id": tok.token_id,
            "token": sent,
            "bytes": list(sent.encode()),
            "logprob": tok.logprob,
            "top_logprobs": top,
        }

    def _timings(self) -> dict[str, Any]:
        now = time.perf_counter()
        n = len(self.ids)
        return _timings(self.prompt_n, self.t_first - self.t0, n, now - self.t_first)

    def stop_type(self) -> str:
        limit = self.params["n_predict"]
        if self.stops.word is not None:
            return "word"
        return "limit" if limit >= 0 and len(self.ids) >= limit else "eos"

    def final(self, stream: bool) -> dict[str, Any]:
        n = len(self.ids)
        settings = {k: self.params[k] for k in DEFAULTS}
        settings["n_ctx"] = self.engine.config.ctx
        settings["stop"] = self.params["stop"]
        answer = {
            "index": 0,
            "content": "" if stream else self.stops.text,
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
            "stop_type": self.stop_type(),
            "stopping_word": self.stops.word or "",
            "tokens_cached": self.prompt_n + n,
            "timings": self._timings(),
        }
        if not stream and self.params["n_probs"] > 0:
            answer["completion_probabilities"] = self.probs
        return answer

    async def run(self, resp: falcon.asgi.Response) -> None:
        problem = self.problem()
        if problem is not None:
            return _error(resp, 400, problem, "invalid_request_error")
        prompt = self.prompt = self.prompt_text() or ""
        self.prompt_n = max(1, len(self.engine.tokenize(prompt)))
        limit = self.params["n_predict"]
        tokens = self.engine.generate(
            prompt, self.params["seed"], None if limit < 0 else limit, top_n=self.params["n_probs"]
        )
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
            async for _ in self._pieces(first, tokens, failed):
                pass
        except SimFailure as exc:
            return _error(resp, 500, str(exc), "server_error")
        finally:
            self.slots.busy.pop(self.slot, None)
            await tokens.aclose()  # type: ignore[attr-defined]
        resp.media = self.final(stream=False)
        return None

    async def _pieces(
        self, first: SimToken | None, tokens: AsyncIterator[SimToken], failed: SimFailure | None
    ) -> AsyncIterator[dict[str, Any]]:
        """Partial events until the tokens run out or a stop word matched."""
        if failed is not None:
            raise failed
        tok = first
        while tok is not None:
            yield self.partial(tok)
            if self.stops.word is not None:
                return
            tok = await next_token(tokens)
        held = self.stops.flush()
        if held and self.stop_type() == "eos":  # released with the end-of-sequence token
            yield self._partial(held, [])

    async def _events(
        self, first: SimToken | None, tokens: AsyncIterator[SimToken], failed: SimFailure | None
    ) -> AsyncIterator[SSEvent]:
        try:
            async for event in self._pieces(first, tokens, failed):
                yield sse_block("data", event)
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
