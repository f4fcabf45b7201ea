"""What both determinism modes share: replica identity, streams, comparison and the
randomized two-sided schedule (OC-TEST-7001).

A mode (direct: through the reference adapters; pinned: through an orchestrator with replica
pinning) supplies one `collect(case)` coroutine per side. Each side works through its own
shuffled order with a bounded number of requests in flight, so hidden order or batch effects
show up as divergences. Streams are compared by engine token id (by text only where no id is
given, and the report says so). Before any request, the two replicas must agree on engine,
engine version, model digest and sampler profile version, else ReplicaSetMismatch.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from llama_orch.determinism_suite.corpus import Case, Corpus


class ReplicaSetMismatch(Exception):
    """The two replicas are not one replica set; nothing was compared (ORCH-3046)."""

    def __init__(self, field_name: str, left: str, right: str) -> None:
        super().__init__(f"replicas differ in {field_name}: {left!r} != {right!r}")
        self.field = field_name
        self.left = left
        self.right = right


class SuiteError(Exception):
    """The suite could not run against this target (nothing to compare); says why."""


@dataclass(frozen=True)
class ReplicaInfo:
    """Identity of one compared replica, as the engine or the orchestrator reports it."""

    replica_id: str
    engine: str
    engine_version: str
    model_digest: str
    sampler_profile_version: str
    slots_total: int | None = None
    where: str = ""  # engine URL (direct) or pool id (pinned)


IDENTITY = ("engine", "engine_version", "model_digest", "sampler_profile_version")


def check_replica_set(left: ReplicaInfo, right: ReplicaInfo) -> None:
    """Raise ReplicaSetMismatch unless both sides are one replica set."""
    for name in IDENTITY:
        a, b = getattr(left, name), getattr(right, name)
        if a != b:
            raise ReplicaSetMismatch(name, a, b)


@dataclass
class Stream:
    """What one replica returned for one case."""

    ids: list[int | None] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    tokens_out: int | None = None
    error: str | None = None  # "CODE: message" of an `error` event or adapter error
    request: dict[str, Any] = field(default_factory=dict)
    # Set when this run cannot count as a comparison at all (the pin was ignored, the
    # transport failed): the case is an `error`, whatever the other side did.
    invalid: str | None = None
    # Set when the run looks fine but something it relies on was not confirmed (the target
    # never said where the task ran): an equal case is then `unverified`.
    unconfirmed: str | None = None
    # Log-probabilities at each position (chosen token first, then alternatives), filled
    # only by a replay with top logprobs after a divergence.
    top: list[list[tuple[int | None, str, float]]] = field(default_factory=list)

    @property
    def error_code(self) -> str | None:
        """The error's code alone: messages may carry per-request details."""
        return None if self.error is None else self.error.split(":", 1)[0]

    def keys(self) -> list[tuple[int | None, str]]:
        """Comparison keys: (token id, piece text). The text counts too: an adapter may join
        several tokens into one piece (text held back as a possible stop prefix) that carries
        only its last token's id, so equal ids alone could hide an earlier difference."""
        return list(zip(self.ids, self.texts, strict=True))


@dataclass
class CaseResult:
    """Verdict of one case: `equal`, `diverged`, `error` (no valid comparison: both sides
    failed alike, a pin was ignored, the transport failed) or `unverified` (equal, but the
    settings or the placement could not be confirmed); `note` says why."""

    case: Case
    status: str
    left: Stream
    right: Stream
    first_diff: int | None = None
    compared_by: str = "token_id"
    margin: dict[str, Any] | None = None  # logprob margin at the split, where known
    note: str | None = None  # why a case is `error` or `unverified`


@dataclass
class RunResult:
    """Everything the report needs: verdicts, identities, settings and timing."""

    mode: str  # "direct" or "pinned"
    corpus: Corpus
    engine: str
    settings: dict[str, Any]
    replicas: tuple[ReplicaInfo, ReplicaInfo]
    settings_confirmed: bool
    settings_problems: list[str]
    results: list[CaseResult]
    wall_s: float
    order_seed: int
    target: str | None = None  # the orchestrator URL in pinned mode
    in_flight: tuple[int, int] = (1, 1)  # requests in flight per side
    margin_note: str = ""


