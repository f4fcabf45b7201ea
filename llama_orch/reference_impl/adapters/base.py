"""The one engine-adapter protocol of the reference orchestrator, with its data types and errors.

Every engine (llama.cpp, vLLM, TGI, Triton, the in-process mock) sits behind this small async
surface so that `pool/` and `api/` never import engine-specific code (specs/40, section 1).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, get_args, runtime_checkable

AdapterErrorCode = Literal[
    "WORKER_RESET", "DECODE_TIMEOUT", "POOL_UNAVAILABLE", "INVALID_PARAMS", "REPLICA_EXHAUSTED"
]
ADAPTER_ERROR_CODES: frozenset[str] = frozenset(get_args(AdapterErrorCode))

# Whether the core may try the task again (on another replica) when the caller does not say.
_DEFAULT_RETRIABLE = {
    "WORKER_RESET": True,
    "DECODE_TIMEOUT": False,
    "POOL_UNAVAILABLE": True,
    "INVALID_PARAMS": False,
    "REPLICA_EXHAUSTED": True,
}

FINISH_LENGTH = "length"  # the request's own token limit was reached
FINISH_STOP = "stop"  # the engine ended on its own (end of sequence, directive token count)
FINISH_CANCELED = "canceled"  # cancel() stopped the stream


# Where an out-of-memory failure happened (ORCH-3039): GPU memory or host RAM.
OomKind = Literal["device", "host"]


class AdapterError(Exception):
    """A typed engine failure that the core maps to an ErrorKind (and maybe a retry).

    `oom` says the failure was running out of device (VRAM) or host memory, where the engine
    said so: the pool manager re-estimates a pool's capacity after a device OOM only.

    `permanent` marks a failure that no retry or restart can fix, because the engine's
    deployment cannot serve this orchestrator (e.g. a Triton model that declares no seed input
    or is not decoupled): a preload that raises it leaves the pool failed until an operator's
    reload, instead of backing off and trying again.
    """

    def __init__(
        self,
        code: AdapterErrorCode,
        message: str,
        *,
        retriable: bool | None = None,
        engine: str = "",
        permanent: bool = False,
        oom: OomKind | None = None,
    ) -> None:
        if code not in ADAPTER_ERROR_CODES:
            raise ValueError(f"unknown adapter error code {code!r}")
        super().__init__(f"{code}: {message}")
        self.code: AdapterErrorCode = code
        self.message = message
        self.retriable = _DEFAULT_RETRIABLE[code] if retriable is None else retriable
        self.engine = engine
        self.permanent = permanent
        self.oom = oom


@dataclass(frozen=True)
class SamplerParams:
    """A resolved sampler profile; adapters map it to engine field names identically."""

    temperature: float
    top_k: int
    top_p: float
    min_p: float
    repeat_penalty: float | None = None


@dataclass(frozen=True)
class ResumeState:
    """What an interrupted decode needs to go on where it stopped (hard preemption, ORCH-3086).

    `tokens_done` pieces (TokenEvents) had reached the client; `token_ids` are the engine's ids
    of the tokens those pieces cover, where the engine reports ids; `engine_state` is the
    adapter's own handle on the saved decode state (e.g. llama.cpp's slot file), opaque above
    the adapter. The same request resumed with this state continues the output.
    """

    tokens_done: int
    token_ids: tuple[int, ...] = ()
    engine_state: dict[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        """What the client is shown as the task's resumable state."""
        return {"tokens_done": self.tokens_done, "token_ids": len(self.token_ids)}


@dataclass(frozen=True)
class CompletionRequest:
    """One dispatched task as an adapter sees it: the prompt is forwarded unchanged."""

    request_id: str
    prompt: str
    max_tokens: int
    seed: int
    sampler: SamplerParams
    sampler_profile_version: str
    # Stop sequences: generation ends (finish reason "stop") once the output contains one;
    # the stop text itself is not streamed. Every adapter applies the same rule whatever its
    # engine does with the stop text (see adapters/stops.py).
    stop: tuple[str, ...] = ()
    # Ask the engine for the N most likely alternatives per token (0: none). Only the
    # determinism suite asks, when it replays a divergent case to report the logprob margin.
    top_logprobs: int = 0
    # Continue an interrupted decode (hard preemption) instead of starting afresh.
    resume: ResumeState | None = None


