"""The core's hook points with fake hooks (pure): what a plugin may change, and what not.

The core must ask with plain snapshots, apply a refusal as a typed ADMISSION_REJECT with the
plugin's policy label, take a placement ranking only among replicas that are free anyway, and
treat "no decision" (None) as its own built-in behaviour (ORCH-3048, specs/50 section 1).
"""

from __future__ import annotations

import json
from dataclasses import replace

import _hypothesis_profiles  # noqa: F401  (loads the Hypothesis budget first)
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from llama_orch.policy_sdk import abi_schema
from llama_orch.reference_impl.core import (
    Admitted,
    ErrorCode,
    HookRefusal,
    ReplicaSpec,
    Scheduler,
)
from llama_orch.reference_impl.core import testing as ct


class FakeHooks:
    """Answers from fixed values; records every snapshot it was shown."""

    def __init__(self, admission=None, session=None, placement=None, serves=None) -> None:
        self.answers = {"admission": admission, "session": session, "placement": placement}
        self.serves = set(serves if serves is not None else self.answers)
        self.seen: list[tuple[str, dict, str | None]] = []

    def wants(self, hook: str) -> bool:
        return hook in self.serves

    def _answer(self, hook, snapshot, cid):
        self.seen.append((hook, json.loads(json.dumps(snapshot)), cid))  # JSON-ready or fails
        answer = self.answers[hook]
        return answer(snapshot) if callable(answer) else answer

    def admission(self, snapshot, correlation_id):
        return self._answer("admission", snapshot, correlation_id)

    def session(self, snapshot, correlation_id):
        return self._answer("session", snapshot, correlation_id)

    def placement(self, snapshot, correlation_id):
        return self._answer("placement", snapshot, correlation_id)


def sched(hooks, slots=None, labels=None) -> Scheduler:
    slots = slots or {"p:r0": 1, "p:r1": 1}
    labels = labels or {}
    specs = [
        ReplicaSpec(rid, "p", n, labels=tuple(sorted(labels.get(rid, {}).items())))
        for rid, n in slots.items()
    ]
    s = Scheduler([ct.pool()], specs, hooks=hooks)
    for rid in slots:
        s.set_replica(rid, ready=True)
    return s


def valid(kind: str, snapshot: dict) -> None:
    schema = {"$defs": abi_schema()["$defs"], "$ref": f"#/$defs/{kind}"}
    errors = [e.message for e in Draft202012Validator(schema).iter_errors(snapshot)]
    assert not errors, errors


REFUSAL = HookRefusal("over_budget", "tenant t0 over budget", "policy:budget:over_budget", 1500)


@pytest.mark.req("ORCH-3048")
def test_an_admission_refusal_is_a_typed_429_with_the_plugin_label() -> None:
    hooks = FakeHooks(admission=REFUSAL)
    s = sched(hooks)
    result = ct.rejected(s.admit(ct.task(correlation_id="cid-1"), 0))
    assert (result.code, result.status) == (ErrorCode.ADMISSION_REJECT, 429)
    assert result.policy_label == "policy:budget:over_budget"
    assert (result.retry_after_ms, result.retriable) == (1500, True)
    assert "tenant t0 over budget" in result.message
    assert s.counters.rejected[("p", "ADMISSION_REJECT")] == 1
    assert s.queue_depth("p") == 0
    hook, snapshot, cid = hooks.seen[0]
    assert (hook, cid) == ("admission", "cid-1")
    valid("AdmissionSnapshot", snapshot)


@pytest.mark.req("ORCH-3048")
def test_a_refusal_without_retry_hint_is_final() -> None:
    s = sched(FakeHooks(admission=replace(REFUSAL, retry_after_ms=None)))
    result = ct.rejected(s.admit(ct.task(), 0))
    assert (result.status, result.retriable, result.retry_after_ms) == (400, False, None)


@pytest.mark.req("ORCH-3048")
def test_no_decision_leaves_the_built_in_behaviour() -> None:
    hooks = FakeHooks(admission=None, placement=None)
    s, plain = sched(hooks), ct.scheduler(slots={"p:r0": 1, "p:r1": 1})
    for n in range(4):
        a, b = s.admit(ct.task(task_id=f"t{n}"), n), plain.admit(ct.task(task_id=f"t{n}"), n)
        assert type(a) is type(b)
    assert [d.replica_id for d in s.dispatch(10)] == [d.replica_id for d in plain.dispatch(10)]


@pytest.mark.req("ORCH-3048")
def test_the_plugin_is_asked_only_after_the_built_in_checks_pass() -> None:
    hooks = FakeHooks(admission=None)
    s = sched(hooks)
    ct.rejected(s.admit(ct.task(ctx=999_999), 0))  # guardrail refusal: no plugin call
    assert hooks.seen == []


@pytest.mark.req("ORCH-3048")
def test_the_admission_snapshot_counts_the_tenants_tokens_in_flight() -> None:
    hooks = FakeHooks(admission=None)
    s = sched(hooks, slots={"p:r0": 1})
    s.admit(ct.task(tenant="a", prompt_tokens=10, max_tokens=90), 0)
    s.admit(ct.task(tenant="a", prompt_tokens=5, max_tokens=5), 1)
    s.dispatch(2)  # the first one runs, the second waits
    s.admit(ct.task(tenant="b"), 3)
    s.admit(ct.task(tenant="a"), 4)
    usage = [snap["tenant"] for _, snap, _ in hooks.seen]
    assert usage[-1] == {"tenant": "a", "queued": 1, "running": 1, "tokens_in_flight": 110}
    assert usage[-2] == {"tenant": "b", "queued": 0, "running": 0, "tokens_in_flight": 0}


