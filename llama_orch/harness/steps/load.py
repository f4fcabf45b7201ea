"""Load steps: busy slots, queued tasks, dispatch order, placement and full queues.

Slots are held by tasks with `[[sim tokens=100 itl_ms=300]]` (a token every 300 ms for 30 s,
busy and never idle); the world cancels them at the end. A queue is filled until the target pushes
back: a `429`, or an eviction, seen as an admitted task whose queue position no longer grows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from pytest_bdd import given, then, when

from llama_orch.harness.outcomes import Violation
from llama_orch.harness.rules import CANCEL
from llama_orch.harness.steps.fixtures import P
from llama_orch.harness.steps.watch import read_events
from llama_orch.harness.steps.world import HOLD_PROMPT, Group, World, poll, precondition

FILL_BOUND = 300
POLICY_BY_EVICTION = {"QUEUE_FULL_DROP_LRU": "drop-lru", "ADMISSION_REJECT": "shed-low-priority"}


# -- busy slots and queued tasks -------------------------------------------------------------
@given("all slots of the replica set are busy")
def slots_busy(world: World) -> None:
    world.hold_slots(world.current_group())


@given(P('a queued {priority:W} task "{label:Q}" with prompt "{prompt:Q}"'))
def queued_task(world: World, priority: str, label: str, prompt: str) -> None:
    body = world.new_task(prompt, priority=priority)
    world.tasks[label] = world.task = body
    world.submit_ok(body, setup=True)
    world.watch(label, body["task_id"])


@when("I free the slots one at a time")
def free_one_at_a_time(world: World) -> None:
    """Cancel the oldest slot holder, then see which queued task takes the freed slot."""
    waiting = [label for label in world.tasks if label in world.watches]
    holders = list(world.holders)
    order: list[str] = []
    while waiting:
        precondition(holders, "no slot holder left to cancel")
        holder = holders.pop(0)
        resp = world.orch.cancel(holder)
        if resp.status_code != 204:
            raise Violation(CANCEL, f"the cancel of a slot holder answered {resp.status_code}")
        watch = next((w for w in world.watches.values() if w.task_id == holder), None)
        bound = world.orch.timeouts.settle_s
        if watch is not None and not watch.wait_done(bound):
            raise Violation(CANCEL, f"a canceled slot holder's stream did not end in {bound:g} s")
        started: list[str] = []

        def one_started(waiting: list[str] = waiting, started: list[str] = started) -> bool:
            broken = next((world.watches[w] for w in waiting if world.watches[w].violation), None)
            if broken is not None:
                raise broken.violation
            started[:] = [w for w in waiting if world.watches[w].tokens()]
            return bool(started)

        assert poll(one_started, 5.0), f"no queued task started after a slot was freed: {waiting}"
        first = min(started, key=lambda w: world.watches[w].first_token_at() or 0.0)
        order.append(first)
        waiting.remove(first)
        holders.append(world.tasks[first]["task_id"])
    world.extra["start_order"] = order


@then(P("the queued tasks started in the order {order}"))
def start_order(world: World, order: str) -> None:
    want = [w.strip() for w in order.replace(" and ", ",").split(",") if w.strip()]
    got = world.extra.get("start_order")
    assert got == want, f"queued tasks started in the order {got}, expected {want}"


# -- placement -------------------------------------------------------------------------------
@given("the replica set is idle")
def set_idle(world: World) -> None:
    world.wait_idle(world.current_group())


@when(P('I start {n:d} tasks with prompt "{prompt:Q}"'))
def start_tasks(world: World, n: int, prompt: str) -> None:
    for k in range(n):
        body = world.new_task(prompt)
        world.tasks[f"T{k + 1}"] = body
        world.submit_ok(body, setup=True)
        world.watch(f"T{k + 1}", body["task_id"])


@when(P("all of them have streamed their first token within {seconds:d} seconds"))
def all_started_premise(world: World, seconds: int) -> None:
    late = [w for w in world.tasks if not world.watches[w].wait_tokens(1, float(seconds))]
    precondition(not late, f"tasks {late} did not start within {seconds} s")


@then(P("all of them stream their first token within {seconds:d} seconds"))
def all_started(world: World, seconds: int) -> None:
    late = [w for w in world.tasks if not world.watches[w].wait_tokens(1, float(seconds))]
    assert not late, f"tasks {late} did not start within {seconds} s: they were not run at once"


@then(P("the replica set reports {n:d} busy slots"))
def busy_slots(world: World, n: int) -> None:
    free, total = world.slots(world.current_group())
    assert total - free == n, f"slots_total {total}, slots_free {free}: expected {n} busy"


@then(P("the replica set reports all its slots free within {seconds:d} seconds"))
def all_free(world: World, seconds: int) -> None:
    group = world.current_group()
    state: dict[str, tuple[int, int]] = {}

    def free() -> bool:
        state["now"] = world.slots(group)
        return state["now"][0] >= state["now"][1]

    assert poll(free, float(seconds), 0.1), f"slots (free, total) stay at {state['now']}"


@then(P("a new task on the replica set streams its first token within {seconds:d} seconds"))
def new_task_runs(world: World, seconds: int) -> None:
    body = world.new_task("[[sim tokens=1]] after")
    world.submit_ok(body)
    events, _ = read_events(
        world.orch,
        body["task_id"],
        within_s=float(seconds),
        stop=lambda ev: any(e.event == "token" for e in ev),
    )
    assert any(e.event == "token" for e in events), f"no token within {seconds} s: no free slot"


# -- full queues -----------------------------------------------------------------------------
@dataclass
class Fill:
    """One run of submissions into a replica set until it pushed back."""

    group: Group
    slots: int
    admitted: list[tuple[str, int]] = field(default_factory=list)  # (task_id, queue_position)
    refused: httpx.Response | None = None
    plateau: bool = False
    evicted_code: str | None = None

    def oldest_queued(self) -> str | None:
        return self.admitted[self.slots][0] if len(self.admitted) > self.slots else None

    def policy(self) -> str | None:
        if self.refused is not None:
            body = self.refused.json() if self.refused.content else {}
            label = body.get("policy_label") if isinstance(body, dict) else None
            return label if isinstance(label, str) else None
        return POLICY_BY_EVICTION.get(self.evicted_code or "")


def _advised_wait_s(resp: httpx.Response) -> float:
    """The backoff a 429 advises (X-Backoff-Ms, else Retry-After), within 0.05..5 s."""
    for header, scale in (("X-Backoff-Ms", 0.001), ("Retry-After", 1.0)):
        value = resp.headers.get(header, "").strip()
        if value.isdigit():
            return min(max(int(value) * scale, 0.05), 5.0)
    return 1.0


def fill(world: World, group: Group, priority: str) -> Fill:
    """Submit hold tasks until a 429, or until queue positions stop growing (an eviction)."""
    total = world.wait_idle(group)
    run = Fill(group, total)
    prev = -1
    patience = time.monotonic() + world.orch.timeouts.settle_s
    for _ in range(FILL_BOUND):
        resp = world.submit(world.new_task(HOLD_PROMPT, group=group, priority=priority))
        if resp.status_code == 429 and not run.admitted:
            # Refused with nothing of ours queued: not a full queue but a pause the target
            # asked for (a breaker, a rate limit). Honour its backoff and try again.
            precondition(
                time.monotonic() < patience,
                f"replica set {group.label} refuses work while none of the fill is queued: "
                f"{resp.text[:300]}",
            )
            time.sleep(_advised_wait_s(resp))
            continue
        if resp.status_code == 429:
            run.refused = resp
            return run
        precondition(resp.status_code == 202, f"fill got {resp.status_code}: {resp.text[:300]}")
        body: dict[str, Any] = resp.json()
        pos = body.get("queue_position")
        if not isinstance(pos, int):
            raise Violation(("ORCH-2001",), f"an admission without queue_position: {body}")
        run.admitted.append((body["task_id"], pos))
        if prev > 0 and pos <= prev:
            run.plateau = True
            break
        prev = pos
    oldest = run.oldest_queued()
    if run.plateau and oldest is not None:
        events, ended = read_events(world.orch, oldest, within_s=1.0)
        if ended and events[-1].event == "error" and isinstance(events[-1].data, dict):
            run.evicted_code = events[-1].data.get("code")
    return run


def _cancel_fill(world: World, run: Fill) -> None:
    for task_id, _ in run.admitted:
        world.orch.cancel(task_id)


def _candidates(world: World, wanted: str | None) -> list[Group]:
    seen = world.memo.setdefault("policies", {})
    groups = world.groups()
    if wanted is None:
        return groups
    known = [g for g in groups if seen.get(g.key) == wanted]
    unknown = [g for g in groups if g.key not in seen]
    return known + unknown


def fill_until(world: World, wanted: str | None, priority: str) -> Fill:
    """Fill sets until one shows `wanted` (a policy label) or, when None, answers 429."""
    seen = world.memo.setdefault("policies", {})
    for group in _candidates(world, wanted):
        run = fill(world, group, priority)
        if run.policy() is not None:
            seen[group.key] = run.policy()
        hit = run.refused is not None if wanted is None else run.policy() == wanted
        if hit:
            world.group = group
            world.extra["fill"] = run
            if run.refused is not None:
                world.record(run.refused)
            return run
        _cancel_fill(world, run)
    what = "answered 429 to a full queue" if wanted is None else f"shows the {wanted} policy"
    pytest.skip(f"no replica set of the target {what} within {FILL_BOUND} submissions")


@when("I fill replica set queues until one answers 429")
def fill_to_429(world: World) -> None:
    fill_until(world, None, "interactive")


@when(P('I fill the queue of a replica set whose full-queue policy is "{policy:Q}"'))
def fill_policy(world: World, policy: str) -> None:
    fill_until(world, policy, "interactive")


@when(
    P('I fill the queue of a replica set whose full-queue policy is "{policy:Q}" with batch tasks')
)
def fill_policy_batch(world: World, policy: str) -> None:
    fill_until(world, policy, "batch")


@when("I submit an interactive task to the same replica set")
def submit_interactive(world: World) -> None:
    world.task = world.new_task(HOLD_PROMPT, priority="interactive")
    world.submit(world.task)


def _fill(world: World) -> Fill:
    run = world.extra.get("fill")
    assert run is not None, "no queue was filled in this scenario"
    return run


@then(P("the oldest queued task of the fill ended with error {code:W}"))
def oldest_evicted(world: World, code: str) -> None:
    oldest = _fill(world).oldest_queued()
    precondition(oldest is not None, "the fill queued no task")
    events, ended = read_events(world.orch, oldest, within_s=2.0)
    assert ended, "the oldest queued task is still waiting: nothing was evicted"
    last = events[-1]
    got = last.data.get("code") if isinstance(last.data, dict) else None
    assert last.event == "error" and got == code, f"it ended with {last.event} {last.data!r}"
    assert not any(e.event == "token" for e in events), "the evicted task had streamed tokens"


@then("the oldest queued task of the fill is still queued")
def oldest_waits(world: World) -> None:
    oldest = _fill(world).oldest_queued()
    precondition(oldest is not None, "the fill queued no task")
    events, ended = read_events(world.orch, oldest, within_s=0.5)
    assert not ended, f"the oldest queued task ended: {events[-1].event} {events[-1].data!r}"
