"""Scenario state and target knowledge shared by every step module.

A `World` lives for one scenario. It knows the target only through HTTP: replica sets come
from `GET /v1/replicasets` (grouped by engine and model, the two fields a task uses to pick
its pool), context limits from the capability data. Every task it admits is remembered and
canceled when the scenario ends, the replica sets it loaded are waited for (bounded) until
idle again, and every pool it drains or reloads is reloaded with its original model, so
scenarios leave the target as they found it and never depend on the order they run in
(OC-HARNESS-8112).

Reads that a scenario relies on but does not judge raise `Violation` for the rule they rely
on (`harness.rules`): a replica set list or pool health that does not answer as documented
blocks the scenario ("blocked by ORCH-2104") instead of failing its own requirement.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from llama_orch.harness.client import OrchClient, task_body
from llama_orch.harness.discovery import Group, Target
from llama_orch.harness.outcomes import PreconditionError, Violation, precondition
from llama_orch.harness.rules import HEALTH, REPLICA_SETS
from llama_orch.harness.sse import SseEvent
from llama_orch.harness.steps.watch import StreamWatch

NO_SUCH_POOL = "llorch-compliance-no-such-pool"
# Holds a slot for 30 s, a token every 300 ms: busy, never idle (an idle-timeout watchdog
# would free the slot and pass for a cancel); tasks using it are canceled at teardown.
HOLD_PROMPT = "[[sim tokens=100 itl_ms=300]] hold"

__all__ = ["Group", "PreconditionError", "World", "poll", "precondition"]


@dataclass
class PoolRestore:
    """A pool this scenario drained or reloaded, and the model it served before."""

    pool_id: str
    model_ref: str


@dataclass
class World:
    """What one scenario has done so far: tasks, the latest responses, streams and watches."""

    orch: OrchClient
    target: Target
    memo: dict[str, Any] = field(default_factory=dict)
    group: Group | None = None
    pool_id: str | None = None
    task: dict[str, Any] | None = None
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    response: Any = None  # the newest answer: an httpx.Response or a harness.sse.StreamRead
    responses: list[Any] = field(default_factory=list)
    stream_response: Any = None
    events: list[SseEvent] = field(default_factory=list)
    raw_stream: str = ""
    streams: dict[str, list[SseEvent]] = field(default_factory=dict)
    watches: dict[str, StreamWatch] = field(default_factory=dict)
    holders: list[str] = field(default_factory=list)
    admitted: list[str] = field(default_factory=list)
    restore: list[PoolRestore] = field(default_factory=list)
    loaded: dict[tuple[str, str], Group] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    # -- target knowledge -------------------------------------------------------------------
    def groups(self) -> list[Group]:
        groups = self.target.groups()
        if not groups:
            pytest.skip(self.target.why_no_groups())
        return groups

    def current_group(self) -> Group:
        if self.group is None:
            self.group = self.groups()[0]
        return self.group

    def replica_sets(self) -> list[dict[str, Any]]:
        """A fresh `GET /v1/replicasets` (slot counts change with load)."""
        resp = self.orch.get("/v1/replicasets")
        if resp.status_code != 200:
            raise Violation(REPLICA_SETS, f"GET /v1/replicasets answered {resp.status_code}")
        try:
            body = resp.json()
        except ValueError:
            raise Violation(REPLICA_SETS, "GET /v1/replicasets answered no JSON") from None
        if not isinstance(body, list):
            raise Violation(REPLICA_SETS, "GET /v1/replicasets did not answer a JSON array")
        return body

    def slots(self, group: Group) -> tuple[int, int]:
        """(free, total) slots over the group's replica sets, read now."""
        free = total = 0
        for rs in self.replica_sets():
            if isinstance(rs, dict) and str(rs.get("id")) in group.set_ids:
                for key in ("slots_total", "slots_free"):
                    value = rs.get(key)
                    if not isinstance(value, int) or isinstance(value, bool):
                        raise Violation(
                            ("ORCH-2104",), f"replica set {rs.get('id')!r} has no integer {key}"
                        )
                total += rs["slots_total"]
                free += rs["slots_free"]
        return free, total

    def health(self, pool_id: str) -> dict[str, Any]:
        """`GET /v1/pools/{id}/health` as a JSON object; a pool the target lists answers 200."""
        resp = self.orch.get(f"/v1/pools/{pool_id}/health")
        if resp.status_code != 200:
            raise Violation(HEALTH, f"health of pool {pool_id} answered {resp.status_code}")
        try:
            body = resp.json()
        except ValueError:
            raise Violation(HEALTH, f"health of pool {pool_id} is not JSON") from None
        if not isinstance(body, dict):
            raise Violation(HEALTH, f"health of pool {pool_id} is not a JSON object")
        return body

    def wait_idle(self, group: Group, within_s: float | None = None) -> int:
        """Wait until every slot of the group is free on two reads in a row; its slot count."""
        deadline = time.monotonic() + (within_s or self.orch.timeouts.settle_s)
        calm = 0
        while True:
            free, total = self.slots(group)
            calm = calm + 1 if free >= total else 0
            if calm >= 2:
                return total
            precondition(
                time.monotonic() < deadline,
                f"replica set {group.label} stays busy ({free} of {total} slots free)",
            )
            time.sleep(0.05)

    def ctx_max(self, engine: str) -> int:
        for entry in self.target.capabilities.get("engines") or []:
            if not isinstance(entry, dict) or entry.get("engine") != engine:
                continue
            ctx = entry.get("ctx_max")
            if isinstance(ctx, int) and not isinstance(ctx, bool):
                return ctx
        raise Violation(
            ("ORCH-3095", "OC-CTRL-2060"),
            f"the capability data gives no ctx_max for engine {engine!r}",
        )

    def pool_of(self, group: Group) -> str:
        if len(group.pools) != 1:
            pytest.skip(f"replica set {group.label} does not hold exactly one pool (replicas)")
        return group.pools[0]

    # -- tasks ------------------------------------------------------------------------------
    def new_task(self, prompt: str, *, group: Group | None = None, **extra: Any) -> dict[str, Any]:
        g = group or self.current_group()
        self.used(g)
        extra.setdefault("deadline_ms", self.orch.timeouts.deadline_ms)
        return task_body(engine=g.engine, model_ref=g.model_ref, prompt=prompt, **extra)

    def submit(self, body: dict[str, Any], *, setup: bool = False, **kw: Any) -> httpx.Response:
        try:
            resp = self.orch.submit(body, **kw)
        except httpx.TransportError as exc:
            if setup:
                raise PreconditionError(f"POST /v1/tasks did not answer: {exc}") from exc
            raise
        if resp.status_code == 202 and isinstance(body.get("task_id"), str):
            self.admitted.append(body["task_id"])
        self.response = resp
        self.responses.append(resp)
        return resp

    def submit_ok(self, body: dict[str, Any], *, setup: bool = False) -> dict[str, Any]:
        """Submit and require a 202; during setup a refusal is a precondition error."""
        resp = self.submit(body, setup=setup)
        message = f"task not admitted: {resp.status_code} {resp.text[:300]}"
        if setup:
            precondition(resp.status_code == 202, message)
        assert resp.status_code == 202, message
        return resp.json()

    def named(self, label: str) -> dict[str, Any]:
        assert label in self.tasks, f"no task called {label!r} in this scenario"
        return self.tasks[label]

    def it(self) -> dict[str, Any]:
        assert self.task is not None, "no task in this scenario yet"
        return self.task

    def record(self, resp: Any) -> Any:
        self.response = resp
        self.responses.append(resp)
        return resp

    def watch(self, label: str, task_id: str) -> StreamWatch:
        w = StreamWatch(self.orch, task_id)
        self.watches[label] = w
        return w

    def hold_slots(self, group: Group) -> list[str]:
        """Occupy every slot of the group with hold tasks, each confirmed running."""
        total = self.wait_idle(group)
        precondition(total > 0, f"replica set {group.label} reports no slots")
        for n in range(total):
            body = self.new_task(HOLD_PROMPT, group=group)
            self.submit_ok(body, setup=True)
            w = self.watch(f"holder-{n}", body["task_id"])
            precondition(
                w.wait_tokens(1, 5.0),
                f"holder {n + 1} of {total} did not start within 5 s: the replica set "
                f"{group.label} reports {total} slots but runs fewer tasks at once",
            )
            self.holders.append(body["task_id"])
        return self.holders

    def used(self, group: Group) -> None:
        """Note a replica set this scenario loads, so that teardown waits until it is idle."""
        self.loaded.setdefault(group.key, group)

    # -- teardown ---------------------------------------------------------------------------
    def cleanup(self) -> None:
        """Leave the target as the scenario found it: cancel what it admitted, give drained or
        reloaded pools back, and wait (bounded) until the replica sets it loaded are idle.

        Best effort and bounded: a target that ignores cancels or hangs costs at most a few
        bounds here, and whatever goes wrong is not the scenario's outcome.
        """
        bound = self.orch.timeouts.settle_s
        with contextlib.suppress(*CLEANUP_ERRORS):
            for task_id in dict.fromkeys(self.admitted):
                self.orch.cancel(task_id)
        deadline = time.monotonic() + min(3.0, bound)
        for w in self.watches.values():
            w.join(max(0.0, deadline - time.monotonic()))
        for r in self.restore:
            with contextlib.suppress(*CLEANUP_ERRORS):
                self.restore_pool(r)
        if self.admitted:
            if self.group is not None:
                self.used(self.group)
            for group in self.loaded.values():
                with contextlib.suppress(*CLEANUP_ERRORS):
                    self.wait_idle(group, bound)

    def restore_pool(self, r: PoolRestore) -> None:
        self.orch.request(
            "POST", f"/v1/pools/{r.pool_id}/reload", json_body={"new_model_ref": r.model_ref}
        )

        def settled() -> bool:
            body = self.health(r.pool_id)
            return body.get("ready") is True and body.get("draining") is not True

        poll(settled, self.orch.timeouts.settle_s)


# What teardown tolerates from a broken target (it must never hide the scenario's outcome).
CLEANUP_ERRORS = (httpx.HTTPError, AssertionError, PreconditionError, ValueError)


def poll(check: Callable[[], bool], within_s: float, every_s: float = 0.05) -> bool:
    """True as soon as `check()` holds; False when `within_s` passes first."""
    deadline = time.monotonic() + within_s
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(every_s)


def fresh_uuid() -> str:
    return str(uuid.uuid4())


@contextlib.contextmanager
def scenario_world(orch: OrchClient, target: Target, memo: dict[str, Any]) -> Iterator[World]:
    world = World(orch, target, memo)
    try:
        yield world
    finally:
        world.cleanup()
