"""Rate limits and concurrency quotas (ORCH-3006, ORCH-3077, ORCH-3036).

`max_concurrent` counts the tenant's queued and running tasks in the pool (a queued task
already holds its place); memory is KV for prompt + max_tokens plus per-task scratch.
Admission first asks every applicable limit how long the task would have to wait (`wait_ms`)
and only takes tokens / counts the task once every check has passed, so a task refused later
in admission (queue full, deadline) does not burn its tenant's rate budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .types import TenantQuota


class TokenBucket:
    """Token bucket: `rate` tokens per second, holding at most `burst` (starts full)."""

    __slots__ = ("burst", "last_ms", "rate", "tokens")

    def __init__(self, rate: float, burst: int | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(1, math.ceil(rate)))
        if self.burst < 1:
            raise ValueError("burst must be at least 1")
        self.tokens = self.burst
        self.last_ms: int | None = None

    def _refill(self, now_ms: int) -> None:
        if self.last_ms is not None and now_ms > self.last_ms:
            self.tokens = min(self.burst, self.tokens + (now_ms - self.last_ms) * self.rate / 1e3)
        if self.last_ms is None or now_ms > self.last_ms:
            self.last_ms = now_ms

    def wait_ms(self, now_ms: int) -> int:
        """0 when a token is available now, else whole ms until one is."""
        self._refill(now_ms)
        if self.tokens >= 1.0 - 1e-9:
            return 0
        return max(1, math.ceil((1.0 - self.tokens) * 1e3 / self.rate))

    def take(self, now_ms: int) -> None:
        """Consume one token; call only after `wait_ms` returned 0."""
        self._refill(now_ms)
        self.tokens = max(0.0, self.tokens - 1.0)


@dataclass
class TenantState:
    """One tenant's live usage in one pool, plus its rate bucket."""

    quota: TenantQuota
    bucket: TokenBucket | None = None
    live: int = 0  # queued + running tasks
    mem_bytes: int = 0
    live_ids: set[str] = field(default_factory=set)

    @classmethod
    def for_quota(cls, quota: TenantQuota) -> TenantState:
        bucket = TokenBucket(quota.rps, quota.burst) if quota.rps else None
        return cls(quota=quota, bucket=bucket)

    def refusal(self, mem_bytes: int, now_ms: int) -> tuple[str, int | None, bool] | None:
        """Why a new task must wait: (message, retry_after_ms or None, retriable) or None.

        retry_after_ms is None for concurrency and memory caps: the core cannot know when a
        running task will end, so the caller estimates it from task durations.
        """
        q = self.quota
        if q.max_concurrent is not None and self.live >= q.max_concurrent:
            return (f"tenant {q.tenant!r} at max_concurrent={q.max_concurrent}", None, True)
        if q.max_memory_bytes is not None and self.mem_bytes + mem_bytes > q.max_memory_bytes:
            fits_alone = mem_bytes <= q.max_memory_bytes
            msg = f"tenant {q.tenant!r} over max_memory_bytes={q.max_memory_bytes}"
            return (msg, None, fits_alone)
        if self.bucket is not None:
            wait = self.bucket.wait_ms(now_ms)
            if wait:
                return (f"tenant {q.tenant!r} over rps={q.rps}", wait, True)
        return None

    def admit(self, task_id: str, mem_bytes: int, now_ms: int) -> None:
        if self.bucket is not None:
            self.bucket.take(now_ms)
        self.live += 1
        self.mem_bytes += mem_bytes
        self.live_ids.add(task_id)

    def release(self, task_id: str, mem_bytes: int) -> None:
        """A task ended (any way); idempotent per task id."""
        if task_id in self.live_ids:
            self.live_ids.discard(task_id)
            self.live -= 1
            self.mem_bytes -= mem_bytes
