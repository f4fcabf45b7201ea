"""The consumer side of the OrchQueue v1 pact: the harness client against Pact's mock server.

Each case drives `OrchClient` against a mock server that knows only that case's interaction,
so a client request that drifts from the pact (path, method, body shape) fails here. The
committed pact file must equal what the cases generate, apart from the Pact library's version
stamp, so a changed case cannot ship with a stale contract.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

os.environ["PACT_DO_NOT_TRACK"] = "true"  # before anything loads pact

from pact.error import MismatchesError

from llama_orch.harness.client import OrchClient
from llama_orch.harness.contracts import PACT_FILE
from llama_orch.harness.contracts.consumer import CASES, pact_file, run_case, write_pact
from llama_orch.harness.contracts.interactions import ContractCase
from llama_orch.harness.contracts.pactfile import load_interactions, normalised
from llama_orch.harness.contracts.states import HANDLERS
from llama_orch.harness.openapi import load_doc
from llama_orch.harness.requirements import load_requirements

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("case", CASES, ids=[c.key for c in CASES])
def test_client_meets_the_interaction(case: ContractCase) -> None:
    run_case(case)  # raises on a request mismatch or a response the client cannot use


def test_committed_pact_is_what_the_cases_generate(tmp_path: Path) -> None:
    generated = write_pact(tmp_path)
    assert generated == pact_file(tmp_path) and PACT_FILE.exists()
    assert normalised(generated) == normalised(PACT_FILE), (
        "contracts/pacts is stale: run `python -m harness.contracts.consumer` and commit it"
    )


def test_a_client_request_that_drifts_from_the_pact_fails() -> None:
    def wrong_path(client: OrchClient) -> None:
        client.get("/v1/capabilitiez")

    case = next(c for c in CASES if c.key == "capabilities")
    with pytest.raises(MismatchesError):
        run_case(replace(case, exercise=wrong_path))


def test_a_response_the_client_cannot_use_fails() -> None:
    def wants_more(client: OrchClient) -> None:
        assert "no_such_field" in client.capabilities().json()

    case = next(c for c in CASES if c.key == "capabilities")
    with pytest.raises(AssertionError):
        run_case(replace(case, exercise=wants_more))


def test_every_interaction_is_traceable_and_verifiable() -> None:
    """Known requirement IDs, a real OpenAPI operation, a provider state the harness can set."""
    known = {r.id for r in load_requirements(ROOT / "requirements")}
    operations = {
        op["operationId"]
        for name in ("data.yaml", "control.yaml")
        for path in load_doc(name)["paths"].values()
        for op in path.values()
        if isinstance(op, dict) and "operationId" in op
    }
    interactions = {i.key: i for i in load_interactions()}
    assert sorted(interactions) == sorted(c.key for c in CASES)
    for case in CASES:
        assert set(case.requirements) <= known, (case.key, set(case.requirements) - known)
        assert case.operation in operations, (case.key, case.operation)
        assert case.state is None or case.state in HANDLERS, (case.key, case.state)
        item = interactions[case.key]
        assert item.requirement_ids == case.requirements and item.credentials == case.credentials
