"""Builds pools from config, brings them up, supervises them, and carries out drain and reload.

Each pool has one lifecycle task: preflight (determinism settings, digest, devices, headroom),
start the engine processes it launches itself (pool/launch.py), create the adapters and
self-test them (preload, decode, cancel, telemetry: pool/selftest.py, results kept
by pool/selftest_book.py), then watch: a process exit or failed heartbeats are a fault
(unready at once, engine killed so running streams end with WORKER_RESET, `driver_reset`
logged), followed by a restart after an exponential backoff that a circuit breaker bounds
(specs/30). Pools on an `endpoint` (started by someone else) are
heartbeat-checked and flip between failed and ready (after a new self-test) without a restart.

Readiness changes are reported through `on_change(pool)`, which the orchestrator uses to keep
the scheduler's view of replicas current.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llama_orch.reference_impl.adapters.base import OomKind
from llama_orch.reference_impl.config import (
    AdapterKind,
    OrchestratorConfig,
    PoolConfig,
    PreemptionMode,
)
from llama_orch.reference_impl.constants import DEFAULT_CTX
from llama_orch.reference_impl.pool.backoff import BackoffPolicy, BreakerPolicy, RestartGovernor
from llama_orch.reference_impl.pool.catalog import DigestCache
from llama_orch.reference_impl.pool.determinism import DeterminismSettings, slot_cap
from llama_orch.reference_impl.pool.devices import DeviceRegistry, host_free_bytes
from llama_orch.reference_impl.pool.launch import launch_spec
from llama_orch.reference_impl.pool.oom import apply_oom
from llama_orch.reference_impl.pool.preemption_proof import Proof, prove_all
from llama_orch.reference_impl.pool.preflight import PoolFault, Preflight, preflight
from llama_orch.reference_impl.pool.retire import Retirements
from llama_orch.reference_impl.pool.runtime import HEARTBEAT_S, PoolRuntime, gather_or_raise
from llama_orch.reference_impl.pool.selftest import SelfTestLimits, raise_on_failure
from llama_orch.reference_impl.pool.selftest_book import SelfTestBook
from llama_orch.reference_impl.pool.state import PoolState, PreloadState, ReplicaHandle
from llama_orch.reference_impl.pool.supervisor import EngineProcess, EngineStartError

log = logging.getLogger("llama_orch.reference_impl.pool")

AdapterFactory = Callable[..., Any]
"""(pool config, replica id, model_ref[, base_url=...][, determinism=...]) -> adapter;
LookupError if unsupported.

