"""NVIDIA Triton (KServe v2 + generate extension, TensorRT-LLM ensemble) for the simulator.

Serves one model, by default `ensemble` (the usual TensorRT-LLM deployment name; Triton model
names cannot hold `/`), or `create_app(engine, model_name=...)`. Facts follow
/work/shared/engine-protocols.md, Triton's generate-extension document and the TensorRT-LLM
backend's ensemble configuration:

- health `GET /v2/health/live|ready` and `GET /v2/models/{m}/ready` answer by status only;
  `GET /v2` is server metadata, `GET /v2/models/{m}[/versions/{v}]` model metadata, `.../config`
  the model configuration (its `parameters` carry `trtllm_version` unless the app is built with
  `trtllm_version=None`), `.../stats` the statistics extension; an unknown model or version is
  `404 {"error": "Request for unknown model: ..."}`;
- `POST /v2/models/{m}[/versions/{v}]/generate[_stream]` takes `text_input` and the ensemble's
  inputs (`max_tokens`, required; `temperature`, `top_k`, `top_p`, `random_seed`, `stream`,
  ...) as top-level fields, or as entries of `parameters` (top-level wins); other fields are
  ignored, as Triton passes them on as request parameters that the ensemble never reads;
- stream events are `data: {"model_name", "model_version", "text_output", ...}`, one per token
  when `stream` is true (a single event with the whole text otherwise); the stock ensemble has
  no token-id output, so ids appear only with `create_app(engine, output_ids=True)`, as
  `output_ids: [id]`;
- refusals before inference are JSON errors with an error status: a malformed request or
  directive `400`, the directive's overload `503 {"error": "Exceeds maximum queue size"}`;
  a mid-stream failure is `data: {"error": "..."}` while the status stays 200 (`/generate`: 500);
- `stop_words` (a string or a list) ends the sequence once the output ends with one of them;
  the stop word stays in the output, as TensorRT-LLM returns it (`stops.triton_stopped`);
- `return_log_probs: true` fills `output_log_probs` (the chosen tokens' log-probabilities) and
  the running `cum_log_probs`; otherwise both are zeros. There are no alternatives (no top-N
  output in the ensemble);
- `GET /metrics`: `nv_inference_*` counters and, for TensorRT-LLM,
  `nv_trt_llm_request_metrics{request_type}` and `nv_trt_llm_kv_cache_block_metrics`.

`engine.last_request` holds the JSON body of the latest generation request, for tests.
"""

from __future__ import annotations

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
from llama_orch.engine_sim.stops import triton_stopped
from llama_orch.engine_sim.triton_request import (
    INPUTS,
    OUTPUTS,
    Rejected,
    TritonRequest,
    parse_request,
)

DEFAULT_MODEL = "ensemble"
DEFAULT_TRTLLM_VERSION = "sim-trtllm-1.0"
KV_TOKENS_PER_BLOCK = 64
EXTENSIONS = (
    "classification sequence model_repository model_repository(unload_dependents) "
    "schedule_policy model_configuration system_shared_memory cuda_shared_memory "
    "binary_tensor_data parameters statistics trace logging"
).split()


