"""Contract checks: each interaction of `contracts/pacts/*.json`, verified by Pact on the target.

One check per interaction (registered by `harness.collectors`, id `contract::<key>`), proving
the requirement IDs in its `comments.requirements`. Pact's verifier replays the interaction
(provider states are set up through the public API, see `harness.contracts.states`); a
mismatch fails the check with Pact's mismatch list as the message and the recorded exchange as
evidence, and a state this target cannot be put into ends the check as `error`, never as a pass.
"""

from __future__ import annotations

import pytest

from llama_orch.harness.collectors import collect_pacts
from llama_orch.harness.contracts.pactfile import load_interactions
from llama_orch.harness.contracts.provider import ContractVerifier
from llama_orch.harness.outcomes import PreconditionError, Violation
from llama_orch.harness.plugin import CLIENT_KEY
from llama_orch.harness.registry import Check
from llama_orch.harness.rules import AUTH, STREAM_ORDER, answering

INTERACTIONS = {f"contract::{i.key}": i for i in load_interactions()}


class VerifierError(RuntimeError):
    """The Pact verifier gave no result for the interaction."""


def _params() -> list:
    return [pytest.param(c, id=c.id) for c in collect_pacts()]


@pytest.fixture(scope="module")
def contract_verifier(target):
    with ContractVerifier(target) as verifier:
        yield verifier


@pytest.mark.parametrize("check", _params())
def test_interaction(
    contract_verifier: ContractVerifier, check: Check, request: pytest.FixtureRequest, target
) -> None:
    interaction = INTERACTIONS[check.id]
    if interaction.path == "/v1/capabilities" and interaction.credentials:
        # GET /v1/capabilities is optional (OC-CTRL-2060, ORCH-3095): a target that publishes
        # its capability data in its replica sets is judged by the capability checks instead.
        source = target.capabilities_source
        if source != "capabilities":
            raise PreconditionError(
                "the target does not serve GET /v1/capabilities (it MAY not): its capability "
                f"data comes from its {source}"
            )
    outcome = contract_verifier.verify(interaction)
    request.node.stash[CLIENT_KEY] = outcome  # evidence: the exchange the verifier made
    if outcome.state_error:
        raise PreconditionError(f"provider state cannot be set up: {outcome.state_error}")
    if outcome.harness_error:
        raise VerifierError(outcome.harness_error)
    if outcome.passed:
        return
    if interaction.credentials and any(ex.status == 401 for ex in outcome.exchanges):
        raise Violation(AUTH, f"the target refused its own key with 401: {outcome.message()}")
    if STATE_FAILED_TEXT in " ".join(outcome.problems):
        raise PreconditionError(f"provider state cannot be set up in time: {outcome.message()}")
    for ex in outcome.exchanges:
        broken = _unfinished(interaction, ex)
        if broken:
            raise Violation(broken, outcome.message())
    raise AssertionError(outcome.message())


# Pact's verifier says so when the state handler failed or did not answer in time.
STATE_FAILED_TEXT = "state change handlers has failed"


def _unfinished(interaction, ex) -> tuple[str, ...]:
    """The requirements an exchange that did not finish breaks: the operation's answer when
    nothing came back, the stream's end when a stream's head came and its end never did."""
    if ex.error is None and ex.status is not None:
        return ()
    if ex.status is None:
        return answering(interaction.method, interaction.path)
    ctype = {k.lower(): v for k, v in ex.response_headers.items()}.get("content-type", "")
    return (
        STREAM_ORDER
        if ctype.startswith("text/event-stream")
        else answering(interaction.method, interaction.path)
    )