`base_url` is passed only for engines the manager launched itself, `determinism` (the pool's
resolved DeterminismSettings) only for pools in determinism mode."""

__all__ = ["AdapterFactory", "PoolManager"]


@dataclass
class _Loaded:
    adapter: Any
    props: Any
    process: EngineProcess | None
    proof: Proof | None = None


class PoolManager:
    """Owns every pool's replicas and lifecycle; never decides where a task goes."""

    def __init__(
        self,
        config: OrchestratorConfig,
        adapter_factory: AdapterFactory,
        on_change: Callable[[PoolState], None] = lambda _pool: None,
        *,
        devices: DeviceRegistry | None = None,
        catalog: DigestCache | None = None,
        backoff: BackoffPolicy | None = None,
        breaker: BreakerPolicy | None = None,
        heartbeat_s: float = HEARTBEAT_S,
        health_timeout_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        host_free: Callable[[], int | None] = host_free_bytes,
        rand: Callable[[], float] = random.random,
        self_test: SelfTestLimits | None = None,
    ) -> None:
        self._config = config
        self._self_tests = SelfTestBook(self_test or SelfTestLimits())
        self._factory = adapter_factory
        self._on_change = on_change
        self.devices = devices or DeviceRegistry()
        self.catalog = catalog or DigestCache()
        self._clock = clock
        self._host_free = host_free
        self.pools: dict[str, PoolState] = {}
        self._replicas: dict[str, ReplicaHandle] = {}
        self._rt: dict[str, PoolRuntime] = {}
        self._retiring = Retirements()
        for pc in config.pools:
            pool = PoolState(
                pool_id=pc.id,
                engine=pc.engine.value,
                model_ref=pc.model,
                ctx_max=pc.ctx or DEFAULT_CTX,
                quant=pc.quant,
                sampler_profile_version=pc.sampler_profile_version,
                topology_rank=pc.topology.rank if pc.topology is not None else 2,
            )
            for n in range(pc.replicas):
                rid = f"{pc.id}-r{n}"
                handle = ReplicaHandle(rid, pc.id, None, frozenset(pc.devices))
                pool.replicas.append(handle)
                self._replicas[rid] = handle
            self.pools[pc.id] = pool
            self._rt[pc.id] = PoolRuntime(
                pool,
                pc,
                RestartGovernor(backoff, breaker, rand),
                on_change,
                clock,
                self._self_tests,
                heartbeat_s,
                health_timeout_s,
            )

    def replica(self, replica_id: str) -> ReplicaHandle:
        return self._replicas[replica_id]

    def pool_config(self, pool_id: str) -> PoolConfig:
        return self._config.pool(pool_id)

    def self_test(self, pool_id: str) -> dict[str, str] | None:
        """Start-up self-test of the serving model (the last attempt's while none serves),
        item -> pass/fail/skip; None before one ran."""
        return self._self_tests.summaries(self.pools[pool_id])[0]

    def self_test_last_attempt(self, pool_id: str) -> dict[str, str] | None:
        """The latest self-test when it is not the one `self_test` shows (a failed reload
        while the old model serves); else None."""
        return self._self_tests.summaries(self.pools[pool_id])[1]

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Preload every pool concurrently; returns after each pool's first attempt.

        A pool is Ready only after its own preload; failed pools keep retrying in the
        background with backoff.
        """
        loop = asyncio.get_running_loop()
        firsts = []
        for pool in self.pools.values():
            first: asyncio.Future[None] = loop.create_future()
            self._spawn(pool, installed=False, first=first)
            firsts.append(first)
        await asyncio.gather(*firsts)

    def _spawn(
        self,
        pool: PoolState,
        *,
        installed: bool,
        first: asyncio.Future | None = None,
        failed: str | None = None,
    ) -> None:
        """Run the pool's lifecycle; `failed` (a cause) makes it back off before trying."""
        rt = self._rt[pool.pool_id]
        rt.task = asyncio.get_running_loop().create_task(
            self._lifecycle(pool, installed, first, failed)
        )

    async def _lifecycle(
        self,
        pool: PoolState,
        installed: bool,
        first: asyncio.Future | None,
        failed: str | None = None,
    ) -> None:
        rt = self._rt[pool.pool_id]
        try:
            if failed is not None and not installed:
                await rt.back_off(failed)
            while True:
                if not installed:
                    try:
                        await self._attempt(pool)
                        installed = True
                    except PoolFault as fault:
                        if fault.permanent:
                            return  # stays failed; an operator's reload tries again
                        cause = str(fault)
                    finally:
                        if first is not None and not first.done():
                            first.set_result(None)
                if installed:
                    cause = await rt.watch()
                    installed = False
                    await rt.teardown()
                await rt.back_off(cause)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pool supervision failed", extra={"pool_id": pool.pool_id})
        finally:
            if first is not None and not first.done():
                first.set_result(None)

    async def _attempt(self, pool: PoolState) -> None:
        """One preload: PoolFault (cause in last_error) on failure, Ready on success."""
        pool.preload_state = PreloadState.LOADING
        pool.next_retry_at = None
        pool.breaker_open, pool.breaker_until = False, None
        self._on_change(pool)
        try:
            loaded, pre = await self._bring_up(pool, pool.model_ref)
        except Exception as exc:
            fault = exc if isinstance(exc, PoolFault) else PoolFault(str(exc) or repr(exc))
            if fault is not exc:
                fault.__cause__ = exc
            pool.preload_state = PreloadState.FAILED
            pool.last_error = str(fault)
            pool.preload_outcomes["failure"] += 1
            log.warning(
                "preload failed",
                extra={
                    "event": "preload",
                    "outcome": "failure",
                    "pool_id": pool.pool_id,
                    "engine": pool.engine,
                    "error": pool.last_error,
                    "last_error": pool.last_error,
                },
            )
            self._on_change(pool)
            raise fault  # noqa: B904 - the cause is attached above
        self._install(pool, loaded, pre)
        pool.preload_state = PreloadState.READY
        pool.last_error = None
        pool.preload_outcomes["success"] += 1
        log.info(
            "preload ok",
            extra={
                "event": "preload",
                "outcome": "success",
                "pool_id": pool.pool_id,
                "engine": pool.engine,
            },
        )
        self._on_change(pool)

    async def _bring_up(
        self, pool: PoolState, model_ref: str, *, shared: bool = False
    ) -> tuple[list[_Loaded], Preflight]:
        """Preflight (determinism settings first), start engines, create and self-test
        (preload first) adapters; all or nothing. A failed self-test is a failed preload
        (ORCH-3049). `shared`: the engine serves live traffic meanwhile (an endpoint reload)."""
        pc = self._config.pool(pool.pool_id)
        pre = await preflight(
            self._config, pc, catalog=self.catalog, devices=self.devices, host_free=self._host_free
        )
        det = pre.determinism
        procs: list[EngineProcess | None] = [None] * len(pool.replicas)
        created: list[Any] = []
        try:
            if pc.launch is not None and pc.adapter != AdapterKind.MOCK:
                procs = [self._engine_process(pc, h, pre, det) for h in pool.replicas]
                await gather_or_raise([p.start() for p in procs if p is not None])
            for handle, proc in zip(pool.replicas, procs, strict=True):
                created.append(self._make_adapter(pc, handle.replica_id, model_ref, proc, det))
            raise_on_failure(await self._self_tests.run(pool, created, shared=shared))
            hard = pc.preemption.mode is PreemptionMode.HARD and not shared
            proofs = await prove_all(created, hard)
            props = await gather_or_raise([a.props() for a in created])
        except BaseException as exc:
            await asyncio.gather(*(a.close() for a in created), return_exceptions=True)
            await asyncio.gather(*(p.kill() for p in procs if p), return_exceptions=True)
            if isinstance(exc, EngineStartError):
                raise PoolFault(str(exc)) from exc
            raise
        loaded = [
            _Loaded(a, p, proc, proof)
            for a, p, proc, proof in zip(created, props, procs, proofs, strict=True)
        ]
        return loaded, pre

    def _make_adapter(
        self,
        pc: PoolConfig,
        replica_id: str,
        model_ref: str,
        proc: EngineProcess | None,
        det: DeterminismSettings | None,
    ) -> Any:
        """The factory's adapter; an adapter this build lacks is a permanent fault."""
        kwargs: dict[str, Any] = {}
        if proc is not None:
            kwargs["base_url"] = proc.base_url
        if det is not None:
            kwargs["determinism"] = det
        try:
            return self._factory(pc, replica_id, model_ref, **kwargs)
        except LookupError as exc:
            raise PoolFault(str(exc).strip("'\""), permanent=True) from exc

    def _engine_process(
        self,
        pc: PoolConfig,
        handle: ReplicaHandle,
        pre: Preflight,
        det: DeterminismSettings | None,
    ) -> EngineProcess:
        return EngineProcess(
            launch_spec(pc, pre, det),
            name=handle.replica_id,
            on_exit=lambda proc, _rc, pool_id=pc.id: self._engine_exited(pool_id, proc),
        )

    def _install(self, pool: PoolState, loaded: list[_Loaded], pre: Preflight) -> list[tuple]:
        """Swap every replica's adapter and process in one step; returns what it replaced."""
        rt = self._rt[pool.pool_id]
        rt.determinism = pre.determinism
        old = []
        for handle, item in zip(pool.replicas, loaded, strict=True):
            stale = handle.adapter if all(handle.adapter is not c for c in rt.closed) else None
            if stale is not None or handle.process is not None:
                old.append((stale, handle.process))
            handle.adapter, handle.process = item.adapter, item.process
            handle.ready = True
            handle.slots_total = slot_cap(pre.determinism, item.props.slots_total)
            handle.interruptible = item.proof is not None and item.proof.proven
            handle.proof = item.proof.reason if item.proof is not None else None
        pool.engine_version = loaded[0].props.engine_version
        pool.model_digest = pre.model_digest or loaded[0].props.model_digest
        pool.cpu_inference = pre.placement is not None and pre.placement.cpu
        pool.ctx_max = pre.ctx_max  # the configured context, or a split pool's KV cap
        rt.installed()
        self._self_tests.installed(pool.pool_id)
        return old

    def _engine_exited(self, pool_id: str, proc: EngineProcess) -> None:
        pool = self.pools[pool_id]
        if any(h.process is proc for h in pool.replicas):  # not a retired or starting one
            self._rt[pool_id].fault(proc.describe_exit())

    # -- operations --------------------------------------------------------------------
    def out_of_memory(self, replica_id: str, kind: OomKind, detail: str) -> None:
        """An engine ran out of device or host memory (pool/oom.py)."""
        handle = self._replicas.get(replica_id)
        if handle is not None:
            pool = self.pools[handle.pool_id]
            apply_oom(pool, handle, kind, detail)
            self._on_change(pool)

    def drain(self, pool_id: str, deadline_s: float) -> bool:
        """Stop new dispatches to the pool; returns False if it was already draining."""
        pool = self.pools[pool_id]
        if pool.draining:
            return False
        pool.draining = True
        pool.drain_deadline = deadline_s
        self._on_change(pool)
        return True

    def undrain(self, pool_id: str) -> None:
        """End a drain that was not followed by a reload (a Deprecated model's wind-down)."""
        pool = self.pools[pool_id]
        pool.draining, pool.drain_deadline = False, None
        self._on_change(pool)

    async def unload(self, pool_id: str, reason: str) -> None:
        """Take the model off every replica (a Retired model): unready until a reload."""
        pool = self.pools[pool_id]
        rt = self._rt[pool_id]
        await rt.stop()
        await rt.teardown()
        pool.preload_state = PreloadState.UNLOADED
        pool.draining, pool.drain_deadline = False, None
        pool.last_error = reason
        log.info("model unloaded", extra={"pool_id": pool_id, "error": reason})
        self._on_change(pool)

    def refuse_reload(self, pool_id: str, new_model_ref: str, reason: str) -> None:
        """A reload refused before loading (trust or lifecycle): the pool keeps its model."""
        pool = self.pools[pool_id]
        pool.last_error = f"reload to {new_model_ref} refused: {reason}"
        log.warning("reload refused", extra={"pool_id": pool_id, "error": pool.last_error})
        self._on_change(pool)

    async def reload(
        self, pool_id: str, new_model_ref: str, *, model_digest: str | None = None
    ) -> bool:
        """Load `new_model_ref` beside the current model and switch atomically on success.

        On failure the pool keeps its previous model and readiness; `last_error` says why.
        `model_digest` is the catalog's digest of a catalogued model (recorded as the pool's).
        In-flight tasks finish on the adapter they started on. A reload also closes an open
        circuit. A launched engine on a fixed port cannot run twice, so that pool stops its
        engine first and is unready while the new one starts.
        """
        pool = self.pools[pool_id]
        if pool.reloading:
            return False
        pool.reloading = True
        rt = self._rt[pool_id]
        try:
            await rt.stop()
            rt.reset()
            serving = any(h.ready for h in pool.replicas)
            installed = serving or rt.health_failed
            pc = self._config.pool(pool_id)
            if installed and pc.launch is not None and pc.launch.port is not None:
                await rt.teardown()
                installed = False
            try:
                # The old adapters of an endpoint pool serve on the same engine meanwhile.
                shared = installed and serving and pc.endpoint is not None
                loaded, pre = await self._bring_up(pool, new_model_ref, shared=shared)
            except Exception as exc:
                pool.last_error = f"reload to {new_model_ref} failed: {exc}"
                if not installed:
                    pool.preload_state = PreloadState.FAILED
                log.warning("reload failed", extra={"pool_id": pool_id, "error": pool.last_error})
                self._on_change(pool)
                self._spawn(pool, installed=installed, failed=None if installed else str(exc))
                return False
        finally:
            pool.reloading = False
        old = self._install(pool, loaded, pre)
        pool.model_ref = new_model_ref
        if model_digest is not None:
            pool.model_digest = model_digest
        pool.draining = False
        pool.drain_deadline = None
        pool.preload_state = PreloadState.READY
        pool.last_error = None
        self._on_change(pool)
        log.info("reload ok", extra={"pool_id": pool_id, "model_id": new_model_ref})
        self._spawn(pool, installed=True)
        self._retiring.retire(old)
        return True

    async def close(self) -> None:
        """Stop supervising, close adapters and stop every engine process we started."""
        for pool_id in self.pools:
            await self._rt[pool_id].stop()
        await self._retiring.close()
        handles = list(self._replicas.values())
        adapters = [h.adapter for h in handles if h.adapter is not None]
        await asyncio.gather(*(a.close() for a in adapters), return_exceptions=True)
        procs = [h.process for h in handles if h.process is not None]
        await asyncio.gather(*(p.stop() for p in procs), return_exceptions=True)
        for handle in handles:
            handle.ready = False
            handle.process = None
