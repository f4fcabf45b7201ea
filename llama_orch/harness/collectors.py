"""Collectors: every source of checks, turned into `Check` values for the one registry.

Each collector reads its source statically (no target, no pytest session): Gherkin features,
the Pact file, the OpenAPI operations, the plain check modules, and, in a checkout, the
reference's white-box tests. Other packages add theirs through the `pytest_llorch_checks` hook (the
determinism suite registers one check per corpus case that way).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from pytest_bdd.feature import get_features
from pytest_bdd.parser import ScenarioTemplate

from llama_orch.harness.contracts.pactfile import load_interactions
from llama_orch.harness.openapi import REQUIREMENTS_DIR, all_operations
from llama_orch.harness.registry import Check, Kind, Need, Registry, Role, plain_checks
from llama_orch.harness.requirements import load_requirements
from llama_orch.resources import checkout_root, data_path
from llama_orch.spec_extract.model import REF_RE

FEATURES = data_path("features")
# The modules holding `@check` functions, one family each.
CHECK_MODULES = (
    "llama_orch.harness.checks.test_capabilities",
    "llama_orch.harness.checks.test_logs",
    "llama_orch.harness.checks.test_quotas",
    "llama_orch.harness.checks.test_pool_signals",
    "llama_orch.harness.checks.test_sessions_failover",
    "llama_orch.harness.checks.test_startup",
    "llama_orch.harness.checks.test_metrics_contract",
    "llama_orch.harness.checks.test_catalog",
    "llama_orch.harness.checks.test_fairness",
    "llama_orch.harness.checks.test_tenant_quotas",
    "llama_orch.harness.checks.test_deadlines",
    "llama_orch.harness.checks.test_kv_residency",
    "llama_orch.harness.checks.test_slo_breaker",
    "llama_orch.harness.checks.test_scheduling_logs",
)
# Optional features whose OpenAPI operations (by tag) run only when the target claims them.
OPTIONAL_TAGS = ("catalog", "artifacts")
# Gherkin tags that are not requirement IDs but describe the check.
TAG_PREFIXES = {"feature:": "features", "needs:": "needs", "stands-on:": "stands_on"}
FLAG_TAGS = {"slow", "shape"}


# -- Gherkin ------------------------------------------------------------------------------


def scenario_tags(template: ScenarioTemplate) -> set[str]:
    rule_tags = template.rule.tags if template.rule is not None else set()
    return template.tags | template.feature.tags | rule_tags


def feature_path(template: ScenarioTemplate, features_dir: Path = FEATURES) -> Path:
    """The feature file's path below the features folder."""
    path = Path(template.feature.filename).resolve()
    try:
        return path.relative_to(features_dir.resolve())
    except ValueError:
        return Path(template.feature.rel_filename)


def bdd_check_id(
    template: ScenarioTemplate, example: Mapping[str, Any] | None, features_dir: Path = FEATURES
) -> str:
    """`features/<file>::<scenario>`, plus `[v1-v2]` for one row of a Scenario Outline."""
    rel = feature_path(template, features_dir).as_posix()
    base = f"features/{rel}::{template.name}"
    if example:
        base += "[" + "-".join(str(v) for v in example.values()) + "]"
    return base


def bdd_check(
    template: ScenarioTemplate, example: Mapping[str, Any] | None, features_dir: Path = FEATURES
) -> Check:
    tags = scenario_tags(template)
    extra: dict[str, list[str]] = {"features": [], "needs": [], "stands_on": []}
    for tag in sorted(tags):
        for prefix, key in TAG_PREFIXES.items():
            if tag.startswith(prefix):
                extra[key].append(tag.removeprefix(prefix))
    rel = feature_path(template, features_dir)
    return Check(
        id=bdd_check_id(template, example, features_dir),
        kind=Kind.BDD,
        requirements=tuple(sorted(t for t in tags if REF_RE.fullmatch(t))),
        family=rel.parts[0] if len(rel.parts) > 1 else rel.stem,
        role=Role.SHAPE if "shape" in tags else Role.BEHAVIOUR,
        features=tuple(extra["features"]),
        needs=tuple(Need(n) for n in extra["needs"]),
        stands_on=tuple(extra["stands_on"]),
        slow="slow" in tags,
        description=template.name,
        source=f"features/{rel.as_posix()}:{template.line_number}",
    )


