"""Build a ready-to-serve app from a config file: logging, auth, orchestrator, routes."""

from __future__ import annotations

import logging
from pathlib import Path

import falcon.asgi

from llama_orch.reference_impl.api.app import create_app
from llama_orch.reference_impl.api.auth import Authenticator
from llama_orch.reference_impl.service.logs import configure_logging
from llama_orch.reference_impl.service.startup import build_orchestrator, load_config

log = logging.getLogger("llama_orch.reference_impl.api")


def build_app(
    config_path: str | Path,
    *,
    insecure_no_auth: bool = False,
    shutdown_deadline_s: float = 10.0,
    log_level: str = "INFO",
    freeze_gc: bool = False,
) -> falcon.asgi.App:
    """The app of `config_path`; `freeze_gc` for a server process (see `Lifespan`)."""
    config = load_config(Path(config_path))
    authenticator = Authenticator.from_config(config, insecure_no_auth=insecure_no_auth)
    configure_logging(log_level, secrets=authenticator.secrets)
    if insecure_no_auth:
        log.warning("AUTHENTICATION DISABLED (--insecure-no-auth): anyone can use this server")
    for pool in config.pools:
        if pool.allow_cpu_inference:
            log.warning(
                "CPU inference carve-out in use: pool serves inference without an NVIDIA GPU",
                extra={"pool_id": pool.id, "engine": pool.engine.value},
            )
    orch = build_orchestrator(config)
    return create_app(
        orch, authenticator, shutdown_deadline_s=shutdown_deadline_s, freeze_gc=freeze_gc
    )
