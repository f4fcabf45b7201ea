"""vLLM adapter: vLLM's OpenAI-compatible server (specs/41-worker-adapters-vllm.md).

`/health` for readiness, `/v1/models` for the served name and `max_model_len`, `/version` for
`engine_version`, `POST /v1/completions` with `stream: true` for generation, `/metrics`
(`vllm:` names) for load. Token ids come from `return_token_ids` (per-chunk `token_ids`);
servers without it still stream text, with `token_id` None. Ordinary chunks carry
`"usage": null` (vLLM's completions stream writes unset fields too) or no `usage` key at all
(servers that leave unset fields out); only a `usage` object is read, from the final usage
chunk of `stream_options.include_usage`. A `503` from `/health` means the engine died.

The same adapter also drives llama-server's OpenAI-compatible `/v1/completions`: that server
has no `/version` (404: the `engine_version` option, else "unknown"), no `max_model_len` (the
configured `ctx_max`), ignores the extra request fields, and in older builds reports a
mid-stream failure as an `error: {...}` line before `data: [DONE]`; newer builds and vLLM send
`data: {"error": {...}}`. Both end the stream with an error here.

Stop strings go out as `stop`, `top_logprobs` as `logprobs: N`. Both servers cut the stop text
themselves (`finish_reason: "stop"`; vLLM names the match in `stop_reason`) and, while stop
strings are set, may stream chunks with token ids but no text; those ids join the next chunk
with text (`stops.PieceJoiner`). Logprobs come in vLLM's legacy form or in llama-server's
`content` form (`logprobs.openai_logprobs`); llama-server sends no `token_ids`, so with
logprobs the ids come from there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from llama_orch.reference_impl.adapters.base import (
    FINISH_CANCELED,
    FINISH_LENGTH,
    FINISH_STOP,
    AdapterError,
    AdapterHealth,
    AdapterProps,
    CompletionRequest,
    LoadSignals,
    StreamEnd,
    TokenEvent,
    TokenStream,
)
from llama_orch.reference_impl.adapters.cancel_aware import (
    STREAM_BREAKS,
    CancelAware,
    decode_one,
    last_id,
    lines,
    stream_error,
    token_ids,
)
from llama_orch.reference_impl.adapters.http_common import (
    digest_for,
    error_from_status,
    error_from_transport,
    finish_body,
    parse_json,
    wait_ready,
)
from llama_orch.reference_impl.adapters.logprobs import openai_logprobs
from llama_orch.reference_impl.adapters.stops import PieceJoiner

log = logging.getLogger(__name__)

CAPABILITIES = frozenset({"stream", "cancel", "seed", "token_ids"})
DEFAULT_MAX_NUM_SEQS = 256  # vLLM's default `--max-num-seqs`
_KV_GAUGES = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")


def gauges(text: str) -> dict[str, float]:
    """Prometheus text -> {sample name: value}; counts add up over label sets (several
    engine cores), fractions such as KV usage take the largest."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            value = float(sample.value)
            if sample.name in _KV_GAUGES:
                out[sample.name] = max(out.get(sample.name, value), value)
            else:
                out[sample.name] = out.get(sample.name, 0.0) + value
    return out


