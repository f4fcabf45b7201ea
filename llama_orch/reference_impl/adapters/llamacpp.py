"""llama.cpp adapter: `llama-server`'s native API (specs/40-worker-adapters-llamacpp.md).

`/health` for readiness, `/props` and `/slots` for capacity and identity, `POST /completion`
with `stream: true` and `return_tokens: true` for generation, `/metrics` (`llamacpp:` names)
for load, `/tokenize` for prompt lengths. Field variants of older and newer builds are both
accepted: token ids in `tokens` (absent in builds before `return_tokens`), `stop_type` or the
older `stopped_limit` flag, a mid-stream failure as an `error: {...}` line (older builds) or as
`data: {"error": {...}}` (newer ones), and `:` keep-alive comments (skipped by `sse_data`).

Stop strings go out as `stop` and `top_logprobs` as `n_probs`. llama-server cuts the stop word
from the output itself (`stop_type: "word"`, `stopping_word` in the final event); while text
may begin a stop word it streams the token ids with `content: ""`, which the adapter joins to
the next piece with text (`stops.PieceJoiner`), and text it held when `n_predict` ran out is
recovered with `/detokenize`. `completion_probabilities` become `TokenEvent.logprob` and `top`
(`logprobs.llama_entry`: pre-sampling logprobs by default, `post_sampling_probs` read too).

Cancel, in-stream error and preload rules are shared with the vLLM adapter
(`adapters.cancel_aware`). Interrupt and resume for hard preemption (slot save/restore) are in
`adapters.llamacpp_resume`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from typing import Any

import httpx

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
    scrape,
    wait_ready,
)
from llama_orch.reference_impl.adapters.llamacpp_resume import SlotCheckpoints
from llama_orch.reference_impl.adapters.logprobs import TokenLogprob, llama_entry
from llama_orch.reference_impl.adapters.stops import PieceJoiner

log = logging.getLogger(__name__)

CAPABILITIES = frozenset({"stream", "cancel", "seed", "token_ids", "tokenize"})
# Sampler order sent with every request, so that build defaults (dry, typ_p, xtc, ...) never
# take part and every replica runs the same chain. llama.cpp applies only the samplers named
# here, the repetition penalties included: without "penalties" a `repeat_penalty` is silently
# ignored (common/sampling.cpp). It comes first, as in llama.cpp's own default order.
DEFAULT_SAMPLERS = ("penalties", "top_k", "top_p", "min_p", "temperature")
NO_PENALTY = 1.0  # llama.cpp's `repeat_penalty` that changes nothing
_SEED_MASK = 0xFFFFFFFF  # llama.cpp seeds are uint32; this value itself means "random"


# -- llama.cpp --------------------------------------------------------------------------------


def _probs(entries: Any, req: CompletionRequest) -> list[TokenLogprob]:
    """The `completion_probabilities` of one event, one entry per token."""
    if not isinstance(entries, list):
        return []
    return [llama_entry(entry, req.top_logprobs) for entry in entries]


def llama_seed(seed: int) -> int:
    """The uint32 seed llama.cpp gets: the task seed modulo 2**32, stepping off the value
    that means "random" there, identically on every replica."""
    value = seed & _SEED_MASK
    return value - 1 if value == _SEED_MASK else value


class LlamaCppAdapter(SlotCheckpoints, CancelAware):
    """One `llama-server` replica.

    Engine-specific options: `cache_prompt` (False for the determinism suite: prompt caching
    changes batch sizes and so results), `engine_version` (used when `/props` has no
    `build_info`, e.g. the `--version` output captured at launch), `model_digest` (the
    verified GGUF digest), `samplers` (the chain order sent with every request),
    `preload_timeout_s`, `cancel_wait_s` (how long cancel() waits for `/slots` to show the
    slot free), `slot_saves` (offer interrupt/resume by slot save and restore: the adapter then
    places each request in a slot itself), `slot_dir` (the server's `--slot-save-path`, to
    delete slot files once they are restored). `connect_timeout_s`, `idle_timeout_s` and
    `transport` go to the HTTP client.
    """

    engine = "llamacpp"
    # llama-server closes the connection after every streamed response (its chunked provider
    # ends the exchange; measured on the pinned build, issue 16): a stream's connection is not
    # pooled, or the next request could be sent into the closing socket ("Server disconnected").
    stream_keep_alive = False

    def __init__(
        self,
        replica_id: str,
        base_url: str,
        *,
        model_ref: str,
        ctx_max: int,
        cache_prompt: bool = True,
        engine_version: str | None = None,
        model_digest: str | None = None,
        samplers: tuple[str, ...] = DEFAULT_SAMPLERS,
        preload_timeout_s: float = 60.0,
        cancel_wait_s: float = 1.0,
        slot_saves: bool = False,
        slot_dir: str | None = None,
        **http: Any,
    ) -> None:
        super().__init__(replica_id, base_url, model_ref=model_ref, ctx_max=ctx_max, **http)
        self.cache_prompt = cache_prompt
        self.fallback_version = engine_version
        self.model_digest = digest_for(model_ref, model_digest)
        self.samplers = tuple(samplers)
        self.preload_timeout_s = preload_timeout_s
        self.cancel_wait_s = cancel_wait_s
        self.model_path: str | None = None
        self._slot_of: dict[str, int] = {}
        self._warned_version = False
        self.slot_saves = slot_saves
        self.slot_dir = slot_dir
        self._init_checkpoints()

    # -- requests ----------------------------------------------------------------------------
    def completion_body(self, req: CompletionRequest) -> dict[str, Any]:
        """The `/completion` body: every sampler field explicit, the prompt unchanged."""
        s = req.sampler
        body: dict[str, Any] = {
            "prompt": req.prompt,
            "n_predict": req.max_tokens,
            "seed": llama_seed(req.seed),
            "temperature": s.temperature,
            "top_k": s.top_k,
            "top_p": s.top_p,
            "min_p": s.min_p,
            # explicit even when off, so that a build default never leaks in
            "repeat_penalty": s.repeat_penalty if s.repeat_penalty is not None else NO_PENALTY,
            "samplers": list(self.samplers),
            "stream": True,
            "return_tokens": True,
            "cache_prompt": self.cache_prompt,
            "id_slot": -1,
        }
        if req.stop:
            body["stop"] = list(req.stop)
        if req.top_logprobs > 0:
            body["n_probs"] = req.top_logprobs
        return body

    async def _generate(
        self, req: CompletionRequest, stream: TokenStream
    ) -> AsyncGenerator[TokenEvent, None]:
        rid = req.request_id
        self.begin_run(req)
        body = self.placed_body(self.completion_body(req), req, await self.place(req))
        response = await self._start(req, "/completion", body)
        loop = asyncio.get_running_loop()
        first_at: float | None = None
        index = 0
        final: dict[str, Any] | None = None
        pieces = PieceJoiner()
        pending: list[int] = []  # ids read since the last piece reached the client
        try:
            rest = lines(response)
            async for field, value in rest:
                event = self._event(field, value, index)
                if isinstance(event.get("id_slot"), int) and event["id_slot"] >= 0:
                    self._slot_of.setdefault(rid, event["id_slot"])
                text = event.get("content") or ""
                probs = event.get("completion_probabilities")
                ids = token_ids(event.get("tokens"))
                pending += ids
                if text and not probs and not pieces.held:  # the common case, kept cheap
                    token: TokenEvent | None = TokenEvent(index, text, last_id(ids))
                else:
                    token = pieces.join(index, text, ids, _probs(probs, req))
                if token is not None:
                    if self.stopped(rid):
                        break  # interrupted (hard preemption): nothing more reaches the client
                    first_at = first_at if first_at is not None else loop.time()
                    yield token
                    self.emitted(rid, pending)
                    pending = []
                    index += 1
                if event.get("stop") is True:
                    final = event
                    await finish_body(rest)  # a clean end for the server (no broken pipe)
                    break
        except STREAM_BREAKS as exc:
            error = self.broken(req, exc)
            if error is not None:
                raise error from exc
        finally:
            canceled = self._close_run(rid)
        measured_ms = int((loop.time() - first_at) * 1000) if first_at is not None else 0
        if final is None and canceled:
            stream.end = StreamEnd(index, FINISH_CANCELED, measured_ms)
        elif final is None:
            raise AdapterError(
                "WORKER_RESET", "stream ended without its final event", engine=self.engine
            )
        else:
            if pieces.held and final.get("stop_type") == "limit":
                text = await self._detokenize(pieces.held)
                if text:
                    yield pieces.emit(index, text)
                    index += 1
            stream.end = self._end(final, index, measured_ms)

    def _event(self, field: str, value: str, index: int) -> dict[str, Any]:
        """One stream line as an event object; a reported failure raises its typed error."""
        if field == "error":
            raise stream_error(self.engine, value, index)
        event = parse_json(self.engine, value)
        if not isinstance(event, dict):
            raise AdapterError(
                "WORKER_RESET", f"unexpected event {value[:80]!r}", engine=self.engine
            )
        if "error" in event and "content" not in event:
            raise stream_error(self.engine, event, index)
        return event

    def _close_run(self, rid: str) -> bool:
        """Forget a run whose stream ended; True when cancel() or an interrupt ended it."""
        interrupted = self.stopped(rid)
        self.end_run(rid)
        if not interrupted:  # an interrupt's save still holds the slot
            self.release(rid)
        return self.settle(rid) or interrupted

    async def _detokenize(self, ids: list[int]) -> str:
        """Text of token ids by `POST /detokenize`; "" when that fails (logged).

        llama-server holds back text that may begin a stop word and, when `n_predict` runs out
        meanwhile, never streams it (its non-streamed answer has it): the adapter asks for it.
        """
        try:
            response = await self.client.post("/detokenize", json={"tokens": ids})
            content = response.json().get("content") if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            content = None
        if not isinstance(content, str):
            log.warning(
                "llama-server did not detokenize held-back tokens; their text is lost",
                extra={"replica_id": self.replica_id, "tokens": len(ids)},
            )
            return ""
        return content

    @staticmethod
    def _end(final: dict[str, Any], pieces: int, measured_ms: int) -> StreamEnd:
        """`stop_type` limit is FINISH_LENGTH; eos and word (a stop string) FINISH_STOP."""
        timings = final.get("timings") if isinstance(final.get("timings"), dict) else {}
        tokens_out = final.get("tokens_predicted", timings.get("predicted_n", pieces))
        decode_ms = timings.get("predicted_ms")
        stop_type = final.get("stop_type")
        limited = stop_type == "limit" if stop_type is not None else final.get("stopped_limit")
        return StreamEnd(
            tokens_out=int(tokens_out),
            finish_reason=FINISH_LENGTH if limited else FINISH_STOP,
            decode_ms=round(decode_ms) if isinstance(decode_ms, int | float) else measured_ms,
        )

    async def cancel(self, request_id: str) -> bool:
        """Close the stream, then wait (bounded) until `/slots` shows its slot idle. Builds
        that name no `id_slot` before the final event: until one of the slots busy at the
        time of the cancel is idle."""
        watch = {self._slot_of[request_id]} if request_id in self._slot_of else None
        if watch is None and request_id in self._live:
            watch = await self._busy_slots()
        if not await super().cancel(request_id):
            return False
        if watch:
            await self._wait_idle(watch)
        return True

    async def _wait_idle(self, watch: set[int]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cancel_wait_s
        while loop.time() < deadline:
            busy = await self._busy_slots()
            if busy is None or not watch <= busy:
                return
            await asyncio.sleep(0.02)

    async def _busy_slots(self) -> set[int] | None:
        """Ids of processing slots from `/slots`; None when the endpoint is off or fails."""
        try:
            response = await self.client.get("/slots")
            slots = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None
        if not isinstance(slots, list):
            return None
        return {s.get("id", i) for i, s in enumerate(slots) if s.get("is_processing")}

    # -- state -------------------------------------------------------------------------------
    async def health(self) -> AdapterHealth:
        """`200` is ready; `503` ("Loading model") is live but not ready."""
        try:
            response = await self.client.get("/health")
        except httpx.HTTPError as exc:
            return AdapterHealth(live=False, ready=False, detail=f"unreachable: {exc!r}")
        if response.status_code == 200:
            return AdapterHealth(live=True, ready=True)
        try:
            detail = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            detail = response.text[:200] or None
        return AdapterHealth(
            live=True, ready=False, detail=f"HTTP {response.status_code}: {detail}"
        )

    async def props(self) -> AdapterProps:
        props = await self.get_json("/props")
        total = int(props.get("total_slots") or 1)
        settings = props.get("default_generation_settings") or {}
        n_ctx = settings.get("n_ctx") or props.get("n_ctx") or self.ctx_max
        self.model_path = props.get("model_path", self.model_path)
        busy = await self._busy_slots()
        in_use = len(busy) if busy is not None else len(self._live)
        return AdapterProps(
            slots_total=total,
            slots_free=max(0, total - in_use),
            ctx_max=int(n_ctx),
            engine_version=self._version(props.get("build_info")),
            model_digest=self.model_digest,
            capabilities=CAPABILITIES,
        )

    def _version(self, build_info: Any) -> str:
        if isinstance(build_info, str) and build_info:
            return build_info
        if self.fallback_version:
            return self.fallback_version
        if not self._warned_version:
            self._warned_version = True
            log.warning(
                "llama-server reports no build_info and no engine_version was given",
                extra={"replica_id": self.replica_id},
            )
        return "unknown"

    async def metrics(self) -> LoadSignals:
        """`llamacpp:` gauges; `/slots` when the server runs without `--metrics`."""
        try:
            response = await self.client.get(self.metrics_url)
        except httpx.HTTPError as exc:
            raise error_from_transport(self.engine, exc, streaming=False) from exc
        if response.status_code in (404, 501):
            busy = await self._busy_slots()
            return LoadSignals(waiting=0, running=len(busy) if busy is not None else 0)
        if response.status_code >= 400:
            raise error_from_status(self.engine, response.status_code, response.text)
        m = scrape(response.text)
        return LoadSignals(
            waiting=int(m.get("llamacpp:requests_deferred", 0)),
            running=int(m.get("llamacpp:requests_processing", 0)),
            kv_pressure=m.get("llamacpp:kv_cache_usage_ratio"),
        )

    async def tokenize(self, text: str) -> int:
        """Token count of `text` by the engine's own tokenizer (`POST /tokenize`)."""
        try:
            response = await self.client.post("/tokenize", json={"content": text})
        except httpx.HTTPError as exc:
            raise error_from_transport(self.engine, exc, streaming=False) from exc
        if response.status_code >= 400:
            raise error_from_status(self.engine, response.status_code, response.text)
        return len(parse_json(self.engine, response.text).get("tokens", []))

    async def preload(self) -> None:
        """Wait for `/health`, log the identity, then decode one token."""
        await wait_ready(self, self.preload_timeout_s)
        props = await self.props()
        log.info(
            "llama.cpp replica identity",
            extra={
                "replica_id": self.replica_id,
                "engine_version": props.engine_version,
                "model_digest": props.model_digest,
                "model_path": self.model_path,
            },
        )
        await decode_one(self)
