"""`PolicyHost`: the core's `PolicyHooks`, answered by WebAssembly plugins (specs/50).

Each call: the core's snapshot goes into a JSON envelope with the plugin's own config
(`policy-abi-v1.schema.json`, `Call`), the plugin runs in a fresh bounded instance
(sandbox.py), and its answer is validated (abi.py) before the core sees it. Anything else than
a valid decision is "no decision" and the core's built-in behaviour applies. Every call is
logged (plugin id and version, hook, decision or reason, duration, outcome, correlation id)
and counted in /metrics (OC-POLICY-4020).

Several plugins on one hook are asked in config order: for admission and session any refusal
wins (a plugin cannot admit what another refuses), for placement the first preference wins.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from llama_orch.policy_sdk import TOOL_ABI_VERSION, version_text
from llama_orch.reference_impl.config.policy import CallLimits, PluginConfig, PolicyConfig
from llama_orch.reference_impl.core.hooks import HookRefusal
from llama_orch.reference_impl.policy.abi import (
    ACCEPTED_MAJORS,
    HOOK_EXPORT,
    HOST_ABI,
    AbiError,
    Decision,
    InvalidDecision,
    PluginReportedError,
    validate_decision,
)
from llama_orch.reference_impl.policy.metrics import PolicyMetrics
from llama_orch.reference_impl.policy.sandbox import (
    EpochTicker,
    Limits,
    Outcome,
    SandboxedModule,
    near_bound,
    new_engine,
)
from llama_orch.reference_impl.policy.tools import MediatedTools
from llama_orch.reference_impl.policy.tools.mediated import denied

log = logging.getLogger("llama_orch.reference_impl.policy")
TOOL_GRANTS = frozenset({"fetch", "search"})


class PolicyLoadError(RuntimeError):
    """A plugin cannot be loaded; the message names the config entry and the cause."""


@dataclass(frozen=True)
class Plugin:
    """A loaded plugin as configured."""

    id: str
    version: str
    hooks: tuple[str, ...]
    config: Mapping[str, Any]
    grants: frozenset[str]
    module: SandboxedModule

    @property
    def label(self) -> str:
        return f"policy:{self.id}"


@dataclass(frozen=True)
class CallRecord:
    """One plugin call as logged."""

    plugin_id: str
    plugin_version: str
    hook: str
    outcome: Outcome
    decision: Decision | None
    reason: str
    duration_s: float
    fuel: int
    correlation_id: str | None

    def log_fields(self) -> dict[str, Any]:
        return {
            "plugin_id": self.plugin_id,
            "plugin_version": self.plugin_version,
            "hook": self.hook,
            "outcome": self.outcome.value,
            "decision": self.decision.summary() if self.decision is not None else None,
            "reason": self.reason or None,
            "duration_ms": round(self.duration_s * 1000, 3),
            "fuel": self.fuel,
            "correlation_id": self.correlation_id,
        }


def limits_of(limits: CallLimits) -> Limits:
    return Limits(limits.fuel, limits.memory_bytes, limits.wall_ms)


def resolve(path: str, base: Path | None) -> Path:
    """`~` and `$VARS` expanded; relative to the config file's folder."""
    p = Path(os.path.expandvars(os.path.expanduser(path)))
    return p if p.is_absolute() else (base or Path.cwd()) / p


def load_plugin(
    index: int, pc: PluginConfig, limits: CallLimits, base: Path | None, engine, ticker
) -> Plugin:
    where = f"policy.plugins[{index}] ({pc.path})"
    path = resolve(pc.path, base)
    try:
        wasm = path.read_bytes()
    except OSError as exc:
        raise PolicyLoadError(f"{where}: cannot read {path}: {exc.strerror}") from None
    fs_dir = resolve(pc.filesystem_dir, base) if pc.filesystem_dir else None
    try:
        module = SandboxedModule(
            engine,
            ticker,
            wasm,
            name=path.name,
            grants={g.value for g in pc.grants},
            limits=limits_of(limits),
            filesystem_dir=fs_dir,
        )
    except AbiError as exc:
        raise PolicyLoadError(f"{where}: refused: {exc}") from None
    for hook in pc.hooks:
        if not module.serves(hook.value):
            raise PolicyLoadError(
                f"{where}: hook {hook.value!r} is configured but the plugin does not export "
                f"{HOOK_EXPORT[hook.value]}"
            )
    return Plugin(
        id=module.info["id"],
        version=module.info["version"],
        hooks=tuple(h.value for h in pc.hooks),
        config=pc.config,
        grants=frozenset(g.value for g in pc.grants),
        module=module,
    )


