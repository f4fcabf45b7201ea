"""`llorch bench`: an async load generator and latency report for OrchQueue v1 targets.

The runner (`load`) drives any object with `async run_task(task_no) -> TaskResult`, so the
orchestrator over HTTP (`client.OrchQueueTarget`) and a bare engine stream
(`load.DirectStreamTarget`) are measured by the same clock and summarised by the same code.
"""

from llama_orch.harness.loadgen.load import (
    DirectStreamTarget,
    LoadPlan,
    LoadTarget,
    Progress,
    RunResult,
    TaskResult,
    TaskTimer,
    run_load,
)
from llama_orch.harness.loadgen.stats import RunSummary, percentile, summarize

__all__ = [
    "DirectStreamTarget",
    "LoadPlan",
    "LoadTarget",
    "Progress",
    "RunResult",
    "RunSummary",
    "TaskResult",
    "TaskTimer",
    "percentile",
    "run_load",
    "summarize",
]
