"""The host's side of the plugin ABI: versions accepted, imports allowed, decisions validated.

The ABI itself is the SDK's JSON Schema (`llama_orch.policy_sdk`); this module applies it.
A plugin exports `memory`, `llorch_abi() -> i32` ((MAJOR << 16) | MINOR), `llorch_alloc(len)`,
`llorch_info()` and one `llorch_<hook>(ptr, len) -> i64` per hook; results are packed
`(ptr << 32) | len` of UTF-8 JSON in the plugin's memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator

from llama_orch.policy_sdk import ABI_VERSION, abi_schema, version_text

HOST_ABI = ABI_VERSION
ACCEPTED_MAJORS = (HOST_ABI[0],)
REQUIRED_EXPORTS = ("memory", "llorch_abi", "llorch_alloc", "llorch_info")
HOOK_EXPORT = {
    "admission": "llorch_admission",
    "placement": "llorch_placement",
    "session": "llorch_session",
}

WASI = "wasi_snapshot_preview1"
HOST_MODULE = "llorch"
# WASI functions that reveal nothing and change nothing outside the call: the host gives an
# empty environment and arguments, no stdin, and discards stdout/stderr.
WASI_INERT = frozenset(
    {
        "args_get",
        "args_sizes_get",
        "environ_get",
        "environ_sizes_get",
        "fd_close",
        "fd_fdstat_get",
        "fd_prestat_get",
        "fd_prestat_dir_name",
        "fd_read",
        "fd_seek",
        "fd_write",
        "proc_exit",
        "sched_yield",
    }
)
WASI_GRANTS = {
    "clock_time_get": "clock",
    "clock_res_get": "clock",
    "poll_oneoff": "clock",  # sleeping is waiting on a clock
    "random_get": "random",
}
WASI_SOCKETS = frozenset({"sock_accept", "sock_recv", "sock_send", "sock_shutdown"})
TOOL_IMPORTS = frozenset({"tool_call", "tool_read"})


class AbiError(ValueError):
    """A module that does not follow the ABI, or asks for what it was not granted."""


def abi_text(value: int) -> str:
    return f"{value >> 16}.{value & 0xFFFF}"


def check_abi(value: int) -> tuple[int, int]:
    """The plugin's (MAJOR, MINOR); AbiError naming the accepted versions for another MAJOR."""
    major, minor = value >> 16, value & 0xFFFF
    if major not in ACCEPTED_MAJORS:
        accepted = ", ".join(f"{m}.x" for m in ACCEPTED_MAJORS)
        raise AbiError(
            f"plugin ABI {major}.{minor} is not supported; this host accepts ABI {accepted} "
            f"(host ABI {version_text(HOST_ABI)})"
        )
    return major, minor


def grant_needed(module: str, name: str) -> str | None:
    """The grant an import needs; None for inert ones; AbiError for what is never offered."""
    if module == WASI:
        if name in WASI_INERT:
            return None
        if name in WASI_GRANTS:
            return WASI_GRANTS[name]
        if name in WASI_SOCKETS:
            raise AbiError(
                f"import {module}::{name}: raw sockets are never offered; network access is "
                "the mediated fetch/search tools (grants fetch, search)"
            )
        return "filesystem"
    if module == HOST_MODULE and name in TOOL_IMPORTS:
        return "tools"
    raise AbiError(f"import {module}::{name} is not part of the policy ABI")


def check_imports(imports: Iterable[tuple[str, str]], grants: set[str]) -> None:
    """Refuse a module importing a capability it was not granted (named in the message)."""
    for module, name in imports:
        need = grant_needed(module, name)
        if need is None:
            continue
        if need == "tools":
            if not grants & {"fetch", "search"}:
                raise AbiError(
                    f"import {module}::{name} needs a tool grant (fetch or search) in config"
                )
        elif need not in grants:
            raise AbiError(f"import {module}::{name} needs the {need!r} grant in config")


# -- decisions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """A validated answer: `kind` is abstain, admit, reject, continue, end or prefer."""

    kind: str
    reason: str | None = None
    message: str | None = None
    retry_after_ms: int | None = None
    replicas: tuple[str, ...] = ()

    def summary(self) -> str:
        if self.kind in ("reject", "end"):
            return f"{self.kind}:{self.reason}"
        if self.kind == "prefer":
            return "prefer:" + ",".join(self.replicas)
        return self.kind


class InvalidDecision(ValueError):
    """The plugin's answer is not a valid decision for the hook (the reason is logged)."""


class PluginReportedError(ValueError):
    """The plugin answered `{"error": ...}`: it declined to decide, and said why."""


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator({"$defs": abi_schema()["$defs"], **schema})


def _branches(name: str) -> dict[str, Draft202012Validator]:
    """One validator per decision kind of a `oneOf` decision type (kind -> its sub-schema)."""
    out = {}
    for branch in abi_schema()["$defs"][name]["oneOf"]:
        sub = (
            abi_schema()["$defs"][branch["$ref"].rsplit("/", 1)[1]] if "$ref" in branch else branch
        )
        out[sub["properties"]["decision"]["const"]] = _validator(sub)
    return out


# Validating against the one branch the `decision` field names is what `oneOf` would do, at a
# third of the cost, with an error message about that branch.
_DECISIONS = {
    "admission": _branches("AdmissionDecision"),
    "placement": _branches("PlacementDecision"),
    "session": _branches("SessionDecision"),
}
_PLUGIN_ERROR = _validator({"$ref": "#/$defs/PluginError"})
_INFO = _validator({"$ref": "#/$defs/PluginInfo"})


def validate_info(value: Any) -> Mapping[str, Any]:
    errors = sorted(_INFO.iter_errors(value), key=lambda e: list(e.path))
    if errors:
        raise AbiError(f"llorch_info answered an invalid PluginInfo: {errors[0].message}")
    return value


def validate_decision(hook: str, value: Any, snapshot: Mapping[str, Any]) -> Decision:
    """Schema first, then meaning: a placement may only name replicas offered as candidates."""
    if isinstance(value, dict) and "error" in value and _PLUGIN_ERROR.is_valid(value):
        raise PluginReportedError(value["error"])
    kinds = _DECISIONS[hook]
    kind = value.get("decision") if isinstance(value, dict) else None
    if kind not in kinds:
        raise InvalidDecision(f"not a {hook} decision: decision must be one of {sorted(kinds)}")
    errors = sorted(kinds[kind].iter_errors(value), key=lambda e: list(e.path))
    if errors:
        raise InvalidDecision(f"not a valid {kind!r} decision: {_first(errors)}")
    decision = Decision(
        kind=value["decision"],
        reason=value.get("reason"),
        message=value.get("message"),
        retry_after_ms=value.get("retry_after_ms"),
        replicas=tuple(value.get("replicas", ())),
    )
    if decision.kind == "prefer":
        offered = {c["replica_id"] for c in snapshot.get("candidates", ())}
        unknown = [r for r in decision.replicas if r not in offered]
        if unknown:
            raise InvalidDecision(f"prefers replicas that were not offered: {unknown}")
    return decision


def _first(errors: list) -> str:
    err = errors[0]
    where = "/".join(str(p) for p in err.path) or "decision"
    return f"{where}: {err.message}"
