"""What the pool manager does when an engine runs out of memory (ORCH-3039).

A device (VRAM) OOM means the replica's KV cache and activations do not fit next to the model
at its current concurrency: capacity is re-estimated at once, one slot fewer (never below one),
so the scheduler stops filling the replica to the level that failed; the next engine start
re-measures free VRAM in the preflight anyway. A host OOM says nothing about the GPU, so the
replica's capacity stays as it is. Both are counted per pool and logged as distinct events.
"""

from __future__ import annotations

import logging

from llama_orch.reference_impl.adapters.base import OomKind
from llama_orch.reference_impl.pool.state import PoolState, ReplicaHandle

log = logging.getLogger("llama_orch.reference_impl.pool")


def apply_oom(pool: PoolState, handle: ReplicaHandle, kind: OomKind, detail: str) -> None:
    """Record an OOM of `kind` on `handle`; a device OOM lowers its slot count by one."""
    pool.oom_events[kind] = pool.oom_events.get(kind, 0) + 1
    before = handle.slots_total
    if kind == "device":
        handle.slots_total = max(1, before - 1)
    log.warning(
        "engine out of device memory: capacity re-estimated"
        if kind == "device"
        else "engine out of host memory: device capacity unchanged",
        extra={
            "event": "oom",
            "oom": kind,
            "pool_id": pool.pool_id,
            "replica_id": handle.replica_id,
            "engine": pool.engine,
            "slots_before": before,
            "slots_after": handle.slots_total,
            "error": detail[:300],
        },
    )
