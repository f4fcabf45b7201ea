"""Adapter for Hugging Face Text Generation Inference, over TGI's own API (specs/42).

Endpoints: `/health` (health), `/info` (slots, context, identity), `/generate_stream` (tasks),
`/generate` (the one-token self-test of `preload()`), `/metrics` (load). TGI's
OpenAI-compatible routes are never used.

Sampler mapping (ORCH-3058), a pure function of the profile (`tgi_parameters`), so every
replica gets byte-identical parameters for the same task:

- the greedy profile (`temperature == 0`) is `do_sample: false` with no `temperature`,
  `top_k` or `top_p`: TGI rejects `temperature: 0`, and any of those fields would make TGI
  sample;
- otherwise `do_sample: true`, `temperature`, `top_k` when above 0, `top_p` when below 1 (TGI
  accepts only 0 < top_p < 1; 1 means off), and `repetition_penalty` when the profile has one;
- `min_p` is always dropped: TGI has no such parameter. A profile with `min_p > 0` is logged
  once per adapter as a warning; the request is the same with or without it, on every replica;
- `seed` is always sent (TGI uses it only when sampling), with `max_new_tokens` and
  `details: true`;
- stop strings go out as `stop` (TGI takes at most `--max-stop-sequences`, 4 by default; more
  is a 422 -> INVALID_PARAMS) and `top_logprobs` as `top_n_tokens`, capped at
  `max_top_n_tokens` (TGI's default limit 5).

Stop text: TGI keeps the stop sequence in the output and stops only once the output ends with
it (`finish_reason: "stop_sequence"`). The adapter cuts it with `stops.StopScanner`, ends the
stream as soon as a stop string appears (closing the request if TGI goes on), and reports
FINISH_STOP; `tokens_out` counts the tokens TGI generated, the stop token included. Every
token's `logprob` becomes `TokenEvent.logprob`; `top_tokens` become `TokenEvent.top`.

Stream: `data:` events carry `token {id, text, logprob, special}`; special tokens (end of
sequence) produce no TokenEvent and do not count. A token with `text: ""` is a real token
whose text TGI holds back because the output ends inside a multibyte character (its detokenizer
waits for the character to complete): it counts in `tokens_out`, and when the stream ends
while such tokens are held, their text is the rest of the final `generated_text`, sent with
the last held token's id and logprob. The final event's `details.finish_reason` gives the end:
`length` -> FINISH_LENGTH, `eos_token`/`stop_sequence` -> FINISH_STOP; TGI sends `details`
only when the request asked for it, and without it the token count decides.

Errors: on `/generate_stream` TGI reports every refusal (overload past
`max_concurrent_requests`, validation) and every generation failure in-band, as an event
`{"error", "error_type"}` with HTTP 200. They map by `error_type`: `overloaded` ->
REPLICA_EXHAUSTED and `validation` -> INVALID_PARAMS before the first token, anything else ->
WORKER_RESET; the status form of `/generate` (429, 422) maps the same way through
`http_common`.

Identity: `engine_version` is `/info` `version`; `model_digest` is `hf:<model_id>@<model_sha>`
when TGI reports a revision, else the configured digest (`sha256:` of `model_ref`, or
`model_ref` itself when it is a `sha256:` digest). `/info` is kept in `self.info`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx

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
    parse_json,
    sse_data,
    wait_ready,
)
from .logprobs import last_number, tgi_top
from .oom import classify_oom
from .stops import StopScanner

log = logging.getLogger("llama_orch.reference_impl.adapters")

TGI_CAPABILITIES = frozenset({"stream", "cancel", "seed", "token_ids"})
_ERROR_TYPES = {"overloaded": "REPLICA_EXHAUSTED", "validation": "INVALID_PARAMS"}
PRELOAD_PROMPT = "Hello"
MAX_TOP_N_TOKENS = 5  # TGI's `--max-top-n-tokens` default; more is a 422


def tgi_parameters(
    req: CompletionRequest, max_top_n_tokens: int = MAX_TOP_N_TOKENS
) -> dict[str, Any]:
    """TGI `parameters` for a task: the profile mapping of the module docstring."""
    s = req.sampler
    params: dict[str, Any] = {"max_new_tokens": req.max_tokens, "seed": req.seed, "details": True}
    if req.stop:
        params["stop"] = list(req.stop)
    if req.top_logprobs > 0:
        params["top_n_tokens"] = min(req.top_logprobs, max_top_n_tokens)
    if s.temperature <= 0:
        params["do_sample"] = False
        return params
    params["do_sample"] = True
    params["temperature"] = s.temperature
    if s.top_k > 0:
        params["top_k"] = s.top_k
    if 0 < s.top_p < 1:
        params["top_p"] = s.top_p
    if s.repeat_penalty is not None:
        params["repetition_penalty"] = s.repeat_penalty
    return params


class TgiAdapter(ClosingAware, HttpEngineAdapter):
    """One TGI replica behind the shared adapter protocol."""

    engine = "tgi"

    def __init__(
        self,
        replica_id: str,
        base_url: str,
        *,
        model_ref: str,
        ctx_max: int,
        ready_timeout_s: float = 0.0,
        max_top_n_tokens: int = MAX_TOP_N_TOKENS,
        **http: Any,
    ) -> None:
        super().__init__(replica_id, base_url, model_ref=model_ref, ctx_max=ctx_max, **http)
        self.ready_timeout_s = ready_timeout_s
        self.max_top_n_tokens = max_top_n_tokens
        self.info: dict[str, Any] = {}
        self.engine_version = "unknown"
        self.model_digest = digest_for(model_ref)
        self._min_p_warned = False

    # -- identity, health, load -------------------------------------------------------
    async def health(self) -> AdapterHealth:
        return await self.health_at("/health")

    async def identity(self) -> dict[str, Any]:
        """Read `/info` and record version and model information (OC-ADAPT-5050)."""
        info = await self.get_json("/info")
        if not isinstance(info, dict):
            raise AdapterError("WORKER_RESET", "/info is not a JSON object", engine=self.engine)
        self.info = info
        version = info.get("version")
        if version:
            self.engine_version = str(version)
        else:
            log.warning("tgi /info has no version", extra={"replica_id": self.replica_id})
        model_id, model_sha = info.get("model_id"), info.get("model_sha")
        self.model_digest = (
            f"hf:{model_id}@{model_sha}" if model_id and model_sha else digest_for(self.model_ref)
        )
        return info

    async def props(self) -> AdapterProps:
        info = await self.identity()
        total = int(info.get("max_concurrent_requests") or 1)
        try:
            running = (await self.metrics()).running
        except AdapterError:
            running = len(self._live)
        return AdapterProps(
            slots_total=total,
            slots_free=max(0, total - running),
            ctx_max=int(info.get("max_total_tokens") or self.ctx_max),
            engine_version=self.engine_version,
            model_digest=self.model_digest,
            capabilities=TGI_CAPABILITIES,
        )

    async def metrics(self) -> LoadSignals:
        """Waiting is `tgi_queue_size`, running `tgi_batch_current_size`; no KV gauge."""
        values = await self.get_metrics()
        return LoadSignals(
            waiting=int(values.get("tgi_queue_size", 0)),
            running=int(values.get("tgi_batch_current_size", 0)),
            kv_pressure=None,
        )

    async def preload(self) -> None:
        """Wait (up to `ready_timeout_s`) for `/health`, then decode one token via `/generate`."""
        await wait_ready(self, self.ready_timeout_s)
        await self.identity()
        body = {
            "inputs": PRELOAD_PROMPT,
            "parameters": {"max_new_tokens": 1, "do_sample": False, "details": True},
        }
        await self.generate_once("/generate", body)
        log.info(
            "tgi replica identified",
            extra={
                "replica_id": self.replica_id,
                "engine_version": self.engine_version,
                "model_digest": self.model_digest,
                "tgi_sha": self.info.get("sha"),
                "docker_label": self.info.get("docker_label"),
            },
        )

    # -- streaming ---------------------------------------------------------------------
    def _warn_dropped(self, sampler: SamplerParams) -> None:
        if sampler.min_p > 0 and not self._min_p_warned:
            self._min_p_warned = True
            log.warning(
                "tgi has no min_p; the profile's min_p is not sent",
                extra={"replica_id": self.replica_id, "min_p": sampler.min_p},
            )

    async def _generate(
        self, req: CompletionRequest, stream: TokenStream
    ) -> AsyncIterator[TokenEvent]:
        if self._shut_down:
            raise AdapterError("POOL_UNAVAILABLE", "adapter is closed", engine=self.engine)
        self._warn_dropped(req.sampler)
        params = tgi_parameters(req, self.max_top_n_tokens)
        body = {"inputs": req.prompt, "parameters": params}
        loop = asyncio.get_running_loop()
        started = loop.time()
        response = await self._open(req, "POST", "/generate_stream", body)
        scanner = StopScanner(req.stop)
        final: dict[str, Any] | None = None
        generated = 0  # tokens TGI generated, empty-text ones included (special ones not)
        sent: list[str] = []  # texts handed to the scanner, to recover a held tail
        held: tuple[Any, float | None] | None = None  # last empty-text token (id, logprob)
        broke: BaseException | None = None
        try:
            async for _field, data in sse_data(response):
                if req.request_id not in self._live:
                    break  # canceled while the engine kept talking
                event = parse_json(self.engine, data)
                if not isinstance(event, dict):
                    continue
                if "error" in event:
                    raise self._stream_error(event, scanner.released)
                if event.get("generated_text") is not None or event.get("details"):
                    final = event
                token = event.get("token") or {}
                if token.get("special"):
                    continue
                generated += 1
                text = token.get("text") or ""
                logprob = last_number(token.get("logprob"))
                if not text:  # the output ends inside a multibyte character: id and logprob
                    held = (token.get("id"), logprob)  # are real; the text comes later
                    continue
                held = None
                top = tgi_top(event.get("top_tokens"), req.top_logprobs) if req.top_logprobs else ()
                sent.append(text)
                for out in scanner.push(text, token.get("id"), logprob, top):
                    yield out
                if scanner.matched is not None:
                    break
        except (httpx.HTTPError, httpx.StreamError) as exc:
            broke = exc
        decode_ms = int((loop.time() - started) * 1000)
        if scanner.matched is not None:
            await self.cancel(req.request_id)  # TGI misses a stop string inside a token
            stream.end = StreamEnd(generated, FINISH_STOP, decode_ms)
            return
        if self._stopped_early(req, scanner.released, broke):
            await response.aclose()
            stream.end = StreamEnd(generated, FINISH_CANCELED, decode_ms)
            return
        final = self._final(final, scanner.released)
        for out in _release(scanner, final, held, "".join(sent)):
            yield out
        stream.end = StreamEnd(generated, self._finish(final, generated, req), decode_ms)

    def _final(self, final: dict[str, Any] | None, released: int) -> dict[str, Any]:
        if final is None:
            raise AdapterError(
                "WORKER_RESET",
                f"tgi stream ended without its final event after {released} tokens",
                engine=self.engine,
            )
        return final

    @staticmethod
    def _finish(final: dict[str, Any], generated: int, req: CompletionRequest) -> str:
        """`details.finish_reason` (`length` -> FINISH_LENGTH, `eos_token`/`stop_sequence` ->
        FINISH_STOP); TGI sends `details` only when asked, so without it the token count tells
        whether the limit was reached."""
        details = final.get("details")
        reason = details.get("finish_reason") if isinstance(details, dict) else None
        if reason is None:
            return FINISH_LENGTH if generated >= req.max_tokens else FINISH_STOP
        return FINISH_LENGTH if reason == "length" else FINISH_STOP

    def _stream_error(self, event: dict[str, Any], index: int) -> AdapterError:
        kind = str(event.get("error_type") or "generation")
        code = _ERROR_TYPES.get(kind, "WORKER_RESET") if index == 0 else "WORKER_RESET"
        return AdapterError(
            code,  # type: ignore[arg-type]
            f"tgi {kind} error after {index} tokens: {event.get('error')}",
            engine=self.engine,
            oom=classify_oom(str(event.get("error"))),
        )


def _release(
    scanner: StopScanner,
    final: dict[str, Any],
    held: tuple[Any, float | None] | None,
    streamed: str,
) -> list[TokenEvent]:
    """The last events of a stream that ended normally. Tokens TGI sent as `""` at the very
    end (the output stopped inside a multibyte character) get the rest of `generated_text`,
    with the last such token's id and logprob."""
    text = final.get("generated_text")
    tail = ""
    if held is not None and isinstance(text, str) and text.startswith(streamed):
        tail = text[len(streamed) :]
    outs = scanner.push(tail, held[0], held[1]) if held is not None and tail else []
    return [*outs, *scanner.finish()]
