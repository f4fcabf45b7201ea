"""Find Gherkin steps that no step definition matches, before any check runs.

pytest-bdd only notices an undefined step when it reaches it, and its cucumber JSON drops such
steps; a compliance run must instead show them up front and make their requirements
`unverified`. Two entry points share one report shape (`UndefinedStep`):

- `lint_features(dir)`: the feature files against the step library of `harness.steps`, without
  pytest (CI lint, tests): `python -m harness.gherkin_lint [FEATURES_DIR]` exits 1 on a finding.
- `flag_items(items)`: at collection, each scenario item against the step definitions pytest
  makes visible to it (pytest-bdd's own lookup), so the plugin can refuse to run it.

Parsing, Scenario Outline rendering, Background steps and step matching are pytest-bdd's.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import pytest
from pytest_bdd.exceptions import StepDefinitionNotFoundError
from pytest_bdd.feature import get_features
from pytest_bdd.parser import ScenarioTemplate, Step
from pytest_bdd.scenario import find_fixturedefs_for_step, scenario_wrapper_template_registry
from pytest_bdd.steps import StepFunctionContext, StepNamePrefix, step_function_context_registry
from pytest_bdd.utils import registry_get_safe

from llama_orch.harness.steps import STEP_MODULES
from llama_orch.resources import data_path
from llama_orch.spec_extract.model import REF_RE

FEATURES = data_path("features")
ROOT = FEATURES.parent  # locations read "features/..."
UNDEFINED_KEY = pytest.StashKey[tuple["UndefinedStep", ...]]()
_MATCH_CACHE = pytest.StashKey[dict[tuple[str, str, str], bool]]()

Matcher = Callable[[Step], bool]


@dataclass(frozen=True)
class UndefinedStep:
    """One scenario step without a step definition, located in its feature file."""

    feature: str  # path relative to the project root when under it
    line: int
    scenario: str
    keyword: str  # as written: Given, When, Then, And, But, *
    type: str  # what pytest-bdd matches on: given, when or then
    text: str
    requirement_ids: tuple[str, ...]

    @property
    def location(self) -> str:
        return f"{self.feature}:{self.line}"

    @property
    def step(self) -> str:
        shown = f"{self.keyword} {self.text}"
        return shown if self.keyword.lower() == self.type else f"{shown} (a {self.type} step)"

    def warning(self) -> str:
        """The one line the run prints for this step before any check starts."""
        reqs = ", ".join(self.requirement_ids) or "no requirement tag"
        return (
            f"undefined step: {self.location} '{self.step}' in scenario '{self.scenario}' "
            f"({reqs}) - its requirements will be unverified"
        )


def _relative(filename: str, root: Path) -> str:
    path = Path(filename).resolve()
    try:
        return path.relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def requirement_tags(template: ScenarioTemplate) -> tuple[str, ...]:
    """The requirement IDs a scenario is tagged with (its own, its rule's, its feature's)."""
    rule_tags = template.rule.tags if template.rule is not None else set()
    tags = template.tags | template.feature.tags | rule_tags
    return tuple(sorted(t for t in tags if REF_RE.fullmatch(t)))


def undefined_steps(
    template: ScenarioTemplate,
    defined: Matcher,
    example: Mapping[str, object] | None = None,
    root: Path = ROOT,
) -> list[UndefinedStep]:
    """The steps of one scenario that `defined` rejects, Background steps included.

    An outline is rendered with `example`, or with each of its example rows when none is
    given (a step may match for one row and not another); a step is reported once.
    """
    if example is not None:
        contexts: list[Mapping[str, object]] = [example]
    else:
        contexts = [c for ex in template.examples for c in ex.as_contexts()] or [{}]
    reqs = requirement_tags(template)
    feature = _relative(template.feature.filename, root)
    found: dict[tuple[int, str], UndefinedStep] = {}
    for context in contexts:
        for step in template.render(context).steps:
            key = (step.line_number, step.name)
            if key in found or defined(step):
                continue
            found[key] = UndefinedStep(
                feature,
                step.line_number,
                template.name,
                step.keyword.strip(),
                step.type,
                step.name,
                reqs,
            )
    return list(found.values())


# -- the step library, without pytest ---------------------------------------------------------


def library_contexts(modules: Iterable[str] = STEP_MODULES) -> list[StepFunctionContext]:
    """The step definitions the given modules register (pytest-bdd's own records of them)."""
    contexts = []
    for module_name in modules:
        module = importlib.import_module(module_name)
        for name, value in vars(module).items():
            if not name.startswith(StepNamePrefix.step_def.value):
                continue
            func = getattr(value, "__wrapped__", value)  # pytest's fixture wrapper
            context = registry_get_safe(step_function_context_registry, func)
            if context is not None:
                contexts.append(context)
    return contexts


def library_matcher(contexts: Iterable[StepFunctionContext]) -> Matcher:
    """pytest-bdd's rule: a definition of the step's type (or typeless) whose parser matches."""
    contexts = list(contexts)

    def defined(step: Step) -> bool:
        return any(
            (c.type is None or c.type == step.type) and c.parser.is_matching(step.name)
            for c in contexts
        )

    return defined


def lint_features(
    features_dir: Path,
    modules: Iterable[str] = STEP_MODULES,
    root: Path = ROOT,
) -> list[UndefinedStep]:
    """Every step under `features_dir` (recursively) that the step library does not define."""
    if not features_dir.is_dir():
        raise FileNotFoundError(f"features directory not found: {features_dir}")
    defined = library_matcher(library_contexts(modules))
    found: list[UndefinedStep] = []
    for feature in get_features([str(features_dir.resolve())]):
        for template in feature.scenarios.values():
            found += undefined_steps(template, defined, root=root)
    return sorted(found, key=lambda u: (u.feature, u.line, u.scenario))


# -- collected items (the pytest plugin) ------------------------------------------------------


def _item_matcher(item: pytest.Item) -> Matcher:
    """Whether pytest-bdd will find a definition for a step when it runs this item.

    Uses pytest-bdd's own lookup through pytest's fixture visibility (conftests, modules);
    results are cached per parent node, whose items all see the same definitions.
    """
    cache = item.config.stash.setdefault(_MATCH_CACHE, {})
    fixturemanager = item.session._fixturemanager  # pytest-bdd reads the same private attribute
    scope = item.parent.nodeid if item.parent is not None else ""

    def defined(step: Step) -> bool:
        key = (scope, step.type, step.name)
        if key not in cache:
            matches = find_fixturedefs_for_step(step, fixturemanager, item)
            cache[key] = next(iter(matches), None) is not None
        return cache[key]

    return defined


def undefined_in_item(item: pytest.Item, root: Path | None = None) -> list[UndefinedStep]:
    """The undefined steps of a scenario item (one outline row); [] for a non-scenario item."""
    template = registry_get_safe(scenario_wrapper_template_registry, getattr(item, "obj", None))
    if template is None:
        return []
    callspec = getattr(item, "callspec", None)
    example = callspec.params.get("_pytest_bdd_example", {}) if callspec is not None else {}
    return undefined_steps(template, _item_matcher(item), example, root or item.config.rootpath)


def flag_items(items: Iterable[pytest.Item], warn: TextIO | None = None) -> list[UndefinedStep]:
    """Mark the scenario items with undefined steps and print one warning line per step."""
    out = sys.stderr if warn is None else warn
    seen: dict[tuple[str, str], UndefinedStep] = {}
    for item in items:
        found = undefined_in_item(item)
        if not found:
            continue
        item.stash[UNDEFINED_KEY] = tuple(found)
        for u in found:
            if (u.location, u.text) not in seen:
                seen[(u.location, u.text)] = u
                out.write(u.warning() + "\n")
    out.flush()
    return list(seen.values())


def undefined_of(item: pytest.Item) -> tuple[UndefinedStep, ...]:
    """What `flag_items` found for this item (empty when all its steps are defined)."""
    return item.stash.get(UNDEFINED_KEY, ())


def refusal(found: Iterable[UndefinedStep]) -> StepDefinitionNotFoundError:
    """The error that stands for a scenario refused before it ran (its check's evidence)."""
    steps = "; ".join(f"{u.location} '{u.step}'" for u in found)
    return StepDefinitionNotFoundError(f"undefined step, scenario not run: {steps}")


def main(argv: list[str] | None = None) -> int:
    """`python -m harness.gherkin_lint [FEATURES_DIR]`: list undefined steps; 1 if any."""
    args = sys.argv[1:] if argv is None else argv
    features_dir = Path(args[0]) if args else FEATURES
    found = lint_features(features_dir)
    for u in found:
        print(u.warning())
    print(f"{len(found)} undefined step(s) under {features_dir}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
