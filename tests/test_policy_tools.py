"""Mediated fetch and search (OC-POLICY-4030..4033) against loopback HTTP servers only.

Two host names reach the same loopback server, `127.0.0.1` and `localhost`, so allow and deny
lists can be told apart without any traffic leaving the machine; hosts the policy refuses are
never contacted (the server counts its requests).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import parse_qs

import pytest
from jsonschema import Draft202012Validator

from llama_orch.policy_sdk import abi_schema
from llama_orch.reference_impl.config.policy import ToolsConfig
from llama_orch.reference_impl.policy.tools import MediatedTools
from tests._server import serve_asgi

SECRET_PAGE = (
    "<p>Write to alice.smith@example.com or call +1 555 123 4567.</p>"
    "<p>key=sk-live0123456789abcdefXYZ and AKIAABCDEFGHIJKLMNOP</p><p>public text</p>"
)
RESULT_SCHEMA = Draft202012Validator({"$defs": abi_schema()["$defs"], "$ref": "#/$defs/ToolResult"})


class Upstream:
    """A loopback site: pages of several types and sizes, a redirect, a JSON search."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.port = 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        self.hits.append(path)
        query = parse_qs(scope["query_string"].decode())
        status, ctype, body, extra = 200, "text/html; charset=utf-8", SECRET_PAGE.encode(), []
        if path == "/big":
            ctype, body = "text/plain", b"x" * 10_000
        elif path == "/json":
            ctype, body = "application/json", b'{"ok": true}'
        elif path == "/image":
            ctype, body = "image/png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64
        elif path == "/away":
            status, body = 302, b""
            extra = [(b"location", f"http://localhost:{self.port}/page".encode())]
        elif path == "/search":
            ctype = "application/json"
            n = int(query.get("n", ["5"])[0])
            hits = [
                {"title": "local", "url": f"http://127.0.0.1:{self.port}/a", "snippet": "ok"},
                {"title": "denied", "url": f"http://localhost:{self.port}/b", "snippet": "no"},
                {
                    "title": "mail bob@example.org",
                    "url": f"http://127.0.0.1:{self.port}/c?token=s3cr3t",
                    "snippet": "q=" + query.get("q", [""])[0],
                },
            ]
            body = json.dumps({"results": hits[:n]}).encode()
        headers = [(b"content-type", ctype.encode()), *extra]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    site = Upstream()
    with serve_asgi(site, what="loopback upstream") as url:
        site.port = int(url.rsplit(":", 1)[1])
        yield site


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def tools(upstream: Upstream, **overrides) -> tuple[MediatedTools, list[dict], Clock]:
    settings = {
        "enabled": True,
        "domains": {"allow": ["127.0.0.1", "localhost"], "deny": ["localhost"]},
        "mime": {"allow": ["text/*", "application/json"], "deny": []},
        "max_response_bytes": 4096,
        "rate": {"per_second": 100.0, "burst": 100},
        "search_endpoint": f"http://127.0.0.1:{upstream.port}/search",
        **overrides,
    }
    audit: list[dict] = []
    clock = Clock()
    return (
        MediatedTools(ToolsConfig.model_validate(settings), clock=clock, audit=audit.append),
        audit,
        clock,
    )


def fetch(url: str, **extra) -> dict:
    return {"tool_abi": "1.0", "tool": "fetch", "args": {"url": url}, **extra}


