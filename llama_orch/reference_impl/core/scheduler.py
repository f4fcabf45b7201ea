"""`Scheduler`: the façade of the core; one instance holds all scheduling state of a process.

Every call takes the time as `now_ms`; the core keeps a monotone clock (a smaller value than
one already seen is treated as the latest one) so a caller's clock jitter cannot reorder
events. Admission order of checks (each refusal counted in `rejected[(pool, code)]`):

1. unknown priority -> 400 INVALID_PARAMS (field "priority"; plain strings are accepted);
   task_id already known -> 400 INVALID_PARAMS (field "task_id"); unknown pool -> 400
   INVALID_PARAMS (field "pool_id"); ctx and token guardrails -> 400 INVALID_PARAMS; a pin
   naming no replica of the pool -> 400 INVALID_PARAMS (field "placement.replica_id"), a pin
   to a failed replica -> 503 POOL_UNAVAILABLE;
2. session turns / budgets -> 400 ADMISSION_REJECT, not retriable (specs/10 section 4; the
   façade's "429 for budget" is overruled by the spec);
3. pool draining or no replica that can become Ready -> 503 POOL_UNAVAILABLE; no Ready replica
   -> 503 POOL_UNREADY; both retriable with retry_after_ms;
4. tenant max_concurrent / max_memory_bytes / rps and class rps -> 429 ADMISSION_REJECT with
   retry_after_ms and the pool's policy_label; then policy plugins (hooks.py), when given:
   the session hook, then the admission hook -> ADMISSION_REJECT with the plugin's
   policy_label (429 with a retry hint, else 400);
5. the pool's SLO circuit breaker is open and sheds the task's class -> 429 ADMISSION_REJECT,
   retriable (slo.py);
6. deadline infeasible and `reject_infeasible` -> 400 DEADLINE_UNMET;
7. full queue -> soft preemption, then the full policy (see policies.py).
Only when all pass are rate tokens taken, quotas and the session charged, and the task queued.

Hard preemption (preemption.py) is asked for with `preempt_hard`, after dispatch found no free
slot; the service reports the engine's answer with `requeue` or `preempt_refused`.

Terminal task ids are remembered (bounded, `terminal_memory`, oldest forgotten first) for
idempotent cancel and duplicate detection.
"""

from __future__ import annotations

from dataclasses import replace

from . import endings, guardrails, queries
from .admission import live_refusal, make_room, pin_refusal
from .deadlines import expected_tokens, feasible, on_time_probability
from .hooks import PolicyHooks, admission_refusal, place
from .placement import Replica
from .pools import CorePool
from .preemption import hard_victims
from .queue import TaskEntry
from .snapshot import UNASSIGNED, Counters, Snapshot
from .state import CoreState
from .types import (
    Admitted,
    CancelResult,
    Dispatch,
    ErrorCode,
    Eviction,
    HardPreemption,
    PoolSpec,
    PreemptionMode,
    Priority,
    Rejected,
    ReplicaSpec,
    SessionPolicy,
    SessionView,
    TaskSpec,
    TaskState,
    Timeout,
)
from .watchdog import queued_overdue, running_overdue

# backoff_ms advises opening the stream about a second before the predicted start.
BACKOFF_LEAD_MS = 1_000


