"""Scheduling steps: sets that claim a feature, running batch work, soft and hard preemption,
session affinity and the counters that report them.

Load comes from directives: batch tasks that stream for seconds (`tokens=40 itl_ms=50`) keep
every slot busy, so an urgent task can only start at once if something is preempted; a task
marked `interruptible=false` is one the engine cannot save. Orders of events are compared
(first token of one stream against the end of another), never absolute durations.
"""

from __future__ import annotations

from typing import Any

from pytest_bdd import given, then, when

from llama_orch.harness.outcomes import precondition
from llama_orch.harness.sched_probe import (
    end_at,
    groups_claiming,
    hold_slots,
    metrics_events,
    pick_group,
    poll_until,
    scrape,
    terminal,
)
from llama_orch.harness.steps.fixtures import P
from llama_orch.harness.steps.watch import StreamWatch
from llama_orch.harness.steps.world import World

RUNNER_SEED = 4242
# Slack when comparing when events were seen on two streams read by two threads: the batch
# runners stream for a second or more, so an urgent task started by preemption shows at least
# this far ahead of any runner's end, and one that waited for a slot no earlier than this
# before it.
ORDER_SLACK_S = 0.3  # batch runners share one seed, so an uninterrupted rerun is comparable
FILL_BOUND = 300
METRICS_SETTLE_S = 3.0


def _runners(world: World) -> dict[str, StreamWatch]:
    return {k: w for k, w in world.watches.items() if k.startswith("runner-")}


def _engine(world: World) -> str:
    return world.current_group().engine


# -- which replica set ------------------------------------------------------------------------
@given(P('a replica set whose engine claims "{feature:Q}"'))
def set_claiming(world: World, feature: str) -> None:
    world.group = pick_group(world.target, feature)


@given(P('a replica set whose engine claims "{feature:Q}" but not "{other:Q}"'))
def set_claiming_not(world: World, feature: str, other: str) -> None:
    world.group = pick_group(world.target, feature, without=other)
    world.extra["claims"] = (feature, other)


# -- load --------------------------------------------------------------------------------------
@given(P('every slot of the replica set runs a batch task with prompt "{prompt:Q}"'))
def batch_runners(world: World, prompt: str) -> None:
    world.extra["metrics_before"] = scrape(world.orch)
    world.extra["runner_prompt"] = prompt
    hold_slots(world, world.current_group(), prompt, "batch", seed=RUNNER_SEED)


@given("its slots run and its queue holds batch work, under a policy that does not shed it")
def slots_and_queue_batch(world: World) -> None:
    """Busy slots, then batch tasks queued until a 429 or until queue positions stop growing
    (the queue made room by dropping one): the queue is full of batch work. A set whose
    full-queue policy is shed-low-priority names its own victim (the oldest lower-priority
    task, OC-CORE-1002), so the next set claiming the same features is tried instead."""
    feature, other = world.extra.get("claims", ("preemption_soft", "preemption_hard"))
    for group in groups_claiming(world.target, feature, without=other):
        world.group = group
        world.extra["metrics_before"] = scrape(world.orch)
        hold_slots(world, group, "[[sim tokens=1 hold_ms=30000]] busy", "batch")
        queued, refused = _fill(world)
        label = _label(refused)
        if label != "shed-low-priority":
            precondition(len(queued) >= 2, "the queue holds fewer than two batch tasks")
            world.extra["queued"] = queued
            return
        world.cleanup()
        world.admitted.clear()
        world.holders.clear()
        world.watches.clear()
    precondition(False, f"no set claiming {feature} without {other} keeps shed policies out")


def _label(resp: Any) -> str | None:
    if resp is None or not resp.content:
        return None
    body = resp.json()
    return body.get("policy_label") if isinstance(body, dict) else None


def _fill(world: World) -> tuple[list[tuple[str, int]], Any]:
    queued: list[tuple[str, int]] = []
    prev = -1
    for n in range(FILL_BOUND):
        body = world.new_task("[[sim tokens=1 hold_ms=30000]] queued batch", priority="batch")
        resp = world.submit(body, setup=True)
        if resp.status_code == 429:
            return queued, resp
        precondition(resp.status_code == 202, f"filling got {resp.status_code}: {resp.text}")
        position = resp.json().get("queue_position")
        precondition(isinstance(position, int), f"admission without queue_position: {resp.text}")
        queued.append((body["task_id"], position))
        world.watch(f"queued-{n}", body["task_id"])
        if prev > 0 and position <= prev:
            return queued, None
        prev = position
    precondition(False, f"the queue took {FILL_BOUND} tasks without a limit")
    return queued, None


