"""Hard preemption in the service: interrupt, put back, resume (ORCH-3086, ORCH-3087).

The core picks the victims (`Scheduler.preempt_hard`); this module carries them out:

1. `interrupt`: ask the victim's adapter to stop at the next token boundary. It answers with a
   resumable state, or None when the engine cannot save this decode (no `interrupt`, a
   replica that never proved the capability, a request marked not interruptible): then the
   core is told (`preempt_refused`), the victim runs on and the refusal is logged.
2. `after_run`: the victim's run ended because of the interrupt: the core puts the task back
   at the head of its queue (`requeue`, counting `preemptions_total{mode="hard"}`), and the
   client sees a `metrics` event with `preempted: true` and the resumable state.
3. `resume_state`: when the core dispatches it again (`Dispatch.resumed`), the run continues
   from that state, `resumptions_total{engine}` counts it and the client sees `resumed: true`.
   Token indices go on where they stopped: the stream never repeats or skips a token.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from llama_orch.reference_impl import core
from llama_orch.reference_impl.pool.requests import Interruptible, ResumeState
from llama_orch.reference_impl.service import views

if TYPE_CHECKING:
    from llama_orch.reference_impl.service.orchestrator import Orchestrator
    from llama_orch.reference_impl.service.records import TaskRecord

log = logging.getLogger("llama_orch.reference_impl.service")


def interrupt(orch: Orchestrator, decision: core.HardPreemption) -> None:
    """Ask the adapter to interrupt `decision.task_id`; tell the core when it cannot."""
    rec = orch.records.get(decision.task_id)
    adapter = orch.pools.replica(decision.replica_id).adapter
    state: ResumeState | None = None
    if rec is not None and rec.outcome is None and isinstance(adapter, Interruptible):
        state = adapter.interrupt(decision.task_id)
    if state is None or rec is None:
        orch.scheduler.preempt_refused(decision.task_id)
        log.warning(
            "hard preemption refused: the engine cannot interrupt this decode",
            extra={
                "job_id": decision.task_id,
                "replica_id": decision.replica_id,
                "engine": getattr(adapter, "engine", None),
                "preempted": False,
            },
        )
        return
    rec.extra["interrupt"] = state


def after_run(orch: Orchestrator, rec: TaskRecord) -> bool:
    """The run's stream ended: True when an interrupt ended it and the task is queued again."""
    state = rec.extra.pop("interrupt", None)
    if state is None or not orch.scheduler.requeue(rec.task_id, orch.now_ms()):
        return False
    rec.extra["resume"] = state
    rec.extra["preemptions"] = rec.extra.get("preemptions", 0) + 1
    event = views.planning(orch.scheduler, rec, None, orch.now_ms())
    event.update(preempted=True, resumable_state=state.public())
    rec.stream.emit("metrics", event)
    log.info(
        "task preempted",
        extra={
            "job_id": rec.task_id,
            "pool_id": rec.pool_id,
            "replica_id": rec.replica_id,
            "tenant_id": rec.task.tenant,
            "priority": rec.task.priority,
            "preempted": True,
            "mode": core.PreemptionMode.HARD.value,
            "tokens_done": state.tokens_done,
        },
    )
    orch._kick()  # the freed slot goes to the urgent work
    return True


def resume_state(
    orch: Orchestrator, rec: TaskRecord, dispatch: core.Dispatch
) -> ResumeState | None:
    """The state a re-dispatched task resumes from (counted as a resumption), else None."""
    if not dispatch.resumed:
        return None
    state = rec.extra.get("resume")
    if state is not None:
        orch.metrics.resumptions.labels(orch.pools.pools[rec.pool_id].engine).inc()
    return state
