"""API schema checks: schemathesis exercises every OrchQueue v1 operation on the target.

One check per operation (its `operationId`, registered by `harness.collectors`), naming the
operation's `x-req-id` requirements. Each operation gets schema-valid requests, schema-violating
requests and requests on live resources (a real task, session and pool), so that success
responses are validated too. Every response must pass four checks: no server error, a
documented status code, a documented content type, and a body matching the documented schema;
the bar is zero failures. A check that saw no success-class answer exercised nothing: it ends
as `error`, never as a pass (a target refusing every request with 401 passes no schema check).
Generated drain and reload requests only ever see a pool id that does not exist; their one
live request drains a real pool and reloads it with its own model, and waits until it is
Ready again. Catalog and artifact operations run only when the target claims the feature; their
live requests use an entry signed at run time by the target's test CA (harness.signing), which
is retired when the module ends, and an artifact stored for the purpose.

A failure names only the requirements whose text it breaks (`attribute`): a success body of
the wrong shape the operation's own requirement (`rules.ANSWERS`), an error body that is no
typed ErrorEnvelope ORCH-2006/OC-CTRL-2030, a 429 without its policy the backpressure rule, a
stream the SSE rules; the check then fails those and is blocked by them for the rest of its
list. An operation that stops answering costs one bound, not one per generated case.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from llama_orch.harness.client import (
    MAX_BODY_CHARS,
    Exchange,
    OrchClient,
    redact_headers,
)
from llama_orch.harness.collectors import collect_operations
from llama_orch.harness.discovery import Target
from llama_orch.harness.openapi import (
    ERROR_KINDS,
    OPENAPI_DIR,
    SSE_EVENTS,
    all_operations,
    validator_at,
)
from llama_orch.harness.outcomes import Violation, precondition
from llama_orch.harness.registry import Check
from llama_orch.harness.rules import (
    ANSWERS,
    AUTH,
    BACKPRESSURE,
    ERROR_ENVELOPE,
    STARTED_FIELDS,
    STREAM_FRAMING,
    STREAM_JSON,
    STREAM_ORDER,
)
from llama_orch.harness.schema_live import Live, live_kwargs
from llama_orch.harness.sse import SseDecoder
from llama_orch.harness.steps.catalog import retire
from llama_orch.harness.steps.responses import schema_errors

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# schemathesis reads the `schema` of an OpenAPI 3.1 `text/event-stream` body as the schema of
# each event; the contract documents the whole stream there (a string) and each event's payload
# in `x-sse-events`, so event streams are validated here against those payload schemas instead.
SSE_CHECKS = [c for c in CHECKS if c is not response_schema_conformance]
EXAMPLES = {GenerationMode.POSITIVE: 15, GenerationMode.NEGATIVE: 8}
MISSING_POOL = "llorch-schema-check-no-such-pool"
POOL_CHANGING = frozenset({"drainPool", "reloadPool"})


def _params() -> list:
    return [pytest.param(c, id=c.id) for c in collect_operations()]


@cache
def _schema(doc: str):
    """The contract document, with schemathesis defaults (no project config is discovered)."""
    return schemathesis.openapi.from_path(OPENAPI_DIR / doc, config=SchemathesisConfig())


@pytest.fixture(scope="module")
def live(target: Target):
    client = OrchClient.for_target(target)
    state = Live(target, client)
    for group in target.groups():
        state.engine, state.model = group.engine, group.model_ref
        state.pool = group.pools[0] if len(group.pools) == 1 else None
        break
    yield state
    for model_id in state.models:
        retire(client, model_id)
    client.close()


# -- running one operation ---------------------------------------------------------------


@dataclass
class Run:
    op_id: str = ""
    cases: int = 0
    statuses: Counter = field(default_factory=Counter)
    failures: list[tuple[str, Exchange, Counter]] = field(default_factory=list)
    broken: set[str] = field(default_factory=set)  # requirements the failures break
    unanswered: bool = False  # the target stopped answering: no further case is sent
    refused: Exchange | None = None  # the first request with the target's key answered 401

    def fail(self, message: str, ex: Exchange, kinds: Counter, breaks: tuple[str, ...]) -> None:
        self.failures.append((message, ex, kinds))
        self.broken.update(breaks)


def own(op_id: str) -> tuple[str, ...]:
    """What the operation answers, by its requirement (first x-req-id outside the table)."""
    if op_id in ANSWERS:
        return ANSWERS[op_id]
    for _doc, _path, _method, _ptr, op in all_operations():
        if op.get("operationId") == op_id:
            return tuple(op.get("x-req-id", [])[:1])
    return ()


def attribute(op_id: str, status: int, body: bytes) -> tuple[str, ...]:
    """The requirements a response that failed the schema checks breaks."""
    if status < 400:
        return own(op_id)
    try:
        data = json.loads(body)
    except ValueError:
        return ERROR_ENVELOPE
    out: tuple[str, ...] = ()
    errors = schema_errors("ErrorEnvelope", data)
    if errors or not isinstance(data, dict) or data.get("code") not in ERROR_KINDS:
        out += ERROR_ENVELOPE
    if status == 429 and schema_errors("BackpressureErrorEnvelope", data):
        out += BACKPRESSURE
    return out or own(op_id)


VOLATILE_HEADERS = {"x-schemathesis-testcaseid", "date"}  # differ on every run


def _stable(headers: dict[str, str], key_header: str) -> dict[str, str]:
    redacted = redact_headers(headers, extra=(key_header,))
    return {k: v for k, v in redacted.items() if k.lower() not in VOLATILE_HEADERS}


def _exchange(response: Any, key_header: str) -> Exchange:
    """The failing request and response as evidence (secrets redacted, volatile parts gone)."""
    req = response.request
    body = req.body.decode("utf-8", "replace") if isinstance(req.body, bytes) else req.body
    headers = {k: ", ".join(v) if isinstance(v, list) else v for k, v in response.headers.items()}
    ex = Exchange(req.method, req.url, _stable(dict(req.headers), key_header), body)
    ex.key_header = key_header
    ex.status = response.status_code
    ex.response_headers = _stable(headers, key_header)
    ex.response_body = response.content.decode("utf-8", "replace")[:MAX_BODY_CHARS]
    return ex


def _unanswered(op_id: str, exc: requests.RequestException) -> tuple[str, ...]:
    """No answer: the operation's requirement; a stream that stalled after its head (a body
    that never ends) breaks the rule that a stream ends with one terminal event."""
    if op_id == "streamTask" and not isinstance(exc, requests.Timeout):
        return STREAM_ORDER
    return own(op_id)


def _send(case: Any, live: Live, run: Run) -> None:
    if run.unanswered:
        return
    headers = live.target.headers()
    bounds = live.client.timeouts
    kwargs = {"base_url": live.target.url, "headers": headers, "timeout": bounds.request_s}
    key_header = live.target.description.auth.header_name()
    run.cases += 1
    try:
        response = case.call(**kwargs)
    except requests.RequestException as exc:
        req = exc.request
        ex = Exchange(case.method, str(getattr(req, "url", case.formatted_path)), {}, None)
        ex.error = f"{type(exc).__name__}: {exc}"
        run.unanswered = True
        message = f"no response: {ex.error}"
        run.fail(message, ex, Counter({"transport": 1}), _unanswered(run.op_id, exc))
        return
    run.statuses[response.status_code] += 1
    if response.status_code == 401 and run.refused is None and _sent(response, headers):
        run.refused = _exchange(response, key_header)
    sse = _is_sse(response)
    checks = SSE_CHECKS if sse else CHECKS
    try:
        case.validate_response(response, checks=checks, headers=headers, transport_kwargs=kwargs)
    except FailureGroup as group:
        codes = Counter(f"{f.code} {f.title}" for f in group.exceptions)
        breaks = attribute(run.op_id, response.status_code, response.content)
        run.fail(str(group).strip(), _exchange(response, key_header), codes, breaks)
        return
    problems = _sse_problems(response.content.decode("utf-8", "replace")) if sse else []
    if problems:
        message = "SSE events violate their payload schemas:\n" + "\n".join(p for p, _ in problems)
        breaks = tuple(r for _, reqs in problems for r in reqs)
        run.fail(
            message, _exchange(response, key_header), Counter({"SSE event payload": 1}), breaks
        )


CREDENTIAL_HEADERS = ("authorization", "x-api-key")


def _sent(response: Any, headers: dict[str, str]) -> bool:
    """Whether the request carried the target's own key and no other credential (generated
    cases may add one of the contract's security schemes with a made-up value)."""
    sent = {k.lower(): v for k, v in response.request.headers.items()}
    own = {k.lower(): v for k, v in headers.items()}
    others = [h for h in CREDENTIAL_HEADERS if h in sent and h not in own]
    return not others and all(sent.get(k) == v for k, v in own.items())


