"""COMPLIANCE.md: the report people read first (OC-HARNESS-8305).

Order: identity and result, verdict counts, failures with their evidence, the other verdicts
that need attention (claimed but not shown, unverified, uncovered, waived, not supported), one
table per spec file, and last the volatile "Run" section, so that a diff between two runs on
the same target touches only that section.
"""

from __future__ import annotations

import re

from llama_orch.harness.reports.model import CheckEntry, Report, RequirementEntry

_BACKTICKS = re.compile(r"`+")


def cell(text: str | None) -> str:
    """Text made safe for one Markdown table cell (no pipes, no line breaks, no raw HTML)."""
    if not text:
        return ""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("|", "\\|").replace("\r\n", "\n").replace("\n", "<br>")


def prose(text: str | None) -> str:
    """Free text on its own line: raw HTML neutralised, line breaks kept as hard breaks."""
    if not text:
        return ""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return "  \n".join(text.splitlines())


def fenced(body: str, lang: str = "") -> str:
    """A fenced code block whose fence is longer than any backtick run inside `body`."""
    longest = max((len(m) for m in _BACKTICKS.findall(body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{body.rstrip()}\n{fence}"


def code(text: str, *, in_table: bool = False) -> str:
    """An inline code span that survives backticks in `text` (and pipes, inside a table)."""
    longest = max((len(m) for m in _BACKTICKS.findall(text)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    if in_table:
        text = text.replace("|", "\\|")
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _implementation(report: Report) -> str:
    impl = report.implementation
    name = " ".join(p for p in (impl.name, impl.version) if p) or "unnamed implementation"
    return f"{cell(name)} (<{impl.url}>)" if impl.url else cell(name)


def _header(report: Report) -> list[str]:
    return [
        "# Compliance report",
        "",
        "| | |",
        "|---|---|",
        f"| Implementation | {_implementation(report)} |",
        f"| Spec version | {cell(report.spec_version)} |",
        f"| Profile | {cell(report.profile)} |",
        f"| Result | **{cell(report.result)}** |",
        "",
        "## Summary",
        "",
        "| verdict | count |",
        "|---|---:|",
        *(f"| {v} | {n} |" for v, n in report.summary.items()),
        f"| **total** | **{len(report.requirements)}** |",
    ]


def _evidence(check: CheckEntry) -> list[str]:
    lines = [f"#### {code(check.id)}", "", f"{check.kind}, **{check.outcome}**"]
    ev = check.evidence
    if ev is None:
        return lines
    if ev.message:
        lines += ["", prose(ev.message)]
    for label, body, lang in (
        ("Request", ev.request, "http"),
        ("Response", ev.response, "http"),
        ("Reproduce", ev.curl, "sh"),
    ):
        if body:
            lines += ["", f"{label}:", "", fenced(body, lang)]
    return lines


def _failures(report: Report) -> list[str]:
    roots = set(report.root_causes)
    # Root causes first: a failure that blocked other checks explains more than one verdict.
    failed = sorted(report.with_verdict("fail"), key=lambda r: r.id not in roots)
    lines = ["## Failures", ""]
    if not failed:
        return [*lines, "None."]
    if roots:
        lines += [
            "Root causes (other checks could not judge their requirements because of these): "
            + ", ".join(report.root_causes),
            "",
        ]
    for req in failed:
        optional = "" if req.level == "must" else " (optional: does not change the result)"
        lines += [
            f"### {req.id}",
            "",
            f"{req.level}, {req.profile}, {code(req.spec)}: {cell(req.section)}{optional}",
            "",
            f"> {prose(req.text)}",
        ]
        shown = [c for c in req.checks if c.outcome != "passed"]
        passed = [c for c in req.checks if c.outcome == "passed"]
        if not any(c.outcome == "failed" for c in req.checks):
            lines += ["", "No check failed: the target declares absent a feature that this"]
            lines += ["requirement makes mandatory in the core profile."]
        for check in shown:
            lines += ["", *_evidence(check)]
        if passed:
            lines += ["", "Passed: " + ", ".join(code(c.id) for c in passed)]
        lines.append("")
    return lines[:-1]


def _reason_list(title: str, reqs: list[RequirementEntry], *, manual_note: bool = False) -> list:
    lines = [f"## {title}", ""]
    if not reqs:
        return [*lines, "None."]
    for req in reqs:
        note = ""
        if manual_note:
            note = f" (verify: {req.verify}"
            note += f": {prose(req.verify_reason)})" if req.verify_reason else ")"
        why = f": {prose(req.reason)}" if req.reason else ""
        lines.append(f"- **{req.id}**{note}{why}")
    return lines


def _claims(report: Report) -> list[str]:
    lines = ["## Claimed but not shown", ""]
    if not report.claimed_not_shown:
        return [*lines, "None."]
    lines += ["| feature | requirements not passing |", "|---|---|"]
    for claim in report.claimed_not_shown:
        ids = ", ".join(claim.requirements) or "(no requirement proves this feature)"
        lines.append(f"| {cell(claim.feature)} | {ids} |")
    return lines


def _check_cell(req: RequirementEntry) -> str:
    return "<br>".join(f"{code(c.id, in_table=True)} {c.outcome}" for c in req.checks) or "none"


def _spec_tables(report: Report) -> list[str]:
    lines = ["## Requirements by spec file"]
    current = None
    for req in report.requirements:
        if req.spec != current:
            current = req.spec
            lines += [
                "",
                f"### {req.spec_name}",
                "",
                "| ID | level | profile | verdict | reason | checks |",
                "|---|---|---|---|---|---|",
            ]
        rid = f"[{req.id}](#{req.id.lower()})" if req.verdict == "fail" else req.id
        lines.append(
            f"| {rid} | {req.level} | {req.profile} | {req.verdict} | {cell(req.reason)} "
            f"| {_check_cell(req)} |"
        )
    return lines


def _run(report: Report) -> list[str]:
    run = report.run
    tgt = run.target
    rows = run.rows()
    lines = ["## Run", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {cell(str(v)) if v is not None else ''} |" for k, v in rows]
    if tgt.pools:
        lines += ["", "| pool | engine | engine version |", "|---|---|---|"]
        for p in tgt.pools:
            lines.append(f"| {cell(p.id)} | {cell(p.engine)} | {cell(p.engine_version)} |")
    slow = sorted(run.durations.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    if slow:
        lines += ["", "Slowest checks:", "", "| check | seconds |", "|---|---:|"]
        lines += [f"| {code(k, in_table=True)} | {v:.3f} |" for k, v in slow]
    return lines


def render_markdown(report: Report) -> str:
    """The whole COMPLIANCE.md, ending with one newline."""
    parts = [
        _header(report),
        _failures(report),
        _claims(report),
        _reason_list("Unverified", report.with_verdict("unverified")),
        _reason_list("Uncovered", report.with_verdict("uncovered"), manual_note=True),
        _reason_list("Waived", report.with_verdict("waived")),
        _reason_list("Not supported", report.with_verdict("not-supported")),
        _spec_tables(report),
        _run(report),
    ]
    return "\n\n".join("\n".join(p) for p in parts) + "\n"
