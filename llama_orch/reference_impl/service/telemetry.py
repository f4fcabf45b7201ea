"""Scrape-time metric families mirrored from the scheduler (one source of truth).

Event counts the core already keeps (`Snapshot.counters`) are exposed as counters here,
labelled with the pool's engine and engine version; state (queue depth, shares, ratios) as
gauges. Nothing is double-counted in the service.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from llama_orch.reference_impl.core import Snapshot
from llama_orch.reference_impl.pool.devices import host_memory_used_bytes

if TYPE_CHECKING:
    from llama_orch.reference_impl.service.orchestrator import Orchestrator

_E = ["engine", "engine_version", "pool_id"]


def _family(kind, name: str, doc: str, labels: list[str], samples: Iterable) -> Metric:
    family = kind(name, doc, labels=labels)
    for values, value in samples:
        family.add_metric(values, value)
    return family


def scheduler_families(orch: Orchestrator) -> Iterator[Metric]:
    snap = orch.scheduler.snapshot(orch.now_ms())
    pools = orch.pools.pools

    def ident(pool_id: str) -> list[str]:
        pool = pools.get(pool_id)
        return [pool.engine, pool.engine_version, pool_id] if pool else ["", "", pool_id]

    yield from _counters(snap, ident, orch.local_rejections)
    yield from _gauges(snap, ident)
    yield from _pool_families(orch)


def _counters(snap: Snapshot, ident, local_rejections: dict) -> Iterator[Metric]:
    c = snap.counters
    C = CounterMetricFamily
    yield _family(
        C,
        "tasks_enqueued",
        "Tasks admitted to a queue.",
        [*_E, "replica_id", "priority"],
        (([*ident(p), "unassigned", prio], n) for (p, prio), n in c.enqueued.items()),
    )
    yield _family(
        C,
        "tasks_started",
        "Tasks dispatched to a replica.",
        [*_E, "replica_id", "priority"],
        (([*ident(p), r, prio], n) for (p, r, prio), n in c.started.items()),
    )
    yield _family(
        C,
        "tasks_canceled",
        "Tasks canceled by a user or the watchdog.",
        [*_E, "replica_id", "reason"],
        (([*ident(p), r, why], n) for (p, r, why), n in c.canceled.items()),
    )
    merged: dict[tuple[str, str], float] = dict(local_rejections)
    for (pid, code), n in c.rejected.items():
        key = (ident(pid)[0], code)
        merged[key] = merged.get(key, 0) + n
    yield _family(
        C,
        "tasks_rejected",
        "Tasks refused at admission, by code.",
        ["engine", "reason"],
        (([e, code], n) for (e, code), n in sorted(merged.items())),
    )
    yield _family(
        C,
        "admission_backpressure_events",
        "Full-queue events, by policy.",
        ["engine", "policy"],
        (([ident(p)[0], policy], n) for (p, policy), n in c.backpressure.items()),
    )
    yield _family(
        C,
        "preemptions",
        "Queued or running work preempted.",
        ["mode", "engine"],
        (([mode, ident(p)[0]], n) for (p, mode), n in c.preemptions.items()),
    )


def _gauges(snap: Snapshot, ident) -> Iterator[Metric]:
    G = GaugeMetricFamily
    yield _family(
        G,
        "queue_depth",
        "Queued tasks.",
        [*_E, "priority"],
        (
            ([*ident(pid), prio.value], n)
            for pid, view in snap.pools.items()
            for prio, n in view.queue_depth.items()
        ),
    )
    yield _family(
        G,
        "kv_cache_usage_ratio",
        "KV cache use (busy slots as the proxy).",
        [*_E, "replica_id"],
        (([*ident(r.pool_id), rid], r.load) for rid, r in snap.replicas.items()),
    )
    yield _family(
        G,
        "admission_share",
        "EWMA share of admissions.",
        ["tenant", "priority"],
        (([t, p.value], v) for (t, p), v in sorted(snap.admission_share.items())),
    )
    yield _family(
        G,
        "deadlines_met_ratio",
        "Rolling share of deadlines met.",
        ["priority"],
        (([p.value], r) for p, r in snap.deadlines_met_ratio.items() if r is not None),
    )


def _pool_families(orch: Orchestrator) -> Iterator[Metric]:
    """Pool lifecycle counters and device gauges (specs/30 section 5, OC-POOL-3030)."""
    pools = list(orch.pools.pools.values())
    C, G = CounterMetricFamily, GaugeMetricFamily
    yield _family(
        C,
        "pool_preload",
        "Preload outcomes.",
        ["engine", "pool_id", "outcome"],
        (
            ([p.engine, p.pool_id, outcome], n)
            for p in pools
            for outcome, n in sorted(p.preload_outcomes.items())
        ),
    )
    yield _family(
        G,
        "pool_ready",
        "1 while the pool takes tasks (preloaded, not draining, not failed), else 0.",
        ["engine", "pool_id"],
        (([p.engine, p.pool_id], 1 if p.ready else 0) for p in pools),
    )
    yield _family(
        C,
        "pool_restarts",
        "Automatic engine restarts.",
        ["engine", "pool_id"],
        (([p.engine, p.pool_id], p.restarts) for p in pools),
    )
    yield _family(
        C,
        "pool_driver_resets",
        "Faults of a serving engine.",
        ["engine", "pool_id", "device"],
        (
            ([p.engine, p.pool_id, _device_label(p)], p.driver_resets)
            for p in pools
            if p.driver_resets
        ),
    )
    gpus = {g.index: g for g in orch.pools.devices.sample()}
    placed = [
        (p, h, gpus[d]) for p in pools for h in p.replicas for d in sorted(h.devices) if d in gpus
    ]
    labels = [*_E, "replica_id", "device"]
    yield _family(
        G,
        "gpu_utilization",
        "GPU utilisation, percent.",
        labels,
        (
            ([p.engine, p.engine_version, p.pool_id, h.replica_id, str(g.index)], g.utilization_pct)
            for p, h, g in placed
            if g.utilization_pct is not None
        ),
    )
    yield _family(
        G,
        "vram_used_bytes",
        "VRAM in use, bytes.",
        labels,
        (
            ([p.engine, p.engine_version, p.pool_id, h.replica_id, str(g.index)], g.memory_used)
            for p, h, g in placed
        ),
    )
    used = host_memory_used_bytes()
    yield _family(
        G,
        "host_memory_used_bytes",
        "Host RAM in use, bytes.",
        [],
        [([], used)] if used is not None else [],
    )


def _device_label(pool) -> str:
    devices = sorted({d for h in pool.replicas for d in h.devices})
    return ",".join(map(str, devices)) if devices else "cpu"