def _is_sse(response: Any) -> bool:
    value = response.headers.get("content-type") or response.headers.get("Content-Type") or [""]
    value = value[0] if isinstance(value, list) else value
    return value.split(";")[0].strip().lower() == "text/event-stream"


def _sse_problems(text: str) -> list[tuple[str, tuple[str, ...]]]:
    """Each event's `data` must be JSON matching the payload schema of its `event` name;
    each problem with the requirements it breaks."""
    problems: list[tuple[str, tuple[str, ...]]] = []
    decoder = SseDecoder()
    events = decoder.feed(text)
    decoder.close()
    for n, event in enumerate(events):
        if event.event not in SSE_EVENTS:
            problems.append((f"event #{n}: unknown event name {event.event!r}", STREAM_FRAMING))
            continue
        if not isinstance(event.data, dict):
            try:
                json.loads(event.raw)
                breaks = STREAM_ORDER
            except ValueError:
                breaks = STREAM_JSON
            why = f"event #{n} ({event.event}): data is not a JSON object: {event.raw!r}"
            problems.append((why, breaks))
            continue
        validator = validator_at("data.yaml", f"/components/schemas/{SSE_EVENTS[event.event]}")
        breaks = PAYLOAD_RULES.get(event.event, ("ORCH-2002",))
        problems += [
            (f"event #{n} ({event.event}): {e.message}", breaks)
            for e in validator.iter_errors(event.data)
        ]
    return problems


