"""Starting the served orchestrator from a config file.

What api/bootstrap.py and api/auth.py need from below the service (the config loader and type,
the production adapter factory) comes through here, so api/ imports service/ only.
"""

from __future__ import annotations

from llama_orch.reference_impl.config import OrchestratorConfig, load_config
from llama_orch.reference_impl.pool.factory import make_adapter
from llama_orch.reference_impl.service.orchestrator import Orchestrator

__all__ = ["OrchestratorConfig", "build_orchestrator", "load_config"]


def build_orchestrator(config: OrchestratorConfig) -> Orchestrator:
    """The served orchestrator: each pool's adapters from its config (mock or engine client)."""
    return Orchestrator(config, make_adapter)
