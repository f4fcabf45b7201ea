"""Direct-mode determinism runner: one corpus, two replicas of one replica set (OC-TEST-7001).

Both replicas get every case with the case's fixed seed. Each side works through its own
shuffled order with a bounded number of requests in flight, so hidden order or batch effects
show up as divergences. Streams are compared by engine token id (text only where an engine
gives no ids). Before any request, the two replicas must agree on engine version, model digest
and sampler profile version; otherwise the run is refused with ReplicaSetMismatch.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from determinism_suite.corpus import Case, Corpus
from reference_impl.adapters.base import AdapterError, AdapterProps, EngineAdapter, StreamEnd

SETTINGS_DIR = Path(__file__).with_name("settings")


class ReplicaSetMismatch(Exception):
    """The two replicas are not one replica set; nothing was compared (ORCH-3046)."""

    def __init__(self, field_name: str, left: str, right: str) -> None:
        super().__init__(f"replicas differ in {field_name}: {left!r} != {right!r}")
        self.field = field_name
        self.left = left
        self.right = right


def load_settings(engine: str) -> dict[str, Any]:
    """The declarative determinism settings of one engine (settings/<engine>.yaml)."""
    path = SETTINGS_DIR / f"{engine}.yaml"
    if not path.exists():
        raise ValueError(f"no determinism settings for engine {engine!r}")
    with path.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict) or data.get("engine") != engine:
        raise ValueError(f"{path.name}: `engine` must be {engine!r}")
    return data


@dataclass(frozen=True)
class Replica:
    """One side of the comparison: an adapter and the sampler profile version it runs."""

    adapter: EngineAdapter
    sampler_profile_version: str


@dataclass
class Stream:
    """What one replica returned for one case."""

    ids: list[int | None] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    end: StreamEnd | None = None
    error: str | None = None
    request: dict[str, Any] = field(default_factory=dict)

    def keys(self) -> list[int | str]:
        """Comparison keys: token ids, or the piece text where the engine gave no id."""
        return [i if i is not None else t for i, t in zip(self.ids, self.texts, strict=True)]


@dataclass
class CaseResult:
    """Verdict of one case: `equal`, `diverged`, `error` (both sides failed alike) or
    `unverified` (equal, but the determinism settings could not be confirmed)."""

    case: Case
    status: str
    left: Stream
    right: Stream
    first_diff: int | None = None
    compared_by: str = "token_id"


@dataclass
class RunResult:
    """Everything the report needs: verdicts, identities, settings and timing."""

    corpus: Corpus
    engine: str
    settings: dict[str, Any]
    props: tuple[AdapterProps, AdapterProps]
    replicas: tuple[Replica, Replica]
    settings_confirmed: bool
    settings_problems: list[str]
    results: list[CaseResult]
    wall_s: float
    order_seed: int


def check_replica_set(left: Replica, right: Replica, lp: AdapterProps, rp: AdapterProps) -> None:
    """Raise ReplicaSetMismatch unless both sides are one replica set."""
    if left.adapter.engine != right.adapter.engine:
        raise ReplicaSetMismatch("engine", left.adapter.engine, right.adapter.engine)
    if lp.engine_version != rp.engine_version:
        raise ReplicaSetMismatch("engine_version", lp.engine_version, rp.engine_version)
    if lp.model_digest != rp.model_digest:
        raise ReplicaSetMismatch("model_digest", lp.model_digest, rp.model_digest)
    if left.sampler_profile_version != right.sampler_profile_version:
        raise ReplicaSetMismatch(
            "sampler_profile_version", left.sampler_profile_version, right.sampler_profile_version
        )


def confirm_settings(settings: dict[str, Any], props: AdapterProps) -> list[str]:
    """Problems with the expected settings on one replica (empty: confirmed)."""
    problems = []
    expected = settings.get("expect") or {}
    slots = expected.get("slots_total")
    if slots is not None and props.slots_total != slots:
        problems.append(f"slots_total is {props.slots_total}, expected {slots}")
    return problems


def request_json(adapter: EngineAdapter, req: Any) -> dict[str, Any]:
    """The exact engine request body where the adapter can show it, else the task fields."""
    body = getattr(adapter, "completion_body", None)
    if callable(body):
        return body(req)
    return {
        "prompt": req.prompt,
        "max_tokens": req.max_tokens,
        "seed": req.seed,
        "sampler": vars(req.sampler) if hasattr(req.sampler, "__dict__") else str(req.sampler),
        "sampler_profile_version": req.sampler_profile_version,
    }


async def collect(replica: Replica, case: Case, tag: str) -> Stream:
    """Run one case on one replica and keep ids, texts, end record or error."""
    req = case.request(f"det-{tag}-{case.id}", replica.sampler_profile_version)
    out = Stream(request=request_json(replica.adapter, req))
    try:
        async with replica.adapter.stream(req) as stream:
            async for event in stream:
                out.ids.append(event.token_id)
                out.texts.append(event.text)
            out.end = stream.end
    except AdapterError as exc:
        out.error = f"{exc.code}: {exc.message}"
    return out


def compare(case: Case, left: Stream, right: Stream, confirmed: bool) -> CaseResult:
    """Token-by-token comparison; the first index where the streams part, if any."""
    lk, rk = left.keys(), right.keys()
    by = "token_id" if all(i is not None for i in left.ids + right.ids) else "text"
    first = next((i for i, (a, b) in enumerate(zip(lk, rk, strict=False)) if a != b), None)
    if first is None and len(lk) != len(rk):
        first = min(len(lk), len(rk))
    same_end = (left.end is None) == (right.end is None) and (
        left.end is None
        or (left.end.finish_reason, left.end.tokens_out)
        == (right.end.finish_reason, right.end.tokens_out)
    )
    if first is None and (left.error != right.error or not same_end):
        first = len(lk)
    if first is not None:
        status = "diverged"
    elif left.error is not None:
        status = "error"  # both failed alike: nothing was shown to be equal
    else:
        status = "equal" if confirmed else "unverified"
    return CaseResult(case, status, left, right, first, by)


async def _side(
    replica: Replica, cases: list[Case], tag: str, in_flight: int, rng: random.Random
) -> dict[str, Stream]:
    order = list(cases)
    rng.shuffle(order)
    gate = asyncio.Semaphore(in_flight)
    out: dict[str, Stream] = {}

    async def one(case: Case) -> None:
        async with gate:
            out[case.id] = await collect(replica, case, tag)

    await asyncio.gather(*(one(c) for c in order))
    return out


async def run_direct(
    corpus: Corpus,
    left: Replica,
    right: Replica,
    *,
    engine: str | None = None,
    order_seed: int | None = None,
    max_in_flight: int | None = None,
) -> RunResult:
    """Compare every corpus case on two replicas; ReplicaSetMismatch before any request."""
    engine = engine or left.adapter.engine
    settings = load_settings(engine)
    lp, rp = await left.adapter.props(), await right.adapter.props()
    check_replica_set(left, right, lp, rp)
    problems = [f"left: {p}" for p in confirm_settings(settings, lp)]
    problems += [f"right: {p}" for p in confirm_settings(settings, rp)]
    order_seed = random.SystemRandom().randrange(2**32) if order_seed is None else order_seed
    rng = random.Random(order_seed)
    in_flight = max_in_flight or int(settings.get("max_in_flight_per_replica", 1))
    cases = list(corpus.cases)
    started = time.perf_counter()
    left_out, right_out = await asyncio.gather(
        _side(left, cases, "a", in_flight, random.Random(rng.random())),
        _side(right, cases, "b", in_flight, random.Random(rng.random())),
    )
    wall = time.perf_counter() - started
    results = [compare(c, left_out[c.id], right_out[c.id], not problems) for c in cases]
    return RunResult(
        corpus,
        engine,
        settings,
        (lp, rp),
        (left, right),
        not problems,
        problems,
        results,
        wall,
        order_seed,
    )
