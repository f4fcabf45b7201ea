"""What a catalog model's lifecycle does to pools: rollout, deprecation and retirement.

- Rollout (`reloadPool` naming a catalogued model by id, digest or `<repository>:<tag>`): the
  reference resolves to the entry's digest first (ORCH-3062), checks that the entry is Active
  or Canary and verifies it again (load time, ORCH-3061); a pool whose config pins a model file
  digest (`model_sha256`) also needs that digest. The pool then serves `model_ref` = the digest,
  and reports it as its `model_digest`. A refusal leaves the pool as it was, with the reason in
  `last_error`. An uncatalogued reference reloads as before (the config's own models, checked
  against `model_sha256`, ORCH-3037).
- Deprecated (ORCH-3070): tasks without `override` are refused with `MODEL_DEPRECATED` (in
  admission), and each pool serving the model is drained: queued work ends, running work may
  finish until the deadline and is then cancelled. Once the pool holds no more of that work it
  stops draining and serves `override` tasks.
- Retired: the same drain, after which each pool serving the model unloads it (unready,
  `preload_state: unloaded`) until an operator reloads it; the entry stays in the catalog,
  archived, and tasks naming it are refused with `MODEL_DEPRECATED`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from llama_orch.reference_impl.service.catalog import ModelState

if TYPE_CHECKING:
    from llama_orch.reference_impl.service.orchestrator import Orchestrator

log = logging.getLogger("llama_orch.reference_impl.service")

POLL_S = 0.05
GRACE_S = 1.0  # after the deadline, cancellations need a watchdog pass to land


async def rollout(orch: Orchestrator, pool_id: str, ref: str) -> bool:
    """Reload a pool with `ref`, resolving and checking a catalogued model first."""
    pools = orch.pools
    entry = orch.catalog.resolve(ref)
    if entry is None:
        return await pools.reload(pool_id, ref)
    pool = pools.pools[pool_id]
    refusal = orch.catalog.load_refusal(entry, pool.engine)
    pinned = pools.pool_config(pool_id).model_sha256
    if refusal is None and pinned is not None and f"sha256:{pinned}" != entry.digest:
        refusal = f"UNTRUSTED_ARTIFACT: the pool's model file is sha256:{pinned}, not the digest"
    if refusal is not None:
        pools.refuse_reload(pool_id, ref, refusal)
        return False
    return await pools.reload(pool_id, entry.digest, model_digest=entry.digest)


def transition(orch: Orchestrator, model_id: str, state: ModelState, deadline_ms: int | None):
    """Move the model; winds down the pools serving it. CatalogError when not allowed."""
    entry = orch.catalog.get(model_id)
    old, new = orch.catalog.catalog.move(model_id, state)
    if entry is None or new is old:
        return
    log.info(
        "model state",
        extra={"event": "model_state", "model_id": model_id, "from": old.value, "to": new.value},
    )
    if new not in (ModelState.DEPRECATED, ModelState.RETIRED):
        return
    loop = asyncio.get_running_loop()
    for pool in orch.pools.pools.values():
        if pool.model_ref == entry.digest:
            ms = deadline_ms
            if ms is None:
                ms = orch.config.timeouts_for(orch.config.pool(pool.pool_id)).wall_ms
            orch.drain(pool.pool_id, ms)  # now, before anything can reload the pool
            task = loop.create_task(_wind_down(orch, pool.pool_id, entry.digest, ms, new))
            orch.background(task)


async def _wind_down(
    orch: Orchestrator, pool_id: str, digest: str, deadline_ms: int, state: ModelState
) -> None:
    """Wait until the drained pool's work is gone; then serve again (Deprecated) or unload."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_ms / 1000 + GRACE_S
    while orch.running_on(pool_id) and loop.time() < end:
        await asyncio.sleep(POLL_S)
    pool = orch.pools.pools[pool_id]
    if pool.model_ref != digest or pool.reloading:
        return  # an operator reloaded the pool meanwhile: it serves something else now
    if state is ModelState.RETIRED:
        await orch.pools.unload(pool_id, f"model {digest} was Retired and unloaded")
    else:
        orch.pools.undrain(pool_id)
