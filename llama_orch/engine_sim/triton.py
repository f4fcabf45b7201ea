"""NVIDIA Triton (KServe v2 + generate extension, TensorRT-LLM ensemble) for the simulator.

Serves one model, by default `ensemble` (the usual TensorRT-LLM deployment name; Triton model
names cannot hold `/`), or `create_app(engine, model_name=...)`. Facts follow Triton's HTTP
server (triton-inference-server/server src/http_server.cc), its generate-extension document
and the TensorRT-LLM backend's ensemble configuration:

- health `GET /v2/health/live|ready` answers by status only: `200`, or `400` (not `503`) while
  not ready; `GET /v2/models/{m}/ready` answers `400 {"error":"Model version not ready"}`
  then (`engine.state`: "loading" makes the server and model unready, "dead" also unlive);
- `GET /v2` is server metadata, `GET /v2/models/{m}[/versions/{v}]` model metadata (its
  `inputs` name the seed `seed`, or `random_seed` with `seed_input="random_seed"`, the name
  in tensorrtllm_backend <= v0.19.0), `.../config` the model configuration (its `parameters`
  carry `trtllm_version` unless the app is built with `trtllm_version=None`), `.../stats` the
  statistics extension; an unknown model or version is
  `404 {"error": "Request for unknown model: ..."}`, any other unknown path
  `404 {"error": "Not Found"}`, `/metrics` included: metrics live on the metrics server
  (`triton_metrics`, its own port; `create_apps` returns both apps);
- `POST /v2/models/{m}[/versions/{v}]/generate[_stream]` takes `text_input` and the ensemble's
  inputs (`max_tokens`, required; `temperature`, `top_k`, `top_p`, the seed input, `stream`,
  ...) as top-level fields, or as entries of `parameters` (top-level wins); other fields are
  ignored, as Triton passes them on as request parameters that the ensemble never reads;
- `stream: true` needs a decoupled model (the default here, as TensorRT-LLM streaming
  deployments are; `decoupled=False` plays one that is not): TensorRT-LLM refuses it otherwise
  in its first response, which Triton sends as `400` with a `data: {"error": ...}` body on
  `generate_stream` (JSON on `generate`);
- stream events are `data: {json}` with every ensemble output and response parameter in sorted
  key order (`batch_index`, `context_logits`, `cum_log_probs`, `generation_logits`,
  `model_name`, `model_version`, `output_log_probs`, `sequence_end`, `sequence_id`,
  `sequence_index`, `sequence_start`, `text_output`; `id` when the request had one), a
  one-element tensor written as a bare value, as tensorrtllm_backend's docs/multimodal.md
  @05ceae03 shows them; one event per token when `stream` is true (a single event with the
  whole text otherwise). `text_mode` says how
  the postprocessing detokenizes: "piece" (the stock ensemble: each response's tokens on their
  own; the simulator's tokenizer keeps leading spaces, as byte-level BPE does),
  "sentencepiece" (the same with a SentencePiece tokenizer: a piece decoded alone loses its
  leading space) or "accumulate" (the BLS model with `accumulate_tokens`: every response
  carries the whole text so far; its configuration says so). The stock ensemble has no
  token-id output, so ids appear only with `create_app(engine, output_ids=True)`, as
  `output_ids`;
- refusals before inference are JSON errors with an error status: a malformed request or
  directive `400`, the directive's overload `503 {"error": "Exceeds maximum queue size"}`;
  a mid-stream failure is `data: {"error": "..."}` while the status stays 200 (`/generate`: 500);
- `stop_words` (a string or a list) ends the sequence once the output ends with one of them;
  the stop word stays in the output, as TensorRT-LLM returns it (`stops.triton_stopped`);
- `return_log_probs: true` fills `output_log_probs` (the chosen tokens' log-probabilities) and
  the running `cum_log_probs`; otherwise both are zeros. There are no alternatives (no top-N
  output in the ensemble).

`engine.last_request` holds the JSON body of the latest generation request, for tests.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import falcon
import falcon.asgi

from llama_orch.engine_sim.directive import DirectiveError
from llama_orch.engine_sim.engine import SimEngine, SimFailure, SimOverload, SimToken
from llama_orch.engine_sim.stops import triton_stopped
from llama_orch.engine_sim.triton_metrics import TritonCounters, create_metrics_app, stats_body
from llama_orch.engine_sim.triton_request import (
    Rejected,
    TritonRequest,
    inputs,
    model_config,
    model_metadata,
    parse_request,
)

DEFAULT_MODEL = "ensemble"
DEFAULT_TRTLLM_VERSION = "sim-trtllm-1.0"
TEXT_MODES = ("piece", "sentencepiece", "accumulate")
NOT_DECOUPLED = "Streaming is only supported if model is deployed using decoupled mode."
EXTENSIONS = (
    "classification sequence model_repository model_repository(unload_dependents) "
    "schedule_policy model_configuration system_shared_memory cuda_shared_memory "
    "binary_tensor_data parameters statistics trace logging"
).split()


class FirstResponseError(Exception):
    """The backend failed the request in its first response (Triton: status 400)."""


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


async def _next(agen: AsyncIterator[SimToken]) -> SimToken | SimFailure | None:
    try:
        return await agen.__anext__()
    except StopAsyncIteration:
        return None
    except SimFailure as exc:
        return exc


class _Triton:
    """Responders of one simulated Triton server serving one model (version 1)."""

    def __init__(
        self,
        engine: SimEngine,
        model: str,
        *,
        trtllm_version: str | None,
        output_ids: bool,
        seed_input: str,
        decoupled: bool,
        text_mode: str,
    ) -> None:
        if text_mode not in TEXT_MODES:
            raise ValueError(f"text_mode must be one of {TEXT_MODES}, got {text_mode!r}")
        self.engine = engine
        self.model = model
        self.trtllm_version = trtllm_version
        self.output_ids = output_ids
        self.inputs = inputs(seed_input)
        self.seed_input = seed_input
        self.decoupled = decoupled
        self.text_mode = text_mode
        self.counters = TritonCounters()

    def _check(self, model: str, version: str | None) -> None:
        if model != self.model:
            raise Rejected(falcon.HTTP_404, f"Request for unknown model: '{model}' is not found")
        if version not in (None, "", "1"):
            raise Rejected(
                falcon.HTTP_404,
                f"Request for unknown model: '{model}' version {version} is not found",
            )

    # -- health and metadata -----------------------------------------------------------
    async def on_get_live(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.status = falcon.HTTP_400 if self.engine.state == "dead" else falcon.HTTP_200
        resp.data = b""

    async def on_get_ok(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.status = falcon.HTTP_200 if self.engine.state == "ready" else falcon.HTTP_400
        resp.data = b""

    async def on_get_server(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.media = {
            "name": "triton",
            "version": self.engine.config.engine_version,
            "extensions": EXTENSIONS,
        }

    async def on_get_model(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, model: str, version: str = ""
    ) -> None:
        self._check(model, version)
        resp.media = model_metadata(self.model, self.inputs, self.text_mode)

    async def on_get_ready(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, model: str, version: str = ""
    ) -> None:
        self._check(model, version)
        if self.engine.state != "ready":
            raise Rejected(falcon.HTTP_400, "Model version not ready")
        resp.data = b""

    async def on_get_config(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, model: str, version: str = ""
    ) -> None:
        self._check(model, version)
        resp.media = model_config(
            self.model,
            self.inputs,
            slots=self.engine.config.slots,
            trtllm_version=self.trtllm_version,
            decoupled=self.decoupled,
            text_mode=self.text_mode,
        )

    async def on_get_stats(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, model: str, version: str = ""
    ) -> None:
        self._check(model, version)
        resp.media = stats_body(self.model, self.counters)

    # -- generate extension ------------------------------------------------------------
    async def _start(
        self, req: falcon.asgi.Request, model: str, version: str
    ) -> tuple[TritonRequest, AsyncIterator[SimToken], SimToken | SimFailure | None]:
        """Validate, then pull the first token so that refusals get an error status."""
        self._check(model, version)
        raw = await req.stream.read()
        try:
            body = json.loads(raw or b"null")
        except ValueError as exc:
            raise Rejected(falcon.HTTP_400, f"failed to parse the request JSON: {exc}") from exc
        parsed = parse_request(self.model, body, self.seed_input)
        self.engine.last_request = body  # type: ignore[attr-defined]
        if parsed.stream and not self.decoupled:
            self.counters.failure["BACKEND"] += 1
            raise FirstResponseError(NOT_DECOUPLED)
        agen = self.engine.generate(parsed.prompt, parsed.seed, parsed.max_tokens)
        # TensorRT-LLM returns no alternatives, only the chosen tokens' log-probabilities.
        try:
            first = await _next(agen)
        except DirectiveError as exc:
            self.counters.failure["OTHER"] += 1
            raise Rejected(falcon.HTTP_400, str(exc)) from exc
        except SimOverload as exc:
            self.counters.failure["REJECTED"] += 1
            raise Rejected(falcon.HTTP_503, "Exceeds maximum queue size") from exc
        return parsed, agen, first

    def _text(self, toks: list[SimToken], so_far: str) -> str:
        """`text_output` of one response: its tokens decoded alone, or all text so far."""
        piece = "".join(t.text for t in toks)
        if self.text_mode == "accumulate":
            return so_far
        if self.text_mode == "sentencepiece":
            return piece[1:] if piece.startswith(" ") else piece
        return piece

    def _event(
        self, parsed: TritonRequest, toks: list[SimToken], text: str, cum: float
    ) -> dict[str, Any]:
        """One response, as Triton's generate extension writes it: every ensemble output and
        the response parameters, keys in sorted order, a one-element tensor as a bare value
        (`ExactMappingOutput`). `output_log_probs` and the running `cum_log_probs` are real
        with `return_log_probs`, zeros otherwise, as the ensemble returns them."""
        logprobs = [t.logprob if parsed.log_probs else 0.0 for t in toks] or [0.0]
        event: dict[str, Any] = {
            "batch_index": 0,
            "context_logits": 0.0,
            "cum_log_probs": cum if parsed.log_probs else 0.0,
            "generation_logits": 0.0,
            "model_name": self.model,
            "model_version": "1",
            "output_log_probs": logprobs[0] if len(logprobs) == 1 else logprobs,
            "sequence_end": False,
            "sequence_id": 0,
            "sequence_index": 0,
            "sequence_start": False,
            "text_output": text,
        }
        if parsed.request_id is not None:
            event["id"] = parsed.request_id
        if self.output_ids and toks:
            ids = [t.token_id for t in toks] if not parsed.stream else [toks[-1].token_id]
            event["output_ids"] = ids[0] if len(ids) == 1 else ids
        return dict(sorted(event.items()))

    @staticmethod
    async def _run(
        parsed: TritonRequest, agen: AsyncIterator[SimToken], pending: SimToken | SimFailure | None
    ) -> AsyncIterator[SimToken | SimFailure]:
        """Tokens until they run out or the output ends with a stop word (which stays in it,
        as TensorRT-LLM returns it); a mid-stream SimFailure comes last."""
        text = ""
        while isinstance(pending, SimToken):
            yield pending
            text += pending.text
            if parsed.stop_words and triton_stopped(text, parsed.stop_words):
                return
            pending = await _next(agen)
        if isinstance(pending, SimFailure):
            yield pending

    def _done(self, started: float, ok: bool) -> None:
        c = self.counters
        c.inference_count += 1
        c.request_us += (time.perf_counter() - started) * 1e6
        c.last_inference_ms = int(time.time() * 1000)
        if ok:
            c.success += 1
        else:
            c.failure["BACKEND"] += 1

    async def on_post_generate_stream(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, model: str, version: str = ""
    ) -> None:
        started = time.perf_counter()
        try:
            parsed, agen, first = await self._start(req, model, version)
        except FirstResponseError as exc:
            resp.status = falcon.HTTP_400
            resp.content_type = "text/event-stream; charset=utf-8"
            resp.data = b"data: " + _dumps({"error": str(exc)}) + b"\n\n"
            return
        resp.content_type = "text/event-stream; charset=utf-8"
        resp.sse = self._events(parsed, agen, first, started)

    async def _events(
        self,
        parsed: TritonRequest,
        agen: AsyncIterator[SimToken],
        pending: SimToken | SimFailure | None,
        started: float,
    ) -> AsyncIterator[falcon.asgi.SSEvent]:
        toks: list[SimToken] = []
        cum = 0.0
        so_far = ""
        try:
            async for tok in self._run(parsed, agen, pending):
                if isinstance(tok, SimFailure):
                    self._done(started, ok=False)
                    error = {"error": f"in-flight batching error: {tok}"}
                    yield falcon.asgi.SSEvent(data=_dumps(error))
                    return
                toks.append(tok)
                cum += tok.logprob
                so_far += tok.text
                if parsed.stream:
                    event = self._event(parsed, [tok], self._text([tok], so_far), cum)
                    yield falcon.asgi.SSEvent(data=_dumps(event))
            if not parsed.stream:
                event = self._event(parsed, toks, self._text(toks, so_far), cum)
                yield falcon.asgi.SSEvent(data=_dumps(event))
            self._done(started, ok=True)
        finally:
            await agen.aclose()  # type: ignore[attr-defined]

    async def on_post_generate(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, model: str, version: str = ""
    ) -> None:
        started = time.perf_counter()
        try:
            parsed, agen, pending = await self._start(req, model, version)
        except FirstResponseError as exc:
            raise Rejected(falcon.HTTP_400, str(exc)) from exc
        toks: list[SimToken] = []
        try:
            async for tok in self._run(parsed, agen, pending):
                if isinstance(tok, SimFailure):
                    self._done(started, ok=False)
                    raise Rejected(falcon.HTTP_500, f"in-flight batching error: {tok}")
                toks.append(tok)
        finally:
            await agen.aclose()  # type: ignore[attr-defined]
        self._done(started, ok=True)
        cum = sum(t.logprob for t in toks)
        text = "".join(t.text for t in toks)
        resp.data = _dumps(self._event(parsed, toks, self._text(toks, text), cum))
        resp.content_type = falcon.MEDIA_JSON


async def _answer(
    req: falcon.asgi.Request, resp: falcon.asgi.Response, ex: Exception, params: Any
) -> None:
    """Triton's error answer: an error status with `{"error": message}`."""
    assert isinstance(ex, Rejected)
    resp.status = ex.status
    resp.media = {"error": ex.message}


