"""Micro-benchmark: dispatch cost per task of `reference_impl.core.Scheduler` vs queue depth.

Why: OC-CORE-1003 and the core's design promise dispatch and cancel costs that do not grow with
the number of queued tasks. The benchmark keeps a pool's queue at a fixed depth (100, then
100,000) and, in steady state, repeats: complete one running task, admit one new task (not
timed), time one `dispatch()` call that starts exactly one task. The workload mixes 8 tenants,
both priority classes and a share of tasks with deadlines (EDF lanes), so WFQ, EDF and the
arrival indexes are all exercised. It also times `cancel()` of a queued task in the middle of
the queue. Best of 3 rounds per depth; GC paused while timing.

Run: .venv/bin/python bench/core_dispatch.py  (target: ratio <= 2)
"""

from __future__ import annotations

import gc
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llama_orch.reference_impl.core import (
    PoolSpec,
    Priority,
    ReplicaSpec,
    Scheduler,
    SessionPolicy,
    TaskSpec,
)
from llama_orch.reference_impl.core.queue import PoolQueue, TaskEntry

TENANTS = [f"tenant{i}" for i in range(8)]
STEPS = 20_000
ROUNDS = 3


def _task(i: int) -> TaskSpec:
    return TaskSpec(
        task_id=f"t{i}",
        session_id=f"s{i % 997}",
        tenant=TENANTS[i % len(TENANTS)],
        pool_id="p",
        priority=Priority.INTERACTIVE if i % 3 == 0 else Priority.BATCH,
        ctx=4096,
        prompt_tokens=100,
        max_tokens=100,
        deadline_ms=10_000_000 if i % 5 == 0 else None,
    )


def _build(depth: int) -> tuple[Scheduler, int]:
    pool = PoolSpec(
        "p", "llamacpp", "m", ctx_max=8192, capacity=depth + 10, reject_infeasible=False
    )
    big = SessionPolicy(ttl_ms=10**12, max_turns=10**9)
    sched = Scheduler([pool], [ReplicaSpec(f"r{k}", "p", 1) for k in range(4)], big)
    for k in range(4):
        sched.set_replica(f"r{k}", ready=True)
    for i in range(depth):
        result = sched.admit(_task(i), 0)
        assert not hasattr(result, "code"), result
    return sched, depth


def _round(depth: int) -> tuple[float, float]:
    """Mean ns per dispatched task and per cancel, at a steady queue depth."""
    sched, next_id = _build(depth)
    running = [d.task_id for d in sched.dispatch(0)]  # fill the 4 slots
    for _ in range(len(running)):
        sched.admit(_task(next_id), 0)
        next_id += 1
    dispatch_ns = cancel_ns = 0
    gc.collect()
    gc.disable()
    try:
        for step in range(STEPS):
            now = 1 + step
            sched.complete(running.pop(0), now, 10, True)
            sched.admit(_task(next_id), now)
            next_id += 1
            t0 = time.perf_counter_ns()
            started = sched.dispatch(now)
            dispatch_ns += time.perf_counter_ns() - t0
            assert len(started) == 1
            running.append(started[0].task_id)
            if step % 10 == 0:  # cancel a queued task from the middle, then top the queue up
                victim = f"t{next_id - depth // 2}"
                t0 = time.perf_counter_ns()
                sched.cancel(victim, now)
                cancel_ns += time.perf_counter_ns() - t0
                sched.admit(_task(next_id), now)
                next_id += 1
    finally:
        gc.enable()
    return dispatch_ns / STEPS, cancel_ns / (STEPS // 10)


def measure(depth: int) -> tuple[float, float]:
    results = [_round(depth) for _ in range(ROUNDS)]
    return min(r[0] for r in results), min(r[1] for r in results)


def _enqueue_ns(entries: list[TaskEntry], depth: int, n: int) -> float:
    """Mean ns to index one more task in a PoolQueue that already holds `depth` tasks."""
    q = PoolQueue(depth + n + 1, {})
    flow = q.flow(("t", Priority.BATCH), 1)
    for e in entries[:depth]:
        q.add(e, flow, use_edf=False)
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        for e in entries[depth : depth + n]:
            q.add(e, flow, use_edf=False)
        return (time.perf_counter_ns() - t0) / n
    finally:
        gc.enable()


def enqueue_ratio() -> tuple[float, float]:
    """Enqueue cost at 1,000 and at 100,000 queued (OC-CORE-1003, amortised O(1)); best of 3."""
    base = TaskSpec("x", "s", "t", "p", Priority.BATCH, 1, 0, 0)
    entries = [TaskEntry(replace(base, task_id=f"e{i}"), i, 0, None, 0) for i in range(110_000)]
    small = min(_enqueue_ns(entries, 1_000, 10_000) for _ in range(3))
    large = min(_enqueue_ns(entries, 100_000, 10_000) for _ in range(3))
    return small, large


def main() -> int:
    small_d, small_c = measure(100)
    large_d, large_c = measure(100_000)
    ratio = large_d / small_d
    print(f"dispatch at      100 queued: {small_d / 1e3:8.2f} us/task")
    print(f"dispatch at  100,000 queued: {large_d / 1e3:8.2f} us/task")
    print(f"dispatch ratio (100k / 100): {ratio:8.2f}  (target <= 2)")
    print(f"cancel   at      100 queued: {small_c / 1e3:8.2f} us")
    print(f"cancel   at  100,000 queued: {large_c / 1e3:8.2f} us  (ratio {large_c / small_c:.2f})")
    small_e, large_e = enqueue_ratio()
    print(f"enqueue  at    1,000 queued: {small_e / 1e3:8.2f} us")
    print(f"enqueue  at  100,000 queued: {large_e / 1e3:8.2f} us  (ratio {large_e / small_e:.2f})")
    return 0 if ratio <= 2 else 1


if __name__ == "__main__":
    raise SystemExit(main())
