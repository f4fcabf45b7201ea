"""The full check registry as the command line sees it: the harness's collectors plus the
checks other packages contribute (the determinism suite's corpus cases).

The harness never imports the determinism suite; the command line composes both.
"""

from __future__ import annotations

from llama_orch.harness.collectors import build_registry
from llama_orch.harness.registry import Registry


def full_registry() -> Registry:
    from llama_orch.determinism_suite.plugin import determinism_checks

    return build_registry([determinism_checks()])
