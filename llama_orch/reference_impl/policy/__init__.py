"""The policy host of the reference orchestrator (specs/50, ORCH-3048).

WebAssembly plugins, run by wasmtime in a fresh bounded instance per call, answer the core's
hook points (`core.hooks.PolicyHooks`): admission, session limits, placement preference. The
core never imports this package; the service builds a `PolicyHost` from the config's `policy`
section and hands it to the scheduler. Modules: abi (versions, imports, decision validation),
sandbox (wasmtime: limits, per-call instances), host (the hook interface, logs, metrics),
metrics, tools (mediated fetch and search).
"""

from llama_orch.reference_impl.policy.abi import AbiError, Decision
from llama_orch.reference_impl.policy.host import (
    CallRecord,
    Plugin,
    PolicyHost,
    PolicyLoadError,
    host_for,
    load_plugin,
)
from llama_orch.reference_impl.policy.metrics import PolicyMetrics
from llama_orch.reference_impl.policy.sandbox import Limits, Outcome, SandboxedModule

__all__ = [
    "AbiError",
    "CallRecord",
    "Decision",
    "Limits",
    "Outcome",
    "Plugin",
    "PolicyHost",
    "PolicyLoadError",
    "PolicyMetrics",
    "SandboxedModule",
    "host_for",
    "load_plugin",
]
