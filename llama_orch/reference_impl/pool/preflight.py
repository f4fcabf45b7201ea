"""Checks a pool passes before its engine starts: model digest, devices and headroom.

Kept apart from the lifecycle so the rules read in one place (specs/30 sections 2 to 4):
a pool in determinism mode has readable settings for its engine (read once per attempt and
carried in the result, so nothing loads them later), the model file's SHA-256 must match
(ORCH-3037), a pool that asks for GPUs gets them or does not start (no CPU fallback,
ORCH-1101), and a launched engine must fit the free VRAM of every device in its mask, or the
free host RAM for a CPU carve-out pool (ORCH-3003), counting what speculative decoding and
the prompt cache add (ORCH-3020). A launched engine split across GPUs gets
its context capped so the smallest share of the KV cache fits (ORCH-3052); an operator's own
`--ctx-size` above that cap is refused instead, since we do not rewrite their flags.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from llama_orch.reference_impl.config import AdapterKind, OrchestratorConfig, PoolConfig, TrustMode
from llama_orch.reference_impl.constants import DEFAULT_CTX
from llama_orch.reference_impl.pool.catalog import DigestCache, UntrustedArtifact
from llama_orch.reference_impl.pool.determinism import (
    DeterminismSettings,
    DeterminismSettingsError,
    load_settings,
)
from llama_orch.reference_impl.pool.devices import (
    DeviceRegistry,
    Placement,
    PlacementRefused,
    place_pool,
)

log = logging.getLogger("llama_orch.reference_impl.pool")

# Speculative decoding and prefix caching take memory of their own (ORCH-3020): a draft model
# with its KV cache, and llama-server's prompt cache in host RAM, which is on by default with
# an 8192 MiB bound in the pinned build (`llama-server --help`: `-cram, --cache-ram N`).
DRAFT_FLAGS = ("--model-draft", "-md", "--spec-draft-model")
PROMPT_CACHE_FLAGS = ("--cache-ram", "-cram")
DEFAULT_PROMPT_CACHE_MIB = 8192


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
    ctx_max: int = DEFAULT_CTX  # the context admission allows: configured, or the KV cap
    ctx_capped: bool = False  # ctx_max is the KV cap, below the configured context


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
    ctx = pc.ctx or DEFAULT_CTX
    if pc.adapter == AdapterKind.MOCK:
        return Preflight(path, digest, None, det, ctx)  # mock device indices are virtual
    model_bytes = None
    operator_ctx = None
    draft_bytes = cache_bytes = 0
    if pc.launch is not None and path is not None:
        # Only an engine we start ourselves still has to fit; an endpoint has loaded already.
        model_bytes = path.stat().st_size
        operator_ctx = ctx_flag(pc.launch.args, pc.id)
        ctx = operator_ctx if operator_ctx is not None else ctx
        draft_bytes = draft_model_bytes(pc.launch.args, pc.id)
        cache_bytes = prompt_cache_bytes(pc.launch.args, pc.id)
    inventory = await asyncio.to_thread(devices.inventory)
    try:
        placement = place_pool(
            pc.devices,
            inventory=inventory,
            allow_cpu_inference=pc.allow_cpu_inference,
            tensor_split=pc.tensor_split,
            homogeneous=pc.homogeneous,
            model_bytes=model_bytes,
            ctx=ctx,
            host_free=host_free() if model_bytes is not None else None,
            draft_bytes=draft_bytes,
            host_cache_bytes=cache_bytes,
        )
    except PlacementRefused as exc:
        raise PoolFault(str(exc), permanent=exc.permanent) from exc
    cap = placement.capped(ctx)
    if cap < ctx:
        if operator_ctx is not None:
            raise PoolFault(
                f"pool {pc.id}: launch.args --ctx-size {operator_ctx} exceeds the KV cap of "
                f"{cap} tokens that device {placement.kv_cap_device} can hold its share of; "
                "lower it or drop it to let the pool manager cap the context",
                permanent=True,
            )
        log.warning(
            f"pool {pc.id}: context capped from {ctx} to {cap} tokens so that device "
            f"{placement.kv_cap_device} holds its share of the KV cache",
            extra={
                "event": "kv_capped",
                "pool_id": pc.id,
                "ctx": ctx,
                "kv_cap_tokens": cap,
                "device": placement.kv_cap_device,
            },
        )
    return Preflight(path, digest, placement, det, cap, cap < ctx)


def _flag(args: Sequence[str], names: tuple[str, ...]) -> tuple[str, str] | None:
    """(flag, value) of the first of `names` in `launch.args` (`--f V` or `--f=V`)."""
    for i, arg in enumerate(args):
        flag, eq, value = arg.partition("=")
        if flag in names:
            return flag, value if eq else (args[i + 1] if i + 1 < len(args) else "")
    return None


def _whole(args: Sequence[str], names: tuple[str, ...], pool_id: str) -> int | None:
    """A whole-number flag; anything else is a permanent fault naming the pool."""
    found = _flag(args, names)
    if found is None:
        return None
    flag, value = found
    try:
        return int(value)
    except ValueError:
        raise PoolFault(
            f"pool {pool_id}: launch.args {flag} needs a whole number, got {value!r}",
            permanent=True,
        ) from None


def ctx_flag(args: Sequence[str], pool_id: str) -> int | None:
    """The context an operator set in `launch.args` (`--ctx-size N`, `-c N`, `--ctx-size=N`)."""
    return _whole(args, ("--ctx-size", "-c"), pool_id)


def prompt_cache_bytes(args: Sequence[str], pool_id: str) -> int:
    """Host RAM llama-server's prompt cache may take (ORCH-3020): `--cache-ram MiB`, else its
    default; 0 turns it off. An unbounded cache (-1) cannot be accounted for: refused."""
    mib = _whole(args, PROMPT_CACHE_FLAGS, pool_id)
    mib = DEFAULT_PROMPT_CACHE_MIB if mib is None else mib
    if mib < 0:
        raise PoolFault(
            f"pool {pool_id}: launch.args --cache-ram {mib} leaves the prompt cache unbounded, "
            "so its memory cannot be accounted for; give a size in MiB, or 0 to turn it off",
            permanent=True,
        )
    return mib << 20


def draft_model_bytes(args: Sequence[str], pool_id: str) -> int:
    """Size of the draft model speculative decoding loads (`--model-draft FILE`), 0 without."""
    found = _flag(args, DRAFT_FLAGS)
    if found is None:
        return 0
    flag, value = found
    try:
        return Path(value).expanduser().stat().st_size
    except OSError as exc:
        raise PoolFault(f"pool {pool_id}: launch.args {flag} {value!r}: {exc.strerror}") from exc


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
