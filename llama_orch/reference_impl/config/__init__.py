"""The orchestrator's configuration: typed model, YAML loader and JSON schema generation.

Typical use::

    from llama_orch.reference_impl.config import load_config
    config = load_config("examples/mock.yaml")
    for pool in config.pools:
        timeouts = config.timeouts_for(pool)
"""

from llama_orch.reference_impl.config._types import (
    AdapterKind,
    Engine,
    EngineCapability,
    FairnessKind,
    TrustMode,
    ValidationMode,
)
from llama_orch.reference_impl.config.budgets import ArtifactsConfig, SessionBudgetsConfig
from llama_orch.reference_impl.config.loader import (
    ConfigError,
    ConfigIssue,
    format_path,
    load_config,
    parse_config,
)
from llama_orch.reference_impl.config.model import OrchestratorConfig, PoolConfig
from llama_orch.reference_impl.config.schema import (
    DEFAULT_SCHEMA_PATH,
    config_json_schema,
    render_schema,
    schema_diff,
    write_schema,
)
from llama_orch.reference_impl.config.sections import (
    BUILTIN_SAMPLER_PROFILES,
    AdmissionConfig,
    AuthConfig,
    CatalogConfig,
    DeadlinesConfig,
    FairnessConfig,
    FairnessTenant,
    HardPreemptionRequirements,
    Interconnect,
    LaunchConfig,
    PreemptionConfig,
    PriorityClass,
    QueueConfig,
    SamplerProfile,
    SessionsConfig,
    SloBreakerConfig,
    TenantAuth,
    TimeoutsConfig,
    TopologyConfig,
    TrustPolicy,
)
from llama_orch.reference_impl.core.types import FullPolicy, PreemptionMode, Priority

__all__ = [
    "BUILTIN_SAMPLER_PROFILES",
    "DEFAULT_SCHEMA_PATH",
    "AdapterKind",
    "AdmissionConfig",
    "ArtifactsConfig",
    "AuthConfig",
    "CatalogConfig",
    "ConfigError",
    "ConfigIssue",
    "DeadlinesConfig",
    "Engine",
    "EngineCapability",
    "FairnessConfig",
    "FairnessKind",
    "FairnessTenant",
    "FullPolicy",
    "HardPreemptionRequirements",
    "Interconnect",
    "LaunchConfig",
    "OrchestratorConfig",
    "PoolConfig",
    "PreemptionConfig",
    "PreemptionMode",
    "Priority",
    "PriorityClass",
    "QueueConfig",
    "SamplerProfile",
    "SessionBudgetsConfig",
    "SessionsConfig",
    "SloBreakerConfig",
    "TenantAuth",
    "TimeoutsConfig",
    "TopologyConfig",
    "TrustMode",
    "TrustPolicy",
    "ValidationMode",
    "config_json_schema",
    "format_path",
    "load_config",
    "parse_config",
    "render_schema",
    "schema_diff",
    "write_schema",
]
