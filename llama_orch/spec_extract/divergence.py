"""Divergence notes: where a requirement departs from upstream llama-orch, written under it.

A note is three nested list items after the requirement's attribute line, in this order:
`- Ours (<kind>): ...`, `- Upstream: ...`, `- Source: ...`; each may wrap onto lines indented
four spaces, and a requirement may carry several notes. The syntax is documented in
`specs/README.md`. The parser feeds field lines here; `build_notes` checks the grammar and
returns the notes or the first problem with its line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from llama_orch.spec_extract.model import DIVERGENCE_KINDS, Divergence, rfc2119_keywords

_FIELD_RE = re.compile(
    r"^- (?:Ours \((?P<kind>[^)]*)\)|(?P<key>Upstream|Source)):(?:[ \t]+(?P<text>.*))?$"
)
#: A line that looks like the start of a note field (used to catch one written too early).
FIELD_START_RE = re.compile(r"^- (?:Ours\b|Upstream:|Source:)")
_ORDER = ("ours", "upstream", "source")
_LABEL = {"ours": "- Ours (<kind>):", "upstream": "- Upstream:", "source": "- Source:"}
EXPECTED = "'- Ours (stricter|looser|different): …', '- Upstream: …' or '- Source: …'"


@dataclass
class NoteField:
    """One field line of a note as written, with its wrapped continuation lines."""

    line: int
    raw: str
    key: str | None = None
    kind: str | None = None
    parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.parts).split())


def start_field(line: int, stripped: str) -> NoteField:
    """Read the head of a `- ...` line found after the attribute line."""
    match = _FIELD_RE.match(stripped)
    if not match:
        return NoteField(line, stripped)
    key = "ours" if match.group("key") is None else match.group("key").lower()
    return NoteField(line, stripped, key, match.group("kind"), [match.group("text") or ""])


def build_notes(fields: list[NoteField]) -> tuple[tuple[Divergence, ...], tuple[int, str] | None]:
    """Group field lines into notes; on a grammar error return the first problem instead."""
    notes: list[Divergence] = []
    for start in range(0, len(fields), len(_ORDER)):
        group = fields[start : start + len(_ORDER)]
        problem = _check_group(group)
        if problem:
            return (), problem
        ours, upstream, source = group
        notes.append(Divergence(ours.kind or "", ours.text, upstream.text, source.text))
    return tuple(notes), None


def _check_group(group: list[NoteField]) -> tuple[int, str] | None:
    for want, got in zip(_ORDER, group, strict=False):
        if got.key is None:
            return got.line, f"malformed divergence line {got.raw!r}; expected {EXPECTED}"
        if got.key != want:
            return got.line, f"divergence note expects {_LABEL[want]!r} here, got {got.raw!r}"
        if got.key == "ours" and got.kind not in DIVERGENCE_KINDS:
            kinds = ", ".join(DIVERGENCE_KINDS)
            return got.line, f"divergence kind must be one of {kinds}, got {got.kind!r}"
        if not got.text:
            return got.line, f"divergence field {_LABEL[want]!r} is empty"
        keywords = rfc2119_keywords(got.text)
        if keywords:
            return got.line, (
                f"divergence notes restate rules and carry no RFC-2119 keyword; "
                f"found {keywords[0]!r} (write it in lower case or in backticks)"
            )
    if len(group) < len(_ORDER):
        missing = _LABEL[_ORDER[len(group)]]
        return group[0].line, f"divergence note lacks {missing!r}"
    return None
