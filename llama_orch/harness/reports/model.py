"""The one Report object every report format is rendered from (OC-HARNESS-8301).

Building the Report is where ordering and redaction happen, so that the four formats cannot
disagree: requirements in extracted-file order, checks by id, credentials redacted once more
as a safety net (the harness client already redacts), volatile values kept in `run` only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import Any

from llama_orch.harness.results import CheckResult, Evidence
from llama_orch.harness.verdicts import (
    Profile,
    RequirementVerdict,
    claimed_not_shown,
    report_outcome,
    result_of,
    root_causes,
    summary,
)
from llama_orch.spec_extract.model import id_sort_key

SCHEMA_VERSION = 1
REDACTED = "[REDACTED]"

# `Authorization: Bearer x`, `"x-api-key": "x"`, `Proxy-Authorization=...`: header-shaped
# credentials in request dumps, JSON header maps and curl lines.
_SECRET_HEADER = re.compile(
    r"""(?P<pre>["']?(?:proxy-)?(?:authorization|x-api-key)["']?\s*[:=]\s*["']?)"""
    r"""(?P<scheme>(?:bearer|basic|token)\s+)?(?P<val>[^"'\r\n]+)""",
    re.IGNORECASE,
)
# A value that only refers to a shell variable is how curl lines stay reproducible: keep it.
_SHELL_REF = re.compile(r"^\$\{?[A-Za-z_][A-Za-z0-9_]*\}?\s*$")


def redact(text: str | None, secrets: Iterable[str] = ()) -> str | None:
    """Replace credential header values and any known secret value with `[REDACTED]`."""
    if text is None:
        return None
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)

    def _sub(m: re.Match[str]) -> str:
        val = m["val"]
        if _SHELL_REF.match(val) or val.strip() == REDACTED:
            return m[0]
        return f"{m['pre']}{m['scheme'] or ''}{REDACTED}"

    return _SECRET_HEADER.sub(_sub, text)


@dataclass(frozen=True)
class Implementation:
    """The implementation under test, as named by options or by the target itself."""

    name: str | None = None
    version: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class Pool:
    """A pool that carried checks, as `GET /v1/replicasets` lists it."""

    id: str
    engine: str | None = None
    engine_version: str | None = None


@dataclass(frozen=True)
class TargetInfo:
    """Where the run went: volatile (the embedded target's port changes every run)."""

    url: str | None = None
    embedded: bool = False
    config: str | None = None
    pools: tuple[Pool, ...] = ()


@dataclass(frozen=True)
class RunInfo:
    """Everything volatile about a run; reports show it only in their `run` part."""

    started_at: str | None = None
    finished_at: str | None = None
    duration_s: float | None = None
    harness_version: str | None = None
    host: str | None = None
    target: TargetInfo = field(default_factory=TargetInfo)
    durations: Mapping[str, float] = field(default_factory=dict)

    def rows(self) -> list[tuple[str, str | None]]:
        """The run facts as (label, value) rows, in the order every report shows them."""
        tgt = self.target
        return [
            ("started at", self.started_at),
            ("finished at", self.finished_at),
            ("duration (s)", None if self.duration_s is None else f"{self.duration_s:.3f}"),
            ("harness version", self.harness_version),
            ("host", self.host),
            ("target", tgt.url),
            ("embedded target", "yes" if tgt.embedded else "no"),
            ("config", tgt.config),
        ]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunInfo:
        """Read the `run` object back (fixtures, or a previous compliance.json)."""
        tgt = dict(data.get("target") or {})
        pools = tuple(Pool(**p) for p in tgt.pop("pools", ()))
        return cls(
            **{k: v for k, v in data.items() if k not in ("target", "durations")},
            target=TargetInfo(**tgt, pools=pools),
            durations=dict(data.get("durations") or {}),
        )


@dataclass(frozen=True)
class CheckEntry:
    """A check as reports show it: the spec's four outcomes, evidence `None` when passed."""

    id: str
    kind: str
    outcome: str  # passed | failed | error | not-run
    evidence: Evidence | None
    requirement_ids: tuple[str, ...]


@dataclass(frozen=True)
class RequirementEntry:
    """A requirement with its verdict and linked checks (sorted by id)."""

    id: str
    level: str
    verify: str
    profile: str
    verdict: str
    reason: str | None
    checks: tuple[CheckEntry, ...]
    spec: str
    section: str = ""
    anchor: str = ""
    text: str = ""
    verify_reason: str | None = None

    @property
    def family(self) -> str:
        return family_of(self.id)

    @property
    def spec_name(self) -> str:
        return PurePosixPath(self.spec).name


