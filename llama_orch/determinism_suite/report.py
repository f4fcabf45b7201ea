"""JSON and Markdown reports of a determinism run (OC-TEST-7001, OC-TEST-7002).

Per case: the verdict, and for a divergence the first differing index, both token ids, the
text around the split, finish reason and token count on each side, and the exact request JSON
for replay, and the logprob margin at the split where the engine gave probabilities. Per run:
the mode, the environment fingerprint, the settings applied and the statistical bound that N
identical comparisons give.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import subprocess
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any

from llama_orch.determinism_suite.runner import CaseResult, RunResult, Stream

CONTEXT_TOKENS = 3  # tokens shown on each side of a split


def host_cpu() -> str:
    """The CPU model name (Linux /proc/cpuinfo), else what platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host_gpus() -> str:
    """NVIDIA GPUs of this host by name (NVML), or why there are none."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as exc:  # no driver, no library: a CPU-only host
        return f"none ({type(exc).__name__})"
    try:
        count = pynvml.nvmlDeviceGetCount()
        names = [
            pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i)) for i in range(count)
        ]
        return ", ".join(str(n) for n in names) or "none"
    finally:
        pynvml.nvmlShutdown()


def source_commit() -> str | None:
    """The git commit of this checkout (None outside git): reports name the code they ran."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _harness_version() -> str:
    try:
        return metadata.version("llama-orch")
    except metadata.PackageNotFoundError:
        return "unknown"


def failure_bound(n: int, failures: int, not_compared: int = 0) -> dict[str, Any]:
    """Rule of three: with 0 failures in n trials the 95% upper bound is about 3/n.

    `n` counts the cases that were compared (equal or diverged); `not_compared` the cases
    that ended in error, which bound nothing.
    """
    missing = f"; {not_compared} case(s) could not be compared" if not_compared else ""
    if n == 0:
        return {"n": 0, "failures": failures, "statement": "no comparisons were made" + missing}
    if failures:
        return {
            "n": n,
            "failures": failures,
            "statement": f"{failures} of {n} comparisons diverged: determinism does not hold"
            + missing,
        }
    exact = 1 - 0.05 ** (1 / n)
    return {
        "n": n,
        "failures": 0,
        "upper_bound_95": round(exact, 5),
        "rule_of_three": round(3 / n, 5),
        "statement": (
            f"0 failures in {n} comparisons bounds the per-case divergence rate at "
            f"~3/{n} = {3 / n:.3f} with 95% confidence" + missing
        ),
    }


def _window(stream: Stream, at: int) -> dict[str, Any]:
    lo, hi = max(0, at - CONTEXT_TOKENS), at + CONTEXT_TOKENS + 1
    return {
        "before": "".join(stream.texts[lo:at]),
        "at": stream.texts[at] if at < len(stream.texts) else None,
        "after": "".join(stream.texts[at + 1 : hi]),
        "token_id": stream.ids[at] if at < len(stream.ids) else None,
    }


def _end(stream: Stream) -> dict[str, Any]:
    return {
        "finish_reason": stream.finish_reason,
        "tokens_out": stream.tokens_out,
        "pieces": len(stream.ids),
        "error": stream.error,
    }


def case_record(result: CaseResult) -> dict[str, Any]:
    """One case as JSON; divergences carry the split and both request bodies."""
    left, right = result.left, result.right
    record: dict[str, Any] = {
        "id": result.case.id,
        "seed": result.case.seed,
        "status": result.status,
        "compared_by": result.compared_by,
        "tokens": len(left.ids),
        "finish_reason_equal": _end(left)["finish_reason"] == _end(right)["finish_reason"],
        "token_count_equal": len(left.ids) == len(right.ids)
        and _end(left)["tokens_out"] == _end(right)["tokens_out"],
    }
    if result.status in ("diverged", "error"):
        at = result.first_diff or 0
        record["first_diff_index"] = result.first_diff
        record["left"] = {**_end(left), **_window(left, at)}
        record["right"] = {**_end(right), **_window(right, at)}
        record["request_json"] = {"left": left.request, "right": right.request}
        record["logprob_margin"] = result.margin
    if result.note is not None:
        record["note"] = result.note
    return record


