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
   retry_after_ms and the pool's policy_label;
5. deadline infeasible and `reject_infeasible` -> 400 DEADLINE_UNMET;
6. full queue -> soft preemption, then the full policy (see policies.py).
Only when all pass are rate tokens taken, quotas and the session charged, and the task queued.

Terminal task ids are remembered (bounded, `terminal_memory`, oldest forgotten first) for
idempotent cancel and duplicate detection.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace

from . import guardrails
from .admission import live_refusal, make_room
from .deadlines import MetWindow, feasible, on_time_probability
from .fairness import ShareTracker
from .placement import Replica, choose
from .pool_state import PoolState
from .queue import TaskEntry
from .sessions import SessionStore
from .snapshot import UNASSIGNED, Counters, Snapshot, build_snapshot
from .types import (
    PRIORITY_ORDER,
    Admitted,
    CancelResult,
    Dispatch,
    ErrorCode,
    Eviction,
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
    """Queues, admission, fairness, placement, sessions and watchdog over plain data."""

    def __init__(
        self,
        pools: list[PoolSpec],
        replicas: list[ReplicaSpec],
        sessions: SessionPolicy | None = None,
        *,
        terminal_memory: int = 100_000,
    ) -> None:
        self._pools: dict[str, PoolState] = {}
        for spec in sorted(pools, key=lambda p: p.pool_id):
            if spec.pool_id in self._pools:
                raise ValueError(f"duplicate pool_id {spec.pool_id!r}")
            self._pools[spec.pool_id] = PoolState(spec)
        self._replicas: dict[str, Replica] = {}
        for rs in sorted(replicas, key=lambda r: r.replica_id):
            if rs.replica_id in self._replicas:
                raise ValueError(f"duplicate replica_id {rs.replica_id!r}")
            if rs.pool_id not in self._pools:
                raise ValueError(f"replica {rs.replica_id!r} names unknown pool {rs.pool_id!r}")
            replica = Replica(rs, slots_total=rs.slots_total)
            self._replicas[rs.replica_id] = replica
            self._pools[rs.pool_id].replicas.append(replica)
        self._sessions = SessionStore(sessions or SessionPolicy())
        self._tasks: dict[str, TaskEntry] = {}
        self._running: dict[str, TaskEntry] = {}
        self._ended: OrderedDict[str, TaskState] = OrderedDict()
        self._terminal_memory = terminal_memory
        self._shares = ShareTracker()
        self._met = {p: MetWindow() for p in PRIORITY_ORDER}
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
        pool = self._pools.get(task.pool_id)
        if not isinstance(task.priority, Priority):  # a plain string from the caller
            if task.priority not in set(Priority):
                return self._refuse(task, guardrails.invalid("unknown priority", "priority"))
            task = replace(task, priority=Priority(task.priority))
        if task.task_id in self._tasks or task.task_id in self._ended:
            return self._refuse(task, guardrails.invalid("task_id already known", "task_id"))
        if pool is None:
            msg = f"unknown pool {task.pool_id!r}"
            return self._refuse(task, guardrails.invalid(msg, "pool_id"))
        refusal = (
            guardrails.check_task(task, pool.spec)
            or self._pin_refusal(task)
            or live_refusal(task, pool, self._sessions, now)
        )
        if refusal is not None:
            return self._refuse(task, refusal)
        abs_deadline = now + task.deadline_ms if task.deadline_ms else None
        seq = self._seq
        free, total = pool.slots()
        ahead = pool.ahead_new(task, abs_deadline, seq)
        start = pool.predictor.start_ms(ahead, free, total)
        decode = pool.predictor.decode_ms(_expected_tokens(task))
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
        )

    def _pin_refusal(self, task: TaskSpec) -> Rejected | None:
        """A pin must name a replica of the task's pool that can still become Ready."""
        if task.pin_replica is None:
            return None
        replica = self._replicas.get(task.pin_replica)
        if replica is None or replica.spec.pool_id != task.pool_id:
            msg = f"replica {task.pin_replica!r} is not a replica of pool {task.pool_id!r}"
            return guardrails.invalid(msg, "placement.replica_id")
        if replica.failed:
            msg = f"replica {task.pin_replica!r} cannot become Ready"
            return Rejected(ErrorCode.POOL_UNAVAILABLE, msg, 503, retriable=True)
        return None

    def _make_room(
        self, task: TaskSpec, pool: PoolState, now: int
    ) -> tuple[Eviction, ...] | Rejected:
        """Evict what `make_room` chose and count it (backpressure / preemptions)."""
        pid, policy = pool.spec.pool_id, pool.spec.full_policy.value
        room = make_room(task, pool)
        if isinstance(room, Rejected):
            self.counters.backpressure[(pid, policy)] += 1
            return room
        if room.victim is None or room.code is None:
            return ()
        if room.preempted:
            self.counters.preemptions[(pid, PreemptionMode.SOFT.value)] += 1
        else:
            self.counters.backpressure[(pid, policy)] += 1
        self._end_queued(room.victim, TaskState.EVICTED, now)
        self.counters.evicted[(pid, room.code.value)] += 1
        return (Eviction(room.victim.task_id, room.code, room.reason),)

    def _commit(self, entry: TaskEntry, pool: PoolState, now: int) -> None:
        task = entry.spec
        tenant = pool.tenants.get(task.tenant)
        if tenant is not None:
            tenant.admit(task.task_id, entry.mem_bytes, now)
        bucket = pool.class_buckets.get(task.priority)
        if bucket is not None:
            bucket.take(now)
        self._sessions.begin(task.session_id, task.prompt_tokens + task.max_tokens, now)
        self._tasks[task.task_id] = entry
        pool.enqueue(entry)
        self.counters.enqueued[(task.pool_id, task.priority.value)] += 1

    def _refuse(self, task: TaskSpec, rejected: Rejected) -> Rejected:
        pid = task.pool_id if task.pool_id in self._pools else ""
        self.counters.rejected[(pid, rejected.code.value)] += 1
        return rejected

    # -- dispatch ----------------------------------------------------------------------------

    def dispatch(self, now_ms: int) -> list[Dispatch]:
        """Fill every free slot of every Ready replica; pools in pool_id order."""
        now = self._clock(now_ms)
        out: list[Dispatch] = []
        for pool in self._pools.values():
            while len(pool.queue) and pool.has_free_slot():
                head = pool.peek_next()
                if head is None:  # pragma: no cover - the WFQ invariant forbids it
                    break
                affinity = self._sessions.affinity(head.spec.session_id)
                picked = choose(pool.replicas, affinity, head.spec.pin_replica)
                if picked is None:  # pinned to a busy replica: the head (and pool) waits
                    break
                entry = pool.pop_next()
                assert entry is head
                replica, warm = picked
                out.append(self._start(entry, pool, replica, warm, now))
        return out

    def _start(
        self, entry: TaskEntry, pool: PoolState, replica: Replica, warm: bool, now: int
    ) -> Dispatch:
        tid = entry.task_id
        entry.state = TaskState.RUNNING
        entry.replica_id = replica.replica_id
        entry.dispatch_ms = entry.last_progress_ms = now
        entry.warm = warm
        replica.busy.add(tid)
        pool.running += 1
        self._running[tid] = entry
        self._shares.observe(entry.flow_key)
        key = (pool.spec.pool_id, replica.replica_id, entry.spec.priority.value)
        self.counters.started[key] += 1
        return Dispatch(tid, pool.spec.pool_id, replica.replica_id, warm, now - entry.admit_ms)

    # -- task life cycle ---------------------------------------------------------------------

    def cancel(self, task_id: str, now_ms: int) -> CancelResult:
        """Final: a cancelled task is never dispatched and its slot (if any) is free now."""
        now = self._clock(now_ms)
        entry = self._tasks.get(task_id)
        if entry is None:
            return CancelResult.DONE if task_id in self._ended else CancelResult.UNKNOWN
        pid = entry.spec.pool_id
        if entry.state is TaskState.QUEUED:
            self._end_queued(entry, TaskState.CANCELED, now)
            self.counters.canceled[(pid, UNASSIGNED, "user")] += 1
            return CancelResult.QUEUED
        replica_id = entry.replica_id or UNASSIGNED
        self._end_running(entry, TaskState.CANCELED, now, entry.tokens_seen, ok=False)
        self.counters.canceled[(pid, replica_id, "user")] += 1
        return CancelResult.RUNNING

    def complete(self, task_id: str, now_ms: int, tokens_out: int, ok: bool) -> None:
        """A running task ended; unknown, queued or already ended tasks are ignored."""
        now = self._clock(now_ms)
        entry = self._running.get(task_id)
        if entry is None:
            return
        pool = self._pools[entry.spec.pool_id]
        if ok:
            pool.predictor.observe(now - entry.dispatch_ms, tokens_out)
        if entry.abs_deadline is not None:
            self._met[entry.spec.priority].record(ok and now <= entry.abs_deadline)
        self._end_running(entry, TaskState.DONE, now, tokens_out, ok=ok)

    def progress(self, task_id: str, now_ms: int) -> None:
        """A token of a running task arrived: resets its idle clock."""
        now = self._clock(now_ms)
        entry = self._running.get(task_id)
        if entry is not None:
            entry.last_progress_ms = now
            entry.tokens_seen += 1

    def expired(self, now_ms: int) -> list[Timeout]:
        """Report and remove tasks past their wall or idle timeout (running, then queued)."""
        now = self._clock(now_ms)
        out: list[Timeout] = []
        for entry in list(self._running.values()):
            spec = self._pools[entry.spec.pool_id].spec
            kind = running_overdue(entry, now, spec.wall_ms, spec.idle_ms)
            if kind is None:
                continue
            if entry.abs_deadline is not None:
                self._met[entry.spec.priority].record(False)
            key = (spec.pool_id, entry.replica_id or UNASSIGNED, "watchdog")
            self._end_running(entry, TaskState.EXPIRED, now, entry.tokens_seen, ok=False)
            self.counters.canceled[key] += 1
            out.append(Timeout(entry.task_id, kind, running=True))
        for pool in self._pools.values():
            while (head := pool.queue.oldest()) is not None and queued_overdue(
                head, now, pool.spec.wall_ms
            ):
                self._end_queued(head, TaskState.EXPIRED, now)
                self.counters.canceled[(pool.spec.pool_id, UNASSIGNED, "watchdog")] += 1
                out.append(Timeout(head.task_id, "wall", running=False))
        self._sessions.purge(now)
        return out

    def _end_queued(self, entry: TaskEntry, state: TaskState, now: int) -> None:
        pool = self._pools[entry.spec.pool_id]
        pool.remove_queued(entry)
        self._release(entry, pool)
        task = entry.spec
        reserved = task.prompt_tokens + task.max_tokens
        self._sessions.end(task.session_id, now, tokens_reserved=reserved, ran=False)
        self._forget(entry, state)

    def _end_running(
        self, entry: TaskEntry, state: TaskState, now: int, tokens_out: int, *, ok: bool
    ) -> None:
        pool = self._pools[entry.spec.pool_id]
        replica = self._replicas[entry.replica_id or ""]
        replica.busy.discard(entry.task_id)
        pool.running -= 1
        del self._running[entry.task_id]
        self._release(entry, pool)
        task = entry.spec
        context = task.prompt_tokens + max(0, tokens_out)
        keep_kv = ok and state is TaskState.DONE
        self._sessions.end(
            task.session_id,
            now,
            tokens_reserved=task.prompt_tokens + task.max_tokens,
            ran=True,
            tokens_used=context,
            time_ms=now - entry.dispatch_ms,
            replica_id=replica.replica_id if keep_kv else None,
            kv_bytes=context * pool.spec.kv_bytes_per_token,
            warm=entry.warm,
        )
        self._forget(entry, state)

    def _release(self, entry: TaskEntry, pool: PoolState) -> None:
        tenant = pool.tenants.get(entry.spec.tenant)
        if tenant is not None:
            tenant.release(entry.task_id, entry.mem_bytes)

    def _forget(self, entry: TaskEntry, state: TaskState) -> None:
        entry.state = state
        del self._tasks[entry.task_id]
        self._ended[entry.task_id] = state
        while len(self._ended) > self._terminal_memory:
            self._ended.popitem(last=False)

    # -- replicas and pools ------------------------------------------------------------------

    def set_replica(
        self,
        replica_id: str,
        *,
        ready: bool,
        slots_total: int | None = None,
        failed: bool | None = None,
    ) -> None:
        """Pool manager update; `failed` marks a replica that cannot become Ready."""
        replica = self._replicas[replica_id]
        replica.ready = ready
        if slots_total is not None:
            replica.slots_total = max(0, slots_total)
        if failed is not None:
            replica.failed = failed

    def set_draining(self, pool_id: str, draining: bool) -> list[Eviction]:
        """Start or end a drain; starting one ends every queued task with POOL_UNAVAILABLE.

        Returns those evictions (the façade had None; callers may ignore the list).
        """
        pool = self._pools[pool_id]
        pool.draining = draining
        out: list[Eviction] = []
        if draining:
            now = self._now
            while (head := pool.queue.oldest()) is not None:
                self._end_queued(head, TaskState.EVICTED, now)
                self.counters.evicted[(pool_id, ErrorCode.POOL_UNAVAILABLE.value)] += 1
                out.append(Eviction(head.task_id, ErrorCode.POOL_UNAVAILABLE, "draining"))
        return out

    # -- queries -----------------------------------------------------------------------------

    def queue_position(self, task_id: str) -> int | None:
        """Estimated tasks dispatched before this queued task; None when not queued."""
        entry = self._tasks.get(task_id)
        if entry is None or entry.state is not TaskState.QUEUED:
            return None
        return self._pools[entry.spec.pool_id].ahead_of(entry)

    def estimate(self, task_id: str, now_ms: int) -> tuple[int, int, float] | None:
        """(queue_position, predicted_start_ms, on_time_probability) of a live task, for the
        SSE `started` and `metrics` frames; a running task has position 0 and start 0."""
        now = self._clock(now_ms)
        entry = self._tasks.get(task_id)
        if entry is None:
            return None
        pool, task = self._pools[entry.spec.pool_id], entry.spec
        decode = pool.predictor.decode_ms(_expected_tokens(task))
        left = entry.abs_deadline - now if entry.abs_deadline is not None else None
        if entry.state is TaskState.RUNNING:
            position, start = 0, 0
            decode = max(0, decode - (now - entry.dispatch_ms))
        else:
            position = pool.ahead_of(entry)
            start = pool.predictor.start_ms(position, *pool.slots())
        if left is not None and left <= 0:
            return position, start, 0.0
        return position, start, on_time_probability(start, decode, left)

    def queue_depth(self, pool_id: str) -> int:
        """Tasks queued in a pool, all classes (cheap; for per-request planning hints)."""
        return len(self._pools[pool_id].queue)

    def pool_load(self, pool_id: str) -> float:
        """(running + queued) / slots of Ready replicas; how busy a pool is for pool choice."""
        pool = self._pools[pool_id]
        _free, total = pool.slots()
        return (pool.running + len(pool.queue)) / max(1, total)

    def task_state(self, task_id: str) -> str | None:
        entry = self._tasks.get(task_id)
        if entry is not None:
            return entry.state.value
        state = self._ended.get(task_id)
        return state.value if state is not None else None

    def tasks_on(self, replica_id: str) -> tuple[str, ...]:
        """Task ids running on a replica (for failing them when it is lost)."""
        return tuple(sorted(self._replicas[replica_id].busy))

    def session(self, session_id: str, now_ms: int) -> SessionView | None:
        now = self._clock(now_ms)
        s = self._sessions.get(session_id, now)
        if s is None:
            return None
        ttl, tokens, time_left = self._sessions.remaining(s, now)
        replica = self._replicas.get(s.replica_id or "")
        kv_bytes = s.kv_bytes if replica is not None and not replica.failed else 0
        return SessionView(session_id, ttl, s.turns, kv_bytes, s.kv_warmth, tokens, time_left)

    def delete_session(self, session_id: str, now_ms: int) -> bool:
        return self._sessions.delete(session_id, self._clock(now_ms))

    def snapshot(self, now_ms: int) -> Snapshot:
        now = self._clock(now_ms)
        return build_snapshot(
            now,
            self._pools,
            self._replicas,
            self.counters,
            self._shares.shares(),
            {p: w.ratio() for p, w in self._met.items()},
            len(self._sessions),
        )


def _expected_tokens(task: TaskSpec) -> int:
    if task.expected_tokens is not None:
        return min(task.expected_tokens, task.max_tokens)
    return task.max_tokens
