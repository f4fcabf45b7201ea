"""Offline check of relative Markdown links and their #anchors."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from urllib.parse import unquote

from llama_orch.spec_extract.errors import SpecIssue
from llama_orch.spec_extract.slug import SlugCounter, heading_text

_LINK_RE = re.compile(r"(?<!!)\[(?:[^\]]*)\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_HEADING_RE = re.compile(r"^#{1,6}[ \t]+(.+)$")
_FENCE_RE = re.compile(r"^ {0,3}(```|~~~)")
_HTML_ANCHOR_RE = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")
_EXTERNAL = ("http://", "https://", "mailto:")


def _prose_lines(path: Path) -> Iterable[tuple[int, str]]:
    in_fence = False
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if _FENCE_RE.match(line):
            in_fence = not in_fence
        elif not in_fence:
            yield lineno, line


@cache
def anchors_of(path: Path) -> frozenset[str]:
    """Every anchor a Markdown file offers: heading slugs plus explicit `<a id=...>`."""
    slugs = SlugCounter()
    found: set[str] = set()
    for _, line in _prose_lines(path):
        heading = _HEADING_RE.match(line)
        if heading:
            found.add(slugs.next(heading_text(heading.group(1))))
        found.update(_HTML_ANCHOR_RE.findall(line))
    return frozenset(found)


def check_links(files: Iterable[Path], root: Path) -> list[SpecIssue]:
    """Broken relative links (missing file or missing anchor) in the given Markdown files."""
    issues = []
    for path in sorted(files):
        display = path.relative_to(root).as_posix()
        for lineno, line in _prose_lines(path):
            for target in _LINK_RE.findall(_strip_code(line)):
                reason = _check_target(path, target)
                if reason:
                    issues.append(SpecIssue(display, lineno, reason))
    return issues


def _strip_code(line: str) -> str:
    return re.sub(r"`[^`]*`", "", line)


def _check_target(source: Path, target: str) -> str | None:
    if target.startswith(_EXTERNAL):
        return None
    file_part, _, anchor = unquote(target).partition("#")
    dest = (source.parent / file_part).resolve() if file_part else source.resolve()
    if not dest.exists():
        return f"broken link {target!r}: {file_part} does not exist"
    if anchor and dest.suffix == ".md" and anchor not in anchors_of(dest):
        return f"broken link {target!r}: no heading with anchor #{anchor} in {dest.name}"
    return None


def markdown_files(root: Path) -> list[Path]:
    """The project's own Markdown: README, specs and docs, never the venv or reports."""
    skip = {".venv", ".git", "reports", "node_modules", ".pytest_cache"}
    return sorted(p for p in root.rglob("*.md") if not skip.intersection(p.relative_to(root).parts))