@dataclass(frozen=True)
class ClaimEntry:
    """An advertised feature that the run did not show, with the requirements concerned."""

    feature: str
    requirements: tuple[str, ...]


@dataclass(frozen=True)
class Report:
    """The result of one run, in the order every format renders it."""

    implementation: Implementation
    spec_version: str
    profile: str
    result: str
    summary: Mapping[str, int]
    claimed_not_shown: tuple[ClaimEntry, ...]
    requirements: tuple[RequirementEntry, ...]
    run: RunInfo
    schema_version: int = SCHEMA_VERSION
    # Failed requirements that blocked other checks from judging theirs: fix these first.
    root_causes: tuple[str, ...] = ()

    @property
    def checks(self) -> list[CheckEntry]:
        """Every linked check once, sorted by id (a check may prove several requirements)."""
        seen = {c.id: c for r in self.requirements for c in r.checks}
        return [seen[i] for i in sorted(seen)]

    def with_verdict(self, *verdicts: str) -> list[RequirementEntry]:
        return [r for r in self.requirements if r.verdict in verdicts]


def family_of(req_id: str) -> str:
    """`OC-CTRL-2001` -> `OC-CTRL`."""
    return req_id.rpartition("-")[0]


def _order_key(req: RequirementEntry) -> tuple[str, tuple[str, int]]:
    """Extracted-file order (by spec file name), then ID order within the file (8304)."""
    return (req.spec_name, id_sort_key(req.id))


def _evidence(res: CheckResult, outcome: str, secrets: Sequence[str]) -> Evidence | None:
    if outcome == "passed":
        return None
    ev = res.evidence
    default = {
        "undefined": "undefined step: the scenario did not run",
        "skipped": "deselected: not run",
        "not-supported": "the target declares the feature absent: not run",
    }.get(str(res.outcome), "")
    return Evidence(
        message=redact(ev.message or default, secrets) or "",
        request=redact(ev.request, secrets),
        response=redact(ev.response, secrets),
        curl=redact(ev.curl, secrets),
    )


def _check_entry(res: CheckResult, secrets: Sequence[str]) -> CheckEntry:
    outcome = report_outcome(res.outcome)
    ids = tuple(sorted(dict.fromkeys(res.requirement_ids), key=id_sort_key))
    return CheckEntry(res.id, res.kind, outcome, _evidence(res, outcome, secrets), ids)


def build_report(
    verdicts: Sequence[RequirementVerdict],
    *,
    profile: Profile,
    implementation: Implementation,
    spec_version: str,
    run: RunInfo,
    claims: Mapping[str, Sequence[str]] | None = None,
    secrets: Iterable[str] = (),
) -> Report:
    """Assemble the Report; result, summary and per-check durations derive from `verdicts`.

    `claims` maps each advertised feature to the requirement IDs that prove it; `secrets` are
    values (e.g. the API key in use) to redact wherever they occur in evidence and reasons.
    """
    secrets = [s for s in secrets if s]
    entries = []
    durations: dict[str, float] = dict(run.durations)
    for v in verdicts:
        req = v.requirement
        for c in v.checks:
            durations.setdefault(c.id, c.duration_s)
        entries.append(
            RequirementEntry(
                id=req.id,
                level=req.level,
                verify=getattr(req, "verify", ""),
                profile=req.profile,
                verdict=v.verdict.value,
                reason=redact(v.reason, secrets),
                checks=tuple(_check_entry(c, secrets) for c in v.checks),
                spec=getattr(req, "spec", ""),
                section=getattr(req, "section", ""),
                anchor=getattr(req, "anchor", ""),
                text=getattr(req, "text", ""),
                verify_reason=getattr(req, "verify_reason", None),
            )
        )
    claims_out = claimed_not_shown(verdicts, claims or {})
    return Report(
        implementation=implementation,
        spec_version=spec_version,
        profile=profile,
        result=result_of(verdicts, profile),
        summary=summary(verdicts),
        claimed_not_shown=tuple(ClaimEntry(c.feature, c.requirements) for c in claims_out),
        requirements=tuple(sorted(entries, key=_order_key)),
        run=replace(run, durations={k: durations[k] for k in sorted(durations)}),
        root_causes=tuple(root_causes(verdicts)),
    )
