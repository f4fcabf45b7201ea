"""The orchestrator service: admission, dispatch, task runs, cancel, watchdog, shutdown.

It turns scheduler decisions (`core.Scheduler`, pure) into actions on adapters (through the
pool manager) and events on task streams. Everything runs on one event loop, so a cancel and a
token append never interleave: once `cancel()` returns, no token can join the stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from llama_orch.reference_impl import core
from llama_orch.reference_impl.config import OrchestratorConfig
from llama_orch.reference_impl.policy import PolicyMetrics, host_for
from llama_orch.reference_impl.pool.manager import AdapterFactory, PoolManager
from llama_orch.reference_impl.pool.requests import AdapterError, CompletionRequest, SamplerParams
from llama_orch.reference_impl.pool.state import PoolState, PreloadState
from llama_orch.reference_impl.service import lifecycle, preemption, views
from llama_orch.reference_impl.service.admission import (
    Refused,
    admission_log,
    core_task,
    estimate_tokens,
    pick_pool,
    refusal,
    seed_from_task_id,
)
from llama_orch.reference_impl.service.artifacts import ArtifactStore
from llama_orch.reference_impl.service.build import core_pools, core_replicas, core_sessions
from llama_orch.reference_impl.service.catalog import CatalogService, ModelState
from llama_orch.reference_impl.service.metrics import ServiceMetrics
from llama_orch.reference_impl.service.records import NewTask, TaskRecord
from llama_orch.reference_impl.service.streams import TaskEvents
from llama_orch.reference_impl.service.telemetry import scheduler_families

log = logging.getLogger("llama_orch.reference_impl.service")

WATCHDOG_PERIOD_S = 0.05
METRICS_EVERY_TOKENS = 64
# Finished streams stay replayable (resume, late readers) this long, and at most this many of
# them: at high throughput the count bounds memory (~6.5 KB per 16-token stream, issue 16),
# the oldest going first.
STREAM_RETENTION_S = 120.0
MAX_FINISHED_STREAMS = 4096


class Orchestrator:
    """One per process; the HTTP layer calls it and nothing else."""

    def __init__(
        self,
        config: OrchestratorConfig,
        adapter_factory: AdapterFactory,
        *,
        metrics: ServiceMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.metrics = metrics or ServiceMetrics()
        self._clock = clock
        self._t0 = clock()
        self.pools = PoolManager(config, adapter_factory, on_change=self._pool_changed)
        # Policy plugins (extended profile): None unless the config's `policy` section asks.
        policy_metrics = PolicyMetrics(self.metrics.registry)
        self.policy = host_for(config.policy, config.source_path, policy_metrics)
        self.scheduler = core.Scheduler(
            core_pools(config),
            core_replicas(self.pools, config.policy.replica_labels),
            core_sessions(config),
            hooks=self.policy,
        )
        self.records: dict[str, TaskRecord] = {}
        self.max_finished = MAX_FINISHED_STREAMS
        self._finished_order: deque[tuple[float, str]] = deque()  # (finished at, task id)
        self._kick_pending = False
        self._background: list[asyncio.Task] = []
        self._shutdown: asyncio.Task | None = None
        self.accepting = True
        self.local_rejections: dict[tuple[str, str], int] = {}
        self.metrics.add_producer(lambda: scheduler_families(self))
        self.catalog = CatalogService(config, self.metrics)
        self.artifacts = ArtifactStore(config.artifacts.max_bytes, config.artifacts.max_count)
        self._spawned: set[asyncio.Task] = set()

    # -- time --------------------------------------------------------------------------
    def now_ms(self) -> int:
        return int((self._clock() - self._t0) * 1000)

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        await self.pools.start()
        loop = asyncio.get_running_loop()
        self._background = [
            loop.create_task(self._watchdog_loop()),
            loop.create_task(self._reaper_loop()),
        ]

    def begin_shutdown(self, deadline_s: float) -> asyncio.Task:
        """Stop admitting now; running streams may finish until the deadline, then end.

        Called on SIGTERM, before the server waits for open connections, so that streams
        close with a terminal event instead of being cut.
        """
        if self._shutdown is None:
            self.accepting = False
            self._shutdown = asyncio.get_running_loop().create_task(self._wind_down(deadline_s))
        return self._shutdown

    async def _wind_down(self, deadline_s: float) -> None:
        end = self._clock() + deadline_s
        while self._clock() < end and any(r.outcome is None for r in self.records.values()):
            await asyncio.sleep(0.05)
        for rec in list(self.records.values()):
            if rec.outcome is None:
                self.scheduler.cancel(rec.task_id, self.now_ms())
                self._terminate(rec, "POOL_UNAVAILABLE", "server shutting down", None)

    async def stop(self, deadline_s: float = 10.0) -> None:
        """Wind down (see begin_shutdown), then stop background work and close adapters."""
        await self.begin_shutdown(deadline_s)
        for task in [*self._background, *self._spawned]:
            task.cancel()
        await asyncio.gather(*self._background, *self._spawned, return_exceptions=True)
        runners = [r.runner for r in self.records.values() if r.runner is not None]
        await asyncio.gather(*runners, return_exceptions=True)
        await self.pools.close()
        if self.policy is not None:
            self.policy.close()

    # -- admission ---------------------------------------------------------------------
    def submit(self, task: NewTask) -> tuple[TaskRecord, core.Admitted]:
        """Admit a task or raise Refused; on success its stream exists with `started`."""
        try:
            return self._submit(task)
        except Refused as exc:
            if not exc.by_core:  # the core counts its own refusals
                key = (exc.engine or "", exc.rejected.code.value)
                self.local_rejections[key] = self.local_rejections.get(key, 0) + 1
            raise

    def _submit(self, task: NewTask) -> tuple[TaskRecord, core.Admitted]:
        if not self.accepting:
            raise Refused(refusal("POOL_UNAVAILABLE", "server is shutting down", 503), None, None)
        entry = self.catalog.resolve(task.model_ref)
        if entry is not None:  # a catalogued model: its lifecycle decides (ORCH-3070)
            retired = entry.state is ModelState.RETIRED
            if retired or (entry.state is ModelState.DEPRECATED and not task.override):
                hint = "" if retired else "; set override=true to use it"
                message = f"model {entry.model_id} is {entry.state.value}{hint}"
                raise Refused(refusal("MODEL_DEPRECATED", message, 400), task.engine, None)
            task = replace(task, model_ref=entry.digest)
        pool = pick_pool(self.pools.pools.values(), task, self.scheduler.pool_load)
        profile = task.sampler_profile_version or pool.sampler_profile_version
        if profile not in self.config.sampler_profiles:
            message = f"unknown sampler_profile_version {profile!r}"
            unknown = refusal("INVALID_PARAMS", message, 400, field="sampler_profile_version")
            raise Refused(unknown, task.engine, pool.pool_id)
        prompt_tokens = estimate_tokens(pool, task.prompt)
        decision = self.scheduler.admit(core_task(task, pool, prompt_tokens), self.now_ms())
        if isinstance(decision, core.Rejected):
            raise Refused(decision, pool.engine, pool.pool_id, by_core=True)
        rec = TaskRecord(
            task=task,
            pool_id=pool.pool_id,
            seed=task.seed if task.seed is not None else seed_from_task_id(task.task_id),
            sampler_profile_version=profile,
            prompt_tokens=prompt_tokens,
            admitted_at=self._clock(),
            stream=TaskEvents(task.task_id),
        )
        self.records[task.task_id] = rec
        started = {
            "queue_position": decision.queue_position,
            "predicted_start_ms": decision.predicted_start_ms,
        }
        rec.stream.emit("started", started)
        rec.stream.emit("metrics", self._planning(rec, decision.on_time_probability))
        for evicted in decision.evicted:
            self._evicted(evicted)
        log.info("admitted", extra=admission_log(task, pool, decision))
        self._kick()
        return rec, decision

    def _evicted(self, evicted: core.Eviction) -> None:
        """The core removed a queued task (full-queue policy, preemption, drain)."""
        rec = self.records.get(evicted.task_id)
        if rec is not None:
            self._terminate(rec, evicted.code.value, f"task {evicted.reason}", None)

    # -- dispatch and runs -------------------------------------------------------------
    def _kick(self) -> None:
        """Coalesce dispatch passes: many events in one loop turn cause one pass."""
        if not self._kick_pending:
            self._kick_pending = True
            asyncio.get_running_loop().call_soon(self._dispatch)

    def _dispatch(self) -> None:
        self._kick_pending = False
        for d in self.scheduler.dispatch(self.now_ms()):
            rec = self.records.get(d.task_id)
            if rec is None or rec.outcome is not None:
                self.scheduler.complete(d.task_id, self.now_ms(), 0, False)
                continue
            rec.replica_id = d.replica_id
            rec.dispatched_at = rec.dispatched_at or self._clock()
            rec.extra["kv_warmth"] = d.kv_warmth
            pool = self.pools.pools[d.pool_id]
            self.metrics.child(
                self.metrics.tokens_in, pool.engine, pool.engine_version, pool.pool_id, d.replica_id
            ).inc(rec.prompt_tokens)
            # KV never moves between replicas (ORCH-3023): a cold placement says so explicitly.
            rec.stream.emit(
                "metrics",
                {
                    **self._planning(rec, None),
                    "kv_warmth": d.kv_warmth,
                    "kv_migrated": False,
                    "replica_id": d.replica_id,
                    **({"resumed": True} if d.resumed else {}),
                },
            )
            rec.runner = asyncio.get_running_loop().create_task(self._run(rec, d, pool))
        for decision in self.scheduler.preempt_hard(self.now_ms()):  # no free slot was left
            preemption.interrupt(self, decision)

    async def _run(self, rec: TaskRecord, d: core.Dispatch, pool: PoolState) -> None:
        adapter = self.pools.replica(d.replica_id).adapter
        profile = self.config.sampler_profile(rec.sampler_profile_version)
        request = CompletionRequest(
            request_id=rec.task_id,
            prompt=rec.task.prompt,
            max_tokens=rec.task.max_tokens,
            seed=rec.seed,
            sampler=SamplerParams(
                temperature=profile.temperature,
                top_k=profile.top_k,
                top_p=profile.top_p,
                min_p=profile.min_p,
            ),
            sampler_profile_version=rec.sampler_profile_version,
            stop=rec.task.stop,
            resume=preemption.resume_state(self, rec, d),
        )
        labels = (pool.engine, pool.engine_version, pool.pool_id, d.replica_id)
        priority = rec.task.priority
        rec.tokens_out = self.metrics.child(self.metrics.tokens_out, *labels)
        stream = rec.stream
        gen = adapter.stream(request)
        try:
            async for event in gen:
                if not stream.token(event.text, self._clock(), event.token_id):
                    break
                if stream.tokens == 1:
                    first = self.metrics.child(self.metrics.first_token, *labels[:3], priority)
                    first.observe(self._clock() - rec.admitted_at)
                self.scheduler.progress(rec.task_id, self.now_ms())
                if stream.tokens % METRICS_EVERY_TOKENS == 0:
                    self._report_tokens(rec)
                    stream.emit("metrics", self._planning(rec, None))
            if preemption.after_run(self, rec):
                return  # hard-preempted: queued again, to resume from its state
            finish = gen.end.finish_reason if gen.end is not None else None
            self._report_tokens(rec)  # counted before a reader can see `end`
            if stream.end(self._clock(), finish):
                self._finished(rec, "done", ok=True)
        except AdapterError as exc:
            if exc.oom is not None:  # VRAM vs host OOM (ORCH-3039)
                self.pools.out_of_memory(d.replica_id, exc.oom, exc.message)
            self._terminate(rec, exc.code, exc.message, None, engine=pool.engine)
        except asyncio.CancelledError:
            pass  # cancel, watchdog or drain already closed the stream and freed the slot
        except Exception as exc:
            log.exception("task run failed", extra={"job_id": rec.task_id})
            self._terminate(rec, "INTERNAL", f"internal error: {exc.__class__.__name__}", None)
        finally:
            self._report_tokens(rec)
            await gen.aclose()
            if stream.first_token_at is not None and stream.finished_at is not None:
                decode = self.metrics.child(self.metrics.decode, *labels[:3], priority)
                decode.observe(stream.finished_at - stream.first_token_at)

    @staticmethod
    def _report_tokens(rec: TaskRecord) -> None:
        """Add the stream's tokens not yet counted to `tokens_out` (one increment per batch
        instead of one per token; always before the terminal event is appended)."""
        fresh = rec.stream.tokens - rec.tokens_reported
        if fresh and rec.tokens_out is not None:
            rec.tokens_out.inc(fresh)
            rec.tokens_reported += fresh

    def _finished(self, rec: TaskRecord, outcome: str, *, ok: bool) -> None:
        if rec.outcome is not None:
            return
        rec.outcome = outcome
        self._retain(rec)
        self.scheduler.complete(rec.task_id, self.now_ms(), rec.stream.tokens, ok)
        log.info("task finished", extra=rec.finish_log(self.pools.pools[rec.pool_id], outcome))
        self._kick()

    def _terminate(
        self,
        rec: TaskRecord,
        code: str,
        message: str,
        cancel_reason: str | None,
        *,
        engine: str | None = None,
    ) -> None:
        """End a task with an `error` event (or `end` for a user cancel) and free its slot."""
        pool = self.pools.pools[rec.pool_id]
        self._report_tokens(rec)
        if cancel_reason == "user":
            rec.stream.end(self._clock(), "canceled")
        else:
            rec.stream.finish(
                "error",
                {"code": code, "message": message, "engine": engine or pool.engine},
                self._clock(),
            )
            self.metrics.child(self.metrics.failed, pool.engine, rec.task.priority, code).inc()
        runner = rec.runner
        if runner is not None and not runner.done() and runner is not asyncio.current_task():
            runner.cancel()
        self._finished(rec, cancel_reason or code.lower(), ok=False)

    # -- cancel, watchdog, reaping -----------------------------------------------------
    def cancel(self, task_id: str) -> bool:
        """Cancel a task; False if unknown. Idempotent for finished tasks."""
        rec = self.records.get(task_id)
        if rec is None:
            return False
        if rec.outcome is None:
            self.scheduler.cancel(task_id, self.now_ms())
            self._terminate(rec, "", "", "user")
        return True

    async def _watchdog_loop(self) -> None:
        while True:
            await asyncio.sleep(WATCHDOG_PERIOD_S)
            for timeout in self.scheduler.expired(self.now_ms()):
                rec = self.records.get(timeout.task_id)
                if rec is not None and rec.outcome is None:
                    self._terminate(
                        rec, "DECODE_TIMEOUT", f"watchdog: {timeout.kind} timeout", "watchdog"
                    )
            self._enforce_drain_deadlines()

    def _enforce_drain_deadlines(self) -> None:
        now = self._clock()
        for pool in self.pools.pools.values():
            if pool.draining and pool.drain_deadline is not None and now >= pool.drain_deadline:
                for rec in list(self.records.values()):
                    if rec.pool_id == pool.pool_id and rec.outcome is None:
                        self.scheduler.cancel(rec.task_id, self.now_ms())
                        self._terminate(rec, "POOL_UNAVAILABLE", "pool drained", None)

    def _retain(self, rec: TaskRecord) -> None:
        """Queue a finished task for reaping; past `max_finished`, reap the oldest now."""
        order = self._finished_order
        order.append((rec.stream.finished_at or self._clock(), rec.task_id))
        while len(order) > self.max_finished:
            self._reap(order.popleft()[1])

    def _reap(self, task_id: str) -> None:
        rec = self.records.get(task_id)
        if rec is not None and rec.outcome is not None:
            del self.records[task_id]

    def reap(self, now: float) -> None:
        """Forget the streams that finished more than STREAM_RETENTION_S before `now`."""
        horizon = now - STREAM_RETENTION_S
        order = self._finished_order
        while order and order[0][0] < horizon:
            self._reap(order.popleft()[1])

    async def _reaper_loop(self) -> None:
        while True:
            await asyncio.sleep(5.0)
            self.reap(self._clock())

    # -- pools -------------------------------------------------------------------------
    def _pool_changed(self, pool: PoolState) -> None:
        self.scheduler.set_ctx_max(pool.pool_id, pool.ctx_max)
        for handle in pool.replicas:
            self.scheduler.set_replica(
                handle.replica_id,
                ready=handle.ready and pool.ready,
                slots_total=handle.slots_total,
                failed=_cannot_serve_now(pool),
                interruptible=handle.interruptible,
            )
        for evicted in self.scheduler.set_draining(pool.pool_id, pool.draining):
            self._evicted(evicted)
        try:
            self._kick()
        except RuntimeError:  # no running loop yet (construction time)
            pass

    def drain(self, pool_id: str, deadline_ms: int) -> None:
        """Stop dispatching to the pool; queued tasks end now, running ones by the deadline."""
        self.pools.drain(pool_id, self._clock() + deadline_ms / 1000)

    def reload(self, pool_id: str, new_model_ref: str) -> asyncio.Task:
        """Reload a pool; a catalogued model is resolved and checked first (service.lifecycle)."""
        return self.background(
            asyncio.get_running_loop().create_task(lifecycle.rollout(self, pool_id, new_model_ref))
        )

    def set_model_state(self, model_id: str, state: str, deadline_ms: int | None) -> None:
        """Move a catalogued model to `state` (CatalogError when not allowed)."""
        lifecycle.transition(self, model_id, ModelState(state), deadline_ms)

    def background(self, task: asyncio.Task) -> asyncio.Task:
        """Keep a reference to a background task until it ends."""
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)
        return task

    def running_on(self, pool_id: str) -> bool:
        """Whether a task admitted to the pool has not ended yet."""
        return any(r.pool_id == pool_id and r.outcome is None for r in self.records.values())

    # -- read models (what the HTTP layer serves; see views.py) ------------------------
    def has_pool(self, pool_id: str) -> bool:
        return pool_id in self.pools.pools

    def pool_health(self, pool_id: str) -> views.PoolHealth | None:
        """The pool's health, or None for an unknown pool."""
        return views.pool_health(self.pools, self.scheduler.snapshot(self.now_ms()), pool_id)

    def replica_sets(self) -> list[views.ReplicaSet]:
        snapshot = self.scheduler.snapshot(self.now_ms())
        return views.replica_sets(self.pools.pools.values(), snapshot)

    def capabilities(self) -> list[views.EngineCapabilities]:
        return views.capabilities(self.config, self.pools, self.policy is not None)

    def policy_host_view(self) -> dict | None:
        """What the policy host declares (capabilities.policy_host), or None without one."""
        return self.policy.describe() if self.policy is not None else None

    def tools_offered(self) -> bool:
        return self.policy is not None and self.policy.tools is not None

    def invoke_tool(self, request: dict, *, caller: str) -> dict:
        """One mediated tool call (blocking: call it from a worker thread)."""
        assert self.policy is not None and self.policy.tools is not None
        return self.policy.tools.invoke(request, caller=caller)

    def task_view(self, task_id: str, tenant: str | None) -> views.TaskView:
        """The task as `tenant` (None: an operator) may see it; NoSuchTask / NotYourTask."""
        return views.task_view(self.records, task_id, tenant)

    def session(self, session_id: str) -> core.SessionView | None:
        """The live session's TTL, turns, KV and budgets; None when unknown or expired."""
        return self.scheduler.session(session_id, self.now_ms())

    def end_session(self, session_id: str) -> bool:
        """Forget a session now; False when it was unknown or had already expired."""
        return self.scheduler.delete_session(session_id, self.now_ms())

    def _planning(self, rec: TaskRecord, on_time: float | None) -> dict[str, Any]:
        return views.planning(self.scheduler, rec, on_time, self.now_ms())


def _cannot_serve_now(pool: PoolState) -> bool:
    """A pool that failed, is retrying after a failure, or has its circuit open fails fast
    (503 POOL_UNAVAILABLE with retry hints) instead of queueing work (ORCH-3018)."""
    retrying = pool.restarts > 0 and pool.preload_state is PreloadState.LOADING
    down = pool.preload_state in (PreloadState.FAILED, PreloadState.UNLOADED)
    return down or retrying or pool.breaker_open
