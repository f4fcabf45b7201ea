"""Scheduling fields in the logs (ORCH-3094): tenant, priority, weight, deadline, on-time
probability and whether the job was preempted, on the task's admission record."""

from __future__ import annotations

from llama_orch.harness.checks.test_logs import _task_records
from llama_orch.harness.outcomes import precondition
from llama_orch.harness.registry import Need, check

FIELDS = ("tenant_id", "priority", "weight", "deadline_ms", "on_time_probability", "preempted")


@check("ORCH-3094", needs=[Need.LOG, Need.MODEL_REF])
def test_the_admission_record_carries_the_scheduling_fields(orch, target) -> None:
    body, mine = _task_records(orch, target)
    precondition(mine, "no JSON log record names the task's job_id (see ORCH-3027)")
    admitted = next((r for r in mine if "queue_position" in r), None)
    precondition(admitted is not None, f"no admission record of the task: {mine}")
    missing = [f for f in FIELDS if f not in admitted]
    assert not missing, f"the admission record lacks {missing}: {admitted}"
    assert admitted["priority"] == body["priority"], admitted
    assert admitted["deadline_ms"] == body["deadline_ms"], admitted
    assert isinstance(admitted["weight"], int | float) and admitted["weight"] > 0, admitted
    p = admitted["on_time_probability"]
    assert isinstance(p, int | float) and 0 <= p <= 1, admitted
    assert admitted["preempted"] is False, f"a new job is not preempted: {admitted}"
    final = next((r for r in mine if "decode_time_ms" in r), None)
    assert final is not None and final.get("preempted") is False, (
        f"the finished job's record says whether it was preempted: {final}"
    )
