"""The `policy` section: WebAssembly policy plugins, their grants and limits, mediated tools.

specs/50-plugins-policy-host.md is the contract; `reference_impl.policy` reads this section.
Plugins get nothing by default: no clock, randomness, filesystem or network. Each grant is
named here, per plugin, by the operator.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import BaseModel, Field, Strict, model_validator

from llama_orch.reference_impl.config._types import (
    FORBID,
    URL_PATTERN,
    PositiveU32,
    PositiveU64,
    StrictBool,
    StrictStr,
    rule_error,
)

LabelMap = dict[Annotated[str, Strict(), Field(pattern=r"^[a-z][a-z0-9._-]{0,63}$")], StrictStr]


class Hook(StrEnum):
    """A point where the core asks plugins for a decision."""

    ADMISSION = "admission"
    PLACEMENT = "placement"
    SESSION = "session"


class Grant(StrEnum):
    """A capability a plugin may be given; without it, importing the capability fails load."""

    CLOCK = "clock"
    RANDOM = "random"
    FILESYSTEM = "filesystem"
    FETCH = "fetch"
    SEARCH = "search"


class CallLimits(BaseModel):
    """Bounds of one plugin call; a call over any of them is aborted and yields no decision."""

    model_config = FORBID

    fuel: PositiveU64 = Field(
        default=20_000_000,
        description="WebAssembly fuel (about one unit per instruction) one call may burn.",
    )
    memory_bytes: PositiveU64 = Field(
        default=16 << 20, description="Largest linear memory a plugin instance may grow to."
    )
    wall_ms: PositiveU32 = Field(
        default=100,
        description="Wall-clock bound of one call in ms, host tool calls included (epoch ticks).",
    )


class PluginConfig(BaseModel):
    """One plugin: its module, the hooks it serves, its config and what it is granted."""

    model_config = FORBID

    path: StrictStr = Field(
        min_length=1,
        description="The .wasm module; `~`/`$VARS` expanded, relative to the config file.",
        examples=["policies/admission_budget.wasm"],
    )
    hooks: list[Hook] = Field(
        min_length=1, description="Hooks this plugin serves; each needs its export."
    )
    config: dict[str, Any] = Field(
        default={}, description="Passed to every call unchanged (part of the explicit input)."
    )
    grants: list[Grant] = Field(
        default=[],
        description=(
            "Capabilities granted (clock, random, filesystem, fetch, search); none by default."
        ),
    )
    filesystem_dir: StrictStr | None = Field(
        default=None,
        description="With the filesystem grant: the folder the plugin sees, read-only, at /data.",
    )
    limits: CallLimits | None = Field(
        default=None, description="This plugin's call bounds; null uses policy.limits."
    )

    @model_validator(mode="after")
    def _grants(self) -> Self:
        issues: list[tuple[tuple[str | int, ...], str, object]] = []
        if len(set(self.hooks)) != len(self.hooks):
            issues.append(
                (("hooks",), "each hook may be listed once", [h.value for h in self.hooks])
            )
        if (Grant.FILESYSTEM in self.grants) != (self.filesystem_dir is not None):
            msg = "the filesystem grant and filesystem_dir go together"
            issues.append((("filesystem_dir",), msg, self.filesystem_dir))
        if issues:
            raise rule_error("PluginConfig", issues)
        return self


class AllowDeny(BaseModel):
    """Allow and deny lists; deny wins, and a value matching neither is denied."""

    model_config = FORBID

    allow: list[StrictStr] = Field(default=[], description="Patterns allowed.")
    deny: list[StrictStr] = Field(default=[], description="Patterns denied (wins over allow).")


class RateCap(BaseModel):
    """Token-bucket cap on tool invocations (all callers together)."""

    model_config = FORBID

    per_second: Annotated[float, Strict(), Field(gt=0)] = Field(
        default=5.0, description="Sustained invocations per second."
    )
    burst: PositiveU32 = Field(default=10, description="Invocations allowed at once.")


class RedactionConfig(BaseModel):
    """What the host removes from tool results and audit records."""

    model_config = FORBID

    query_params: list[StrictStr] = Field(
        default=[], description="Extra URL query parameters whose values are redacted."
    )
    patterns: list[StrictStr] = Field(
        default=[], description="Extra regular expressions whose matches are redacted."
    )
    emails: StrictBool = Field(default=True, description="Redact e-mail addresses.")
    phone_numbers: StrictBool = Field(default=True, description="Redact phone numbers.")


class ToolsConfig(BaseModel):
    """Mediated fetch and search (OC-POLICY-4030..4033); off unless `enabled`."""

    model_config = FORBID

    enabled: StrictBool = Field(default=False, description="Offer the mediated tools.")
    domains: AllowDeny = Field(
        default=AllowDeny(),
        description="Host patterns: `example.com` (exact) or `*.example.com` (subdomains).",
    )
    mime: AllowDeny = Field(
        default=AllowDeny(allow=["text/*", "application/json"]),
        description="Media types: `text/html`, or `text/*` for a whole top-level type.",
    )
    max_response_bytes: PositiveU64 = Field(
        default=1 << 20, description="Most response bytes read; the rest is cut (truncated)."
    )
    rate: RateCap = Field(default=RateCap(), description="Invocation rate cap.")
    timeout_ms: PositiveU32 = Field(default=5_000, description="Upstream timeout per request.")
    search_endpoint: StrictStr | None = Field(
        default=None,
        pattern=URL_PATTERN,
        description="JSON search backend (`GET ?q=...&n=...` -> {results: [{title,url,snippet}]}).",
    )
    cache_ttl_ms: PositiveU32 = Field(
        default=60_000,
        description="Same request under the same policy within this window: the same result.",
    )
    redaction: RedactionConfig = Field(default=RedactionConfig(), description="Host redaction.")


class PolicyConfig(BaseModel):
    """Policy host: plugins called at the core's hook points, and the mediated tools."""

    model_config = FORBID

    plugins: list[PluginConfig] = Field(default=[], description="Plugins, called in this order.")
    limits: CallLimits = Field(default=CallLimits(), description="Default call bounds.")
    replica_labels: dict[StrictStr, LabelMap] = Field(
        default={},
        description="Labels placement plugins see per replica id (`<pool id>-r<n>`).",
        examples=[{"pool-a-r0": {"tier": "fast"}}],
    )
    tools: ToolsConfig = Field(default=ToolsConfig(), description="Mediated fetch and search.")

    def limits_for(self, plugin: PluginConfig) -> CallLimits:
        return plugin.limits if plugin.limits is not None else self.limits


def replica_label_issues(policy: PolicyConfig, replica_ids: set[str]) -> list:
    """Labels for replicas no pool has (a typo would silently never match)."""
    return [
        (("policy", "replica_labels", rid), "names no replica (ids are <pool id>-r<n>)", rid)
        for rid in policy.replica_labels
        if rid not in replica_ids
    ]