@pytest.mark.req("ORCH-3048")
def test_a_session_hook_may_end_a_session_with_history_only() -> None:
    ended = HookRefusal("too_long", "session over its limit", "policy:s:too_long")
    hooks = FakeHooks(session=ended, serves={"session"})
    s = sched(hooks)
    ct.admitted(s.admit(ct.task(session_id="s1"), 0))  # a new session: nothing to judge
    assert hooks.seen == []
    result = ct.rejected(s.admit(ct.task(session_id="s1"), 5_000))
    assert (result.status, result.policy_label) == (400, "policy:s:too_long")
    _, snapshot, _ = hooks.seen[0]
    valid("SessionSnapshot", snapshot)
    assert snapshot["session"]["turns"] == 1 and snapshot["session"]["age_ms"] == 5_000


@pytest.mark.req("ORCH-3048")
def test_placement_follows_the_ranking_among_free_replicas() -> None:
    hooks = FakeHooks(placement=("p:r1",), serves={"placement"})
    s = sched(hooks, labels={"p:r1": {"tier": "fast"}})
    ct.admitted(s.admit(ct.task(), 0))
    (d,) = s.dispatch(1)
    assert d.replica_id == "p:r1"  # least-loaded alone would take p:r0 (id order)
    _, snapshot, _ = hooks.seen[0]
    valid("PlacementSnapshot", snapshot)
    labels = {c["replica_id"]: c["labels"] for c in snapshot["candidates"]}
    assert labels == {"p:r0": {}, "p:r1": {"tier": "fast"}}


@pytest.mark.req("ORCH-3048")
@given(
    ranking=st.lists(st.sampled_from(["p:r0", "p:r1", "p:r2", "q:r9", "nope"]), max_size=4),
    busy=st.sets(st.sampled_from(["p:r0", "p:r1", "p:r2"])),
)
def test_a_ranking_can_never_place_on_a_busy_or_foreign_replica(ranking, busy) -> None:
    hooks = FakeHooks(placement=tuple(ranking), serves={"placement"})
    s = sched(hooks, slots={"p:r0": 1, "p:r1": 1, "p:r2": 1})
    for rid in sorted(busy):  # fill those replicas first with pinned tasks
        s.admit(ct.task(pin_replica=rid), 0)
    s.dispatch(1)
    ct.admitted(s.admit(ct.task(task_id="free"), 2))
    placed = {d.task_id: d.replica_id for d in s.dispatch(3)}
    free = [r for r in ("p:r0", "p:r1", "p:r2") if r not in busy]
    if not free:
        assert "free" not in placed
        return
    ranked_free = [r for r in ranking if r in free]
    assert placed["free"] == (ranked_free[0] if ranked_free else free[0])


@pytest.mark.req("ORCH-3048")
def test_session_affinity_wins_over_the_plugin() -> None:
    hooks = FakeHooks(placement=("p:r1",), serves={"placement"})
    s = sched(hooks)
    ct.admitted(s.admit(ct.task(session_id="s", task_id="a"), 0))
    (d,) = s.dispatch(1)
    s.complete("a", 2, 3, True)
    ct.admitted(s.admit(ct.task(session_id="s", task_id="b"), 3))
    (d2,) = s.dispatch(4)
    assert d2.replica_id == d.replica_id == "p:r1"
    hooks.answers["placement"] = ("p:r0",)
    s.complete("b", 5, 3, True)
    ct.admitted(s.admit(ct.task(session_id="s", task_id="c"), 6))
    (d3,) = s.dispatch(7)
    assert d3.replica_id == "p:r1" and d3.kv_warmth  # warm KV beats the preference


@pytest.mark.req("ORCH-3048")
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["admit", "dispatch", "complete", "cancel", "expire"]),
            st.integers(0, 7),
        ),
        max_size=60,
    )
)
def test_the_tenant_load_in_snapshots_always_equals_a_recount(ops) -> None:
    """`tokens_in_flight` is kept incrementally (O(1) per snapshot); it must never drift."""
    s = sched(None, slots={"p:r0": 2, "p:r1": 1})
    now, ids = 0, []
    for op, n in ops:
        now += 100
        if op == "admit":
            t = ct.task(tenant=f"t{n % 3}", prompt_tokens=n + 1, max_tokens=10 * n + 1)
            if isinstance(s.admit(t, now), Admitted):
                ids.append(t.task_id)
        elif op == "dispatch":
            s.dispatch(now)
        elif op == "complete" and ids:
            s.complete(ids[n % len(ids)], now, n, ok=n % 2 == 0)
        elif op == "cancel" and ids:
            s.cancel(ids[n % len(ids)], now)
        elif op == "expire":
            s.expired(now + 70_000 * (n == 7))
        pool = s._state.pools["p"]
        recount: dict[str, list[int]] = {}
        for entry in s._state.tasks.values():
            load = recount.setdefault(entry.spec.tenant, [0, 0, 0])
            load[0 if entry.replica_id is None else 1] += 1
            load[2] += entry.spec.prompt_tokens + entry.spec.max_tokens
        assert {k: [v.queued, v.running, v.tokens] for k, v in pool.loads.items()} == recount
