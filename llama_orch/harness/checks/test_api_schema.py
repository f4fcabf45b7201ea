"""API schema checks: schemathesis exercises every OrchQueue v1 operation on the target.

One check per operation (its `operationId`), naming the operation's `x-req-id` requirements.
Each operation gets schema-valid requests, schema-violating requests, and, where the API is
stateful, requests on live resources (a real task, session and pool) so that success responses
are validated too. Every response must pass four checks: no server error, a documented status
code, a documented content type, and a body matching the documented schema; the bar is zero
failures. Drain and reload only ever see a pool id that does not exist, so the target's pools are
never touched. Catalog and artifact operations (extended profile) run only when the target
claims the feature in `GET /v1/capabilities`.
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
    task_body,
)
from llama_orch.harness.openapi import (
    OPENAPI_DIR,
    REQUIREMENTS_DIR,
    SSE_EVENTS,
    all_operations,
    validator_at,
)
from llama_orch.harness.requirements import RequirementsError, load_requirements

pytestmark = pytest.mark.kind("schema")

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
TIMEOUT_S = 10
MISSING_POOL = "llorch-schema-check-no-such-pool"
DESTRUCTIVE = frozenset({"drainPool", "reloadPool"})  # never aimed at a real pool
FEATURE_TAGS = ("catalog", "artifacts")  # extended-profile features, claimed in capabilities
PROMPT = "[[sim tokens=4]] schema check"
SLOW_PROMPT = "[[sim tokens=40 itl_ms=25]] schema check, canceled"


@cache
def _profiles() -> dict[str, str]:
    try:
        return {r.id: r.profile for r in load_requirements(REQUIREMENTS_DIR)}
    except RequirementsError:
        return {}


def _feature(op: dict[str, Any]) -> str | None:
    return next((t for t in op.get("tags", []) if t in FEATURE_TAGS), None)


def _req_ids(op: dict[str, Any]) -> list[str]:
    """The operation's x-req-id; an optional feature's operation names only optional IDs."""
    ids = list(op.get("x-req-id", []))
    if _feature(op):
        ids = [i for i in ids if _profiles().get(i) != "core"]
    return ids


OPERATIONS = {op["operationId"]: (doc, op) for doc, _path, _method, _ptr, op in all_operations()}


def _params() -> list:
    return [
        pytest.param(doc, op_id, id=op_id, marks=pytest.mark.req(*_req_ids(op)))
        for op_id, (doc, op) in OPERATIONS.items()
    ]


@cache
def _schema(doc: str):
    """The contract document, with schemathesis defaults (no project config is discovered)."""
    return schemathesis.openapi.from_path(OPENAPI_DIR / doc, config=SchemathesisConfig())


def _claims(capabilities: dict[str, Any], feature: str) -> bool:
    if (capabilities.get("features") or {}).get(feature):
        return True
    return any((e.get("features") or {}).get(feature) for e in capabilities.get("engines", []))


# -- live resources ---------------------------------------------------------------------


@dataclass
class Live:
    """The target, and resources on it that stateful operations are pointed at.

    Tracebacks print the arguments of failing frames, so the key stays out of the repr.
    """

    url: str
    api_key: str | None = field(repr=False)
    capabilities: dict[str, Any] = field(repr=False)
    client: OrchClient = field(repr=False)
    engine: str | None = None
    model: str | None = None
    pool: str | None = None

    def task(self, prompt: str = PROMPT, *, run: bool = True) -> dict[str, Any] | None:
        """An admitted task (streamed to its end when `run`); None when none can be admitted."""
        if self.engine is None or self.model is None:
            return None
        body = task_body(engine=self.engine, model_ref=self.model, prompt=prompt, max_tokens=8)
        if self.client.submit(body).status_code != 202:
            return None
        if run:
            self.client.stream(body["task_id"])
        return body


def _live_kwargs(op_id: str, live: Live) -> dict[str, Any] | None:
    """Fixed parts of a request that points the operation at a live resource."""
    if op_id == "createTask" and live.engine and live.model:
        return {"body": task_body(engine=live.engine, model_ref=live.model, prompt=PROMPT)}
    if op_id in ("streamTask", "cancelTask", "getSession", "deleteSession"):
        task = live.task(
            SLOW_PROMPT if op_id == "cancelTask" else PROMPT, run=op_id != "cancelTask"
        )
        if task is None:
            return None
        key = "session_id" if "Session" in op_id else "task_id"
        return {"path_parameters": {"id": task[key]}}
    if op_id == "getPoolHealth" and live.pool:
        return {"path_parameters": {"id": live.pool}}
    return None


@pytest.fixture(scope="module")
def live(target):
    client = OrchClient(target.url, target.api_key, api_key_env=target.api_key_env)
    state = Live(target.url, target.api_key, target.capabilities, client)
    for rs in target.replica_sets:
        slo = rs.get("slo") or {}
        if isinstance(rs.get("engine"), str) and isinstance(slo.get("model_ref"), str):
            state.engine, state.model = rs["engine"], slo["model_ref"]
            state.pool = next(iter(slo.get("pools") or []), None)
            break
    yield state
    client.close()


# -- running one operation ---------------------------------------------------------------


@dataclass
class Run:
    cases: int = 0
    statuses: Counter = field(default_factory=Counter)
    failures: list[tuple[str, Exchange, Counter]] = field(default_factory=list)


VOLATILE_HEADERS = {"x-schemathesis-testcaseid", "date"}  # differ on every run


def _stable(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in redact_headers(headers).items() if k.lower() not in VOLATILE_HEADERS}


def _exchange(response: Any) -> Exchange:
    """The failing request and response as evidence (secrets redacted, volatile parts gone)."""
    req = response.request
    body = req.body.decode("utf-8", "replace") if isinstance(req.body, bytes) else req.body
    headers = {k: ", ".join(v) if isinstance(v, list) else v for k, v in response.headers.items()}
    ex = Exchange(req.method, req.url, _stable(dict(req.headers)), body)
    ex.status = response.status_code
    ex.response_headers = _stable(headers)
    ex.response_body = response.content.decode("utf-8", "replace")[:MAX_BODY_CHARS]
    return ex


def _send(case: Any, live: Live, run: Run) -> None:
    headers = {"X-API-Key": live.api_key} if live.api_key else {}
    kwargs = {"base_url": live.url, "headers": headers, "timeout": TIMEOUT_S}
    run.cases += 1
    try:
        response = case.call(**kwargs)
    except requests.RequestException as exc:
        req = exc.request
        ex = Exchange(case.method, str(getattr(req, "url", case.formatted_path)), {}, None)
        ex.error = f"{type(exc).__name__}: {exc}"
        run.failures.append((f"no response: {ex.error}", ex, Counter({"transport": 1})))
        return
    run.statuses[response.status_code] += 1
    sse = _is_sse(response)
    checks = SSE_CHECKS if sse else CHECKS
    try:
        case.validate_response(response, checks=checks, headers=headers, transport_kwargs=kwargs)
    except FailureGroup as group:
        codes = Counter(f"{f.code} {f.title}" for f in group.exceptions)
        run.failures.append((str(group).strip(), _exchange(response), codes))
        return
    problems = _sse_problems(response.content.decode("utf-8", "replace")) if sse else []
    if problems:
        message = "SSE events violate their payload schemas:\n" + "\n".join(problems)
        run.failures.append((message, _exchange(response), Counter({"SSE event payload": 1})))


def _is_sse(response: Any) -> bool:
    value = response.headers.get("content-type") or response.headers.get("Content-Type") or [""]
    value = value[0] if isinstance(value, list) else value
    return value.split(";")[0].strip().lower() == "text/event-stream"


def _sse_problems(text: str) -> list[str]:
    """Each frame's `data` must be JSON matching the payload schema of its `event` name."""
    problems = []
    for n, frame in enumerate(f for f in text.replace("\r\n", "\n").split("\n\n") if f.strip()):
        fields: dict[str, str] = {}
        for line in frame.split("\n"):
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            fields[name] = (
                f"{fields[name]}\n{value}" if name == "data" and name in fields else value
            )
        event = fields.get("event", "message")
        if event not in SSE_EVENTS:
            problems.append(f"event #{n}: unknown event name {event!r}")
            continue
        try:
            data = json.loads(fields.get("data", ""))
        except ValueError:
            problems.append(f"event #{n} ({event}): data is not JSON: {fields.get('data')!r}")
            continue
        validator = validator_at("data.yaml", f"/components/schemas/{SSE_EVENTS[event]}")
        problems += [f"event #{n} ({event}): {e.message}" for e in validator.iter_errors(data)]
    return problems


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


@pytest.mark.parametrize(("doc", "op_id"), _params())
def test_operation_conforms_to_the_contract(doc: str, op_id: str, live: Live, orch) -> None:
    operation = _schema(doc).find_operation_by_id(op_id)
    feature = _feature(OPERATIONS[op_id][1])
    if feature and not _claims(live.capabilities, feature):
        pytest.skip(f"not-supported: the target does not claim the `{feature}` feature")
    fixed = {"path_parameters": {"id": MISSING_POOL}} if op_id in DESTRUCTIVE else {}
    run = Run()
    for mode, examples in EXAMPLES.items():
        _exercise(operation, mode, examples, live, run, **fixed)
    live_kwargs = None if op_id in DESTRUCTIVE else _live_kwargs(op_id, live)
    if live_kwargs is not None:
        _exercise(operation, GenerationMode.POSITIVE, 1, live, run, **live_kwargs)
    if run.failures:
        orch.exchanges.append(run.failures[0][1])
        raise AssertionError(_summary(op_id, run))