def url(upstream: Upstream, path: str, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{upstream.port}{path}"


@pytest.mark.req("OC-POLICY-4030")
def test_domain_lists_deny_wins_and_no_match_is_denied(upstream) -> None:
    t, audit, _ = tools(upstream)
    before = len(upstream.hits)
    ok = t.invoke(fetch(url(upstream, "/json")), caller="test")
    assert (ok["decision"], ok["reason"], ok["status"]) == ("allow", "ok", 200)
    denied = t.invoke(fetch(url(upstream, "/json", "localhost")), caller="test")
    assert (denied["decision"], denied["reason"]) == ("deny", "domain_denied")  # allowed too
    unknown = t.invoke(fetch(url(upstream, "/json", "127.0.0.2")), caller="test")
    assert (unknown["decision"], unknown["reason"]) == ("deny", "domain_not_allowed")
    scheme = t.invoke(fetch("file:///etc/passwd"), caller="test")
    assert (scheme["decision"], scheme["reason"]) == ("deny", "scheme_denied")
    assert len(upstream.hits) == before + 1  # refused hosts were never contacted
    assert [a["decision"] for a in audit] == ["allow", "deny", "deny", "deny"]


@pytest.mark.req("OC-POLICY-4030")
def test_a_redirect_to_a_denied_host_is_refused(upstream) -> None:
    t, _, _ = tools(upstream)
    result = t.invoke(fetch(url(upstream, "/away")), caller="test")
    assert (result["decision"], result["reason"], result["status"]) == (
        "deny",
        "domain_denied",
        302,
    )


@pytest.mark.req("OC-POLICY-4030")
def test_caller_hints_can_narrow_but_never_widen_the_domains(upstream) -> None:
    t, _, _ = tools(upstream)
    narrowed = fetch(url(upstream, "/json"), hints={"allowed_domains": ["example.org"]})
    assert t.invoke(narrowed, caller="test")["reason"] == "domain_not_allowed"
    widened = fetch(url(upstream, "/json", "localhost"), hints={"allowed_domains": ["localhost"]})
    assert t.invoke(widened, caller="test")["reason"] == "domain_denied"


@pytest.mark.req("OC-POLICY-4030")
def test_mime_lists_deny_wins_and_no_match_is_denied(upstream) -> None:
    t, _, _ = tools(upstream, mime={"allow": ["text/*", "application/json"], "deny": ["text/html"]})
    html = t.invoke(fetch(url(upstream, "/page")), caller="test")
    assert (html["decision"], html["reason"], html["mime"]) == ("deny", "mime_denied", "text/html")
    png = t.invoke(fetch(url(upstream, "/image")), caller="test")
    assert (png["decision"], png["reason"]) == ("deny", "mime_not_allowed")
    plain = t.invoke(fetch(url(upstream, "/big")), caller="test")
    assert plain["decision"] == "allow" and plain["body"] is not None
    assert html["body"] is None and png["body"] is None


@pytest.mark.req("OC-POLICY-4031")
def test_responses_are_cut_at_the_size_cap(upstream) -> None:
    t, audit, _ = tools(upstream, max_response_bytes=1000)
    capped = t.invoke(fetch(url(upstream, "/big")), caller="test")
    assert (capped["bytes"], capped["truncated"], len(capped["body"])) == (1000, True, 1000)
    hinted = t.invoke(fetch(url(upstream, "/big"), hints={"max_bytes": 100}), caller="test")
    assert (hinted["bytes"], hinted["truncated"]) == (100, True)
    small = t.invoke(fetch(url(upstream, "/json")), caller="test")
    assert (small["bytes"], small["truncated"]) == (12, False)
    assert [a["bytes_received"] for a in audit] == [1000, 100, 12]


@pytest.mark.req("OC-POLICY-4031")
def test_invocations_over_the_rate_cap_are_refused(upstream) -> None:
    t, _, clock = tools(upstream, rate={"per_second": 1.0, "burst": 2})
    reasons = [
        t.invoke(fetch(url(upstream, f"/json?n={i}")), caller="t")["reason"] for i in range(3)
    ]
    assert reasons == ["ok", "ok", "rate_limited"]
    clock.now += 1.0
    assert t.invoke(fetch(url(upstream, "/json?n=9")), caller="t")["reason"] == "ok"


@pytest.mark.req("OC-POLICY-4031")
def test_secrets_and_personal_data_are_redacted_from_results(upstream) -> None:
    t, _, _ = tools(upstream, redaction={"patterns": [r"public\s+text"]})
    body = t.invoke(fetch(url(upstream, "/page")), caller="test")["body"]
    for leaked in ("alice.smith@example.com", "555 123 4567", "sk-live0123", "AKIAABCDEFGH"):
        assert leaked not in body
    assert "public text" not in body  # the operator's own pattern
    assert body.count("[REDACTED]") == 5 and "<p>" in body


@pytest.mark.req("OC-POLICY-4031")
def test_redaction_switches_are_honoured(upstream) -> None:
    t, _, _ = tools(upstream, redaction={"emails": False, "phone_numbers": False})
    body = t.invoke(fetch(url(upstream, "/page")), caller="test")["body"]
    assert "alice.smith@example.com" in body and "555 123 4567" in body
    assert "sk-live0123" not in body  # credentials are always redacted


@pytest.mark.req("OC-POLICY-4032")
def test_every_invocation_leaves_one_audit_record_without_secrets_or_bodies(upstream) -> None:
    t, audit, _ = tools(upstream, rate={"per_second": 1.0, "burst": 1})
    secret_url = url(upstream, "/page?token=tok-123&q=visible").replace(
        "http://", "http://user:hunter2@"
    )
    requests = [
        fetch(secret_url, correlation_id="corr-1"),
        fetch(secret_url, correlation_id="corr-2"),  # same request: answered from the cache
        fetch(url(upstream, "/json"), correlation_id="corr-3"),  # over the rate cap
        fetch(url(upstream, "/x", "localhost"), correlation_id="corr-4"),
        {"tool_abi": "1.0", "tool": "fetch", "args": {}},
    ]
    for r in requests:
        t.invoke(r, caller="plugin-x")
    assert len(audit) == len(requests)
    first = audit[0]
    assert first["url"] == (
        f"http://[REDACTED]@127.0.0.1:{upstream.port}/page?token=[REDACTED]&q=visible"
    )
    assert (first["decision"], first["reason"], first["caller"]) == ("allow", "ok", "plugin-x")
    assert first["bytes_received"] == len(SECRET_PAGE.encode()) and first["bytes_returned"] > 0
    assert [a["cached"] for a in audit[:2]] == [False, True]
    assert [a["reason"] for a in audit[2:]] == ["rate_limited", "domain_denied", "invalid_request"]
    assert [a["correlation_id"] for a in audit[:4]] == ["corr-1", "corr-2", "corr-3", "corr-4"]
    text = json.dumps(audit)
    for leaked in ("hunter2", "tok-123", "public text", "alice.smith"):
        assert leaked not in text


@pytest.mark.req("OC-POLICY-4033")
def test_the_tool_abi_is_versioned_and_results_follow_its_schema(upstream) -> None:
    t, _, _ = tools(upstream)
    ok = t.invoke(fetch(url(upstream, "/json")), caller="test")
    assert ok["tool_abi"] == "1.0"
    minor = t.invoke({**fetch(url(upstream, "/json?m")), "tool_abi": "1.9"}, caller="test")
    assert minor["reason"] == "ok"  # a newer MINOR is additive and still understood
    major = t.invoke({**fetch(url(upstream, "/json")), "tool_abi": "2.0"}, caller="test")
    assert (major["decision"], major["reason"]) == ("deny", "tool_abi_unsupported")
    bad = t.invoke({"tool_abi": "1.0", "tool": "fetch", "args": {"url": 5}}, caller="test")
    assert bad["reason"] == "invalid_request"
    for result in (ok, minor, major, bad):
        assert RESULT_SCHEMA.is_valid(result), result


@pytest.mark.req("OC-POLICY-4033")
def test_same_inputs_and_same_policy_give_the_same_result(upstream) -> None:
    t, audit, clock = tools(upstream, cache_ttl_ms=1000)
    request = fetch(url(upstream, "/page?q=1"))
    first = t.invoke(request, caller="a")
    again = t.invoke(json.loads(json.dumps(request)), caller="b")
    clock.now += 5  # past the cache window: fetched again, still the same result
    later = t.invoke(request, caller="a")
    assert first == again == later
    assert [a["cached"] for a in audit] == [False, True, False]
    other_policy, _, _ = tools(upstream, max_response_bytes=50)
    assert other_policy.invoke(request, caller="a") != first  # another policy, another result


@pytest.mark.req("OC-POLICY-4030", "OC-POLICY-4031")
def test_search_results_are_filtered_by_domain_and_redacted(upstream) -> None:
    t, audit, _ = tools(upstream)
    request = {"tool_abi": "1.0", "tool": "search", "args": {"query": "hello", "max_results": 5}}
    result = t.invoke(request, caller="test")
    assert (result["decision"], result["reason"]) == ("allow", "ok")
    assert [h["title"] for h in result["results"]] == ["local", "mail [REDACTED]"]
    assert result["results"][1]["url"].endswith("/c?token=[REDACTED]")
    assert result["results"][0]["snippet"] == "ok" and result["body"] is None
    assert audit[-1]["query"] == "hello"
    assert RESULT_SCHEMA.is_valid(result)


@pytest.mark.req("OC-POLICY-4030")
def test_tools_refuse_when_disabled_not_granted_or_without_a_search_backend(upstream) -> None:
    off, _, _ = tools(upstream, enabled=False)
    assert off.invoke(fetch(url(upstream, "/json")), caller="t")["reason"] == "tools_disabled"
    t, _, _ = tools(upstream, search_endpoint=None)
    search = {"tool_abi": "1.0", "tool": "search", "args": {"query": "x"}}
    assert t.invoke(search, caller="t")["reason"] == "search_unavailable"
    granted_fetch = frozenset({"fetch"})
    assert t.invoke(search, caller="t", granted=granted_fetch)["reason"] == "not_granted"


@pytest.mark.req("OC-POLICY-4030", "OC-POLICY-4032", "OC-POLICY-4033")
def test_clients_use_the_tools_over_http_and_each_call_is_audited(upstream) -> None:
    import httpx

    from tests._server import running_server

    config = f"""
auth: {{api_keys_env: LLORCH_API_KEY}}
pools:
  - {{id: p, engine: llamacpp, adapter: mock, model: repo:mock/tiny, devices: [],
     allow_cpu_inference: true}}
policy:
  tools:
    enabled: true
    domains: {{allow: [127.0.0.1]}}
    search_endpoint: http://127.0.0.1:{upstream.port}/search
"""
    with running_server(config) as server:
        client = httpx.Client(base_url=server.url, headers=server.headers, timeout=10)
        caps = client.get("/v1/capabilities").json()["policy_host"]["tools"]
        assert caps == {"enabled": True, "tool_abi_version": "1.0", "tools": ["fetch", "search"]}
        page = url(upstream, "/page?token=t0k3n")
        body = {"tool_abi": "1.0", "args": {"url": page}}
        resp = client.post("/v1/tools/fetch", json=body, headers={"X-Correlation-Id": "agent-1"})
        assert resp.status_code == 200, resp.text
        result = resp.json()
        assert (result["decision"], result["reason"], result["tool"]) == ("allow", "ok", "fetch")
        assert "alice.smith@example.com" not in result["body"] and RESULT_SCHEMA.is_valid(result)
        away = {"tool_abi": "1.0", "args": {"url": url(upstream, "/x", "localhost")}}
        assert client.post("/v1/tools/fetch", json=away).json()["reason"] == "domain_not_allowed"
        search = {"tool_abi": "1.0", "args": {"query": "hi"}}
        assert client.post("/v1/tools/search", json=search).json()["reason"] == "ok"
        assert client.post("/v1/tools/browse", json=body).status_code == 404
        assert client.post("/v1/tools/fetch", content=b"[1,2").status_code == 400
        audit = [
            json.loads(x) for x in server.logs.getvalue().splitlines() if '"tool_invocation"' in x
        ]
        assert [a["caller"] for a in audit] == ["client:default"] * 3
        assert audit[0]["correlation_id"] == "agent-1"
        assert audit[0]["url"].endswith("/page?token=[REDACTED]")
        assert "t0k3n" not in server.logs.getvalue()
        client.close()
