"""The rules that make one fault fail only the requirements whose text it breaks (8111).

Unit level, no target: how a check's ending is classified (a Violation or an unanswered
operation fails the requirements it names among the check's own and blocks the rest), how a
partial failure bears on each requirement's verdict, the basic SSE rules every stream reader
relies on, which operation a request belongs to, the own-key rule of the client, and the
contract's SSE body pattern (any WHATWG-legal stream, no `id:` lines demanded).
"""

from __future__ import annotations

import re

import httpx
import pytest

from llama_orch.harness.client import OrchClient, check_stream
from llama_orch.harness.contracts.data_plane import SSE_EXAMPLE, SSE_RE
from llama_orch.harness.outcomes import PreconditionError, Violation, classify
from llama_orch.harness.results import CheckResult, Evidence, Outcome
from llama_orch.harness.rules import AUTH, STREAM_FRAMING, STREAM_JSON, STREAM_ORDER, answering
from llama_orch.harness.sse import SseDecoder
from llama_orch.harness.verdicts import Verdict, compute, root_causes


class Req:
    def __init__(self, req_id: str) -> None:
        self.id, self.level, self.profile, self.verify = req_id, "must", "core", "black-box"


@pytest.mark.req("OC-HARNESS-8111")
def test_a_violation_fails_only_the_requirements_it_names_among_the_checks_own() -> None:
    own = ("ORCH-2002", "OC-CTRL-2022")
    partial = classify(Violation(STREAM_JSON, "data is not JSON"), own, in_call=True)
    assert partial.outcome is Outcome.FAILED and partial.fails == ()  # all of its own
    narrow = classify(Violation(STREAM_ORDER, "no end"), own, in_call=True)
    assert narrow.outcome is Outcome.FAILED and narrow.fails == ("OC-CTRL-2022",)
    elsewhere = classify(Violation(AUTH, "401"), own, in_call=True)
    assert elsewhere.outcome is Outcome.ERROR and elsewhere.blocked_by == AUTH
    setup = classify(PreconditionError("nothing admitted"), own, in_call=True)
    assert setup.outcome is Outcome.ERROR and not setup.blocked_by


@pytest.mark.req("OC-HARNESS-8111", "OC-HARNESS-8010")
def test_an_operation_that_does_not_answer_breaks_that_operations_requirement() -> None:
    request = httpx.Request("GET", "http://target/v1/sessions/6f1c2a9e-4b7d-4c1e-9a51-0d3e8b7f2c10")
    timeout = httpx.ReadTimeout("timed out", request=request)
    mine = classify(timeout, ("ORCH-2004",), in_call=True)
    assert mine.outcome is Outcome.FAILED and "did not answer" in mine.message
    other = classify(timeout, ("ORCH-2005",), in_call=True)
    assert other.outcome is Outcome.ERROR and other.blocked_by == ("ORCH-2004",)
    unknown = httpx.ReadTimeout("timed out", request=httpx.Request("GET", "http://t/elsewhere"))
    assert classify(unknown, ("ORCH-2005",), in_call=True).outcome is Outcome.FAILED


@pytest.mark.req("OC-HARNESS-8111", "OC-HARNESS-8103")
def test_a_partial_failure_fails_its_requirements_and_blocks_the_others() -> None:
    reqs = [Req("ORCH-2002"), Req("ORCH-2009"), Req("OC-CTRL-2020")]
    schema = CheckResult(
        "schema::streamTask",
        "schema",
        ("ORCH-2002", "ORCH-2009"),
        Outcome.FAILED,
        Evidence("unknown event name"),
        fails=("ORCH-2002",),
    )
    framing = CheckResult("bdd", "bdd", ("OC-CTRL-2020",), Outcome.PASSED)
    verdicts = {v.id: v for v in compute(reqs, [schema, framing], profile="core")}
    assert verdicts["ORCH-2002"].verdict is Verdict.FAIL
    assert verdicts["ORCH-2009"].verdict is Verdict.UNVERIFIED
    assert (verdicts["ORCH-2009"].reason or "").startswith("blocked by ORCH-2002")
    assert verdicts["OC-CTRL-2020"].verdict is Verdict.PASS
    (entry,) = verdicts["ORCH-2009"].checks
    assert entry.outcome is Outcome.ERROR and entry.blocked_by == ("ORCH-2002",)
    assert root_causes(verdicts.values()) == ["ORCH-2002"]


def _events(text: str):
    decoder = SseDecoder()
    return decoder.feed(text)


