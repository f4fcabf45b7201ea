"""Deadlines, black-box: EDF against FIFO on one seeded load, default refusal of infeasible
deadlines, and the deadline telemetry (ORCH-3081, ORCH-3083, ORCH-3084).

The EDF check is statistical in form, deterministic in its load. A seeded generator (SEED,
then SEED+1... until a load qualifies) draws task durations and a target order; deadlines are
that order's finish times plus MARGIN_MS. The harness simulates both schedules of the load on
the replica set's slots: earliest deadline first meets every deadline by at least MARGIN_MS/2,
first-in-first-out (arrival order) misses at least FIFO_MISSES of them by at least MARGIN_MS/2.
Then the load really runs: the queued tasks are released at once, each task's end is timed
from the release, and the target passes when it misses fewer deadlines than the FIFO schedule
of the same load. Tolerance: MARGIN_MS/2 of timing slack on either side of every deadline.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from llama_orch.harness.client import task_body
from llama_orch.harness.outcomes import precondition
from llama_orch.harness.registry import Kind, Need, check
from llama_orch.harness.sched_probe import (
    HOLD_FIXED,
    end_at,
    groups_claiming,
    hold_slots,
    pick_group,
    scrape,
    terminal,
)
from llama_orch.harness.steps.world import World, scenario_world

SEED = 13084
MARGIN_MS = 400
FIFO_MISSES = 2
HOLDS_MS = (200, 400, 600)
TASKS_PER_SLOT = 3
MIN_TASKS = 6
RELEASE_AFTER_S = 1.0  # the load is queued within this; its deadlines count from then
WARM_TASKS = 8  # instant tasks first, so duration estimates are fresh, not from old load


@dataclass(frozen=True)
class Load:
    seed: int
    holds: list[int]  # ms per task, arrival order
    budgets: list[int]  # ms from the release until each task's deadline
    fifo_misses: int


def list_schedule(order: list[int], holds: list[int], slots: int) -> dict[int, int]:
    """Finish time of each task when `slots` servers take them in `order` from time 0."""
    free = [0] * slots
    finish: dict[int, int] = {}
    for i in order:
        k = min(range(slots), key=lambda s: free[s])
        free[k] += holds[i]
        finish[i] = free[k]
    return finish


def seeded_load(slots: int) -> Load:
    """The first seed from SEED whose load separates EDF from FIFO by the margins."""
    n = max(MIN_TASKS, TASKS_PER_SLOT * slots)
    for seed in range(SEED, SEED + 1000):
        rng = random.Random(seed)
        holds = [rng.choice(HOLDS_MS) for _ in range(n)]
        target = list(range(n))
        rng.shuffle(target)
        planned = list_schedule(target, holds, slots)
        budgets = [planned[i] + MARGIN_MS for i in range(n)]
        edf = list_schedule(sorted(range(n), key=lambda i: (budgets[i], i)), holds, slots)
        fifo = list_schedule(list(range(n)), holds, slots)
        if any(edf[i] > budgets[i] - MARGIN_MS // 2 for i in range(n)):
            continue
        late = sum(1 for i in range(n) if fifo[i] > budgets[i] + MARGIN_MS // 2)
        if late >= FIFO_MISSES:
            return Load(seed, holds, budgets, late)
    raise AssertionError("no seed gives a load that separates EDF from FIFO")  # pragma: no cover


def _warm(world: World, group) -> None:
    for _ in range(WARM_TASKS):
        body = world.new_task("[[sim tokens=1]] warm", group=group, max_tokens=1)
        world.submit_ok(body, setup=True)
        world.orch.stream(body["task_id"], within_s=5.0)


@check("ORCH-3084", kind=Kind.TEST, features=["deadlines"], needs=[Need.MODEL_REF])
def test_edf_misses_fewer_deadlines_than_fifo_on_the_same_load(orch, target) -> None:
    """A seeded load FIFO would partly miss: the target misses fewer of its deadlines."""
    group = pick_group(target, "deadlines")
    with scenario_world(orch, target, {}) as world:
        _warm(world, group)
        holders = hold_slots(world, group, HOLD_FIXED, "interactive")
        load = seeded_load(len(holders))
        release_at = time.monotonic() + RELEASE_AFTER_S
        watches = []
        for n, (hold, budget) in enumerate(zip(load.holds, load.budgets, strict=True)):
            left_ms = round((release_at - time.monotonic()) * 1000)
            precondition(left_ms > 100, "the load took too long to queue before its release")
            body = world.new_task(
                f"[[sim tokens=1 hold_ms={hold}]] edf {n}",
                group=group,
                deadline_ms=left_ms + budget,
                max_tokens=1,
            )
            resp = world.submit(body, setup=True)
            precondition(
                resp.status_code == 202,
                f"task {n} of the seeded load (seed {load.seed}) was refused: "
                f"{resp.status_code} {resp.text[:200]}",
            )
            watches.append(world.watch(f"edf-{n}", body["task_id"]))
        time.sleep(max(0.0, release_at - time.monotonic()))
        released = time.monotonic()
        for task_id in holders:
            orch.cancel(task_id)
        within = (sum(load.holds) + 2 * MARGIN_MS) / 1000 + 5.0
        precondition(
            all(w.wait_done(within) for w in watches),
            f"the seeded load did not finish within {within:.1f} s",
        )
    finished = [(end_at(w) or released) - released for w in watches]
    endings = [terminal(w) for w in watches]
    assert all(e is not None and e.event == "end" for e in endings), [
        e.data if e else None for e in endings
    ]
    missed = [
        n for n, (f, b) in enumerate(zip(finished, load.budgets, strict=True)) if f * 1000 > b
    ]
    assert len(missed) < load.fifo_misses, (
        f"the target missed {len(missed)} deadlines (tasks {missed}); FIFO order misses "
        f"{load.fifo_misses} of this load (seed {load.seed}, holds {load.holds} ms, budgets "
        f"{load.budgets} ms, finished {[round(f * 1000) for f in finished]} ms)"
    )


def _slow_task(group, deadline_ms: int) -> dict:
    return task_body(
        engine=group.engine,
        model_ref=group.model_ref,
        prompt="[[sim tokens=64 itl_ms=50]] a slow answer",
        max_tokens=64,
        deadline_ms=deadline_ms,
    )


@check("ORCH-3083", "ORCH-3079", features=["deadlines"], needs=[Need.MODEL_REF])
def test_every_set_claiming_deadlines_refuses_an_infeasible_one(orch, target) -> None:
    """After one slow task, 64 more tokens at that pace within 100 ms: 400 DEADLINE_UNMET."""
    groups = groups_claiming(target, "deadlines")
    precondition(groups, "no replica set's engine claims deadlines")
    for group in groups:
        pace = task_body(
            engine=group.engine,
            model_ref=group.model_ref,
            prompt="[[sim tokens=8 itl_ms=50]] pace",
            max_tokens=8,
            deadline_ms=orch.timeouts.deadline_ms,
        )
        precondition(orch.submit(pace).status_code == 202, f"{group.label}: pace task refused")
        orch.stream(pace["task_id"])
        resp = orch.submit(_slow_task(group, 100))
        body = resp.json() if resp.content else {}
        assert resp.status_code == 400 and body.get("code") == "DEADLINE_UNMET", (
            f"{group.label}: 64 tokens 50 ms apart cannot end within 100 ms, yet the answer was "
            f"{resp.status_code} {resp.text[:300]}"
        )
        ok = _slow_task(group, orch.timeouts.deadline_ms)
        admitted = orch.submit(ok)
        assert admitted.status_code == 202, (
            f"{group.label}: the same task with a {orch.timeouts.deadline_ms} ms deadline must "
            f"be admitted (the refusal was about the deadline): {admitted.status_code}"
        )
        orch.cancel(ok["task_id"])


@check("ORCH-3081", kind=Kind.METRICS, features=["deadlines"], needs=[Need.MODEL_REF])
def test_deadline_telemetry_reaches_streams_and_metrics(orch, target) -> None:
    """Metrics events carry on_time_probability; deadlines_met_ratio{priority} is exported."""
    group = pick_group(target, "deadlines")
    body = task_body(
        engine=group.engine,
        model_ref=group.model_ref,
        prompt="[[sim tokens=4]] on time",
        deadline_ms=orch.timeouts.deadline_ms,
    )
    precondition(orch.submit(body).status_code == 202, "the task was not admitted")
    _, events = orch.stream(body["task_id"])
    probabilities = [e.data.get("on_time_probability") for e in events if e.event == "metrics"]
    precondition(probabilities, "the stream had no metrics event")
    assert all(isinstance(p, int | float) and 0 <= p <= 1 for p in probabilities), (
        f"every metrics event carries on_time_probability in [0, 1]: {probabilities}"
    )
    assert events[-1].event == "end", f"the task did not end normally: {events[-1].raw}"
    expo = scrape(orch)
    fam = expo.families.get("deadlines_met_ratio")
    samples = fam.samples if fam is not None else []
    mine = [s for s in samples if s.labels.get("priority") == body["priority"]]
    assert mine, f"deadlines_met_ratio has no sample for priority {body['priority']!r}"
    assert all(0 <= s.value <= 1 for s in samples), [s.value for s in samples]
    assert mine[0].value > 0, "a task just met its deadline, yet the ratio is 0"
