"""Provider verification can fail: the contract checks against providers that break one thing.

The check module `harness/checks/test_contracts.py` runs, exactly as another project's CI
would run it, against a provider that drops one field from one response; only that
interaction's check may fail, with Pact's mismatch and the exchange as evidence. The verifier
itself is also run against the faulty-target proxies whose fault lands on one interaction, and
against a target where a provider state cannot be set up (an `error`, not a pass).

The provider side's own evidence is checked too: a target that echoes the API key back (in a
header, a body, a mismatch the verifier prints) must not get it into any outcome, evidence or
results.json, and an answer that comes after the verifier gave up must stay out of the next
interaction's evidence.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

os.environ["PACT_DO_NOT_TRACK"] = "true"  # before anything loads pact

from llama_orch.harness.contracts.pactfile import PactInteraction, load_interactions
from llama_orch.harness.contracts.provider import UNANSWERED, ContractVerifier, InteractionOutcome
from llama_orch.harness.discovery import Target
from llama_orch.harness.embedded import embedded_reference
from llama_orch.harness.results import CheckResult, Outcome
from tests._harness import reference_target, run_checks
from tests.fixtures.faulty.proxy import running_proxy
from tests.fixtures.pact_broken import DROPPED, running
from tests.fixtures.pact_hazards import ECHO_HEADER, EchoKey, LateAnswers

KEY_ENV = "LLORCH_PACT_PROVIDER_KEY"


@pytest.fixture(scope="module")
def reference():
    with embedded_reference() as (url, key, _):
        yield url, key


@pytest.fixture(scope="module")
def interactions() -> dict[str, PactInteraction]:
    return {i.key: i for i in load_interactions()}


def _target(url: str, key: str) -> Target:
    return reference_target(url, key, auth={"key_env": KEY_ENV})


def _verify_all(target: Target, keys: list[str]) -> dict[str, object]:
    by_key = {i.key: i for i in load_interactions()}
    with ContractVerifier(target) as verifier:
        return {k: verifier.verify(by_key[k]) for k in keys}


@pytest.mark.req("OC-HARNESS-8103", "OC-HARNESS-8308", "OC-HARNESS-8003")
def test_a_dropped_field_fails_exactly_its_interaction(reference, tmp_path: Path) -> None:
    """The provider also echoes the API key in every answer: the report must not carry it."""
    upstream, key = reference
    with running(EchoKey(upstream, key)) as url:
        run = run_checks(
            url, key, tmp_path, "--only", "ORCH-2001", "--only", "ORCH-3095", key_env=KEY_ENV
        )
    text = (tmp_path / "compliance.json").read_text(encoding="utf-8")
    assert key not in text and key not in run.output, "the API key leaked"
    contracts = {k: c for k, c in run.checks().items() if c["kind"] == "contract"}
    assert contracts, run.output[-2000:]
    failed = sorted(k for k, c in contracts.items() if c["outcome"] != "passed")
    assert failed == ["contract::admit-task"], run.output[-3000:]
    bad = contracts["contract::admit-task"]
    assert bad["outcome"] == "failed" and run.verdicts()["ORCH-2001"] == "fail"
    evidence = bad["evidence"]
    assert DROPPED in evidence["message"] and "BodyMismatch" in evidence["message"], evidence
    assert evidence["request"].startswith("POST ") and "/v1/tasks" in evidence["request"]
    assert evidence["response"].startswith("HTTP 202") and DROPPED not in evidence["response"]
    assert f"{ECHO_HEADER}: [REDACTED]" in evidence["response"], evidence["response"]
    assert '"echo": "[REDACTED]"' in evidence["response"], evidence["response"]
    assert "[REDACTED]" in evidence["request"] and evidence["curl"].startswith("curl ")
    assert f"${KEY_ENV}" in evidence["curl"]


@pytest.mark.parametrize(
    ("mode", "broken", "words"),
    [
        ("no-retry-after", "queue-full-backpressure", ("Retry-After", "X-Backoff-Ms")),
        ("no-auth", "capabilities-without-key", ("expected 401 but was 200",)),
        ("wrong-event-name", "stream-task", ("event: tok",)),
    ],
)
def test_a_faulty_proxy_fails_only_the_interaction_it_breaks(
    reference, mode: str, broken: str, words: tuple[str, ...]
) -> None:
    upstream, key = reference
    keys = [i.key for i in load_interactions()]
    with running_proxy(upstream, mode, key) as url:
        outcomes = _verify_all(_target(url, key), keys)
    # a state that reads a broken stream cannot be set up: an error, never a failure
    failed = sorted(k for k, o in outcomes.items() if not o.passed and not o.state_error)
    assert failed == [broken], {k: o.problems or o.state_error for k, o in outcomes.items()}
    message = outcomes[broken].message()
    assert all(w in message for w in words), message


def test_a_state_the_target_cannot_reach_is_an_error_not_a_pass(reference, interactions) -> None:
    upstream, key = reference
    blind = replace(_target(upstream, key), replica_sets=[])  # no replica set to use
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
        for pool in {r["pool_id"] for r in rs["replicas"]}:
            health = httpx.get(f"{upstream}/v1/pools/{pool}/health", headers=headers).json()
            assert health["ready"] is True and health["draining"] is False, (pool, health)


def _echo_pact(directory: Path, source: PactInteraction, copies: int) -> list[PactInteraction]:
    """`copies` of `source` under one description, each expecting an echo header it won't get."""
    doc = json.loads(source.pact_file.read_text(encoding="utf-8"))
    (raw,) = [i for i in doc["interactions"] if i["key"] == source.key]
    raw["response"]["headers"][ECHO_HEADER] = ["not-the-key"]
    doc["interactions"] = [{**raw, "key": f"echo-{n}"} for n in range(copies)]
    directory.mkdir()
    (directory / "echo.json").write_text(json.dumps(doc), encoding="utf-8")
    return load_interactions(directory)


