"""Plain data shared by the core: enums, config records, inputs and outputs.

Everything here is a frozen dataclass or a StrEnum so the service can build inputs from the
pydantic config without the core importing pydantic, and so results can be compared in tests.
`Priority`, `FullPolicy` and `PreemptionMode` are the reference's only definitions of these
concepts: the config models and the HTTP request schema use these very enums. Their docstrings
become descriptions in the config's JSON schema, so notes for code readers are comments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Priority(StrEnum):
    """Priority class of a task."""

    # `interactive` ranks above `batch` (PRIORITY_ORDER).

    INTERACTIVE = "interactive"
    BATCH = "batch"


# Highest rank first; index = rank (0 is the most urgent class).
PRIORITY_ORDER: tuple[Priority, ...] = (Priority.INTERACTIVE, Priority.BATCH)
RANK: dict[Priority, int] = {p: i for i, p in enumerate(PRIORITY_ORDER)}
# WFQ weight of a class that the config gives none (specs/10, ORCH-3078).
DEFAULT_CLASS_WEIGHTS: dict[Priority, int] = {Priority.INTERACTIVE: 8, Priority.BATCH: 1}


class FullPolicy(StrEnum):
    """What admission does when a pool's queue is full."""

    # OC-CORE-1002; the victims are chosen in policies.py.

    REJECT = "reject"
    DROP_LRU = "drop-lru"
    SHED_LOW_PRIORITY = "shed-low-priority"


class PreemptionMode(StrEnum):
    """Preemption style: `soft` (at safe points), `hard` (interrupt decode), or `disabled`."""

    # The core itself only ever evicts queued work.

    SOFT = "soft"
    HARD = "hard"
    DISABLED = "disabled"


class ErrorCode(StrEnum):
    """The twelve ErrorKind codes (value == name)."""

    ADMISSION_REJECT = "ADMISSION_REJECT"
    QUEUE_FULL_DROP_LRU = "QUEUE_FULL_DROP_LRU"
    INVALID_PARAMS = "INVALID_PARAMS"
    POOL_UNREADY = "POOL_UNREADY"
    POOL_UNAVAILABLE = "POOL_UNAVAILABLE"
    REPLICA_EXHAUSTED = "REPLICA_EXHAUSTED"
    DECODE_TIMEOUT = "DECODE_TIMEOUT"
    WORKER_RESET = "WORKER_RESET"
    INTERNAL = "INTERNAL"
    DEADLINE_UNMET = "DEADLINE_UNMET"
    MODEL_DEPRECATED = "MODEL_DEPRECATED"
    UNTRUSTED_ARTIFACT = "UNTRUSTED_ARTIFACT"


class CancelResult(StrEnum):
    """Outcome of `Scheduler.cancel`."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    UNKNOWN = "unknown"


class TaskState(StrEnum):
    """Life-cycle state of a task; the last five are terminal."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    CANCELED = "canceled"
    EXPIRED = "expired"
    EVICTED = "evicted"


TERMINAL_STATES = frozenset(
    {TaskState.DONE, TaskState.CANCELED, TaskState.EXPIRED, TaskState.EVICTED}
)


def _class_none() -> dict[Priority, int | None]:
    return {p: None for p in PRIORITY_ORDER}


def _class_weights() -> dict[Priority, int]:
    return dict(DEFAULT_CLASS_WEIGHTS)


def _class_rps() -> dict[Priority, float | None]:
    return {p: None for p in PRIORITY_ORDER}


@dataclass(frozen=True)
class TenantQuota:
    """A tenant's WFQ weight and quotas within one pool (ORCH-3077, ORCH-3036)."""

    tenant: str
    weight: int = 1
    max_concurrent: int | None = None
    rps: float | None = None
    burst: int | None = None
    max_memory_bytes: int | None = None


def _protected() -> frozenset[Priority]:
    return frozenset({Priority.INTERACTIVE})


@dataclass(frozen=True)
class SloBreaker:
    """An SLO circuit breaker of one pool (ORCH-3040): sheds classes while the SLO is missed.

    It watches the admission-to-first-token latency of `slo_priority` tasks: over the last
    `window` samples no older than `horizon_ms`, once at least `min_samples` exist and a
    fraction of at least `trip_ratio` missed `first_token_ms`, new tasks of the `shed` classes
    are refused (429, retriable) until that fraction falls below `trip_ratio` again.
    """

    first_token_ms: int = 900
    slo_priority: Priority = Priority.INTERACTIVE
    window: int = 8
    min_samples: int = 4
    trip_ratio: float = 0.5
    horizon_ms: int = 30_000
    shed: frozenset[Priority] = frozenset({Priority.BATCH})