class VllmAdapter(CancelAware):
    """One vLLM (or other OpenAI-compatible completions) replica.

    Engine-specific options: `served_model_name` (the request's `model`; default: the first
    id of `/v1/models`), `engine_version` (used when `/version` is missing), `model_digest`,
    `max_num_seqs` (the slot total the server was launched with), `return_token_ids` and
    `include_usage` (request fields; switch off for servers that reject unknown fields),
    `logprob_token_ids` (asks `return_tokens_as_token_ids` with logprobs, so alternatives carry
    ids but no text), `preload_timeout_s`. `connect_timeout_s`, `idle_timeout_s` and
    `transport` go to the HTTP client.
    """

    engine = "vllm"

    def __init__(
        self,
        replica_id: str,
        base_url: str,
        *,
        model_ref: str,
        ctx_max: int,
        served_model_name: str | None = None,
        engine_version: str | None = None,
        model_digest: str | None = None,
        max_num_seqs: int = DEFAULT_MAX_NUM_SEQS,
        return_token_ids: bool = True,
        include_usage: bool = True,
        logprob_token_ids: bool = False,
        preload_timeout_s: float = 60.0,
        **http: Any,
    ) -> None:
        super().__init__(replica_id, base_url, model_ref=model_ref, ctx_max=ctx_max, **http)
        self.served_model_name = served_model_name
        self.fallback_version = engine_version
        self.model_digest = digest_for(model_ref, model_digest)
        self.max_num_seqs = max(1, max_num_seqs)
        self.return_token_ids = return_token_ids
        self.include_usage = include_usage
        self.logprob_token_ids = logprob_token_ids
        self.preload_timeout_s = preload_timeout_s

    # -- requests ----------------------------------------------------------------------------
    async def model_name(self) -> str:
        """The served model name the requests carry (asked once from `/v1/models`)."""
        if self.served_model_name is None:
            self.served_model_name, _ = await self._models()
        return self.served_model_name

    def completion_body(self, req: CompletionRequest, model: str) -> dict[str, Any]:
        """The `/v1/completions` body: every sampler field explicit, the prompt unchanged."""
        s = req.sampler
        body: dict[str, Any] = {
            "model": model,
            "prompt": req.prompt,
            "max_tokens": req.max_tokens,
            "seed": req.seed,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "top_k": s.top_k if s.top_k > 0 else -1,  # vLLM: -1 disables top-k
            "min_p": s.min_p,
            "stream": True,
        }
        if s.repeat_penalty is not None:
            body["repetition_penalty"] = s.repeat_penalty
        if self.include_usage:
            body["stream_options"] = {"include_usage": True}
        if self.return_token_ids:
            body["return_token_ids"] = True
        if req.stop:
            body["stop"] = list(req.stop)
        if req.top_logprobs > 0:
            body["logprobs"] = req.top_logprobs
            if self.logprob_token_ids:
                body["return_tokens_as_token_ids"] = True
        return body

    async def _generate(
        self, req: CompletionRequest, stream: TokenStream
    ) -> AsyncGenerator[TokenEvent, None]:
        body = self.completion_body(req, await self.model_name())
        response = await self._start(req, "/v1/completions", body)
        loop = asyncio.get_running_loop()
        first_at: float | None = None
        index = ids_seen = 0
        finish: str | None = None
        usage: int | None = None
        done = False
        pieces = PieceJoiner()
        try:
            rest = lines(response)
            async for field, value in rest:
                if field == "error":
                    raise stream_error(self.engine, value, index)
                if value.strip() == "[DONE]":
                    done = True
                    await finish_body(rest)  # the connection goes back to the pool
                    break
                chunk = parse_json(self.engine, value)
                if not isinstance(chunk, dict) or "error" in chunk:
                    raise stream_error(self.engine, chunk, index)
                if isinstance(chunk.get("usage"), dict):
                    usage = chunk["usage"].get("completion_tokens", usage)
                for choice in chunk.get("choices") or ():
                    ids = choice.get("token_ids")
                    ids_seen += len(ids) if isinstance(ids, list) else 0
                    text = choice.get("text") or ""
                    lp = choice.get("logprobs")
                    if text and lp is None and not pieces.held:  # the common case, kept cheap
                        token: TokenEvent | None = TokenEvent(index, text, last_id(ids))
                    else:
                        per_token = openai_logprobs(lp, req.top_logprobs)
                        token = pieces.join(index, text, token_ids(ids), per_token)
                    if token is not None:
                        first_at = first_at if first_at is not None else loop.time()
                        yield token
                        index += 1
                    finish = choice.get("finish_reason") or finish
        except STREAM_BREAKS as exc:
            error = self.broken(req, exc)
            if error is not None:
                raise error from exc
        finally:
            canceled = self.settle(req.request_id)
        decode_ms = int((loop.time() - first_at) * 1000) if first_at is not None else 0
        if not done and canceled:
            stream.end = StreamEnd(index, FINISH_CANCELED, decode_ms)
        elif not done:
            raise AdapterError(
                "WORKER_RESET", "stream ended without `data: [DONE]`", engine=self.engine
            )
        else:
            tokens_out = usage if isinstance(usage, int) else (ids_seen or index)
            reason = FINISH_LENGTH if finish == "length" else FINISH_STOP
            stream.end = StreamEnd(tokens_out, reason, decode_ms)

    # -- state -------------------------------------------------------------------------------
    async def health(self) -> AdapterHealth:
        """`200` from `/health` is ready (vLLM answers only once the model is loaded); `503`
        (empty body) means its engine has died or is draining: live, never ready again
        without a restart."""
        health = await self.health_at("/health")
        if not health.ready and (health.detail or "").startswith("HTTP 503"):
            detail = "vLLM engine dead or draining (/health answered 503)"
            return AdapterHealth(live=True, ready=False, detail=detail)
        return health

    async def _models(self) -> tuple[str, int]:
        listing = await self.get_json("/v1/models")
        data = listing.get("data") if isinstance(listing, dict) else None
        if not data or not isinstance(data[0], dict) or "id" not in data[0]:
            raise AdapterError("POOL_UNAVAILABLE", "/v1/models lists no model", engine=self.engine)
        return str(data[0]["id"]), int(data[0].get("max_model_len") or self.ctx_max)

    async def engine_version(self) -> str:
        """`/version` field `version`; a server without the route gets the configured value."""
        try:
            response = await self.client.get("/version")
        except httpx.HTTPError as exc:
            raise error_from_transport(self.engine, exc, streaming=False) from exc
        if response.status_code == 200:
            version = parse_json(self.engine, response.text)
            if isinstance(version, dict) and version.get("version"):
                return str(version["version"])
        elif response.status_code not in (404, 405, 501):
            raise error_from_status(self.engine, response.status_code, response.text)
        return self.fallback_version or "unknown"

    async def props(self) -> AdapterProps:
        name, ctx = await self._models()
        if self.served_model_name is None:
            self.served_model_name = name
        running = await self._running()
        return AdapterProps(
            slots_total=self.max_num_seqs,
            slots_free=max(0, self.max_num_seqs - running),
            ctx_max=ctx,
            engine_version=await self.engine_version(),
            model_digest=self.model_digest,
            capabilities=CAPABILITIES,
        )

    async def _running(self) -> int:
        try:
            return (await self.metrics()).running
        except AdapterError:
            return len(self._live)

    async def metrics(self) -> LoadSignals:
        """`vllm:` gauges; a server without them (404, or other names) reports this adapter's
        own open streams as running."""
        try:
            response = await self.client.get(self.metrics_url)
        except httpx.HTTPError as exc:
            raise error_from_transport(self.engine, exc, streaming=False) from exc
        if response.status_code in (404, 501):
            return LoadSignals(waiting=0, running=len(self._live))
        if response.status_code >= 400:
            raise error_from_status(self.engine, response.status_code, response.text)
        m = gauges(response.text)
        if "vllm:num_requests_running" not in m:
            return LoadSignals(waiting=0, running=len(self._live))
        kv = next((m[name] for name in _KV_GAUGES if name in m), None)
        return LoadSignals(
            waiting=int(m.get("vllm:num_requests_waiting", 0)),
            running=int(m["vllm:num_requests_running"]),
            kv_pressure=kv,
        )

    async def preload(self) -> None:
        """Wait for `/health`, resolve the served name and identity, then decode one token."""
        await wait_ready(self, self.preload_timeout_s)
        props = await self.props()
        log.info(
            "vLLM replica identity",
            extra={
                "replica_id": self.replica_id,
                "engine_version": props.engine_version,
                "model_digest": props.model_digest,
                "served_model_name": self.served_model_name,
            },
        )
        await decode_one(self)
