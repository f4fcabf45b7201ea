"""Session failover: a session moved to another replica reports its KV as not migrated."""

from __future__ import annotations

from llama_orch.harness.client import task_body
from llama_orch.harness.outcomes import precondition
from llama_orch.harness.registry import Need, check

HOLD = "[[sim tokens=1 hold_ms=2500]] hold"
TRIES = 3


@check("ORCH-3023", needs=[Need.MODEL_REF])
def test_a_session_failover_reports_kv_not_migrated(orch, target) -> None:
    groups = [g for g in target.groups() if _slots(target, g) >= 2]
    precondition(groups, "needs a replica set with at least two slots")
    group = groups[0]

    def body(**kw) -> dict:
        return task_body(
            engine=group.engine,
            model_ref=group.model_ref,
            deadline_ms=orch.timeouts.deadline_ms,
            **kw,
        )

    started: list[str] = []
    try:
        for _attempt in range(TRIES):
            session = body()["session_id"]
            first = body(session_id=session, prompt="[[sim tokens=1]] turn one")
            admitted = orch.submit(first).status_code
            precondition(admitted == 202, f"the first turn was not admitted ({admitted})")
            orch.stream(first["task_id"])
            blocker = body(prompt=HOLD)
            if orch.submit(blocker).status_code == 202:
                started.append(blocker["task_id"])
            second = body(session_id=session, prompt="[[sim tokens=1]] turn two")
            admitted = orch.submit(second).status_code
            precondition(admitted == 202, f"the second turn was not admitted ({admitted})")
            started.append(second["task_id"])
            _, events = orch.stream(second["task_id"])
            placed = [
                e.data
                for e in events
                if e.event == "metrics"
                and isinstance(e.data, dict)
                and "kv_warmth" in e.data
                and "kv_migrated" in e.data
            ]
            cold = [m for m in placed if m["kv_warmth"] is False]
            if cold:
                assert all(m["kv_migrated"] is False for m in cold), cold
                return
        precondition(False, f"no failover happened in {TRIES} tries (the session kept its replica)")
    finally:
        for task_id in started:
            orch.cancel(task_id)


def _slots(target, group) -> int:
    return sum(
        rs.get("slots_total", 0) for rs in target.replica_sets if str(rs.get("id")) in group.set_ids
    )
