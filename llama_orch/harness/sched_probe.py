"""Helpers the scheduling checks share: which sets claim a feature, controlled load, metrics.

Everything here speaks HTTP and SSE only (through `OrchClient` and the scenario `World`).
Load comes from `[[sim ...]]` directives, so timing is set by the test engine and never by
luck: a task that "holds" its slot keeps it until the check cancels it, and a task marked
`interruptible=false` is one the engine cannot save for a later resume (specs/80 §6).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from llama_orch.harness.client import OrchClient
from llama_orch.harness.discovery import Group, Target
from llama_orch.harness.metrics_lint import Exposition, LintRules, parse_exposition
from llama_orch.harness.outcomes import precondition
from llama_orch.harness.sse import SseEvent
from llama_orch.harness.steps.watch import StreamWatch
from llama_orch.harness.steps.world import World

# A slot holder the engine cannot save: hard preemption must leave it alone.
HOLD_FIXED = "[[sim tokens=1 hold_ms=30000 interruptible=false]] hold"


def engine_features(target: Target, engine: str) -> dict[str, Any]:
    """The `features` object the target's capability data gives `engine` ({} when none)."""
    for entry in target.capabilities.get("engines") or []:
        if isinstance(entry, dict) and entry.get("engine") == engine:
            features = entry.get("features")
            return features if isinstance(features, dict) else {}
    return {}


def groups_claiming(target: Target, feature: str, *, without: str | None = None) -> list[Group]:
    """Replica sets whose engine claims `feature` (and does not claim `without`)."""
    out = []
    for group in target.groups():
        features = engine_features(target, group.engine)
        if features.get(feature) is True and not (without and features.get(without) is True):
            out.append(group)
    return out


def pick_group(target: Target, feature: str, *, without: str | None = None) -> Group:
    groups = groups_claiming(target, feature, without=without)
    what = f"claims {feature}" + (f" but not {without}" if without else "")
    precondition(groups, f"no replica set's engine {what} in its capabilities")
    return groups[0]


def scrape(orch: OrchClient) -> Exposition:
    """`GET /metrics`, parsed against the metrics contract."""
    resp = orch.get("/metrics")
    precondition(resp.status_code == 200, f"GET /metrics answered {resp.status_code}")
    expo = parse_exposition(resp.text, LintRules.load())
    precondition(expo.error is None, f"the metrics exposition does not parse: {expo.error}")
    return expo


def hold_slots(world: World, group: Group, prompt: str, priority: str, **extra: Any) -> list[str]:
    """Occupy every slot of `group` with tasks of `prompt`, each confirmed running; their
    watches are `runner-0`, `runner-1`, ... in `world.watches`."""
    total = world.wait_idle(group)
    precondition(total > 0, f"replica set {group.label} reports no slots")
    held = []
    for n in range(total):
        body = world.new_task(prompt, group=group, priority=priority, **extra)
        world.submit_ok(body, setup=True)
        w = world.watch(f"runner-{n}", body["task_id"])
        precondition(
            w.wait_tokens(1, 5.0),
            f"slot holder {n + 1} of {total} did not start within 5 s on {group.label}",
        )
        held.append(body["task_id"])
    world.holders.extend(held)
    return held


def metrics_events(watch: StreamWatch) -> list[dict[str, Any]]:
    return [e.data for _, e in watch.events if e.event == "metrics" and isinstance(e.data, dict)]


def token_events(watch: StreamWatch) -> list[SseEvent]:
    return watch.tokens()


def first_token_at(watch: StreamWatch) -> float | None:
    return watch.first_token_at()


def end_at(watch: StreamWatch) -> float | None:
    with watch._cond:
        return next((t for t, e in watch.events if e.event in ("end", "error")), None)


def terminal(watch: StreamWatch) -> SseEvent | None:
    with watch._cond:
        return next((e for _, e in watch.events if e.event in ("end", "error")), None)


def poll_until(check: Callable[[], bool], within_s: float, every_s: float = 0.05) -> bool:
    deadline = time.monotonic() + within_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(every_s)
    return True


@dataclass
class Release:
    """Queued tasks released one slot at a time: the exact order the target dispatched them.

    Every queued task holds its slot once started, so each cancel of a running task frees
    exactly one slot and exactly one queued task starts: the order is the target's decision,
    never a race between streams.
    """

    world: World
    holders: list[str]
    waiting: dict[str, StreamWatch]
    order: list[str] = field(default_factory=list)

    def step(self, within_s: float) -> str | None:
        """Free one slot; the label of the queued task that took it (None: none did)."""
        precondition(self.holders, "no running task is left to cancel")
        self.world.orch.cancel(self.holders.pop(0))
        started: list[str] = []

        def one() -> bool:
            started[:] = [k for k, w in self.waiting.items() if w.tokens()]
            return bool(started)

        if not poll_until(one, within_s):
            return None
        first = min(started, key=lambda k: self.waiting[k].first_token_at() or 0.0)
        self.order.append(first)
        watch = self.waiting.pop(first)
        self.holders.append(watch.task_id)
        return first

    def run(self, steps: int, within_s: float) -> list[str]:
        for _ in range(steps):
            if not self.waiting or self.step(within_s) is None:
                break
        return self.order


def counter_delta(before: Exposition, after: Exposition, name: str, **labels: str) -> float:
    return after.total(name, **labels) - before.total(name, **labels)


def labels_of(expo: Exposition, name: str) -> Iterable[dict[str, str]]:
    fam = expo.families.get(name)
    return [dict(s.labels) for s in fam.samples] if fam is not None else []
