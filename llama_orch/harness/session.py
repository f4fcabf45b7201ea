"""One compliance run inside pytest: the registry, the target, the selection, the results.

The runner, not each check, decides what a check may do: a check of an optional feature the
target does not claim is `not-supported` without running; a check whose needs (facts, keys,
a log) the target description does not meet is an `error` saying how to provide them; a check
that would start after the run's ceiling is an `error` too. Every other check runs, and its
ending is classified by `harness.outcomes`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest
from pytest_bdd.scenario import scenario_wrapper_template_registry
from pytest_bdd.utils import registry_get_safe

from llama_orch.harness.collectors import bdd_check
from llama_orch.harness.description import TargetDescription
from llama_orch.harness.discovery import Target
from llama_orch.harness.registry import CHECK_ATTR, Check, Need, Registry
from llama_orch.harness.requirements import RequirementRecord
from llama_orch.harness.results import CheckResult, Evidence, Outcome
from llama_orch.harness.verdicts import profile_selects

CHECKS_PACKAGE = "llama_orch.harness.checks"


class UnregisteredCheckError(pytest.UsageError):
    """A test in the checks package that no collector registered (it would prove nothing)."""


def check_of(item: pytest.Item) -> Check | None:
    """The registry entry an item runs, or None for an item outside the checks package."""
    callspec = getattr(item, "callspec", None)
    if callspec is not None and isinstance(callspec.params.get("check"), Check):
        return callspec.params["check"]
    fn = getattr(item, "function", None)
    if fn is not None and hasattr(fn, CHECK_ATTR):
        return getattr(fn, CHECK_ATTR)
    template = registry_get_safe(scenario_wrapper_template_registry, getattr(item, "obj", None))
    if template is not None:
        example = callspec.params.get("_pytest_bdd_example") if callspec is not None else None
        return bdd_check(template, example or None)
    return None


def in_checks_package(item: pytest.Item) -> bool:
    module = getattr(item, "module", None)
    return module is not None and module.__name__.startswith(CHECKS_PACKAGE)


@dataclass
class Selection:
    """Which requirements the user selected: profile, `--only` and `--family`."""

    profile: str
    only: frozenset[str] = frozenset()
    families: tuple[str, ...] = ()

    def selects(self, req: RequirementRecord) -> bool:
        if not profile_selects(self.profile, req.profile):
            return False
        if self.only and req.id not in self.only:
            return False
        return not self.families or req.id.startswith(tuple(f"{f}-" for f in self.families))


@dataclass
class RunState:
    """Everything one run accumulates; the plugin's hooks read and write it."""

    registry: Registry
    requirements: list[RequirementRecord]
    selection: Selection
    description: TargetDescription
    target: Target | None = None
    started: float = field(default_factory=time.monotonic)
    started_at: str = ""
    results: list[CheckResult] = field(default_factory=list)
    checks: dict[str, Check] = field(default_factory=dict)  # item nodeid -> check

    def selected_check(self, check: Check) -> bool:
        """A check runs when it proves at least one selected requirement (8105)."""
        return self.selected_check_ids(check.requirements)

    def selected_check_ids(self, requirement_ids: Iterable[str]) -> bool:
        by_id = {r.id: r for r in self.requirements}
        return any(self.selection.selects(by_id[i]) for i in requirement_ids if i in by_id)

    def bind(self, items: list[pytest.Item], shuffle: int | None) -> list[pytest.Item]:
        """Map items to checks; refuse unregistered ones; drop deselected; order them."""
        keep: list[pytest.Item] = []
        deselected: list[pytest.Item] = []
        for item in items:
            check = check_of(item)
            if check is None:
                if in_checks_package(item):
                    raise UnregisteredCheckError(
                        f"{item.nodeid} is in {CHECKS_PACKAGE} but no collector registered it"
                    )
                continue
            if check.id not in self.registry:
                raise UnregisteredCheckError(f"{item.nodeid}: check {check.id} is not registered")
            self.checks[item.nodeid] = check
            (keep if self.selected_check(check) else deselected).append(item)
        if shuffle is not None:
            random.Random(shuffle).shuffle(keep)
        if deselected:
            items[:] = keep
            return deselected
        items[:] = keep
        return []

    # -- decisions the runner takes before a check runs ---------------------------------
    def decide(self, check: Check) -> CheckResult | None:
        """A result without running the check, or None when it may run."""
        target = self.target
        assert target is not None
        bounds = target.timeouts
        if time.monotonic() - self.started > bounds.run_s:
            return self._result(
                check,
                Outcome.ERROR,
                f"not started: the run passed its ceiling of {bounds.run_s:g} s",
            )
        missing = [f for f in check.features if f not in target.claimed()]
        if missing:
            return self._result(
                check,
                Outcome.NOT_SUPPORTED,
                f"not-supported: the target does not claim {', '.join(missing)}",
            )
        unmet = [n for n in check.needs if not self.has(n)]
        if unmet:
            why = "; ".join(f"needs {n.value}: {n.how()}" for n in unmet)
            return self._result(check, Outcome.ERROR, f"not run: {why}")
        return None

    def has(self, need: Need) -> bool:
        t = self.target
        assert t is not None
        desc = t.description
        return {
            Need.MODEL_REF: bool(t.groups()),
            Need.IDENTITY: bool(desc.facts.engine_version and desc.facts.model_digest),
            Need.TENANT_KEY: bool(t.tenant_key),
            Need.DATA_PLANE_KEY: bool(t.data_plane_key),
            Need.LOG: desc.log is not None and desc.log.exists(),
            Need.REFERENCE_CONFIG: t.embedded and desc.reference_config is not None,
            Need.CATALOG_CA: t.authority is not None and bool(desc.catalog.registry),
        }[need]

    @staticmethod
    def _result(check: Check, outcome: Outcome, message: str) -> CheckResult:
        return CheckResult(
            check.id,
            check.kind.value,
            check.requirements,
            outcome,
            Evidence(message),
            0.0,
            role=check.role.value,
        )

    def record(self, result: CheckResult) -> None:
        self.results.append(result)

    def not_collected(self, ran: Iterable[str]) -> list[CheckResult]:
        """Registered pytest-run checks of the selection that no item ran: errors, not gaps."""
        seen = set(ran)
        out = []
        for check in self.registry:
            if check.kind.value in ("white-box", "determinism") or check.id in seen:
                continue
            if self.selected_check(check):
                out.append(
                    self._result(check, Outcome.ERROR, "the check was not collected in this run")
                )
        return out
