"""Direct mode: the corpus on two engine replicas through the reference adapters.

The white-box mode, and the one part of the suite that imports the reference implementation:
it drives engines through the reference adapters with the settings the pool manager would
apply. It needs no orchestrator, only two engines of one replica set, and it can ask the
engine for token probabilities, so a divergent case is replayed once with top logprobs to
report how close the split decision was.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llama_orch.determinism_suite.corpus import Case, Corpus
from llama_orch.determinism_suite.runner import (
    CaseResult,
    ReplicaInfo,
    RunResult,
    Stream,
    check_replica_set,
    compare,
    confirm_settings,
    logprob_margin,
    new_order_seed,
    run_sides,
)
from llama_orch.reference_impl.adapters.base import (
    AdapterError,
    CompletionRequest,
    EngineAdapter,
    SamplerParams,
)
from llama_orch.reference_impl.pool.determinism import load_settings

MARGIN_TOP = 2  # alternatives asked for when a divergent case is replayed


@dataclass(frozen=True)
class Replica:
    """One side of the comparison: an adapter and the sampler profile version it runs."""

    adapter: EngineAdapter
    sampler_profile_version: str


def request_json(adapter: EngineAdapter, req: Any) -> dict[str, Any]:
    """The exact engine request body where the adapter can show it, else the task fields."""
    body = getattr(adapter, "completion_body", None)
    if callable(body):
        return body(req)
    return {
        "prompt": req.prompt,
        "max_tokens": req.max_tokens,
        "seed": req.seed,
        "sampler": dataclasses.asdict(req.sampler),
        "sampler_profile_version": req.sampler_profile_version,
        "stop": list(req.stop),
    }


def completion_request(
    case: Case, request_id: str, sampler_profile_version: str, top_logprobs: int = 0
) -> CompletionRequest:
    """The adapter request for a case, identical on every replica."""
    return CompletionRequest(
        request_id=request_id,
        prompt=case.prompt,
        max_tokens=case.max_tokens,
        seed=case.seed,
        sampler=SamplerParams(**dataclasses.asdict(case.sampler)),
        sampler_profile_version=sampler_profile_version,
        stop=case.stop,
        top_logprobs=top_logprobs,
    )


async def collect(replica: Replica, case: Case, tag: str, top_logprobs: int = 0) -> Stream:
    """Run one case on one replica and keep ids, texts, end record or error."""
    req = completion_request(
        case, f"det-{tag}-{case.id}", replica.sampler_profile_version, top_logprobs
    )
    out = Stream(request=request_json(replica.adapter, req))
    try:
        async with replica.adapter.stream(req) as stream:
            async for event in stream:
                out.ids.append(event.token_id)
                out.texts.append(event.text)
                if top_logprobs:
                    chosen = (event.token_id, event.text, event.logprob)
                    alts = [(a.token_id, a.text, a.logprob) for a in event.top]
                    others = [a for a in alts if a[0] != event.token_id or a[1] != event.text]
                    out.top.append([chosen, *others] if event.logprob is not None else [])
            if stream.end is not None:
                out.finish_reason, out.tokens_out = stream.end.finish_reason, stream.end.tokens_out
    except AdapterError as exc:
        out.error = f"{exc.code}: {exc.message}"
    return out


def engine_adapter(
    engine: str, replica_id: str, url: str, *, model_ref: str, ctx: int, model_name: str
) -> Any:
    """The reference adapter for one replica, with the engine's determinism settings."""
    settings = load_settings(engine)
    if engine == "llamacpp":
        from llama_orch.reference_impl.adapters.llamacpp import LlamaCppAdapter

        cache = bool(settings.request.get("cache_prompt", False))
        return LlamaCppAdapter(
            replica_id, url, model_ref=model_ref, ctx_max=ctx, cache_prompt=cache
        )
    if engine == "vllm":
        from llama_orch.reference_impl.adapters.vllm import VllmAdapter

        return VllmAdapter(replica_id, url, model_ref=model_ref, ctx_max=ctx)
    if engine == "tgi":
        from llama_orch.reference_impl.adapters.tgi import TgiAdapter

        return TgiAdapter(replica_id, url, model_ref=model_ref, ctx_max=ctx)
    from llama_orch.reference_impl.adapters.triton import TritonAdapter

    return TritonAdapter(replica_id, url, model_ref=model_ref, ctx_max=ctx, model_name=model_name)


async def identity(replica: Replica) -> ReplicaInfo:
    props = await replica.adapter.props()
    return ReplicaInfo(
        replica_id=replica.adapter.replica_id,
        engine=replica.adapter.engine,
        engine_version=props.engine_version,
        model_digest=props.model_digest,
        sampler_profile_version=replica.sampler_profile_version,
        slots_total=props.slots_total,
        where=str(getattr(replica.adapter, "base_url", "")),
    )


async def _margins(left: Replica, right: Replica, results: list[CaseResult]) -> str:
    """Replay divergent cases with top logprobs; returns a note when none could be had."""
    split = [r for r in results if r.status == "diverged" and r.first_diff is not None]
    found = 0
    for r in split:
        a = await collect(left, r.case, "a-margin", MARGIN_TOP)
        b = await collect(right, r.case, "b-margin", MARGIN_TOP)
        r.margin = logprob_margin(a, b, r.first_diff or 0)
        found += r.margin is not None
    if split and not found:
        return "the engine gave no token probabilities: no logprob margin"
    return ""


async def run_direct(
    corpus: Corpus,
    left: Replica,
    right: Replica,
    *,
    engine: str | None = None,
    order_seed: int | None = None,
    max_in_flight: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> RunResult:
    """Compare every corpus case on two replicas; ReplicaSetMismatch before any request."""
    engine = engine or left.adapter.engine
    settings = load_settings(engine).as_record()
    li, ri = await identity(left), await identity(right)
    check_replica_set(li, ri)
    problems = confirm_settings(settings, li) + confirm_settings(settings, ri)
    order_seed = new_order_seed(order_seed)
    in_flight = max_in_flight or int(settings["max_in_flight_per_replica"])
    cases = list(corpus.cases)
    started = time.perf_counter()
    left_out, right_out, schedule = await run_sides(
        cases,
        lambda c: collect(left, c, "a"),
        lambda c: collect(right, c, "b"),
        in_flight,
        order_seed,
        progress,
    )
    wall = time.perf_counter() - started
    results = [compare(c, left_out[c.id], right_out[c.id], not problems) for c in cases]
    note = await _margins(left, right, results)
    return RunResult(
        mode="direct",
        corpus=corpus,
        engine=engine,
        settings=settings,
        replicas=(li, ri),
        settings_confirmed=not problems,
        settings_problems=problems,
        results=results,
        wall_s=wall,
        order_seed=order_seed,
        in_flight=schedule.in_flight,
        margin_note=note,
    )