# -- urgent work -------------------------------------------------------------------------------
@when(P('I submit an interactive task "{label:Q}" with prompt "{prompt:Q}"'))
def submit_urgent(world: World, label: str, prompt: str) -> None:
    body = world.new_task(prompt, priority="interactive")
    world.tasks[label] = world.task = body
    world.submit(body)
    if world.response.status_code == 202:
        world.watch(label, body["task_id"])


@then(P('task "{label:Q}" is admitted'))
def admitted(world: World, label: str) -> None:
    assert label in world.watches, f"task {label} was not admitted: {world.response.text[:300]}"


@then(P('task "{label:Q}" streams its first token before any batch task ends'))
def starts_first(world: World, label: str) -> None:
    watch = world.watches[label]
    assert watch.wait_tokens(1, world.orch.timeouts.stream_s), f"task {label} never started"
    first = watch.first_token_at() or 0.0
    ended = [t for t in (end_at(w) for w in _runners(world).values()) if t is not None]
    assert not ended or first < min(ended) - ORDER_SLACK_S, (
        f"task {label} started {first - min(ended):.3f} s after a batch task ended: nothing "
        "made room for it while every slot was busy"
    )


@then(P('task "{label:Q}" streams its first token only after a batch task ended'))
def starts_after(world: World, label: str) -> None:
    watch = world.watches[label]
    assert watch.wait_tokens(1, world.orch.timeouts.stream_s), f"task {label} never started"
    first = watch.first_token_at() or 0.0
    ended = [t for t in (end_at(w) for w in _wait_runners(world).values()) if t is not None]
    assert ended and min(ended) - ORDER_SLACK_S <= first, (
        f"task {label} started while every batch task was still running: one was interrupted"
    )


def _wait_runners(world: World) -> dict[str, StreamWatch]:
    runners = _runners(world)
    within = world.orch.timeouts.stream_s
    precondition(all(w.wait_done(within) for w in runners.values()), "batch tasks never ended")
    return runners


def _preempted(watch: StreamWatch) -> list[dict[str, Any]]:
    return [m for m in metrics_events(watch) if m.get("preempted") is True]


@then("exactly one batch task reports preempted with a resumable state")
def one_preempted(world: World) -> None:
    runners = _wait_runners(world)
    hit = {k: _preempted(w) for k, w in runners.items() if _preempted(w)}
    assert len(hit) == 1, f"{len(hit)} batch tasks report preempted: {sorted(hit)}"
    ((label, events),) = hit.items()
    state = events[0].get("resumable_state")
    assert isinstance(state, dict) and state, f"preempted without a resumable state: {events[0]}"
    world.extra["preempted"] = label


@then("no batch task reports preempted")
def none_preempted(world: World) -> None:
    hit = [k for k, w in _runners(world).items() if _preempted(w)]
    assert not hit, f"batch tasks {hit} report preempted"


@then(P("no batch task reports preempted and each ends with all {n:d} tokens"))
def none_preempted_all_tokens(world: World, n: int) -> None:
    runners = _wait_runners(world)
    hit = [k for k, w in runners.items() if _preempted(w)]
    assert not hit, f"batch tasks {hit} report preempted"
    for label, w in runners.items():
        end = terminal(w)
        assert end is not None and end.event == "end", f"{label} ended with {end}"
        assert len(w.tokens()) == n, f"{label} streamed {len(w.tokens())} tokens, not {n}"


@then(P("the preempted task resumes and streams all {n:d} tokens as an uninterrupted run does"))
def resumed_whole(world: World, n: int) -> None:
    label = world.extra.get("preempted")
    precondition(label is not None, "no preempted task in this scenario")
    watch = world.watches[label]
    end = terminal(watch)
    assert end is not None and end.event == "end", f"the preempted task ended with {end}"
    tokens = watch.tokens()
    indices = [e.data.get("i") for e in tokens]
    assert indices == list(range(n)), f"token indices after the resume: {indices}"
    reference = world.new_task(world.extra["runner_prompt"], priority="batch", seed=RUNNER_SEED)
    world.submit_ok(reference)
    _, events = world.orch.stream(reference["task_id"])
    want = [(e.data.get("t"), e.data.get("token_id")) for e in events if e.event == "token"]
    got = [(e.data.get("t"), e.data.get("token_id")) for e in tokens]
    assert got == want, "the resumed stream differs from an uninterrupted run of the same task"