def build_report(run: RunResult) -> dict[str, Any]:
    """The whole report as one JSON-able mapping."""
    counts = Counter(r.status for r in run.results)
    replicas = [
        {
            "replica_id": r.replica_id,
            "engine": r.engine,
            "engine_version": r.engine_version,
            "model_digest": r.model_digest,
            "sampler_profile_version": r.sampler_profile_version,
            "slots_total": r.slots_total,
            "where": r.where,
        }
        for r in run.replicas
    ]
    compared = counts["equal"] + counts["diverged"] + counts["unverified"]
    return {
        "suite": "determinism",
        "mode": run.mode,
        "target": run.target,
        "corpus": {
            "version": run.corpus.version,
            "content_hash": run.corpus.content_hash,
            "cases": len(run.corpus),
            "sampler_profiles": {
                name: dataclasses.asdict(p) for name, p in run.corpus.sampler_profiles.items()
            },
            "seeds": [c.seed for c in run.corpus.cases],
        },
        "environment": {
            "engine": run.engine,
            "replicas": replicas,
            # The suite's host; in pinned mode the replicas may run elsewhere.
            "host_cpu": host_cpu(),
            "host_gpu": host_gpus(),
            "platform": platform.platform(),
            "harness_version": _harness_version(),
            "harness_commit": source_commit(),
        },
        "settings_applied": run.settings,
        "settings_confirmed": run.settings_confirmed,
        "settings_problems": run.settings_problems,
        "logprob_margin_note": run.margin_note,
        "order_seed": run.order_seed,
        "in_flight": list(run.in_flight),
        "wall_s": round(run.wall_s, 3),
        "summary": {
            "equal": counts["equal"],
            "diverged": counts["diverged"],
            "error": counts["error"],
            "unverified": counts["unverified"],
            "passed": counts["equal"] == len(run.results),
        },
        "bound": failure_bound(compared, counts["diverged"], counts["error"]),
        "cases": [case_record(r) for r in run.results],
    }


def to_markdown(report: dict[str, Any]) -> str:
    """A short human summary: fingerprint, counts, bound and a table of divergences."""
    env, s = report["environment"], report["summary"]
    lines = [
        "# Determinism report",
        "",
        f"- mode {report['mode']}" + (f", target {report['target']}" if report["target"] else ""),
        f"- corpus version {report['corpus']['version']} ({report['corpus']['content_hash']}), "
        f"{report['corpus']['cases']} cases",
        f"- engine {env['engine']}, host CPU {env['host_cpu']}, GPU {env['host_gpu']}",
    ]
    for r in env["replicas"]:
        lines.append(
            f"- replica `{r['replica_id']}`: engine_version `{r['engine_version']}`, model "
            f"`{r['model_digest']}`, sampler profile `{r['sampler_profile_version']}`, "
            f"slots {r['slots_total']}"
        )
    lines += [
        f"- settings confirmed: {report['settings_confirmed']}"
        + (f" ({'; '.join(report['settings_problems'])})" if report["settings_problems"] else ""),
        f"- wall time {report['wall_s']} s, order seed {report['order_seed']}, "
        f"in flight per replica {report['in_flight']}",
        "",
        f"**{s['equal']} equal, {s['diverged']} diverged, {s['error']} error, "
        f"{s['unverified']} unverified.** {report['bound']['statement']}.",
        "",
    ]
    bad = [c for c in report["cases"] if c["status"] in ("diverged", "error")]
    if bad:
        lines += [
            "| case | seed | first diff | left id | right id | left text | right text | margin |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for c in bad:
            lt, rt = c["left"], c["right"]
            lines.append(
                f"| {c['id']} | {c['seed']} | {c['first_diff_index']} | {lt['token_id']} | "
                f"{rt['token_id']} | {_cell(lt)} | {_cell(rt)} | {_margin(c)} |"
            )
        lines += ["", "Replay bodies of divergent cases are in the JSON report."]
        if report["logprob_margin_note"]:
            lines.append(f"Margins: {report['logprob_margin_note']}.")
    return "\n".join(lines) + "\n"


def _margin(case: dict[str, Any]) -> str:
    m = case.get("logprob_margin")
    if not m:
        return "n/a"
    return " / ".join(f"{m[s]['margin']}" for s in ("left", "right"))


def _cell(side: dict[str, Any]) -> str:
    text = f"{side['before']}⟦{side['at'] or side['error'] or ''}⟧{side['after']}"
    return json.dumps(text, ensure_ascii=False)[1:-1].replace("|", "\\|")


def write_determinism_reports(run: RunResult, report_dir: Path) -> dict[str, Any]:
    """Write determinism.json and determinism.md under report_dir; return the report."""
    report = build_report(run)
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "determinism.json").write_text(
        json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    (report_dir / "determinism.md").write_text(to_markdown(report), encoding="utf-8")
    return report
