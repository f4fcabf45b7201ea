"""In-process mock engine: the reference orchestrator's default, steered by prompt directives.

Timing, length, failures and overload come from the `[[sim ...]]` directive at the start of the
prompt (specs/80, section 6), parsed with the harness's shared parser; token content comes from
the harness's shared token function, so the mock and the engine simulator agree token for token.
All waits are event-loop timers that cancel() can cut short, so a cancel takes effect within one
token interval and the slot is free when cancel() returns.

Stop strings are cut from the output with the adapters' shared `stops.StopScanner` (the stream
ends at the first one, finish reason "stop", `tokens_out` counting the stop token); asked-for
logprobs come from the harness's `tokens.step`, the same values the engine simulators send.

Hard preemption (`interrupt`, ORCH-3086): a mock imitating an engine whose real adapter can
save and resume a decode (llama.cpp, `INTERRUPTIBLE_ENGINES`) stops a running stream at a token
boundary and hands back the index it reached; tokens being a pure function of prompt, seed and
index, a request resumed from that state continues exactly. A directive `interruptible=false`
makes the engine refuse; `oom=device|host` fails the stream the way an engine out of GPU or
host memory does (ORCH-3039).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import AsyncGenerator, Iterator

from llama_orch.engine_sim.directive import Directive, DirectiveError, parse_directive
from llama_orch.engine_sim.engine import OOM_MESSAGES
from llama_orch.engine_sim.tokens import iter_tokens, step, token_id, token_text

from .base import (
    FINISH_CANCELED,
    FINISH_LENGTH,
    FINISH_STOP,
    AdapterError,
    AdapterHealth,
    AdapterProps,
    CompletionRequest,
    LoadSignals,
    ResumeState,
    StreamEnd,
    TokenAlt,
    TokenEvent,
    TokenStream,
)
from .stops import StopScanner

MOCK_CAPABILITIES = frozenset({"stream", "cancel", "seed", "token_ids", "sim_directives"})
# Engines whose real adapter can interrupt and resume a decode; their mocks can too.
INTERRUPTIBLE_ENGINES = frozenset({"llamacpp"})
# At itl_ms=0 the stream hands control back to the event loop every this many tokens, so a
# long instant stream cannot starve other tasks (and a cancel from another task can land).
YIELD_EVERY = 64

_RUNNING, _CANCELED, _RESET = 0, 1, 2


class _Run:
    """Book-keeping for one request on this instance."""

    __slots__ = (
        "done",
        "holding",
        "ids",
        "interruptible",
        "request_id",
        "state",
        "waiting",
        "waker",
    )

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.state = _RUNNING
        self.holding = False  # owns a slot
        self.waiting = False  # queued for a slot
        self.waker: asyncio.Future[None] | None = None  # the timer/slot wait in progress
        self.done = 0  # tokens handed out so far, resumed ones included
        self.ids: list[int] = []
        self.interruptible = False


def _finish_reason(run: _Run, scanner: StopScanner, at_limit: bool) -> str:
    if run.state == _CANCELED:
        return FINISH_CANCELED
    if scanner.matched is not None or not at_limit:
        return FINISH_STOP
    return FINISH_LENGTH


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class MockAdapter:
    """A deterministic, directive-driven engine replica living inside the orchestrator."""

    def __init__(
        self,
        engine: str,
        replica_id: str,
        *,
        model_ref: str,
        ctx_max: int,
        slots: int = 1,
        engine_version: str = "mock-1.0",
        salt: str | None = None,
        preload_fail: str | None = None,
        interruptible: bool | None = None,
    ) -> None:
        if slots < 1:
            raise ValueError("a mock replica needs at least one slot")
        self.engine = engine
        self.replica_id = replica_id
        self.model_ref = model_ref
        self.ctx_max = ctx_max
        self.slots = slots
        self.engine_version = engine_version
        self.salt = salt
        self.preload_fail = preload_fail
        self.interruptible = (
            engine in INTERRUPTIBLE_ENGINES if interruptible is None else interruptible
        )
        self.model_digest = "sha256:" + hashlib.sha256(model_ref.encode()).hexdigest()
        self._busy = 0
        self._runs: dict[str, _Run] = {}
        self._waiters: deque[_Run] = deque()
        self._overload_seen: dict[str, int] = {}
        self._preloaded = False
        self._preload_error: str | None = None
        self._closed = False

    # -- identity, health, load -------------------------------------------------------------

    async def health(self) -> AdapterHealth:
        """Ready only after a successful preload; a failed preload keeps its cause as detail."""
        if self._closed:
            return AdapterHealth(live=False, ready=False, detail="closed")
        if self._preload_error is not None:
            return AdapterHealth(live=True, ready=False, detail=self._preload_error)
        if not self._preloaded:
            return AdapterHealth(live=True, ready=False, detail="not preloaded")
        return AdapterHealth(live=True, ready=True, detail=None)

    async def props(self) -> AdapterProps:
        """Slot counts reflect the streams holding a slot right now."""
        return AdapterProps(
            slots_total=self.slots,
            slots_free=self.slots - self._busy,
            ctx_max=self.ctx_max,
            engine_version=self.engine_version,
            model_digest=self.model_digest,
            capabilities=MOCK_CAPABILITIES,
        )

    async def metrics(self) -> LoadSignals:
        """kv_pressure is the busy-slot fraction: the mock has no KV cache to measure."""
        return LoadSignals(
            waiting=len(self._waiters), running=self._busy, kv_pressure=self._busy / self.slots
        )

    def estimate_tokens(self, prompt: str) -> int:
        """About four characters a token, rounded up: the usual rule of thumb, no tokenizer."""
        return -(-len(prompt) // 4)

    async def preload(self) -> None:
        """Pretend to load the model, then decode one token through the shared token function."""
        if self._closed:
            raise AdapterError("POOL_UNAVAILABLE", "adapter is closed", engine=self.engine)
        if self.preload_fail is not None:
            self._preload_error = self.preload_fail
            raise AdapterError("POOL_UNAVAILABLE", self.preload_fail, engine=self.engine)
        token_id("", 0, 0, self.salt or "")
        self._preload_error = None
        self._preloaded = True

    async def close(self) -> None:
        """Running and waiting streams end with WORKER_RESET, as when an engine process exits."""
        self._closed = True
        self._preloaded = False
        for run in list(self._runs.values()):
            self._stop(run, _RESET)

    # -- streaming ------------------------------------------------------------------------

    def stream(self, req: CompletionRequest) -> TokenStream:
        """Start a completion; nothing happens until the first `__anext__`."""
        ts = TokenStream(req.request_id)
        run = _Run(req.request_id)
        return ts.attach(self._generate(req, run, ts), lambda: self._stop(run, _CANCELED))

    async def cancel(self, request_id: str) -> bool:
        """Stop the stream at its next wake-up (no further token) and free its slot now."""
        run = self._runs.get(request_id)
        if run is None:
            return False
        self._stop(run, _CANCELED)
        return True

    def interrupt(self, request_id: str) -> ResumeState | None:
        """Hard preemption: stop a decode that holds a slot and return where it stopped."""
        run = self._runs.get(request_id)
        if run is None or run.state != _RUNNING or not run.holding or not run.interruptible:
            return None
        state = ResumeState(run.done, tuple(run.ids), {"mock_index": run.done})
        self._stop(run, _CANCELED)
        return state

    def _stop(self, run: _Run, state: int) -> None:
        if run.state == _RUNNING:
            run.state = state
        if run.waker is not None:
            _wake(run.waker)
        self._release(run)

    def _plan(self, req: CompletionRequest) -> tuple[Directive, str, int]:
        """Validate before any token: directive, limits, overload, instance state."""
        if self._closed or self._preload_error is not None:
            cause = (
                "adapter is closed" if self._closed else f"preload failed: {self._preload_error}"
            )
            raise AdapterError("POOL_UNAVAILABLE", cause, engine=self.engine)
        try:
            directive, ordinary = parse_directive(req.prompt)
        except DirectiveError as exc:
            raise AdapterError("INVALID_PARAMS", str(exc), engine=self.engine) from exc
        if req.max_tokens < 0:
            raise AdapterError("INVALID_PARAMS", "max_tokens must be >= 0", engine=self.engine)
        if req.request_id in self._runs:
            raise AdapterError(
                "INVALID_PARAMS",
                f"request {req.request_id!r} is already streaming here",
                engine=self.engine,
            )
        if directive is None:
            return Directive(), ordinary, req.max_tokens
        if self._overloaded(directive.overload, ordinary):
            raise AdapterError(
                "REPLICA_EXHAUSTED", "mock replica overloaded (directive)", engine=self.engine
            )
        return directive, ordinary, directive.token_count(req.max_tokens)

    def _overloaded(self, overload: bool | int, ordinary: str) -> bool:
        if overload is True or overload is False:
            return overload
        if overload == 0:
            return False
        seen = self._overload_seen.get(ordinary, 0) + 1
        self._overload_seen[ordinary] = seen
        return seen <= overload

    async def _generate(
        self, req: CompletionRequest, run: _Run, ts: TokenStream
    ) -> AsyncGenerator[TokenEvent, None]:
        directive, ordinary, count = self._plan(req)
        self._runs[req.request_id] = run
        start = self._begin(req, run, directive)
        try:
            await self._acquire(run)
            loop = asyncio.get_running_loop()
            started = loop.time()
            if directive.ttft_ms and not start:
                await self._pause(run, directive.ttft_ms)
            itl = directive.itl_ms
            fail_at = directive.failure_at()
            fail_at = count if fail_at is None else fail_at
            scanner = StopScanner(req.stop)
            index = start
            for tid, text, logprob, top in self._tokens(req, directive, ordinary, count, start):
                if index:
                    await self._pace(run, index, itl)
                if run.state != _RUNNING:
                    break
                if index == fail_at:
                    raise self._failure(directive, index)
                for event in scanner.push(text, tid, logprob, top):
                    yield event
                    if event.token_id is not None:
                        run.ids.append(event.token_id)
                    run.done = start + scanner.released  # tokens whose text reached the client
                index += 1
                if scanner.matched is not None:
                    break
            if run.state == _RUNNING:
                for event in scanner.finish():
                    yield event
            if directive.hold_ms and scanner.matched is None:
                await self._pause(run, directive.hold_ms)
            if run.state == _RESET:
                raise AdapterError("WORKER_RESET", "mock engine closed", engine=self.engine)
            reason = _finish_reason(run, scanner, count == req.max_tokens)
            decode_ms = int((loop.time() - started) * 1000)
            ts.end = StreamEnd(tokens_out=index, finish_reason=reason, decode_ms=decode_ms)
        finally:
            self._release(run)

    def _begin(self, req: CompletionRequest, run: _Run, directive: Directive) -> int:
        """Set a run up (from its resume state, if any); the index of its first token."""
        run.interruptible = self.interruptible and directive.interruptible
        if req.resume is None:
            return 0
        run.done = req.resume.tokens_done
        run.ids = list(req.resume.token_ids)
        return run.done

    def _failure(self, directive: Directive, index: int) -> AdapterError:
        """The directive's mid-stream failure: a worker reset, or running out of memory."""
        if directive.oom is not None:
            message = f"{OOM_MESSAGES[directive.oom]} after {index} tokens (directive)"
            return AdapterError("WORKER_RESET", message, engine=self.engine, oom=directive.oom)
        message = f"mock engine failed after {index} tokens (directive)"
        return AdapterError("WORKER_RESET", message, engine=self.engine)

    async def _pace(self, run: _Run, index: int, itl_ms: int) -> None:
        """The wait before token `index` > 0: the directive's interval, else a yield to the
        event loop every YIELD_EVERY tokens."""
        if itl_ms:
            await self._pause(run, itl_ms)
        elif not index % YIELD_EVERY:
            await asyncio.sleep(0)

    def _tokens(
        self, req: CompletionRequest, directive: Directive, ordinary: str, count: int, start: int
    ) -> Iterator[tuple[int, str, float | None, tuple[TokenAlt, ...]]]:
        """(id, text, logprob, top) per position from `start`; logprobs only when asked."""
        salt, diverge_at = self.salt or "", directive.diverge_at
        if req.top_logprobs <= 0:
            tokens = iter_tokens(ordinary, req.seed, count, salt=salt, diverge_at=diverge_at)
            for i, (tid, text) in enumerate(tokens):
                if i >= start:
                    yield tid, text, None, ()
            return
        for i in range(start, count):
            at = step(
                ordinary, req.seed, i, salt=salt, diverge_at=diverge_at, top_n=req.top_logprobs
            )
            top = tuple(TokenAlt(t, token_text(t), lp) for t, lp in at.top)
            yield at.token_id, token_text(at.token_id), at.logprob, top

    async def _acquire(self, run: _Run) -> None:
        """Take a free slot, or queue FIFO for one (counted as `waiting`)."""
        if self._busy < self.slots and not self._waiters:
            self._busy += 1
            run.holding = True
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        run.waker, run.waiting = fut, True
        self._waiters.append(run)
        try:
            await fut
        finally:
            run.waker = None

    async def _pause(self, run: _Run, ms: int) -> None:
        """asyncio.sleep that cancel() can end early; never shorter than `ms` otherwise."""
        if run.state != _RUNNING:
            return  # already canceled between tokens: do not wait out another interval
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        handle = loop.call_later(ms / 1000, _wake, fut)
        run.waker = fut
        try:
            await fut
        finally:
            run.waker = None
            handle.cancel()

    def _release(self, run: _Run) -> None:
        """Idempotent: leave the wait queue or hand the slot to the next waiter."""
        if self._runs.get(run.request_id) is run:
            del self._runs[run.request_id]
        if run.waiting:
            run.waiting = False
            self._waiters.remove(run)
        if not run.holding:
            return
        run.holding = False
        while self._waiters:
            nxt = self._waiters.popleft()
            nxt.waiting = False
            if nxt.state == _RUNNING and nxt.waker is not None:
                nxt.holding = True
                _wake(nxt.waker)
                return
        self._busy -= 1
