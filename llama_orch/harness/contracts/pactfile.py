"""Reading Pact V4 files: the interactions to verify, with the requirement IDs each proves.

An interaction names its requirement IDs in `comments.requirements` (a list of strings; Pact V4
keeps `comments` free-form and the verifier ignores keys it does not know), its stable check id
in `key`, and, when it must be sent without the target's API key, `comments.credentials` set to
`"none"`. Anything else missing or malformed is a `PactFileError` naming the file and the
interaction, so a broken pact stops the run instead of silently verifying less.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_orch.harness.contracts import PACT_DIR

VOLATILE_METADATA = ("pactRust",)  # versions of the Pact library that wrote the file
_SLUG = re.compile(r"[^a-z0-9]+")


class PactFileError(ValueError):
    """A pact file cannot be used: unreadable, not V4 HTTP, or missing requirement IDs."""


@dataclass(frozen=True)
class PactInteraction:
    """One HTTP interaction of a pact file, as the provider side needs it."""

    pact_file: Path
    consumer: str
    provider: str
    description: str
    key: str
    requirement_ids: tuple[str, ...]
    states: tuple[str, ...]
    credentials: bool
    method: str
    path: str

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}: {self.description}"


def slug(text: str) -> str:
    return _SLUG.sub("-", text.lower()).strip("-")


def _read(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PactFileError(f"{path}: cannot be read as JSON: {exc}") from exc
    version = str(doc.get("metadata", {}).get("pactSpecification", {}).get("version", ""))
    if not version.startswith("4."):
        raise PactFileError(f"{path}: pactSpecification.version is {version!r}, expected 4.x")
    return doc


def _interaction(path: Path, doc: dict[str, Any], raw: dict[str, Any]) -> PactInteraction:
    description = raw.get("description")
    where = f"{path}: interaction {description!r}"
    if not isinstance(description, str) or not description:
        raise PactFileError(f"{path}: an interaction has no description")
    if raw.get("type") != "Synchronous/HTTP":
        raise PactFileError(f"{where}: type {raw.get('type')!r} is not Synchronous/HTTP")
    comments = raw.get("comments") or {}
    reqs = comments.get("requirements")
    if not (isinstance(reqs, list) and reqs and all(isinstance(r, str) for r in reqs)):
        raise PactFileError(f"{where}: comments.requirements must list requirement IDs")
    request = raw.get("request") or {}
    return PactInteraction(
        pact_file=path,
        consumer=str(doc.get("consumer", {}).get("name", "")),
        provider=str(doc.get("provider", {}).get("name", "")),
        description=description,
        key=str(raw.get("key") or slug(description)),
        requirement_ids=tuple(reqs),
        states=tuple(str(s.get("name", "")) for s in raw.get("providerStates") or ()),
        credentials=comments.get("credentials") != "none",
        method=str(request.get("method", "")),
        path=str(request.get("path", "")),
    )


def load_interactions(directory: Path = PACT_DIR) -> list[PactInteraction]:
    """Every interaction of every `*.json` pact in `directory`, in file then file order."""
    out: list[PactInteraction] = []
    for path in sorted(directory.glob("*.json")):
        doc = _read(path)
        out += [_interaction(path, doc, raw) for raw in doc.get("interactions") or ()]
    seen: dict[str, PactInteraction] = {}
    for item in out:
        if item.key in seen:
            raise PactFileError(
                f"{item.pact_file}: two interactions share the key {item.key!r} "
                f"({seen[item.key].description!r} and {item.description!r})"
            )
        seen[item.key] = item
    return out


def normalised(path: Path) -> dict[str, Any]:
    """The pact document without the fields that change with the Pact library's version."""
    doc = _read(path)
    metadata = {k: v for k, v in doc["metadata"].items() if k not in VOLATILE_METADATA}
    return {**doc, "metadata": metadata}
