"""The harness learns about targets over HTTP only (OC-HARNESS-8004): nothing on the harness
side imports the reference implementation. The one exception is the determinism suite's
direct mode, which drives engines through the reference adapters by design (specs/70 §3a);
the embedded target is started as a separate process, never imported."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HARNESS_SIDE = ("llama_orch/harness", "llama_orch/determinism_suite")
ALLOWED = {Path("llama_orch/determinism_suite/direct.py")}
REFERENCE = "llama_orch.reference_impl"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):  # function-level (lazy) imports count too
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.req("OC-HARNESS-8004")
def test_no_harness_module_imports_the_reference_implementation() -> None:
    offenders = []
    for top in HARNESS_SIDE:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if rel in ALLOWED:
                continue
            bad = sorted(n for n in _imports(path) if n.startswith(REFERENCE))
            if bad:
                offenders.append(f"{rel}: {', '.join(bad)}")
    assert not offenders, "harness code imports the reference:\n" + "\n".join(offenders)


@pytest.mark.req("OC-HARNESS-8004")
def test_a_check_run_and_a_pinned_determinism_run_load_no_reference_module() -> None:
    """Transitively too: importing what `llorch check` and pinned mode run loads nothing of
    reference_impl into the harness process."""
    modules = [
        "llama_orch.harness.runner",
        "llama_orch.harness.plugin",
        "llama_orch.harness.target",
        "llama_orch.harness.client",
        "llama_orch.determinism_suite.evidence",
        "llama_orch.harness.steps",
        "llama_orch.harness.checks.conftest",
        "llama_orch.harness.checks.test_contracts",
        "llama_orch.harness.checks.test_schema",
        "llama_orch.harness.checks.test_logs",
        "llama_orch.determinism_suite.pinned",
        "llama_orch.determinism_suite.report",
        "llama_orch.determinism_suite.expected",
    ]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        f"loaded = sorted(m for m in sys.modules if m.startswith({REFERENCE!r}))\n"
        "print(','.join(loaded))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "", f"reference modules loaded: {out.stdout.strip()}"
