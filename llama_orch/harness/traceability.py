"""The reference's white-box tests that name requirements, read statically from `tests/`.

A test declares the IDs it proves next to itself with `@pytest.mark.req("ID", ...)` (on the
test, its class, or the module's `pytestmark`). `harness.collectors.collect_whitebox` turns
what this finds into registry checks of kind `white-box`; reading the source (not running
pytest) keeps `llorch spec coverage` and `--list` free of side effects.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, order=True)
class CheckRef:
    """A check that names a requirement: `kind` says which collector found it."""

    kind: str
    id: str
    location: str


def _marker_ids(node: ast.expr) -> list[str]:
    """IDs in `pytest.mark.req("A", "B")`, or in a list/tuple of markers."""
    if isinstance(node, ast.List | ast.Tuple):
        return [i for elt in node.elts for i in _marker_ids(elt)]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "req"
    ):
        return [
            a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)
        ]
    return []


def collect_pytest(root: Path) -> Iterable[tuple[str, CheckRef]]:
    """Tests under tests/ carrying `pytest.mark.req(...)`."""
    for path in sorted((root / "tests").rglob("test_*.py")):
        rel = path.relative_to(root).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
        module_ids: list[str] = []
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets
            ):
                module_ids += _marker_ids(node.value)
        yield from _walk(tree.body, rel, "", module_ids)


def _walk(body: list[ast.stmt], rel: str, prefix: str, inherited: list[str]):
    for node in body:
        if isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            ids = inherited + [i for d in node.decorator_list for i in _marker_ids(d)]
            yield from _walk(node.body, rel, f"{prefix}{node.name}::", ids)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
            "test"
        ):
            ids = inherited + [i for d in node.decorator_list for i in _marker_ids(d)]
            for req_id in dict.fromkeys(ids):
                yield req_id, CheckRef("pytest", req_id, f"{rel}::{prefix}{node.name}")
