"""The four report formats (specs/80 §5), rendered from the fixed fixture
tests/fixtures/report_results.json: snapshots catch any change users would see, the other
tests pin the properties the spec asks for (fields, order, determinism, redaction, escaping)."""

from __future__ import annotations

import dataclasses
import json
import random
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

from llama_orch.harness.reports import (
    Implementation,
    Report,
    ReportWriteError,
    RunInfo,
    build_report,
    redact,
    render_all,
    render_html,
    render_json,
    render_junit,
    render_markdown,
    write_reports,
)
from llama_orch.harness.requirements import RequirementRecord
from llama_orch.harness.results import CheckResult, Evidence, Outcome
from llama_orch.harness.verdicts import compute

FIXTURE = Path(__file__).parent / "fixtures" / "report_results.json"
SECRET = "sk-fixture-0123456789abcdef"


def fixture_data() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


def fixture_report(data: dict[str, Any] | None = None, *, shuffle: int | None = None) -> Report:
    """The Report of the fixture; `shuffle` reorders its inputs (the output must not change)."""
    data = data or fixture_data()
    reqs = [RequirementRecord(**r) for r in data["requirements"]]
    results = [
        CheckResult(
            id=r["id"],
            kind=r["kind"],
            requirement_ids=tuple(r["requirement_ids"]),
            outcome=Outcome(r["outcome"]),
            evidence=Evidence(**r["evidence"]),
            duration_s=r["duration_s"],
        )
        for r in data["results"]
    ]
    if shuffle is not None:
        random.Random(shuffle).shuffle(reqs)
        random.Random(shuffle + 1).shuffle(results)
    verdicts = compute(
        reqs,
        results,
        profile=data["profile"],
        only=set(data["only"]) if data["only"] is not None else None,
        waivers=data["waivers"],
        unsupported=data["unsupported"],
    )
    return build_report(
        verdicts,
        profile=data["profile"],
        implementation=Implementation(**data["implementation"]),
        spec_version=data["spec_version"],
        run=RunInfo.from_json(data["run"]),
        claims=data["claims"],
        secrets=data["secrets"],
    )


def _text_ext(ext: str) -> type[SingleFileSnapshotExtension]:
    return type(
        f"Text{ext.title()}Snapshot",
        (SingleFileSnapshotExtension,),
        {"_write_mode": WriteMode.TEXT, "file_extension": ext},
    )


FORMATS = {
    "compliance.json": (render_json, _text_ext("json")),
    "COMPLIANCE.md": (render_markdown, _text_ext("md")),
    "junit.xml": (render_junit, _text_ext("xml")),
    "index.html": (render_html, _text_ext("html")),
}


@pytest.fixture(scope="module")
def report() -> Report:
    return fixture_report()


@pytest.mark.req("OC-HARNESS-8301", "OC-HARNESS-8305", "OC-HARNESS-8306", "OC-HARNESS-8307")
@pytest.mark.parametrize("name", list(FORMATS))
def test_report_snapshot(report: Report, snapshot, name: str) -> None:
    render, ext = FORMATS[name]
    assert render(report) == snapshot(extension_class=ext)


@pytest.mark.req("OC-HARNESS-8301")
def test_write_reports_writes_the_four_files(report: Report, tmp_path: Path) -> None:
    paths = write_reports(report, tmp_path / "out")
    assert [p.name for p in paths] == [
        "compliance.json",
        "COMPLIANCE.md",
        "junit.xml",
        "index.html",
    ]
    texts = render_all(report)
    for path in paths:
        assert path.read_text(encoding="utf-8") == texts[path.name]
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ReportWriteError, match="cannot write reports"):
        write_reports(report, blocker)


@pytest.mark.req("OC-HARNESS-8302", "OC-HARNESS-8303")
def test_compliance_json_fields_and_order(report: Report) -> None:
    text = render_json(report)
    assert text.endswith("}\n") and text.startswith('{\n  "schema_version": 1,')
    doc = json.loads(text)
    assert list(doc) == [
        "schema_version", "implementation", "spec_version", "profile", "result",
        "summary", "requirements", "run",
    ]  # fmt: skip
    assert list(doc["implementation"]) == ["name", "version", "url"]
    assert list(doc["summary"]) == [
        "total", "pass", "fail", "not-supported", "skipped", "unverified", "uncovered",
        "waived", "claimed_not_shown", "root_causes",
    ]  # fmt: skip
    assert doc["summary"]["total"] == len(doc["requirements"]) == 13
    assert doc["result"] == "failure"
    for req in doc["requirements"]:
        assert list(req) == ["id", "level", "verify", "profile", "verdict", "reason", "checks"]
        assert (req["reason"] is None) == (
            req["verdict"] not in ("waived", "not-supported", "skipped", "unverified")
        )
        for c in req["checks"]:
            assert list(c) == ["id", "kind", "outcome", "evidence"]
            assert c["outcome"] in ("passed", "failed", "error", "not-run")
            assert (c["evidence"] is None) == (c["outcome"] == "passed")
    assert list(doc["run"]) == [
        "started_at", "finished_at", "duration_s", "harness_version", "host", "target",
        "durations",
    ]  # fmt: skip
    assert list(doc["run"]["target"]) == ["url", "embedded", "config", "pools"]


