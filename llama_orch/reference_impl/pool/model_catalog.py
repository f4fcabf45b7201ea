"""The model catalog: entries with provenance, immutable tag bindings and lifecycle states.

An entry records a model's digest, source, tags, manifests, signatures and SBOM (ORCH-3060,
ORCH-3065) and its lifecycle state (ORCH-3069). Bindings never move, so resolving a reference
is repeatable (ORCH-3062, ORCH-3068): an id names one digest, a digest one entry, and a tag
`<repository>:<tag>` one digest, where the repository is the entry's `source_url` without its
scheme (the entry id when it has no source). Registering anything that would rebind one of
them is a conflict. Lifecycle moves follow `TRANSITIONS`: `Draft` is only where an entry
starts, and `Retired` is final. The catalog keeps at most `max_entries`; when full, the
oldest Retired entries are dropped (archived entries are what may go).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


class ModelState(StrEnum):
    DRAFT = "Draft"
    ACTIVE = "Active"
    CANARY = "Canary"
    DEPRECATED = "Deprecated"
    RETIRED = "Retired"


S = ModelState
TRANSITIONS: dict[ModelState, frozenset[ModelState]] = {
    S.DRAFT: frozenset({S.ACTIVE, S.CANARY, S.DEPRECATED, S.RETIRED}),
    S.ACTIVE: frozenset({S.CANARY, S.DEPRECATED, S.RETIRED}),
    S.CANARY: frozenset({S.ACTIVE, S.DEPRECATED, S.RETIRED}),
    S.DEPRECATED: frozenset({S.ACTIVE, S.RETIRED}),
    S.RETIRED: frozenset(),
}
# States whose model may be rolled out to a pool.
SERVABLE = frozenset({S.ACTIVE, S.CANARY})


class CatalogError(Exception):
    """A refused catalog operation, with its HTTP status (the code is INVALID_PARAMS)."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


@dataclass
class Entry:
    """One catalogued model. Documents are kept as JSON-ready dicts, exactly as verified."""

    model_id: str
    digest: str
    source_url: str | None
    tags: list[str]
    manifests: list[dict[str, Any]]
    signatures: list[dict[str, Any]]
    sbom: dict[str, Any] | None
    engine: str
    created_ms: int
    state: ModelState = ModelState.DRAFT
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def repository(self) -> str:
        return repository_of(self.source_url) or self.model_id


def repository_of(source_url: str | None) -> str | None:
    """`source_url` without its scheme and trailing slash (the scope of its tags)."""
    if not source_url:
        return None
    return source_url.split("://", 1)[-1].rstrip("/")


class ModelCatalog:
    """All entries, by id in registration order, with the digest and tag bindings."""

    def __init__(self, max_entries: int = 512) -> None:
        self.max_entries = max_entries
        self._by_id: OrderedDict[str, Entry] = OrderedDict()
        self._by_digest: dict[str, str] = {}
        self._tags: dict[tuple[str, str], str] = {}  # (repository, tag) -> digest

    def __len__(self) -> int:
        return len(self._by_id)

    def entries(self) -> list[Entry]:
        return list(self._by_id.values())

    def get(self, model_id: str) -> Entry | None:
        return self._by_id.get(model_id)

    def conflict(self, entry: Entry) -> CatalogError | None:
        """Why `entry` would rebind an id, a digest or a tag; None when it binds nothing anew."""
        if not DIGEST_RE.match(entry.digest):
            return CatalogError(400, "digest must look like sha256:<64 hex digits>", "digest")
        old = self._by_id.get(entry.model_id)
        if old is not None and old.digest != entry.digest:
            return CatalogError(
                409, f"model {entry.model_id} is already registered with another digest"
            )
        owner = self._by_digest.get(entry.digest)
        if owner is not None and owner != entry.model_id:
            return CatalogError(409, f"digest {entry.digest} is already catalogued as {owner}")
        for tag in entry.tags:
            bound = self._tags.get((entry.repository, tag))
            if bound is not None and bound != entry.digest:
                return CatalogError(
                    409, f"tag {entry.repository}:{tag} already resolves to {bound}", "tags"
                )
        return None

    def add(self, entry: Entry) -> Entry:
        """Record `entry` (or add its tags to the same id and digest); CatalogError on conflict."""
        problem = self.conflict(entry)
        if problem is not None:
            raise problem
        old = self._by_id.get(entry.model_id)
        if old is not None:
            for tag in entry.tags:
                if tag not in old.tags:
                    old.tags.append(tag)
                    self._tags[(old.repository, tag)] = old.digest
            return old
        if len(self._by_id) >= self.max_entries and not self._drop_retired():
            raise CatalogError(400, f"the catalog is full ({self.max_entries} entries)")
        self._by_id[entry.model_id] = entry
        self._by_digest[entry.digest] = entry.model_id
        for tag in entry.tags:
            self._tags[(entry.repository, tag)] = entry.digest
        return entry

    def _drop_retired(self) -> bool:
        for model_id, e in self._by_id.items():
            if e.state is ModelState.RETIRED:
                del self._by_id[model_id]
                del self._by_digest[e.digest]
                self._tags = {k: v for k, v in self._tags.items() if v != e.digest}
                return True
        return False

    def resolve(self, ref: str) -> Entry | None:
        """The entry a reference names: its id, its digest, or `<repository>:<tag>`."""
        entry = self._by_id.get(ref)
        if entry is not None:
            return entry
        model_id = self._by_digest.get(ref)
        if model_id is not None:
            return self._by_id[model_id]
        repository, sep, tag = ref.rpartition(":")
        if sep and "/" not in tag:
            digest = self._tags.get((repository, tag))
            if digest is not None:
                return self._by_id.get(self._by_digest.get(digest, ""))
        return None

    def move(self, model_id: str, state: ModelState) -> tuple[ModelState, ModelState]:
        """Change an entry's state; (old, new). A repeat of the current state changes nothing."""
        entry = self._by_id.get(model_id)
        if entry is None:
            raise CatalogError(404, f"no model {model_id!r} in the catalog")
        old = entry.state
        if state is not old and state not in TRANSITIONS[old]:
            raise CatalogError(
                400, f"transition {old.value} -> {state.value} is not allowed", "state"
            )
        entry.state = state
        return old, state
