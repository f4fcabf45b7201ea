"""Which part of llama-orch may import which: the layer table, enforced for both products.

Every module under `llama_orch/` is parsed and each import of another part (function-level
imports count: a lazy import is still a dependency) must be an arrow of `ARROWS`, or of
`MODULE_ARROWS` for the one module with a documented exception of its own. A module outside
every part fails too, so a new package must be placed in the table before it can be used.

Read as a picture (`->` means "may import"):

    llama_orch.__main__ -> cli -> anything
    harness -> spec_extract, resources, engine_sim.directive    (never reference_impl)
    determinism_suite -> harness (client, registry and results hooks), spec_extract, resources
      (determinism_suite/direct.py also -> reference_impl.adapters, pool.determinism)
    engine_sim -> resources
    reference_impl: api -> service -> core, pool, config, policy
                    pool -> adapters, config;   adapters -> engine_sim
                    config -> core.types, resources;   policy -> core, config
                    constants (stdlib values) <- every reference layer but core
                    core -> nothing (stdlib only)

The harness learns about targets over HTTP only (OC-HARNESS-8004); the embedded target is
started as a separate process, never imported.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP = "llama_orch"
R = f"{TOP}.reference_impl"
RESOURCES = f"{TOP}.resources"
CONSTANTS = f"{R}.constants"

# A module belongs to the longest part that is it or a package above it. The two package
# modules themselves (`llama_orch`, `llama_orch.reference_impl`) are parts of their own, so a
# new subpackage never falls into one of them unnoticed.
PACKAGE_PARTS = (TOP, f"{TOP}.__main__", R)
PARTS = (
    f"{TOP}.cli",
    f"{TOP}.harness",
    f"{TOP}.engine_sim",
    f"{TOP}.determinism_suite",
    f"{TOP}.spec_extract",
    f"{TOP}.policy_sdk",
    RESOURCES,
    f"{R}.api",
    f"{R}.service",
    f"{R}.core",
    f"{R}.pool",
    f"{R}.adapters",
    f"{R}.policy",
    f"{R}.config",
    CONSTANTS,
)
ANYTHING = "*"

# part -> {what it may import besides itself: a part, or one module of a part -> why}
ARROWS: dict[str, dict[str, str]] = {
    TOP: {},
    f"{TOP}.__main__": {f"{TOP}.cli": "`python -m llama_orch` runs the CLI"},
    R: {},
    f"{TOP}.cli": {ANYTHING: "the command line wires both products together"},
    f"{TOP}.harness": {
        f"{TOP}.spec_extract": "the requirement model the verdicts and reports use",
        RESOURCES: "data files (features, contracts, examples)",
        f"{TOP}.engine_sim.directive": "the [[sim ...]] prompt grammar (specs/80 section 6)",
    },
    f"{TOP}.determinism_suite": {
        f"{TOP}.harness": "pinned mode is an OrchQueue v1 client (specs/70 section 3a); the "
        "suite plugs its checks into the harness's registry and results hooks",
        f"{TOP}.spec_extract": "the requirement model",
        RESOURCES: "data files",
    },
    f"{TOP}.engine_sim": {RESOURCES: "data files; nothing of either product"},
    f"{TOP}.spec_extract": {RESOURCES: "data files"},
    f"{TOP}.policy_sdk": {},  # what plugin authors build with: the ABI schema, no I/O
    RESOURCES: {},
    f"{R}.api": {
        f"{R}.service": "HTTP maps onto the service and its read models, nothing below it",
        CONSTANTS: "shared reference constants",
    },
    f"{R}.service": {
        f"{R}.core": "scheduling decisions",
        f"{R}.pool": "pools, replicas and (through pool.requests) the adapter contract",
        f"{R}.config": "the typed config it builds the core's specs from",
        f"{R}.policy": "policy plugins it wires into the core's hooks",
        CONSTANTS: "shared reference constants",
    },
    f"{R}.pool": {
        f"{R}.adapters": "each replica's adapter",
        f"{R}.config": "pool configs",
        CONSTANTS: "shared reference constants",
    },
    f"{R}.adapters": {
        f"{TOP}.engine_sim": "the mock adapter runs the simulator's engine model",
        CONSTANTS: "shared reference constants",
    },
    f"{R}.config": {
        f"{R}.core.types": "one Priority, FullPolicy, PreemptionMode: the core's",
        RESOURCES: "where the generated JSON schema lives",
        CONSTANTS: "shared reference constants",
    },
    f"{R}.policy": {
        f"{R}.core": "the hook interface and plain data the core calls plugins with",
        f"{R}.config": "plugin configs",
        f"{TOP}.policy_sdk": "the versioned ABI schema the host applies",
        CONSTANTS: "shared reference constants",
    },
    f"{R}.core": {},  # pure: stdlib only, see test_the_core_imports_only_the_standard_library
    CONSTANTS: {},
}

# One module's own documented exception, beyond its part's arrows.
MODULE_ARROWS: dict[str, dict[str, str]] = {
    f"{TOP}.determinism_suite.direct": {
        f"{R}.adapters": "direct mode calls engines through the reference adapters "
        "(specs/70 section 3a)",
        f"{R}.pool.determinism": "with the per-engine determinism settings the pools use",
    },
}

# Wrong-way imports that exist today and are being removed: (module, target) -> by what.
# Nothing else may be added here; fix the import instead.
KNOWN: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the imported module (or the package, for a name that is not a module)
    path: str
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    if node.level:  # relative: resolve against the importing module's package
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    for alias in node.names:  # `from pkg import mod` imports the module pkg.mod
        sub = f"{base}.{alias.name}"
        yield sub if _is_module(sub) else base


@cache
def all_imports() -> tuple[Import, ...]:
    found: list[Import] = []
    for path in sorted((ROOT / TOP).rglob("*.py")):
        module = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                rel = str(path.relative_to(ROOT))
                targets = set(_targets(node, module, path.name == "__init__.py"))
                found += (Import(module, t, rel, node.lineno) for t in sorted(targets))
    return tuple(found)


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def part_of(module: str) -> str | None:
    if module in PACKAGE_PARTS:
        return module
    matches = [p for p in PARTS if _within(module, p)]
    return max(matches, key=len) if matches else None


def _allowed(imp: Import) -> bool:
    source = part_of(imp.module)
    if source is None or _within(imp.target, source):
        return True  # unplaced modules fail their own test; a part imports itself freely
    arrows = {**ARROWS[source], **MODULE_ARROWS.get(imp.module, {})}
    return ANYTHING in arrows or any(_within(imp.target, t) for t in arrows)


def _known(imp: Import) -> bool:
    return any(imp.module == m and _within(imp.target, t) for m, t in KNOWN)


def violations() -> list[Import]:
    return [
        imp
        for imp in all_imports()
        if _within(imp.target, TOP) and not _allowed(imp) and not _known(imp)
    ]


def _explain(imp: Import) -> str:
    source = part_of(imp.module)
    assert source is not None
    arrows = {**ARROWS[source], **MODULE_ARROWS.get(imp.module, {})}
    rule = ", ".join(sorted(arrows)) or "nothing outside itself"
    return (
        f"{imp.path}:{imp.line}: {imp.module} imports {imp.target}, but the rule for "
        f"{source} allows only {rule} (ARROWS in tests/test_import_rules.py)"
    )


def test_every_module_belongs_to_a_part_of_the_table() -> None:
    modules = sorted({imp.module for imp in all_imports()} | set(_all_modules()))
    unplaced = [m for m in modules if part_of(m) is None]
    assert not unplaced, "modules in no part of the import table (add the package to PARTS):\n" + (
        "\n".join(unplaced)
    )
    assert set(ARROWS) == set(PARTS) | set(PACKAGE_PARTS), "every part needs its arrows"


def _all_modules() -> list[str]:
    return [_module_name(p) for p in sorted((ROOT / TOP).rglob("*.py"))]


def test_every_import_between_parts_follows_an_arrow_of_the_table() -> None:
    bad = violations()
    assert not bad, "imports against the layer table:\n" + "\n".join(map(_explain, bad))


@pytest.mark.req("OC-HARNESS-8004")
def test_no_harness_module_imports_the_reference_implementation() -> None:
    """The harness side (harness, determinism suite) never imports reference_impl, but for the
    determinism suite's direct mode, which drives engines through the reference adapters by
    design (specs/70 section 3a)."""
    harness_side = (f"{TOP}.harness", f"{TOP}.determinism_suite")
    offenders = [
        imp
        for imp in all_imports()
        if any(_within(imp.module, side) for side in harness_side)
        and _within(imp.target, R)
        and not _allowed(imp)
    ]
    assert not offenders, "harness code imports the reference:\n" + "\n".join(
        map(_explain, offenders)
    )


def test_every_exception_is_still_needed() -> None:
    """An exception whose import is gone must leave the table, so the exceptions only shrink."""
    pairs = list(KNOWN) + [(m, t) for m, targets in MODULE_ARROWS.items() for t in targets]
    stale = [
        f"{module} -> {target}"
        for module, target in pairs
        if not any(imp.module == module and _within(imp.target, target) for imp in all_imports())
    ]
    assert not stale, "remove from KNOWN / MODULE_ARROWS, the imports are gone: " + ", ".join(stale)


def _part_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for imp in all_imports():
        source, target = part_of(imp.module), part_of(imp.target)
        if source and target and source != target and not _known(imp):
            graph.setdefault(source, set()).add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one part (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_cycle_between_parts() -> None:
    cycles = _cycles(_part_graph())
    assert not cycles, "parts importing each other in a cycle: " + "; ".join(
        " <-> ".join(c) for c in cycles
    )


def test_the_cycle_check_finds_a_cycle() -> None:
    """The check above could not pass by accident: a two-part loop is reported."""
    assert _cycles({"a": {"b"}, "b": {"a", "c"}, "c": set()}) == [["a", "b"]]
    assert _cycles({"a": {"b"}, "b": {"c"}}) == []


def test_the_table_rejects_a_wrong_way_import() -> None:
    """The rules are not vacuous: imports the table forbids are reported with their rule."""
    wrong = [
        Import(f"{R}.api.control", f"{R}.pool.state", "api/control.py", 1),
        Import(f"{R}.core.scheduler", f"{R}.config", "core/scheduler.py", 1),
        Import(f"{TOP}.harness.steps.world", f"{R}.api.app", "harness/steps/world.py", 1),
        Import(f"{TOP}.engine_sim.engine", f"{TOP}.harness.client", "engine_sim/engine.py", 1),
        Import(f"{R}.adapters.mock", f"{R}.pool.state", "adapters/mock.py", 1),
        Import(f"{TOP}.determinism_suite.pinned", f"{R}.adapters", "pinned.py", 1),
    ]
    assert [_allowed(imp) for imp in wrong] == [False] * len(wrong)
    assert "allows only" in _explain(wrong[0]) and f"{R}.service" in _explain(wrong[0])
    right = [
        Import(f"{R}.api.tasks", f"{R}.service.views", "api/tasks.py", 1),
        Import(f"{TOP}.determinism_suite.direct", f"{R}.adapters.base", "direct.py", 1),
        Import(f"{TOP}.cli.commands.serve", f"{R}.api.bootstrap", "serve.py", 1),
    ]
    assert all(_allowed(imp) for imp in right)


def test_the_core_imports_only_the_standard_library() -> None:
    """core/ stays pure: plain data in, decisions out; no framework, no I/O library."""
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    offenders = [
        f"{imp.path}:{imp.line}: {imp.target}"
        for imp in all_imports()
        if _within(imp.module, f"{R}.core")
        and not _within(imp.target, f"{R}.core")
        and imp.target.split(".")[0] not in stdlib
    ]
    assert not offenders, "core imports outside the stdlib:\n" + "\n".join(offenders)


@pytest.mark.req("OC-HARNESS-8004")
def test_a_check_run_and_a_pinned_determinism_run_load_no_reference_module() -> None:
    """Transitively too: importing what `llorch check` and pinned mode run loads nothing of
    reference_impl into the harness process."""
    modules = [
        "llama_orch.harness.runner",
        "llama_orch.harness.plugin",
        "llama_orch.harness.target",
        "llama_orch.harness.client",
        "llama_orch.harness.collectors",
        "llama_orch.harness.steps",
        "llama_orch.harness.checks.conftest",
        "llama_orch.harness.checks.test_contracts",
        "llama_orch.harness.checks.test_schema",
        "llama_orch.harness.checks.test_logs",
        "llama_orch.determinism_suite.plugin",
        "llama_orch.determinism_suite.evidence",
        "llama_orch.determinism_suite.pinned",
        "llama_orch.determinism_suite.report",
        "llama_orch.determinism_suite.expected",
    ]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        f"loaded = sorted(m for m in sys.modules if m.startswith({R!r}))\n"
        "print(','.join(loaded))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "", f"reference modules loaded: {out.stdout.strip()}"
