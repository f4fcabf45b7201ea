"""The verdict engine: check outcomes in, one verdict per requirement out (specs/80 §3, §4).

Pure functions over plain data, so that the rules can be tested exhaustively without a target.
The inputs are the extracted requirement set, the `CheckResult`s of a run, the user's selection
(profile, `--only`), waivers, and the target's declarations of absent optional features.

Decisions the spec leaves to the implementation:

- A `manual` requirement is treated like any other: with no check naming it, it is `uncovered`
  (unless waived or deselected), so a manual gap stays visible in every report.
- A check outcome `undefined` (Gherkin step without a definition) counts as `error`; `skipped`
  and `not-supported` outcomes count as `not-run` (OC-HARNESS-8106).
- A `not-supported` declaration (a check with that outcome, or an entry in `unsupported`) on a
  MUST requirement of the `core` profile gives `fail` (OC-HARNESS-8104); its `reason` stays
  `null`, as the compliance.json field table asks, and the declaring check shows why.
- Results that name no requirement prove nothing and are ignored here.
- No hollow passes (OC-HARNESS-8110): a requirement passes only when every check that judges
  it ran and passed. The judging checks are those whose kind fits the requirement's `verify`
  (black-box checks for a black-box requirement; the reference's white-box tests count only
  when no black-box check exists and the target is the embedded reference), and among those
  the behaviour checks when there are any: a shape check (schema, contract) passing beside an
  errored behaviour check proves nothing about the behaviour.
- Root causes (OC-HARNESS-8111): a check that found a more basic requirement broken ends as
  `error` with `blocked_by`; its requirement is `unverified`, "blocked by" that requirement.
  A check that failed only some of the requirements it proves (`fails`) counts, for each of
  its other requirements, as an `error` blocked by those.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Literal, Protocol

from llama_orch.harness.results import CheckResult, Outcome
from llama_orch.spec_extract.model import id_sort_key

Profile = Literal["core", "extended"]
RunResult = Literal["success", "partial", "failure"]

HARNESS_ERROR_EXIT = 2


class Verdict(StrEnum):
    """The seven verdicts, in the order of the spec's verdict table (and of every summary)."""

    PASS = "pass"
    FAIL = "fail"
    NOT_SUPPORTED = "not-supported"
    SKIPPED = "skipped"
    UNVERIFIED = "unverified"
    UNCOVERED = "uncovered"
    WAIVED = "waived"


# The order in which the verdict rules are tried (OC-HARNESS-8101).
PRECEDENCE: tuple[Verdict, ...] = (
    Verdict.SKIPPED,
    Verdict.WAIVED,
    Verdict.FAIL,
    Verdict.NOT_SUPPORTED,
    Verdict.PASS,
    Verdict.UNVERIFIED,
    Verdict.UNCOVERED,
)

# Verdicts that make an otherwise clean run `partial` (OC-HARNESS-8201).
PARTIAL_VERDICTS = frozenset(
    {Verdict.SKIPPED, Verdict.UNVERIFIED, Verdict.UNCOVERED, Verdict.WAIVED}
)


class RequirementLike(Protocol):
    """What the engine needs of a requirement (`harness.requirements.RequirementRecord`)."""

    @property
    def id(self) -> str: ...
    @property
    def level(self) -> str: ...
    @property
    def profile(self) -> str: ...
    @property
    def verify(self) -> str: ...


class VerdictInputError(ValueError):
    """The inputs cannot give a trustworthy verdict: the run must stop as a harness error."""


class UnknownRequirementError(VerdictInputError):
    """Checks, waivers or claims name IDs that the requirement set does not define."""

    def __init__(self, unknown: Mapping[str, Sequence[str]]) -> None:
        self.unknown = {i: tuple(sorted(unknown[i])) for i in sorted(unknown, key=_safe_key)}
        detail = "; ".join(f"{i} (named by {', '.join(s)})" for i, s in self.unknown.items())
        super().__init__(f"unknown requirement IDs: {detail}")