class Scheduler:
    """Queues, admission, fairness, placement, sessions and watchdog over plain data.

    The records live in `CoreState` (state.py); tasks end through endings.py and read-only
    queries are answered by queries.py. This class decides, keeps the clock and counts.
    """

    def __init__(
        self,
        pools: list[PoolSpec],
        replicas: list[ReplicaSpec],
        sessions: SessionPolicy | None = None,
        *,
        terminal_memory: int = 100_000,
        hooks: PolicyHooks | None = None,
    ) -> None:
        self._state = CoreState.build(pools, replicas, sessions or SessionPolicy(), terminal_memory)
        self._hooks = hooks  # policy plugins (hooks.py); None: built-in behaviour only
        self.counters = Counters()
        self._seq = 0
        self._now = 0

    def _clock(self, now_ms: int) -> int:
        self._now = max(self._now, now_ms)
        return self._now

    # -- admission ---------------------------------------------------------------------------

    def admit(self, task: TaskSpec, now_ms: int) -> Admitted | Rejected:
        """Admit `task` into its pool's queue or refuse it (see the module docstring)."""
        now = self._clock(now_ms)
        state = self._state
        pool = state.pools.get(task.pool_id)
        if not isinstance(task.priority, Priority):  # a plain string from the caller
            if task.priority not in set(Priority):
                return self._refuse(task, guardrails.invalid("unknown priority", "priority"))
            task = replace(task, priority=Priority(task.priority))
        if task.task_id in state.tasks or task.task_id in state.ended:
            return self._refuse(task, guardrails.invalid("task_id already known", "task_id"))
        if pool is None:
            msg = f"unknown pool {task.pool_id!r}"
            return self._refuse(task, guardrails.invalid(msg, "pool_id"))
        refusal = (
            guardrails.check_task(task, pool.spec)
            or pin_refusal(task, state.replicas)
            or live_refusal(task, pool, state.sessions, now)
            or admission_refusal(self._hooks, task, pool, state.sessions, now)
            or self._slo_refusal(task, pool, now)
        )
        if refusal is not None:
            return self._refuse(task, refusal)
        abs_deadline = now + task.deadline_ms if task.deadline_ms else None
        seq = self._seq
        free, total = pool.slots()
        ahead = pool.ahead_new(task, abs_deadline, seq)
        start = pool.predictor.start_ms(ahead, free, total)
        decode = pool.predictor.decode_ms(expected_tokens(task))
        if pool.spec.reject_infeasible and not feasible(start, decode, task.deadline_ms):
            msg = f"deadline {task.deadline_ms} ms < predicted finish {start + decode} ms"
            return self._refuse(task, Rejected(ErrorCode.DEADLINE_UNMET, msg, 400))
        room = self._make_room(task, pool, now)
        if isinstance(room, Rejected):
            return self._refuse(task, room)
        self._seq += 1
        entry = TaskEntry(task, seq, now, abs_deadline, pool.mem_bytes(task))
        self._commit(entry, pool, now)
        position = pool.ahead_of(entry)
        start = pool.predictor.start_ms(position, free, total)
        return Admitted(
            task_id=task.task_id,
            pool_id=task.pool_id,
            queue_position=position,
            predicted_start_ms=start,
            backoff_ms=max(0, start - BACKOFF_LEAD_MS),
            on_time_probability=on_time_probability(start, decode, task.deadline_ms),
            evicted=room,
            weight=pool.weight(entry.flow_key),
        )

    def _slo_refusal(self, task: TaskSpec, pool: CorePool, now: int) -> Rejected | None:
        breaker = self._state.breakers.get(task.pool_id)
        if breaker is None:
            return None
        return breaker.refusal(task.priority, now, pool.spec.full_policy.value)

    def _make_room(
        self, task: TaskSpec, pool: CorePool, now: int
    ) -> tuple[Eviction, ...] | Rejected:
        """Evict what `make_room` chose and count it (backpressure / preemptions)."""
        pid, policy = pool.spec.pool_id, pool.spec.full_policy.value
        room = make_room(task, pool, now)
        if isinstance(room, Rejected):
            self.counters.backpressure[(pid, policy)] += 1
            return room
        if room.victim is None or room.code is None:
            return ()
        if room.preempted:
            self.counters.preemptions[(pid, PreemptionMode.SOFT.value)] += 1
        else:
            self.counters.backpressure[(pid, policy)] += 1
        endings.end_queued(self._state, room.victim, TaskState.EVICTED, now)
        self.counters.evicted[(pid, room.code.value)] += 1
        return (Eviction(room.victim.task_id, room.code, room.reason),)

    def _commit(self, entry: TaskEntry, pool: CorePool, now: int) -> None:
        task = entry.spec
        tenant = pool.tenants.get(task.tenant)
        if tenant is not None:
            tenant.admit(task.task_id, entry.mem_bytes, now)
        bucket = pool.class_buckets.get(task.priority)
        if bucket is not None:
            bucket.take(now)
        need = task.prompt_tokens + task.max_tokens
        self._state.sessions.begin(task.session_id, need, now, task.tenant)
        self._state.tasks[task.task_id] = entry
        pool.enqueue(entry)
        pool.load_queued(task)
        self.counters.enqueued[(task.pool_id, task.priority.value)] += 1

    def _refuse(self, task: TaskSpec, rejected: Rejected) -> Rejected:
        pid = task.pool_id if task.pool_id in self._state.pools else ""
        self.counters.rejected[(pid, rejected.code.value)] += 1
        return rejected

    # -- dispatch ----------------------------------------------------------------------------

    def dispatch(self, now_ms: int) -> list[Dispatch]:
        """Fill every free slot of every Ready replica; pools in pool_id order."""
        now = self._clock(now_ms)
        sessions = self._state.sessions
        out: list[Dispatch] = []
        for pool in self._state.pools.values():
            if pool.pinned_queued and not pool.draining:
                out += self._dispatch_pinned(pool, now)
            while pool.unpinned_queued and pool.has_free_slot():
                entry = pool.pop_next()
                if entry is None:  # pragma: no cover - the WFQ invariant forbids it
                    break
                affinity = sessions.affinity(entry.spec.session_id)
                picked = place(self._hooks, entry, pool, affinity)
                assert picked is not None  # has_free_slot() said so
                replica, warm = picked
                out.append(self._start(entry, pool, replica, warm, now))
        return out

    def _dispatch_pinned(self, pool: CorePool, now: int) -> list[Dispatch]:
        """Pinned tasks first, each on its own replica while it has free slots."""
        out: list[Dispatch] = []
        sessions = self._state.sessions
        for replica in pool.replicas:
            while replica.usable and replica.free > 0:
                entry = pool.pop_pinned(replica.replica_id)
                if entry is None:
                    break
                warm = sessions.affinity(entry.spec.session_id) == replica.replica_id
                out.append(self._start(entry, pool, replica, warm, now))
        return out

    def _start(
        self, entry: TaskEntry, pool: CorePool, replica: Replica, warm: bool, now: int
    ) -> Dispatch:
        tid = entry.task_id
        entry.state = TaskState.RUNNING
        entry.replica_id = replica.replica_id
        entry.dispatch_ms = entry.last_progress_ms = now
        entry.warm = warm
        replica.busy.add(tid)
        pool.running += 1
        pool.load_started(entry.spec)
        self._state.running[tid] = entry
        self._state.shares.observe(entry.flow_key)
        key = (pool.spec.pool_id, replica.replica_id, entry.spec.priority.value)
        self.counters.started[key] += 1
        queued = now - entry.admit_ms
        return Dispatch(tid, pool.spec.pool_id, replica.replica_id, warm, queued, entry.resumes > 0)

    # -- hard preemption (preemption.py) -----------------------------------------------------

    def preempt_hard(self, now_ms: int) -> list[HardPreemption]:
        """Running tasks to interrupt for urgent queued work, in pools of mode `hard`."""
        now = self._clock(now_ms)
        state = self._state
        out: list[HardPreemption] = []
        for pid, pool in state.pools.items():
            if pool.spec.preemption is PreemptionMode.HARD:
                out += hard_victims(pool, state.running.values(), state.hard_windows[pid], now)
        return out

    def preempt_refused(self, task_id: str) -> None:
        """The engine could not interrupt the task: it runs on and is never asked again."""
        entry = self._state.running.get(task_id)
        if entry is not None:
            entry.preempting = False
            entry.no_preempt = True

    def requeue(self, task_id: str, now_ms: int) -> bool:
        """An interrupted task gave its slot back with a resumable state: it waits at the
        head of its flow and is dispatched again as `resumed`. False when it was not being
        preempted (it ended meanwhile)."""
        now = self._clock(now_ms)
        state = self._state
        entry = state.running.get(task_id)
        if entry is None or not entry.preempting:
            return False
        pool = state.pools[entry.spec.pool_id]
        state.replicas[entry.replica_id or ""].busy.discard(task_id)
        pool.running -= 1
        del state.running[task_id]
        entry.state = TaskState.QUEUED
        entry.preempting = False
        entry.replica_id = None
        entry.resumes += 1
        entry.last_progress_ms = now
        pool.requeue(entry)
        self.counters.preemptions[(pool.spec.pool_id, PreemptionMode.HARD.value)] += 1
        return True

    # -- task life cycle (the endings themselves: endings.py) --------------------------------

    def cancel(self, task_id: str, now_ms: int) -> CancelResult:
        """Final: a cancelled task is never dispatched and its slot (if any) is free now."""
        now = self._clock(now_ms)
        state = self._state
        entry = state.tasks.get(task_id)
        if entry is None:
            return CancelResult.DONE if task_id in state.ended else CancelResult.UNKNOWN
        pid = entry.spec.pool_id
        if entry.state is TaskState.QUEUED:
            endings.end_queued(state, entry, TaskState.CANCELED, now)
            self.counters.canceled[(pid, UNASSIGNED, "user")] += 1
            return CancelResult.QUEUED
        replica_id = entry.replica_id or UNASSIGNED
        endings.end_running(state, entry, TaskState.CANCELED, now, entry.tokens_seen, ok=False)
        self.counters.canceled[(pid, replica_id, "user")] += 1
        return CancelResult.RUNNING

    def complete(self, task_id: str, now_ms: int, tokens_out: int, ok: bool) -> None:
        """A running task ended; unknown, queued or already ended tasks are ignored."""
        now = self._clock(now_ms)
        state = self._state
        entry = state.running.get(task_id)
        if entry is None:
            return
        pool = state.pools[entry.spec.pool_id]
        if ok:
            pool.predictor.observe(now - entry.dispatch_ms, tokens_out)
        if entry.abs_deadline is not None:
            state.met[entry.spec.priority].record(ok and now <= entry.abs_deadline)
        endings.end_running(state, entry, TaskState.DONE, now, tokens_out, ok=ok)

    def progress(self, task_id: str, now_ms: int) -> None:
        """A token of a running task arrived: resets its idle clock."""
        now = self._clock(now_ms)
        entry = self._state.running.get(task_id)
        if entry is not None:
            breaker = self._state.breakers.get(entry.spec.pool_id)
            if breaker is not None and entry.tokens_seen == 0:
                breaker.record(entry.spec.priority, now - entry.admit_ms, now)
            entry.last_progress_ms = now
            entry.tokens_seen += 1

    def expired(self, now_ms: int) -> list[Timeout]:
        """Report and remove tasks past their wall or idle timeout (running, then queued)."""
        now = self._clock(now_ms)
        state = self._state
        out: list[Timeout] = []
        for entry in list(state.running.values()):
            spec = state.pools[entry.spec.pool_id].spec
            kind = running_overdue(entry, now, spec.wall_ms, spec.idle_ms)
            if kind is None:
                continue
            if entry.abs_deadline is not None:
                state.met[entry.spec.priority].record(False)
            key = (spec.pool_id, entry.replica_id or UNASSIGNED, "watchdog")
            endings.end_running(state, entry, TaskState.EXPIRED, now, entry.tokens_seen, ok=False)
            self.counters.canceled[key] += 1
            out.append(Timeout(entry.task_id, kind, running=True))
        for pool in state.pools.values():
            while (head := pool.queue.oldest()) is not None and queued_overdue(
                head, now, pool.spec.wall_ms
            ):
                endings.end_queued(state, head, TaskState.EXPIRED, now)
                self.counters.canceled[(pool.spec.pool_id, UNASSIGNED, "watchdog")] += 1
                out.append(Timeout(head.task_id, "wall", running=False))
        state.sessions.purge(now)
        return out

    # -- replicas and pools ------------------------------------------------------------------

    def set_replica(
        self,
        replica_id: str,
        *,
        ready: bool,
        slots_total: int | None = None,
        failed: bool | None = None,
        interruptible: bool | None = None,
    ) -> None:
        """Pool manager update; `failed` marks a replica that cannot become Ready;
        `interruptible`: its adapter proved interruptible decode (hard preemption)."""
        replica = self._state.replicas[replica_id]
        replica.ready = ready
        if interruptible is not None:
            replica.interruptible = interruptible
        if slots_total is not None:
            replica.slots_total = max(0, slots_total)
        if failed is not None:
            replica.failed = failed

    def set_ctx_max(self, pool_id: str, ctx_max: int) -> None:
        """Pool manager update: the context the pool's engines really hold (it may cap the
        configured one to what the smallest GPU share fits); admission checks tasks against it."""
        pool = self._state.pools[pool_id]
        if pool.spec.ctx_max != ctx_max:
            pool.spec = replace(pool.spec, ctx_max=ctx_max)

    def set_draining(self, pool_id: str, draining: bool) -> list[Eviction]:
        """Start or end a drain; starting one ends every queued task with POOL_UNAVAILABLE.

        Returns those evictions (the façade had None; callers may ignore the list).
        """
        pool = self._state.pools[pool_id]
        pool.draining = draining
        out: list[Eviction] = []
        if draining:
            now = self._now
            while (head := pool.queue.oldest()) is not None:
                endings.end_queued(self._state, head, TaskState.EVICTED, now)
                self.counters.evicted[(pool_id, ErrorCode.POOL_UNAVAILABLE.value)] += 1
                out.append(Eviction(head.task_id, ErrorCode.POOL_UNAVAILABLE, "draining"))
        return out

    # -- queries (answered by queries.py) ----------------------------------------------------

    def queue_position(self, task_id: str) -> int | None:
        """Estimated tasks dispatched before this queued task; None when not queued."""
        return queries.queue_position(self._state, task_id)

    def estimate(self, task_id: str, now_ms: int) -> tuple[int, int, float] | None:
        """(queue_position, predicted_start_ms, on_time_probability) of a live task, for the
        SSE `started` and `metrics` frames; a running task has position 0 and start 0."""
        return queries.estimate(self._state, task_id, self._clock(now_ms))

    def queue_depth(self, pool_id: str) -> int:
        """Tasks queued in a pool, all classes (cheap; for per-request planning hints)."""
        return queries.queue_depth(self._state, pool_id)

    def pool_load(self, pool_id: str) -> float:
        """(running + queued) / slots of Ready replicas; how busy a pool is for pool choice."""
        return queries.pool_load(self._state, pool_id)

    def task_state(self, task_id: str) -> str | None:
        """State value of a live or remembered ended task; None when unknown or forgotten."""
        return queries.task_state(self._state, task_id)

    def tasks_on(self, replica_id: str) -> tuple[str, ...]:
        """Task ids running on a replica (for failing them when it is lost)."""
        return queries.tasks_on(self._state, replica_id)

    def session(self, session_id: str, now_ms: int) -> SessionView | None:
        """The live session's budgets, turns and KV, or None when unknown or expired."""
        return queries.session_view(self._state, session_id, self._clock(now_ms))

    def delete_session(self, session_id: str, now_ms: int) -> bool:
        """Forget a session now; False when it was unknown or had already expired."""
        return self._state.sessions.delete(session_id, self._clock(now_ms))

    def snapshot(self, now_ms: int) -> Snapshot:
        """Frozen copy of everything observable (pools, replicas, counters, shares, ratios)."""
        return queries.snapshot(self._state, self.counters, self._clock(now_ms))
