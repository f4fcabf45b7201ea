"""Config sections below the top level and below a pool: one small model per section.

Field descriptions are the documentation: they become the JSON schema's descriptions.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Self

from pydantic import BaseModel, Field, model_validator

from llama_orch.reference_impl.config._types import (
    FORBID,
    U32,
    EngineCapability,
    EnvVarName,
    FairnessKind,
    Port,
    PositiveU32,
    PositiveU64,
    SafeId,
    StrictBool,
    StrictFloat,
    StrictStr,
    TrustMode,
    duplicates,
    rule_error,
)
from llama_orch.reference_impl.config.budgets import SessionBudgetsConfig
from llama_orch.reference_impl.constants import DEFAULT_SAMPLER_PROFILE
from llama_orch.reference_impl.core.types import (
    DEFAULT_CLASS_WEIGHTS,
    FullPolicy,
    PreemptionMode,
    Priority,
)


class SamplerProfile(BaseModel):
    """Named sampling parameters; tasks refer to a profile and never carry raw parameters."""

    model_config = FORBID

    temperature: StrictFloat = Field(ge=0.0, description="Softmax temperature; 0 means greedy.")
    top_k: U32 = Field(description="Keep the k most likely tokens; 0 disables the filter.")
    top_p: StrictFloat = Field(gt=0.0, le=1.0, description="Nucleus cut-off; 1.0 disables it.")
    min_p: StrictFloat = Field(
        ge=0.0, le=1.0, description="Drop tokens below min_p times the top probability; 0 disables."
    )
    repeat_penalty: StrictFloat | None = Field(
        default=None, gt=0.0, description="Repetition penalty; null sends the neutral value 1.0."
    )
    presence_penalty: StrictFloat | None = Field(
        default=None, description="Presence penalty; null sends the neutral value 0."
    )
    frequency_penalty: StrictFloat | None = Field(
        default=None, description="Frequency penalty; null sends the neutral value 0."
    )


BUILTIN_SAMPLER_PROFILES: dict[str, SamplerProfile] = {
    DEFAULT_SAMPLER_PROFILE: SamplerProfile(temperature=0.7, top_k=40, top_p=0.95, min_p=0.05),
    "greedy": SamplerProfile(temperature=0.0, top_k=1, top_p=1.0, min_p=0.0),
}


class TimeoutsConfig(BaseModel):
    """Watchdog limits for one job (ORCH-3016, OC-CORE-1022)."""

    model_config = FORBID

    wall_ms: PositiveU64 = Field(
        default=60000, description="Longest a job may run from dispatch to its last token, in ms."
    )
    idle_ms: PositiveU64 = Field(
        default=5000, description="Longest gap between two tokens before the job is aborted, in ms."
    )


class SessionsConfig(BaseModel):
    """Session lifetime limits (ORCH-3021)."""

    model_config = FORBID

    ttl_ms: PositiveU64 = Field(
        default=600000, description="Session time-to-live in ms; the default is 10 minutes."
    )
    max_turns: PositiveU32 = Field(default=8, description="Most turns one session may take.")
    budgets: SessionBudgetsConfig | None = Field(
        default=None,
        description="Budgets of every session; a tenant's own (auth.tenants[].budgets) win.",
    )


class TrustPolicy(BaseModel):
    """Rules a model artifact must meet before the catalog accepts it."""

    model_config = FORBID

    mode: TrustMode = Field(
        default=TrustMode.STRICT,
        description="`strict` refuses untrusted artifacts; `permissive` admits them, warning.",
    )
    allowed_registries: list[StrictStr] = Field(
        default=[],
        description="Registries models may come from; empty allows none beyond local files.",
        examples=[["huggingface.co"]],
    )
    require_signature: StrictBool = Field(
        default=True, description="Require a verified signature on every artifact."
    )
    require_sbom: StrictBool = Field(default=True, description="Require an SBOM per artifact.")
    ca_roots: list[StrictStr] = Field(
        default=[],
        description=(
            "PEM files of the CA certificates signer certificates must be issued by; `~` and "
            "`$VARS` are expanded, relative paths resolve against the config file's folder, "
            "and an entry naming an unset variable is skipped with a warning."
        ),
    )


class CatalogConfig(BaseModel):
    """Model catalog settings."""

    model_config = FORBID

    trust_policy: TrustPolicy = Field(
        default=TrustPolicy(), description="Trust policy applied to catalog artifacts."
    )
    max_entries: PositiveU32 = Field(
        default=512,
        description="Catalog entries kept at most; Retired entries are dropped oldest first.",
    )


class TenantAuth(BaseModel):
    """A tenant and where its API key lives; keys are never written in the config."""

    model_config = FORBID

    id: SafeId = Field(description="Tenant id, as used in fairness and quota settings and logs.")
    api_key_env: EnvVarName = Field(
        description="Environment variable that holds this tenant's API key.",
        examples=["LLORCH_KEY_TEAM_A"],
    )
    budgets: SessionBudgetsConfig | None = Field(
        default=None, description="Budgets of this tenant's sessions (instead of sessions.budgets)."
    )


class AuthConfig(BaseModel):
    """Where API keys come from: the environment or a file, never the config itself."""

    model_config = FORBID

    api_keys_env: EnvVarName | None = Field(
        default=None,
        description="Environment variable holding accepted API keys, comma-separated.",
        examples=["LLORCH_API_KEY"],
    )
    api_keys_file: StrictStr | None = Field(
        default=None,
        min_length=1,
        description="File holding accepted API keys, one per line. Exclusive with api_keys_env.",
    )
    tenants: list[TenantAuth] = Field(
        default=[], description="Tenants with their own API key; ids must be unique."
    )

    @model_validator(mode="after")
    def _one_key_source(self) -> Self:
        issues: list[tuple[tuple[str | int, ...], str, object]] = []
        if self.api_keys_env is not None and self.api_keys_file is not None:
            issues.append((("api_keys_file",), "set api_keys_env or api_keys_file, not both", None))
        issues += duplicates("tenants", [t.id for t in self.tenants], "tenant id")
        if issues:
            raise rule_error("AuthConfig", issues)
        return self


class QueueConfig(BaseModel):
    """The pool's bounded admission queue."""

    model_config = FORBID

    capacity: PositiveU32 = Field(default=256, description="Most tasks waiting in the queue.")
    full_policy: FullPolicy = Field(
        default=FullPolicy.REJECT,
        description="What happens to a new task when the queue is full (OC-CORE-1002).",
    )


