"""Plain-text table, JSON document and progress line for `llorch bench`."""

from __future__ import annotations

from typing import Any, TextIO

from llama_orch.harness.loadgen.load import Progress
from llama_orch.harness.loadgen.stats import ClassSummary, RunSummary

REPORT_VERSION = 1
_LABELS = {"ttft": "TTFT", "itl": "ITL", "e2e": "E2E", "admit": "admit"}
_COLS = ("count", "p50", "p95", "p99", "max")
_CLASS_COLS = (
    ("TTFT p50", "ttft", "p50"),
    ("TTFT p95", "ttft", "p95"),
    ("TTFT p99", "ttft", "p99"),
    ("E2E p50", "e2e", "p50"),
    ("E2E p95", "e2e", "p95"),
    ("wait p50", "queue_wait", "p50"),
    ("wait p95", "queue_wait", "p95"),
)


def compare(orchestrator: RunSummary, direct: RunSummary) -> dict[str, float | None]:
    """The orchestrator's added latency: its TTFT/E2E percentiles minus the bare engine's."""

    def diff(metric: str, stat: str) -> float | None:
        a = orchestrator.latency_ms.get(metric)
        b = direct.latency_ms.get(metric)
        va = getattr(a, stat) if a else None
        vb = getattr(b, stat) if b else None
        return None if va is None or vb is None else round(va - vb, 3)

    return {
        "ttft_p50_ms": diff("ttft", "p50"),
        "ttft_p99_ms": diff("ttft", "p99"),
        "e2e_p50_ms": diff("e2e", "p50"),
    }


def to_json(
    settings: dict[str, Any],
    runs: list[tuple[RunSummary, str]],
    comparison: dict[str, float | None] | None = None,
) -> dict[str, Any]:
    """The JSON report; `runs` pairs each summary with a description of its target."""
    doc: dict[str, Any] = {
        "report": "llorch-bench",
        "version": REPORT_VERSION,
        "settings": settings,
        "latency_scope": "successful tasks only",
        "runs": [{"target": where, **s.to_dict()} for s, where in runs],
    }
    if comparison is not None:
        doc["added_latency"] = {
            "orchestrator": runs[0][0].name,
            "baseline": runs[1][0].name,
            "ms": comparison,
        }
    return doc


def _fmt(value: float | int | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.2f}"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"


def aligned(rows: list[list[str]]) -> list[str]:
    """Rows as text: the first column left-aligned, the rest right-aligned, two-space gaps."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        out.append("  " + "  ".join(cells))
    return out


def format_classes(classes: dict[str, ClassSummary]) -> list[str]:
    """The per-priority block: counts, TTFT/E2E and queue-wait percentiles (ms) per class."""
    rows = [["by priority", "tasks", "ok", "failed", *(label for label, _, _ in _CLASS_COLS)]]
    for name, c in classes.items():
        figures = []
        for _, metric, stat in _CLASS_COLS:
            dist = c.latency_ms.get(metric)
            figures.append(_fmt(getattr(dist, stat) if dist else None))
        rows.append([name, str(c.tasks_total), str(c.tasks_ok), str(c.tasks_total - c.tasks_ok)])
        rows[-1].extend(figures)
    lines = aligned(rows)
    for name, c in classes.items():
        if c.errors:
            codes = ", ".join(f"{k} {v}" for k, v in sorted(c.errors.items()))
            lines.append(f"    {name} errors: {codes}")
    return lines


def format_run(summary: RunSummary, where: str) -> str:
    """One run's block: totals, throughput, latency percentiles and errors by code."""
    lines = [
        f"{summary.name}  ({where})",
        f"  tasks {summary.tasks_total}  ok {summary.tasks_ok}  failed {summary.tasks_failed}"
        f"  wall {summary.wall_s:.2f} s  {summary.tasks_per_s:.2f} tasks/s"
        f"  {summary.tokens_total} tokens  {summary.tokens_per_s:.1f} tokens/s",
    ]
    rows = [["latency ms", *_COLS]]
    for key, dist in summary.latency_ms.items():
        rows.append([_LABELS.get(key, key), *(_fmt(getattr(dist, c)) for c in _COLS)])
    lines.extend(aligned(rows))
    if summary.errors:
        width = max(len(code) for code in summary.errors)
        lines.append("  errors")
        for code, count in sorted(summary.errors.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"    {code.ljust(width)}  {count}")
    else:
        lines.append("  errors: none")
    if summary.by_priority:
        lines.extend(format_classes(summary.by_priority))
    return "\n".join(lines)


def format_table(
    runs: list[tuple[RunSummary, str]], comparison: dict[str, float | None] | None = None
) -> str:
    """The whole text report; with two runs, the added-latency lines close it."""
    blocks = [format_run(s, where) for s, where in runs]
    if comparison is not None:
        orch, base = runs[0][0].name, runs[1][0].name
        blocks.append(
            f"added latency ({orch} minus {base}), ms\n"
            f"  TTFT p50  {_signed(comparison['ttft_p50_ms'])}\n"
            f"  TTFT p99  {_signed(comparison['ttft_p99_ms'])}\n"
            f"  E2E p50   {_signed(comparison['e2e_p50_ms'])}"
        )
    return "\n\n".join(blocks) + "\n"


class ProgressPrinter:
    """Writes progress to a stream: one rewritten line on a TTY, plain lines otherwise."""

    def __init__(self, stream: TextIO, tty: bool | None = None) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty

    def __call__(self, p: Progress) -> None:
        goal = f"/{p.planned}" if p.planned is not None else ""
        clock = f"{p.elapsed_s:.1f}"
        if p.duration_s is not None:
            clock += f"/{p.duration_s:g}"
        line = (
            f"[{p.name}] {p.phase} {p.finished}{goal} done  {p.in_flight} in flight"
            f"  {p.failed} failed  {p.tokens} tokens  {clock} s"
        )
        if self.tty:
            self.stream.write("\r" + line + "\x1b[K" + ("\n" if p.done else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