def _safe_key(req_id: str) -> tuple[str, int, str]:
    try:
        family, number = id_sort_key(req_id)
    except ValueError:
        return (req_id, -1, req_id)
    return (family, number, "")


@dataclass(frozen=True)
class RequirementVerdict:
    """One requirement's verdict, the reason where the spec asks for one, and its checks."""

    requirement: RequirementLike
    verdict: Verdict
    reason: str | None
    checks: tuple[CheckResult, ...]  # sorted by check id
    in_profile: bool

    @property
    def id(self) -> str:
        return self.requirement.id


@dataclass(frozen=True)
class ClaimedNotShown:
    """An advertised feature whose requirements did not all pass (OC-HARNESS-8109)."""

    feature: str
    requirements: tuple[str, ...]  # the feature's requirement IDs whose verdict is not `pass`


def profile_selects(run_profile: str, req_profile: str) -> bool:
    """`core` selects core requirements; `extended` selects both profiles."""
    if run_profile not in ("core", "extended"):
        raise VerdictInputError(f"unknown profile {run_profile!r}; expected core or extended")
    return run_profile == "extended" or req_profile == "core"


def report_outcome(outcome: Outcome) -> str:
    """The spec's four report outcomes: undefined is an error, skipped and absent are not-run."""
    return {
        Outcome.PASSED: "passed",
        Outcome.FAILED: "failed",
        Outcome.ERROR: "error",
        Outcome.UNDEFINED: "error",
        Outcome.SKIPPED: "not-run",
        Outcome.NOT_SUPPORTED: "not-run",
    }[Outcome(outcome)]


def _may_be_unsupported(req: RequirementLike) -> bool:
    """Only optional requirements (SHOULD/MAY, or the extended profile) may be not-supported."""
    return req.level != "must" or req.profile != "core"


def judging(
    req: RequirementLike, checks: Sequence[CheckResult], embedded: bool
) -> list[CheckResult]:
    """The checks whose outcomes decide a pass (see the module docstring)."""
    white = [c for c in checks if c.kind == "white-box"]
    black = [c for c in checks if c.kind != "white-box"]
    if getattr(req, "verify", "black-box") == "black-box":
        pool = black or (white if embedded else [])
    else:
        pool = list(checks)
    behaviour = [c for c in pool if c.role != "shape"]
    return behaviour or pool


def _unverified_reason(checks: Sequence[CheckResult], judged: Sequence[CheckResult]) -> str:
    if not judged:
        return (
            "only white-box tests of the reference implementation prove it; no black-box "
            "check ran against this target"
        )
    blocked = sorted({b for c in judged for b in c.blocked_by}, key=_safe_key)
    if blocked:
        first = next(c for c in judged if c.blocked_by)
        return f"blocked by {', '.join(blocked)}: {first.id}: {first.evidence.message}"
    open_checks = [c for c in judged if c.outcome is not Outcome.PASSED]
    checks = open_checks or checks
    names = {
        Outcome.ERROR: "error",
        Outcome.UNDEFINED: "undefined step",
        Outcome.SKIPPED: "deselected",
    }
    counts = Counter(names.get(c.outcome, str(c.outcome)) for c in checks)
    parts = [f"{n} {what}" for what, n in counts.items()]
    first = next((c for c in checks if c.evidence.message), None)
    why = f"; {first.id}: {first.evidence.message}" if first else ""
    if len(open_checks) < len(judged):
        head = f"{len(open_checks)} of {len(judged)} checks that judge it did not run to a result"
        return f"{head} ({', '.join(parts)}){why}"
    return f"no linked check ran to a result ({', '.join(parts)}){why}"


def _not_supported_reason(
    req_id: str, checks: Sequence[CheckResult], unsupported: Mapping[str, str]
) -> str:
    if unsupported.get(req_id):
        return unsupported[req_id]
    declared = [c for c in checks if c.outcome == Outcome.NOT_SUPPORTED and c.evidence.message]
    return declared[0].evidence.message if declared else "the target declares the feature absent"