@dataclass(frozen=True)
class PoolSpec:
    """One pool's scheduling settings, built by the API layer from the config."""

    pool_id: str
    engine: str
    model_ref: str
    ctx_max: int
    capacity: int
    full_policy: FullPolicy = FullPolicy.REJECT
    class_capacity: dict[Priority, int | None] = field(default_factory=_class_none)
    class_weights: dict[Priority, int] = field(default_factory=_class_weights)
    class_rps: dict[Priority, float | None] = field(default_factory=_class_rps)
    wfq: bool = True
    tenants: tuple[TenantQuota, ...] = ()
    default_tenant_weight: int = 1
    edf: bool = True
    reject_infeasible: bool = True
    preemption: PreemptionMode = PreemptionMode.SOFT
    # Guards of hard preemption (ORCH-3089): the most per rolling minute (None: no cap) and
    # the classes whose running tasks are never interrupted.
    hard_max_per_min: int | None = None
    hard_protect: frozenset[Priority] = field(default_factory=_protected)
    slo_breaker: SloBreaker | None = None
    wall_ms: int = 60_000
    idle_ms: int = 5_000
    max_tokens_budget: int | None = None
    replica_set: tuple[str, ...] = ()
    # Memory model for the tenant memory quota (ORCH-3036): KV bytes per reserved token
    # (128 KiB is an 8B Llama-3 fp16 KV cache) plus fixed scratch per task.
    kv_bytes_per_token: int = 131_072
    scratch_bytes_per_task: int = 0


@dataclass(frozen=True)
class SessionBudgets:
    """Per-session allowances (OC-CORE-1023); None leaves that budget off.

    Cost is counted in the deployment's own units: `cost_per_1k_tokens` for every thousand
    tokens a task uses (prompt plus generated).
    """

    tokens: int | None = None
    time_ms: int | None = None
    cost: float | None = None
    cost_per_1k_tokens: float = 1.0


@dataclass(frozen=True)
class SessionPolicy:
    """Session limits (ORCH-3021 defaults) and optional budgets (OC-CORE-1023).

    `token_budget`, `time_budget_ms` and `cost_budget` apply to every session; a tenant in
    `tenant_budgets` has its own budgets instead (for the sessions it opens).
    """

    ttl_ms: int = 600_000
    max_turns: int = 8
    token_budget: int | None = None
    time_budget_ms: int | None = None
    cost_budget: float | None = None
    cost_per_1k_tokens: float = 1.0
    tenant_budgets: dict[str, SessionBudgets] = field(default_factory=dict)

    def budgets(self, tenant: str) -> SessionBudgets:
        """The budgets of a session opened by `tenant`."""
        own = self.tenant_budgets.get(tenant)
        if own is not None:
            return own
        return SessionBudgets(
            self.token_budget, self.time_budget_ms, self.cost_budget, self.cost_per_1k_tokens
        )


@dataclass(frozen=True)
class ReplicaSpec:
    """A placement target of one pool; starts not Ready until `set_replica` says so."""

    replica_id: str
    pool_id: str
    slots_total: int
    device_mask: frozenset[int] = frozenset()
    # Operator labels (policy.replica_labels) that placement plugins see; sorted pairs.
    labels: tuple[tuple[str, str], ...] = ()
    # Topology hint for placement ties (ORCH-3092): lower is better (e.g. NVLink-connected
    # devices 0, PCIe 1, unknown 2); only decides between otherwise equal candidates.
    topology_rank: int = 0


@dataclass(frozen=True)
class TaskSpec:
    """What admission needs to know about a task; `deadline_ms` is relative to admission."""

    task_id: str
    session_id: str
    tenant: str
    pool_id: str
    priority: Priority
    ctx: int
    prompt_tokens: int
    max_tokens: int
    deadline_ms: int | None = None
    expected_tokens: int | None = None
    # Run only on this replica of the pool (replica pinning, for determinism checks and
    # diagnostics). A pinned task at the head of the queue waits for its replica.
    pin_replica: str | None = None
    # Carried to policy hooks for their call logs only; never a scheduling input.
    correlation_id: str | None = None


@dataclass(frozen=True)
class Eviction:
    """A queued task removed to make room or by a drain; its stream ends with `code`."""

    task_id: str
    code: ErrorCode
    reason: str


@dataclass(frozen=True)
class Admitted:
    """A `202`: the task is queued."""

    task_id: str
    pool_id: str
    queue_position: int
    predicted_start_ms: int
    backoff_ms: int
    on_time_probability: float
    evicted: tuple[Eviction, ...] = ()
    weight: int = 1  # the WFQ weight of the task's flow (class weight x tenant weight)


@dataclass(frozen=True)
class Rejected:
    """A refusal at admission, already mapped to its HTTP status."""

    code: ErrorCode
    message: str
    status: int
    policy_label: str | None = None
    retry_after_ms: int | None = None
    field: str | None = None
    retriable: bool = False


@dataclass(frozen=True)
class Dispatch:
    """A task handed to a replica slot; decode starts now (`resumed`: after a preemption)."""

    task_id: str
    pool_id: str
    replica_id: str
    kv_warmth: bool
    queue_time_ms: int
    resumed: bool = False


@dataclass(frozen=True)
class HardPreemption:
    """A running task the core wants interrupted so that `for_priority` work can start."""

    task_id: str
    pool_id: str
    replica_id: str
    for_priority: Priority


@dataclass(frozen=True)
class Timeout:
    """A watchdog expiry; `running` tells whether the engine must be told to stop."""

    task_id: str
    kind: str
    running: bool = True


@dataclass(frozen=True)
class SessionView:
    """SessionInfo as the core knows it; budgets are None when not configured."""

    session_id: str
    ttl_ms_remaining: int
    turns: int
    kv_bytes: int
    kv_warmth: bool
    tokens_budget_remaining: int | None
    time_budget_remaining_ms: int | None
    cost_budget_remaining: float | None = None