def _everything(outcome: InteractionOutcome, message: str) -> str:
    """All an outcome lets out: its repr (assertion rewriting shows it), and its CheckResult."""
    ids = outcome.interaction.requirement_ids
    result = CheckResult("x", "contract", ids, Outcome.FAILED, outcome.evidence(message))
    return "\n".join([repr(outcome), outcome.message(), json.dumps(result.evidence.to_json())])


def test_the_api_key_never_leaves_the_provider_side(
    reference, interactions, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The key is planted in the target's answers and, through them, in what Pact prints."""
    upstream, key = reference
    (single,) = _echo_pact(tmp_path / "one", interactions["capabilities"], 1)
    twice = _echo_pact(tmp_path / "two", interactions["capabilities"], 2)
    with running(EchoKey(upstream, key)) as url:
        with ContractVerifier(replace(_target(upstream, key), url=url)) as verifier:
            mismatch = verifier.verify(single)
            unclear = verifier.verify(twice[0])  # two results for one description
    printed = capfd.readouterr()
    assert "Verifying a pact" in printed.out, "Pact's report is no longer printed"
    assert key not in printed.out + printed.err and "[REDACTED]" in printed.out
    # Pact's mismatch quotes the header it got, and its raw output does too: both scrubbed.
    assert not mismatch.passed and "[REDACTED]" in " ".join(mismatch.problems), mismatch.problems
    assert unclear.harness_error and "its output" in unclear.harness_error, unclear
    assert "[REDACTED]" in unclear.harness_error, unclear.harness_error
    for outcome, message in [
        (mismatch, f"AssertionError: {mismatch.message()}"),
        (unclear, f"VerifierError: {unclear.harness_error}"),
    ]:
        echoed = [ex.response_headers.get(ECHO_HEADER) for ex in outcome.exchanges]
        assert echoed and set(echoed) == {"[REDACTED]"}, echoed
        text = _everything(outcome, message)
        assert key not in text, f"the API key leaked: {text[:3000]}"
        assert f"{ECHO_HEADER}: [REDACTED]" in text and f"${KEY_ENV}" in text


def test_a_late_answer_stays_with_its_own_interaction(reference, interactions) -> None:
    """What outlives the verifier's timeout lands during the next interaction, not in it."""
    upstream, key = reference
    slow = LateAnswers(upstream, delay_s=2.0)
    with running(slow) as url:
        target = replace(_target(upstream, key), url=url)
        with ContractVerifier(target, request_timeout_ms=1500) as verifier:
            # its state set-up gives up at 1.5 s and fails at about 2 s, during the next one
            gave_up = verifier.verify(interactions["pool-health"])
            # verified from 1.5 to 3 s; the target answers at about 3.5 s, during the next one
            timed_out = verifier.verify(interactions["capabilities"])
            quick = verifier.verify(interactions["capabilities-without-key"])
            assert slow.late_capabilities_done.wait(10), "the late answer never came"
            time.sleep(0.3)  # the provider side records the late answer
    assert not gave_up.passed and not gave_up.exchanges, gave_up
    assert timed_out.state_error is None, "the previous interaction's late state error leaked"
    assert not timed_out.passed and "error sending request" in timed_out.message()
    (ex,) = timed_out.exchanges
    assert (ex.status, ex.error) == (None, UNANSWERED), "the late answer rewrote the evidence"
    assert quick.passed and [e.status for e in quick.exchanges] == [401], quick
