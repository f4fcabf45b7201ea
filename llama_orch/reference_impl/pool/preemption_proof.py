"""Proof of `interruptible_decode`: may hard preemption use this replica? (ORCH-3086, 3088)

Hard preemption interrupts a running decode and resumes it later; that is only safe where the
engine really hands back a state that continues the output. So before a pool in preemption
mode `hard` uses a replica, its adapter must pass this probe on the live engine:

1. a greedy decode of `tokens` tokens, uninterrupted: the reference output;
2. the same request, interrupted (`adapter.interrupt`) after `cut` tokens;
3. that request resumed from the returned state: the interrupted part plus the resumed part
   must equal the reference, piece text and token ids alike.

An adapter without `interrupt`, an engine that refuses (no state), a resumed output that
differs, an error or a probe past its time limit: not proven, and the pool keeps running with
soft preemption only, logging why. The probe runs once per replica start, after the start-up
self-test, and only for pools configured `hard`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, replace
from typing import Any

from llama_orch.reference_impl.adapters.base import (
    AdapterError,
    CompletionRequest,
    Interruptible,
    ResumeState,
    SamplerParams,
)

log = logging.getLogger("llama_orch.reference_impl.pool")

PROMPT = "The capital of France is"
GREEDY = SamplerParams(temperature=0.0, top_k=1, top_p=1.0, min_p=0.0)


@dataclass(frozen=True)
class Proof:
    """Whether a replica proved interruptible decode, and why not."""

    replica_id: str
    proven: bool
    reason: str = ""


Piece = tuple[str, int | None]


async def _collect(adapter: Any, req: CompletionRequest, stop_after: int | None = None):
    """Pieces of a stream; with `stop_after`, interrupt after that many: (pieces, state)."""
    pieces: list[Piece] = []
    state: ResumeState | None = None
    async with adapter.stream(req) as stream:
        async for event in stream:
            pieces.append((event.text, event.token_id))
            if stop_after is not None and len(pieces) == stop_after and state is None:
                state = adapter.interrupt(req.request_id)
                if state is None:
                    break
    return pieces, state


async def _probe(adapter: Any, tokens: int, cut: int) -> Proof:
    rid = adapter.replica_id
    if not isinstance(adapter, Interruptible):
        return Proof(rid, False, "the adapter cannot interrupt a decode")
    base = CompletionRequest(f"proof-{uuid.uuid4().hex[:8]}", PROMPT, tokens, 0, GREEDY, "proof")
    reference, _ = await _collect(adapter, base)
    if len(reference) <= cut:
        return Proof(rid, False, f"the probe decode gave {len(reference)} pieces, need > {cut}")
    cut_req = replace(base, request_id=f"proof-{uuid.uuid4().hex[:8]}")
    head, state = await _collect(adapter, cut_req, stop_after=cut)
    if state is None:
        return Proof(rid, False, "the engine refused to interrupt the decode")
    if head[: state.tokens_done] != reference[: state.tokens_done]:
        return Proof(rid, False, "the interrupted decode differs from the reference")
    resumed_req = replace(cut_req, request_id=f"proof-{uuid.uuid4().hex[:8]}", resume=state)
    tail, _ = await _collect(adapter, resumed_req)
    joined = head[: state.tokens_done] + tail
    if "".join(t for t, _ in joined) != "".join(t for t, _ in reference):
        return Proof(rid, False, "the resumed decode does not continue the reference output")
    if [i for _, i in joined] != [i for _, i in reference]:
        return Proof(rid, False, "the resumed token ids differ from the reference")
    return Proof(rid, True)


async def prove_all(adapters: list[Any], mode_hard: bool) -> list[Proof | None]:
    """Proofs of a pool's new adapters, in order; None each when the pool is not `hard`."""
    if not mode_hard:
        return [None] * len(adapters)
    return [await prove_interruptible(a) for a in adapters]


async def prove_interruptible(
    adapter: Any, *, tokens: int = 12, cut: int = 4, timeout_s: float = 20.0
) -> Proof:
    """Run the probe on one replica; never raises for an engine failure (not proven)."""
    rid = getattr(adapter, "replica_id", "?")
    try:
        proof = await asyncio.wait_for(_probe(adapter, tokens, cut), timeout_s)
    except TimeoutError:
        proof = Proof(rid, False, f"the probe took longer than {timeout_s:g} s")
    except AdapterError as exc:
        proof = Proof(rid, False, f"the probe failed: {exc.message}")
    log.log(
        logging.INFO if proof.proven else logging.WARNING,
        "interruptible decode proven" if proof.proven else "hard preemption refused",
        extra={
            "event": "preemption_proof",
            "replica_id": rid,
            "engine_capability": "interruptible_decode",
            "proven": proof.proven,
            "reason": proof.reason or None,
        },
    )
    return proof