@pytest.mark.req("OC-HARNESS-8111")
@pytest.mark.parametrize(
    ("stream", "ended", "rule"),
    [
        ('event: tok\ndata: {"t":"a","i":0}\n\n', False, STREAM_FRAMING),
        ("event: started\ndata: queue_position=0\n\n", False, STREAM_JSON),
        ("event: started\ndata: [1, 2]\n\n", False, STREAM_ORDER),
        ('event: started\ndata: "text"\n\n', False, STREAM_ORDER),
        ('event: token\ndata: {"t":"a","i":0}\n\n', True, STREAM_ORDER),
    ],
)
def test_the_basic_stream_rules_name_the_requirement_they_belong_to(
    stream: str, ended: bool, rule: tuple[str, ...]
) -> None:
    with pytest.raises(Violation) as caught:
        check_stream(_events(stream), ended)
    assert caught.value.requirements == rule


def test_a_legal_stream_passes_the_basic_rules() -> None:
    check_stream(_events(SSE_EXAMPLE), True)


@pytest.mark.parametrize(
    ("method", "path", "ids"),
    [
        ("POST", "/v1/tasks", ("ORCH-2001",)),
        ("GET", "/v1/tasks/abc/stream", ("ORCH-2002",)),
        ("POST", "/v1/tasks/abc/cancel", ("ORCH-2003",)),
        ("GET", "/v1/sessions/abc", ("ORCH-2004",)),
        ("DELETE", "/v1/sessions/abc", ("ORCH-2005",)),
        ("POST", "/v1/pools/p/drain", ("ORCH-2101",)),
        ("GET", "/v1/pools/p/health", ("ORCH-2103", "OC-CTRL-2001")),
        ("GET", "/v1/replicasets", ("ORCH-2104",)),
        ("GET", "/metrics", ("ORCH-3028",)),
        ("GET", "/v1/nowhere", ()),
    ],
)
def test_each_operation_names_the_requirement_of_its_answer(
    method: str, path: str, ids: tuple[str, ...]
) -> None:
    assert answering(method, path) == ids


@pytest.mark.req("OC-HARNESS-8110", "OC-HARNESS-8111")
def test_the_target_refusing_its_own_key_breaks_the_auth_rule() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"code": "ADMISSION_REJECT", "message": "no"})

    client = OrchClient("http://target", "the-key")
    client.http = httpx.Client(
        base_url="http://target",
        headers=client.http.headers,
        transport=httpx.MockTransport(handler),
    )
    with pytest.raises(Violation) as caught:
        client.get("/v1/replicasets")
    assert caught.value.requirements == AUTH
    assert client.get("/v1/replicasets", auth=False).status_code == 401  # a refusal asked for
    explicit = client.get("/v1/replicasets", headers={"Authorization": "Bearer other"}, auth=False)
    assert explicit.status_code == 401
    client.close()


LEGAL = {
    "as written": SSE_EXAMPLE,
    "CRLF, no space after the colon": SSE_EXAMPLE.replace("\n", "\r\n").replace(": ", ":"),
    "CR line ends": SSE_EXAMPLE.replace("\n", "\r"),
    "keep-alive comments": ": ping\n\n" + SSE_EXAMPLE.replace("\n\n", "\n\n: ping\n\n"),
    "no id lines": re.sub(r"id: \d+\n", "", SSE_EXAMPLE),
    "retry and comment lines in events": SSE_EXAMPLE.replace(
        "event: token\n", "event: token\n: hi\nretry: 10\n"
    ),
    "fields the SSE rules ignore": SSE_EXAMPLE.replace("event:", "x-vendor: 1\nevent:"),
    "out of order (not this pattern's business)": SSE_EXAMPLE.replace("started", "metrics", 1),
}
ILLEGAL = {
    "an unknown event name": SSE_EXAMPLE.replace("event: metrics", "event: stats"),
    "data before its event line": 'data: {"i":0}\nevent: token\n\n',
    "an event without an event line": "data: {}\n\n",
    "an event line without its data line": SSE_EXAMPLE + "event: token\n\n",
}


@pytest.mark.req("OC-HARNESS-8009")
@pytest.mark.parametrize("name", sorted(LEGAL))
def test_the_pact_stream_pattern_accepts_every_legal_form(name: str) -> None:
    assert re.match(SSE_RE, LEGAL[name]), name


@pytest.mark.parametrize("name", sorted(ILLEGAL))
def test_the_pact_stream_pattern_refuses_broken_framing(name: str) -> None:
    assert not re.match(SSE_RE, ILLEGAL[name]), name