# The payloads whose fields a requirement of their own names; the others are the contract's
# event set (ORCH-2002).
PAYLOAD_RULES = {"started": STARTED_FIELDS, "error": ERROR_ENVELOPE}


def _exercise(
    operation: Any, mode: GenerationMode, examples: int, live: Live, run: Run, **fixed
) -> None:
    strategy = operation.as_strategy(generation_mode=mode, **fixed)

    @given(case=strategy)
    @settings(
        max_examples=examples,
        phases=[Phase.explicit, Phase.generate],
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    def exercise(case: Any) -> None:
        _send(case, live, run)

    exercise()


def _summary(op_id: str, run: Run) -> str:
    kinds: Counter = Counter()
    for _, _, codes in run.failures:
        kinds.update(codes)
    statuses = run.statuses.items()
    server = sum(n for code, n in statuses if code >= 500)
    lines = [
        f"{op_id}: {len(run.failures)} of {run.cases} requests failed the schema checks "
        f"({server} server errors); statuses seen: {json.dumps(dict(sorted(statuses)))}",
        *(f"  {n} x {kind}" for kind, n in kinds.most_common()),
        "first failure:",
        run.failures[0][0],
    ]
    return "\n".join(lines)


@pytest.mark.parametrize("check", _params())
def test_operation_conforms_to_the_contract(check: Check, live: Live, orch) -> None:
    op_id = check.id.removeprefix("schema::")
    source = live.target.capabilities_source
    precondition(
        op_id != "getCapabilities" or source == "capabilities",
        f"the target does not serve GET /v1/capabilities (it MAY not): its capability data "
        f"comes from its {source}",
    )
    doc = check.source.split("#")[0].rpartition("/")[2]
    operation = _schema(doc).find_operation_by_id(op_id)
    fixed = {"path_parameters": {"id": MISSING_POOL}} if op_id in POOL_CHANGING else {}
    run = Run(op_id)
    try:
        for mode, examples in EXAMPLES.items():
            _exercise(operation, mode, examples, live, run, **fixed)
        fixed_live = live_kwargs(op_id, live)
        if fixed_live is not None:
            _exercise(operation, GenerationMode.POSITIVE, 1, live, run, **fixed_live)
    finally:
        if op_id in POOL_CHANGING:
            live.settle_pool()
    if run.refused is not None:
        orch.exchanges.append(run.refused)
        raise Violation(
            AUTH, f"{op_id}: {run.statuses[401]} requests with the target's key got 401"
        )
    if run.failures:
        orch.exchanges.append(run.failures[0][1])
        raise Violation(sorted(run.broken) or own(op_id), _summary(op_id, run))
    success = sum(n for status, n in run.statuses.items() if 200 <= status < 300)
    precondition(
        success,
        f"{op_id}: no request got a success-class answer, so no documented success was "
        f"checked; statuses seen: {json.dumps(dict(sorted(run.statuses.items())))}",
    )
