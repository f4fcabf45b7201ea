"""Allow/deny matching for domains and media types: deny wins, and no match is a denial."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


def domain_matches(host: str, pattern: str) -> bool:
    """`example.com` matches itself only; `*.example.com` matches its subdomains (not itself)."""
    host, pattern = host.lower().rstrip("."), pattern.lower().rstrip(".")
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


def mime_matches(mime: str, pattern: str) -> bool:
    """`text/html` matches itself; `text/*` every `text/` type; `*/*` everything."""
    mime, pattern = mime.lower(), pattern.lower()
    if pattern == "*/*":
        return True
    if pattern.endswith("/*"):
        return mime.split("/", 1)[0] == pattern[:-2]
    return mime == pattern


@dataclass(frozen=True)
class AllowDeny:
    allow: tuple[str, ...]
    deny: tuple[str, ...]

    @classmethod
    def of(cls, allow: Sequence[str], deny: Sequence[str]) -> AllowDeny:
        return cls(tuple(allow), tuple(deny))

    def judge(self, value: str, match) -> str | None:
        """None when allowed; else `denied` (a deny pattern matched) or `not_allowed`."""
        if any(match(value, p) for p in self.deny):
            return "denied"
        if any(match(value, p) for p in self.allow):
            return None
        return "not_allowed"


def media_type(content_type: str | None) -> str:
    """`text/html; charset=utf-8` -> `text/html`; a missing header is `application/octet-stream`."""
    if not content_type:
        return "application/octet-stream"
    return content_type.split(";", 1)[0].strip().lower() or "application/octet-stream"
