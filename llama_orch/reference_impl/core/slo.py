"""SLO circuit breakers: shed lower classes while a pool keeps missing its SLO (ORCH-3040).

A pool with a `SloBreaker` records, for each task of the SLO class, the time from admission to
its first token. The breaker is open while, among the last `window` samples that are younger
than `horizon_ms`, there are at least `min_samples` and at least `trip_ratio` of them missed
`first_token_ms`. While it is open, admission refuses new tasks of the `shed` classes with 429
ADMISSION_REJECT, retriable, so that the SLO class gets the capacity back. It closes by itself
once fresh samples meet the SLO again, or once the bad ones age out of the horizon: the breaker
reacts to violations that persist, not to one slow task.
"""

from __future__ import annotations

from collections import deque

from .types import ErrorCode, Priority, Rejected, SloBreaker

# Advised wait of a shed task: one look at the breaker's horizon later is too long for a client.
SHED_RETRY_MS = 1_000


class BreakerState:
    """The recent first-token samples of one pool's SLO class."""

    __slots__ = ("policy", "samples")

    def __init__(self, policy: SloBreaker) -> None:
        self.policy = policy
        self.samples: deque[tuple[int, bool]] = deque(maxlen=max(1, policy.window))

    def record(self, priority: Priority, first_token_ms: int, now: int) -> None:
        """One first token of a task admitted `first_token_ms` ago."""
        if priority is self.policy.slo_priority:
            self.samples.append((now, first_token_ms > self.policy.first_token_ms))

    def is_open(self, now: int) -> bool:
        p = self.policy
        fresh = [missed for at, missed in self.samples if now - at < p.horizon_ms]
        if len(fresh) < p.min_samples:
            return False
        return sum(fresh) >= p.trip_ratio * len(fresh)

    def refusal(self, priority: Priority, now: int, label: str) -> Rejected | None:
        """The shed answer for a new task of `priority`, or None when it may be admitted."""
        if priority not in self.policy.shed or not self.is_open(now):
            return None
        p = self.policy
        msg = (
            f"SLO circuit breaker open: {p.slo_priority.value} first-token SLO of "
            f"{p.first_token_ms} ms missed; shedding {priority.value} work"
        )
        return Rejected(
            ErrorCode.ADMISSION_REJECT,
            msg,
            429,
            policy_label=label,
            retry_after_ms=SHED_RETRY_MS,
            retriable=True,
        )
