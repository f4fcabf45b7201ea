"""Predictions and deadlines: start/finish estimates, feasibility, on-time probability.

- `Predictor` keeps per-pool EWMAs (alpha 0.2) of observed task duration (dispatch to end) and
  of ms per generated token, starting from priors of 50 ms per task and 5 ms per token.
- A queued task with `ahead` tasks before it starts at once while `ahead` < free slots;
  otherwise it waits for ceil((ahead - free + 1) / slots) "waves" of one mean task duration.
- Its own decode takes ms_per_token * expected tokens (`expected_tokens`, else `max_tokens`,
  the conservative choice).
- Feasible (ORCH-3079): predicted start + decode <= the relative deadline.
- `on_time_probability`: logistic in the slack s = deadline - predicted finish, with scale
  max(50 ms, 25% of the predicted time to finish): 0.5 at zero slack, rising to 1 as slack
  grows and falling to 0 as it shrinks. Monotone in slack, always in [0, 1]; 1.0 without a
  deadline. The scale grows with the horizon because long predictions are less certain.
- `MetWindow`: `deadlines_met_ratio{priority}` over the last 256 finished tasks that carried a
  deadline (a count window, so the gauge does not depend on traffic rate).
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .types import TaskSpec

PRIOR_TASK_MS = 50.0
PRIOR_TOKEN_MS = 5.0
EWMA_ALPHA = 0.2
MET_WINDOW = 256


class Predictor:
    """EWMA duration model of one pool."""

    __slots__ = ("task_ms", "token_ms")

    def __init__(self, task_ms: float = PRIOR_TASK_MS, token_ms: float = PRIOR_TOKEN_MS) -> None:
        self.task_ms = task_ms
        self.token_ms = token_ms

    def observe(self, duration_ms: int, tokens_out: int) -> None:
        """Fold one finished task (dispatch to end) into both averages."""
        duration = max(0.0, float(duration_ms))
        self.task_ms += EWMA_ALPHA * (duration - self.task_ms)
        self.token_ms += EWMA_ALPHA * (duration / max(1, tokens_out) - self.token_ms)

    def start_ms(self, ahead: int, free_slots: int, total_slots: int) -> int:
        """Predicted ms from now until dispatch of a task with `ahead` tasks before it."""
        if ahead < free_slots:
            return 0
        waves = math.ceil((ahead - free_slots + 1) / max(1, total_slots))
        return round(waves * self.task_ms)

    def decode_ms(self, tokens: int) -> int:
        return round(self.token_ms * max(0, tokens))


def expected_tokens(task: TaskSpec) -> int:
    """Tokens a task's decode is predicted to take: `expected_tokens` capped by `max_tokens`."""
    if task.expected_tokens is not None:
        return min(task.expected_tokens, task.max_tokens)
    return task.max_tokens


def feasible(start_ms: int, decode_ms: int, deadline_ms: int | None) -> bool:
    """True when no deadline is set or the predicted finish is within it."""
    return not deadline_ms or start_ms + decode_ms <= deadline_ms


def on_time_probability(start_ms: int, decode_ms: int, deadline_ms: int | None) -> float:
    """Monotone-in-slack estimate that the task finishes within its deadline."""
    if not deadline_ms:
        return 1.0
    horizon = start_ms + decode_ms
    slack = deadline_ms - horizon
    scale = max(50.0, 0.25 * horizon)
    z = max(-60.0, min(60.0, slack / scale))
    return 1.0 / (1.0 + math.exp(-z))


class MetWindow:
    """Fraction of the last `size` deadline-carrying tasks that finished in time."""

    __slots__ = ("_met", "_window")

    def __init__(self, size: int = MET_WINDOW) -> None:
        self._window: deque[bool] = deque(maxlen=size)
        self._met = 0

    def record(self, met: bool) -> None:
        window = self._window
        if len(window) == window.maxlen and window[0]:
            self._met -= 1
        window.append(met)
        self._met += met

    def ratio(self) -> float | None:
        return self._met / len(self._window) if self._window else None
