"""Log-contract checks: the target's JSON-lines log carries the fields the spec names.

Needs the target's log (`--target-log FILE`, `log:` in target.yaml); without it the checks are
not run and their requirements say so.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from llama_orch.harness.outcomes import precondition
from llama_orch.harness.registry import Need, check

LOG_FIELDS = (
    "job_id",
    "session_id",
    "engine",
    "pool_id",
    "replica_id",
    "model_id",
    "quant",
    "ctx",
    "kv_warmth",
    "queue_time_ms",
    "decode_time_ms",
)
CORRELATION = "llorch-log-check"


def _records(path: Path) -> list[dict]:
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def _task_records(orch, target) -> tuple[dict, list[dict]]:
    """Run one short task and return its body and the log records naming its job_id."""
    group = target.groups()[0]
    body = orch_task(orch, group)
    resp = orch.submit(body, headers={"X-Correlation-Id": CORRELATION})
    precondition(resp.status_code == 202, f"the logged task was not admitted ({resp.status_code})")
    orch.stream(body["task_id"])
    deadline = time.monotonic() + orch.timeouts.settle_s
    mine: list[dict] = []
    while time.monotonic() < deadline:
        mine = [r for r in _records(target.log_path) if r.get("job_id") == body["task_id"]]
        if any("decode_time_ms" in r for r in mine):
            break
        time.sleep(0.1)
    return body, mine


def orch_task(orch, group) -> dict:
    from llama_orch.harness.client import task_body

    return task_body(
        engine=group.engine,
        model_ref=group.model_ref,
        prompt="[[sim tokens=3]] logged",
        deadline_ms=orch.timeouts.deadline_ms,
    )


@check("ORCH-3027", "OC-CORE-1040", needs=[Need.LOG, Need.MODEL_REF])
def test_a_finished_task_is_logged_with_every_field_of_list_l1(orch, target) -> None:
    _, mine = _task_records(orch, target)
    assert mine, "no JSON log record names the task's job_id"
    final = next((r for r in mine if "decode_time_ms" in r), None)
    assert final is not None, f"no record with decode_time_ms for the task: {mine}"
    missing = [f for f in LOG_FIELDS if f not in final]
    assert not missing, f"the task's final log record lacks {missing}: {final}"


@check("OC-CTRL-2050", "ORCH-3029", needs=[Need.LOG, Need.MODEL_REF])
def test_the_admission_log_record_says_where_the_task_stands(orch, target) -> None:
    _, mine = _task_records(orch, target)
    precondition(mine, "no JSON log record names the task's job_id (see ORCH-3027)")
    admitted = next((r for r in mine if "queue_position" in r), None)
    assert admitted is not None, f"no admission record with queue_position: {mine}"
    assert "predicted_start_ms" in admitted, (
        f"admission record lacks predicted_start_ms: {admitted}"
    )


@check("ORCH-2009", needs=[Need.LOG, Need.MODEL_REF])
def test_the_log_carries_the_callers_correlation_id(orch, target) -> None:
    _, mine = _task_records(orch, target)
    precondition(mine, "no JSON log record names the task's job_id (see ORCH-3027)")
    got = {r.get("correlation_id") for r in mine}
    assert CORRELATION in got, f"no record of the task carries correlation_id {CORRELATION!r}"


@check("OC-CTRL-2041", needs=[Need.LOG, Need.MODEL_REF])
def test_no_api_key_appears_in_the_log(orch, target) -> None:
    _, mine = _task_records(orch, target)
    precondition(mine, "the log holds no record of the task: nothing to judge")
    text = Path(target.log_path).read_text(encoding="utf-8", errors="replace")
    leaked = [
        n
        for n, s in (("API key", target.api_key), ("tenant key", target.tenant_key))
        if s and s in text
    ]
    assert not leaked, f"the log contains the {', '.join(leaked)}"