def confirm_settings(settings: dict[str, Any], replica: ReplicaInfo) -> list[str]:
    """Problems with the expected settings on one replica (empty: confirmed)."""
    problems = []
    slots = (settings.get("expect") or {}).get("slots_total")
    if slots is not None and replica.slots_total != slots:
        problems.append(
            f"{replica.replica_id}: slots_total is {replica.slots_total}, expected {slots}"
        )
    return problems


def compare(case: Case, left: Stream, right: Stream, confirmed: bool) -> CaseResult:
    """Token-by-token comparison; the first index where the streams part, if any."""
    by = "token_id" if all(i is not None for i in left.ids + right.ids) else "text"
    invalid = left.invalid or right.invalid
    if invalid is not None:
        return CaseResult(case, "error", left, right, None, by, note=invalid)
    lk, rk = left.keys(), right.keys()
    first = next((i for i, (a, b) in enumerate(zip(lk, rk, strict=False)) if a != b), None)
    if first is None and len(lk) != len(rk):
        first = min(len(lk), len(rk))
    same_end = (left.finish_reason, left.tokens_out) == (right.finish_reason, right.tokens_out)
    if first is None and (left.error_code != right.error_code or not same_end):
        first = len(lk)
    if first is not None:
        return CaseResult(case, "diverged", left, right, first, by)
    if left.error is not None:  # both failed alike: nothing was shown to be equal
        return CaseResult(case, "error", left, right, None, by, note=left.error)
    unconfirmed = left.unconfirmed or right.unconfirmed
    if not confirmed or unconfirmed:
        note = unconfirmed or "the determinism settings were not confirmed"
        return CaseResult(case, "unverified", left, right, None, by, note=note)
    return CaseResult(case, "equal", left, right, None, by)


Collector = Callable[[Case], Awaitable[Stream]]


JITTER_MS = 10  # random pause before each request: varies how the two sides interleave


@dataclass(frozen=True)
class Schedule:
    """How one run was scheduled, for the report (and a rerun with the same order seed)."""

    order_seed: int
    in_flight: tuple[int, int]  # per side, drawn from 1..max_in_flight


async def _side(
    collect: Collector,
    cases: list[Case],
    in_flight: int,
    rng: random.Random,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Stream]:
    order = list(cases)
    rng.shuffle(order)
    pauses = {c.id: rng.uniform(0, JITTER_MS) / 1000 for c in order}
    gate = asyncio.Semaphore(in_flight)
    out: dict[str, Stream] = {}

    async def one(case: Case) -> None:
        async with gate:
            await asyncio.sleep(pauses[case.id])
            out[case.id] = await collect(case)
        if progress is not None:
            progress(case.id)

    await asyncio.gather(*(one(c) for c in order))
    return out


async def run_sides(
    cases: list[Case],
    left: Collector,
    right: Collector,
    max_in_flight: int,
    order_seed: int,
    progress: Callable[[str], None] | None = None,
) -> tuple[dict[str, Stream], dict[str, Stream], Schedule]:
    """Both sides at once, each in its own shuffled order and at its own concurrency (drawn
    from 1..max_in_flight), all derived from `order_seed` so a run can be repeated."""
    rng = random.Random(order_seed)
    left_rng, right_rng = random.Random(rng.random()), random.Random(rng.random())
    levels = (left_rng.randint(1, max_in_flight), right_rng.randint(1, max_in_flight))
    left_out, right_out = await asyncio.gather(
        _side(left, cases, levels[0], left_rng, progress),
        _side(right, cases, levels[1], right_rng, progress),
    )
    return left_out, right_out, Schedule(order_seed, levels)


def new_order_seed(order_seed: int | None) -> int:
    return random.SystemRandom().randrange(2**32) if order_seed is None else order_seed


def logprob_margin(left: Stream, right: Stream, at: int) -> dict[str, Any] | None:
    """How close each side's choice at the split was: chosen logprob minus the best other.

    A small margin means the two replicas stood near a tie, where tiny numeric differences
    decide; a large one points at a real difference in inputs or settings.
    """
    sides = {}
    for name, stream in (("left", left), ("right", right)):
        if at >= len(stream.top) or not stream.top[at]:
            return None
        chosen, *others = stream.top[at]
        best_other = max((o[2] for o in others), default=None)
        sides[name] = {
            "token_id": chosen[0],
            "logprob": round(chosen[2], 6),
            "runner_up_logprob": None if best_other is None else round(best_other, 6),
            "margin": None if best_other is None else round(chosen[2] - best_other, 6),
        }
    return sides