@then("the queued batch task admitted last ended with error ADMISSION_REJECT")
def newest_evicted(world: World) -> None:
    queued = world.extra["queued"]
    last = next(k for k, w in world.watches.items() if w.task_id == queued[-1][0])
    watch = world.watches[last]
    assert watch.wait_done(2.0), "the batch task admitted last is still waiting"
    end = terminal(watch)
    code = end.data.get("code") if end is not None and isinstance(end.data, dict) else None
    assert end is not None and end.event == "error" and code == "ADMISSION_REJECT", (
        f"the batch task with the latest predicted start ended with {end.raw if end else None}"
    )
    assert not watch.tokens(), "the evicted task had streamed tokens"


@then("the other queued batch tasks that were waiting are still queued")
def others_wait(world: World) -> None:
    queued = {tid for tid, _ in world.extra["queued"][:-1]}
    ended = [
        k
        for k, w in world.watches.items()
        if w.task_id in queued
        and (e := terminal(w)) is not None
        and e.data.get("code") not in ("QUEUE_FULL_DROP_LRU",)
    ]
    assert not ended, f"queued batch tasks {ended} ended as well: more than one was evicted"


# -- counters ----------------------------------------------------------------------------------
def _grew(world: World, name: str, n: int, **labels: str) -> None:
    before = world.extra.get("metrics_before")
    precondition(before is not None, "no metrics were read before the load")
    got: list[float] = []

    def settled() -> bool:
        got[:] = [scrape(world.orch).total(name, **labels) - before.total(name, **labels)]
        return got[0] == n

    poll_until(settled, METRICS_SETTLE_S, 0.2)
    assert got and got[0] == n, f"{name}{labels} grew by {got[0] if got else '?'}, not {n}"


@then(P('the counter {name:W} for the engine with mode "{mode:W}" grew by {n:d}'))
def counter_mode_grew(world: World, name: str, mode: str, n: int) -> None:
    _grew(world, name, n, engine=_engine(world), mode=mode)


@then(P("the counter {name:W} for the engine grew by {n:d}"))
def counter_grew(world: World, name: str, n: int) -> None:
    _grew(world, name, n, engine=_engine(world))


# -- session affinity --------------------------------------------------------------------------
@given(P("the replica set has at least {n:d} replicas"))
def replicas_at_least(world: World, n: int) -> None:
    group = world.current_group()
    count = sum(
        len(rs.get("replicas") or [])
        for rs in world.replica_sets()
        if str(rs.get("id")) in group.set_ids
    )
    precondition(count >= n, f"replica set {group.label} lists {count} replicas, need {n}")


@when(P('sessions "{a:Q}" and "{b:Q}" run their first turns at the same time'))
def first_turns(world: World, a: str, b: str) -> None:
    group = world.current_group()
    world.wait_idle(group)
    for label in (a, b):
        body = world.new_task("[[sim tokens=1 hold_ms=300]] first turn")
        world.tasks[label] = body
        world.submit_ok(body, setup=True)
        world.watch(f"{label}-1", body["task_id"])
    for label in (a, b):
        precondition(world.watches[f"{label}-1"].wait_done(5.0), f"{label}'s first turn hung")


@when(P('sessions "{a:Q}" and "{b:Q}" run their next turns one after the other'))
def next_turns(world: World, a: str, b: str) -> None:
    group = world.current_group()
    for label in (a, b):
        world.wait_idle(group)
        session = world.tasks[label]["session_id"]
        body = world.new_task("[[sim tokens=1]] next turn", session_id=session)
        world.submit_ok(body, setup=True)
        world.watch(f"{label}-2", body["task_id"])
        precondition(world.watches[f"{label}-2"].wait_done(5.0), f"{label}'s next turn hung")


def _placement(watch: StreamWatch) -> dict[str, Any]:
    placed = [m for m in metrics_events(watch) if "kv_warmth" in m and "replica_id" in m]
    placed = placed or [m for m in metrics_events(watch) if "kv_warmth" in m]
    return placed[-1] if placed else {}


@then(P('the next turns of "{a:Q}" and "{b:Q}" report kv_warmth true on their first replicas'))
def warm_next_turns(world: World, a: str, b: str) -> None:
    for label in (a, b):
        first, nxt = (
            _placement(world.watches[f"{label}-1"]),
            _placement(world.watches[f"{label}-2"]),
        )
        precondition(nxt, f"{label}'s next turn reported no kv_warmth")
        assert nxt.get("kv_warmth") is True, f"{label}'s next turn was placed cold: {nxt}"
        if "replica_id" in first and "replica_id" in nxt:
            assert first["replica_id"] == nxt["replica_id"], (
                f"{label} moved from {first['replica_id']} to {nxt['replica_id']}"
            )
    firsts = {_placement(world.watches[f"{x}-1"]).get("replica_id") for x in (a, b)}
    precondition(None in firsts or len(firsts) == 2, "both first turns ran on one replica")