def _verdict_for(
    req: RequirementLike,
    checks: Sequence[CheckResult],
    *,
    skip_reason: str | None,
    waivers: Mapping[str, str],
    unsupported: Mapping[str, str],
    embedded: bool = True,
) -> tuple[Verdict, str | None]:
    """Apply the rules in PRECEDENCE order; the first that matches decides."""
    outcomes = {c.outcome for c in checks}
    declared_absent = req.id in unsupported or Outcome.NOT_SUPPORTED in outcomes
    if skip_reason is not None:
        return Verdict.SKIPPED, skip_reason
    if req.id in waivers:
        return Verdict.WAIVED, waivers[req.id]
    if Outcome.FAILED in outcomes or (declared_absent and not _may_be_unsupported(req)):
        return Verdict.FAIL, None
    if declared_absent:
        return Verdict.NOT_SUPPORTED, _not_supported_reason(req.id, checks, unsupported)
    judged = judging(req, checks, embedded)
    if judged and all(c.outcome is Outcome.PASSED for c in judged):
        return Verdict.PASS, None
    if checks:
        return Verdict.UNVERIFIED, _unverified_reason(checks, judged)
    return Verdict.UNCOVERED, None


def for_requirement(res: CheckResult, req_id: str) -> CheckResult:
    """The check's outcome as it bears on one of its requirements: a check that failed only
    others of its requirements is, for this one, an error blocked by those."""
    if res.outcome is Outcome.FAILED and res.fails and req_id not in res.fails:
        return replace(res, outcome=Outcome.ERROR, blocked_by=res.fails)
    return res


def _check_inputs(
    known: set[str],
    results: Sequence[CheckResult],
    waivers: Mapping[str, str],
    unsupported: Mapping[str, str],
) -> None:
    unknown: dict[str, set[str]] = {}
    seen: set[str] = set()
    for res in results:
        if res.id in seen:
            raise VerdictInputError(f"check id {res.id!r} appears more than once")
        seen.add(res.id)
        for req_id in res.requirement_ids:
            if req_id not in known:
                unknown.setdefault(req_id, set()).add(res.id)
    for source, ids in (("waiver", waivers), ("unsupported", unsupported)):
        for req_id in ids:
            if req_id not in known:
                unknown.setdefault(req_id, set()).add(source)
    if unknown:
        raise UnknownRequirementError(unknown)
    blank = sorted((i for i, why in waivers.items() if not why or not why.strip()), key=_safe_key)
    if blank:
        raise VerdictInputError(f"waivers without a reason: {', '.join(blank)}")


def compute(
    requirements: Sequence[RequirementLike],
    results: Iterable[CheckResult],
    *,
    profile: Profile,
    only: set[str] | frozenset[str] | None = None,
    waivers: Mapping[str, str] | None = None,
    unsupported: Mapping[str, str] | None = None,
    embedded: bool = True,
) -> list[RequirementVerdict]:
    """One verdict per requirement, in the order of `requirements` (OC-HARNESS-8101..8108).

    `only` is the `--only` selection (None: everything in profile); `waivers` maps ID -> reason;
    `unsupported` maps ID -> why the target declares the feature absent (capability data).
    Raises UnknownRequirementError when checks, waivers, `only` or `unsupported` name IDs that
    are not in `requirements`, and VerdictInputError for other inconsistent input.
    """
    results = list(results)
    waivers = dict(waivers or {})
    unsupported = dict(unsupported or {})
    known = {r.id for r in requirements}
    if len(known) != len(requirements):
        dupes = sorted(i for i, n in Counter(r.id for r in requirements).items() if n > 1)
        raise VerdictInputError(f"duplicate requirement IDs: {', '.join(dupes)}")
    if only is not None and not set(only) <= known:
        raise UnknownRequirementError({i: ("--only",) for i in set(only) - known})
    _check_inputs(known, results, waivers, unsupported)

    linked: dict[str, list[CheckResult]] = {r.id: [] for r in requirements}
    for res in results:
        for req_id in dict.fromkeys(res.requirement_ids):
            linked[req_id].append(for_requirement(res, req_id))

    out: list[RequirementVerdict] = []
    for req in requirements:
        checks = tuple(sorted(linked[req.id], key=lambda c: c.id))
        in_profile = profile_selects(profile, req.profile)
        skip_reason = None
        if not in_profile:
            skip_reason = f"profile {req.profile} lies outside the run's profile {profile}"
        elif only is not None and req.id not in only:
            skip_reason = "not selected by --only / --family"
        verdict, reason = _verdict_for(
            req,
            checks,
            skip_reason=skip_reason,
            waivers=waivers,
            unsupported=unsupported,
            embedded=embedded,
        )
        out.append(RequirementVerdict(req, verdict, reason, checks, in_profile))
    return out


