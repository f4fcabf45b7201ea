"""Read models: what the HTTP layer shows about pools, replica sets, capabilities and tasks.

Each is built here from the pool manager, the scheduler's snapshot and the config, so api/
only names the JSON fields: it computes no id, total or feature, and never reads the pool
manager, the scheduler or the task records itself. Lists come in a stable order (replica
sets by their key, engines in config order) so the same state always reads the same.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from llama_orch.reference_impl import core
from llama_orch.reference_impl.config import OrchestratorConfig, PoolConfig
from llama_orch.reference_impl.pool.manager import PoolManager
from llama_orch.reference_impl.pool.state import PoolState
from llama_orch.reference_impl.service.build import budgets_configured
from llama_orch.reference_impl.service.records import TaskRecord
from llama_orch.reference_impl.service.streams import TaskEvents

# Workloads the reference serves; a task asking for another is refused (400).
SERVED_WORKLOADS = ("completion",)


@dataclass(frozen=True)
class PoolHealth:
    """A pool's lifecycle (pool manager) with its queue and slots (scheduler)."""

    live: bool
    ready: bool
    draining: bool
    last_error: str | None
    preload_state: str
    queue_depth: int
    running: int
    slots_total: int
    slots_free: int
    model_ref: str
    engine_version: str
    model_digest: str
    restarts: int
    breaker_open: bool
    # Start-up self-test (ORCH-3049) of the serving model, item -> pass/fail/skip, None before
    # one; and a later attempt that did not take over (failed reload), else None.
    self_test: dict[str, str] | None
    self_test_last_attempt: dict[str, str] | None


@dataclass(frozen=True)
class Replica:
    """A replica a task may pin with `placement.replica_id`."""

    replica_id: str
    pool_id: str
    ready: bool  # the replica is Ready and its pool takes work (a draining pool does not)
    slots_total: int


@dataclass(frozen=True)
class ReplicaSet:
    """Pools agreeing on engine, model, quant, ctx, engine and sampler versions (ORCH-3007)."""

    set_id: str
    engine: str
    load: float  # busy share of the set's usable slots, 0.0 with none
    slots_total: int
    slots_free: int
    replicas: tuple[Replica, ...]
    pools: tuple[str, ...]
    model_ref: str
    engine_version: str
    model_digest: str
    sampler_profile_version: str
    queue_depth: int


@dataclass(frozen=True)
class EngineCapabilities:
    """What the pools of one engine family offer (ORCH-3095); features are or-ed over pools."""

    engine: str
    ctx_max: int
    supported_workloads: tuple[str, ...]
    queue_capacity: dict[str, int]  # pool id -> its queue capacity (the rate limit we apply)
    features: dict[str, bool]


@dataclass(frozen=True)
class TaskView:
    """A task as its owner may see it: its id and its event log (to replay and follow)."""

    task_id: str
    events: TaskEvents
    session_id: str = ""


class NoSuchTask(LookupError):
    """No task with this id (never admitted, or reaped after its retention)."""


class NotYourTask(PermissionError):
    """The task exists but belongs to another tenant."""


def replica_set_id(key: tuple[str, ...]) -> str:
    """Stable id of a replica set: a digest of the key its pools agree on."""
    return "rs-" + hashlib.sha256("\x00".join(key).encode()).hexdigest()[:12]


def pool_health(pools: PoolManager, snapshot: core.Snapshot, pool_id: str) -> PoolHealth | None:
    pool = pools.pools.get(pool_id)
    if pool is None:
        return None
    view = snapshot.pools[pool_id]
    return PoolHealth(
        live=pool.live,
        ready=pool.ready,
        draining=pool.draining,
        last_error=pool.last_error,
        preload_state=pool.preload_state.value,
        queue_depth=sum(view.queue_depth.values()),
        running=view.running,
        slots_total=view.slots_total,
        slots_free=view.slots_free,
        model_ref=pool.model_ref,
        engine_version=pool.engine_version,
        model_digest=pool.model_digest,
        restarts=pool.restarts,
        breaker_open=pool.breaker_open,
        self_test=pools.self_test(pool_id),
        self_test_last_attempt=pools.self_test_last_attempt(pool_id),
    )


def replica_sets(pools: Iterable[PoolState], snapshot: core.Snapshot) -> list[ReplicaSet]:
    groups: dict[tuple[str, ...], list[PoolState]] = {}
    for pool in pools:
        groups.setdefault(pool.replica_set_key, []).append(pool)
    out = []
    for key, members in sorted(groups.items()):
        views = [snapshot.pools[p.pool_id] for p in members]
        total = sum(v.slots_total for v in views)
        free = sum(v.slots_free for v in views)
        out.append(
            ReplicaSet(
                set_id=replica_set_id(key),
                engine=key[0],
                load=round((total - free) / total, 4) if total else 0.0,
                slots_total=total,
                slots_free=free,
                replicas=tuple(
                    Replica(r.replica_id, p.pool_id, r.ready and p.ready, r.slots_total)
                    for p in members
                    for r in p.replicas
                ),
                pools=tuple(p.pool_id for p in members),
                model_ref=key[1],
                engine_version=key[4],
                model_digest=members[0].model_digest,
                sampler_profile_version=key[5],
                queue_depth=sum(sum(v.queue_depth.values()) for v in views),
            )
        )
    return out