@pytest.mark.req("OC-HARNESS-8304")
def test_order_is_spec_file_then_id_and_checks_by_id(report: Report) -> None:
    doc = json.loads(render_json(report))
    ids = [r["id"] for r in doc["requirements"]]
    assert ids[:5] == ["ORCH-1101", "ORCH-2001", "ORCH-2007", "ORCH-3004", "ORCH-3041"]
    assert ids[5:10] == [f"OC-CTRL-{n}" for n in (2004, 2011, 2012, 2023, 2052)]
    assert ids[10:] == ["OC-POOL-3001", "OC-POOL-3002", "OC-POOL-3020"]
    for req in doc["requirements"]:
        check_ids = [c["id"] for c in req["checks"]]
        assert check_ids == sorted(check_ids)


def _run_free(name: str, text: str) -> str:
    """A report's text with its volatile part cut off."""
    if name == "compliance.json":
        doc = json.loads(text)
        doc.pop("run")
        return json.dumps(doc)
    if name == "COMPLIANCE.md":
        return text.split("\n## Run\n")[0]
    if name == "index.html":
        return re.sub(r'<section id="run">.*?</section>', "", text, flags=re.S)
    return text


@pytest.mark.req("OC-HARNESS-8304")
def test_reports_are_deterministic_and_volatile_values_only_in_run() -> None:
    data = fixture_data()
    base = render_all(fixture_report(data))
    other = json.loads(json.dumps(data))
    other["run"].update(started_at="2031-07-08T09:10:11Z", host="elsewhere", duration_s=99.5)
    other["run"]["target"]["url"] = "http://127.0.0.1:51999"
    for r in other["results"]:
        r["duration_s"] = r["duration_s"] + 3.21
    for seed in (1, 2):
        again = render_all(fixture_report(other, shuffle=seed))
        for name, text in base.items():
            assert _run_free(name, again[name]) == _run_free(name, text), name
    volatile = ["2025-01-02T03:04:05Z", "ci-runner-1", "40123", "7.25", "examples/mock.yaml"]
    for name, text in base.items():
        cut = _run_free(name, text)
        assert not [v for v in volatile if v in cut], name
    assert "ci-runner-1" in base["COMPLIANCE.md"] and "ci-runner-1" in base["index.html"]


@pytest.mark.req("OC-HARNESS-8308", "OC-HARNESS-8003")
def test_credentials_are_redacted_in_every_format(report: Report) -> None:
    for name, text in render_all(report).items():
        assert SECRET not in text, name
        assert "Authorization: Bearer [REDACTED]" in text, name
        assert "X-API-Key: [REDACTED]" in text, name
        # The curl line keeps its reference to the key variable, so it still reproduces.
        assert "Bearer $LLORCH_API_KEY" in text, name


@pytest.mark.req("OC-HARNESS-8308")
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Authorization: Bearer abc.def", "Authorization: Bearer [REDACTED]"),
        ("authorization: token xyz", "authorization: token [REDACTED]"),
        ('{"X-API-Key": "k-1"}', '{"X-API-Key": "[REDACTED]"}'),
        ("-H 'x-api-key: raw'", "-H 'x-api-key: [REDACTED]'"),
        (
            '-H "Authorization: Bearer $LLORCH_API_KEY"',
            '-H "Authorization: Bearer $LLORCH_API_KEY"',
        ),
        ("Authorization: Bearer ${KEY}", "Authorization: Bearer ${KEY}"),
        ("Authorization: Bearer [REDACTED]", "Authorization: Bearer [REDACTED]"),
        ("body mentions s3cr3t twice: s3cr3t", "body mentions [REDACTED] twice: [REDACTED]"),
        ("Content-Type: text/plain", "Content-Type: text/plain"),
    ],
)
def test_redact(raw: str, expected: str) -> None:
    assert redact(raw, ["s3cr3t"]) == expected


