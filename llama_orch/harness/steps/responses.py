"""Then-steps about HTTP answers: status, typed error envelopes, backpressure, schemas, ids."""

from __future__ import annotations

import math
from typing import Any

import httpx
from pytest_bdd import then

from llama_orch.harness.openapi import CORRELATION, ERROR_KINDS, load_doc, validator_at
from llama_orch.harness.outcomes import Violation, precondition
from llama_orch.harness.rules import AUTH, BACKPRESSURE, ERROR_ENVELOPE, ERROR_MESSAGE
from llama_orch.harness.steps.fixtures import P
from llama_orch.harness.steps.world import World

POLICY_LABELS = ("reject", "drop-lru", "shed-low-priority")


def last(world: World) -> httpx.Response:
    assert world.response is not None, "no response in this scenario yet"
    return world.response


def json_body(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        raise AssertionError(f"the body of the {resp.status_code} answer is not JSON") from None


def envelope(resp: httpx.Response) -> dict[str, Any]:
    body = json_body(resp)
    assert isinstance(body, dict), f"an error body must be a JSON object, got {body!r}"
    return body


def schema_errors(schema: str, instance: Any) -> list[str]:
    """Validation errors of `instance` against a named schema of either OpenAPI document."""
    for doc in ("data.yaml", "control.yaml"):
        if schema in load_doc(doc).get("components", {}).get("schemas", {}):
            validator = validator_at(doc, f"/components/schemas/{schema}")
            return [
                f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
                for e in validator.iter_errors(instance)
            ]
    raise LookupError(f"no schema {schema!r} in the OpenAPI documents")


def assert_schema(schema: str, instance: Any) -> None:
    errors = schema_errors(schema, instance)
    assert not errors, f"not a valid {schema}: {'; '.join(errors[:5])}"


# -- status ----------------------------------------------------------------------------------
@then(P("the response status is {status:d}"))
def response_status(world: World, status: int) -> None:
    resp = last(world)
    assert resp.status_code == status, (
        f"expected {status}, got {resp.status_code}: {resp.text[:300]}"
    )


@then(P("the response statuses were {statuses}"))
def response_statuses(world: World, statuses: str) -> None:
    want = [int(s) for s in statuses.replace(" and ", ",").split(",") if s.strip()]
    got = [r.status_code for r in world.responses]
    assert got == want, f"expected statuses {want}, got {got}"


@then("every submission is admitted with 202")
def every_submission_admitted(world: World) -> None:
    assert world.responses, "nothing was submitted"
    bad = [(r.status_code, r.text[:200]) for r in world.responses if r.status_code != 202]
    assert not bad, f"submissions not admitted: {bad}"


# -- error envelopes -------------------------------------------------------------------------
@then("the answer is an error")
def answer_is_error(world: World) -> None:
    """The premise of an envelope check: a target that accepted the request gave no error
    body to judge (whether it should have refused is another requirement's business)."""
    resp = last(world)
    precondition(
        resp.status_code >= 400,
        f"the target answered {resp.status_code}, not an error: no error body to judge",
    )


@then(P("the error code is {code:W}"))
def error_code(world: World, code: str) -> None:
    body = envelope(last(world))
    assert body.get("code") == code, f"expected error code {code}, got {body.get('code')!r}"


def check_envelope(body: Any, what: str) -> None:
    """The typed ErrorEnvelope every error body and SSE `error` event carries (ORCH-2006,
    OC-CTRL-2030): an object whose `code` is an ErrorKind, spelled exactly, with a message."""
    if not isinstance(body, dict):
        raise Violation(ERROR_ENVELOPE, f"{what} is not a JSON object: {body!r}")
    if body.get("code") not in ERROR_KINDS:
        raise Violation(ERROR_ENVELOPE, f"{what}: code {body.get('code')!r} is not an ErrorKind")
    if not isinstance(body.get("message"), str) or not body["message"].strip():
        raise Violation(ERROR_MESSAGE, f"{what} carries no human-readable message")


@then("the body is a typed error envelope")
def typed_envelope(world: World) -> None:
    resp = last(world)
    try:
        body = resp.json()
    except ValueError:
        raise Violation(ERROR_ENVELOPE, f"the {resp.status_code} body is not JSON") from None
    check_envelope(body, f"the {resp.status_code} body")
    errors = schema_errors("ErrorEnvelope", body)
    if errors:
        raise Violation(ERROR_ENVELOPE, f"not a valid ErrorEnvelope: {'; '.join(errors[:5])}")


# -- backpressure ----------------------------------------------------------------------------
def _backoff(resp: httpx.Response) -> tuple[str, str]:
    """Both backpressure headers of a 429, as sent (ORCH-2007, OC-CTRL-2011)."""
    retry, backoff = resp.headers.get("Retry-After"), resp.headers.get("X-Backoff-Ms")
    if retry is None or backoff is None:
        missing = [n for n, v in (("Retry-After", retry), ("X-Backoff-Ms", backoff)) if v is None]
        raise Violation(BACKPRESSURE, f"the 429 lacks {' and '.join(missing)}")
    return retry, backoff


@then("the response carries Retry-After and X-Backoff-Ms")
def backpressure_headers(world: World) -> None:
    retry, backoff = _backoff(last(world))
    assert retry.strip().isdigit(), f"Retry-After must be whole seconds, got {retry!r}"
    assert backoff.strip().isdigit(), f"X-Backoff-Ms must be milliseconds, got {backoff!r}"


@then("Retry-After is X-Backoff-Ms in whole seconds, rounded up")
def backpressure_agree(world: World) -> None:
    retry, backoff = _backoff(last(world))
    precondition(
        retry.strip().isdigit() and backoff.strip().isdigit(), "the headers are not numbers"
    )
    assert int(retry) == math.ceil(int(backoff) / 1000), (
        f"Retry-After {retry} s must equal X-Backoff-Ms {backoff} / 1000, rounded up"
    )


@then("the error is retriable with retry_after_ms equal to X-Backoff-Ms")
def retriable_backoff(world: World) -> None:
    resp = last(world)
    _backoff(resp)
    body = envelope(resp)
    assert body.get("retriable") is True, "a 429 envelope must say retriable: true"
    assert str(body.get("retry_after_ms")) == resp.headers.get("X-Backoff-Ms"), (
        f"retry_after_ms {body.get('retry_after_ms')!r} differs from X-Backoff-Ms "
        f"{resp.headers.get('X-Backoff-Ms')!r}"
    )


@then(P('the policy label is "{label:Q}"'))
def policy_label_is(world: World, label: str) -> None:
    body = envelope(last(world))
    assert body.get("policy_label") == label, f"policy_label {body.get('policy_label')!r}"


@then("the policy label names a full-queue policy")
def policy_label_valid(world: World) -> None:
    body = envelope(last(world))
    assert body.get("policy_label") in POLICY_LABELS, (
        f"policy_label {body.get('policy_label')!r} is not one of {POLICY_LABELS}"
    )


# -- schemas and admission -------------------------------------------------------------------
@then(P("the body matches the {schema:W} schema"))
def body_matches(world: World, schema: str) -> None:
    assert_schema(schema, json_body(last(world)))


@then("the admission names the submitted task_id")
def admission_task_id(world: World) -> None:
    body = json_body(last(world))
    assert body.get("task_id") == world.it()["task_id"], "task_id differs from the request"


@then("the admission reports queue_position, predicted_start_ms and backoff_ms")
def admission_facts(world: World) -> None:
    body = json_body(last(world))
    for name in ("queue_position", "predicted_start_ms", "backoff_ms"):
        value = body.get(name)
        assert isinstance(value, int) and not isinstance(value, bool), f"{name} must be an int"
        assert value >= 0, f"{name} must not be negative, got {value}"


@then("the task was not enqueued")
def not_enqueued(world: World) -> None:
    task_id = world.it()["task_id"]
    resp = world.orch.get(f"/v1/tasks/{task_id}/stream")
    assert resp.status_code == 404, (
        f"a refused task must not exist, but its stream answered {resp.status_code}"
    )


# -- correlation ids and secrets -------------------------------------------------------------
@then(P('the response carries X-Correlation-Id "{cid:Q}"'))
def correlation_echoed(world: World, cid: str) -> None:
    resp = last(world)
    got = resp.headers.get(CORRELATION)
    assert got == cid, f"{resp.status_code} answer carries {CORRELATION} {got!r}, not {cid!r}"


@then("the response carries a generated X-Correlation-Id")
def correlation_generated(world: World) -> None:
    resp = last(world)
    got = resp.headers.get(CORRELATION)
    assert got and got.strip(), f"{resp.status_code} answer carries no {CORRELATION}"


@then("the response is a refusal")
def is_refusal(world: World) -> None:
    """A key the target does not know must be refused; accepting it breaks the auth rule,
    and leaves nothing for a check of error bodies to judge."""
    resp = last(world)
    if resp.status_code not in (401, 403):
        raise Violation(AUTH, f"an unknown key was answered {resp.status_code}, not refused")


@then("the response does not echo the presented key")
def no_key_echo(world: World) -> None:
    resp = last(world)
    key = world.extra["presented_key"]
    assert key not in resp.text, "the error body repeats the API key it was sent"
    assert all(key not in v for v in resp.headers.values()), "a header repeats the API key"


@then("no error answer of this scenario contains the target's API key")
def no_secret_in_errors(world: World) -> None:
    key = world.target.api_key
    errors = [r for r in world.responses if r.status_code >= 400]
    precondition(errors, "no request of this scenario was answered with an error")
    for resp in errors:
        if key:
            assert key not in resp.text, f"a {resp.status_code} body contains the API key"
