"""The Gherkin step library of the compliance harness (pytest-bdd), grouped by topic.

Steps speak HTTP and SSE only, through `harness.client.OrchClient`, and learn the target from
what it answers (replica sets, capabilities, policy labels), so the same features run against
any OrchQueue v1 implementation. Load comes from `[[sim ...]]` prompt directives.

pytest-bdd registers each step as a fixture in the module that defines it; `export_steps`
copies those fixtures (and the scenario fixtures) into a conftest's namespace:

    from llama_orch.harness.steps import export_steps
    export_steps(globals())
"""

from __future__ import annotations

import importlib
from typing import Any

STEP_MODULES = (
    "llama_orch.harness.steps.fixtures",
    "llama_orch.harness.steps.tasks",
    "llama_orch.harness.steps.responses",
    "llama_orch.harness.steps.streams",
    "llama_orch.harness.steps.cancel",
    "llama_orch.harness.steps.load",
    "llama_orch.harness.steps.sessions",
    "llama_orch.harness.steps.control",
    "llama_orch.harness.steps.catalog",
    "llama_orch.harness.steps.lifecycle",
    "llama_orch.harness.steps.artifacts",
    "llama_orch.harness.steps.budgets",
    "llama_orch.harness.steps.policy",
    "llama_orch.harness.steps.scheduling",
)
FIXTURES = ("world", "llorch_memo")


def export_steps(namespace: dict[str, Any]) -> list[str]:
    """Put every step fixture of the library into `namespace`; the names exported."""
    names: list[str] = []
    for module_name in STEP_MODULES:
        module = importlib.import_module(module_name)
        for name, value in vars(module).items():
            if not (name.startswith("pytestbdd_") or name in FIXTURES):
                continue
            unique, n = name, 1
            while unique in namespace and namespace[unique] is not value:
                unique, n = f"{name}_{n}", n + 1
            namespace[unique] = value
            names.append(unique)
    return names