def result_of(verdicts: Iterable[RequirementVerdict], profile: Profile) -> RunResult:
    """The run's result from the in-profile verdicts (OC-HARNESS-8201)."""
    in_profile = [v for v in verdicts if profile_selects(profile, v.requirement.profile)]
    if any(v.verdict is Verdict.FAIL and v.requirement.level == "must" for v in in_profile):
        return "failure"
    if any(v.verdict in PARTIAL_VERDICTS for v in in_profile):
        return "partial"
    return "success"


def exit_code(result: RunResult, partial_exit_code: int = 1) -> int:
    """0 for success, 1 for failure, `partial_exit_code` (0 or 1) for partial (8202)."""
    if partial_exit_code not in (0, 1):
        raise ValueError(f"partial_exit_code must be 0 or 1, not {partial_exit_code!r}")
    codes = {"success": 0, "failure": 1, "partial": partial_exit_code}
    if result not in codes:
        raise ValueError(f"unknown run result {result!r}")
    return codes[result]


def summary(verdicts: Iterable[RequirementVerdict]) -> dict[str, int]:
    """Count per verdict: all seven keys, in the verdict table's order, zeros included."""
    counts = Counter(v.verdict for v in verdicts)
    return {v.value: counts.get(v, 0) for v in Verdict}


def claimed_not_shown(
    verdicts: Iterable[RequirementVerdict], claims: Mapping[str, Sequence[str]]
) -> list[ClaimedNotShown]:
    """Advertised features whose requirements are not all `pass`, sorted by feature (8109).

    `claims` maps each feature the target advertises to the requirement IDs that prove it. A
    feature mapped to no requirement cannot be shown at all and is listed with an empty tuple.
    Requirements the run deselected (`skipped`: another profile, `--only`, `--family`) were not
    judged, so they are not missing; a feature whose requirements were all deselected is not
    listed (a core run says nothing about claims only the extended profile judges).
    """
    by_id = {v.id: v.verdict for v in verdicts}
    unknown: dict[str, list[str]] = {}
    for feature, ids in claims.items():
        for req_id in ids:
            if req_id not in by_id:
                unknown.setdefault(req_id, []).append(f"feature {feature}")
    if unknown:
        raise UnknownRequirementError(unknown)
    out = []
    for feature in sorted(claims):
        ids = sorted(dict.fromkeys(claims[feature]), key=id_sort_key)
        judged = [i for i in ids if by_id[i] is not Verdict.SKIPPED]
        if ids and not judged:
            continue
        missing = tuple(i for i in judged if by_id[i] is not Verdict.PASS)
        if missing or not ids:
            out.append(ClaimedNotShown(feature, missing))
    return out


def root_causes(verdicts: Iterable[RequirementVerdict]) -> list[str]:
    """Failed requirements that kept other checks from judging theirs, in report order."""
    blocking = {b for v in verdicts for c in v.checks for b in c.blocked_by}
    return [v.id for v in verdicts if v.verdict is Verdict.FAIL and v.id in blocking]
