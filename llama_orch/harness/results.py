"""What a check run produces: one `CheckResult` per executed (or declined) check.

Every check kind (Gherkin scenario, pytest check, metrics scrape, schema run, determinism
case, white-box test) ends up as CheckResults naming the requirement IDs it proves; the verdict
engine (`harness.verdicts`) turns them into one verdict per requirement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Outcome(StrEnum):
    """How one check ended."""

    PASSED = "passed"
    FAILED = "failed"  # the target did something wrong: evidence says what
    ERROR = "error"  # the harness could not get a result (crash, missing prerequisite)
    UNDEFINED = "undefined"  # a Gherkin step has no definition: the check never ran
    SKIPPED = "skipped"  # deselected by the user (--only, --family, --profile)
    NOT_SUPPORTED = "not-supported"  # the target declares it lacks the optional feature


@dataclass(frozen=True)
class Evidence:
    """Why a check failed, reproducibly: the exchange (secrets redacted) and a curl line."""

    message: str = ""
    request: str | None = None
    response: str | None = None
    curl: str | None = None

    def to_json(self) -> dict[str, str]:
        out = {"message": self.message}
        for key in ("request", "response", "curl"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome; `id` is stable across runs (e.g. a test node id)."""

    id: str
    kind: str  # bdd | check | metrics | schema | contract | determinism | white-box
    requirement_ids: tuple[str, ...]
    outcome: Outcome
    evidence: Evidence = field(default_factory=Evidence)
    duration_s: float = 0.0  # volatile: reported only in the `run` part of reports
    # Requirements whose breakage kept this check from judging its own (outcome `error`).
    blocked_by: tuple[str, ...] = ()
    role: str = "behaviour"  # `shape` checks alone never make a behaviour requirement pass
    # A failure of only these of its requirements (empty: all); for its other requirements
    # the check is blocked by these (OC-HARNESS-8111).
    fails: tuple[str, ...] = ()
