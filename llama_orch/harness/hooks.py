"""Hooks through which other packages add checks to a compliance run (pytest hook specs).

The determinism suite implements both: its corpus cases are registered checks, and their
results come from a `llorch determinism` report rather than from pytest items. So the harness
never imports the determinism suite; the suite plugs into the harness. The names carry the
`pytest_` prefix because pytest reads no other name as a hook implementation.
"""

from __future__ import annotations

import pytest


@pytest.hookspec
def pytest_llorch_checks() -> list:
    """Checks (`harness.registry.Check`) a package adds to the registry."""


@pytest.hookspec
def pytest_llorch_results(config: pytest.Config, target, known: set[str]) -> list:
    """Results (`harness.results.CheckResult`) of registered checks that ran outside pytest."""
