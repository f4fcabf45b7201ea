"""Observable state of pools and replicas, as the health and replica-set endpoints show it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from llama_orch.reference_impl.constants import DEFAULT_SAMPLER_PROFILE


class PreloadState(StrEnum):
    """Where a pool is in bringing its model up (specs/30-pool-managerd.md)."""

    PENDING = "pending"
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    UNLOADED = "unloaded"  # its catalog model was Retired; a reload brings a model back


@dataclass
class ReplicaHandle:
    """One engine replica of a pool and the adapter that reaches it."""

    replica_id: str
    pool_id: str
    adapter: Any
    devices: frozenset[int]
    ready: bool = False
    slots_total: int = 1
    process: Any = None  # the supervised engine process (pool `launch`), else None
    # Hard preemption may interrupt this replica: its adapter proved interruptible decode
    # (pool/preemption_proof.py); `proof` says why not, when the pool asked and it failed.
    interruptible: bool = False
    proof: str | None = None


@dataclass
class PoolState:
    """A pool's identity and lifecycle; replicas share its model and device mask."""

    pool_id: str
    engine: str
    model_ref: str
    ctx_max: int
    replicas: list[ReplicaHandle] = field(default_factory=list)
    preload_state: PreloadState = PreloadState.PENDING
    last_error: str | None = None
    draining: bool = False
    drain_deadline: float | None = None
    engine_version: str = "unknown"
    model_digest: str = "unknown"
    quant: str | None = None
    sampler_profile_version: str = DEFAULT_SAMPLER_PROFILE
    reloading: bool = False
    # Supervision (specs/30 sections 3 and 5); times are on the manager's monotonic clock.
    cpu_inference: bool = False  # serving through the CPU carve-out (allow_cpu_inference)
    restarts: int = 0  # automatic restarts scheduled (`restart` events)
    driver_resets: int = 0  # faults of a serving engine (`driver_reset` events)
    preload_outcomes: dict[str, int] = field(default_factory=lambda: {"success": 0, "failure": 0})
    next_retry_at: float | None = None  # when the next automatic attempt starts
    breaker_open: bool = False  # circuit open: no automatic restart until breaker_until
    breaker_until: float | None = None
    topology_rank: int = 2  # placement tie-break hint, lower first (config `topology`)
    oom_events: dict[str, int] = field(default_factory=dict)  # "device"/"host" -> count

    @property
    def live(self) -> bool:
        if self.breaker_open:
            return False
        return self.preload_state in (PreloadState.READY, PreloadState.LOADING) or any(
            r.ready for r in self.replicas
        )

    @property
    def ready(self) -> bool:
        return (
            self.preload_state is PreloadState.READY
            and not self.draining
            and any(r.ready for r in self.replicas)
        )

    @property
    def replica_set_key(self) -> tuple[str, ...]:
        """Pools agreeing on this key form one replica set (ORCH-3007)."""
        return (
            self.engine,
            self.model_ref,
            self.quant or "",
            str(self.ctx_max),
            self.engine_version,
            self.sampler_profile_version,
        )
