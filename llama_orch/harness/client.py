"""A small OrchQueue v1 client that keeps evidence of every exchange.

Usable on its own; the harness checks use it so that a failing check can show the request,
the response (credentials redacted) and a `curl` line that reproduces it. Every call has a
timeout, so a hanging target produces a failure with evidence, not a hung run.
"""

from __future__ import annotations

import json
import shlex
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from llama_orch.harness.description import Auth
from llama_orch.harness.outcomes import Violation
from llama_orch.harness.results import Evidence
from llama_orch.harness.rules import AUTH, STREAM_FRAMING, STREAM_JSON, STREAM_ORDER
from llama_orch.harness.sse import TERMINAL, SseEvent, StreamRead, read_stream
from llama_orch.harness.timeouts import DEFAULT, Timeouts

# The OrchQueue v1 event names (contracts/openapi/data.yaml x-sse-events).
SSE_EVENT_NAMES = ("started", "token", "metrics", "end", "error")

REDACTED = "[REDACTED]"
_SECRET_HEADERS = {"authorization", "x-api-key", "cookie", "set-cookie"}
MAX_BODY_CHARS = 2000
# Transport-level or per-run headers: left out of evidence so reports stay identical across runs.
_VOLATILE_HEADERS = {
    "content-length",
    "host",
    "accept-encoding",
    "connection",
    "user-agent",
    "date",
}


@dataclass
class Exchange:
    """One request and its response, as text, with secrets removed."""

    method: str
    url: str
    request_headers: dict[str, str]
    request_body: str | None
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: str = ""
    error: str | None = None
    key_header: str = "Authorization"  # the header that carried the key

    def request_text(self) -> str:
        head = [f"{self.method} {self.url}"] + [
            f"{k}: {v}" for k, v in self.request_headers.items()
        ]
        return "\n".join(head) + (f"\n\n{self.request_body}" if self.request_body else "")

    def response_text(self) -> str:
        if self.error:
            return f"(no response: {self.error})"
        head = [f"HTTP {self.status}"] + [f"{k}: {v}" for k, v in self.response_headers.items()]
        return "\n".join(head) + (f"\n\n{self.response_body}" if self.response_body else "")

    def curl(self, api_key_env: str = "LLORCH_API_KEY") -> str:
        parts = ["curl", "-sS", "-X", self.method, self.url]
        secret = {*_SECRET_HEADERS, self.key_header.lower()}
        for key, value in self.request_headers.items():
            if key.lower() in secret:
                value = (
                    f"Bearer ${api_key_env}"
                    if key.lower() == "authorization"
                    else f"${api_key_env}"
                )
                parts += ["-H", f'"{key}: {value}"']
                continue
            parts += ["-H", shlex.quote(f"{key}: {value}")]
        if self.request_body:
            parts += ["--data", shlex.quote(self.request_body)]
        return " ".join(parts)

    def evidence(self, message: str) -> Evidence:
        return Evidence(message, self.request_text(), self.response_text(), self.curl())


def redact_headers(
    headers: httpx.Headers | dict[str, str], extra: Iterable[str] = ()
) -> dict[str, str]:
    secret = _SECRET_HEADERS | {h.lower() for h in extra}
    return {
        k: (REDACTED if k.lower() in secret else v)
        for k, v in headers.items()
        if k.lower() not in _VOLATILE_HEADERS
    }


def check_stream(events: list[SseEvent], ended: bool) -> None:
    """Raise a Violation when a stream breaks the basic SSE rules every check relies on.

    Checks of those rules fail on it; any other check reading the stream is blocked by it
    (its requirement becomes `unverified`, "blocked by ORCH-2002"), never failed.
    """
    unknown = sorted({e.event for e in events} - set(SSE_EVENT_NAMES))
    if unknown:
        raise Violation(STREAM_FRAMING, f"the stream used event names {unknown}")
    for e in events:
        if e.is_json_object:
            continue
        try:
            json.loads(e.raw)
        except ValueError:
            raise Violation(STREAM_JSON, f"{e.event} data is not JSON: {e.raw!r}") from None
        raise Violation(STREAM_ORDER, f"{e.event} data is JSON but not an object: {e.raw!r}")
    if ended and events and events[-1].event not in TERMINAL:
        raise Violation(STREAM_ORDER, "the stream closed without an end or error event")


