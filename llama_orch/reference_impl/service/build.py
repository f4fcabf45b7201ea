"""Translate the typed config into the core's plain data (the core never sees pydantic)."""

from __future__ import annotations

from collections.abc import Mapping

from llama_orch.reference_impl import core
from llama_orch.reference_impl.config import (
    OrchestratorConfig,
    PoolConfig,
    SessionBudgetsConfig,
    SloBreakerConfig,
)
from llama_orch.reference_impl.constants import DEFAULT_CTX
from llama_orch.reference_impl.pool.manager import PoolManager


def core_pool(pc: PoolConfig, config: OrchestratorConfig) -> core.PoolSpec:
    classes = {p.name: p for p in pc.admission.priorities}
    priorities = list(core.Priority)
    timeouts = config.timeouts_for(pc)
    return core.PoolSpec(
        pool_id=pc.id,
        engine=pc.engine.value,
        model_ref=pc.model,
        ctx_max=pc.ctx or DEFAULT_CTX,
        capacity=pc.queue.capacity,
        full_policy=pc.queue.full_policy,
        class_capacity={
            p: (classes[p].queue_capacity if p in classes else None) for p in priorities
        },
        class_weights={
            p: classes[p].weight if p in classes else core.DEFAULT_CLASS_WEIGHTS[p]
            for p in priorities
        },
        class_rps={p: (classes[p].rate_limit_rps if p in classes else None) for p in priorities},
        wfq=pc.admission.fairness.kind.value == "wfq",
        tenants=tuple(
            core.TenantQuota(
                tenant=t.id,
                weight=t.weight,
                max_concurrent=t.max_concurrent,
                rps=t.rps,
                burst=t.burst,
            )
            for t in pc.admission.fairness.tenants
        ),
        edf=pc.deadlines.edf,
        reject_infeasible=pc.deadlines.reject_infeasible,
        preemption=pc.preemption.mode,
        hard_max_per_min=pc.preemption.hard_requirements.max_preemptions_per_min,
        hard_protect=frozenset(pc.preemption.hard_requirements.protect_priorities),
        slo_breaker=slo_breaker(pc.slo_breaker),
        wall_ms=timeouts.wall_ms,
        idle_ms=timeouts.idle_ms,
    )


def slo_breaker(cfg: SloBreakerConfig | None) -> core.SloBreaker | None:
    if cfg is None:
        return None
    return core.SloBreaker(
        first_token_ms=cfg.first_token_ms,
        slo_priority=cfg.slo_priority,
        window=cfg.window,
        min_samples=cfg.min_samples,
        trip_ratio=cfg.trip_ratio,
        horizon_ms=cfg.horizon_ms,
        shed=frozenset(cfg.shed),
    )


def core_pools(config: OrchestratorConfig) -> list[core.PoolSpec]:
    return [core_pool(pc, config) for pc in config.pools]


def core_replicas(
    pools: PoolManager, labels: Mapping[str, Mapping[str, str]] | None = None
) -> list[core.ReplicaSpec]:
    """`labels`: replica id -> operator labels (policy.replica_labels) placement plugins see."""
    labels = labels or {}
    return [
        core.ReplicaSpec(
            replica_id=h.replica_id,
            pool_id=h.pool_id,
            slots_total=h.slots_total,
            device_mask=h.devices,
            labels=tuple(sorted(labels.get(h.replica_id, {}).items())),
            topology_rank=p.topology_rank,
        )
        for p in pools.pools.values()
        for h in p.replicas
    ]


def core_budgets(b: SessionBudgetsConfig | None) -> core.SessionBudgets:
    if b is None:
        return core.SessionBudgets()
    return core.SessionBudgets(b.tokens, b.time_ms, b.cost, b.cost_per_1k_tokens)


def core_sessions(config: OrchestratorConfig) -> core.SessionPolicy:
    s = config.sessions
    default = core_budgets(s.budgets)
    return core.SessionPolicy(
        ttl_ms=s.ttl_ms,
        max_turns=s.max_turns,
        token_budget=default.tokens,
        time_budget_ms=default.time_ms,
        cost_budget=default.cost,
        cost_per_1k_tokens=default.cost_per_1k_tokens,
        tenant_budgets={
            t.id: core_budgets(t.budgets) for t in config.auth.tenants if t.budgets is not None
        },
    )


def budgets_configured(config: OrchestratorConfig) -> bool:
    """Whether any session has a budget (the `budgets` capability flag)."""
    return config.sessions.budgets is not None or any(
        t.budgets is not None for t in config.auth.tenants
    )
