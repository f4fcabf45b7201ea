"""Restart pacing for pools: exponential backoff with jitter, and a circuit breaker.

Pure: the caller passes the time in (`now`, seconds on any monotonic clock) and may pass the
random source, so the rules can be property-tested without sleeping (OC-POOL-3011,
ORCH-3053). Defaults follow specs/30 sections 2 and 3: 1 s doubling to 60 s plus up to 20 %
jitter; the circuit opens after 5 failures within 10 minutes and stays open for 10 minutes.

Bound: with `cooldown_s >= window_s` (enforced), any interval of `window_s` seconds holds at
most `max_failures` (re)starts. Within one closed period each start after the first is
preceded by a failure that did not open the circuit, so at most `max_failures - 1` failures
separate the starts of one window; a start after a cool-down is at least `cooldown_s` after
every earlier start, so it shares no window with them.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class BackoffPolicy:
    """Delay before attempt k (k >= 1): min(max_s, initial_s * factor**(k-1)), plus jitter."""

    initial_s: float = 1.0
    factor: float = 2.0
    max_s: float = 60.0
    jitter: float = 0.2  # fraction of the base delay added at random, 0.2 = up to +20 %

    def __post_init__(self) -> None:
        if not (self.initial_s > 0 and self.max_s >= self.initial_s):
            raise ValueError("backoff needs 0 < initial_s <= max_s")
        if self.factor < 1 or not 0 <= self.jitter <= 1:
            raise ValueError("backoff needs factor >= 1 and 0 <= jitter <= 1")

    def base(self, attempt: int) -> float:
        """The delay before jitter; non-decreasing in `attempt`, capped at max_s."""
        if attempt < 1:
            raise ValueError("attempts count from 1")
        # Cap the exponent first so huge attempt numbers cannot overflow a float.
        exponent = min(attempt - 1, 1024)
        try:
            return min(self.max_s, self.initial_s * self.factor**exponent)
        except OverflowError:
            return self.max_s

    def bounds(self, attempt: int) -> tuple[float, float]:
        """Smallest and largest delay `delay()` can return for this attempt."""
        base = self.base(attempt)
        return base, base * (1 + self.jitter)

    def delay(self, attempt: int, u: float) -> float:
        """Jittered delay for `attempt`; `u` is a uniform random number in [0, 1]."""
        base = self.base(attempt)
        return base * (1 + self.jitter * min(1.0, max(0.0, u)))


@dataclass(frozen=True)
class BreakerPolicy:
    """Open after `max_failures` failures within `window_s`; stay open for `cooldown_s`."""

    max_failures: int = 5
    window_s: float = 600.0
    cooldown_s: float = 600.0

    def __post_init__(self) -> None:
        if self.max_failures < 1 or self.window_s <= 0:
            raise ValueError("breaker needs max_failures >= 1 and window_s > 0")
        if self.cooldown_s < self.window_s:
            # A shorter cool-down would let two bursts share one window (see module doc).
            raise ValueError("breaker cooldown_s must be at least window_s")


@dataclass(frozen=True)
class Retry:
    """Try again at `at` (= failure time + delay_s); `attempt` counts failures in the window."""

    at: float
    delay_s: float
    attempt: int


@dataclass(frozen=True)
class Open:
    """The circuit opened: no automatic start before `until`."""

    until: float
    failures: int


class RestartGovernor:
    """Decides after each failure of a pool whether, and when, it is started again."""

    def __init__(
        self,
        backoff: BackoffPolicy | None = None,
        breaker: BreakerPolicy | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.backoff = backoff or BackoffPolicy()
        self.breaker = breaker or BreakerPolicy()
        self._rand = rand
        self._failures: deque[float] = deque()
        self.open_until: float | None = None

    def _prune(self, now: float) -> None:
        while self._failures and now - self._failures[0] >= self.breaker.window_s:
            self._failures.popleft()

    def failures(self, now: float) -> int:
        """Failures counted in the window ending at `now`."""
        self._prune(now)
        return len(self._failures)

    def is_open(self, now: float) -> bool:
        return self.open_until is not None and now < self.open_until

    def on_failure(self, now: float) -> Retry | Open:
        """Record a failure at `now` and say what happens next."""
        if self.open_until is not None:
            return Open(self.open_until, len(self._failures))
        self._prune(now)
        self._failures.append(now)
        count = len(self._failures)
        if count >= self.breaker.max_failures:
            until = now + self.breaker.cooldown_s
            while until - now < self.breaker.cooldown_s:  # float rounding must not shorten it
                until = math.nextafter(until, math.inf)
            self.open_until = until
            return Open(until, count)
        delay = self.backoff.delay(count, self._rand())
        return Retry(now + delay, delay, count)

    def close_if_cooled(self, now: float) -> bool:
        """After the cool-down the circuit closes with a clean slate; True if it is closed."""
        if self.open_until is None:
            return True
        if now < self.open_until:
            return False
        self.reset()
        return True

    def reset(self) -> None:
        """Close the circuit and forget past failures (an operator's reload)."""
        self._failures.clear()
        self.open_until = None
