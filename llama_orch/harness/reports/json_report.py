"""compliance.json: the machine-readable report (specs/80 §5.1, OC-HARNESS-8302..8304).

Keys are written in the spec's order, never sorted alphabetically; everything volatile sits in
the final `run` object, so two runs on the same target differ only there.
"""

from __future__ import annotations

import json
from typing import Any

from llama_orch.harness.reports.model import CheckEntry, Report, RequirementEntry, RunInfo


def _check(c: CheckEntry) -> dict[str, Any]:
    return {
        "id": c.id,
        "kind": c.kind,
        "outcome": c.outcome,
        "evidence": None if c.evidence is None else c.evidence.to_json(),
    }


def _requirement(r: RequirementEntry) -> dict[str, Any]:
    return {
        "id": r.id,
        "level": r.level,
        "verify": r.verify,
        "profile": r.profile,
        "verdict": r.verdict,
        "reason": r.reason,
        "checks": [_check(c) for c in r.checks],
    }


def _run(run: RunInfo) -> dict[str, Any]:
    tgt = run.target
    return {
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "duration_s": run.duration_s,
        "harness_version": run.harness_version,
        "host": run.host,
        "target": {
            "url": tgt.url,
            "embedded": tgt.embedded,
            "config": tgt.config,
            "pools": [
                {"id": p.id, "engine": p.engine, "engine_version": p.engine_version}
                for p in tgt.pools
            ],
        },
        "durations": dict(run.durations),
    }


def to_json(report: Report) -> dict[str, Any]:
    """The compliance.json document as plain data, keys in the spec's order."""
    impl = report.implementation
    return {
        "schema_version": report.schema_version,
        "implementation": {"name": impl.name, "version": impl.version, "url": impl.url},
        "spec_version": report.spec_version,
        "profile": report.profile,
        "result": report.result,
        "summary": {
            "total": len(report.requirements),
            **report.summary,
            "claimed_not_shown": [
                {"feature": c.feature, "requirements": list(c.requirements)}
                for c in report.claimed_not_shown
            ],
            "root_causes": list(report.root_causes),
        },
        "requirements": [_requirement(r) for r in report.requirements],
        "run": _run(report.run),
    }


def render_json(report: Report) -> str:
    """UTF-8 JSON text, 2-space indent, trailing newline."""
    return json.dumps(to_json(report), indent=2, ensure_ascii=False) + "\n"
