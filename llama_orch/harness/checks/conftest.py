"""Fixtures of the check modules, and the Gherkin step library bound to them.

The target is the one the `llorch` plugin opened for the run (harness.session); each check
gets its own evidence-keeping client. pytest-bdd registers each step as a fixture of the module
that defines it, so the steps of `harness.steps` are re-exported here for `test_features.py`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llama_orch.harness.client import OrchClient
from llama_orch.harness.discovery import Target
from llama_orch.harness.plugin import CLIENT_KEY, STATE
from llama_orch.harness.steps import export_steps

export_steps(globals())


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest) -> Target:
    """The orchestrator under test, as the run discovered it."""
    state = request.config.stash.get(STATE, None)
    if state is None or state.target is None:
        pytest.fail("the llorch plugin did not open a target (run through `llorch check`)")
    return state.target


@pytest.fixture
def orch(request: pytest.FixtureRequest, target: Target) -> Iterator[OrchClient]:
    """An evidence-keeping OrchQueue v1 client for one check."""
    client = OrchClient.for_target(target)
    request.node.stash[CLIENT_KEY] = client
    yield client
    client.close()