def collect_features(features_dir: Path = FEATURES) -> Iterator[Check]:
    for feature in get_features([str(features_dir)]):
        for template in feature.scenarios.values():
            contexts = [c for ex in template.examples for c in ex.as_contexts()]
            for example in contexts or [None]:
                yield bdd_check(template, example, features_dir)


# -- Pact interactions and OpenAPI operations ---------------------------------------------


def contract_check_id(key: str) -> str:
    return f"contract::{key}"


def collect_pacts() -> Iterator[Check]:
    for i in load_interactions():
        yield Check(
            id=contract_check_id(i.key),
            kind=Kind.CONTRACT,
            requirements=i.requirement_ids,
            family="contracts",
            role=Role.SHAPE,
            description=i.label,
            source=f"{i.pact_file.name}#{i.key}",
        )


@cache
def _profiles() -> dict[str, str]:
    return {r.id: r.profile for r in load_requirements(REQUIREMENTS_DIR)}


def operation_feature(op: Mapping[str, Any]) -> str | None:
    return next((t for t in op.get("tags", []) if t in OPTIONAL_TAGS), None)


def schema_check_id(op_id: str) -> str:
    return f"schema::{op_id}"


def collect_operations() -> Iterator[Check]:
    """One schema check per OpenAPI operation, proving the operation's `x-req-id`.

    An optional feature's operation names only its non-core IDs: a target that does not
    claim the feature must not fail a core requirement through it.
    """
    for doc, path, method, _ptr, op in all_operations():
        feature = operation_feature(op)
        ids = list(op.get("x-req-id", []))
        if feature:
            ids = [i for i in ids if _profiles().get(i) != "core"]
        if not ids:
            continue
        yield Check(
            id=schema_check_id(op["operationId"]),
            kind=Kind.SCHEMA,
            requirements=tuple(dict.fromkeys(ids)),
            family="schema",
            role=Role.SHAPE,
            features=(feature,) if feature else (),
            description=f"{method.upper()} {path} answers as documented",
            source=f"contracts/openapi/{doc}#{op['operationId']}",
        )


def collect_plain() -> list[Check]:
    for name in CHECK_MODULES:
        importlib.import_module(name)
    return plain_checks()


# -- white-box tests (checkout only) ------------------------------------------------------


def whitebox_check_id(test_id: str) -> str:
    return f"tests::{test_id}"


def collect_whitebox(root: Path | None = None) -> Iterator[Check]:
    """The reference's own tests that name requirements (`@pytest.mark.req`), in a checkout."""
    from llama_orch.harness.traceability import collect_pytest

    root = root or checkout_root()
    if root is None or not (root / "tests").is_dir():
        return
    by_test: dict[str, list[str]] = {}
    for req_id, ref in collect_pytest(root):
        by_test.setdefault(ref.location, []).append(req_id)
    for test_id, ids in by_test.items():
        yield Check(
            id=whitebox_check_id(test_id),
            kind=Kind.WHITE_BOX,
            requirements=tuple(dict.fromkeys(ids)),
            family="white-box",
            description="a test of the reference implementation's internals",
            source=test_id,
        )


def build_registry(extra: Iterable[Iterable[Check]] = ()) -> Registry:
    """Every check from every collector, validated against the requirement set."""
    registry = Registry()
    for source in (
        collect_features(),
        collect_pacts(),
        collect_operations(),
        collect_plain(),
        collect_whitebox(),
        *extra,
    ):
        registry.extend(source)
    registry.validate(_profiles())
    return registry