@dataclass(frozen=True, slots=True)
class TokenEvent:
    """One non-empty piece of output; `index` counts from 0 and becomes the SSE event id.

    A piece may cover several engine tokens (an engine that held text back while it might begin
    a stop string); `token_id`, `logprob` and `top` then describe the piece's last token. `top`
    is the engine's most likely tokens at that position, most likely first (the chosen one
    included when it ranks), at most the request's `top_logprobs` (adapters/logprobs.py).
    """

    index: int
    text: str
    token_id: int | None
    logprob: float | None = None  # of the chosen token, where the engine reports it
    top: tuple[TokenAlt, ...] = ()  # most likely alternatives, when top_logprobs was asked


@dataclass(frozen=True, slots=True)
class TokenAlt:
    """One alternative the engine considered at a position, with its log-probability."""

    token_id: int | None
    text: str
    logprob: float


@dataclass(frozen=True)
class StreamEnd:
    """The final record of a stream that ended without an error (TokenStream.end)."""

    tokens_out: int
    finish_reason: str
    decode_ms: int = 0


@dataclass(frozen=True)
class AdapterHealth:
    """Live means the engine answers; ready means it can take work (preload succeeded)."""

    live: bool
    ready: bool
    detail: str | None = None


@dataclass(frozen=True)
class AdapterProps:
    """Capacity and identity of one replica, as the engine reports them."""

    slots_total: int
    slots_free: int
    ctx_max: int
    engine_version: str
    model_digest: str
    capabilities: frozenset[str]


@dataclass(frozen=True)
class LoadSignals:
    """An engine metrics scrape reduced to what placement and /metrics need."""

    waiting: int
    running: int
    kv_pressure: float | None = None


class TokenStream:
    """Async iterator of TokenEvent returned by `stream()`; `aclose()` is the cancel.

    Wraps the adapter's async generator without a per-token wrapper frame. `end` holds the
    StreamEnd once the iteration finished normally (None while running, after an error or
    after aclose()). `aclose()` from another task while a `__anext__` is pending cannot close
    the generator, so it falls back to the adapter's cancel for this request.
    """

    __slots__ = ("_agen", "_on_close", "end", "request_id")

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.end: StreamEnd | None = None
        self._agen: AsyncGenerator[TokenEvent, None] | None = None
        self._on_close: Callable[[], None] | None = None

    def attach(
        self, agen: AsyncGenerator[TokenEvent, None], on_close: Callable[[], None] | None = None
    ) -> TokenStream:
        """Bind the producing generator and a release hook that runs on aclose()."""
        self._agen = agen
        self._on_close = on_close
        return self

    def __aiter__(self) -> TokenStream:
        return self

    def __anext__(self) -> Awaitable[TokenEvent]:
        # The generator's own awaitable: no extra coroutine frame per token.
        assert self._agen is not None, "TokenStream used before attach()"
        return self._agen.__anext__()

    async def aclose(self) -> None:
        """Stop producing and release the slot; idempotent."""
        if self._agen is not None:
            if self._agen.ag_running:
                if self._on_close is not None:
                    self._on_close()
                return
            await self._agen.aclose()
        if self._on_close is not None:
            self._on_close()

    async def __aenter__(self) -> TokenStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


@runtime_checkable
class Interruptible(Protocol):
    """Optional adapter surface of hard preemption (ORCH-3086).

    `interrupt` stops a running stream at its next token boundary and returns the state to
    resume it from (a `CompletionRequest` with `resume=`), or None when the engine cannot
    interrupt it (nothing running, or the engine cannot save the decode); it never blocks,
    and the stream ends as if canceled. Adapters without it never get hard-preempted, and
    one that has it is used only after it proved the capability at start
    (pool/preemption_proof.py).
    """

    def interrupt(self, request_id: str) -> ResumeState | None: ...


@runtime_checkable
class EngineAdapter(Protocol):
    """What `pool/` and `api/` may call on an engine replica, and nothing more."""

    engine: str
    replica_id: str

    async def health(self) -> AdapterHealth:
        """Live/ready flags; never raises for an engine that is merely down."""
        ...

    async def props(self) -> AdapterProps:
        """Slots, context limit and identity (engine_version, model_digest)."""
        ...

    def stream(self, req: CompletionRequest) -> TokenStream:
        """Start a completion; errors (AdapterError) surface from the iteration."""
        ...

    async def cancel(self, request_id: str) -> bool:
        """Stop a running stream promptly and free its slot; False when nothing ran."""
        ...

    async def metrics(self) -> LoadSignals:
        """Scrape the engine's own load signals."""
        ...

    async def preload(self) -> None:
        """Load the model and decode one token; raises AdapterError on failure."""
        ...

    async def close(self) -> None:
        """Release the engine; running streams fail with WORKER_RESET."""
        ...

    def estimate_tokens(self, prompt: str) -> int:
        """Cheap token estimate of a prompt for admission guardrails (no I/O)."""
        ...
