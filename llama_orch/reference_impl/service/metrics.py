"""Prometheus metrics of the reference orchestrator, named per the metrics contract.

Names, types and label sets follow `ci/metrics.lint.json` (specs/71-metrics-contract.md).
What only the service sees (tokens, latencies, failures) is counted here as it happens;
what the scheduler already counts or holds (admissions, rejections, queue depth, shares) is
exposed at scrape time by `service.telemetry`, so it can never drift from the core.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

try:  # `_created` series are not part of the contract and would trip the lint.
    from prometheus_client import disable_created_metrics

    disable_created_metrics()
except ImportError:  # pragma: no cover - older prometheus_client
    pass

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# 0.9 and 2.5 are bounds of the example SLOs (specs/00 section 11): an SLI that counts tasks
# under a target reads one bucket exactly instead of interpolating (ci/alerts/slo.rules.yml).
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.9, 1, 2.5, 5, 10, 30)

_E = ("engine", "engine_version", "pool_id")


class ServiceMetrics:
    """The service's metrics, one registry per orchestrator instance (tests run several side by
    side); `GET /metrics` (`api.app.Metrics`) serves their exposition."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        r = self.registry
        self.failed = Counter(
            "tasks_failed",
            "Tasks that ended with an error event, by priority and code.",
            ["engine", "priority", "reason"],
            registry=r,
        )
        self.tokens_in = Counter(
            "tokens_in", "Prompt tokens of dispatched tasks.", [*_E, "replica_id"], registry=r
        )
        self.tokens_out = Counter(
            "tokens_out", "Tokens streamed to clients.", [*_E, "replica_id"], registry=r
        )
        self.resumptions = Counter("resumptions", "Preempted work resumed.", ["engine"], registry=r)
        self.catalog_verifications = Counter(
            "catalog_verifications",
            "Artifact verifications.",
            ["result", "reason", "engine"],
            registry=r,
        )
        self.first_token = Histogram(
            "latency_first_token_seconds",
            "Admission to first token.",
            [*_E, "priority"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.decode = Histogram(
            "latency_decode_seconds",
            "First token to end of stream.",
            [*_E, "priority"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )

    def child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, remembered: the hot path asks for the same few children
        (pools x replicas x priorities) for every task, and `labels()` validates and locks."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def add_producer(self, produce: Callable[[], Iterable[Metric]]) -> None:
        """Register a scrape-time producer of metric families (state-mirroring metrics)."""
        self.registry.register(_Producer(produce))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Producer(Collector):
    def __init__(self, produce: Callable[[], Iterable[Metric]]) -> None:
        self._produce = produce

    def collect(self) -> Iterable[Metric]:
        return self._produce()

    def describe(self) -> Iterable[Metric]:
        return []
