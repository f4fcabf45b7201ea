"""`llorch policy new`: the files of a new plugin, ready to build and test.

NAME/plugin.zig                 the plugin, one function per chosen hook
NAME/snapshots/<hook>.json      one example call per hook, for `llorch policy test`
NAME/policy.yaml                the config section that loads the built plugin
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

HOOKS = ("admission", "placement", "session")
NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")

_TASK = {
    "tenant": "tenant-a",
    "pool_id": "pool-a",
    "engine": "llamacpp",
    "priority": "interactive",
    "ctx": 4096,
    "prompt_tokens": 120,
    "max_tokens": 512,
    "deadline_ms": None,
    "pinned": False,
}
_POOL = {
    "pool_id": "pool-a",
    "engine": "llamacpp",
    "queued": 3,
    "capacity": 64,
    "running": 2,
    "slots_free": 2,
    "slots_total": 4,
    "draining": False,
}
_SESSION = {
    "turns": 3,
    "inflight": 0,
    "age_ms": 95_000,
    "idle_ms": 4_000,
    "tokens_used": 2_400,
    "tokens_reserved": 0,
    "time_used_ms": 8_200,
}


def example_snapshot(hook: str) -> dict[str, Any]:
    """A realistic snapshot for `hook`, valid against the ABI schema."""
    if hook == "admission":
        tenant = {"tenant": "tenant-a", "queued": 1, "running": 1, "tokens_in_flight": 1_264}
        return {"task": _TASK, "pool": _POOL, "tenant": tenant, "session": _SESSION}
    if hook == "placement":
        candidates = [
            {
                "replica_id": f"pool-a-r{i}",
                "load": load,
                "slots_free": free,
                "slots_total": 2,
                "labels": labels,
            }
            for i, (load, free, labels) in enumerate(
                [(0.0, 2, {"tier": "standard"}), (0.5, 1, {"tier": "fast"})]
            )
        ]
        return {"task": _TASK, "pool": _POOL, "candidates": candidates, "affinity": None}
    if hook == "session":
        limits = {"ttl_ms": 600_000, "max_turns": 8, "token_budget": None, "time_budget_ms": None}
        return {"task": _TASK, "session": _SESSION, "limits": limits}
    raise ValueError(f"unknown hook {hook!r}; one of {', '.join(HOOKS)}")


_BODIES = {
    "admission": """pub fn admission(
    ctx: *llorch.Ctx(Config),
    s: llorch.AdmissionSnapshot,
) !llorch.AdmissionDecision {
    _ = ctx;
    if (s.task.tokens() > 100_000) {
        return .{ .reject = .{ .reason = "task_too_large", .message = "over 100k tokens" } };
    }
    return .abstain;
}
""",
    "placement": """pub fn placement(
    ctx: *llorch.Ctx(Config),
    s: llorch.PlacementSnapshot,
) !llorch.PlacementDecision {
    _ = ctx;
    _ = s;
    return .abstain; // rank s.candidates and return .{ .prefer = ids } to choose
}
""",
    "session": """pub fn session(
    ctx: *llorch.Ctx(Config),
    s: llorch.SessionSnapshot,
) !llorch.SessionDecision {
    _ = ctx;
    if (s.session.age_ms > 3_600_000) {
        return .{ .end = .{ .reason = "session_too_old", .message = "older than one hour" } };
    }
    return .@"continue";
}
""",
}


def plugin_source(name: str, hooks: tuple[str, ...]) -> str:
    bodies = "\n".join(_BODIES[h] for h in hooks)
    return f"""//! Policy plugin `{name}` (llama-orch policy SDK 1.x).
//! Build: llorch policy build plugin.zig
//! Test:  llorch policy test plugin.wasm --snapshots snapshots

const std = @import("std");
const llorch = @import("llorch");

pub const plugin = llorch.Plugin{{ .id = "{name}", .version = "0.1.0" }};

/// Parsed from the operator's `config`; every field needs a default.
pub const Config = struct {{}};

{bodies}
comptime {{
    llorch.exportPlugin(@This());
}}
"""


def new_plugin(dest: Path, name: str, hooks: tuple[str, ...]) -> list[Path]:
    """Write the files of a new plugin into `dest` (which must not exist yet)."""
    if not NAME_RE.match(name):
        raise ValueError(f"plugin name {name!r}: lower-case letters, digits, '-' or '_'")
    bad = [h for h in hooks if h not in HOOKS]
    if bad or not hooks:
        raise ValueError(f"hooks must be some of {', '.join(HOOKS)}; got {list(hooks)}")
    if dest.exists():
        raise FileExistsError(f"{dest} already exists")
    (dest / "snapshots").mkdir(parents=True)
    written = [dest / "plugin.zig", dest / "policy.yaml"]
    written[0].write_text(plugin_source(name, hooks), encoding="utf-8")
    hook_list = ", ".join(hooks)
    written[1].write_text(
        f"# Add to the orchestrator config (llorch serve --config ...).\n"
        f"policy:\n  plugins:\n    - path: {dest.name}/plugin.wasm\n"
        f"      hooks: [{hook_list}]\n      config: {{}}\n",
        encoding="utf-8",
    )
    for hook in hooks:
        path = dest / "snapshots" / f"{hook}.json"
        call = {"hook": hook, "config": {}, "snapshot": example_snapshot(hook)}
        path.write_text(json.dumps(call, indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written
