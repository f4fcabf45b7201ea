"""Binds the Gherkin step library to the checks (options live in harness.pytest_plugin).

The step definitions live in `harness.steps`; pytest-bdd makes each one a fixture of the module
that defines it, so they are re-exported here to be visible to `test_features.py`.
"""

from __future__ import annotations

import pytest

from llama_orch.harness.steps import export_steps

export_steps(globals())


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: a check that waits on a timeout of the target")
