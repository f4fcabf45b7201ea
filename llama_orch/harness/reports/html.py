"""index.html: a self-contained page with the content of COMPLIANCE.md (OC-HARNESS-8307).

Styles and script are inline and nothing refers to another file or host, so the page works
from a `file://` URL with no network. Every piece of text from the run (requirement texts,
evidence, reasons, check ids) is HTML-escaped: a target's response body is hostile input.
"""

from __future__ import annotations

import re
from collections import Counter
from html import escape

from llama_orch.harness.reports.html_assets import CSS, JS, VERDICT_COLOURS
from llama_orch.harness.reports.model import CheckEntry, Report, RequirementEntry

VERDICTS = tuple(VERDICT_COLOURS)
_CODE_SPAN = re.compile(r"`([^`]+)`")


def esc(text: object) -> str:
    """Escape for element content and quoted attribute values alike."""
    return escape("" if text is None else str(text), quote=True)


def rich(text: str | None) -> str:
    """Escaped text with Markdown-style `code` spans shown as <code> (requirement texts)."""
    return _CODE_SPAN.sub(r"<code>\1</code>", esc(text))


def _badge(verdict: str) -> str:
    colour = VERDICT_COLOURS.get(verdict, "#444")
    return f'<span class="badge" style="background:{colour}">{esc(verdict)}</span>'


def _header(report: Report) -> str:
    impl = report.implementation
    name = " ".join(p for p in (impl.name, impl.version) if p) or "unnamed implementation"
    link = ""
    if impl.url and impl.url.startswith(("https://", "http://")):
        link = f' (<a href="{esc(impl.url)}">{esc(impl.url)}</a>)'
    elif impl.url:
        link = f" ({esc(impl.url)})"
    return (
        '<header><h1>Compliance report</h1><dl class="meta">'
        f"<dt>Implementation</dt><dd>{esc(name)}{link}</dd>"
        f"<dt>Spec version</dt><dd>{esc(report.spec_version)}</dd>"
        f"<dt>Profile</dt><dd>{esc(report.profile)}</dd>"
        f'<dt>Result</dt><dd><span class="badge result-{esc(report.result)}">'
        f"{esc(report.result)}</span></dd></dl></header>"
    )


def _summary(report: Report) -> str:
    head = "".join(
        f'<th><button type="button" data-pick="{esc(v)}" title="show only {esc(v)}">'
        f"{_badge(v)}</button></th>"
        for v in report.summary
    )
    counts = "".join(f'<td class="n">{n}</td>' for n in report.summary.values())
    return (
        '<section id="summary"><h2>Summary</h2><table class="counts">'
        f"<thead><tr>{head}<th>total</th></tr></thead><tbody><tr>{counts}"
        f'<td class="n"><b>{len(report.requirements)}</b></td></tr></tbody></table></section>'
    )


def _family_bars(report: Report) -> str:
    counts: dict[str, Counter[str]] = {}
    for req in report.requirements:
        counts.setdefault(req.family, Counter())[req.verdict] += 1
    rows = []
    for family, c in counts.items():
        total = sum(c.values())
        segs = "".join(
            f'<span class="seg" data-verdict="{esc(v)}" title="{esc(v)}: {c[v]}" '
            f'style="width:{100 * c[v] / total:.2f}%;background:{VERDICT_COLOURS[v]}"></span>'
            for v in VERDICTS
            if c[v]
        )
        label = ", ".join(f"{c[v]} {v}" for v in VERDICTS if c[v])
        rows.append(
            f'<span class="fam">{esc(family)}</span>'
            f'<div class="bar" role="img" aria-label="{esc(family)}: {esc(label)}">{segs}</div>'
            f'<span class="muted">{total}</span>'
        )
    legend = "".join(
        f'<span><i style="background:{VERDICT_COLOURS[v]}"></i>{esc(v)}</span>' for v in VERDICTS
    )
    return (
        '<section id="families"><h2>Verdicts per family</h2>'
        f'<div class="bars">{"".join(rows)}</div><div class="legend">{legend}</div></section>'
    )


def _check_item(c: CheckEntry) -> str:
    outcome = f'<span class="o-{esc(c.outcome)}">{esc(c.outcome)}</span>'
    return f"<li><code>{esc(c.id)}</code> {outcome}</li>"


def _row(req: RequirementEntry) -> str:
    search = " ".join(
        [req.id, req.text, req.reason or "", req.spec_name, *(c.id for c in req.checks)]
    )
    checks = f"<ul>{''.join(_check_item(c) for c in req.checks)}</ul>" if req.checks else "none"
    rid = f'<a href="#{esc(req.id)}">{esc(req.id)}</a>' if req.verdict == "fail" else esc(req.id)
    return (
        f'<tr data-verdict="{esc(req.verdict)}" data-search="{esc(search.lower())}">'
        f"<td><b>{rid}</b></td><td>{esc(req.spec_name)}</td><td>{esc(req.level)}</td>"
        f"<td>{esc(req.profile)}</td><td>{_badge(req.verdict)}</td>"
        f'<td class="text">{rich(req.text)}</td><td>{esc(req.reason)}</td><td>{checks}</td></tr>'
    )


