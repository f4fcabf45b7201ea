"""`llorch policy test`: run a plugin over snapshot files under the host's own limits.

Each file holds one call, `{"hook": ..., "config": {...}, "snapshot": {...}}`, optionally
with `"expect": {"decision": "reject", "reason": "..."}`. Every call runs twice in fresh
instances, exactly as the reference host runs it: the two answers must be equal (purity,
OC-POLICY-4001) and a valid decision (OC-POLICY-4010/4011 bounds apply). A row fails when the
snapshot is not a valid snapshot of its hook, the call is aborted or invalid, the two runs
differ, or the expectation is not met.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from llama_orch.policy_sdk import abi_schema
from llama_orch.reference_impl.config.policy import CallLimits
from llama_orch.reference_impl.policy.abi import HOOK_EXPORT
from llama_orch.reference_impl.policy.host import CallRecord, Plugin, PolicyHost, limits_of
from llama_orch.reference_impl.policy.sandbox import EpochTicker, SandboxedModule, new_engine

SNAPSHOT_DEF = {"admission": "AdmissionSnapshot", "placement": "PlacementSnapshot"}
SNAPSHOT_DEF["session"] = "SessionSnapshot"


@dataclass(frozen=True)
class TrialRow:
    file: str
    hook: str
    outcome: str
    decision: str
    pure: bool | None
    fuel: int
    ms: float
    ok: bool
    note: str = ""


def load_module(path: Path, limits: CallLimits, grants: set[str]) -> SandboxedModule:
    engine = new_engine()
    return SandboxedModule(
        engine,
        EpochTicker(engine),
        path.read_bytes(),
        name=path.name,
        grants=grants,
        limits=limits_of(limits),
    )


def _snapshot_errors(hook: str, snapshot: Any) -> list[str]:
    schema = {"$defs": abi_schema()["$defs"], "$ref": f"#/$defs/{SNAPSHOT_DEF[hook]}"}
    errors = Draft202012Validator(schema).iter_errors(snapshot)
    return [f"{'/'.join(map(str, e.path)) or 'snapshot'}: {e.message}" for e in errors]


def _expected(expect: dict[str, Any] | None, record: CallRecord) -> str:
    if not expect:
        return ""
    d = record.decision
    got = {"decision": d.kind if d else None, "reason": d.reason if d else None}
    wrong = [f"{k}={got.get(k)!r} (expected {v!r})" for k, v in expect.items() if got.get(k) != v]
    return "; ".join(wrong)


def run_trial(module: SandboxedModule, snapshots: list[Path]) -> list[TrialRow]:
    """One row per snapshot file, in the order given."""
    info = module.info
    rows = []
    for path in snapshots:
        try:
            call = json.loads(path.read_text(encoding="utf-8"))
            hook = call["hook"]
            snapshot = call["snapshot"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            rows.append(
                TrialRow(path.name, "?", "-", "-", None, 0, 0.0, False, f"unreadable: {exc}")
            )
            continue
        if hook not in HOOK_EXPORT or not module.serves(hook):
            why = f"the plugin does not serve hook {hook!r}"
            rows.append(TrialRow(path.name, str(hook), "-", "-", None, 0, 0.0, False, why))
            continue
        errors = _snapshot_errors(hook, snapshot)
        if errors:
            why = f"not a valid {hook} snapshot: {errors[0]}"
            rows.append(TrialRow(path.name, hook, "-", "-", None, 0, 0.0, False, why))
            continue
        plugin = Plugin(
            id=info["id"],
            version=info["version"],
            hooks=(hook,),
            config=call.get("config") or {},
            grants=frozenset(),
            module=module,
        )
        host = PolicyHost([plugin])
        first = host.decide(plugin, hook, snapshot, "llorch-policy-test")
        second = host.decide(plugin, hook, snapshot, "llorch-policy-test")
        pure = (first.outcome, first.decision) == (second.outcome, second.decision)
        valid = first.decision is not None
        wrong = _expected(call.get("expect"), first)
        notes = [n for n in (first.reason, wrong, "" if pure else "answers differ") if n]
        rows.append(
            TrialRow(
                file=path.name,
                hook=hook,
                outcome=first.outcome.value,
                decision=first.decision.summary() if first.decision else "-",
                pure=pure,
                fuel=first.fuel,
                ms=round(max(first.duration_s, second.duration_s) * 1000, 3),
                ok=valid and pure and not wrong,
                note="; ".join(notes),
            )
        )
    return rows
