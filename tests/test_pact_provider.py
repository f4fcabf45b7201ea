"""Provider verification can fail: the contract checks against providers that break one thing.

The check module `harness/checks/test_contracts.py` runs, exactly as another project's CI
would run it, against a provider that drops one field from one response; only that
interaction's check may fail, with Pact's mismatch and the exchange as evidence. The verifier
itself is also run against the faulty-target proxies whose fault lands on one interaction, and
against a target where a provider state cannot be set up (an `error`, not a pass).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

os.environ["PACT_DO_NOT_TRACK"] = "true"  # before anything loads pact

from harness.contracts.pactfile import PactInteraction, load_interactions
from harness.contracts.provider import ContractVerifier
from harness.target import Target, describe, embedded_reference
from tests.fixtures.faulty.proxy import running_proxy
from tests.fixtures.pact_broken import DROPPED, DropBackoff, running

ROOT = Path(__file__).resolve().parent.parent
KEY_ENV = "LLORCH_PACT_PROVIDER_KEY"
CHECK = "harness/checks/test_contracts.py::test_interaction"


@pytest.fixture(scope="module")
def reference():
    with embedded_reference() as (url, key, _):
        yield url, key


@pytest.fixture(scope="module")
def interactions() -> dict[str, PactInteraction]:
    return {i.key: i for i in load_interactions()}


def _target(url: str, key: str) -> Target:
    return describe(url, key, KEY_ENV, False)


def _verify_all(target: Target, keys: list[str]) -> dict[str, object]:
    by_key = {i.key: i for i in load_interactions()}
    with ContractVerifier(target) as verifier:
        return {k: verifier.verify(by_key[k]) for k in keys}


@pytest.mark.req("OC-HARNESS-8103", "OC-HARNESS-8308", "OC-HARNESS-8003")
def test_a_dropped_field_fails_exactly_its_interaction(reference, tmp_path: Path) -> None:
    upstream, key = reference
    with running(DropBackoff(upstream)) as url:
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "harness/checks/test_contracts.py",
            "--target",
            url,
            "--api-key-env",
            KEY_ENV,
            "--report-dir",
            str(tmp_path),
        ]
        env = {**os.environ, KEY_ENV: key, "PACT_DO_NOT_TRACK": "true"}
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    text = (tmp_path / "results.json").read_text(encoding="utf-8")
    assert key not in text and key not in output, "the API key leaked"
    results = {r["id"]: r for r in json.loads(text)}
    assert len(results) == len(load_interactions()), output[-2000:]
    failed = sorted(k for k, r in results.items() if r["outcome"] != "passed")
    assert failed == [f"{CHECK}[admit-task]"], output[-3000:]
    bad = results[f"{CHECK}[admit-task]"]
    assert bad["outcome"] == "failed" and bad["kind"] == "contract"
    assert bad["requirement_ids"] == ["ORCH-2001"]
    evidence = bad["evidence"]
    assert DROPPED in evidence["message"] and "BodyMismatch" in evidence["message"], evidence
    assert evidence["request"].startswith("POST ") and "/v1/tasks" in evidence["request"]
    assert evidence["response"].startswith("HTTP 202") and DROPPED not in evidence["response"]
    assert "[REDACTED]" in evidence["request"] and evidence["curl"].startswith("curl ")
    assert f"${KEY_ENV}" in evidence["curl"]


@pytest.mark.parametrize(
    ("mode", "broken", "words"),
    [
        ("no-retry-after", "queue-full-backpressure", ("Retry-After", "X-Backoff-Ms")),
        ("no-auth", "capabilities-without-key", ("expected 401 but was 200",)),
        ("wrong-sse-order", "stream-task", ("event: token",)),
    ],
)
def test_a_faulty_proxy_fails_only_the_interaction_it_breaks(
    reference, mode: str, broken: str, words: tuple[str, ...]
) -> None:
    upstream, key = reference
    keys = [i.key for i in load_interactions()]
    with running_proxy(upstream, mode, key) as url:
        outcomes = _verify_all(_target(url, key), keys)
    failed = sorted(k for k, o in outcomes.items() if not o.passed)
    assert failed == [broken], {k: o.problems or o.state_error for k, o in outcomes.items()}
    message = outcomes[broken].message()
    assert all(w in message for w in words), message


def test_a_state_the_target_cannot_reach_is_an_error_not_a_pass(reference, interactions) -> None:
    upstream, key = reference
    blind = replace(_target(upstream, key), replica_sets=[])  # no replica set names a model
    with ContractVerifier(blind) as verifier:
        outcome = verifier.verify(interactions["admit-task"])
        control = verifier.verify(interactions["capabilities"])
    assert not outcome.passed and outcome.state_error, outcome
    assert "cannot be set up on this target" in outcome.state_error
    assert control.passed, control.problems


def test_an_unknown_state_is_an_error(reference, interactions, tmp_path: Path) -> None:
    upstream, key = reference
    source = interactions["pool-health"]
    doc = json.loads(source.pact_file.read_text(encoding="utf-8"))
    (raw,) = [i for i in doc["interactions"] if i["key"] == "pool-health"]
    raw["providerStates"] = [{"name": "the moon is full"}]
    doc["interactions"] = [raw]
    (tmp_path / "odd.json").write_text(json.dumps(doc), encoding="utf-8")
    (odd,) = load_interactions(tmp_path)
    with ContractVerifier(_target(upstream, key)) as verifier:
        outcome = verifier.verify(odd)
    assert not outcome.passed and "'the moon is full' is not known" in (outcome.state_error or "")


def test_states_leave_the_target_as_they_found_it(reference) -> None:
    """Fills, holds and drains are undone: every pool is ready and idle afterwards."""
    upstream, key = reference
    target = _target(upstream, key)
    keys = ["queue-full-backpressure", "cancel-running-task", "drain-pool", "reload-pool"]
    outcomes = _verify_all(target, keys)
    assert all(o.passed for o in outcomes.values()), {k: o.problems for k, o in outcomes.items()}
    headers = target.headers()
    for rs in httpx.get(f"{upstream}/v1/replicasets", headers=headers).json():
        assert rs["slots_free"] == rs["slots_total"], rs
        for pool in rs["slo"]["pools"]:
            health = httpx.get(f"{upstream}/v1/pools/{pool}/health", headers=headers).json()
            assert health["ready"] is True and health["draining"] is False, (pool, health)
