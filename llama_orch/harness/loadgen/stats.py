"""Percentiles and the per-run summary that both the table and the JSON report print.

Latency figures cover successful tasks only: a refused task (a 429 answered in a millisecond)
or a stream cut short would otherwise pull the percentiles down and hide the refusals.
Throughput counts every token that reached the client, failed tasks' partial output included.

With a priority mix, each class also gets its own counts and TTFT, E2E and queue-wait
distributions (`by_priority`); a run with one priority has none, so its report is unchanged.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llama_orch.harness.loadgen.mix import PRIORITIES

if TYPE_CHECKING:
    from llama_orch.harness.loadgen.load import RunResult, TaskResult

QUANTILES: tuple[tuple[str, float], ...] = (("p50", 50.0), ("p95", 95.0), ("p99", 99.0))
METRICS: tuple[str, ...] = ("ttft", "itl", "e2e", "admit")
CLASS_METRICS: tuple[str, ...] = ("ttft", "e2e", "queue_wait")


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation between closest ranks.

    This is the common default (NumPy's `linear`, Hyndman-Fan type 7, `statistics.quantiles`
    with `method="inclusive"`), so figures can be reproduced with any of those tools.
    Returns None for no data.
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must lie in [0, 100], got {q}")
    if not values:
        return None
    data = sorted(values)
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    frac = pos - lo
    return data[lo] + (data[hi] - data[lo]) * frac


@dataclass(frozen=True)
class Distribution:
    """Count, p50/p95/p99, max and mean of one latency series, in milliseconds."""

    count: int
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None
    mean: float | None

    @classmethod
    def of(cls, values: Iterable[float]) -> Distribution:
        data = sorted(values)
        if not data:
            return cls(0, None, None, None, None, None)
        return cls(
            count=len(data),
            p50=percentile(data, 50.0),
            p95=percentile(data, 95.0),
            p99=percentile(data, 99.0),
            max=data[-1],
            mean=sum(data) / len(data),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            **{k: _round(getattr(self, k)) for k in ("p50", "p95", "p99", "max", "mean")},
        }


@dataclass(frozen=True)
class ClassSummary:
    """One priority class within a run: its counts and latency distributions.

    `queue_wait` is present only when the target marked dispatch (see harness.loadgen.client).
    """

    priority: str
    tasks_total: int
    tasks_ok: int
    errors: dict[str, int]
    latency_ms: dict[str, Distribution] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tasks_total": self.tasks_total,
            "tasks_ok": self.tasks_ok,
            "tasks_failed": self.tasks_total - self.tasks_ok,
            "errors": dict(sorted(self.errors.items())),
            "latency_ms": {k: d.to_dict() for k, d in self.latency_ms.items()},
        }


@dataclass(frozen=True)
class RunSummary:
    """Everything the report shows for one run against one target."""

    name: str
    tasks_total: int
    tasks_ok: int
    errors: dict[str, int]
    wall_s: float
    tokens_total: int
    latency_ms: dict[str, Distribution] = field(default_factory=dict)
    by_priority: dict[str, ClassSummary] = field(default_factory=dict)

    @property
    def tasks_failed(self) -> int:
        return self.tasks_total - self.tasks_ok

    @property
    def tasks_per_s(self) -> float:
        """Completed (ok) tasks per second of measured wall time."""
        return self.tasks_ok / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_total / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tasks_total": self.tasks_total,
            "tasks_ok": self.tasks_ok,
            "tasks_failed": self.tasks_failed,
            "errors": dict(sorted(self.errors.items())),
            "wall_s": _round(self.wall_s, 4),
            "tasks_per_s": _round(self.tasks_per_s),
            "tokens_total": self.tokens_total,
            "tokens_per_s": _round(self.tokens_per_s),
            "latency_ms": {k: d.to_dict() for k, d in self.latency_ms.items()},
            **(
                {"by_priority": {k: c.to_dict() for k, c in self.by_priority.items()}}
                if self.by_priority
                else {}
            ),
        }


def summarize_class(priority: str, results: Iterable[TaskResult]) -> ClassSummary:
    """Counts and TTFT/E2E/queue-wait distributions of one class's tasks."""
    mine = list(results)
    ok = [r for r in mine if r.ok]
    series: dict[str, list[float]] = {
        "ttft": [r.ttft_ms for r in ok if r.ttft_ms is not None],
        "e2e": [r.e2e_ms for r in ok if r.e2e_ms is not None],
        "queue_wait": [r.queue_wait_ms for r in ok if r.queue_wait_ms is not None],
    }
    return ClassSummary(
        priority=priority,
        tasks_total=len(mine),
        tasks_ok=len(ok),
        errors=dict(Counter(r.outcome for r in mine if not r.ok)),
        latency_ms={k: Distribution.of(v) for k, v in series.items() if k != "queue_wait" or v},
    )


def by_priority(results: Sequence[TaskResult]) -> dict[str, ClassSummary]:
    """Per-class summaries, highest class first; tasks without a class are left out."""
    classes = {r.priority for r in results if r.priority is not None}
    order = sorted(classes, key=lambda p: (PRIORITIES.index(p) if p in PRIORITIES else 99, p))
    return {p: summarize_class(p, (r for r in results if r.priority == p)) for p in order}


def summarize(run: RunResult, *, per_priority: bool = False) -> RunSummary:
    """Reduce a run's task results to the report's figures; `per_priority` adds the classes."""
    ok = [r for r in run.results if r.ok]
    series: dict[str, list[float]] = {
        "ttft": [r.ttft_ms for r in ok if r.ttft_ms is not None],
        "itl": [gap for r in ok for gap in r.itl_ms],
        "e2e": [r.e2e_ms for r in ok if r.e2e_ms is not None],
        "admit": [r.admit_ms for r in ok if r.admit_ms is not None],
    }
    errors = Counter(r.outcome for r in run.results if not r.ok)
    return RunSummary(
        name=run.name,
        tasks_total=len(run.results),
        tasks_ok=len(ok),
        errors=dict(errors),
        wall_s=run.wall_s,
        tokens_total=sum(r.tokens for r in run.results),
        latency_ms={k: Distribution.of(v) for k, v in series.items() if k != "admit" or v},
        by_priority=by_priority(run.results) if per_priority else {},
    )


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)
