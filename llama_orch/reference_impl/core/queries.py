"""Read-only views of the scheduler's state for the API layer: positions, estimates, loads,
task and session state, and the full snapshot. Nothing here changes a record; the façade
advances its clock and passes the time in.
"""

from __future__ import annotations

from .deadlines import expected_tokens, on_time_probability
from .snapshot import Counters, Snapshot, build_snapshot
from .state import CoreState
from .types import SessionView, TaskState


def queue_position(state: CoreState, task_id: str) -> int | None:
    entry = state.tasks.get(task_id)
    if entry is None or entry.state is not TaskState.QUEUED:
        return None
    return state.pools[entry.spec.pool_id].ahead_of(entry)


def estimate(state: CoreState, task_id: str, now: int) -> tuple[int, int, float] | None:
    """A running task has used part of its predicted decode time; what is left counts."""
    entry = state.tasks.get(task_id)
    if entry is None:
        return None
    pool, task = state.pools[entry.spec.pool_id], entry.spec
    decode = pool.predictor.decode_ms(expected_tokens(task))
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


def queue_depth(state: CoreState, pool_id: str) -> int:
    return len(state.pools[pool_id].queue)


def pool_load(state: CoreState, pool_id: str) -> float:
    pool = state.pools[pool_id]
    _free, total = pool.slots()
    return (pool.running + len(pool.queue)) / max(1, total)


def task_state(state: CoreState, task_id: str) -> str | None:
    entry = state.tasks.get(task_id)
    if entry is not None:
        return entry.state.value
    final = state.ended.get(task_id)
    return final.value if final is not None else None


def tasks_on(state: CoreState, replica_id: str) -> tuple[str, ...]:
    return tuple(sorted(state.replicas[replica_id].busy))


def session_view(state: CoreState, session_id: str, now: int) -> SessionView | None:
    """The session's KV counts only while its replica still exists and has not failed."""
    sessions = state.sessions
    s = sessions.get(session_id, now)
    if s is None:
        return None
    ttl, tokens, time_left, cost = sessions.remaining(s, now)
    replica = state.replicas.get(s.replica_id or "")
    kv_bytes = s.kv_bytes if replica is not None and not replica.failed else 0
    return SessionView(session_id, ttl, s.turns, kv_bytes, s.kv_warmth, tokens, time_left, cost)


def snapshot(state: CoreState, counters: Counters, now: int) -> Snapshot:
    return build_snapshot(
        now,
        state.pools,
        state.replicas,
        counters,
        state.shares.shares(),
        {p: w.ratio() for p, w in state.met.items()},
        len(state.sessions),
    )
