"""KV residency is bounded, least recently used out first (ORCH-3022).

Sessions run one turn each on a replica set with a single replica (or pinned to one replica),
and SessionInfo's `kv_bytes` says whose KV is still held. Session S1 is used again after S2,
so under LRU (or LFU: S1 is also used more often) S2 must lose its KV before S1 does. New
sessions are added until S2's KV is gone; a target that still holds every session after
`BOUND` of them bounds residency above what this check can show. The sessions are deleted at
the end.
"""

from __future__ import annotations

from llama_orch.harness.client import OrchClient, task_body
from llama_orch.harness.discovery import Group, Target
from llama_orch.harness.outcomes import precondition
from llama_orch.harness.registry import Need, check
from llama_orch.harness.sched_probe import engine_features

BOUND = 64
TURN = "[[sim tokens=1]] kv residency"


def _replicas(target: Target, orch: OrchClient, group: Group) -> list[str]:
    resp = orch.replica_sets()
    precondition(resp.status_code == 200, f"GET /v1/replicasets answered {resp.status_code}")
    out: list[str] = []
    for rs in resp.json():
        if str(rs.get("id")) in group.set_ids:
            out += [
                str(r.get("replica_id")) for r in rs.get("replicas") or [] if isinstance(r, dict)
            ]
    return out


def _place(target: Target, orch: OrchClient) -> tuple[Group, dict]:
    """A set with one replica (no pin needed), else a pin to one replica of a set."""
    groups = target.groups()
    for group in groups:
        if len(_replicas(target, orch, group)) == 1:
            return group, {}
    for group in groups:
        replicas = _replicas(target, orch, group)
        if replicas and engine_features(target, group.engine).get("replica_pinning") is True:
            return group, {"placement": {"replica_id": replicas[0]}}
    precondition(False, "needs a replica set with one replica, or replica pinning")
    raise AssertionError  # pragma: no cover


def _turn(orch: OrchClient, group: Group, session_id: str, pin: dict) -> None:
    body = task_body(
        engine=group.engine,
        model_ref=group.model_ref,
        prompt=TURN,
        session_id=session_id,
        max_tokens=1,
        deadline_ms=orch.timeouts.deadline_ms,
        **pin,
    )
    resp = orch.submit(body)
    precondition(resp.status_code == 202, f"a session turn was refused: {resp.text[:300]}")
    _, events = orch.stream(body["task_id"])
    precondition(events and events[-1].event == "end", "a session turn did not end normally")


def _kv(orch: OrchClient, session_id: str) -> int:
    resp = orch.get_session(session_id)
    precondition(resp.status_code == 200, f"GET /v1/sessions answered {resp.status_code}")
    value = resp.json().get("kv_bytes")
    precondition(isinstance(value, int), f"SessionInfo without kv_bytes: {resp.text[:200]}")
    return value


@check("ORCH-3022", needs=[Need.MODEL_REF])
def test_kv_residency_is_bounded_least_recently_used_first(orch, target) -> None:
    """The KV of the least recently used session goes first once a replica is full."""
    group, pin = _place(target, orch)
    first = task_body(engine=group.engine, model_ref=group.model_ref)["session_id"]
    second = task_body(engine=group.engine, model_ref=group.model_ref)["session_id"]
    sessions = [first, second]
    try:
        _turn(orch, group, first, pin)
        _turn(orch, group, second, pin)
        _turn(orch, group, first, pin)  # S1 is now used more recently (and more often)
        precondition(_kv(orch, first) > 0 and _kv(orch, second) > 0, "no session holds KV")
        for n in range(BOUND):
            newcomer = task_body(engine=group.engine, model_ref=group.model_ref)["session_id"]
            sessions.append(newcomer)
            _turn(orch, group, newcomer, pin)
            kv_first, kv_second = _kv(orch, first), _kv(orch, second)
            assert kv_first > 0 or kv_second == 0, (
                f"after {n + 1} new sessions the KV of the session used last was evicted "
                "while the least recently used one kept its KV: not LRU or LFU"
            )
            if kv_second == 0:
                return
        precondition(False, f"no session lost its KV after {BOUND} new sessions on one replica")
    finally:
        for session_id in sessions:
            orch.delete_session(session_id)