def host_for(policy: PolicyConfig, source: Path | None, metrics: PolicyMetrics | None = None):
    """The host a config asks for (plugins or tools), else None; paths relative to `source`."""
    if not policy.plugins and not policy.tools.enabled:
        return None
    base = source.parent if source is not None else None
    return PolicyHost.from_config(policy, base=base, metrics=metrics)


class PolicyHost:
    """Loaded plugins behind the core's hook interface (`core.hooks.PolicyHooks`)."""

    def __init__(
        self,
        plugins: Sequence[Plugin],
        *,
        tools: MediatedTools | None = None,
        metrics: PolicyMetrics | None = None,
        on_call: Callable[[CallRecord], None] | None = None,
    ) -> None:
        ids = [p.id for p in plugins]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise PolicyLoadError(f"policy.plugins: plugin id {dup[0]!r} is loaded twice")
        self.plugins = tuple(plugins)
        self.tools = tools
        self._metrics = metrics
        self._on_call = on_call
        self._by_hook = {
            hook: tuple(p for p in self.plugins if hook in p.hooks) for hook in HOOK_EXPORT
        }

    @classmethod
    def from_config(
        cls,
        policy: PolicyConfig,
        *,
        base: Path | None = None,
        metrics: PolicyMetrics | None = None,
        transport: httpx.BaseTransport | None = None,
        on_call: Callable[[CallRecord], None] | None = None,
    ) -> PolicyHost:
        """Load every configured plugin (PolicyLoadError on the first that cannot be)."""
        engine = new_engine()
        ticker = EpochTicker(engine)
        plugins = [
            load_plugin(i, pc, policy.limits_for(pc), base, engine, ticker)
            for i, pc in enumerate(policy.plugins)
        ]
        count = metrics.count_tool if metrics is not None else None
        tools = (
            MediatedTools(policy.tools, transport=transport, count=count)
            if policy.tools.enabled
            else None
        )
        host = cls(plugins, tools=tools, metrics=metrics, on_call=on_call)
        for p in host.plugins:
            log.info(
                "policy plugin loaded",
                extra={
                    "plugin_id": p.id,
                    "plugin_version": p.version,
                    "abi": p.module.abi_version,
                    "hooks": list(p.hooks),
                    "grants": sorted(p.grants),
                },
            )
        return host

    def close(self) -> None:
        if self.tools is not None:
            self.tools.close()

    # -- PolicyHooks ---------------------------------------------------------------------------

    def wants(self, hook: str) -> bool:
        return bool(self._by_hook.get(hook))

    def admission(self, snapshot: dict[str, Any], correlation_id: str | None) -> HookRefusal | None:
        return self._refusal("admission", "reject", snapshot, correlation_id)

    def session(self, snapshot: dict[str, Any], correlation_id: str | None) -> HookRefusal | None:
        return self._refusal("session", "end", snapshot, correlation_id)

    def placement(
        self, snapshot: dict[str, Any], correlation_id: str | None
    ) -> tuple[str, ...] | None:
        for plugin in self._by_hook["placement"]:
            record = self.decide(plugin, "placement", snapshot, correlation_id)
            if record.decision is not None and record.decision.kind == "prefer":
                return record.decision.replicas
        return None

    def _refusal(
        self, hook: str, refuse: str, snapshot: dict[str, Any], correlation_id: str | None
    ) -> HookRefusal | None:
        for plugin in self._by_hook[hook]:
            record = self.decide(plugin, hook, snapshot, correlation_id)
            d = record.decision
            if d is not None and d.kind == refuse and d.reason is not None:
                return HookRefusal(
                    reason=d.reason,
                    message=d.message or "",
                    label=f"{plugin.label}:{d.reason}",
                    retry_after_ms=d.retry_after_ms,
                )
        return None

    # -- one call ------------------------------------------------------------------------------

    def envelope(
        self, plugin: Plugin, hook: str, snapshot: Mapping[str, Any], correlation_id: str | None
    ) -> bytes:
        """The `Call` value a hook export receives, as compact UTF-8 JSON."""
        call = {
            "abi": version_text(HOST_ABI),
            "hook": hook,
            "config": plugin.config,
            "correlation_id": correlation_id,
            "snapshot": snapshot,
        }
        return json.dumps(call, separators=(",", ":"), ensure_ascii=False).encode()

    def decide(
        self,
        plugin: Plugin,
        hook: str,
        snapshot: Mapping[str, Any],
        correlation_id: str | None = None,
    ) -> CallRecord:
        """Call one plugin on one hook; every way it can end becomes a logged CallRecord."""
        started = time.perf_counter()
        payload = self.envelope(plugin, hook, snapshot, correlation_id)
        raw = plugin.module.call(HOOK_EXPORT[hook], payload, self._tool_handler(plugin))
        outcome, decision, reason = raw.outcome, None, raw.reason
        if outcome is None:
            try:
                decision = validate_decision(hook, raw.value, snapshot)
                outcome = Outcome.ABSTAINED if decision.kind == "abstain" else Outcome.DECIDED
            except InvalidDecision as exc:
                outcome, reason = Outcome.INVALID, str(exc)
            except PluginReportedError as exc:
                at_bound = near_bound(raw.memory_bytes, plugin.module.limits.memory_bytes)
                outcome = Outcome.MEMORY_EXCEEDED if at_bound else Outcome.ERROR
                reason = f"plugin error: {exc}"
        record = CallRecord(
            plugin_id=plugin.id,
            plugin_version=plugin.version,
            hook=hook,
            outcome=outcome,
            decision=decision,
            reason=reason,
            duration_s=time.perf_counter() - started,
            fuel=raw.fuel_used,
            correlation_id=correlation_id,
        )
        self._observe(record)
        return record

    def _observe(self, record: CallRecord) -> None:
        level = (
            logging.INFO
            if record.outcome in (Outcome.DECIDED, Outcome.ABSTAINED)
            else logging.WARNING
        )
        log.log(level, "policy call", extra=record.log_fields())
        if self._metrics is not None:
            self._metrics.calls.labels(record.plugin_id, record.hook, record.outcome.value).inc()
            self._metrics.duration.labels(record.plugin_id, record.hook).observe(record.duration_s)
        if self._on_call is not None:
            self._on_call(record)

    def _tool_handler(self, plugin: Plugin) -> Callable[[bytes], bytes] | None:
        granted = plugin.grants & TOOL_GRANTS
        if not granted:
            return None
        tools = self.tools

        def handle(request: bytes) -> bytes:
            try:
                value = json.loads(request)
            except (UnicodeDecodeError, json.JSONDecodeError):
                value = {}
            if tools is None:
                result = denied(str(value.get("tool", "fetch")), "tools_disabled")
            else:
                result = tools.invoke(value, caller=plugin.id, granted=granted)
            return json.dumps(result, separators=(",", ":")).encode()

        return handle

    # -- what the host declares ----------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """The `policy_host` entry of GET /v1/capabilities."""
        return {
            "abi_version": version_text(HOST_ABI),
            "accepted_abi_majors": list(ACCEPTED_MAJORS),
            "hooks": [h for h in HOOK_EXPORT if self.wants(h)],
            "plugins": [
                {
                    "id": p.id,
                    "version": p.version,
                    "hooks": list(p.hooks),
                    "abi": p.module.abi_version,
                }
                for p in self.plugins
            ],
            "tools": {
                "enabled": self.tools is not None,
                "tool_abi_version": version_text(TOOL_ABI_VERSION),
                "tools": ["fetch", "search"] if self.tools is not None else [],
            },
        }