@pytest.mark.req("OC-HARNESS-8107", "OC-HARNESS-8108", "OC-HARNESS-8109")
def test_uncovered_waived_and_claims_appear_in_every_format(report: Report) -> None:
    texts = render_all(report)
    for text in texts.values():
        assert "ORCH-3041" in text  # the uncovered requirement
    assert '<property name="uncovered" value="ORCH-3041" />' in texts["junit.xml"]
    waiver = "CPU-only carve-out: the target&#x27;s capabilities advertise allow_cpu_inference"
    assert waiver in texts["index.html"]
    assert waiver.replace("&#x27;", "'") in texts["COMPLIANCE.md"]
    assert json.loads(texts["compliance.json"])["summary"]["claimed_not_shown"] == [
        {"feature": "backpressure", "requirements": ["OC-CTRL-2011", "ORCH-2007"]},
        {"feature": "cancel", "requirements": ["OC-CTRL-2012"]},
    ]
    md_section = texts["COMPLIANCE.md"].split("## Claimed but not shown")[1].split("\n## ")[0]
    html_section = texts["index.html"].split('id="claimed"')[1].split("</section>")[0]
    for section in (md_section, html_section):
        assert "backpressure" in section and "cancel" in section
        assert "streaming" not in section  # shown: ORCH-2001 passed


@pytest.mark.req("OC-HARNESS-8305")
def test_markdown_sections_in_order(report: Report) -> None:
    md = render_markdown(report)
    headings = re.findall(r"^## (.+)$", md, flags=re.M)
    assert headings == [
        "Summary", "Failures", "Claimed but not shown", "Unverified", "Uncovered", "Waived",
        "Not supported", "Requirements by spec file", "Run",
    ]  # fmt: skip
    tables = re.findall(r"^### (\S+\.md)$", md, flags=re.M)
    assert tables == ["00_llama-orch.md", "20-orchestratord.md", "30-pool-managerd.md"]
    failures = md.split("## Failures")[1].split("## Claimed")[0]
    assert re.findall(r"^### (\S+)$", failures, flags=re.M) == [
        "ORCH-2007", "OC-CTRL-2004", "OC-CTRL-2011", "OC-CTRL-2052",
    ]  # fmt: skip
    assert "```http\nPOST /v1/tasks" in failures and "```sh\ncurl " in failures
    assert "| [ORCH-2007](#orch-2007) | must | core | fail |" in md
    assert "&lt;b&gt;queue full" not in failures  # fenced blocks keep the body verbatim


@pytest.mark.req("OC-HARNESS-8305")
def test_markdown_cells_cannot_break_tables() -> None:
    data = fixture_data()
    data["waivers"]["ORCH-1101"] = "a | b\nc <i>"
    md = render_markdown(fixture_report(data))
    assert "| waived | a \\| b<br>c &lt;i&gt; |" in md


@pytest.mark.req("OC-HARNESS-8306")
def test_junit_one_case_per_check_with_mapped_outcomes(report: Report) -> None:
    root = ET.fromstring(render_junit(report))
    cases = root.findall("./testsuite/testcase")
    data = fixture_data()
    assert [c.get("name") for c in cases] == sorted(r["id"] for r in data["results"])
    assert root.get("tests") == str(len(cases))
    by_name = {c.get("name"): c for c in cases}
    expected_tag = {"passed": None, "failed": "failure", "error": "error", "undefined": "error",
                    "skipped": "skipped", "not-supported": "skipped"}  # fmt: skip
    for r in data["results"]:
        case = by_name[r["id"]]
        assert case.get("classname") == r["kind"]
        props = [p.get("value") for p in case.findall("./properties/property")]
        assert sorted(props) == sorted(r["requirement_ids"])
        tags = [e.tag for e in case if e.tag != "properties"]
        assert tags == ([expected_tag[r["outcome"]]] if expected_tag[r["outcome"]] else [])
    failure = by_name[
        "features/backpressure.feature:Queue full answers 429 with backpressure headers"
    ]
    assert "curl -sS -X POST" in (failure.findtext("failure") or "")
    assert root.get("failures") == "2" and root.get("errors") == "3" and root.get("skipped") == "3"


@pytest.mark.req("OC-HARNESS-8307")
def test_html_is_self_contained_and_escaped(report: Report) -> None:
    page = render_html(report)
    assert not re.search(r"<link|<img|<iframe|@import|url\(|\ssrc=", page, flags=re.I)
    assert page.count("<script>") == 1 and page.count("<style>") == 1
    assert re.findall(r'href="([^"#][^"]*)"', page) == ["https://example.org/llama-orch"]
    assert "<b>queue full</b>" not in page
    assert "&lt;b&gt;queue full&lt;/b&gt; &amp; retry later" in page
    assert page.count('<tr data-verdict="') == len(report.requirements)
    assert 'id="filter"' in page and 'id="verdict-filter"' in page
    for family in ("ORCH", "OC-CTRL", "OC-POOL"):
        assert f'aria-label="{family}: ' in page


@pytest.mark.req("OC-HARNESS-8307")
def test_html_escapes_hostile_names_and_urls(report: Report) -> None:
    hostile = dataclasses.replace(
        report,
        implementation=Implementation("<script>alert(1)</script>", '"1"', "javascript:alert(1)"),
    )
    page = render_html(hostile)
    assert "<script>alert(1)" not in page and 'href="javascript:' not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &quot;1&quot;" in page
