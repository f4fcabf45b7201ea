"""Helpers for the policy-host tests: hand-written WebAssembly plugins, snapshots, hosts.

`wat_plugin` writes a minimal ABI-conforming module in WebAssembly text and compiles it with
wasmtime's own `wat2wasm`: each hook answers a fixed JSON decision, or runs a body of the
test's choosing (a loop, a memory bomb, a trap). That keeps hostile plugins tiny and exact,
while the example plugins (Zig, built by the SDK) cover the real authoring path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import wasmtime

from llama_orch.policy_sdk.scaffold import example_snapshot
from llama_orch.reference_impl.config.policy import PolicyConfig
from llama_orch.reference_impl.policy import PolicyHost, PolicyMetrics

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "policies"
BUDGET = EXAMPLES / "admission_budget" / "plugin.wasm"
PLACEMENT = EXAMPLES / "placement_label" / "plugin.wasm"
PROBE = EXAMPLES / "llorch_probe" / "plugin.wasm"

INFO = '{"id":"wat-test","version":"1.0.0"}'
ADMIT = '{"decision":"admit"}'
# Memory layout of the generated modules: strings from 0, input written at INPUT.
INPUT = 32768


def _data(strings: list[str]) -> tuple[str, list[tuple[int, int]]]:
    out, spans, offset = [], [], 0
    for text in strings:
        raw = text.encode()
        escaped = "".join(f"\\{b:02x}" for b in raw)
        out.append(f'(data (i32.const {offset}) "{escaped}")')
        spans.append((offset, len(raw)))
        offset += len(raw) + 8
    return "\n".join(out), spans


def _packed(span: tuple[int, int]) -> int:
    return (span[0] << 32) | span[1]


def wat_plugin(
    path: Path,
    *,
    hooks: dict[str, str] | None = None,
    bodies: dict[str, str] | None = None,
    abi: int = 0x10000,
    info: str = INFO,
    imports: str = "",
    memory_pages: int = 1,
    globals_: str = "",
) -> Path:
    """Write and compile a plugin; `hooks` maps hook -> fixed JSON answer, `bodies` maps hook
    -> WAT instructions leaving the packed i64 answer on the stack (params $ptr, $len);
    `$ANSWER` in a body stands for the hook's fixed answer."""
    hooks = hooks if hooks is not None else {"admission": ADMIT}
    bodies = bodies or {}
    names = sorted(set(hooks) | set(bodies))
    data, spans = _data([info, *(hooks.get(h, "{}") for h in names)])
    funcs = []
    for i, hook in enumerate(names):
        answer = f"(i64.const {_packed(spans[i + 1])})"
        body = bodies.get(hook, answer).replace("$ANSWER", answer)
        funcs.append(
            f'(func (export "llorch_{hook}") (param $ptr i32) (param $len i32) (result i64)\n'
            f"  {body})"
        )
    text = f"""(module
  {imports}
  (memory (export "memory") {memory_pages})
  {globals_}
  {data}
  (func (export "llorch_abi") (result i32) (i32.const {abi}))
  (func (export "llorch_alloc") (param i32) (result i32) (i32.const {INPUT}))
  (func (export "llorch_info") (result i64) (i64.const {_packed(spans[0])}))
  {chr(10).join(funcs)}
)"""
    path.write_bytes(wasmtime.wat2wasm(text))
    return path


LOOP = "(loop $l (br $l)) (i64.const 0)"
# Grow memory a page at a time until growing fails, then trap (a runaway allocation).
MEMORY_BOMB = (
    "(block $done (loop $l (br_if $done (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))"
    " (br $l))) unreachable"
)


def host(plugins: list[dict[str, Any]], **policy: Any) -> PolicyHost:
    """A host over plugin entries of the `policy.plugins` config shape."""
    from prometheus_client import CollectorRegistry

    config = PolicyConfig.model_validate({"plugins": plugins, **policy})
    return PolicyHost.from_config(config, metrics=PolicyMetrics(CollectorRegistry()))


def admission_snapshot(**task: Any) -> dict[str, Any]:
    snap = json.loads(json.dumps(example_snapshot("admission")))
    snap["task"].update(task)
    return snap
