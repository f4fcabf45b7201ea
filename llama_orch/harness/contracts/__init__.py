"""Pact contracts between the harness's OrchQueue v1 client and any OrchQueue v1 provider.

The consumer side (`harness.contracts.consumer`) drives `harness.client.OrchClient` against
Pact's mock server and writes `contracts/pacts/llorch-harness-orchqueue-v1.json` (Pact V4);
each interaction names the requirement IDs it proves in its `comments.requirements`. The
provider side (`harness.contracts.provider`) replays every interaction against the target
under test with the Pact verifier, setting provider states through the public API only
(`harness.contracts.states`); `harness/checks/test_contracts.py` reports one check per
interaction.

Pact's usage telemetry is switched off here, before `pact` is ever imported: the harness runs
offline and must not try to reach the network.
"""

from __future__ import annotations

import os

from llama_orch.resources import data_path

os.environ["PACT_DO_NOT_TRACK"] = "true"

PACT_DIR = data_path("contracts", "pacts")
CONSUMER = "llorch-harness"
PROVIDER = "orchqueue-v1"
PACT_FILE = PACT_DIR / f"{CONSUMER}-{PROVIDER}.json"
