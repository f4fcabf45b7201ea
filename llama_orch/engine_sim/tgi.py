"""Text Generation Inference (TGI) wire protocol for the engine simulator.

Routes: `GET /health`, `GET /info`, `GET /metrics` (`tgi_` names), `POST /generate`,
`POST /generate_stream` and the compat `POST /` (either, by its `stream` field). Facts follow
TGI's router (huggingface/text-generation-inference router/src/server.rs and lib.rs):

- `GET /health` is `200` with no body, or `503 {"error":"unhealthy","error_type":"healthcheck"}`
  while the engine is not ready (`engine.state`);
- stream events are `data:{json}` with no space after the colon; each carries `index` (from 1),
  `token {id, text, logprob, special}`, `generated_text` and `details`, both null except on the
  last event, where `details` is filled only when the request set `details: true`; there is no
  `[DONE]`. With `split_multibyte` non-ASCII words stream as a `text: ""` token plus the rest,
  as TGI streams a token that ends inside a multibyte character (`tgi_wire`);
- a stream that ends on its own (the directive's token count below `max_new_tokens`) closes with
  a special end-of-sequence token, `finish_reason: "eos_token"`, as TGI does; one that reaches
  `max_new_tokens` ends on its last real token with `finish_reason: "length"`;
- parameter checks mirror TGI's validation (422, `error_type: "validation"`): `temperature` and
  `top_k` strictly positive, `top_p` strictly between 0 and 1, `max_new_tokens` at least 1, and
  the token budget of `max_total_tokens`; unknown parameters (e.g. `min_p`) are ignored;
- on `/generate_stream` every refusal arrives in-band, as TGI's router yields it into the SSE
  stream: HTTP 200 and one event `{"error", "error_type"}` (the directive's overload
  `{"error":"Model is overloaded","error_type":"overloaded"}`, a malformed directive a
  `validation` error, specs/80 section 6). `create_app(engine, inband_errors=False)` plays the
  status form instead (429/422 before any event), which `/generate` always uses;
- a mid-stream failure is a final `data:{"error": ..., "error_type": "generation"}` event; on
  `/generate` it is `424` with the same body.
- `parameters.stop` (at most 4 sequences) ends generation once the output ends with one of
  them (`stops.tgi_stopped`), after the token-limit check; the stop text stays in the tokens and
  `generated_text`, and the last event has `finish_reason: "stop_sequence"`;
- every token carries its `logprob`; `parameters.top_n_tokens` (at most 5) adds `top_tokens`
  (`[{id, text, logprob, special}]`, most likely first) to each event, omitted otherwise.

`engine.last_request` holds the JSON body of the latest generation request, for tests.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import falcon
import falcon.asgi

from llama_orch.engine_sim.directive import DirectiveError
from llama_orch.engine_sim.engine import SimEngine, SimFailure, SimOverload, SimToken
from llama_orch.engine_sim.tgi_request import Rejected, TgiRequest, invalid, parse_request
from llama_orch.engine_sim.tgi_wire import (
    EOS_TOKEN,
    TgiEvent,
    WireToken,
    decoded,
    dumps,
    top_tokens,
    wire_tokens,
)

_OVERLOADED = {"error": "Model is overloaded", "error_type": "overloaded"}
_UNHEALTHY = {"error": "unhealthy", "error_type": "healthcheck"}


@dataclass
class _Counters:
    """What TGI's router counts, in the simulator's terms."""

    requests: int = 0
    success: int = 0
    failure: Counter[str] = field(default_factory=Counter)
    duration_s: float = 0.0
    queue_s: float = 0.0
    per_token_s: float = 0.0
    generated: int = 0
    input_length: int = 0


class _Tgi:
    """The simulator's responders, sharing one SimEngine and its counters."""

    def __init__(self, engine: SimEngine, inband_errors: bool, split_multibyte: bool) -> None:
        self.engine = engine
        self.inband_errors = inband_errors
        self.split_multibyte = split_multibyte
        self.counters = _Counters()
        model = engine.config.model
        self.model_sha = hashlib.sha1(model.encode()).hexdigest()
        self.build_sha = hashlib.sha1(engine.config.engine_version.encode()).hexdigest()

    # -- plain endpoints ---------------------------------------------------------------
    async def on_get_health(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        """`200` with no body, or `503` with TGI's healthcheck error while not ready."""
        if self.engine.state != "ready":
            resp.status = falcon.HTTP_503
            resp.media = dict(_UNHEALTHY)
            return
        resp.status = falcon.HTTP_200
        resp.data = b""

    async def on_get_info(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        cfg = self.engine.config
        resp.media = {
            "model_id": cfg.model,
            "model_sha": self.model_sha,
            "model_dtype": "torch.float16",
            "model_device_type": "cuda",
            "model_pipeline_tag": "text-generation",
            "max_concurrent_requests": cfg.slots,
            "max_best_of": 2,
            "max_stop_sequences": 4,
            "max_input_tokens": cfg.ctx - 1,
            "max_total_tokens": cfg.ctx,
            "validation_workers": 2,
            "max_client_batch_size": 4,
            "router": "text-generation-router",
            "version": cfg.engine_version,
            "sha": self.build_sha,
            "docker_label": None,
        }

    async def on_get_metrics(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        c, st = self.counters, self.engine.stats
        plain = [
            ("tgi_queue_size", "gauge", [("", st.waiting)]),
            ("tgi_batch_current_size", "gauge", [("", st.running)]),
            ("tgi_batch_current_max_tokens", "gauge", [("", st.running * self.engine.config.ctx)]),
            ("tgi_request_count", "counter", [("", c.requests)]),
            ("tgi_request_success", "counter", [("", c.success)]),
            (
                "tgi_request_failure",
                "counter",
                [(f'{{err="{k}"}}', v) for k, v in c.failure.items()],
            ),
        ]
        histograms = [
            ("tgi_request_duration", c.duration_s),
            ("tgi_request_queue_duration", c.queue_s),
            ("tgi_request_mean_time_per_token_duration", c.per_token_s),
            ("tgi_request_generated_tokens", c.generated),
            ("tgi_request_input_length", c.input_length),
        ]
        out: list[str] = []
        for name, kind, samples in plain:
            out += [f"# TYPE {name} {kind}", *(f"{name}{lab} {v}" for lab, v in samples)]
        for name, total in histograms:
            out += [
                f"# TYPE {name} histogram",
                f'{name}_bucket{{le="+Inf"}} {c.success}',
                f"{name}_sum {total}",
                f"{name}_count {c.success}",
            ]
        resp.content_type = "text/plain; version=0.0.4"
        resp.text = "\n".join(out) + "\n"

    # -- generation --------------------------------------------------------------------
    async def _read(self, req: falcon.asgi.Request) -> Any:
        raw = await req.stream.read()
        try:
            return json.loads(raw or b"null")
        except ValueError as exc:
            raise Rejected(
                falcon.HTTP_400,
                {"error": f"Failed to parse the request body as JSON: {exc}", "error_type": "json"},
            ) from exc

    async def on_rejected(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, ex: Exception, params: Any
    ) -> None:
        """TGI's refusal: the status and `{"error", "error_type"}`, counted as a failure."""
        assert isinstance(ex, Rejected)
        self.counters.failure[ex.body["error_type"]] += 1
        resp.status = ex.status
        resp.media = ex.body

    async def _start(
        self, body: Any
    ) -> tuple[TgiRequest, AsyncIterator[SimToken], SimToken | SimFailure | None]:
        """Validate, then pull the first token so that refusals get their own status."""
        self.counters.requests += 1
        parsed = parse_request(self.engine, body)
        self.engine.last_request = body  # type: ignore[attr-defined]
        agen = self.engine.generate(
            parsed.prompt, parsed.seed, parsed.max_new_tokens, top_n=parsed.top_n
        )
        try:
            first: SimToken | SimFailure | None = await agen.__anext__()
        except StopAsyncIteration:
            first = None
        except SimFailure as exc:
            first = exc
        except DirectiveError as exc:
            raise invalid(str(exc)) from exc
        except SimOverload as exc:
            raise Rejected(falcon.HTTP_429, dict(_OVERLOADED)) from exc
        return parsed, agen, first

    async def on_post_generate_stream(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response
    ) -> None:
        await self._stream(await self._read(req), resp)

    async def _stream(self, body: Any, resp: falcon.asgi.Response) -> None:
        try:
            parsed, agen, first = await self._start(body)
        except Rejected as err:
            if not self.inband_errors:
                raise
            self.counters.failure[err.body["error_type"]] += 1
            resp.content_type = "text/event-stream"
            resp.sse = _single(TgiEvent(data=dumps(err.body)))
            return
        resp.content_type = "text/event-stream"
        resp.sse = self._events(parsed, agen, first)

    async def _events(
        self,
        parsed: TgiRequest,
        agen: AsyncIterator[SimToken],
        pending: SimToken | SimFailure | None,
    ) -> AsyncIterator[TgiEvent]:
        started = time.perf_counter()
        sent: list[WireToken] = []
        finish: str | None = None
        try:
            while isinstance(pending, SimToken) and finish is None:
                for tok in wire_tokens(pending, self.split_multibyte):
                    sent.append(tok)
                    finish = parsed.finish([t.text for t in sent])
                    yield self._event(parsed, len(sent), tok, sent, finish, started)
                    if finish is not None:
                        break
                if finish is None:
                    pending = await _next(agen)  # after the final event: runs out hold_ms
            if isinstance(pending, SimFailure):
                self.counters.failure["generation"] += 1
                yield TgiEvent(data=dumps(_generation_error(pending)))
            elif finish is None:
                yield self._event(parsed, len(sent) + 1, None, sent, "eos_token", started)
        finally:
            await agen.aclose()  # type: ignore[attr-defined]

    def _event(
        self,
        parsed: TgiRequest,
        index: int,
        tok: WireToken | None,
        sent: list[WireToken],
        reason: str | None,
        started: float,
    ) -> TgiEvent:
        """One stream event; `tok` None is the end-of-sequence token; `reason` marks the last.
        `details` only when the request asked for them (`null` otherwise)."""
        event: dict[str, Any] = {"index": index, "token": tok.json() if tok else EOS_TOKEN}
        if tok is not None and parsed.top_n:
            event["top_tokens"] = top_tokens(tok.word)
        event["generated_text"] = None
        event["details"] = None
        if reason is not None:
            generated = len(sent) + (1 if tok is None else 0)
            event["generated_text"] = decoded(sent)
            if parsed.details:
                event["details"] = {
                    "finish_reason": reason,
                    "generated_tokens": generated,
                    "seed": parsed.seed if parsed.sampling else None,
                    "input_length": parsed.input_length,
                }
            self._succeeded(parsed, generated, started)
        return TgiEvent(data=dumps(event))

    def _succeeded(self, parsed: TgiRequest, generated: int, started: float) -> None:
        c = self.counters
        elapsed = time.perf_counter() - started
        c.success += 1
        c.duration_s += elapsed
        c.generated += generated
        c.input_length += parsed.input_length
        c.per_token_s += elapsed / max(1, generated)

    async def on_post_generate(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        await self._generate_once(await self._read(req), resp)

    async def _generate_once(self, body: Any, resp: falcon.asgi.Response) -> None:
        started = time.perf_counter()
        parsed, agen, pending = await self._start(body)
        tokens: list[WireToken] = []
        finish: str | None = None
        try:
            while isinstance(pending, SimToken) and finish is None:
                for tok in wire_tokens(pending, self.split_multibyte):
                    tokens.append(tok)
                    finish = parsed.finish([t.text for t in tokens])
                    if finish is not None:
                        break
                if finish is None:
                    pending = await _next(agen)
        finally:
            await agen.aclose()  # type: ignore[attr-defined]
        if isinstance(pending, SimFailure):
            raise Rejected(falcon.HTTP_424, _generation_error(pending))
        eos = finish is None
        generated = len(tokens) + (1 if eos else 0)
        self._succeeded(parsed, generated, started)
        out: dict[str, Any] = {"generated_text": decoded(tokens)}
        if parsed.details:
            toks = [t.json() for t in tokens] + ([dict(EOS_TOKEN)] if eos else [])
            out["details"] = {
                "finish_reason": finish or "eos_token",
                "generated_tokens": generated,
                "seed": parsed.seed if parsed.sampling else None,
                "prefill": [],
                "tokens": toks,
            }
            if parsed.top_n:
                out["details"]["top_tokens"] = [top_tokens(t.word) for t in tokens] + (
                    [[]] if eos else []
                )
        resp.set_header("x-prompt-tokens", str(parsed.input_length))
        resp.set_header("x-generated-tokens", str(generated))
        resp.set_header("x-compute-type", "sim")
        resp.media = out

    async def on_post_compat(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        """`POST /`: TGI picks `/generate_stream` or `/generate` by the body's `stream`."""
        body = await self._read(req)
        if isinstance(body, dict) and body.get("stream"):
            await self._stream(body, resp)
        else:
            await self._generate_once(body, resp)


async def _next(agen: AsyncIterator[SimToken]) -> SimToken | SimFailure | None:
    try:
        return await agen.__anext__()
    except StopAsyncIteration:
        return None
    except SimFailure as exc:
        return exc


def _generation_error(failure: SimFailure) -> dict[str, str]:
    message = f"Request failed during generation: Server error: {failure}"
    return {"error": message, "error_type": "generation"}


async def _single(event: TgiEvent) -> AsyncIterator[TgiEvent]:
    yield event


def create_app(
    engine: SimEngine, *, inband_errors: bool = True, split_multibyte: bool = False
) -> falcon.asgi.App:
    """TGI's HTTP surface around `engine`. `inband_errors` (the default, as a real TGI router
    does) sends every refusal of `/generate_stream` as an error event with status 200; False
    plays the status form (429/422 before any event) that `/generate` uses.
    `split_multibyte` streams non-ASCII words as a `text: ""` lead byte token plus the rest
    (`tgi_wire`)."""
    app = falcon.asgi.App(media_type=falcon.MEDIA_JSON)
    tgi = _Tgi(engine, inband_errors, split_multibyte)
    app.add_error_handler(Rejected, tgi.on_rejected)
    app.add_route("/health", tgi, suffix="health")
    app.add_route("/info", tgi, suffix="info")
    app.add_route("/metrics", tgi, suffix="metrics")
    app.add_route("/generate", tgi, suffix="generate")
    app.add_route("/generate_stream", tgi, suffix="generate_stream")
    app.add_route("/", tgi, suffix="compat")
    return app
