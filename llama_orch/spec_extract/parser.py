"""Line-based parser for one spec file.

It yields requirements, every ID reference in the file, and the per-file issues it can decide
alone (malformed ID, missing keyword, bad attributes, bad divergence notes). Cross-file rules
(duplicates, unknown references) are applied by `extract`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from llama_orch.spec_extract.divergence import FIELD_START_RE, NoteField, build_notes, start_field
from llama_orch.spec_extract.errors import SpecIssue
from llama_orch.spec_extract.model import (
    ID_ATTEMPT_RE,
    ID_RE,
    KEYWORD_LEVEL,
    LEVELS,
    PROFILE_VALUES,
    REF_RE,
    VERIFY_VALUES,
    Requirement,
    rfc2119_keywords,
)
from llama_orch.spec_extract.slug import SlugCounter, heading_text

_HEAD_RE = re.compile(r"^- \*\*([^*]+)\*\*:[ \t]*(.*)$")
_HEADING_RE = re.compile(r"^(#{1,6})[ \t]+(.+)$")
_FENCE_RE = re.compile(r"^ {0,3}(```|~~~)")
_LIST_RESIDUE_RE = re.compile(r"^(?:[-*+]|\d+[.)])[ \t]+(?:\[[ xX]\][ \t]+)?")
_ALLOWED_KEYS = {"verify", "profile", "reason"}
_NOTE_CONTINUATION_INDENT = 4

_yaml = YAML(typ="safe", pure=True)


@dataclass
class ParsedSpec:
    """What one file contributes: its requirements, references and local issues."""

    path: str
    title: str | None = None
    requirements: list[Requirement] = field(default_factory=list)
    references: list[tuple[str, int]] = field(default_factory=list)
    issues: list[SpecIssue] = field(default_factory=list)


@dataclass
class _Item:
    token: str
    line: int
    text_lines: list[str]
    attr_line: int | None = None
    attr_raw: str | None = None
    trailing_line: int | None = None
    early_note_line: int | None = None
    note_fields: list[NoteField] = field(default_factory=list)


def level_of(text: str) -> str | None:
    """Strongest upper-case RFC-2119 keyword in `text`, ignoring inline code."""
    found = {KEYWORD_LEVEL[m] for m in rfc2119_keywords(text)}
    return next((lvl for lvl in LEVELS if lvl in found), None)


def clean_text(lines: list[str]) -> str:
    """Join wrapped lines into one sentence without list or checkbox residue."""
    parts = [_LIST_RESIDUE_RE.sub("", ln.strip()) for ln in lines]
    return " ".join(" ".join(p for p in parts if p).split())


def parse_spec(path: Path, display: str) -> ParsedSpec:
    """Parse one spec file; `display` is the repo-relative path used in messages and anchors."""
    spec = ParsedSpec(path=display)
    slugs = SlugCounter()
    section, anchor = "", display
    in_fence = False
    item: _Item | None = None

    def close() -> None:
        nonlocal item
        if item is not None:
            _finish(spec, item, section_at_item, anchor_at_item)
            item = None

    section_at_item, anchor_at_item = section, anchor
    lineno = 0
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if _FENCE_RE.match(raw):
            close()
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        head = _HEAD_RE.match(raw)
        heading = _HEADING_RE.match(raw)
        if item is not None and raw.startswith((" ", "\t")) and raw.strip():
            _continue_item(item, raw, lineno)
            _collect_refs(spec, raw, lineno)
            continue
        close()
        if heading:
            section = heading_text(heading.group(2))
            anchor = f"{display}#{slugs.next(section)}"
            if len(heading.group(1)) == 1 and spec.title is None:
                spec.title = section
            _collect_refs(spec, raw, lineno)
        elif head and ID_ATTEMPT_RE.match(head.group(1).strip()):
            token = head.group(1).strip()
            item = _Item(token=token, line=lineno, text_lines=[head.group(2)])
            section_at_item, anchor_at_item = section, anchor
            _collect_refs(spec, head.group(2), lineno)
        else:
            _collect_refs(spec, raw, lineno)
    close()
    if in_fence:
        spec.issues.append(SpecIssue(display, lineno, "unclosed code fence"))
    return spec


def _continue_item(item: _Item, raw: str, lineno: int) -> None:
    stripped = raw.strip()
    if item.attr_raw is None:
        if stripped.startswith("{") and stripped.endswith("}"):
            item.attr_line, item.attr_raw = lineno, stripped
        elif FIELD_START_RE.match(stripped):
            item.early_note_line = item.early_note_line or lineno
        else:
            item.text_lines.append(stripped)
    elif item.trailing_line is not None:
        return
    elif stripped.startswith("- "):
        item.note_fields.append(start_field(lineno, stripped))
    elif item.note_fields and _indent(raw) >= _NOTE_CONTINUATION_INDENT:
        item.note_fields[-1].parts.append(stripped)
    else:
        item.trailing_line = lineno


def _indent(raw: str) -> int:
    return len(raw) - len(raw.lstrip(" \t"))


def _collect_refs(spec: ParsedSpec, text: str, lineno: int) -> None:
    spec.references.extend((m, lineno) for m in REF_RE.findall(text))


def _finish(spec: ParsedSpec, item: _Item, section: str, anchor: str) -> None:
    where = item.line
    if not ID_RE.match(item.token):
        spec.issues.append(SpecIssue(spec.path, where, f"malformed ID {item.token!r}"))
        return
    text = clean_text(item.text_lines)
    level = level_of(text)
    issues_before = len(spec.issues)
    if not text:
        spec.issues.append(SpecIssue(spec.path, where, f"{item.token} has no text"))
    elif level is None:
        spec.issues.append(
            SpecIssue(spec.path, where, f"{item.token} has no RFC-2119 keyword (MUST/SHOULD/MAY)")
        )
    if item.early_note_line is not None:
        spec.issues.append(
            SpecIssue(
                spec.path,
                item.early_note_line,
                f"{item.token}: a divergence note goes after the attribute line",
            )
        )
    if item.trailing_line is not None:
        after = "divergence note" if item.note_fields else "attributes"
        spec.issues.append(
            SpecIssue(spec.path, item.trailing_line, f"{item.token}: text after {after}")
        )
    attrs = _parse_attrs(spec, item)
    notes, problem = build_notes(item.note_fields)
    if problem is not None:
        spec.issues.append(SpecIssue(spec.path, problem[0], f"{item.token}: {problem[1]}"))
    if attrs is None or len(spec.issues) > issues_before or level is None:
        return
    spec.requirements.append(
        Requirement(
            id=item.token,
            level=level,
            text=text,
            section=section,
            anchor=anchor,
            verify=attrs["verify"],
            profile=attrs["profile"],
            spec=spec.path,
            line=where,
            reason=attrs.get("reason"),
            divergences=notes,
        )
    )


def _parse_attrs(spec: ParsedSpec, item: _Item) -> dict[str, str] | None:
    """Validate the `{verify: ..., profile: ...}` line; report the first problem found."""
    rid, line = item.token, item.attr_line or item.line

    def fail(reason: str) -> None:
        spec.issues.append(SpecIssue(spec.path, line, f"{rid}: {reason}"))

    if item.attr_raw is None:
        fail("missing attribute line {verify: ..., profile: ...}")
        return None
    try:
        attrs = _yaml.load(item.attr_raw)
    except YAMLError as exc:
        fail(f"attribute line is not a YAML flow map ({str(exc).splitlines()[0]})")
        return None
    if not isinstance(attrs, dict):
        fail("attribute line is not a mapping")
        return None
    unknown = sorted(set(attrs) - _ALLOWED_KEYS)
    checks = [
        (bool(unknown), f"unknown attribute(s) {', '.join(map(str, unknown))}"),
        ("verify" not in attrs, "missing 'verify'"),
        ("profile" not in attrs, "missing 'profile'"),
        (
            "verify" in attrs and attrs["verify"] not in VERIFY_VALUES,
            f"verify must be one of {', '.join(VERIFY_VALUES)}, got {attrs.get('verify')!r}",
        ),
        (
            "profile" in attrs and attrs["profile"] not in PROFILE_VALUES,
            f"profile must be one of {', '.join(PROFILE_VALUES)}, got {attrs.get('profile')!r}",
        ),
        (
            attrs.get("verify") == "manual" and not isinstance(attrs.get("reason"), str),
            "verify: manual needs a quoted 'reason'",
        ),
    ]
    for bad, reason in checks:
        if bad:
            fail(reason)
            return None
    return attrs
