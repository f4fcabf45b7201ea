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
from llama_orch.harness.collectors import collect_operations
from llama_orch.harness.discovery import Target
from llama_orch.harness.openapi import OPENAPI_DIR, SSE_EVENTS, validator_at
from llama_orch.harness.outcomes import precondition
from llama_orch.harness.registry import Check
from llama_orch.harness.signing import model_entry
from llama_orch.harness.sse import SseDecoder
from llama_orch.harness.steps.catalog import CATALOG, retire
from llama_orch.harness.steps.world import poll

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
PROMPT = "[[sim tokens=4]] schema check"
SLOW_PROMPT = "[[sim tokens=40 itl_ms=25]] schema check, canceled"


def _params() -> list:
    return [pytest.param(c, id=c.id) for c in collect_operations()]


@cache
def _schema(doc: str):
    """The contract document, with schemathesis defaults (no project config is discovered)."""
    return schemathesis.openapi.from_path(OPENAPI_DIR / doc, config=SchemathesisConfig())


# -- live resources ---------------------------------------------------------------------


@dataclass
class Live:
    """The target, and resources on it that stateful operations are pointed at.

    Tracebacks print the arguments of failing frames, so the target stays out of the repr.
    """

    target: Target = field(repr=False)
    client: OrchClient = field(repr=False)
    engine: str | None = None
    model: str | None = None
    pool: str | None = None
    models: list[str] = field(default_factory=list)  # catalog entries to retire at the end

    def model_entry(self) -> dict[str, Any] | None:
        """A catalog entry the target's trust policy accepts; None without a test CA."""
        registry = self.target.description.catalog.registry
        if self.target.authority is None or not registry:
            return None
        entry = model_entry(registry, signer=self.target.authority.issue())
        self.models.append(entry["id"])
        return entry

    def catalogued(self) -> str | None:
        """The id of an entry registered for the live request; None when none could be."""
        entry = self.model_entry()
        if entry is None:
            return None
        resp = self.client.request("POST", CATALOG, json_body=entry)
        return entry["id"] if resp.status_code == 201 else None

    def artifact(self) -> str | None:
        body = {"kind": "trace", "content": {"schema check": True}, "tags": ["llorch"]}
        resp = self.client.request("POST", "/v1/artifacts", json_body=body)
        return resp.json().get("id") if resp.status_code == 201 else None

    def body(self, prompt: str, **extra: Any) -> dict[str, Any]:
        assert self.engine and self.model
        return task_body(
            engine=self.engine,
            model_ref=self.model,
            prompt=prompt,
            deadline_ms=self.client.timeouts.deadline_ms,
            **extra,
        )

    def task(self, prompt: str = PROMPT, *, run: bool = True) -> dict[str, Any] | None:
        """An admitted task (streamed to its end when `run`); None when none can be admitted."""
        if self.engine is None or self.model is None:
            return None
        body = self.body(prompt, max_tokens=8)
        if self.client.submit(body).status_code != 202:
            return None
        if run:
            self.client.stream(body["task_id"], validate=False)
        return body

    def settle_pool(self) -> None:
        """Give a drained or reloaded pool back: reload its own model, wait until Ready."""
        if self.pool is None or self.model is None:
            return
        self.client.reload(self.pool, self.model)

        def ready() -> bool:
            resp = self.client.pool_health(self.pool)
            body = resp.json() if resp.status_code == 200 else {}
            return body.get("ready") is True and body.get("draining") is not True

        poll(ready, self.client.timeouts.settle_s, 0.1)


def _live_kwargs(op_id: str, live: Live) -> dict[str, Any] | None:
    """Fixed parts of a request that points the operation at a live resource."""
    if op_id == "createTask" and live.engine and live.model:
        return {"body": live.body(PROMPT)}
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
    if op_id == "drainPool" and live.pool:
        return {"path_parameters": {"id": live.pool}, "body": {"deadline_ms": 1000}}
    if op_id == "reloadPool" and live.pool and live.model:
        return {"path_parameters": {"id": live.pool}, "body": {"new_model_ref": live.model}}
    return _live_extended(op_id, live)