def refused_own_key(method: str, path: str, status: int) -> None:
    """A request carrying the target's own key answered 401: the auth rule is broken."""
    if status == 401:
        raise Violation(AUTH, f"{method} {path} refused the target's own API key with 401")


class OrchClient:
    """OrchQueue v1 over HTTP with an evidence log (`exchanges`, newest last).

    Every call is bounded by `timeouts` (harness.timeouts): a hanging target costs at most
    the bound of the call, and the exchange so far is kept as evidence.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        auth: Auth | None = None,
        timeouts: Timeouts = DEFAULT,
        api_key_env: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.auth = auth or Auth()
        self.api_key_env = api_key_env or self.auth.key_env
        self.timeouts = timeouts
        self.http = httpx.Client(
            base_url=self.base_url,
            headers=self.auth.headers(api_key),
            timeout=httpx.Timeout(timeouts.request_s, connect=timeouts.connect_s),
        )
        self.exchanges: list[Exchange] = []

    @classmethod
    def for_target(cls, target: Any, key: str | None = None) -> OrchClient:
        """A client of `target` (harness.discovery.Target) with its key, or with `key`."""
        desc = target.description
        return cls(
            target.url,
            target.api_key if key is None else key,
            auth=desc.auth,
            timeouts=target.timeouts,
        )

    def close(self) -> None:
        self.http.close()

    def _redact(self, headers: httpx.Headers | dict[str, str]) -> dict[str, str]:
        return redact_headers(headers, extra=(self.auth.header_name(),))

    def _exchange(self, method: str, url: str, headers: Any, body: str | None) -> Exchange:
        ex = Exchange(method, url, self._redact(headers), body, key_header=self.auth.header_name())
        self.exchanges.append(ex)
        return ex

    # -- raw ---------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> httpx.Response:
        body_text = (
            json.dumps(json_body)
            if json_body is not None
            else (content.decode("utf-8", "replace")[:MAX_BODY_CHARS] if content else None)
        )
        request = self.http.build_request(
            method, path, json=json_body, content=content, headers=headers or {}
        )
        explicit = {k.lower() for k in (headers or {})}
        own = self.auth.header_name()
        if not auth and own.lower() not in explicit:  # drop only the client's own key
            request.headers.pop(own, None)
        ex = self._exchange(method, str(request.url), request.headers, body_text)
        try:
            response = self.http.send(request)
        except httpx.HTTPError as exc:
            ex.error = f"{type(exc).__name__}: {exc}"
            raise
        ex.status = response.status_code
        ex.response_headers = self._redact(response.headers)
        ex.response_body = response.text[:MAX_BODY_CHARS]
        if auth and self.sends_own_key(request.headers):
            refused_own_key(method, path, response.status_code)
        return response

    def sends_own_key(self, headers: httpx.Headers | dict[str, str]) -> bool:
        """Whether a request carries this client's key, as the client's own scheme sends it."""
        own = self.auth.header_name()
        expected = self.http.headers.get(own)
        return expected is not None and httpx.Headers(headers).get(own) == expected

    def stream(
        self,
        task_id: str,
        *,
        last_event_id: str | None = None,
        headers: dict[str, str] | None = None,
        within_s: float | None = None,
        stop: Callable[[list[SseEvent]], bool] | None = None,
        validate: bool = True,
    ) -> tuple[StreamRead, list[SseEvent]]:
        """Read a task's SSE stream to its end, `stop(events)`, or its time bound.

        A stream that never ends costs at most `within_s` (default timeouts.stream_s) plus
        one silence bound (timeouts.stream_gap_s); `read.timed_out` says it happened. With
        `validate`, a stream breaking the basic SSE rules raises a Violation.
        """
        hdrs = {"Accept": "text/event-stream", **(headers or {})}
        if last_event_id is not None:
            hdrs["Last-Event-ID"] = last_event_id
        url = f"/v1/tasks/{task_id}/stream"
        ex = self._exchange("GET", f"{self.base_url}{url}", {**self.http.headers, **hdrs}, None)
        read: StreamRead | None = None
        try:
            read = read_stream(
                self.http,
                url,
                headers=hdrs,
                gap_s=self.timeouts.stream_gap_s,
                total_s=self.timeouts.stream_s if within_s is None else within_s,
                stop=stop,
            )
        except httpx.HTTPError as exc:
            ex.error = f"{type(exc).__name__}: {exc}"
            raise
        ex.status = read.status
        ex.response_headers = self._redact(read.headers)
        ex.response_body = (read.body or read.raw)[:MAX_BODY_CHARS]
        if read.timed_out:
            ex.error = read.timed_out
        if self.sends_own_key({**self.http.headers, **hdrs}):
            refused_own_key("GET", url, read.status)
        if validate and read.status == 200:
            check_stream(read.events, read.ended)
        return read, read.events

    # -- convenience -------------------------------------------------------------------
    def submit(self, body: dict[str, Any], **kw: Any) -> httpx.Response:
        return self.request("POST", "/v1/tasks", json_body=body, **kw)

    def cancel(self, task_id: str, **kw: Any) -> httpx.Response:
        return self.request("POST", f"/v1/tasks/{task_id}/cancel", **kw)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    # -- typed OrchQueue v1 operations (one per operationId; the Pact consumer uses these) ----
    def get_session(self, session_id: str, **kw: Any) -> httpx.Response:
        """getSession: `200` with a SessionInfo."""
        return self.request("GET", f"/v1/sessions/{session_id}", **kw)

    def delete_session(self, session_id: str, **kw: Any) -> httpx.Response:
        """deleteSession: `204`; the session's KV cache is evicted."""
        return self.request("DELETE", f"/v1/sessions/{session_id}", **kw)

    def capabilities(self, **kw: Any) -> httpx.Response:
        """getCapabilities: `200` with the capability document."""
        return self.request("GET", "/v1/capabilities", **kw)

    def replica_sets(self, **kw: Any) -> httpx.Response:
        """listReplicaSets: `200` with an array of replica sets."""
        return self.request("GET", "/v1/replicasets", **kw)

    def pool_health(self, pool_id: str, **kw: Any) -> httpx.Response:
        """getPoolHealth: `200` with a PoolHealth."""
        return self.request("GET", f"/v1/pools/{pool_id}/health", **kw)

    def drain(self, pool_id: str, deadline_ms: int, **kw: Any) -> httpx.Response:
        """drainPool: `202`; the pool stops taking new work."""
        return self.request(
            "POST", f"/v1/pools/{pool_id}/drain", json_body={"deadline_ms": deadline_ms}, **kw
        )

    def reload(self, pool_id: str, new_model_ref: str, **kw: Any) -> httpx.Response:
        """reloadPool: `202`; the pool switches to `new_model_ref`."""
        return self.request(
            "POST", f"/v1/pools/{pool_id}/reload", json_body={"new_model_ref": new_model_ref}, **kw
        )

    def evidence(self, message: str) -> Evidence:
        """Evidence from the newest exchange (or just the message when there was none)."""
        return self.exchanges[-1].evidence(message) if self.exchanges else Evidence(message)


def task_body(
    *, engine: str, model_ref: str, prompt: str = "[[sim tokens=4]] hello", **extra: Any
) -> dict[str, Any]:
    """A valid TaskRequest with fresh ids; `extra` overrides or adds fields.

    `deadline_ms` is generous (timeouts.deadline_ms), never 0: only our spec reads 0 as "no
    deadline", another target may read it as "already late".
    """
    body: dict[str, Any] = {
        "task_id": str(uuid.uuid4()),
        "session_id": str(uuid.uuid4()),
        "workload": "completion",
        "model_ref": model_ref,
        "engine": engine,
        "ctx": 1024,
        "priority": "interactive",
        "max_tokens": 64,
        "deadline_ms": DEFAULT.deadline_ms,
        "prompt": prompt,
    }
    body.update(extra)
    return body
