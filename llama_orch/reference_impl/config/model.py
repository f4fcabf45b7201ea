"""The orchestrator config as one typed model: pools plus global sections.

`OrchestratorConfig` is the single source of truth: the loader validates against it, and the
committed JSON schema is generated from it. Rules that span fields (tensor_split against
devices, profile names against defined profiles, unique ids) live in model validators and
report the exact key path of the offending value.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Any, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, PrivateAttr, Strict, field_validator, model_validator

from llama_orch.reference_impl.config._types import (
    FORBID,
    MODEL_REF_PATTERN,
    SHA256_HEX_PATTERN,
    URL_PATTERN,
    AdapterKind,
    Engine,
    PositiveU32,
    SafeId,
    StrictBool,
    StrictStr,
    ValidationMode,
    duplicates,
    rule_error,
)
from llama_orch.reference_impl.config.budgets import ArtifactsConfig
from llama_orch.reference_impl.config.policy import PolicyConfig, replica_label_issues
from llama_orch.reference_impl.config.sections import (
    BUILTIN_SAMPLER_PROFILES,
    AdmissionConfig,
    AuthConfig,
    CatalogConfig,
    DeadlinesConfig,
    LaunchConfig,
    PreemptionConfig,
    QueueConfig,
    SamplerProfile,
    SessionsConfig,
    SloBreakerConfig,
    TimeoutsConfig,
    TopologyConfig,
)
from llama_orch.reference_impl.constants import DEFAULT_SAMPLER_PROFILE

Issues = list[tuple[tuple[str | int, ...], str, Any]]

# How far a tensor_split may sum from 1.0: ratios like [0.33, 0.33, 0.33] are meant as thirds.
SPLIT_SUM_TOLERANCE = 0.01

DeviceIndex = Annotated[int, Strict(), Field(ge=0, le=2**32 - 1)]
SplitRatio = Annotated[float, Strict(), Field(gt=0.0, le=1.0)]
ProfileName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]


class PoolConfig(BaseModel):
    """One pool: a model on an engine, bound to a device mask, with its own queue and policy."""

    model_config = FORBID

    id: SafeId = Field(
        description="Pool id: letters, digits, `.`, `_`, `-`; unique across pools.",
        examples=["llama3-8b-q4-gpu0"],
    )
    engine: Engine = Field(description="Engine family that serves this pool.")
    adapter: AdapterKind | None = Field(
        default=None,
        description=(
            "Adapter backing the pool: the engine's own (the default, null) or `mock`, the "
            "in-process simulator. With `mock`, device indices are virtual and no GPU is used."
        ),
    )
    model: StrictStr = Field(
        pattern=MODEL_REF_PATTERN,
        description="Model reference: a digest `sha256:<64 hex>` or a name `repo:<org>/<name>`.",
        examples=["repo:meta-llama/Llama-3.1-8B-Instruct"],
    )
    model_path: StrictStr | None = Field(
        default=None,
        min_length=1,
        description=(
            "Local model file (e.g. GGUF) the pool manager loads; `~` and `$VARS` are expanded, "
            "relative paths resolve against the config file's folder. Needs model_sha256."
        ),
    )
    model_sha256: StrictStr | None = Field(
        default=None,
        pattern=SHA256_HEX_PATTERN,
        description="Hex SHA-256 of model_path, verified before the model is loaded.",
    )
    served_model_name: StrictStr | None = Field(
        default=None,
        min_length=1,
        description=(
            "Name the engine serves the model under (Triton's `/v2/models/{name}`, vLLM's "
            "served model name); null lets the adapter discover it."
        ),
    )
    quant: StrictStr | None = Field(
        default=None, description="Quantisation label, informational.", examples=["q4_k_m"]
    )
    ctx: PositiveU32 | None = Field(
        default=None, description="Context length in tokens; null keeps the engine's default."
    )
    devices: list[DeviceIndex] = Field(
        description=(
            "GPU indices this pool may use (its device mask). Empty only with "
            "allow_cpu_inference: true."
        ),
        examples=[[0], [0, 1]],
    )
    tensor_split: list[SplitRatio] | None = Field(
        default=None,
        description=(
            "Per-GPU split ratios, one per device, summing to 1.0. Null means the model is not "
            "split across GPUs unless the pool is marked homogeneous (ORCH-3012)."
        ),
        examples=[[0.67, 0.33]],
    )
    homogeneous: StrictBool = Field(
        default=False,
        description="The listed GPUs are identical, so an even split needs no tensor_split.",
    )
    allow_cpu_inference: StrictBool = Field(
        default=False,
        description=(
            "CPU-only carve-out: the pool may serve inference without a GPU. Logged at start, "
            "shown in capabilities, and reported as a waiver of ORCH-1101."
        ),
    )
    preload: StrictBool = Field(default=True, description="Load the model before going Ready.")
    require_same_engine_version: StrictBool = Field(
        default=True, description="All replicas must report the same engine version."
    )
    sampler_profile_version: ProfileName = Field(
        default=DEFAULT_SAMPLER_PROFILE,
        description="Sampler profile used when a task names none; must be defined.",
    )
    determinism: StrictBool = Field(
        default=False,
        description=(
            "Run replicas in their deterministic mode (e.g. llama.cpp --parallel 1 "
            "--no-cont-batching, no prompt cache) so a seeded task gives the same tokens anywhere."
        ),
    )
    replicas: PositiveU32 = Field(default=1, description="Number of engine replicas in the pool.")
    endpoint: StrictStr | None = Field(
        default=None,
        pattern=URL_PATTERN,
        json_schema_extra={"format": "uri"},
        description="Base URL of a running engine server the orchestrator does not launch.",
        examples=["http://127.0.0.1:8081"],
    )
    metrics_endpoint: StrictStr | None = Field(
        default=None,
        pattern=URL_PATTERN,
        json_schema_extra={"format": "uri"},
        description=(
            "URL of the engine's Prometheus metrics when they are not at the endpoint's "
            "`/metrics`. Triton serves metrics only on its metrics port; unset, a triton pool "
            "uses port 8002 (Triton's default) of the endpoint's host."
        ),
        examples=["http://127.0.0.1:8002/metrics"],
    )
    launch: LaunchConfig | None = Field(
        default=None,
        description="How the pool manager starts llama-server itself (engine llamacpp only).",
    )
    queue: QueueConfig = Field(default=QueueConfig(), description="The pool's admission queue.")
    admission: AdmissionConfig = Field(
        default=AdmissionConfig(), description="Priority classes and tenant fairness."
    )
    deadlines: DeadlinesConfig = Field(
        default=DeadlinesConfig(), description="Deadline-aware scheduling."
    )
    preemption: PreemptionConfig = Field(
        default=PreemptionConfig(), description="Preemption of running work."
    )
    slo_breaker: SloBreakerConfig | None = Field(
        default=None, description="SLO circuit breaker; null leaves the pool without one."
    )
    topology: TopologyConfig | None = Field(
        default=None, description="Topology hints for placement ties; null means none."
    )
    timeouts: TimeoutsConfig | None = Field(
        default=None, description="Watchdog limits for this pool; null uses the top-level ones."
    )
    node: StrictStr | None = Field(default=None, description="Node label, for anti-affinity.")
    zone: StrictStr | None = Field(default=None, description="Zone label, for anti-affinity.")

    @field_validator("devices")
    @classmethod
    def _unique_devices(cls, devices: list[int]) -> list[int]:
        if len(set(devices)) != len(devices):
            raise ValueError("device indices must be unique")
        return devices

    @field_validator("endpoint", "metrics_endpoint")
    @classmethod
    def _endpoint_url(cls, endpoint: str | None) -> str | None:
        if endpoint is not None:
            parts = urlsplit(endpoint)
            if not parts.hostname:
                raise ValueError("expected an http(s) URL with a host, e.g. http://127.0.0.1:8081")
            try:
                _ = parts.port
            except ValueError as exc:
                raise ValueError(f"bad port in URL: {exc}") from None
        return endpoint

    @model_validator(mode="after")
    def _cross_fields(self) -> Self:
        issues: Issues = [
            *self._device_issues(),
            *self._model_file_issues(),
            *self._backend_issues(),
        ]
        if issues:
            raise rule_error("PoolConfig", issues)
        if self.adapter is None:
            self.adapter = AdapterKind(self.engine.value)
        return self

    def _device_issues(self) -> Issues:
        issues: Issues = []
        if not self.devices and not self.allow_cpu_inference:
            msg = "a pool needs at least one GPU index, or allow_cpu_inference: true"
            issues.append((("devices",), msg, self.devices))
        split = self.tensor_split
        if split is not None:
            if len(split) != len(self.devices):
                msg = (
                    f"expected one ratio per device ({len(self.devices)}), got {len(split)} "
                    f"ratios for devices {self.devices}"
                )
                issues.append((("tensor_split",), msg, split))
            elif not math.isclose(sum(split), 1.0, abs_tol=SPLIT_SUM_TOLERANCE):
                msg = f"ratios must sum to 1.0 (±{SPLIT_SUM_TOLERANCE}), got {sum(split):g}"
                issues.append((("tensor_split",), msg, split))
        return issues

    def _model_file_issues(self) -> Issues:
        issues: Issues = []
        if self.model_path is not None and self.model_sha256 is None:
            msg = "model_path needs model_sha256, the digest verified before load"
            issues.append((("model_sha256",), msg, None))
        if self.model_sha256 is not None and self.model_path is None:
            issues.append((("model_path",), "model_sha256 needs model_path", None))
        if (
            self.model_sha256 is not None
            and self.model.startswith("sha256:")
            and self.model.removeprefix("sha256:") != self.model_sha256
        ):
            msg = "model_sha256 differs from the digest in model"
            issues.append((("model_sha256",), msg, self.model_sha256))
        return issues

    def _backend_issues(self) -> Issues:
        issues: Issues = []
        adapter = self.adapter
        if adapter is not None and adapter not in (AdapterKind.MOCK, self.engine.value):
            msg = f"adapter must be 'mock' or the engine's own ({self.engine.value!r})"
            issues.append((("adapter",), msg, adapter.value))
        if adapter == AdapterKind.MOCK:
            for key in ("endpoint", "launch", "metrics_endpoint"):
                if getattr(self, key) is not None:
                    msg = f"the mock adapter runs in process; remove {key}"
                    issues.append(((key,), msg, None))
            return issues
        if (self.endpoint is None) == (self.launch is None):
            msg = (
                "set exactly one of endpoint (a running server) or launch (start llama-server)"
                if self.endpoint is None
                else "set endpoint or launch, not both"
            )
            issues.append((("endpoint",), msg, self.endpoint))
        if self.launch is not None:
            if self.engine != Engine.LLAMACPP:
                msg = "launch starts llama-server only; point this engine at a server via endpoint"
                issues.append((("launch",), msg, None))
            elif self.model_path is None:
                issues.append((("model_path",), "launch needs model_path to load", None))
            if self.metrics_endpoint is not None:
                msg = "a launched llama-server serves /metrics itself; remove metrics_endpoint"
                issues.append((("metrics_endpoint",), msg, self.metrics_endpoint))
            if self.launch.port is not None and self.replicas > 1:
                msg = "a fixed port serves one replica; leave launch.port unset"
                issues.append((("launch", "port"), msg, self.launch.port))
        if self.endpoint is not None and self.replicas != 1:
            msg = "an endpoint is one server, so one replica; declare one pool per server"
            issues.append((("replicas",), msg, self.replicas))
        return issues


class OrchestratorConfig(BaseModel):
    """The reference orchestrator's configuration file."""

    model_config = FORBID

    validation: ValidationMode = Field(
        default=ValidationMode.STRICT,
        description="`strict` rejects unknown keys; `compat` logs and ignores them.",
    )
    pools: list[PoolConfig] = Field(min_length=1, description="Pools served; ids are unique.")
    catalog: CatalogConfig = Field(default=CatalogConfig(), description="Model catalog settings.")
    artifacts: ArtifactsConfig = Field(
        default=ArtifactsConfig(), description="The artifact store (extended profile)."
    )
    sessions: SessionsConfig = Field(
        default=SessionsConfig(), description="Session lifetime limits."
    )
    auth: AuthConfig = Field(default=AuthConfig(), description="Where API keys come from.")
    sampler_profiles: dict[ProfileName, SamplerProfile] = Field(
        default=dict(BUILTIN_SAMPLER_PROFILES),
        description=(
            "Named sampler profiles. The built-ins `v1` and `greedy` are always present; an "
            "entry with the same name replaces the built-in."
        ),
        json_schema_extra={"additionalProperties": False},
    )
    timeouts: TimeoutsConfig = Field(
        default=TimeoutsConfig(), description="Default watchdog limits for pools without their own."
    )
    policy: PolicyConfig = Field(
        default=PolicyConfig(), description="Policy plugins and mediated tools (extended profile)."
    )

    # Where the config was read from; relative model paths resolve against its folder.
    _source: Path | None = PrivateAttr(default=None)

    @field_validator("sampler_profiles")
    @classmethod
    def _with_builtins(cls, profiles: dict[str, SamplerProfile]) -> dict[str, SamplerProfile]:
        merged = {k: v.model_copy() for k, v in BUILTIN_SAMPLER_PROFILES.items()}
        merged.update(profiles)
        return merged

    @model_validator(mode="after")
    def _cross_refs(self) -> Self:
        issues: Issues = duplicates("pools", [p.id for p in self.pools], "pool id")
        for i, pool in enumerate(self.pools):
            if pool.sampler_profile_version not in self.sampler_profiles:
                defined = ", ".join(sorted(self.sampler_profiles))
                msg = f"names no defined sampler profile (defined: {defined})"
                issues.append((("pools", i, "sampler_profile_version"), msg, None))
            if self.auth.tenants:
                known = {t.id for t in self.auth.tenants}
                for j, tenant in enumerate(pool.admission.fairness.tenants):
                    if tenant.id not in known:
                        loc = ("pools", i, "admission", "fairness", "tenants", j, "id")
                        issues.append((loc, "tenant is not defined in auth.tenants", None))
        replicas = {f"{p.id}-r{n}" for p in self.pools for n in range(p.replicas)}
        issues += replica_label_issues(self.policy, replicas)
        if issues:
            raise rule_error("OrchestratorConfig", issues)
        return self

    def pool(self, pool_id: str) -> PoolConfig:
        """The pool with this id; KeyError when there is none."""
        for pool in self.pools:
            if pool.id == pool_id:
                return pool
        raise KeyError(pool_id)

    def timeouts_for(self, pool: PoolConfig) -> TimeoutsConfig:
        """Effective watchdog limits of a pool: its own, else the top-level ones."""
        return pool.timeouts if pool.timeouts is not None else self.timeouts

    @property
    def source_path(self) -> Path | None:
        """The file this config was loaded from, when it came from a file."""
        return self._source

    def model_path_for(self, pool: PoolConfig) -> Path | None:
        """Absolute model file of a pool: `~` and `$VARS` expanded, relative to the config file."""
        if pool.model_path is None:
            return None
        path = Path(os.path.expandvars(os.path.expanduser(pool.model_path)))
        if not path.is_absolute():
            base = self._source.parent if self._source is not None else Path.cwd()
            path = base / path
        return path

    def sampler_profile(self, name: str) -> SamplerProfile:
        """The profile with this name; KeyError when it is not defined."""
        return self.sampler_profiles[name]
