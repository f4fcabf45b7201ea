"""The determinism settings a replica set is expected to run with, read as plain data.

The files in `settings/` are shared with the reference pool manager, which validates and
applies them (`reference_impl.pool.determinism`). Pinned mode cannot apply anything to a
target; it records the file and checks what the target shows (`expect`), so it reads the
file here without importing the reference implementation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

SETTINGS_DIR = Path(__file__).with_name("settings")


def expected_settings(engine: str) -> dict[str, Any]:
    """The settings file of `engine` as a mapping, with its `source`; {} when there is none."""
    path = SETTINGS_DIR / f"{engine}.yaml"
    if not path.is_file():
        return {}
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or doc.get("engine") != engine:
        raise ValueError(f"{path.name}: not a determinism settings file for {engine!r}")
    return {**doc, "source": f"determinism_suite/settings/{path.name}"}
