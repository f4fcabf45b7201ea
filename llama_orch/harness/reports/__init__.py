"""The four report formats of a compliance run, all rendered from one `Report` (8301).

`build_report` assembles the Report from the verdict engine's output; `write_reports` writes
compliance.json, COMPLIANCE.md, junit.xml and index.html into the report directory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from llama_orch.harness.reports.html import render_html
from llama_orch.harness.reports.json_report import render_json, to_json
from llama_orch.harness.reports.junit import render_junit
from llama_orch.harness.reports.markdown import render_markdown
from llama_orch.harness.reports.model import (
    CheckEntry,
    ClaimEntry,
    Implementation,
    Pool,
    Report,
    RequirementEntry,
    RunInfo,
    TargetInfo,
    build_report,
    redact,
)

RENDERERS: dict[str, Callable[[Report], str]] = {
    "compliance.json": render_json,
    "COMPLIANCE.md": render_markdown,
    "junit.xml": render_junit,
    "index.html": render_html,
}


class ReportWriteError(OSError):
    """The report directory cannot be written: a harness error (exit code 2, 8203)."""


def render_all(report: Report) -> dict[str, str]:
    """Every report file's name and text; rendering happens before anything is written."""
    return {name: render(report) for name, render in RENDERERS.items()}


def write_reports(report: Report, out_dir: Path) -> list[Path]:
    """Write the four reports into `out_dir` (created if needed); return their paths."""
    texts = render_all(report)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, text in texts.items():
            path = out_dir / name
            path.write_text(text, encoding="utf-8", newline="\n")
            paths.append(path)
    except OSError as exc:
        raise ReportWriteError(f"cannot write reports to {out_dir}: {exc}") from exc
    return paths


__all__ = [
    "RENDERERS",
    "CheckEntry",
    "ClaimEntry",
    "Implementation",
    "Pool",
    "Report",
    "ReportWriteError",
    "RequirementEntry",
    "RunInfo",
    "TargetInfo",
    "build_report",
    "redact",
    "render_all",
    "render_html",
    "render_json",
    "render_junit",
    "render_markdown",
    "to_json",
    "write_reports",
]
