"""Checks a pool passes before its engine starts: model digest, devices and headroom.

Kept apart from the lifecycle so the rules read in one place (specs/30 sections 2 to 4):
a pool in determinism mode has readable settings for its engine (read once per attempt and
carried in the result, so nothing loads them later), the model file's SHA-256 must match
(ORCH-3037), a pool that asks for GPUs gets them or does not start (no CPU fallback,
ORCH-1101), and a launched engine must fit the free VRAM of every device in its mask, or the
free host RAM for a CPU carve-out pool (ORCH-3003).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reference_impl.config import AdapterKind, OrchestratorConfig, PoolConfig, TrustMode
from reference_impl.pool.catalog import DigestCache, UntrustedArtifact
from reference_impl.pool.determinism import (
    DeterminismSettings,
    DeterminismSettingsError,
    load_settings,
)
from reference_impl.pool.devices import (
    DeviceRegistry,
    Placement,
    PlacementRefused,
    estimate_footprint,
    place_pool,
)

log = logging.getLogger("reference_impl.pool")

DEFAULT_CTX = 4096


class PoolFault(Exception):
    """A pool could not be brought up; `permanent` faults wait for an operator's reload."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class Preflight:
    """What the checks found: the verified file digest and where the engine may run."""

    model_path: Path | None
    model_digest: str | None
    placement: Placement | None  # None for the in-process mock, which needs no device
    determinism: DeterminismSettings | None = None  # set for a pool in determinism mode


def determinism_of(pc: PoolConfig) -> DeterminismSettings | None:
    """The pool's determinism settings; a missing or broken file is a permanent fault
    (retrying cannot fix it; a reload after the fix reads it again)."""
    if not pc.determinism:
        return None
    try:
        return load_settings(pc.engine.value)
    except DeterminismSettingsError as exc:
        raise PoolFault(f"determinism settings of pool {pc.id}: {exc}", permanent=True) from exc


async def preflight(
    config: OrchestratorConfig,
    pc: PoolConfig,
    *,
    catalog: DigestCache,
    devices: DeviceRegistry,
    host_free: Callable[[], int | None],
) -> Preflight:
    """Run the checks in order; raise PoolFault with a one-line cause on the first failure."""
    det = determinism_of(pc)
    path = config.model_path_for(pc)
    digest = None
    if path is not None and pc.model_sha256 is not None:
        digest = await _verify(config, pc, path, catalog)
    if pc.adapter == AdapterKind.MOCK:
        return Preflight(path, digest, None, det)  # mock device indices are virtual
    footprint = None
    if pc.launch is not None and path is not None:
        # Only an engine we start ourselves still has to fit; an endpoint has loaded already.
        footprint = estimate_footprint(path.stat().st_size, pc.ctx or DEFAULT_CTX)
    inventory = await asyncio.to_thread(devices.inventory)
    try:
        placement = place_pool(
            pc.devices,
            inventory=inventory,
            allow_cpu_inference=pc.allow_cpu_inference,
            tensor_split=pc.tensor_split,
            homogeneous=pc.homogeneous,
            footprint_bytes=footprint,
            host_free=host_free() if footprint is not None else None,
        )
    except PlacementRefused as exc:
        raise PoolFault(str(exc), permanent=exc.permanent) from exc
    return Preflight(path, digest, placement, det)


async def _verify(
    config: OrchestratorConfig, pc: PoolConfig, path: Path, catalog: DigestCache
) -> str:
    assert pc.model_sha256 is not None
    try:
        return await asyncio.to_thread(catalog.verify, path, pc.model_sha256)
    except FileNotFoundError as exc:
        raise PoolFault(f"model file not found: {path}") from exc
    except OSError as exc:
        raise PoolFault(f"cannot read model file {path}: {exc}") from exc
    except UntrustedArtifact as exc:
        if config.catalog.trust_policy.mode is TrustMode.PERMISSIVE:
            log.warning(
                "model digest mismatch admitted by the permissive trust policy",
                extra={"event": "untrusted_artifact", "pool_id": pc.id, "error": str(exc)},
            )
            return f"sha256:{exc.actual}"
        # A wrong file does not fix itself: no restart loop, a reload checks again.
        raise PoolFault(str(exc), permanent=True) from exc
