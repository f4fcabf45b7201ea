"""A small OrchQueue v1 client that keeps evidence of every exchange.

Usable on its own; the harness checks use it so that a failing check can show the request,
the response (credentials redacted) and a `curl` line that reproduces it. Every call has a
timeout, so a hanging target produces a failure with evidence, not a hung run.
"""

from __future__ import annotations

import json
import shlex
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from httpx_sse import connect_sse

from llama_orch.harness.results import Evidence

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
        for key, value in self.request_headers.items():
            if key.lower() in _SECRET_HEADERS:
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


def redact_headers(headers: httpx.Headers | dict[str, str]) -> dict[str, str]:
    return {
        k: (REDACTED if k.lower() in _SECRET_HEADERS else v)
        for k, v in headers.items()
        if k.lower() not in _VOLATILE_HEADERS
    }


@dataclass
class SseEvent:
    event: str
    data: Any
    id: str | None


class OrchClient:
    """OrchQueue v1 over HTTP with an evidence log (`exchanges`, newest last)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout_s: float = 30.0,
        api_key_env: str = "LLORCH_API_KEY",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=5.0),
        )
        self.exchanges: list[Exchange] = []

    def close(self) -> None:
        self.http.close()

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
        if not auth and "authorization" not in explicit:  # drop only the client's own key
            request.headers.pop("Authorization", None)
        ex = Exchange(method, str(request.url), redact_headers(request.headers), body_text)
        self.exchanges.append(ex)
        try:
            response = self.http.send(request)
        except httpx.HTTPError as exc:
            ex.error = f"{type(exc).__name__}: {exc}"
            raise
        ex.status = response.status_code
        ex.response_headers = redact_headers(response.headers)
        ex.response_body = response.text[:MAX_BODY_CHARS]
        return response

    def stream(
        self,
        task_id: str,
        *,
        last_event_id: str | None = None,
        headers: dict[str, str] | None = None,
        deadline_s: float | None = None,
    ) -> tuple[httpx.Response, list[SseEvent]]:
        """Read a task's SSE stream to its end; the events and the opening response.

        The client timeout bounds each read; `deadline_s` bounds the whole stream, so a
        target that keeps sending heartbeats but never ends it raises httpx.ReadTimeout.
        """
        ends_at = None if deadline_s is None else time.monotonic() + deadline_s
        hdrs = dict(headers or {})
        if last_event_id is not None:
            hdrs["Last-Event-ID"] = last_event_id
        url = f"/v1/tasks/{task_id}/stream"
        ex = Exchange(
            "GET", f"{self.base_url}{url}", redact_headers({**self.http.headers, **hdrs}), None
        )
        self.exchanges.append(ex)
        events: list[SseEvent] = []
        try:
            with connect_sse(self.http, "GET", url, headers=hdrs) as source:
                ex.status = source.response.status_code
                ex.response_headers = redact_headers(source.response.headers)
                if source.response.status_code != 200:
                    source.response.read()
                    ex.response_body = source.response.text[:MAX_BODY_CHARS]
                    return source.response, events
                for sse in source.iter_sse():
                    try:
                        data = json.loads(sse.data)
                    except ValueError:
                        data = sse.data
                    events.append(SseEvent(sse.event, data, sse.id or None))
                    if ends_at is not None and time.monotonic() > ends_at:
                        raise httpx.ReadTimeout(f"stream not finished within {deadline_s} s")
                response = source.response
        except httpx.HTTPError as exc:
            ex.error = f"{type(exc).__name__}: {exc}"
            raise
        ex.response_body = "\n".join(
            f"event: {e.event} data: {json.dumps(e.data)}" for e in events
        )[:MAX_BODY_CHARS]
        return response, events

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
    """A valid TaskRequest with fresh ids; `extra` overrides or adds fields."""
    body: dict[str, Any] = {
        "task_id": str(uuid.uuid4()),
        "session_id": str(uuid.uuid4()),
        "workload": "completion",
        "model_ref": model_ref,
        "engine": engine,
        "ctx": 1024,
        "priority": "interactive",
        "max_tokens": 64,
        "deadline_ms": 0,
        "prompt": prompt,
    }
    body.update(extra)
    return body
