"""Binds the Gherkin step library to the checks and adds the options the features need.

The step definitions live in `harness.steps`; pytest-bdd makes each one a fixture of the module
that defines it, so they are re-exported here to be visible to `test_features.py`.
"""

from __future__ import annotations

import pytest

from harness import pytest_plugin
from harness.steps import export_steps

export_steps(globals())


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llorch", "llama-orch compliance checks")
    group.addoption(
        "--model-ref",
        default=None,
        help="Model reference for tasks when the target's replica sets do not name one (slo).",
    )
    group.addoption(
        "--tenant-key-env",
        default=None,
        metavar="VAR",
        help="Env var holding an API key limited to the data plane (enables the 403 check).",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "req(*ids): requirement IDs this check proves")
    config.addinivalue_line("markers", "slow: a check that waits on a timeout of the target")


def pytest_bdd_apply_tag(tag: str, function):
    """Requirement-ID tags become `req` markers.

    Delegates to the plugin's hook; defined here too because conftest hooks run before
    pytest-bdd's own default (which would turn `@ORCH-2001` into an unknown marker).
    """
    return pytest_plugin.pytest_bdd_apply_tag(tag, function)
