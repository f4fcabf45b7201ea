"""GitHub-style heading anchors, shared by the extractor and the link checker."""

from __future__ import annotations

import re

_LINK_RE = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_DROP_RE = re.compile(r"[^\w\- ]", re.UNICODE)


def heading_text(raw: str) -> str:
    """Render a Markdown heading's inline text roughly as GitHub shows it."""
    text = raw.strip().rstrip("#").strip()
    text = _LINK_RE.sub(r"\1", text)
    return text.replace("`", "").replace("**", "").strip()


def slugify(text: str) -> str:
    """Slug of rendered heading text: lower-case, punctuation dropped, spaces to hyphens."""
    return _DROP_RE.sub("", text.lower()).replace(" ", "-")


class SlugCounter:
    """Assigns GitHub's `-1`, `-2` suffixes to repeated headings within one document."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def next(self, text: str) -> str:
        base = slugify(text)
        count = self._seen.get(base, 0)
        self._seen[base] = count + 1
        return base if count == 0 else f"{base}-{count}"
