"""Translate the typed config into the core's plain data (the core never sees pydantic)."""

from __future__ import annotations

from collections.abc import Mapping

from llama_orch.reference_impl import core
from llama_orch.reference_impl.config import OrchestratorConfig, PoolConfig
from llama_orch.reference_impl.pool.manager import DEFAULT_CTX, PoolManager

DEFAULT_WEIGHTS = {core.Priority.INTERACTIVE: 8, core.Priority.BATCH: 1}


def core_pool(pc: PoolConfig, config: OrchestratorConfig) -> core.PoolSpec:
    classes = {p.name.value: p for p in pc.admission.priorities}
    priorities = list(core.Priority)
    timeouts = config.timeouts_for(pc)
    return core.PoolSpec(
        pool_id=pc.id,
        engine=pc.engine.value,
        model_ref=pc.model,
        ctx_max=pc.ctx or DEFAULT_CTX,
        capacity=pc.queue.capacity,
        full_policy=core.FullPolicy(pc.queue.full_policy.value),
        class_capacity={
            p: (classes[p.value].queue_capacity if p.value in classes else None) for p in priorities
        },
        class_weights={
            p: classes[p.value].weight if p.value in classes else DEFAULT_WEIGHTS[p]
            for p in priorities
        },
        class_rps={
            p: (classes[p.value].rate_limit_rps if p.value in classes else None) for p in priorities
        },
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
        preemption=core.PreemptionMode(pc.preemption.mode.value),
        wall_ms=timeouts.wall_ms,
        idle_ms=timeouts.idle_ms,
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
        )
        for p in pools.pools.values()
        for h in p.replicas
    ]


def core_sessions(config: OrchestratorConfig) -> core.SessionPolicy:
    return core.SessionPolicy(ttl_ms=config.sessions.ttl_ms, max_turns=config.sessions.max_turns)
