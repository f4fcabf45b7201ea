"""The Gherkin features under `features/`, bound as checks (one per scenario).

Each scenario's requirement-ID tags become `req` markers (`harness.plugin`); the registry reads
the same tags (`harness.collectors`). The steps come from the `harness.steps` library through
this package's conftest. Cancel runs
first: every scenario cleans up by canceling its tasks, so a target whose cancel leaks slots
is shown failing the cancel checks before the leak turns later checks into errors.
"""

from __future__ import annotations

from pytest_bdd import scenarios

from llama_orch.resources import data_path

FEATURES = data_path("features")

scenarios("cancel", features_base_dir=str(FEATURES))
scenarios(".", features_base_dir=str(FEATURES))
