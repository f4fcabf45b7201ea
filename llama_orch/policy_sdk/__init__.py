"""The policy SDK: what a plugin author needs to write, build and test a policy plugin.

- `abi/policy-abi-v1.schema.json`: the ABI as a versioned JSON Schema (call envelope,
  snapshots, decisions, plugin info, tool request and result);
- `zig/llorch.zig`: the SDK library plugins link (typed snapshots and decisions, the ABI
  exports, typed `fetch`/`search` wrappers, redaction with author hooks; no I/O of its own);
- `build`: compiles a plugin with the Zig toolchain from PyPI (`ziglang`), offline;
- `scaffold`: the files of a new plugin (`llorch policy new`).

Versions: `SDK_VERSION` (semver of the public SDK surface, CHANGELOG.md), `ABI_VERSION` (what
hosts check at load: a plugin of another MAJOR is refused), `TOOL_ABI_VERSION` (the mediated
tool request/result).
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

SDK_VERSION = "1.0.0"
ABI_VERSION = (1, 0)
TOOL_ABI_VERSION = (1, 0)
PACKAGE = Path(str(files("llama_orch.policy_sdk")))
SCHEMA_PATH = PACKAGE / "abi" / "policy-abi-v1.schema.json"
ZIG_SDK = PACKAGE / "zig" / "llorch.zig"


def version_text(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


@cache
def abi_schema() -> dict[str, Any]:
    """The ABI JSON Schema (2020-12); its `$defs` name every exchanged value."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


__all__ = [
    "ABI_VERSION",
    "SCHEMA_PATH",
    "SDK_VERSION",
    "TOOL_ABI_VERSION",
    "ZIG_SDK",
    "abi_schema",
    "version_text",
]