class PriorityClass(BaseModel):
    """Admission settings of one priority class."""

    model_config = FORBID

    name: Priority = Field(description="Priority class these settings apply to.")
    queue_capacity: PositiveU32 | None = Field(
        default=None,
        description="Most queued tasks of this class; null means only the pool queue bounds it.",
        examples=[128],
    )
    rate_limit_rps: PositiveU32 | None = Field(
        default=None, description="Admitted tasks per second for this class; null is unlimited."
    )
    weight: PositiveU32 | None = Field(
        default=None,
        description="WFQ weight; null takes the class default (interactive 8, batch 1).",
    )

    @model_validator(mode="after")
    def _default_weight(self) -> Self:
        if self.weight is None:
            self.weight = DEFAULT_CLASS_WEIGHTS[self.name]
        return self


class FairnessTenant(BaseModel):
    """A tenant's share and quotas (ORCH-3075, ORCH-3077, ORCH-3036)."""

    model_config = FORBID

    id: SafeId = Field(description="Tenant id.")
    weight: PositiveU32 = Field(default=1, description="WFQ weight of this tenant.")
    max_concurrent: PositiveU32 | None = Field(
        default=None, description="Most jobs of this tenant running at once; null is unlimited."
    )
    rps: PositiveU32 | None = Field(
        default=None, description="Admitted tasks per second for this tenant; null is unlimited."
    )
    burst: PositiveU32 | None = Field(
        default=None, description="Token-bucket burst on top of rps; needs rps."
    )
    max_memory_bytes: PositiveU64 | None = Field(
        default=None, description="Cap on KV cache plus scratch memory held by this tenant's jobs."
    )

    @model_validator(mode="after")
    def _burst_needs_rps(self) -> Self:
        if self.burst is not None and self.rps is None:
            raise rule_error("FairnessTenant", [(("burst",), "burst needs rps to be set", None)])
        return self


class FairnessConfig(BaseModel):
    """How admission is shared between tenants."""

    model_config = FORBID

    kind: FairnessKind = Field(default=FairnessKind.WFQ, description="Fair-queuing algorithm.")
    tenants: list[FairnessTenant] = Field(
        default=[], description="Per-tenant weights and quotas; ids must be unique."
    )

    @model_validator(mode="after")
    def _unique_tenants(self) -> Self:
        issues = duplicates("tenants", [t.id for t in self.tenants], "tenant id")
        if issues:
            raise rule_error("FairnessConfig", issues)
        return self


class AdmissionConfig(BaseModel):
    """Admission control: priority classes and tenant fairness."""

    model_config = FORBID

    priorities: list[PriorityClass] = Field(
        default=[PriorityClass(name=Priority.INTERACTIVE), PriorityClass(name=Priority.BATCH)],
        description="Priority classes; each name at most once.",
    )
    fairness: FairnessConfig = Field(
        default=FairnessConfig(), description="Fair sharing between tenants."
    )

    @model_validator(mode="after")
    def _unique_priorities(self) -> Self:
        issues = duplicates(
            "priorities", [p.name.value for p in self.priorities], "priority", key="name"
        )
        if issues:
            raise rule_error("AdmissionConfig", issues)
        return self


