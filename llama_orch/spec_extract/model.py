"""Plain data for requirements and the vocabularies their attributes use."""

from __future__ import annotations

import re
from dataclasses import dataclass

FAMILIES = ("CORE", "CTRL", "POOL", "ADAPT", "POLICY", "CONFIG", "TEST", "METRICS", "HARNESS")

#: A well-formed requirement ID, anchored.
ID_RE = re.compile(r"^(?:ORCH|OC-POLICY-SDK|OC-(?:" + "|".join(FAMILIES) + r"))-\d{4}$")

#: An ID-shaped token inside prose; only well-formed IDs count as references.
REF_RE = re.compile(
    r"(?<![\w-])(?:ORCH|OC-POLICY-SDK|OC-(?:" + "|".join(FAMILIES) + r"))-\d{4}(?![\w-])"
)

#: A bold head token that is meant to be an ID (upper-case words joined by hyphens ending in
#: something with a digit, or anything starting with ORCH/OC). Used to tell a malformed ID
#: from an ordinary bold list item such as `**Note**:`.
ID_ATTEMPT_RE = re.compile(r"^(?:(?:ORCH|OC)\b.*|[A-Z][A-Z0-9]*(?:-[A-Za-z0-9]+)*-?\d\w*)$")

VERIFY_VALUES = ("black-box", "white-box", "manual")
#: How a rule relates to upstream llama-orch: `stricter` (an implementation that follows only
#: upstream can fail it), `looser` (ours allows what upstream forbids or demands less), or
#: `different` (the two rules give different answers).
DIVERGENCE_KINDS = ("stricter", "looser", "different")
PROFILE_VALUES = ("core", "extended")
LEVELS = ("must", "should", "may")

# Longer phrases first so that "MUST NOT" is one match, not "MUST" then "NOT".
KEYWORD_LEVEL: dict[str, str] = {
    "MUST NOT": "must",
    "SHALL NOT": "must",
    "MUST": "must",
    "SHALL": "must",
    "REQUIRED": "must",
    "NOT RECOMMENDED": "should",
    "SHOULD NOT": "should",
    "SHOULD": "should",
    "RECOMMENDED": "should",
    "MAY": "may",
    "OPTIONAL": "may",
}
KEYWORD_RE = re.compile(r"\b(" + "|".join(KEYWORD_LEVEL) + r")\b")
_CODE_SPAN_RE = re.compile(r"`[^`]*`")


def rfc2119_keywords(text: str) -> list[str]:
    """Upper-case RFC-2119 keywords in `text`, in order; inline code does not count."""
    return KEYWORD_RE.findall(_CODE_SPAN_RE.sub("", text))


def id_sort_key(req_id: str) -> tuple[str, int]:
    """Order IDs by family, then numerically."""
    family, _, number = req_id.rpartition("-")
    return (family, int(number))


@dataclass(frozen=True)
class Divergence:
    """One note saying where a requirement departs from upstream OrchQueue v1, and how."""

    kind: str
    ours: str
    upstream: str
    source: str


@dataclass(frozen=True)
class Requirement:
    """One requirement as extracted from a spec."""

    id: str
    level: str
    text: str
    section: str
    anchor: str
    verify: str
    profile: str
    spec: str
    line: int
    reason: str | None = None
    divergences: tuple[Divergence, ...] = ()
