"""Contract checks: each interaction of `contracts/pacts/*.json`, verified by Pact on the target.

One check per interaction, named by the interaction's `key`, proving the requirement IDs in its
`comments.requirements`. Pact's verifier replays the interaction (provider states are set up
through the public API, see `harness.contracts.states`); a mismatch fails the check with Pact's
mismatch list as the message and the recorded exchange as evidence, and a state this target
cannot be put into ends the check as `error`, never as a pass.
"""

from __future__ import annotations

import pytest

from llama_orch.harness.contracts.pactfile import PactInteraction, load_interactions
from llama_orch.harness.contracts.provider import ContractVerifier
from llama_orch.harness.pytest_plugin import CLIENT_KEY

pytestmark = pytest.mark.kind("contract")


class ProviderStateError(RuntimeError):
    """The interaction's provider state could not be created on this target."""


class VerifierError(RuntimeError):
    """The Pact verifier gave no result for the interaction."""


def _params() -> list:
    return [
        pytest.param(i, id=i.key, marks=pytest.mark.req(*i.requirement_ids))
        for i in load_interactions()
    ]


@pytest.fixture(scope="module")
def contract_verifier(target, request: pytest.FixtureRequest):
    with ContractVerifier(target, request.config.getoption("model_ref")) as verifier:
        yield verifier


@pytest.mark.parametrize("interaction", _params())
def test_interaction(
    contract_verifier: ContractVerifier,
    interaction: PactInteraction,
    request: pytest.FixtureRequest,
) -> None:
    outcome = contract_verifier.verify(interaction)
    request.node.stash[CLIENT_KEY] = outcome  # evidence: the exchange the verifier made
    if outcome.state_error:
        raise ProviderStateError(outcome.state_error)
    if outcome.harness_error:
        raise VerifierError(outcome.harness_error)
    assert outcome.passed, outcome.message()
