"""Weighted fair queuing, black-box: dispatch shares and the admission_share gauge (ORCH-3075,
ORCH-3076, ORCH-3078).

Both checks are statistical in form but deterministic in their load: the tasks, their classes
and their submission order come from a seeded generator (SEED) and their timing from
`[[sim ...]]` directives, and the dispatch order is read exactly, one freed slot at a time
(`sched_probe.Release`), never inferred from wall-clock timing. The tolerance each check
allows is stated next to it. The weights judged are the defaults of ORCH-3078 (interactive 8,
batch 1); a target configured otherwise is not at its defaults.
"""

from __future__ import annotations

import random

from llama_orch.harness.outcomes import precondition
from llama_orch.harness.registry import Kind, Need, check
from llama_orch.harness.sched_probe import HOLD_FIXED, Release, hold_slots, pick_group, scrape
from llama_orch.harness.steps.world import scenario_world

SEED = 13075
W_INTERACTIVE, W_BATCH = 8, 1
# Queued before the first release: 30 interactive and 10 batch tasks keep both classes
# backlogged over the measured window of 27 dispatches (three 8+1 rounds).
QUEUED = {"interactive": 30, "batch": 10}
WINDOW = 27
# Tolerance of the share check: the fairness bound of self-clocked fair queuing with unit
# costs, |n_i/w_i - n_b/w_b| <= 1/w_i + 1/w_b while both classes stay backlogged. For 27
# dispatches it allows 2 to 4 batch tasks (3 is exact proportionality).
SHARE_BOUND = 1 / W_INTERACTIVE + 1 / W_BATCH
HOLD_QUEUED = "[[sim tokens=1 hold_ms=30000 interruptible=false]] wfq"
STEP_S = 5.0

# The gauge check: rounds of 48 interactive + 6 batch instant tasks (the 8:1 mix), at most
# GAUGE_ROUNDS of them, until admission_share puts batch within GAUGE_TOLERANCE of 1/9.
GAUGE_MIX = {"interactive": 48, "batch": 6}
GAUGE_ROUNDS = 5
GAUGE_TOLERANCE = 0.03
FAST = "[[sim tokens=1 interruptible=false]] share"


def _seeded_classes(mix: dict[str, int], rng: random.Random) -> list[str]:
    kinds = [k for k, n in mix.items() for _ in range(n)]
    rng.shuffle(kinds)
    return kinds


@check("ORCH-3075", "ORCH-3078", kind=Kind.TEST, features=["wfq"], needs=[Need.MODEL_REF])
def test_dispatches_share_capacity_by_the_default_weights(orch, target) -> None:
    """Released one slot at a time, queued interactive and batch work leaves 8:1."""
    group = pick_group(target, "wfq")
    rng = random.Random(SEED)
    with scenario_world(orch, target, {}) as world:
        holders = hold_slots(world, group, HOLD_FIXED, "interactive")
        waiting = {}
        for n, priority in enumerate(_seeded_classes(QUEUED, rng)):
            body = world.new_task(f"{HOLD_QUEUED} {n}", group=group, priority=priority)
            world.submit_ok(body, setup=True)
            label = f"{priority}-{n}"
            waiting[label] = world.watch(label, body["task_id"])
        order = Release(world, list(holders), waiting).run(WINDOW, STEP_S)
        precondition(
            len(order) == WINDOW,
            f"only {len(order)} of {WINDOW} queued tasks started as slots were freed",
        )
    batch = sum(1 for label in order if label.startswith("batch"))
    inter = WINDOW - batch
    gap = abs(inter / W_INTERACTIVE - batch / W_BATCH)
    assert gap <= SHARE_BOUND + 1e-9, (
        f"of the first {WINDOW} dispatches {inter} were interactive and {batch} batch; "
        f"weights {W_INTERACTIVE}:{W_BATCH} allow |{inter}/{W_INTERACTIVE} - {batch}/{W_BATCH}|"
        f" <= {SHARE_BOUND:.3f}, got {gap:.3f} (seed {SEED}; order {order})"
    )


def _batch_share(orch) -> tuple[float | None, list[dict]]:
    expo = scrape(orch)
    fam = expo.families.get("admission_share")
    samples = fam.samples if fam is not None else []
    by_class = {"interactive": 0.0, "batch": 0.0}
    for s in samples:
        if s.labels.get("priority") in by_class:
            by_class[s.labels["priority"]] += s.value
    total = sum(by_class.values())
    labels = [dict(s.labels) for s in samples]
    return (by_class["batch"] / total if total > 0 else None), labels


@check("ORCH-3076", kind=Kind.METRICS, features=["wfq"], needs=[Need.MODEL_REF])
def test_admission_share_converges_on_the_weights(orch, target) -> None:
    """Under an 8:1 mix, admission_share{tenant,priority} settles at batch 1/9 (within 0.03)."""
    group = pick_group(target, "wfq")
    rng = random.Random(SEED + 1)
    want = W_BATCH / (W_INTERACTIVE + W_BATCH)
    readings: list[float | None] = []
    for _round in range(GAUGE_ROUNDS):
        with scenario_world(orch, target, {}) as world:
            hold_slots(world, group, HOLD_FIXED, "interactive")
            for n, priority in enumerate(_seeded_classes(GAUGE_MIX, rng)):
                body = world.new_task(f"{FAST} {n}", group=group, priority=priority, max_tokens=1)
                world.submit_ok(body, setup=True)
            for task_id in list(world.holders):
                orch.cancel(task_id)
            world.wait_idle(group)
        share, labels = _batch_share(orch)
        precondition(share is not None, "admission_share has no interactive or batch sample")
        assert all({"tenant", "priority"} <= set(lab) for lab in labels), labels
        readings.append(round(share, 4))
        if abs(share - want) <= GAUGE_TOLERANCE:
            return
    raise AssertionError(
        f"admission_share of batch work stayed off {want:.3f} by more than {GAUGE_TOLERANCE} "
        f"after {GAUGE_ROUNDS} rounds of an 8:1 load: readings {readings} (seed {SEED + 1})"
    )
