"""Load the generated `requirements/*.yaml`: the harness's view of what must be proven."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML


@dataclass(frozen=True)
class RequirementRecord:
    """One requirement as the harness sees it (read from generated YAML, never from specs)."""

    id: str
    level: str
    verify: str
    profile: str
    section: str
    anchor: str
    text: str
    spec: str
    verify_reason: str | None = None
    #: Where this rule departs from upstream llama-orch: `{kind, ours, upstream, source}` each.
    divergences: list[dict[str, str]] | None = None


class RequirementsError(ValueError):
    """The requirements folder is missing, empty or holds a file that is not generated YAML."""


def load_requirements(req_dir: Path) -> list[RequirementRecord]:
    """All requirements in `req_dir`, in file order then ID order (as generated)."""
    files = sorted(req_dir.glob("*.yaml"))
    if not files:
        raise RequirementsError(f"{req_dir}: no requirements/*.yaml; run `llorch spec extract`")
    yaml = YAML(typ="safe", pure=True)
    records: list[RequirementRecord] = []
    for path in files:
        doc = yaml.load(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or not isinstance(doc.get("requirements"), list):
            raise RequirementsError(f"{path}: expected a mapping with a 'requirements' list")
        for item in doc["requirements"]:
            try:
                records.append(RequirementRecord(spec=doc["spec"], **item))
            except TypeError as exc:
                raise RequirementsError(f"{path}: bad requirement entry {item!r}: {exc}") from exc
    return records
