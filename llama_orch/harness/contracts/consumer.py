"""The consumer side of the OrchQueue v1 pact: run every case against Pact's mock server.

`write_pact(directory)` runs each `ContractCase` on a mock server of its own (one interaction
per server, so requests that look alike, such as the three `POST /v1/tasks` cases, cannot
match the wrong interaction) and merges the interactions into one V4 pact file. Each
interaction carries, in its V4 `comments`, the requirement IDs it proves (`requirements`), the
consumer test that records it (`testname`) and its OpenAPI operation (`references`); its `key`
is the stable id of the check that verifies it.

Run `python -m harness.contracts.consumer` to rewrite the committed
`contracts/pacts/llorch-harness-orchqueue-v1.json` after changing a case.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pact import Pact

from llama_orch.harness.client import OrchClient
from llama_orch.harness.contracts import CONSUMER, PACT_DIR, PROVIDER
from llama_orch.harness.contracts.control_plane import CASES as CONTROL_CASES
from llama_orch.harness.contracts.data_plane import CASES as DATA_CASES
from llama_orch.harness.contracts.interactions import ContractCase

CASES: tuple[ContractCase, ...] = DATA_CASES + CONTROL_CASES
CONSUMER_TEST = "tests/test_pact_consumer.py::test_client_meets_the_interaction"
# A stand-in key: the mock server ignores it, and the pact never records Authorization.
CONSUMER_KEY = "consumer-test-key"


def pact_file(directory: Path) -> Path:
    return directory / f"{CONSUMER}-{PROVIDER}.json"


def new_pact(case: ContractCase) -> Pact:
    """A V4 pact holding just this case's interaction, with its comments and key."""
    pact = Pact(CONSUMER, PROVIDER).with_specification("V4")
    interaction = pact.upon_receiving(case.description)
    if case.state is not None:
        interaction.given(case.state, case.state_params or None)
    case.define(interaction)
    interaction.set_key(case.key)
    interaction.set_comment("requirements", list(case.requirements))
    interaction.test_name(f"{CONSUMER_TEST}[{case.key}]")
    interaction.add_external_reference("OpenAPI", "operationId", case.operation)
    if not case.credentials:
        interaction.set_comment("credentials", "none")
    return pact


def run_case(case: ContractCase, directory: Path | None = None) -> None:
    """Exercise the client against a mock server for `case`; merge it into `directory`.

    Raises pact's `MismatchesError` when the client's request does not match the interaction,
    and `AssertionError` when the client cannot use the response.
    """
    pact = new_pact(case)
    with pact.serve() as server:
        client = OrchClient(str(server.url), CONSUMER_KEY if case.credentials else None)
        try:
            case.exercise(client)
        finally:
            client.close()
    if directory is not None:
        pact.write_file(directory, overwrite=False)


def write_pact(directory: Path = PACT_DIR) -> Path:
    """Run every case and write the pact file anew; its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = pact_file(directory)
    path.unlink(missing_ok=True)
    for case in CASES:
        run_case(case, directory)
    return path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = write_pact(Path(args[0]) if args else PACT_DIR)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
