"""Observable state of pools and replicas, as the health and replica-set endpoints show it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class PreloadState(StrEnum):
    """Where a pool is in bringing its model up (specs/30-pool-managerd.md)."""

    PENDING = "pending"
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


@dataclass
class ReplicaHandle:
    """One engine replica of a pool and the adapter that reaches it."""

    replica_id: str
    pool_id: str
    adapter: Any
    devices: frozenset[int]
    ready: bool = False
    slots_total: int = 1


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
    sampler_profile_version: str = "v1"
    reloading: bool = False

    @property
    def live(self) -> bool:
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
