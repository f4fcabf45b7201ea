"""junit.xml: the run as CI systems show tests (OC-HARNESS-8306).

One test case per check, named by the check id, with its kind as class name and one
`requirement` property per requirement ID it names. Outcomes map to JUnit as the spec says:
`failed` -> <failure>, `error` -> <error>, `not-run` -> <skipped>. No timings are written (they
are volatile and live in compliance.json's `run`), so the file is identical across runs.
Requirements that no check names cannot be test cases; they are listed as `uncovered`
properties of the suite, so that this format too shows every gap (OC-HARNESS-8107).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from llama_orch.harness.reports.model import CheckEntry, Report

SUITE_NAME = "llorch check"


def _details(check: CheckEntry) -> str:
    ev = check.evidence
    if ev is None:
        return ""
    parts = [ev.message] if ev.message else []
    for label, body in (("request", ev.request), ("response", ev.response), ("curl", ev.curl)):
        if body:
            parts.append(f"--- {label} ---\n{body.rstrip()}")
    return "\n\n".join(parts)


def _testcase(parent: ET.Element, check: CheckEntry) -> None:
    case = ET.SubElement(parent, "testcase", {"classname": check.kind, "name": check.id})
    props = ET.SubElement(case, "properties")
    for req_id in check.requirement_ids:
        ET.SubElement(props, "property", {"name": "requirement", "value": req_id})
    tag = {"failed": "failure", "error": "error", "not-run": "skipped"}.get(check.outcome)
    if tag is None:
        return
    message = check.evidence.message if check.evidence else ""
    node = ET.SubElement(case, tag, {"message": message, "type": check.outcome})
    if tag != "skipped":
        node.text = _details(check)


def render_junit(report: Report) -> str:
    """The whole junit.xml document (UTF-8, indented, trailing newline)."""
    checks = report.checks
    counts = {
        "tests": str(len(checks)),
        "failures": str(sum(c.outcome == "failed" for c in checks)),
        "errors": str(sum(c.outcome == "error" for c in checks)),
        "skipped": str(sum(c.outcome == "not-run" for c in checks)),
    }
    root = ET.Element("testsuites", {"name": SUITE_NAME, **counts})
    suite = ET.SubElement(root, "testsuite", {"name": SUITE_NAME, **counts})
    props = ET.SubElement(suite, "properties")
    impl = report.implementation
    for name, value in (
        ("implementation", " ".join(p for p in (impl.name, impl.version) if p)),
        ("spec_version", report.spec_version),
        ("profile", report.profile),
        ("result", report.result),
    ):
        ET.SubElement(props, "property", {"name": name, "value": value or ""})
    for req in report.with_verdict("uncovered"):
        ET.SubElement(props, "property", {"name": "uncovered", "value": req.id})
    for check in checks:
        _testcase(suite, check)
    ET.indent(root, space="  ")
    body = ET.tostring(root, encoding="unicode", short_empty_elements=True)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"
