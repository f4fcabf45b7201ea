"""Mediated `fetch` and `search` (OC-POLICY-4030..4033): the operator's policy on every call.

One entry point, `MediatedTools.invoke(request)`, takes a ToolRequest of the tool ABI
(`policy-abi-v1.schema.json`, `tool_abi` 1.x) and answers a ToolResult. The order of
decisions, each a typed `reason` in the result:

1. the request is checked against the schema and the tool ABI MAJOR (`invalid_request`,
   `tool_abi_unsupported`), the tool against the caller's grants (`not_granted`) and the
   config (`tools_disabled`, `search_unavailable`);
2. a URL's scheme and host against the domain lists (`scheme_denied`, `domain_denied`,
   `domain_not_allowed`); the caller's `allowed_domains` hint can only narrow the lists;
3. the same request under the same policy within `cache_ttl_ms` answers the same result
   (no upstream call, no rate charge);
4. the rate cap (`rate_limited`); then the upstream request, redirects re-checked per hop;
5. the response's media type against the MIME lists (`mime_denied`, `mime_not_allowed`);
6. the body, cut at the size cap (`truncated`), decoded and redacted (`ok`).

Every invocation writes one audit record: the redacted URL or query, decision, reason and byte
counts, never the raw URL, credentials or bodies. Results carry no timings, so the same inputs
under the same policy give the same result.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import httpx
from jsonschema import Draft202012Validator

from llama_orch.policy_sdk import TOOL_ABI_VERSION, abi_schema, version_text
from llama_orch.reference_impl.config.policy import ToolsConfig
from llama_orch.reference_impl.core.quotas import TokenBucket
from llama_orch.reference_impl.policy.tools.redact import Redactor
from llama_orch.reference_impl.policy.tools.rules import (
    AllowDeny,
    domain_matches,
    media_type,
    mime_matches,
)

log = logging.getLogger("llama_orch.reference_impl.policy.audit")

MAX_REDIRECTS = 3
CACHE_ENTRIES = 256
TEXT_TYPES = ("application/json", "application/xml", "application/xhtml+xml")

Audit = Callable[[dict[str, Any]], None]
Count = Callable[[str, str], None]


def _request_validator() -> Draft202012Validator:
    schema = abi_schema()
    return Draft202012Validator({"$defs": schema["$defs"], "$ref": "#/$defs/ToolRequest"})


_REQUEST = _request_validator()


class MediatedTools:
    """The tools as configured; one per host. Safe to call from several threads (plugins on
    the event loop, clients from worker threads): only the cache and the rate bucket are shared,
    under a lock held for bookkeeping only, never across an upstream request."""

    def __init__(
        self,
        config: ToolsConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
        audit: Audit | None = None,
        count: Count | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._domains = AllowDeny.of(config.domains.allow, config.domains.deny)
        self._mime = AllowDeny.of(config.mime.allow, config.mime.deny)
        self._bucket = TokenBucket(config.rate.per_second, config.rate.burst)
        r = config.redaction
        self.redactor = Redactor(
            query_params=r.query_params,
            patterns=r.patterns,
            emails=r.emails,
            phone_numbers=r.phone_numbers,
        )
        self._client = httpx.Client(
            transport=transport, timeout=config.timeout_ms / 1000, follow_redirects=False
        )
        self._cache: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()
        self._audit = audit or _log_audit
        self._count = count
        self.fingerprint = hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:16]

    def close(self) -> None:
        self._client.close()

    # -- the entry point -----------------------------------------------------------------------

    def invoke(
        self,
        request: Mapping[str, Any],
        *,
        caller: str,
        granted: frozenset[str] | None = None,
    ) -> dict[str, Any]:
        """Apply the policy to one ToolRequest and answer its ToolResult (never raises)."""
        started = time.perf_counter()
        tool = request.get("tool") if isinstance(request.get("tool"), str) else "fetch"
        tool = tool if tool in ("fetch", "search") else "fetch"
        result, cached, received = self._decide(request, tool, granted)
        self._record(request, tool, caller, result, cached, received, started)
        return result

    def _decide(
        self, request: Mapping[str, Any], tool: str, granted: frozenset[str] | None
    ) -> tuple[dict[str, Any], bool, int]:
        refusal = self._precheck(request, tool, granted)
        if refusal is not None:
            return _result(tool, "deny", refusal), False, 0
        args = request["args"]
        hints = request.get("hints") or {}
        if tool == "fetch":
            why = self._url_refusal(args["url"], hints)
            if why is not None:
                return _result(tool, "deny", why), False, 0
        key = self._cache_key(tool, args, hints)
        now = self._clock()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] > now:
                return hit[1], True, 0
            if self._bucket.wait_ms(round(now * 1000)):
                return _result(tool, "deny", "rate_limited"), False, 0
            self._bucket.take(round(now * 1000))
        if tool == "fetch":
            result, received = self._fetch(args["url"], hints)
        else:
            result, received = self._search(args["query"], int(args.get("max_results", 5)), hints)
        if result["reason"] != "upstream_error":
            with self._lock:
                self._remember(key, now, result)
        return result, False, received

    def _precheck(
        self, request: Mapping[str, Any], tool: str, granted: frozenset[str] | None
    ) -> str | None:
        if not _REQUEST.is_valid(request):
            return "invalid_request"
        major = str(request["tool_abi"]).split(".", 1)[0]
        if major != str(TOOL_ABI_VERSION[0]):
            return "tool_abi_unsupported"
        if granted is not None and tool not in granted:
            return "not_granted"
        if not self.config.enabled:
            return "tools_disabled"
        arg = "url" if tool == "fetch" else "query"
        if arg not in request["args"]:
            return "invalid_request"
        if tool == "search" and self.config.search_endpoint is None:
            return "search_unavailable"
        return None

    def _url_refusal(self, url: str, hints: Mapping[str, Any]) -> str | None:
        try:
            parts = urlsplit(url)
            host = parts.hostname or ""
        except ValueError:
            return "invalid_request"
        if parts.scheme not in ("http", "https") or not host:
            return "scheme_denied"
        verdict = self._domains.judge(host, domain_matches)
        if verdict is not None:
            return f"domain_{verdict}"
        narrowed = hints.get("allowed_domains")
        if narrowed is not None and not any(domain_matches(host, p) for p in narrowed):
            return "domain_not_allowed"
        return None

    # -- upstream ------------------------------------------------------------------------------

    def _limit(self, hints: Mapping[str, Any]) -> int:
        cap = self.config.max_response_bytes
        wanted = hints.get("max_bytes")
        return min(cap, wanted) if isinstance(wanted, int) else cap

    def _fetch(self, url: str, hints: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
        for hop in range(MAX_REDIRECTS + 1):
            try:
                with self._client.stream("GET", url) as resp:
                    if resp.is_redirect and "location" in resp.headers and hop < MAX_REDIRECTS:
                        url = urljoin(url, resp.headers["location"])
                        why = self._url_refusal(url, hints)
                        if why is not None:
                            return _result("fetch", "deny", why, status=resp.status_code), 0
                        continue
                    return self._body("fetch", resp, hints)
            except httpx.HTTPError:
                return _result("fetch", "allow", "upstream_error"), 0
        return _result("fetch", "deny", "too_many_redirects"), 0  # pragma: no cover

    def _body(
        self, tool: str, resp: httpx.Response, hints: Mapping[str, Any], *, redact: bool = True
    ) -> tuple[dict[str, Any], int]:
        """The response under the MIME lists and the size cap; text bodies redacted unless
        the caller parses them first (search) and redacts the fields it keeps."""
        mime = media_type(resp.headers.get("content-type"))
        verdict = self._mime.judge(mime, mime_matches)
        if verdict is not None:
            return _result(tool, "deny", f"mime_{verdict}", status=resp.status_code, mime=mime), 0
        limit = self._limit(hints)
        data = bytearray()
        truncated = False
        for chunk in resp.iter_bytes():
            data += chunk
            if len(data) > limit:
                truncated = True
                del data[limit:]
                break
        received = len(data)
        body = None
        if mime.startswith("text/") or mime in TEXT_TYPES or mime.endswith(("+json", "+xml")):
            body = bytes(data).decode(resp.charset_encoding or "utf-8", errors="replace")
            body = self.redactor.text(body) if redact else body
        result = _result(
            tool,
            "allow",
            "ok",
            status=resp.status_code,
            mime=mime,
            size=received,
            truncated=truncated,
            body=body,
        )
        return result, received

    def _search(
        self, query: str, max_results: int, hints: Mapping[str, Any]
    ) -> tuple[dict[str, Any], int]:
        endpoint = self.config.search_endpoint or ""
        query_string = urlencode({"q": query, "n": max_results})
        url = f"{endpoint}{'&' if '?' in endpoint else '?'}{query_string}"
        try:
            with self._client.stream("GET", url) as resp:
                result, received = self._body("search", resp, hints, redact=False)
        except httpx.HTTPError:
            return _result("search", "allow", "upstream_error"), 0
        raw_body, result["body"] = result["body"], None  # never returned unredacted
        if result["decision"] != "allow" or raw_body is None:
            return result, received
        try:
            raw = json.loads(raw_body) if not result["truncated"] else {}
        except json.JSONDecodeError:
            raw = {}
        hits = []
        for item in (raw.get("results") if isinstance(raw, dict) else None) or []:
            if not isinstance(item, dict) or not isinstance(item.get("url"), str):
                continue
            if self._url_refusal(item["url"], hints) is not None:
                continue  # results pointing at places the policy denies are dropped
            hits.append(
                {
                    "title": self.redactor.text(str(item.get("title", ""))),
                    "url": self.redactor.url(item["url"]),
                    "snippet": self.redactor.text(str(item.get("snippet", ""))),
                }
            )
            if len(hits) >= max_results:
                break
        return {**result, "results": hits}, received

    # -- cache and audit -----------------------------------------------------------------------

    def _cache_key(self, tool: str, args: Mapping[str, Any], hints: Mapping[str, Any]) -> str:
        canonical = json.dumps([tool, args, hints, self.fingerprint], sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def _remember(self, key: str, now: float, result: dict[str, Any]) -> None:
        self._cache[key] = (now + self.config.cache_ttl_ms / 1000, result)
        self._cache.move_to_end(key)
        while len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)

    def _record(
        self,
        request: Mapping[str, Any],
        tool: str,
        caller: str,
        result: dict[str, Any],
        cached: bool,
        received: int,
        started: float,
    ) -> None:
        args = request.get("args") if isinstance(request.get("args"), dict) else {}
        record: dict[str, Any] = {
            "event": "tool_invocation",
            "tool": tool,
            "tool_abi": version_text(TOOL_ABI_VERSION),
            "caller": caller,
            "correlation_id": request.get("correlation_id"),
            "decision": result["decision"],
            "reason": result["reason"],
            "status": result["status"],
            "mime": result["mime"],
            "bytes_received": received,
            "bytes_returned": _returned(result),
            "truncated": result["truncated"],
            "cached": cached,
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
        }
        if isinstance(args.get("url"), str):
            record["url"] = self.redactor.url(args["url"])
        if isinstance(args.get("query"), str):
            record["query"] = self.redactor.text(args["query"])
        self._audit(record)
        if self._count is not None:
            self._count(tool, result["decision"])


def _returned(result: dict[str, Any]) -> int:
    body = result.get("body")
    n = len(body.encode()) if isinstance(body, str) else 0
    return n + sum(len(json.dumps(h).encode()) for h in result.get("results", ()))


def denied(tool: str, reason: str) -> dict[str, Any]:
    """A ToolResult refusing the call for `reason` (nothing was fetched)."""
    return _result(tool if tool in ("fetch", "search") else "fetch", "deny", reason)


def _log_audit(record: dict[str, Any]) -> None:
    log.info("tool invocation", extra=record)


def _result(
    tool: str,
    decision: str,
    reason: str,
    *,
    status: int | None = None,
    mime: str | None = None,
    size: int = 0,
    truncated: bool = False,
    body: str | None = None,
) -> dict[str, Any]:
    """A ToolResult (schema `ToolResult`); no timings, so equal inputs give equal results."""
    return {
        "tool_abi": version_text(TOOL_ABI_VERSION),
        "tool": tool,
        "decision": decision,
        "reason": reason,
        "status": status,
        "mime": mime,
        "bytes": size,
        "truncated": truncated,
        "body": body,
        "results": [],
    }
