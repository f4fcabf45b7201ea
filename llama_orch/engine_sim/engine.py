"""The protocol-independent core of the engine simulator.

Each protocol module (llamacpp, vllm, tgi, triton) parses its engine's request, calls
`SimEngine.generate`, and frames the tokens the way that engine does. Behaviour comes from
the prompt's directive (specs/80, section 6): token count, pace, hold, failure, overload, and
divergence for replicas started in divergent mode. Token content is a pure function of the
ordinary prompt, the seed and the index (`tokens.token_id`), so adapters and determinism
checks can compare token ids across replicas.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from llama_orch.engine_sim.directive import Directive, DirectiveError, parse_directive
from llama_orch.engine_sim.tokens import step, token_id, token_text, variant_key

__all__ = ["DirectiveError", "SimConfig", "SimEngine", "SimFailure", "SimOverload", "SimToken"]


class SimOverload(Exception):
    """The directive asked for the engine's own overload answer (no token was produced)."""


# How an engine words running out of memory (the `oom` directive): the device message is the
# CUDA allocator's, the host one the C++ allocator's, as llama.cpp, vLLM and TGI print them.
OOM_MESSAGES = {
    "device": "CUDA error: out of memory (cudaMalloc failed to allocate the KV cache on device 0)",
    "host": "failed to allocate host buffer: std::bad_alloc (host memory exhausted)",
}


class SimFailure(Exception):
    """The directive asked for a mid-stream failure after `produced` tokens (`oom`: running
    out of `device` or `host` memory, worded the way engines word it)."""

    def __init__(self, produced: int, oom: str | None = None) -> None:
        what = OOM_MESSAGES[oom] if oom else "simulated failure"
        super().__init__(f"{what} after {produced} tokens")
        self.produced = produced
        self.oom = oom


@dataclass(frozen=True, slots=True)
class SimToken:
    """One generated token; `top` holds (id, logprob) of the most likely tokens when asked."""

    index: int
    token_id: int
    text: str
    logprob: float = 0.0
    top: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True)
class SimConfig:
    """How one simulator instance presents itself."""

    protocol: str
    model: str = "sim/tiny-llama"
    engine_version: str = "sim-1.0"
    slots: int = 4
    ctx: int = 4096
    divergent_salt: str | None = None  # set: this replica departs at a directive's diverge_at


@dataclass
class SimStats:
    """Counters the protocol modules expose in their engine's /metrics dialect."""

    requests: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    prompt_seconds: float = 0.0
    decode_seconds: float = 0.0
    running: int = 0
    waiting: int = 0
    failures: int = 0
    overloads: int = 0
    by_status: Counter[str] = field(default_factory=Counter)


HEALTH_STATES = ("ready", "loading", "dead")


class SimEngine:
    """Generates directive-controlled token streams with slot accounting.

    `state` is what the health endpoints report, in each engine's own words: "ready",
    "loading" (the model is still loading) or "dead" (the engine behind the HTTP server has
    failed, e.g. vLLM's engine core). Tests set it; generation is not affected.
    """

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.state = "ready"
        self.stats = SimStats()
        self._slots = asyncio.Semaphore(config.slots)
        self._overload_seen: Counter[str] = Counter()
        self.started_at = time.time()

    @property
    def model_digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.config.model.encode()).hexdigest()

    @staticmethod
    def tokenize(text: str) -> list[int]:
        """Stable pseudo-tokenization: one token per whitespace-separated word."""
        return [token_id(word, 0, 0) for word in text.split()]

    def plan(self, prompt: str, max_tokens: int | None) -> tuple[Directive, str, int]:
        """Parse the directive (DirectiveError if malformed); return it, the ordinary prompt
        and how many tokens to produce."""
        directive, ordinary = parse_directive(prompt)
        directive = directive or Directive()
        return directive, ordinary, directive.token_count(max_tokens)

    def check_overload(self, directive: Directive, ordinary: str) -> None:
        """Raise SimOverload when the directive says this request meets an overloaded engine."""
        if directive.overload is True:
            self.stats.overloads += 1
            raise SimOverload()
        if directive.overload and not isinstance(directive.overload, bool):
            self._overload_seen[ordinary] += 1
            if self._overload_seen[ordinary] <= directive.overload:
                self.stats.overloads += 1
                raise SimOverload()

    async def generate(
        self,
        prompt: str,
        seed: int | None,
        max_tokens: int | None,
        *,
        top_n: int = 0,
        variant: str = "",
    ) -> AsyncIterator[SimToken]:
        """Tokens for one request, each with its logprob and, for `top_n` > 0, the `top_n`
        most likely tokens; raises DirectiveError/SimOverload before the first token and
        SimFailure mid-stream. Closing the iterator (client gone, or a stop sequence the
        protocol module found) stops it at once. A non-empty `variant` (sampler settings
        that change the output, e.g. an active repetition penalty) gives other tokens,
        still a pure function of prompt, seed, index and variant."""
        directive, ordinary, count = self.plan(prompt, max_tokens)
        self.check_overload(directive, ordinary)
        seed = 0 if seed is None or seed < 0 else seed
        salt = self.config.divergent_salt or ""
        key = variant_key(ordinary, variant)
        self.stats.requests += 1
        self.stats.prompt_tokens += len(self.tokenize(ordinary)) or 1
        self.stats.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.stats.waiting -= 1
        self.stats.running += 1
        started = time.perf_counter()
        try:
            if directive.ttft_ms:
                await asyncio.sleep(directive.ttft_ms / 1000)
            self.stats.prompt_seconds += time.perf_counter() - started
            decode_start = time.perf_counter()
            fail_at = directive.failure_at()
            for i in range(count):
                if fail_at is not None and i >= fail_at:
                    self.stats.failures += 1
                    raise SimFailure(i, directive.oom)
                if i and directive.itl_ms:
                    await asyncio.sleep(directive.itl_ms / 1000)
                elif i and i % 64 == 0:
                    await asyncio.sleep(0)
                at = step(key, seed, i, salt=salt, diverge_at=directive.diverge_at, top_n=top_n)
                self.stats.generated_tokens += 1
                yield SimToken(i, at.token_id, token_text(at.token_id), at.logprob, at.top)
            if directive.hold_ms:
                await asyncio.sleep(directive.hold_ms / 1000)
            self.stats.decode_seconds += time.perf_counter() - decode_start
        finally:
            self.stats.running -= 1
            self._slots.release()

    @property
    def slots_busy(self) -> int:
        return self.stats.running