@dataclass
class _Counters:
    success: int = 0
    failure: Counter[str] = field(default_factory=Counter)
    inference_count: int = 0
    request_us: float = 0.0
    last_inference_ms: int = 0


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
        self, engine: SimEngine, model: str, trtllm_version: str | None, output_ids: bool
    ) -> None:
        self.engine = engine
        self.model = model
        self.trtllm_version = trtllm_version
        self.output_ids = output_ids
        self.counters = _Counters()

    def _check(self, model: str, version: str | None) -> None:
        if model != self.model:
            raise Rejected(falcon.HTTP_404, f"Request for unknown model: '{model}' is not found")
        if version not in (None, "", "1"):
            raise Rejected(
                falcon.HTTP_404,
                f"Request for unknown model: '{model}' version {version} is not found",
            )

    # -- health and metadata -----------------------------------------------------------
    async def on_get_ok(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
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
        resp.media = {
            "name": self.model,
            "versions": ["1"],
            "platform": "ensemble",
            "inputs": [{"name": n, "datatype": d, "shape": [-1, 1]} for n, d, _, _ in INPUTS],
            "outputs": [{"name": n, "datatype": d, "shape": [-1, -1]} for n, d, _ in OUTPUTS],
        }

    async def on_get_ready(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, model: str, version: str = ""
    ) -> None:
        self._check(model, version)
        resp.data = b""

    async def on_get_config(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, model: str, version: str = ""
    ) -> None:
        self._check(model, version)
        params = {}
        if self.trtllm_version is not None:
            params["trtllm_version"] = {"string_value": self.trtllm_version}
        steps = ("preprocessing", "tensorrt_llm", "postprocessing")
        resp.media = {
            "name": self.model,
            "platform": "ensemble",
            "backend": "",
            "version_policy": {"latest": {"num_versions": 1}},
            "max_batch_size": self.engine.config.slots,
            "input": [
                {"name": n, "data_type": t, "dims": [-1], "optional": o} for n, _, t, o in INPUTS
            ],
            "output": [{"name": n, "data_type": t, "dims": [-1]} for n, _, t in OUTPUTS],
            "ensemble_scheduling": {
                "step": [{"model_name": s, "model_version": -1} for s in steps]
            },
            "parameters": params,
            "model_transaction_policy": {"decoupled": False},
        }

    async def on_get_stats(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, model: str, version: str = ""
    ) -> None:
        self._check(model, version)
        c = self.counters
        fails = sum(c.failure.values())
        resp.media = {
            "model_stats": [
                {
                    "name": self.model,
                    "version": "1",
                    "last_inference": c.last_inference_ms,
                    "inference_count": c.inference_count,
                    "execution_count": c.inference_count,
                    "inference_stats": {
                        "success": {"count": c.success, "ns": int(c.request_us * 1000)},
                        "fail": {"count": fails, "ns": 0},
                        "queue": {"count": c.success, "ns": 0},
                    },
                    "batch_stats": [],
                }
            ]
        }

    async def on_get_metrics(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.content_type = "text/plain; charset=utf-8"
        resp.text = self._metrics()

    def _metrics(self) -> str:
        c, st, cfg = self.counters, self.engine.stats, self.engine.config
        mv, trt = f'model="{self.model}",version="1"', 'model="tensorrt_llm",version="1"'
        per_slot = -(-cfg.ctx // KV_TOKENS_PER_BLOCK)
        total, used = cfg.slots * per_slot, st.running * per_slot
        requests = {
            "active": st.running,
            "max": cfg.slots,
            "scheduled": st.running,
            "context": 0,
            "waiting": st.waiting,
        }
        blocks = {
            "max": total,
            "free": total - used,
            "used": used,
            "tokens_per": KV_TOKENS_PER_BLOCK,
            "reused": 0,
            "fraction": round(used / total, 6) if total else 0.0,
        }
        fails = [(f'{mv},reason="{r}"', n) for r, n in sorted(c.failure.items())]
        families: dict[str, tuple[str, list[tuple[str, float]]]] = {
            "nv_inference_request_success": ("counter", [(mv, c.success)]),
            "nv_inference_request_failure": ("counter", fails),
            "nv_inference_count": ("counter", [(mv, c.inference_count)]),
            "nv_inference_pending_request_count": ("gauge", [(mv, st.waiting)]),
            "nv_inference_request_duration_us": ("counter", [(mv, int(c.request_us))]),
            "nv_inference_queue_duration_us": ("counter", [(mv, 0)]),
            "nv_trt_llm_request_metrics": (
                "gauge",
                [(f'{trt},request_type="{k}"', v) for k, v in requests.items()],
            ),
            "nv_trt_llm_kv_cache_block_metrics": (
                "gauge",
                [(f'{trt},kv_cache_block_type="{k}"', v) for k, v in blocks.items()],
            ),
        }
        out: list[str] = []
        for name, (kind, samples) in families.items():
            out.append(f"# TYPE {name} {kind}")
            out += [f"{name}{{{labels}}} {value}" for labels, value in samples]
        return "\n".join(out) + "\n"

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
        parsed = parse_request(self.model, body)
        self.engine.last_request = body  # type: ignore[attr-defined]
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

    def _event(
        self, parsed: TritonRequest, toks: list[SimToken], text: str, cum: float
    ) -> dict[str, Any]:
        """One response: `output_log_probs` of its tokens and the running `cum_log_probs`
        when `return_log_probs` is set (zeros otherwise, as the ensemble returns them)."""
        logprobs = [t.logprob if parsed.log_probs else 0.0 for t in toks] or [0.0]
        event: dict[str, Any] = {
            "model_name": self.model,
            "model_version": "1",
            "text_output": text,
            "cum_log_probs": cum if parsed.log_probs else 0.0,
            "output_log_probs": logprobs,
            "batch_index": 0,
            "sequence_index": 0,
        }
        if self.output_ids and toks:
            event["output_ids"] = (
                [t.token_id for t in toks] if not parsed.stream else [toks[-1].token_id]
            )
        return event

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
        parsed, agen, first = await self._start(req, model, version)
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
        try:
            async for tok in self._run(parsed, agen, pending):
                if isinstance(tok, SimFailure):
                    self._done(started, ok=False)
                    error = {"error": f"in-flight batching error: {tok}"}
                    yield falcon.asgi.SSEvent(data=_dumps(error))
                    return
                toks.append(tok)
                cum += tok.logprob
                if parsed.stream:
                    event = self._event(parsed, [tok], tok.text, cum)
                    yield falcon.asgi.SSEvent(data=_dumps(event))
            if not parsed.stream:
                text = "".join(t.text for t in toks)
                yield falcon.asgi.SSEvent(data=_dumps(self._event(parsed, toks, text, cum)))
            self._done(started, ok=True)
        finally:
            await agen.aclose()  # type: ignore[attr-defined]

    async def on_post_generate(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, model: str, version: str = ""
    ) -> None:
        started = time.perf_counter()
        parsed, agen, pending = await self._start(req, model, version)
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
        event = self._event(parsed, toks, "".join(t.text for t in toks), cum)
        resp.data = _dumps(event)
        resp.content_type = falcon.MEDIA_JSON


async def _answer(
    req: falcon.asgi.Request, resp: falcon.asgi.Response, ex: Exception, params: Any
) -> None:
    """Triton's error answer: an error status with `{"error": message}`."""
    assert isinstance(ex, Rejected)
    resp.status = ex.status
    resp.media = {"error": ex.message}


def create_app(
    engine: SimEngine,
    *,
    model_name: str | None = None,
    trtllm_version: str | None = DEFAULT_TRTLLM_VERSION,
    output_ids: bool = False,
) -> falcon.asgi.App:
    """Triton's HTTP surface around `engine`, serving `model_name` (default `ensemble`, or the
    engine's model when that is a valid Triton model name)."""
    if model_name is None:
        model_name = engine.config.model if "/" not in engine.config.model else DEFAULT_MODEL
    app = falcon.asgi.App(media_type=falcon.MEDIA_JSON)
    app.add_error_handler(Rejected, _answer)
    sim = _Triton(engine, model_name, trtllm_version, output_ids)
    app.add_route("/v2/health/live", sim, suffix="ok")
    app.add_route("/v2/health/ready", sim, suffix="ok")
    app.add_route("/v2", sim, suffix="server")
    app.add_route("/metrics", sim, suffix="metrics")
    for base in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
        app.add_route(base, sim, suffix="model")
        for name in ("ready", "config", "stats", "generate", "generate_stream"):
            app.add_route(f"{base}/{name}", sim, suffix=name)
    return app