def capabilities(
    config: OrchestratorConfig, pools: PoolManager, policy_host: bool = False
) -> list[EngineCapabilities]:
    """One entry per engine family, in the order the config first names it."""
    engines: dict[str, dict[str, Any]] = {}
    for pc in config.pools:
        entry = engines.setdefault(
            pc.engine.value,
            {
                "ctx_max": 0,
                "queue_capacity": {},
                "features": {
                    "sse_resume": True,
                    "sessions": True,
                    "cpu_inference": False,
                    "preemption_soft": False,
                    "preemption_hard": False,
                    "deadlines": False,
                    "replica_pinning": True,
                    "stop_sequences": True,
                    "catalog": True,
                    "lifecycle": True,
                    "artifacts": config.artifacts.enabled,
                    "budgets": budgets_configured(config),
                    "policy_host": policy_host,  # specs/50
                    "session_affinity": True,
                    "wfq": False,
                    "quotas": False,
                    "rate_limits": False,
                    "slo_breaker": False,
                },
            },
        )
        pool = pools.pools[pc.id]
        entry["ctx_max"] = max(entry["ctx_max"], pool.ctx_max)
        entry["queue_capacity"][pc.id] = pc.queue.capacity
        features = entry["features"]
        features["cpu_inference"] |= pc.allow_cpu_inference
        features.update({k: features[k] or v for k, v in scheduling_features(pc, pool).items()})
    return [
        EngineCapabilities(
            engine, e["ctx_max"], SERVED_WORKLOADS, e["queue_capacity"], e["features"]
        )
        for engine, e in engines.items()
    ]


def scheduling_features(pc: PoolConfig, pool: PoolState) -> dict[str, bool]:
    """The optional scheduling features one pool offers (or-ed over an engine's pools).

    Hard preemption counts only where every replica proved interruptible decode; a pool set
    to `hard` whose engine could not prove it offers soft preemption only (ORCH-3088). Quotas
    and rate limits are claimed where some tenant has one configured, so that a check can
    find them.
    """
    mode = pc.preemption.mode
    tenants = pc.admission.fairness.tenants
    proven = bool(pool.replicas) and all(h.interruptible for h in pool.replicas)
    return {
        "preemption_soft": mode is not core.PreemptionMode.DISABLED,
        "preemption_hard": mode is core.PreemptionMode.HARD and proven,
        "deadlines": pc.deadlines.reject_infeasible,
        "wfq": pc.admission.fairness.kind.value == "wfq",
        "quotas": any(t.max_concurrent is not None or t.rps is not None for t in tenants),
        "rate_limits": any(t.rps is not None for t in tenants),
        "slo_breaker": pc.slo_breaker is not None,
    }


def task_view(records: dict[str, TaskRecord], task_id: str, tenant: str | None) -> TaskView:
    """The task if `tenant` may see it (None: an operator, who sees every task)."""
    rec = records.get(task_id)
    if rec is None:
        raise NoSuchTask(task_id)
    if tenant is not None and tenant != rec.task.tenant:
        raise NotYourTask(task_id)
    return TaskView(rec.task_id, rec.stream, rec.task.session_id)


def planning(
    scheduler: core.Scheduler, rec: TaskRecord, on_time: float | None, now: int
) -> dict[str, Any]:
    """Planning hints for SSE `metrics` events (OC-CTRL-2023, ORCH-3100, ORCH-3099)."""
    out: dict[str, Any] = {"queue_depth": scheduler.queue_depth(rec.pool_id)}
    estimate = scheduler.estimate(rec.task_id, now)
    if estimate is not None:
        out["queue_position"], out["predicted_start_ms"], estimated = estimate
        on_time = estimated if on_time is None else on_time
    if on_time is not None:
        out["on_time_probability"] = round(on_time, 4)
    view = scheduler.session(rec.task.session_id, now)
    if view is not None:
        out["kv_warmth"] = view.kv_warmth
        out.update(budget_fields(view))
    return out


def budget_fields(view: core.SessionView) -> dict[str, Any]:
    """The remaining budgets of a session, by their SSE / SessionInfo field names."""
    out: dict[str, Any] = {}
    if view.tokens_budget_remaining is not None:
        out["tokens_budget_remaining"] = view.tokens_budget_remaining
    if view.time_budget_remaining_ms is not None:
        out["time_budget_remaining_ms"] = view.time_budget_remaining_ms
    if view.cost_budget_remaining is not None:
        out["cost_budget_remaining"] = view.cost_budget_remaining
    return out


BUDGET_HEADERS = {
    "tokens_budget_remaining": "X-Budget-Tokens-Remaining",
    "time_budget_remaining_ms": "X-Budget-Time-Remaining-Ms",
    "cost_budget_remaining": "X-Budget-Cost-Remaining",
}


def budget_headers(view: core.SessionView | None) -> dict[str, str]:
    """The budget response headers of a session (specs/20 section 10); none without budgets."""
    if view is None:
        return {}
    return {BUDGET_HEADERS[k]: str(v) for k, v in budget_fields(view).items()}