async def _not_found(req: falcon.asgi.Request, resp: falcon.asgi.Response, **_: str) -> None:
    """Any other path of the inference port, `/metrics` included."""
    resp.status = falcon.HTTP_404
    resp.media = {"error": "Not Found"}


def create_apps(
    engine: SimEngine,
    *,
    model_name: str | None = None,
    trtllm_version: str | None = DEFAULT_TRTLLM_VERSION,
    output_ids: bool = False,
    seed_input: str = "seed",
    decoupled: bool = True,
    text_mode: str = "piece",
) -> tuple[falcon.asgi.App, falcon.asgi.App]:
    """Triton's inference server and its metrics server (serve each on its own port) around
    `engine`, serving `model_name` (default `ensemble`, or the engine's model when that is a
    valid Triton model name)."""
    if model_name is None:
        model_name = engine.config.model if "/" not in engine.config.model else DEFAULT_MODEL
    app = falcon.asgi.App(media_type=falcon.MEDIA_JSON)
    app.add_error_handler(Rejected, _answer)
    sim = _Triton(
        engine,
        model_name,
        trtllm_version=trtllm_version,
        output_ids=output_ids,
        seed_input=seed_input,
        decoupled=decoupled,
        text_mode=text_mode,
    )
    app.add_route("/v2/health/live", sim, suffix="live")
    app.add_route("/v2/health/ready", sim, suffix="ok")
    app.add_route("/v2", sim, suffix="server")
    for base in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
        app.add_route(base, sim, suffix="model")
        for name in ("ready", "config", "stats", "generate", "generate_stream"):
            app.add_route(f"{base}/{name}", sim, suffix=name)
    app.add_sink(_not_found, prefix="/")
    return app, create_metrics_app(engine, model_name, sim.counters)


def create_app(engine: SimEngine, **options: Any) -> falcon.asgi.App:
    """Triton's inference server alone (its metrics server: `create_apps`)."""
    return create_apps(engine, **options)[0]
