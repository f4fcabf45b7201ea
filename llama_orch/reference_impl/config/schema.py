"""Generate the config's JSON schema from the model, byte-for-byte reproducibly (OC-CONFIG-6010).

The committed `contracts/config-schema/config.schema.json` is this module's output; a check
compares the two so the file can never drift from the model.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

from pydantic.json_schema import GenerateJsonSchema

from llama_orch.reference_impl.config.model import OrchestratorConfig
from llama_orch.resources import data_path

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "urn:llama-orch:config-schema:v1"
SCHEMA_TITLE = "llama-orch orchestrator config"

# The repository's copy; the package lives at <repo>/reference_impl/config/.
DEFAULT_SCHEMA_PATH = data_path("contracts", "config-schema", "config.schema.json")


class _Generator(GenerateJsonSchema):
    """Pydantic's generator without per-field titles: descriptions say more, titles add noise."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def config_json_schema() -> dict[str, Any]:
    """The config schema as a dict, with `$schema`, `$id` and `title` first."""
    body = OrchestratorConfig.model_json_schema(schema_generator=_Generator)
    head = {"$schema": SCHEMA_DIALECT, "$id": SCHEMA_ID, "title": SCHEMA_TITLE}
    body.pop("title", None)
    return {**head, **body}


def render_schema() -> str:
    """The schema as committed: two-space JSON, keys in generation order, trailing newline."""
    return json.dumps(config_json_schema(), indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def write_schema(path: Path = DEFAULT_SCHEMA_PATH) -> Path:
    """Write the schema to `path` (creating folders) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_schema(), encoding="utf-8")
    return path


def schema_diff(path: Path = DEFAULT_SCHEMA_PATH) -> str:
    """Unified diff from the file at `path` to a fresh schema; empty when it is current."""
    fresh = render_schema()
    try:
        committed = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        committed = ""
    if committed == fresh:
        return ""
    lines = difflib.unified_diff(
        committed.splitlines(keepends=True),
        fresh.splitlines(keepends=True),
        fromfile=f"{path} (committed)",
        tofile=f"{path} (generated)",
    )
    return "".join(lines)
