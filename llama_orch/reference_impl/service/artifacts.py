"""The artifact store: plans, summaries, diffs and traces under content-addressed ids.

`digest` is `sha256:` + the hex SHA-256 of the canonical JSON of `content` (UTF-8, keys sorted,
no insignificant whitespace); `id` is the same hash over `{kind, content, parent}` (`parent`
null when absent), so storing the same artifact again gives the same id and adds its tags
(specs/20 section 9). Artifacts belong to the tenant whose key stored them: each tenant has its
own copy of an id, another tenant's key is refused (403), an operator key reads them all.
Metadata is kept from the first store. The store is bounded (count and content bytes); when
full, the oldest artifacts go first.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

KINDS = ("plan", "summary", "diff", "trace", "other")


class NoSuchArtifact(LookupError):
    """No tenant stored an artifact with this id (or it was evicted)."""


class NotYourArtifact(PermissionError):
    """The artifact exists, but only for other tenants."""


class BadParent(ValueError):
    """`parent` names no artifact of the caller's tenant."""


@dataclass
class Artifact:
    artifact_id: str
    kind: str
    content: dict[str, Any]
    digest: str
    created_ms: int
    size: int
    tags: list[str] = field(default_factory=list)
    parent: str | None = None
    metadata: dict[str, Any] | None = None


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_of(value: Any) -> str:
    return "sha256:" + hashlib.sha256(canonical(value)).hexdigest()


class ArtifactStore:
    """Artifacts by (tenant, id), oldest first."""

    def __init__(self, max_bytes: int, max_count: int) -> None:
        self.max_bytes = max_bytes
        self.max_count = max_count
        self._items: OrderedDict[tuple[str, str], Artifact] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(
        self,
        tenant: str,
        kind: str,
        content: dict[str, Any],
        *,
        tags: list[str],
        parent: str | None,
        metadata: dict[str, Any] | None,
        now_ms: int,
    ) -> Artifact:
        """Store (or re-tag) an artifact of `tenant`; BadParent for an unknown parent."""
        if parent is not None and (tenant, parent) not in self._items:
            raise BadParent(parent)
        artifact_id = sha256_of({"kind": kind, "content": content, "parent": parent})
        old = self._items.get((tenant, artifact_id))
        if old is not None:
            old.tags.extend(t for t in dict.fromkeys(tags) if t not in old.tags)
            return old
        size = len(canonical(content))
        item = Artifact(
            artifact_id,
            kind,
            content,
            sha256_of(content),
            now_ms,
            size,
            list(dict.fromkeys(tags)),
            parent,
            metadata,
        )
        self._items[(tenant, artifact_id)] = item
        self._bytes += size
        while len(self._items) > 1 and (
            len(self._items) > self.max_count or self._bytes > self.max_bytes
        ):
            _, gone = self._items.popitem(last=False)
            self._bytes -= gone.size
        return item

    def get(self, tenant: str | None, artifact_id: str) -> Artifact:
        """The artifact as `tenant` (None: an operator, who reads any tenant's) may see it."""
        mine = self._items.get((tenant, artifact_id)) if tenant is not None else None
        if mine is not None:
            return mine
        others = [a for (_, i), a in self._items.items() if i == artifact_id]
        if not others:
            raise NoSuchArtifact(artifact_id)
        if tenant is not None:
            raise NotYourArtifact(artifact_id)
        return others[0]
