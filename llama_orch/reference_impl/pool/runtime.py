"""Per-pool supervision: fault handling, heartbeats, teardown and restart pacing.

One `PoolRuntime` per pool, driven by the pool manager's lifecycle task. A fault (engine
exit, failed heartbeats) makes the pool unready at once and is logged as `driver_reset`; the
teardown kills the pool's engines so running streams end with WORKER_RESET; the back-off
waits out the exponential delay, or the cool-down when the circuit breaker opens
(specs/30 sections 1 and 3). An endpoint engine that answers again is self-tested before its
pool turns Ready again (ORCH-3049).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llama_orch.reference_impl.config import AdapterKind, PoolConfig
from llama_orch.reference_impl.pool.backoff import RestartGovernor, Retry
from llama_orch.reference_impl.pool.determinism import DeterminismSettings, slot_cap
from llama_orch.reference_impl.pool.preflight import PoolFault
from llama_orch.reference_impl.pool.selftest import raise_on_failure
from llama_orch.reference_impl.pool.selftest_book import SelfTestBook
from llama_orch.reference_impl.pool.state import PoolState, PreloadState

log = logging.getLogger("llama_orch.reference_impl.pool")

HEARTBEAT_S = 2.0
HEARTBEAT_MISSES = 3  # failed heartbeats in a row that make a launched engine a fault


async def gather_or_raise(aws: list[Any]) -> list[Any]:
    """Like gather, but lets every awaitable finish before raising the first error."""
    results = await asyncio.gather(*aws, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


@dataclass
class PoolRuntime:
    """Supervision state of one pool that the health endpoint does not show."""

    pool: PoolState
    config: PoolConfig
    governor: RestartGovernor
    on_change: Callable[[PoolState], None]
    clock: Callable[[], float]
    self_tests: SelfTestBook
    heartbeat_s: float = HEARTBEAT_S
    health_timeout_s: float | None = None  # None: twice the heartbeat period, at least 0.5 s
    task: asyncio.Task | None = None
    fault_event: asyncio.Event = field(default_factory=asyncio.Event)
    fault_cause: str | None = None
    health_failed: bool = False  # an endpoint pool made unready by its heartbeat
    closed: list[Any] = field(default_factory=list)  # adapters closed by a fault teardown
    determinism: DeterminismSettings | None = None  # the serving generation's settings

    def installed(self) -> None:
        """A new set of engines serves: forget the previous generation's fault."""
        self.closed.clear()
        self.fault_event.clear()
        self.fault_cause = None
        self.health_failed = False

    def fault(self, cause: str) -> None:
        """A serving engine failed: unready at once; the lifecycle restarts it."""
        pool = self.pool
        if self.fault_event.is_set():
            return
        for handle in pool.replicas:
            handle.ready = False
        pool.preload_state = PreloadState.FAILED
        pool.last_error = cause
        pool.driver_resets += 1
        devices = sorted(self.config.devices)
        log.warning(
            "driver reset",
            extra={
                "event": "driver_reset",
                "pool_id": pool.pool_id,
                "engine": pool.engine,
                "device": "cpu" if pool.cpu_inference else ",".join(map(str, devices)),
                "error": cause,
            },
        )
        self.fault_cause = cause
        self.fault_event.set()
        self.on_change(pool)

    async def watch(self) -> str:
        """Wait for a fault and return its cause; heartbeat engines outside this process."""
        heartbeat = self.config.adapter != AdapterKind.MOCK
        launched = self.config.launch is not None
        misses = 0
        for handle in self.pool.replicas:  # died between its start and the install
            if handle.process is not None and handle.process.exited.is_set():
                self.fault(handle.process.describe_exit())
        while True:
            with contextlib.suppress(TimeoutError):
                timeout = self.heartbeat_s if heartbeat else None
                await asyncio.wait_for(self.fault_event.wait(), timeout)
                return self.fault_cause or "engine fault"
            detail = await self.probe()
            if detail is None:
                misses = 0
                if self.health_failed:
                    await self._recovered()
                continue
            misses += 1
            if launched and misses >= HEARTBEAT_MISSES:
                self.fault(f"engine stopped answering health checks: {detail}")
            elif not launched and not self.health_failed:
                self._unhealthy(detail)

    def _unhealthy(self, detail: str) -> None:
        """An endpoint engine (someone else's) stopped answering: unready until it does."""
        pool = self.pool
        self.health_failed = True
        for handle in pool.replicas:
            handle.ready = False
        pool.preload_state = PreloadState.FAILED
        pool.last_error = f"engine health check failed: {detail}"
        log.warning("engine unhealthy", extra={"event": "health", "pool_id": pool.pool_id})
        self.on_change(pool)

    async def probe(self) -> str | None:
        """None when every replica reports ready, else a one-line reason."""
        adapters = [h.adapter for h in self.pool.replicas if h.adapter is not None]
        limit = self.health_timeout_s or max(0.5, 2 * self.heartbeat_s)
        results = await asyncio.gather(
            *(asyncio.wait_for(a.health(), limit) for a in adapters), return_exceptions=True
        )
        for r in results:
            if isinstance(r, TimeoutError):
                return f"no answer within {limit:g} s"
            if isinstance(r, BaseException):
                return str(r) or repr(r)
            if not r.ready:
                return r.detail or ("not ready" if r.live else "not answering")
        return None

    async def _recovered(self) -> None:
        """The endpoint answers again: Ready only once every replica passes the self-test
        again; a failure keeps the pool unready (the next heartbeat tries again)."""
        pool = self.pool
        adapters = [h.adapter for h in pool.replicas]
        try:
            raise_on_failure(await self.self_tests.run(pool, adapters, shared=False))
        except PoolFault as fault:
            pool.last_error = str(fault)
            self.on_change(pool)
            return
        try:
            props = await gather_or_raise([a.props() for a in adapters])
        except Exception:
            return  # still not usable; the next heartbeat tries again
        self.self_tests.installed(pool.pool_id)
        for handle, p in zip(pool.replicas, props, strict=True):
            handle.ready = True
            handle.slots_total = slot_cap(self.determinism, p.slots_total)
        pool.engine_version = props[0].engine_version
        pool.preload_state = PreloadState.READY
        pool.last_error = None
        self.health_failed = False
        log.info("engine healthy again", extra={"event": "health", "pool_id": pool.pool_id})
        self.on_change(pool)

    async def teardown(self) -> None:
        """Kill the pool's engines (their sockets close: streams fail) and close adapters."""
        procs = [h.process for h in self.pool.replicas if h.process is not None]
        adapters = [h.adapter for h in self.pool.replicas if h.adapter is not None]
        for handle in self.pool.replicas:
            handle.ready = False
            handle.process = None
        await asyncio.gather(*(p.kill() for p in procs), return_exceptions=True)
        await asyncio.gather(*(a.close() for a in adapters), return_exceptions=True)
        self.closed = adapters

    async def back_off(self, cause: str) -> None:
        """Wait out the backoff delay, or the cool-down when the circuit opens."""
        pool = self.pool
        decision = self.governor.on_failure(self.clock())
        if isinstance(decision, Retry):
            pool.restarts += 1
            pool.next_retry_at = decision.at
            log.warning(
                "restart scheduled",
                extra={
                    "event": "restart",
                    "pool_id": pool.pool_id,
                    "engine": pool.engine,
                    "attempt": decision.attempt,
                    "backoff_ms": int(decision.delay_s * 1000),
                    "error": cause,
                },
            )
            self.on_change(pool)
            await asyncio.sleep(decision.delay_s)
            return
        breaker = self.governor.breaker
        pool.breaker_open, pool.breaker_until = True, decision.until
        pool.next_retry_at = decision.until
        pool.preload_state = PreloadState.FAILED
        pool.last_error = (
            f"circuit open: {decision.failures} failures within {breaker.window_s:g} s, "
            f"automatic restarts paused for {breaker.cooldown_s:g} s (a reload retries now); "
            f"last: {cause}"
        )
        log.error(
            "circuit open",
            extra={"event": "circuit_open", "pool_id": pool.pool_id, "error": pool.last_error},
        )
        self.on_change(pool)
        while not self.governor.close_if_cooled(self.clock()):
            assert self.governor.open_until is not None
            await asyncio.sleep(max(0.01, self.governor.open_until - self.clock()))

    def reset(self) -> None:
        """An operator's reload: close the circuit and forget past failures."""
        self.governor.reset()
        pool = self.pool
        pool.breaker_open, pool.breaker_until, pool.next_retry_at = False, None, None

    async def stop(self) -> None:
        """Cancel the lifecycle task and wait until it has cleaned up."""
        task = self.task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
