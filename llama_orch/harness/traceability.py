"""Which checks name which requirement: the inventory behind `llorch spec coverage`.

Checks declare the IDs they prove next to themselves: a pytest marker
`@pytest.mark.req("ID", ...)` (on a test, a class or as module `pytestmark`) or a Gherkin tag
`@ID` on a Feature or Scenario. The inventory is read statically, so it runs without a target.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from llama_orch.spec_extract.model import REF_RE


@dataclass(frozen=True, order=True)
class CheckRef:
    """A check that names a requirement: `kind` says which collector found it."""

    kind: str
    id: str
    location: str


Collector = Callable[[Path], Iterable[tuple[str, CheckRef]]]


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


_TAG_LINE = re.compile(r"^\s*@")
_BLOCK = re.compile(
    r"^\s*(Feature|Rule|Scenario Outline|Scenario|Example|Scenario Template):\s*(.*)$"
)


def collect_features(root: Path) -> Iterable[tuple[str, CheckRef]]:
    """Gherkin scenarios under features/, tagged `@ID` (feature tags apply to all scenarios)."""
    for path in sorted((root / "features").rglob("*.feature")):
        rel = path.relative_to(root).as_posix()
        pending: list[str] = []
        feature_ids: list[str] = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if _TAG_LINE.match(line):
                pending += [t.lstrip("@") for t in line.split() if REF_RE.fullmatch(t.lstrip("@"))]
                continue
            block = _BLOCK.match(line)
            if not block:
                continue
            if block.group(1) == "Feature":
                feature_ids = pending
            elif block.group(1) != "Rule":
                for req_id in dict.fromkeys(feature_ids + pending):
                    yield req_id, CheckRef("bdd", req_id, f"{rel}: {block.group(2).strip()}")
            pending = []


COLLECTORS: dict[str, Collector] = {"pytest": collect_pytest, "bdd": collect_features}


def inventory(root: Path) -> dict[str, list[CheckRef]]:
    """Requirement ID -> the checks naming it, from every collector, sorted."""
    found: dict[str, list[CheckRef]] = {}
    for collect in COLLECTORS.values():
        for req_id, ref in collect(root):
            found.setdefault(req_id, []).append(ref)
    return {k: sorted(v) for k, v in sorted(found.items())}