class DeadlinesConfig(BaseModel):
    """Earliest-deadline-first overlay (ORCH-3083)."""

    model_config = FORBID

    edf: StrictBool = Field(default=True, description="Order ready work by earliest deadline.")
    reject_infeasible: StrictBool = Field(
        default=True, description="Refuse tasks whose deadline cannot be met, at admission."
    )


class HardPreemptionRequirements(BaseModel):
    """Guards that apply when preemption mode is `hard` (ORCH-3089)."""

    model_config = FORBID

    engine_capability: EngineCapability = Field(
        default=EngineCapability.INTERRUPTIBLE_DECODE,
        description="Capability the engine must prove before hard preemption is used.",
    )
    max_preemptions_per_min: U32 | None = Field(
        default=None, description="Most hard preemptions per minute; null is unlimited."
    )
    protect_priorities: list[Priority] = Field(
        default=[Priority.INTERACTIVE], description="Priority classes never hard-preempted."
    )


class PreemptionConfig(BaseModel):
    """Preemption of running work in favour of more urgent work."""

    model_config = FORBID

    mode: PreemptionMode = Field(
        default=PreemptionMode.SOFT,
        description="`soft` by default; `hard` only where the engine proves the capability.",
    )
    hard_requirements: HardPreemptionRequirements = Field(
        default=HardPreemptionRequirements(), description="Guards used when mode is `hard`."
    )


class SloBreakerConfig(BaseModel):
    """SLO circuit breaker (ORCH-3040): shed classes while the first-token SLO keeps failing."""

    model_config = FORBID

    first_token_ms: PositiveU32 = Field(
        default=900,
        description="First-token SLO of the watched class, admission to first token, in ms.",
    )
    slo_priority: Priority = Field(
        default=Priority.INTERACTIVE, description="Priority class whose SLO is watched."
    )
    window: PositiveU32 = Field(default=8, description="Most recent samples the breaker weighs.")
    min_samples: PositiveU32 = Field(
        default=4, description="Fewest fresh samples before the breaker may open."
    )
    trip_ratio: StrictFloat = Field(
        default=0.5,
        gt=0.0,
        le=1.0,
        description="Open while at least this fraction of the fresh samples missed the SLO.",
    )
    horizon_ms: PositiveU64 = Field(
        default=30000, description="Samples older than this no longer count, in ms."
    )
    shed: list[Priority] = Field(
        default=[Priority.BATCH],
        description="Classes refused (429, retriable) while the breaker is open.",
    )


class Interconnect(StrEnum):
    """How a pool's GPUs are connected."""

    NVLINK = "nvlink"
    PCIE = "pcie"


class TopologyConfig(BaseModel):
    """Topology hints that break placement ties between otherwise equal pools (ORCH-3092)."""

    model_config = FORBID

    interconnect: Interconnect | None = Field(
        default=None, description="GPU interconnect; nvlink is preferred over pcie."
    )
    numa_node: U32 | None = Field(
        default=None, description="NUMA node the pool's GPUs hang off; informational."
    )

    @property
    def rank(self) -> int:
        """Lower is better: NVLink 0, PCIe 1, unknown 2."""
        return {Interconnect.NVLINK: 0, Interconnect.PCIE: 1, None: 2}[self.interconnect]


# Flags the pool manager sets itself; passing them in launch.args would fight with it.
MANAGED_LAUNCH_FLAGS = frozenset({"--model", "-m", "--host", "--port"})


class LaunchConfig(BaseModel):
    """How the pool manager starts `llama-server` for a pool it runs itself."""

    model_config = FORBID

    binary: StrictStr = Field(
        default="llama-server",
        min_length=1,
        description="Server executable, a path or a name looked up on PATH.",
    )
    args: list[StrictStr] = Field(
        default=[],
        description="Extra flags; --model, --host and --port are set by the pool manager.",
        examples=[["--parallel", "1", "--no-cont-batching", "--ctx-size", "4096"]],
    )
    host: StrictStr = Field(default="127.0.0.1", description="Address the server binds to.")
    port: Port | None = Field(default=None, description="Port to bind; null picks a free port.")
    startup_timeout_ms: PositiveU64 = Field(
        default=120000, description="How long to wait for the server to report healthy, in ms."
    )

    @model_validator(mode="after")
    def _no_managed_flags(self) -> Self:
        issues: list[tuple[tuple[str | int, ...], str, object]] = [
            (("args", i), f"{arg.split('=')[0]} is set by the pool manager; remove it", arg)
            for i, arg in enumerate(self.args)
            if arg.split("=")[0] in MANAGED_LAUNCH_FLAGS
        ]
        if issues:
            raise rule_error("LaunchConfig", issues)
        return self