def _table(report: Report) -> str:
    options = "".join(f'<option value="{esc(v)}">{esc(v)}</option>' for v in VERDICTS)
    head = "".join(
        f"<th>{h}</th>"
        for h in ("ID", "spec", "level", "profile", "verdict", "requirement", "reason", "checks")
    )
    rows = "".join(_row(r) for r in report.requirements)
    return (
        '<section id="requirements"><h2>Requirements</h2><div class="filters">'
        '<input id="filter" type="search" placeholder="Filter by ID, text, reason or check" '
        'aria-label="filter requirements">'
        '<select id="verdict-filter" aria-label="filter by verdict">'
        f'<option value="">all verdicts</option>{options}</select>'
        '<span id="shown-count"></span></div>'
        f'<table id="req-table"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
        "</section>"
    )


def _evidence(c: CheckEntry) -> str:
    parts = [
        f'<h4><code>{esc(c.id)}</code> <span class="muted">{esc(c.kind)}</span>, '
        f'<span class="o-{esc(c.outcome)}">{esc(c.outcome)}</span></h4>'
    ]
    ev = c.evidence
    if ev is not None:
        if ev.message:
            parts.append(f"<p>{esc(ev.message)}</p>")
        for label, body in (
            ("Request", ev.request),
            ("Response", ev.response),
            ("Reproduce", ev.curl),
        ):
            if body:
                parts.append(f"<p>{label}:</p><pre>{esc(body.rstrip())}</pre>")
    return "".join(parts)


def _failures(report: Report) -> str:
    items = []
    for req in report.with_verdict("fail"):
        optional = "" if req.level == "must" else " (optional: does not change the result)"
        body = [
            f'<article class="failure" id="{esc(req.id)}"><h3>{esc(req.id)}</h3>',
            f'<p class="muted">{esc(req.level)}, {esc(req.profile)}, <code>{esc(req.spec)}</code>: '
            f"{esc(req.section)}{optional}</p><blockquote>{rich(req.text)}</blockquote>",
        ]
        if not any(c.outcome == "failed" for c in req.checks):
            body.append(
                "<p>No check failed: the target declares absent a feature that this "
                "requirement makes mandatory in the core profile.</p>"
            )
        body += [_evidence(c) for c in req.checks if c.outcome != "passed"]
        passed = [c for c in req.checks if c.outcome == "passed"]
        if passed:
            body.append("<p>Passed: " + ", ".join(f"<code>{esc(c.id)}</code>" for c in passed))
        items.append("".join(body) + "</article>")
    return f'<section id="failures"><h2>Failures</h2>{"".join(items) or "<p>None.</p>"}</section>'


def _claims(report: Report) -> str:
    if not report.claimed_not_shown:
        inner = "<p>None.</p>"
    else:
        rows = "".join(
            f"<tr><td>{esc(c.feature)}</td><td>"
            f"{esc(', '.join(c.requirements) or '(no requirement proves this feature)')}</td></tr>"
            for c in report.claimed_not_shown
        )
        inner = (
            f"<table><thead><tr><th>feature</th><th>requirements not passing</th></tr>"
            f"</thead><tbody>{rows}</tbody></table>"
        )
    return f'<section id="claimed"><h2>Claimed but not shown</h2>{inner}</section>'


def _reason_list(anchor: str, title: str, reqs: list[RequirementEntry], manual: bool = False):
    items = []
    for req in reqs:
        note = ""
        if manual:
            note = f" (verify: {esc(req.verify)}"
            note += f": {esc(req.verify_reason)})" if req.verify_reason else ")"
        why = f": {esc(req.reason)}" if req.reason else ""
        items.append(f"<li><b>{esc(req.id)}</b>{note}{why}</li>")
    inner = f"<ul>{''.join(items)}</ul>" if items else "<p>None.</p>"
    return f'<section id="{anchor}"><h2>{title}</h2>{inner}</section>'


def _run(report: Report) -> str:
    run = report.run
    tgt = run.target
    rows = run.rows()
    meta = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in rows)
    pools = "".join(
        f"<tr><td>{esc(p.id)}</td><td>{esc(p.engine)}</td><td>{esc(p.engine_version)}</td></tr>"
        for p in tgt.pools
    )
    pool_table = (
        "<table><thead><tr><th>pool</th><th>engine</th><th>engine version</th></tr></thead>"
        f"<tbody>{pools}</tbody></table>"
        if pools
        else ""
    )
    slow = sorted(run.durations.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    slow_rows = "".join(f"<tr><td><code>{esc(k)}</code></td><td>{v:.3f}</td></tr>" for k, v in slow)
    slow_table = (
        "<p>Slowest checks:</p><table><thead><tr><th>check</th><th>seconds</th></tr></thead>"
        f"<tbody>{slow_rows}</tbody></table>"
        if slow
        else ""
    )
    return (
        f'<section id="run"><h2>Run</h2><dl class="meta">{meta}</dl>'
        f"{pool_table}{slow_table}</section>"
    )


def render_html(report: Report) -> str:
    """The whole index.html as one string."""
    impl = report.implementation
    title = "Compliance report" + (f": {impl.name}" if impl.name else "")
    body = "\n".join(
        [
            _header(report),
            _summary(report),
            _family_bars(report),
            _table(report),
            _failures(report),
            _claims(report),
            _reason_list("unverified", "Unverified", report.with_verdict("unverified")),
            _reason_list("uncovered", "Uncovered", report.with_verdict("uncovered"), manual=True),
            _reason_list("waived", "Waived", report.with_verdict("waived")),
            _reason_list("not-supported", "Not supported", report.with_verdict("not-supported")),
            _run(report),
        ]
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n"
        f"<script>{JS}</script>\n</body>\n</html>\n"
    )
