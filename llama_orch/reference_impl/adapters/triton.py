"""Adapter for NVIDIA Triton with the TensorRT-LLM backend, over KServe v2 HTTP (specs/43).

Endpoints: `/v2/health/live|ready` and `/v2/models/{m}/ready` (health; Triton answers `400`,
not `503`, while not ready), `/v2` (server version), `/v2/models/{m}` and `.../config` (the
deployment facts of `triton_model`: seed input name, decoupled mode, how text is detokenized,
TensorRT-LLM version, batch size), `.../stats` (`statistics()`), `.../generate_stream`
(tasks), `.../generate` (the one-token self-test of `preload()`). Metrics come from Triton's
metrics server, not the inference port (which answers `/metrics` with `404`): `metrics_url`,
by default port 8002 of the inference host. A versioned model (`model_version`) is addressed
as `/v2/models/{m}/versions/{v}/...`. No OpenAI-style frontend is used.

Request: the sampler fields travel as top-level fields of the generate request, which Triton
binds to the model's input tensors of the same name (entries of `parameters`, and top-level
keys that name no input, become request parameters that the ensemble ignores). Mapping
(ORCH-3058), a pure function of the profile and the deployment (`triton_inputs`):

- always `text_input`, `max_tokens`, the task's seed under the input name the model declares
  (`seed`, or `random_seed` in tensorrtllm_backend <= v0.19.0), and `stream: true`;
- the greedy profile (`temperature == 0`) is `top_k: 1` with no `temperature` or `top_p`
  (TensorRT-LLM decodes greedily at top_k 1; a zero temperature is not a valid sampling value);
- otherwise `temperature`, `top_k` (0 means off), `top_p`, and `repetition_penalty` when set;
- `min_p` is always dropped: the ensemble has no such input. A profile with `min_p > 0` is
  logged once per adapter as a warning; every replica gets the same request either way;
- stop strings go out as the ensemble's `stop_words` input (a list), and `top_logprobs > 0`
  sets `return_log_probs: true`.

The deployment is read before the first request (preload, or lazily by the first stream); a
model that declares no seed input or is not decoupled is a permanent fault naming the model.

Stop text: TensorRT-LLM matches stop words by token ids and keeps them in the output. The
adapter cuts the text at the first stop string with `stops.StopScanner`, ends the stream there
(closing the request if the engine goes on) and reports FINISH_STOP. Logprobs: with
`return_log_probs` each event's `output_log_probs` gives `TokenEvent.logprob`; the ensemble
returns no alternatives, so `TokenEvent.top` stays empty.

Stream: each `data:` event is one response (one token). Its `text_output` is the piece (the
stock ensemble) or the whole text so far (BLS `accumulate_tokens`, turned into pieces by
`triton_model.CumulativeText`); responses that add no text produce no TokenEvent but count in
`tokens_out`. The stock ensemble returns no token ids, so `token_id` is None unless the
deployment adds an `output_ids` output, whose last id is then used (Triton writes a
one-element tensor as a bare value, so `output_ids` and `output_log_probs` are numbers for a
one-token response). The stream has no final record: it ends when the response ends,
FINISH_LENGTH when `max_tokens` responses arrived, else FINISH_STOP. An in-band
`{"error": ...}` event is WORKER_RESET; an HTTP 503 is REPLICA_EXHAUSTED, 400 INVALID_PARAMS,
an "unknown model" or "decoupled" answer POOL_UNAVAILABLE.

Versions (OC-ADAPT-5070): `engine_version` is `GET /v2` `version`; `trtllm_version` comes from
the model configuration's `parameters` (`trtllm_version` or `tensorrt_llm_version`) and is
"unknown" (with one warning) for a TensorRT-LLM model that does not record it. It is exposed
as the attribute `trtllm_version` (None for other backends) and as the capability
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
from .oom import classify_oom
from .stops import StopScanner
from .triton_model import (
    UNKNOWN,
    CumulativeText,
    DeploymentError,
    TritonDeployment,
    default_metrics_url,
    deployment_of,
    triton_inputs,
    trtllm_version_of,
)

__all__ = ["TritonAdapter", "triton_inputs", "trtllm_version_of"]

log = logging.getLogger("llama_orch.reference_impl.adapters")

TRITON_CAPABILITIES = frozenset({"stream", "cancel", "seed"})
PRELOAD_PROMPT = "Hello"


def _last_id(ids: Any) -> int | None:
    """The id of a response's last token: Triton writes a one-element tensor as a bare value."""
    if isinstance(ids, list):
        ids = ids[-1] if ids else None
    return ids if type(ids) is int else None


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
        # Triton serves /metrics only on its metrics port; the inference port answers 404.
        metrics_url = metrics_url or default_metrics_url(base_url)
        super().__init__(
            replica_id,
            base_url,
            model_ref=model_ref,
            ctx_max=ctx_max,
            metrics_url=metrics_url,
            **http,
        )
        self.model_name = model_name
        self.model_version = model_version
        self.ready_timeout_s = ready_timeout_s
        self.engine_version = UNKNOWN
        self.trtllm_version: str | None = None
        self.model_config: dict[str, Any] = {}
        self.deployment: TritonDeployment | None = None
        self.model_digest = digest_for(model_ref)
        self._trtllm_warned = False
        self._min_p_warned = False
        self._per_piece_warned = False
        self._inspecting: asyncio.Lock | None = None
        self._slots_max: int | None = None
        base = f"/v2/models/{model_name}"
        self.model_path = f"{base}/versions/{model_version}" if model_version else base

    # -- identity, health, load -------------------------------------------------------
    async def health(self) -> AdapterHealth:
        """Live from `/v2/health/live`; ready needs server and model readiness (Triton
        answers `400` while either is not ready)."""
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

    async def inspect(self, *, refresh: bool = False) -> TritonDeployment:
        """Read what the model declares: seed input, decoupled mode, text form; once, or
        again with `refresh` (preload: the deployment may have changed meanwhile).

        A model that cannot serve seeded streams is a permanent POOL_UNAVAILABLE naming it."""
        if self.deployment is not None and not refresh:
            return self.deployment
        self._inspecting = self._inspecting or asyncio.Lock()
        async with self._inspecting:
            if self.deployment is None or refresh:
                try:
                    await self.identity()
                    found = deployment_of(self.model_name, await self.metadata(), self.model_config)
                except AdapterError as exc:
                    if "unknown model" not in exc.message:
                        raise
                    raise AdapterError(
                        "POOL_UNAVAILABLE", exc.message, engine=self.engine, retriable=True
                    ) from exc
                except DeploymentError as exc:
                    raise AdapterError(
                        "POOL_UNAVAILABLE",
                        str(exc),
                        engine=self.engine,
                        retriable=False,
                        permanent=True,
                    ) from exc
                if found.per_piece_text and not self._per_piece_warned:
                    self._per_piece_warned = True
                    log.warning(
                        "triton model detokenizes each streamed token on its own: tokenizers "
                        "that mark word starts inside the piece (SentencePiece) lose leading "
                        "spaces; serve tensorrt_llm_bls with accumulate_tokens for exact text",
                        extra={"replica_id": self.replica_id, "model_name": self.model_name},
                    )
                self.deployment = found
        return self.deployment

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
        if response.status_code == 404:
            raise AdapterError(
                "POOL_UNAVAILABLE",
                f"no Triton metrics at {self.metrics_url} (404): Triton serves /metrics only "
                "on its metrics port (8002 unless --metrics-port says otherwise); set the "
                "pool's metrics_endpoint",
                engine=self.engine,
            )
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
        """Wait (up to `ready_timeout_s`) for readiness, read the deployment, then decode one
        token via `/generate`."""
        await wait_ready(self, self.ready_timeout_s)
        deployment = await self.inspect(refresh=True)
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
                "seed_input": deployment.seed_input,
                "cumulative_text": deployment.cumulative_text,
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

    async def _open_generate(
        self, req: CompletionRequest, deployment: TritonDeployment
    ) -> httpx.Response:
        body = triton_inputs(req, deployment.seed_input)
        try:
            return await self._open(req, "POST", f"{self.model_path}/generate_stream", body)
        except AdapterError as exc:
            if "unknown model" in exc.message or "decoupled" in exc.message:
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
        deployment = await self.inspect()
        loop = asyncio.get_running_loop()
        started = loop.time()
        response = await self._open_generate(req, deployment)
        scanner = StopScanner(req.stop)
        cumulative = CumulativeText() if deployment.cumulative_text else None
        responses = 0
        tid: int | None = None
        logprob: float | None = None
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
                        oom=classify_oom(str(event["error"])),
                    )
                responses += 1
                raw = event.get("text_output")
                raw = raw if isinstance(raw, str) else ""
                text = cumulative.piece(raw) if cumulative is not None else raw
                tid = _last_id(event.get("output_ids"))
                logprob = last_number(event.get("output_log_probs")) if req.top_logprobs else None
                if not text:
                    continue  # a response without new text still counts in tokens_out
                for out in scanner.push(text, tid, logprob):
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
            rest = cumulative.rest() if cumulative is not None else ""
            tail = scanner.push(rest, tid, logprob) if rest else []
            for out in [*tail, *scanner.finish()]:
                yield out
            reason = FINISH_LENGTH if responses >= req.max_tokens else FINISH_STOP
        tokens_out = max(responses, scanner.received)
        stream.end = StreamEnd(tokens_out, reason, decode_ms)
