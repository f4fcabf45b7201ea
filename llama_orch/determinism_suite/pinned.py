"""Pinned mode: the corpus through an orchestrator, each task pinned to one replica.

The black-box mode (ORCH-3045, OC-CORE-1030): the suite sees only OrchQueue v1. It picks a
replica set from `GET /v1/replicasets` with at least two ready replicas, submits every case
twice with `placement.replica_id` naming each replica, and compares the `token` events by
their `token_id` (by text where the target gives no ids). The target must define the corpus's
sampler profiles by name; the `metrics` event that reports the placement must name the pinned
replica, or the case is an error (the pin was not honoured, so nothing was compared).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from llama_orch.determinism_suite.corpus import Case, Corpus
from llama_orch.determinism_suite.expected import expected_settings
from llama_orch.determinism_suite.runner import (
    ReplicaInfo,
    RunResult,
    Stream,
    SuiteError,
    check_replica_set,
    compare,
    confirm_settings,
    new_order_seed,
    run_sides,
)
from llama_orch.harness.client import OrchClient
from llama_orch.harness.timeouts import DEFAULT

READY_WAIT_S = 240.0  # a launched engine loads its model before the set has ready replicas
BUSY_RETRIES = 20  # 429/503 answers retried (after their Retry-After) before giving up
NO_MARGIN = "OrchQueue v1 streams carry no token probabilities: no logprob margin"


def _ready(rs: dict[str, Any]) -> int:
    return sum(1 for r in rs.get("replicas") or [] if isinstance(r, dict) and r.get("ready"))


def pick_replica_set(sets: Any, wanted: str | None, engine: str | None) -> dict[str, Any]:
    """The set to compare: the one named, else the first; it must list two ready replicas."""
    if not isinstance(sets, list) or not all(isinstance(s, dict) for s in sets):
        raise SuiteError("GET /v1/replicasets did not answer a list of replica sets")
    if wanted is not None:
        found = [s for s in sets if s.get("id") == wanted]
        if not found:
            known = ", ".join(str(s.get("id")) for s in sets) or "none"
            raise SuiteError(f"no replica set {wanted!r} on the target (it lists: {known})")
        if _ready(found[0]) < 2:
            raise SuiteError(f"replica set {wanted!r} lists fewer than two ready replicas")
        return found[0]
    usable = [s for s in sets if (engine is None or s.get("engine") == engine) and _ready(s) >= 2]
    if not usable:
        raise SuiteError(
            "no replica set lists two ready replicas in `replicas[]` of GET /v1/replicasets"
            + (f" for engine {engine}" if engine else "")
            + "; the target must offer replica pinning (placement.replica_id)"
        )
    return usable[0]


def wait_for_replica_set(
    client: OrchClient, wanted: str | None, engine: str | None, wait_s: float
) -> dict[str, Any]:
    """Poll the replica sets until one qualifies or `wait_s` runs out (engines may load)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            resp = client.replica_sets()
        except httpx.HTTPError as exc:
            raise SuiteError(f"GET /v1/replicasets failed: {type(exc).__name__}: {exc}") from None
        if resp.status_code != 200:
            raise SuiteError(f"GET /v1/replicasets answered {resp.status_code}: {resp.text[:200]}")
        try:
            sets = resp.json()
        except ValueError:
            raise SuiteError("GET /v1/replicasets did not answer JSON") from None
        try:
            return pick_replica_set(sets, wanted, engine)
        except SuiteError:
            if time.monotonic() > deadline:
                raise
        time.sleep(1.0)


# Where a replica set keeps a fact the contract leaves to open objects (`Target.fact`).
Fact = Callable[[dict[str, Any], str], Any]


def slo_fact(rs: dict[str, Any], name: str) -> Any:
    """The reference's own layout: facts in `slo` (examples/reference.target.yaml)."""
    return (rs.get("slo") or {}).get(name)


def replica_infos(rs: dict[str, Any], fact: Fact = slo_fact) -> list[ReplicaInfo]:
    """Identity of each ready replica of a set, from what the set itself declares."""
    ready = [r for r in rs.get("replicas") or [] if r.get("ready")]
    return [
        ReplicaInfo(
            replica_id=r["id"],
            engine=str(rs.get("engine")),
            engine_version=str(fact(rs, "engine_version") or "unknown"),
            model_digest=str(fact(rs, "model_digest") or "unknown"),
            sampler_profile_version=str(fact(rs, "sampler_profile_version") or "unknown"),
            slots_total=r.get("slots_total"),
            # Pinned mode sees identity only as the set declares it, not per engine.
            where=f"pool {r.get('pool_id', '?')}, identity declared by replica set {rs.get('id')}",
        )
        for r in ready
    ]


def task_body(
    case: Case, rs: dict[str, Any], replica_id: str, ctx: int, fact: Fact = slo_fact
) -> dict[str, Any]:
    """The exact OrchQueue v1 task for one case on one replica (also the replay body)."""
    body: dict[str, Any] = {
        "task_id": str(uuid.uuid4()),
        "session_id": str(uuid.uuid4()),  # a fresh session: no affinity, no KV reuse
        "workload": "completion",
        "model_ref": fact(rs, "model_ref"),
        "engine": rs.get("engine"),
        "ctx": ctx,
        "priority": "interactive",
        "max_tokens": case.max_tokens,
        "deadline_ms": DEFAULT.deadline_ms,
        "seed": case.seed,
        "sampler_profile_version": case.profile,
        "prompt": case.prompt,
        "placement": {"replica_id": replica_id},
    }
    if case.stop:
        body["stop"] = list(case.stop)
    return body