def _live_extended(op_id: str, live: Live) -> dict[str, Any] | None:
    """Live requests of the catalog and artifact operations (extended profile)."""
    if op_id == "createCatalogModel":
        entry = live.model_entry()
        return {"body": entry} if entry is not None else None
    if op_id in ("getCatalogModel", "verifyCatalogModel", "setCatalogModelState"):
        model_id = live.catalogued()
        if model_id is None:
            return None
        extra = {"body": {"state": "Active"}} if op_id == "setCatalogModelState" else {}
        return {"path_parameters": {"id": model_id}, **extra}
    if op_id == "getArtifact":
        artifact_id = live.artifact()
        return {"path_parameters": {"id": artifact_id}} if artifact_id else None
    return None


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
    cases: int = 0
    statuses: Counter = field(default_factory=Counter)
    failures: list[tuple[str, Exchange, Counter]] = field(default_factory=list)


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


def _send(case: Any, live: Live, run: Run) -> None:
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
        run.failures.append((f"no response: {ex.error}", ex, Counter({"transport": 1})))
        return
    run.statuses[response.status_code] += 1
    sse = _is_sse(response)
    checks = SSE_CHECKS if sse else CHECKS
    try:
        case.validate_response(response, checks=checks, headers=headers, transport_kwargs=kwargs)
    except FailureGroup as group:
        codes = Counter(f"{f.code} {f.title}" for f in group.exceptions)
        run.failures.append((str(group).strip(), _exchange(response, key_header), codes))
        return
    problems = _sse_problems(response.content.decode("utf-8", "replace")) if sse else []
    if problems:
        message = "SSE events violate their payload schemas:\n" + "\n".join(problems)
        run.failures.append(
            (message, _exchange(response, key_header), Counter({"SSE event payload": 1}))
        )


def _is_sse(response: Any) -> bool:
    value = response.headers.get("content-type") or response.headers.get("Content-Type") or [""]
    value = value[0] if isinstance(value, list) else value
    return value.split(";")[0].strip().lower() == "text/event-stream"


def _sse_problems(text: str) -> list[str]:
    """Each event's `data` must be JSON matching the payload schema of its `event` name."""
    problems = []
    decoder = SseDecoder()
    events = decoder.feed(text)
    decoder.close()
    for n, event in enumerate(events):
        if event.event not in SSE_EVENTS:
            problems.append(f"event #{n}: unknown event name {event.event!r}")
            continue
        if not isinstance(event.data, dict):
            problems.append(f"event #{n} ({event.event}): data is not a JSON object: {event.raw!r}")
            continue
        validator = validator_at("data.yaml", f"/components/schemas/{SSE_EVENTS[event.event]}")
        problems += [
            f"event #{n} ({event.event}): {e.message}" for e in validator.iter_errors(event.data)
        ]
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


@pytest.mark.parametrize("check", _params())
def test_operation_conforms_to_the_contract(check: Check, live: Live, orch) -> None:
    op_id = check.id.removeprefix("schema::")
    doc = check.source.split("#")[0].rpartition("/")[2]
    operation = _schema(doc).find_operation_by_id(op_id)
    fixed = {"path_parameters": {"id": MISSING_POOL}} if op_id in POOL_CHANGING else {}
    run = Run()
    try:
        for mode, examples in EXAMPLES.items():
            _exercise(operation, mode, examples, live, run, **fixed)
        live_kwargs = _live_kwargs(op_id, live)
        if live_kwargs is not None:
            _exercise(operation, GenerationMode.POSITIVE, 1, live, run, **live_kwargs)
    finally:
        if op_id in POOL_CHANGING:
            live.settle_pool()
    if run.failures:
        orch.exchanges.append(run.failures[0][1])
        raise AssertionError(_summary(op_id, run))
    success = sum(n for status, n in run.statuses.items() if 200 <= status < 300)
    precondition(
        success,
        f"{op_id}: no request got a success-class answer, so no documented success was "
        f"checked; statuses seen: {json.dumps(dict(sorted(run.statuses.items())))}",
    )
