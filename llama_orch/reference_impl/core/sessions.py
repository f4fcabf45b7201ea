"""Sessions: TTL, turn limit, token/time/cost budgets and replica affinity (ORCH-3021,
OC-CORE-1023).

Rules (time always passed in):
- a session is created by its first admitted task; each admitted task is a turn and restarts
  the TTL clock, and so does the end of each task;
- a session with tasks in flight never expires; otherwise it vanishes once `ttl_ms` has passed
  since it was last touched (lazily, when looked at, and in bulk from the oldest end);
- turns = tasks that ran (dispatched, whatever their outcome) + tasks still in flight; a task
  that ends without ever being dispatched (cancelled while queued, evicted, expired in the
  queue) gives its turn back;
- token budget: prompt + max_tokens of every in-flight task is reserved at admission; at the
  end the reservation is replaced by prompt + tokens actually generated. A task fits when its
  prompt + max_tokens fits what is neither used nor reserved;
- time budget: decode wall time (dispatch to end) is used up; a task fits while some is left;
- cost budget: every task that ran costs its used tokens times the rate per thousand; a task
  fits while some is left;
- a session's budgets are those of the tenant that opened it (`SessionPolicy.budgets`).
- KV residency (kv_residency.py): a replica holds the KV of at most as many sessions as it has
  slots, least recently used out first; a session that loses its KV loses its affinity too.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from .kv_residency import KvResidency
from .types import SessionBudgets, SessionPolicy


@dataclass(slots=True)
class Session:
    """One session's counters."""

    session_id: str
    touched_ms: int
    tenant: str = ""
    turns_done: int = 0
    inflight: int = 0
    tokens_used: int = 0
    tokens_reserved: int = 0
    time_used_ms: int = 0
    cost_used: float = 0.0
    replica_id: str | None = None
    kv_bytes: int = 0
    kv_warmth: bool = False
    created_ms: int = 0

    @property
    def turns(self) -> int:
        return self.turns_done + self.inflight


class SessionStore:
    """All live sessions, oldest-touched first."""

    def __init__(self, policy: SessionPolicy) -> None:
        self.policy = policy
        self._by_id: OrderedDict[str, Session] = OrderedDict()
        self.kv = KvResidency()

    def __len__(self) -> int:
        return len(self._by_id)

    def _expired(self, s: Session, now_ms: int) -> bool:
        return s.inflight == 0 and now_ms - s.touched_ms >= self.policy.ttl_ms

    def _touch(self, s: Session, now_ms: int) -> None:
        s.touched_ms = max(s.touched_ms, now_ms)
        self._by_id.move_to_end(s.session_id)

    def purge(self, now_ms: int) -> None:
        """Drop expired sessions from the oldest end; busy ones are re-touched."""
        ttl = self.policy.ttl_ms
        while self._by_id:
            s = next(iter(self._by_id.values()))
            if now_ms - s.touched_ms < ttl:
                return
            if s.inflight:
                self._touch(s, now_ms)
            else:
                self._forget(s.session_id)

    def get(self, session_id: str, now_ms: int) -> Session | None:
        s = self._by_id.get(session_id)
        if s is not None and self._expired(s, now_ms):
            self._forget(session_id)
            return None
        return s

    def _budgets(self, s: Session) -> SessionBudgets:
        return self.policy.budgets(s.tenant)

    def _forget(self, session_id: str) -> None:
        del self._by_id[session_id]
        self.kv.drop(session_id)

    def refusal(self, session_id: str, tokens: int, now_ms: int, tenant: str = "") -> str | None:
        """Why the session cannot take a task needing `tokens`, or None when it can."""
        s = self.get(session_id, now_ms)
        if s is None:
            s = Session(session_id, now_ms, tenant)
        p = self.policy
        if s.turns >= p.max_turns:
            return f"session reached max_turns={p.max_turns}"
        b = self._budgets(s)
        if b.tokens is not None:
            left = b.tokens - s.tokens_used - s.tokens_reserved
            if tokens > left:
                return f"session token budget: {tokens} needed, {max(0, left)} left"
        if b.time_ms is not None and s.time_used_ms >= b.time_ms:
            return "session time budget exhausted"
        if b.cost is not None and s.cost_used >= b.cost:
            return "session cost budget exhausted"
        return None

    def begin(self, session_id: str, tokens_reserved: int, now_ms: int, tenant: str = "") -> None:
        """Record an admitted task (a turn) and reserve its tokens."""
        s = self.get(session_id, now_ms)
        if s is None:
            s = self._by_id[session_id] = Session(session_id, now_ms, tenant, created_ms=now_ms)
        s.inflight += 1
        s.tokens_reserved += tokens_reserved
        self._touch(s, now_ms)

    def end(
        self,
        session_id: str,
        now_ms: int,
        *,
        tokens_reserved: int,
        ran: bool,
        tokens_used: int = 0,
        time_ms: int = 0,
        replica_id: str | None = None,
        kv_bytes: int = 0,
        warm: bool = False,
        kv_capacity: int = 1,
    ) -> None:
        """Settle a task of the session; `replica_id` (on success) sets the affinity and
        places its KV there, evicting the least recently used KV beyond `kv_capacity`."""
        s = self._by_id.get(session_id)
        if s is None:  # deleted while the task was in flight
            return
        s.inflight = max(0, s.inflight - 1)
        s.tokens_reserved = max(0, s.tokens_reserved - tokens_reserved)
        if ran:
            s.turns_done += 1
            s.tokens_used += tokens_used
            s.time_used_ms += max(0, time_ms)
            s.cost_used += tokens_used * self._budgets(s).cost_per_1k_tokens / 1000
            s.kv_warmth = warm
        if replica_id is not None:
            s.replica_id = replica_id
            s.kv_bytes = kv_bytes
            for evicted in self.kv.place(replica_id, session_id, kv_capacity):
                lost = self._by_id.get(evicted)
                if lost is not None:
                    lost.replica_id, lost.kv_bytes = None, 0
        self._touch(s, now_ms)

    def affinity(self, session_id: str) -> str | None:
        s = self._by_id.get(session_id)
        return s.replica_id if s is not None else None

    def delete(self, session_id: str, now_ms: int) -> bool:
        if self.get(session_id, now_ms) is None:
            return False
        self._forget(session_id)
        return True

    def remaining(
        self, s: Session, now_ms: int
    ) -> tuple[int, int | None, int | None, float | None]:
        """(ttl_ms_remaining, tokens, time in ms and cost left; None for a budget that is off)."""
        p = self.policy
        ttl = p.ttl_ms if s.inflight else max(0, p.ttl_ms - (now_ms - s.touched_ms))
        b = self._budgets(s)
        tokens = None if b.tokens is None else max(0, b.tokens - s.tokens_used - s.tokens_reserved)
        time_left = None if b.time_ms is None else max(0, b.time_ms - s.time_used_ms)
        cost = None if b.cost is None else round(max(0.0, b.cost - s.cost_used), 6)
        return ttl, tokens, time_left, cost
