"""The llama.cpp server (`llama-server`) native API, simulated over SimEngine.

Routes: `GET /health`, `/props`, `/slots`, `/metrics`; `POST /completion` (alias
`/completions`), `/tokenize`, `/detokenize` (the plain ones in `llamacpp_plain`). Field names,
framing, shapes and status codes follow llama-server b1-0c1e570, the build this project
compiles, and tests/test_sim_vs_real_llamacpp.py compares the two on the same requests: one
`data: {json}` block per piece, a final `stop: true` event with `generation_settings` and
`timings`, no `data: [DONE]`, and a mid-stream failure as the non-standard `error: {...}` line
older builds send. The overload answer is `503` with an `unavailable_error` body; a malformed
directive is `400` with llama.cpp's error body; a body that is not JSON is `500`.

Samplers: an active repetition penalty ("penalties" in `samplers` and a penalty that is not
neutral, `llamacpp_params.penalty_active`) gives other tokens, still a pure function of the
request; a penalty the chain does not name is ignored, as llama.cpp ignores it.

Stop words (`stop`) follow llama-server's rule (`stops.LlamaCppStops`: the stop text is never
sent, text that may begin one is held back); `n_probs` adds `completion_probabilities`, one
entry per token: `{id, token, bytes, logprob, top_logprobs: [{id, token, bytes, logprob}]}`,
pre-sampling log-probabilities as llama-server sends them by default, where `token` is the text
this event sends for the token ("" while held); `post_sampling_probs` is not simulated. The
byte helpers shared with the vLLM simulator live in `wire.py`.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import falcon
import falcon.asgi
from falcon.asgi import SSEvent

from llama_orch.engine_sim import llamacpp_params as lp
from llama_orch.engine_sim.engine import (
    DirectiveError,
    SimEngine,
    SimFailure,
    SimOverload,
    SimToken,
)
from llama_orch.engine_sim.llamacpp_params import BOOLS, FLOATS, INTS, REQUEST_DEFAULTS
from llama_orch.engine_sim.llamacpp_plain import add_plain_routes, answer, error
from llama_orch.engine_sim.stops import LlamaCppStops
from llama_orch.engine_sim.tokens import token_text
from llama_orch.engine_sim.wire import (
    check_fields,
    next_token,
    sse_block,
)

DEFAULT_SAMPLERS = lp.DEFAULT_SAMPLERS
DEFAULTS = REQUEST_DEFAULTS  # what a request gets for every field it leaves out


class _SlotBook:
    """Which slot ids hold a streaming request, so events and /slots name the same ids;
    `last` keeps each slot's latest task, which `/slots` goes on reporting."""

    def __init__(self, engine: SimEngine) -> None:
        self.engine = engine
        self.busy: dict[int, dict[str, Any]] = {}
        self.last: dict[int, dict[str, Any]] = {}
        self.next_task = 0

    def take(self, params: dict[str, Any], prompt_n: int) -> int:
        free = [i for i in range(self.engine.config.slots) if i not in self.busy]
        slot = free[0] if free else self.engine.config.slots + len(self.busy)
        task = {"id_task": self.next_task, "params": params, "n_prompt_tokens": prompt_n}
        self.busy[slot] = self.last[slot] = task
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
        problem = check_fields(self.body, INTS, FLOATS, BOOLS)
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
        settings = lp.generation_settings(self.params)
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
            return error(resp, 400, problem, "invalid_request_error")
        prompt = self.prompt = self.prompt_text() or ""
        self.prompt_n = max(1, len(self.engine.tokenize(prompt)))
        limit = self.params["n_predict"]
        # an active repetition penalty changes the tokens (only when the chain names it)
        variant = lp.penalty_variant(self.params)
        tokens = self.engine.generate(
            prompt,
            self.params["seed"],
            None if limit < 0 else limit,
            top_n=self.params["n_probs"],
            variant=variant,
        )
        failed: SimFailure | None = None
        try:
            first = await next_token(tokens)
        except DirectiveError as exc:
            return error(resp, 400, f"invalid directive: {exc}", "invalid_request_error")
        except SimOverload:
            return error(resp, 503, "the server is overloaded (directive)", "unavailable_error")
        except SimFailure as exc:
            first, failed = None, exc
        self.t_first = time.perf_counter()
        self.slot = self.slots.take(self.params, self.prompt_n)
        if self.params["stream"]:
            resp.sse = self._events(first, tokens, failed)
            return None
        try:
            async for _ in self._pieces(first, tokens, failed):
                pass
        except SimFailure as exc:
            return error(resp, 500, str(exc), "server_error")
        finally:
            self.slots.busy.pop(self.slot, None)
            await tokens.aclose()  # type: ignore[attr-defined]
        answer(resp, self.final(stream=False))
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

    class Completion:
        async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
            raw = await req.stream.read()
            try:
                body = json.loads(raw or b"null")
            except ValueError as exc:  # llama-server: nlohmann's parse error, as a 500
                message = f"[json.exception.parse_error.101] parse error: {exc}"
                return error(resp, 500, message, "server_error")
            engine.last_request = body  # type: ignore[attr-defined]
            if not isinstance(body, dict):
                return error(resp, 400, "request body is not a JSON object")
            await _Completion(engine, slots, body).run(resp)
            return None

    app.add_route("/completion", Completion())
    app.add_route("/completions", Completion())
    add_plain_routes(app, engine, slots)
    return app
