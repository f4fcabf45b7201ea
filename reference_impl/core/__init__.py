"""Pure scheduling core of the reference orchestrator (issue 3): no I/O, no clock, stdlib only.

The API layer builds `PoolSpec` / `ReplicaSpec` / `SessionPolicy` from the config, calls
`Scheduler` with the time passed in, and turns the plain results into HTTP answers, SSE events
and metrics. Module map: types (data), queue (bounded per-class FIFO and flows), fairness
(WFQ), policies (full-queue victims, soft preemption), quotas (rate and concurrency),
deadlines (predictions, EDF feasibility, on-time probability), placement, sessions, watchdog,
pool_state, scheduler (the façade), snapshot.

Choices where the façade left room (each documented in its module):
- soft preemption evicts the *newest* queued lower-class task, only when the pool total (not
  the incoming task's class queue) is full, and not under `shed-low-priority`, whose own rule
  applies (policies.py);
- session turn limit and budgets refuse with 400 ADMISSION_REJECT (spec over façade);
- EDF orders tasks inside one (tenant, priority) flow; WFQ decides between flows (queue.py);
- `set_draining(pool, True)` ends queued tasks with POOL_UNAVAILABLE and returns them.
"""

from .deadlines import on_time_probability
from .scheduler import Scheduler
from .snapshot import Counters, PoolSnapshot, ReplicaSnapshot, Snapshot
from .types import (
    PRIORITY_ORDER,
    Admitted,
    CancelResult,
    Dispatch,
    ErrorCode,
    Eviction,
    FullPolicy,
    PoolSpec,
    PreemptionMode,
    Priority,
    Rejected,
    ReplicaSpec,
    SessionPolicy,
    SessionView,
    TaskSpec,
    TaskState,
    TenantQuota,
    Timeout,
)

__all__ = [
    "PRIORITY_ORDER",
    "Admitted",
    "CancelResult",
    "Counters",
    "Dispatch",
    "ErrorCode",
    "Eviction",
    "FullPolicy",
    "PoolSnapshot",
    "PoolSpec",
    "PreemptionMode",
    "Priority",
    "Rejected",
    "ReplicaSnapshot",
    "ReplicaSpec",
    "Scheduler",
    "SessionPolicy",
    "SessionView",
    "Snapshot",
    "TaskSpec",
    "TaskState",
    "TenantQuota",
    "Timeout",
    "on_time_probability",
]