def _retry_after_s(resp: httpx.Response) -> float:
    try:
        return min(5.0, max(0.05, float(resp.headers.get("Retry-After", "0.2"))))
    except ValueError:
        return 0.2


def stream_deadline_s(case_tokens: int) -> float:
    """Time allowed for one whole stream: generous (slow CPUs, long prompts), but finite."""
    return 120.0 + 5.0 * case_tokens


def collect_pinned(client: OrchClient, body: dict[str, Any]) -> Stream:
    """Submit one pinned task and read its stream (blocking; run in a worker thread)."""
    out = Stream(request={k: v for k, v in body.items() if k not in ("task_id", "session_id")})
    try:
        return _collect(client, body, out)
    except httpx.HTTPError as exc:
        out.invalid = f"transport: {type(exc).__name__}: {exc}"
        return out


def _collect(client: OrchClient, body: dict[str, Any], out: Stream) -> Stream:
    for _ in range(BUSY_RETRIES):
        resp = client.submit(body)
        if resp.status_code not in (429, 503):
            break
        time.sleep(_retry_after_s(resp))
        body = {**body, "task_id": str(uuid.uuid4())}
    if resp.status_code != 202:
        out.error = f"HTTP_{resp.status_code}: {_error_text(resp)}"
        return out
    _, events = client.stream(
        body["task_id"], within_s=stream_deadline_s(body["max_tokens"]), validate=False
    )
    pin = body["placement"]["replica_id"]
    placed = None
    for ev in events:
        data = ev.data if isinstance(ev.data, dict) else {}
        if ev.event == "token":
            out.ids.append(data.get("token_id"))
            out.texts.append(str(data.get("t", "")))
        elif ev.event == "metrics" and data.get("replica_id") is not None:
            placed = data["replica_id"]
            if placed != pin:
                out.invalid = f"pin ignored: the task ran on {placed}, not {pin}"
                return out
        elif ev.event == "end":
            out.finish_reason = str(data.get("finish_reason", "end"))
            out.tokens_out = data.get("tokens_out")
        elif ev.event == "error":
            out.error = f"{data.get('code')}: {data.get('message')}"
    if out.finish_reason is None and out.error is None:
        out.invalid = "the stream closed without an end or error event"
    elif placed is None:
        out.unconfirmed = "the target never said where the task ran (no metrics.replica_id)"
    return out


def _error_text(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:300]
    field = f" (field {body['field']})" if body.get("field") else ""
    return f"{body.get('code')}: {body.get('message')}{field}"


async def run_pinned(
    corpus: Corpus,
    client_factory: Any,
    *,
    target: str,
    replica_set: str | None = None,
    engine: str | None = None,
    order_seed: int | None = None,
    max_in_flight: int | None = None,
    ready_wait_s: float = READY_WAIT_S,
    progress: Callable[[str], None] | None = None,
    fact: Fact = slo_fact,
) -> RunResult:
    """Compare every case on two replicas of one set of the target; `client_factory()`
    gives a fresh OrchClient (one per side, so evidence stays per side). The settings the
    replicas are expected to run with follow from the engine of the set actually picked."""
    probe = client_factory()
    try:
        rs = await asyncio.to_thread(wait_for_replica_set, probe, replica_set, engine, ready_wait_s)
    finally:
        probe.close()
    infos = replica_infos(rs, fact)
    if len(infos) < 2:
        raise SuiteError(f"replica set {rs.get('id')} has fewer than two ready replicas")
    left, right = infos[0], infos[1]
    check_replica_set(left, right)
    if not fact(rs, "model_ref"):
        raise SuiteError(
            f"replica set {rs.get('id')} has no model_ref where the target description says "
            "(facts.model_ref or --model-ref)"
        )
    settings = expected_settings(left.engine)
    if settings:
        problems = confirm_settings(settings, left) + confirm_settings(settings, right)
    else:
        problems = [f"no determinism settings are known for engine {left.engine!r}"]
    if max_in_flight is None:
        max_in_flight = int(settings.get("max_in_flight_per_replica", 1))
    order_seed = new_order_seed(order_seed)
    clients = (client_factory(), client_factory())

    def side(client: OrchClient, info: ReplicaInfo):
        async def collect(case: Case) -> Stream:
            body = task_body(case, rs, info.replica_id, corpus.ctx_budget, fact)
            return await asyncio.to_thread(collect_pinned, client, body)

        return collect

    started = time.perf_counter()
    try:
        left_out, right_out, schedule = await run_sides(
            list(corpus.cases),
            side(clients[0], left),
            side(clients[1], right),
            max_in_flight,
            order_seed,
            progress,
        )
    finally:
        for c in clients:
            c.close()
    wall = time.perf_counter() - started
    results = [compare(c, left_out[c.id], right_out[c.id], not problems) for c in corpus.cases]
    return RunResult(
        mode="pinned",
        corpus=corpus,
        engine=str(rs.get("engine")),
        settings=settings,
        replicas=(left, right),
        settings_confirmed=not problems,
        settings_problems=problems,
        results=results,
        wall_s=wall,
        order_seed=order_seed,
        target=target,
        in_flight=schedule.in_flight,
        margin_note=NO_MARGIN,
    )
