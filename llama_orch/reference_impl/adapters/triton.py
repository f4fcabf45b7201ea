"""Adapter for NVIDIA Triton with the TensorRT-LLM backend, over KServe v2 HTTP (specs/43).

Endpoints: `/v2/health/live|ready` and `/v2/models/{m}/ready` (health), `/v2` (server
version), `/v2/models/{m}` and `.../config` (metadata, TensorRT-LLM detection and version,
batch size), `.../stats` (`statistics()`), `.../generate_stream` (tasks), `.../generate` (the
one-token self-test of `preload()`), `/metrics` (load; `metrics_url` names the metrics port's
URL of a real server, e.g. `http://host:8002/metrics`). A versioned model (`model_version`) is
addressed as `/v2/models/{m}/versions/{v}/...`. No OpenAI-style frontend is used.

Request: the sampler fields travel as top-level fields of the generate request, which Triton
binds to the model's input tensors of the same name (that is where the TensorRT-LLM ensemble
reads them; entries of `parameters` become request parameters that it ignores). Mapping
(ORCH-3058), a pure function of the profile (`triton_inputs`):

- always `text_input`, `max_tokens`, `random_seed` (the task's seed) and `stream: true`;
- the greedy profile (`temperature == 0`) is `top_k: 1` with no `temperature` or `top_p`
  (TensorRT-LLM decodes greedily at top_k 1; a zero temperature is not a valid sampling value);
- otherwise `temperature`, `top_k` (0 means off), `top_p`, and `repetition_penalty` when set;
- `min_p` is always dropped: the ensemble has no such input. A profile with `min_p > 0` is
  logged once per adapter as a warning; every replica gets the same request either way;
- stop strings go out as the ensemble's `stop_words` input (a list), and `top_logprobs > 0`
  sets `return_log_probs: true`.

Stop text: TensorRT-LLM matches stop words by token ids and keeps them in the output. The
adapter cuts the text at the first stop string with `stops.StopScanner`, ends the stream there
(closing the request if the engine goes on) and reports FINISH_STOP. Logprobs: with
`return_log_probs` each event's `output_log_probs` gives `TokenEvent.logprob`; the ensemble
returns no alternatives, so `TokenEvent.top` stays empty.

Stream: each `data:` event's `text_output` is one piece; empty pieces produce no TokenEvent.
The stock ensemble returns no token ids, so `token_id` is None unless the deployment adds an
`output_ids` output, whose single id is then used. The stream has no final record: it ends when
the response ends, FINISH_LENGTH when `max_tokens` pieces arrived, else FINISH_STOP. An in-band
`{"error": ...}` event is WORKER_RESET; an HTTP 503 is REPLICA_EXHAUSTED, 400 INVALID_PARAMS,
and an "unknown model" answer POOL_UNAVAILABLE.

Versions (OC-ADAPT-5070): `engine_version` is `GET /v2` `version`. For a TensorRT-LLM model
(backend or platform `tensorrtllm`, or an ensemble step naming a `tensorrt_llm` model) the
adapter reads `trtllm_version` from the model configuration's `parameters` (key
`trtllm_version` or `tensorrt_llm_version`, as `{"string_value": ...}` or a plain string);
when the deployment does not record it, it is "unknown" and a warning is logged. It is exposed
both as the attribute `trtllm_version` (None for other backends) and as the capability
`trtllm_version=<v>` in `props().capabilities`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from .base import (
    FINISH_CANCELED,
    FINISH_LENGTH,
    FINISH_STOP,
    AdapterError,
    AdapterHealth,
    AdapterProps,
    CompletionRequest,
    LoadSignals,
    SamplerParams,
    StreamEnd,
    TokenEvent,
    TokenStream,
)
from .http_common import (
    ClosingAware,
    HttpEngineAdapter,
    digest_for,
    error_from_status,
    error_from_transport,
    parse_json,
    sse_data,
    wait_ready,
)
from .logprobs import last_number
from .stops import StopScanner

log = logging.getLogger("llama_orch.reference_impl.adapters")

TRITON_CAPABILITIES = frozenset({"stream", "cancel", "seed"})
TRTLLM_VERSION_KEYS = ("trtllm_version", "tensorrt_llm_version")
UNKNOWN = "unknown"
PRELOAD_PROMPT = "Hello"


def triton_inputs(req: CompletionRequest) -> dict[str, Any]:
    """The generate request body for a task: the mapping of the module docstring."""
    s = req.sampler
    body: dict[str, Any] = {
        "text_input": req.prompt,
        "max_tokens": req.max_tokens,
        "random_seed": req.seed,
        "stream": True,
    }
    if req.stop:
        body["stop_words"] = list(req.stop)
    if req.top_logprobs > 0:
        body["return_log_probs"] = True
    if s.temperature <= 0:
        body["top_k"] = 1
        return body
    body["temperature"] = s.temperature
    body["top_k"] = max(0, s.top_k)
    body["top_p"] = s.top_p
    if s.repeat_penalty is not None:
        body["repetition_penalty"] = s.repeat_penalty
    return body


def trtllm_version_of(config: dict[str, Any]) -> str | None:
    """TensorRT-LLM version from a model configuration; None for other backends."""
    params = config.get("parameters") or {}
    for key in TRTLLM_VERSION_KEYS:
        value = params.get(key)
        if isinstance(value, dict):
            value = value.get("string_value")
        if value:
            return str(value)
    backend = f"{config.get('backend', '')} {config.get('platform', '')}".lower()
    steps = (config.get("ensemble_scheduling") or {}).get("step") or []
    if "tensorrtllm" in backend or any("tensorrt_llm" in str(s.get("model_name")) for s in steps):
        return UNKNOWN
    return None


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, s.labels, float(s.value))
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


class TritonAdapter(ClosingAware, HttpEngineAdapter):
    """One Triton server replica serving `model_name`."""

    engine = "triton"

    def __init__(
        self,
        replica_id: str,
        base_url: str,
        *,
        model_ref: str,
        ctx_max: int,
        model_name: str,
        model_version: str | None = None,
        metrics_url: str | None = None,
        ready_timeout_s: float = 0.0,
        **http: Any,
    ) -> None:
        super().__init__(replica_id, base_url, model_ref=model_ref, ctx_max=ctx_max, **http)
        self.model_name = model_name
        # Triton serves /metrics on its own port (8002 by default); the simulator on one port.
        self.metrics_url = metrics_url or "/metrics"
        self.model_version = model_version
        self.ready_timeout_s = ready_timeout_s
        self.engine_version = UNKNOWN
        self.trtllm_version: str | None = None
        self.model_config: dict[str, Any] = {}
        self.model_digest = digest_for(model_ref)
        self._trtllm_warned = False
        self._min_p_warned = False
        self._slots_max: int | None = None
        base = f"/v2/models/{model_name}"
        self.model_path = f"{base}/versions/{model_version}" if model_version else base

    # -- identity, health, load -------------------------------------------------------
    async def health(self) -> AdapterHealth:
        """Live from `/v2/health/live`; ready needs server and model readiness."""
        live = await self.health_at("/v2/health/live")
        if not live.live or not live.ready:
            return AdapterHealth(live=live.live and live.ready, ready=False, detail=live.detail)
        for path in ("/v2/health/ready", f"{self.model_path}/ready"):
            probe = await self.health_at(path)
            if not probe.ready:
                return AdapterHealth(live=True, ready=False, detail=f"{path}: {probe.detail}")
        return AdapterHealth(live=True, ready=True)

    async def identity(self) -> dict[str, Any]:
        """Server version, model configuration and TensorRT-LLM version (OC-ADAPT-5070)."""
        server = await self.get_json("/v2")
        self.engine_version = str((server or {}).get("version") or UNKNOWN)
        config = await self.get_json(f"{self.model_path}/config")
        self.model_config = config if isinstance(config, dict) else {}
        self.trtllm_version = trtllm_version_of(self.model_config)
        if self.trtllm_version == UNKNOWN and not self._trtllm_warned:
            self._trtllm_warned = True
            log.warning(
                "triton model runs on TensorRT-LLM but its config records no trtllm_version",
                extra={"replica_id": self.replica_id, "model_name": self.model_name},
            )
        return {"engine_version": self.engine_version, "trtllm_version": self.trtllm_version}

    async def metadata(self) -> dict[str, Any]:
        """Model metadata: name, versions, platform, inputs, outputs."""
        return await self.get_json(self.model_path)  # type: ignore[no-any-return]

    async def statistics(self) -> dict[str, Any]:
        """The statistics extension's per-model counts and durations."""
        return await self.get_json(f"{self.model_path}/stats")  # type: ignore[no-any-return]

    async def _scrape(self) -> list[tuple[str, dict[str, str], float]]:
        try:
            response = await self.client.get(self.metrics_url)
        except httpx.HTTPError as exc:
            raise error_from_transport(self.engine, exc, streaming=False) from exc
        if response.status_code >= 400:
            raise error_from_status(self.engine, response.status_code, response.text)
        return _samples(response.text)

    async def metrics(self) -> LoadSignals:
        """TensorRT-LLM request and KV-block gauges; Triton's pending count as a fallback."""
        samples = await self._scrape()
        trt = {
            lab.get("request_type"): v
            for name, lab, v in samples
            if name == "nv_trt_llm_request_metrics"
        }
        kv = {
            lab.get("kv_cache_block_type"): v
            for name, lab, v in samples
            if name == "nv_trt_llm_kv_cache_block_metrics"
        }
        pending = sum(
            v
            for name, lab, v in samples
            if name == "nv_inference_pending_request_count" and lab.get("model") == self.model_name
        )
        kv_pressure = kv.get("fraction")
        if kv_pressure is None and kv.get("max"):
            kv_pressure = kv.get("used", 0.0) / kv["max"]
        self._slots_max = int(trt["max"]) if trt.get("max") else None
        return LoadSignals(
            waiting=int(trt.get("waiting", pending)),
            running=int(trt.get("active", len(self._live))),
            kv_pressure=kv_pressure,
        )

    async def props(self) -> AdapterProps:
        """Slots from the TensorRT-LLM `max` request gauge, else the config's batch size."""
        await self.identity()
        try:
            load = await self.metrics()
            total, running = self._slots_max, load.running
        except AdapterError:
            total, running = None, len(self._live)
        total = total or int(self.model_config.get("max_batch_size") or 1)
        caps = set(TRITON_CAPABILITIES)
        if self.trtllm_version is not None:
            caps.add(f"trtllm_version={self.trtllm_version}")
        return AdapterProps(
            slots_total=total,
            slots_free=max(0, total - running),
            ctx_max=self.ctx_max,
            engine_version=self.engine_version,
            model_digest=self.model_digest,
            capabilities=frozenset(caps),
        )

    async def preload(self) -> None:
        """Wait (up to `ready_timeout_s`) for readiness, then decode one token via `/generate`."""
        await wait_ready(self, self.ready_timeout_s)
        await self.identity()
        body = {"text_input": PRELOAD_PROMPT, "max_tokens": 1, "top_k": 1}
        await self.generate_once(f"{self.model_path}/generate", body)
        log.info(
            "triton replica identified",
            extra={
                "replica_id": self.replica_id,
                "engine_version": self.engine_version,
                "trtllm_version": self.trtllm_version,
                "model_name": self.model_name,
                "model_digest": self.model_digest,
            },
        )

    # -- streaming ---------------------------------------------------------------------
    def _warn_dropped(self, sampler: SamplerParams) -> None:
        if sampler.min_p > 0 and not self._min_p_warned:
            self._min_p_warned = True
            log.warning(
                "the TensorRT-LLM ensemble has no min_p input; the profile's min_p is not sent",
                extra={"replica_id": self.replica_id, "min_p": sampler.min_p},
            )

    async def _open_generate(self, req: CompletionRequest) -> httpx.Response:
        try:
            return await self._open(
                req, "POST", f"{self.model_path}/generate_stream", triton_inputs(req)
            )
        except AdapterError as exc:
            if "unknown model" in exc.message:
                raise AdapterError(
                    "POOL_UNAVAILABLE", exc.message, engine=self.engine, retriable=True
                ) from exc
            raise

    async def _generate(
        self, req: CompletionRequest, stream: TokenStream
    ) -> AsyncIterator[TokenEvent]:
        if self._shut_down:
            raise AdapterError("POOL_UNAVAILABLE", "adapter is closed", engine=self.engine)
        self._warn_dropped(req.sampler)
        loop = asyncio.get_running_loop()
        started = loop.time()
        response = await self._open_generate(req)
        scanner = StopScanner(req.stop)
        broke: BaseException | None = None
        try:
            async for _field, data in sse_data(response):
                if req.request_id not in self._live:
                    break  # canceled while the engine kept talking
                event = parse_json(self.engine, data)
                if not isinstance(event, dict):
                    continue
                if "error" in event:
                    raise AdapterError(
                        "WORKER_RESET",
                        f"triton reported an error after {scanner.released} tokens: "
                        f"{event['error']}",
                        engine=self.engine,
                    )
                text = event.get("text_output") or ""
                if not isinstance(text, str) or not text:
                    continue
                ids = event.get("output_ids")
                tid = ids[0] if isinstance(ids, list) and len(ids) == 1 else None
                logprob = last_number(event.get("output_log_probs")) if req.top_logprobs else None
                for out in scanner.push(text, tid if isinstance(tid, int) else None, logprob):
                    yield out
                if scanner.matched is not None:
                    break
        except (httpx.HTTPError, httpx.StreamError) as exc:
            broke = exc
        decode_ms = int((loop.time() - started) * 1000)
        if scanner.matched is not None:
            await self.cancel(req.request_id)  # when TensorRT-LLM missed the stop string
            reason = FINISH_STOP
        elif self._stopped_early(req, scanner.released, broke):
            await response.aclose()
            reason = FINISH_CANCELED
        else:
            for out in scanner.finish():
                yield out
            reason = FINISH_LENGTH if scanner.received >= req.max_tokens else FINISH_STOP
        stream.end = StreamEnd(scanner.received, reason, decode_ms)
