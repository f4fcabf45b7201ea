"""The Gherkin features under `features/`, bound as checks (one per scenario).

Each scenario's requirement-ID tags become `req` markers (see `harness.pytest_plugin`); the
steps come from the `harness.steps` library through this package's conftest. Cancel runs
first: every scenario cleans up by canceling its tasks, so a target whose cancel leaks slots
is shown failing the cancel checks before the leak turns later checks into errors.
"""

from __future__ import annotations

from pathlib import Path

from pytest_bdd import scenarios

ROOT = Path(__file__).resolve().parents[2]  # the project checkout

scenarios("features/cancel", features_base_dir=str(ROOT))
scenarios("features", features_base_dir=str(ROOT))
