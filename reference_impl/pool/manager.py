"""Builds pools from config, preloads them, and carries out drain and reload.

Readiness changes are reported through `on_change(pool)`, which the orchestrator uses to keep
the scheduler's view of replicas current. Engine adapters other than `mock` arrive with the
engine-layer work; until then such pools stay unready with a clear `last_error`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from reference_impl.config import OrchestratorConfig, PoolConfig
from reference_impl.pool.state import PoolState, PreloadState, ReplicaHandle

log = logging.getLogger("reference_impl.pool")

AdapterFactory = Callable[[PoolConfig, str, str], Any]
"""(pool config, replica id, model_ref) -> adapter, or raises LookupError when unsupported."""

DEFAULT_CTX = 4096
RETIRE_BOUND_S = 600.0  # longest an old adapter is kept for in-flight tasks after a reload


class PoolManager:
    """Owns every pool's replicas and lifecycle; never decides where a task goes."""

    def __init__(
        self,
        config: OrchestratorConfig,
        adapter_factory: AdapterFactory,
        on_change: Callable[[PoolState], None] = lambda _pool: None,
    ) -> None:
        self._config = config
        self._factory = adapter_factory
        self._on_change = on_change
        self.pools: dict[str, PoolState] = {}
        self._replicas: dict[str, ReplicaHandle] = {}
        self._retiring: set[asyncio.Task] = set()
        for pc in config.pools:
            pool = PoolState(
                pool_id=pc.id,
                engine=pc.engine.value,
                model_ref=pc.model,
                ctx_max=pc.ctx or DEFAULT_CTX,
                quant=pc.quant,
                sampler_profile_version=pc.sampler_profile_version,
            )
            for n in range(pc.replicas):
                rid = f"{pc.id}-r{n}"
                handle = ReplicaHandle(rid, pc.id, None, frozenset(pc.devices))
                pool.replicas.append(handle)
                self._replicas[rid] = handle
            self.pools[pc.id] = pool

    def replica(self, replica_id: str) -> ReplicaHandle:
        return self._replicas[replica_id]

    def pool_config(self, pool_id: str) -> PoolConfig:
        return self._config.pool(pool_id)

    async def start(self) -> None:
        """Preload every pool concurrently; a pool is Ready only after its own preload."""
        await asyncio.gather(*(self._preload(p) for p in self.pools.values()))

    async def _preload(self, pool: PoolState) -> None:
        pool.preload_state = PreloadState.LOADING
        self._on_change(pool)
        try:
            adapters = await self._load_replicas(pool, pool.model_ref)
        except Exception as exc:
            pool.preload_state = PreloadState.FAILED
            pool.last_error = str(exc) or exc.__class__.__name__
            log.warning(
                "preload failed",
                extra={"pool_id": pool.pool_id, "engine": pool.engine, "error": pool.last_error},
            )
            self._on_change(pool)
            return
        self._install(pool, adapters)
        pool.preload_state = PreloadState.READY
        pool.last_error = None
        log.info("preload ok", extra={"pool_id": pool.pool_id, "engine": pool.engine})
        self._on_change(pool)

    async def _load_replicas(self, pool: PoolState, model_ref: str) -> list[tuple[Any, Any]]:
        """Create, preload and probe one adapter per replica; all or nothing."""
        pc = self._config.pool(pool.pool_id)
        created: list[Any] = []
        try:
            for handle in pool.replicas:
                created.append(self._factory(pc, handle.replica_id, model_ref))
            await asyncio.gather(*(a.preload() for a in created))
            props = await asyncio.gather(*(a.props() for a in created))
        except BaseException:
            await asyncio.gather(*(a.close() for a in created), return_exceptions=True)
            raise
        return list(zip(created, props, strict=True))

    def _install(self, pool: PoolState, loaded: list[tuple[Any, Any]]) -> list[Any]:
        """Swap every replica's adapter in one step; returns the adapters replaced."""
        old = []
        for handle, (adapter, props) in zip(pool.replicas, loaded, strict=True):
            old.append(handle.adapter)
            handle.adapter = adapter
            handle.ready = True
            handle.slots_total = max(1, props.slots_total)
        pool.engine_version = loaded[0][1].engine_version
        pool.model_digest = loaded[0][1].model_digest
        return [a for a in old if a is not None]

    def drain(self, pool_id: str, deadline_s: float) -> bool:
        """Stop new dispatches to the pool; returns False if it was already draining."""
        pool = self.pools[pool_id]
        if pool.draining:
            return False
        pool.draining = True
        pool.drain_deadline = deadline_s
        self._on_change(pool)
        return True

    async def reload(self, pool_id: str, new_model_ref: str) -> bool:
        """Load `new_model_ref` beside the current model and switch atomically on success.

        On failure the pool keeps its previous model and readiness; `last_error` says why.
        In-flight tasks finish on the adapter they started on.
        """
        pool = self.pools[pool_id]
        if pool.reloading:
            return False
        pool.reloading = True
        try:
            loaded = await self._load_replicas(pool, new_model_ref)
        except Exception as exc:
            pool.last_error = f"reload to {new_model_ref} failed: {exc}"
            log.warning("reload failed", extra={"pool_id": pool_id, "error": pool.last_error})
            return False
        finally:
            pool.reloading = False
        old = self._install(pool, loaded)
        pool.model_ref = new_model_ref
        pool.draining = False
        pool.drain_deadline = None
        pool.preload_state = PreloadState.READY
        pool.last_error = None
        self._on_change(pool)
        log.info("reload ok", extra={"pool_id": pool_id, "model_id": new_model_ref})
        self._retire(old)
        return True

    def _retire(self, adapters: list[Any]) -> None:
        """Close replaced adapters once their in-flight streams have ended (or after a bound)."""
        loop = asyncio.get_running_loop()
        for adapter in adapters:
            task = loop.create_task(self._close_when_idle(adapter))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def _close_when_idle(self, adapter: Any, bound_s: float = RETIRE_BOUND_S) -> None:
        deadline = asyncio.get_running_loop().time() + bound_s
        while asyncio.get_running_loop().time() < deadline:
            props = await adapter.props()
            if props.slots_free >= props.slots_total:
                break
            await asyncio.sleep(0.1)
        await adapter.close()

    async def close(self) -> None:
        for task in self._retiring:
            task.cancel()
        adapters = [h.adapter for h in self._replicas.values() if h.adapter is not None]
        await asyncio.gather(*(a.close() for a in adapters), return_exceptions=True)
