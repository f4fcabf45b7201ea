"""Pure scheduling core of the reference orchestrator (issue 3): no I/O, no clock, stdlib only.

The service builds `PoolSpec` / `ReplicaSpec` / `SessionPolicy` from the config, calls
`Scheduler` with the time passed in, and turns the plain results into HTTP answers, SSE events
and metrics. Module map: types (data), queue (bounded per-class FIFO and flows), fairness
(WFQ), policies (full-queue victims, soft preemption), quotas (rate and concurrency),
deadlines (predictions, feasibility, on-time probability), placement, sessions, watchdog,
guardrails and admission (checks), hooks (policy plugin hook points), pools (`CorePool`: what
the scheduler keeps for one pool), state (the scheduler's records), endings (how a task leaves
them), queries (read-only views), scheduler (the façade), snapshot, testing (factories for tests).

Choices where the façade left room or the spec overrules it (each documented in its module):
- soft preemption runs before the full policy: only when the pool total (not the incoming
  task's own class queue) is full, it evicts the *newest* queued lower-class task (reason
  "preempted"); not under `shed-low-priority`, whose table row names its own victim;
- session turn limit and budgets refuse with 400 ADMISSION_REJECT (spec over façade's 429);
- the token rule checks prompt + max_tokens against the task's own ctx (spec) and against
  `max_tokens_budget` when set;
- EDF orders tasks inside one (tenant, priority) flow; WFQ decides between flows;
- additions: `set_replica(..., failed=)`, `set_draining` returns the evicted queued tasks,
  `estimate()`, `tasks_on()`, `TenantQuota.max_memory_bytes` (ORCH-3036), `Timeout.running`.
"""

from .deadlines import on_time_probability
from .hooks import HookRefusal, PolicyHooks
from .scheduler import Scheduler
from .snapshot import Counters, PoolSnapshot, ReplicaSnapshot, Snapshot
from .types import (
    DEFAULT_CLASS_WEIGHTS,
    PRIORITY_ORDER,
    Admitted,
    CancelResult,
    Dispatch,
    ErrorCode,
    Eviction,
    FullPolicy,
    HardPreemption,
    PoolSpec,
    PreemptionMode,
    Priority,
    Rejected,
    ReplicaSpec,
    SessionBudgets,
    SessionPolicy,
    SessionView,
    SloBreaker,
    TaskSpec,
    TaskState,
    TenantQuota,
    Timeout,
)

__all__ = [
    "DEFAULT_CLASS_WEIGHTS",
    "PRIORITY_ORDER",
    "Admitted",
    "CancelResult",
    "Counters",
    "Dispatch",
    "ErrorCode",
    "Eviction",
    "FullPolicy",
    "HardPreemption",
    "HookRefusal",
    "PolicyHooks",
    "PoolSnapshot",
    "PoolSpec",
    "PreemptionMode",
    "Priority",
    "Rejected",
    "ReplicaSnapshot",
    "ReplicaSpec",
    "Scheduler",
    "SessionBudgets",
    "SessionPolicy",
    "SessionView",
    "SloBreaker",
    "Snapshot",
    "TaskSpec",
    "TaskState",
    "TenantQuota",
    "Timeout",
    "on_time_probability",
]
