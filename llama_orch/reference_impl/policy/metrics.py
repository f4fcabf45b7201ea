"""Policy host metrics (specs/71): calls by plugin, hook and outcome; call durations; tools.

Registered on every orchestrator's registry, host or not, so their HELP/TYPE lines are there
from start-up; label values stay within the budgets of `ci/metrics.lint.json` (plugin ids are
operator-named and few; hook, outcome, tool and decision are enumerations).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

DURATION_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)


class PolicyMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.calls = Counter(
            "policy_calls",
            "Policy plugin calls, by plugin, hook and outcome.",
            ["plugin", "hook", "outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "policy_call_duration_seconds",
            "Duration of policy plugin calls, instantiation included.",
            ["plugin", "hook"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.tools = Counter(
            "policy_tool_invocations",
            "Mediated tool invocations, by tool and policy decision.",
            ["tool", "decision"],
            registry=registry,
        )

    def count_tool(self, tool: str, decision: str) -> None:
        self.tools.labels(tool, decision).inc()
