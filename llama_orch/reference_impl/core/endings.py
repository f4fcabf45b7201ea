"""How a task leaves the scheduler: the one path for cancel, completion, expiry and eviction.

Ending a task frees what it held and settles its session, then moves its id from the live
records to the bounded memory of ended ids (for idempotent cancel and duplicate detection):

- queued: leaves its pool's queue; its session gets the turn and the token reservation back;
- running: frees its replica slot; its session is charged the prompt plus the tokens actually
  generated and the decode time; its affinity moves to this replica only after a successful
  completion (`DONE` with ok), since only then does the replica hold the session's KV.

Either way the tenant's concurrency and memory quota are released. Counting the event is the
caller's job (scheduler.py), because only the caller knows why the task ended.
"""

from __future__ import annotations

from .pools import CorePool
from .queue import TaskEntry
from .state import CoreState
from .types import TaskState


def end_queued(state: CoreState, entry: TaskEntry, final: TaskState, now: int) -> None:
    """End a task that was never dispatched."""
    pool = state.pools[entry.spec.pool_id]
    pool.remove_queued(entry)
    pool.load_ended(entry.spec, running=False)
    _release(entry, pool)
    task = entry.spec
    reserved = task.prompt_tokens + task.max_tokens
    state.sessions.end(task.session_id, now, tokens_reserved=reserved, ran=False)
    _forget(state, entry, final)


def end_running(
    state: CoreState, entry: TaskEntry, final: TaskState, now: int, tokens_out: int, *, ok: bool
) -> None:
    """End a dispatched task that produced `tokens_out` tokens."""
    pool = state.pools[entry.spec.pool_id]
    replica = state.replicas[entry.replica_id or ""]
    replica.busy.discard(entry.task_id)
    pool.running -= 1
    del state.running[entry.task_id]
    pool.load_ended(entry.spec, running=True)
    _release(entry, pool)
    task = entry.spec
    context = task.prompt_tokens + max(0, tokens_out)
    keep_kv = ok and final is TaskState.DONE
    state.sessions.end(
        task.session_id,
        now,
        tokens_reserved=task.prompt_tokens + task.max_tokens,
        ran=True,
        tokens_used=context,
        time_ms=now - entry.dispatch_ms,
        replica_id=replica.replica_id if keep_kv else None,
        kv_bytes=context * pool.spec.kv_bytes_per_token,
        warm=entry.warm,
        kv_capacity=replica.slots_total,
    )
    _forget(state, entry, final)


def _release(entry: TaskEntry, pool: CorePool) -> None:
    tenant = pool.tenants.get(entry.spec.tenant)
    if tenant is not None:
        tenant.release(entry.task_id, entry.mem_bytes)


def _forget(state: CoreState, entry: TaskEntry, final: TaskState) -> None:
    entry.state = final
    del state.tasks[entry.task_id]
    ended = state.ended
    ended[entry.task_id] = final
    while len(ended) > state.terminal_memory:
        ended.popitem(last=False)
