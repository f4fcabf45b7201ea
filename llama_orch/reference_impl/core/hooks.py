"""Policy hook points of the core (specs/50, ORCH-3048): plain snapshots out, plain advice in.

The core does not know what answers a hook (the WebAssembly host of `reference_impl.policy`,
or a fake in tests): it builds a snapshot holding exactly the facts the decision needs, as
JSON-ready plain data, hands it to the `PolicyHooks` object it was given, and applies the
answer. A hook may only narrow what the core would do on its own: refuse a task the built-in
checks accepted, end a session early, or rank replicas that are free anyway. Any answer of
None means "no decision": the built-in behaviour applies, so a broken plugin can degrade
scheduling quality but never stall the queue.

Hook points: `session` and `admission` after the built-in refusal checks of admission (the
session hook only for a session with history), `placement` at dispatch when two or more
replicas could take the task and session affinity does not decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .placement import Replica, choose
from .pools import CorePool
from .queue import TaskEntry
from .sessions import Session, SessionStore
from .types import ErrorCode, Rejected, TaskSpec

Snapshot = dict[str, Any]


@dataclass(frozen=True)
class HookRefusal:
    """A plugin's typed refusal: `label` names the policy (e.g. `policy:<id>:<reason>`)."""

    reason: str
    message: str
    label: str
    retry_after_ms: int | None = None


class PolicyHooks(Protocol):
    """What the core asks; implementations must return within their own bounds."""

    def wants(self, hook: str) -> bool:
        """Whether any plugin serves `hook` (no snapshot is built otherwise)."""
        ...

    def admission(self, snapshot: Snapshot, correlation_id: str | None) -> HookRefusal | None: ...

    def session(self, snapshot: Snapshot, correlation_id: str | None) -> HookRefusal | None: ...

    def placement(self, snapshot: Snapshot, correlation_id: str | None) -> Sequence[str] | None: ...


# -- snapshots (policy-abi-v1.schema.json: Task, Pool, TenantUsage, Session, Candidate) -------


def task_facts(task: TaskSpec, engine: str) -> Snapshot:
    return {
        "tenant": task.tenant,
        "pool_id": task.pool_id,
        "engine": engine,
        "priority": str(task.priority),
        "ctx": task.ctx,
        "prompt_tokens": task.prompt_tokens,
        "max_tokens": task.max_tokens,
        "deadline_ms": task.deadline_ms,
        "pinned": task.pin_replica is not None,
    }


def pool_facts(pool: CorePool) -> Snapshot:
    free, total = pool.slots()
    return {
        "pool_id": pool.spec.pool_id,
        "engine": pool.spec.engine,
        "queued": len(pool.queue),
        "capacity": pool.spec.capacity,
        "running": pool.running,
        "slots_free": free,
        "slots_total": total,
        "draining": pool.draining,
    }


def tenant_usage(task: TaskSpec, pool: CorePool) -> Snapshot:
    """The tenant's queued and running tasks in the task's pool, and the tokens they reserve."""
    load = pool.loads.get(task.tenant)
    return {
        "tenant": task.tenant,
        "queued": load.queued if load else 0,
        "running": load.running if load else 0,
        "tokens_in_flight": load.tokens if load else 0,
    }


def session_facts(s: Session, now: int) -> Snapshot:
    return {
        "turns": s.turns,
        "inflight": s.inflight,
        "age_ms": max(0, now - s.created_ms),
        "idle_ms": max(0, now - s.touched_ms),
        "tokens_used": s.tokens_used,
        "tokens_reserved": s.tokens_reserved,
        "time_used_ms": s.time_used_ms,
    }


def session_limits(store: SessionStore) -> Snapshot:
    p = store.policy
    return {
        "ttl_ms": p.ttl_ms,
        "max_turns": p.max_turns,
        "token_budget": p.token_budget,
        "time_budget_ms": p.time_budget_ms,
    }


# -- applying answers ----------------------------------------------------------------------


def as_rejected(refusal: HookRefusal) -> Rejected:
    """A plugin refusal as the client sees it: retriable (429) only with a retry hint."""
    retriable = refusal.retry_after_ms is not None
    return Rejected(
        code=ErrorCode.ADMISSION_REJECT,
        message=f"{refusal.label}: {refusal.message}" if refusal.message else refusal.label,
        status=429 if retriable else 400,
        policy_label=refusal.label,
        retry_after_ms=refusal.retry_after_ms,
        retriable=retriable,
    )


def admission_refusal(
    hooks: PolicyHooks | None,
    task: TaskSpec,
    pool: CorePool,
    sessions: SessionStore,
    now: int,
) -> Rejected | None:
    """Ask the session hook (sessions with history) and then the admission hook."""
    if hooks is None:
        return None
    engine = pool.spec.engine
    session = sessions.get(task.session_id, now)
    if session is not None and hooks.wants("session"):
        snap = {
            "task": task_facts(task, engine),
            "session": session_facts(session, now),
            "limits": session_limits(sessions),
        }
        refusal = hooks.session(snap, task.correlation_id)
        if refusal is not None:
            return as_rejected(refusal)
    if hooks.wants("admission"):
        snap = {
            "task": task_facts(task, engine),
            "pool": pool_facts(pool),
            "tenant": tenant_usage(task, pool),
            "session": session_facts(session, now) if session is not None else None,
        }
        refusal = hooks.admission(snap, task.correlation_id)
        if refusal is not None:
            return as_rejected(refusal)
    return None


def place(
    hooks: PolicyHooks | None,
    entry: TaskEntry,
    pool: CorePool,
    affinity: str | None,
) -> tuple[Replica, bool] | None:
    """`placement.choose`, with a plugin's ranking between affinity and least-loaded."""
    if hooks is None or not hooks.wants("placement"):
        return choose(pool.replicas, affinity)
    candidates = [r for r in pool.replicas if r.usable and r.free > 0]
    if len(candidates) < 2 or any(r.replica_id == affinity for r in candidates):
        return choose(pool.replicas, affinity)
    snap = {
        "task": task_facts(entry.spec, pool.spec.engine),
        "pool": pool_facts(pool),
        "candidates": [
            {
                "replica_id": r.replica_id,
                "load": round(r.load, 6),
                "slots_free": r.free,
                "slots_total": r.slots_total,
                "labels": dict(r.spec.labels),
            }
            for r in candidates
        ],
        "affinity": affinity,
    }
    ranked = hooks.placement(snap, entry.spec.correlation_id) or ()
    by_id = {r.replica_id: r for r in candidates}
    for rid in ranked:
        if rid in by_id:
            return by_id[rid], False
    return choose(pool.replicas, affinity)
