"""`llorch serve`: the reference orchestrator under gunicorn with the uvicorn worker."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command()
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Orchestrator config (YAML), e.g. examples/mock.yaml.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port to bind.")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 1),
    help="Worker processes; the queue lives in one process, so exactly 1 for now.",
)
@click.option(
    "--shutdown-deadline",
    default=10.0,
    show_default=True,
    type=float,
    help="Seconds in-flight streams may run after SIGTERM before they end with an error event.",
)
@click.option(
    "--insecure-no-auth",
    is_flag=True,
    help="Serve without API keys. Loudly logged; for local experiments only.",
)
@click.option("--log-level", default="info", show_default=True, help="Log level.")
def serve(
    config_path: Path,
    host: str,
    port: int,
    workers: int,
    shutdown_deadline: float,
    insecure_no_auth: bool,
    log_level: str,
) -> None:
    """Run the reference orchestrator (OrchQueue v1) on HOST:PORT.

    API keys come from the environment variable the config names (examples use
    LLORCH_API_KEY); without one the server refuses to start unless --insecure-no-auth.
    On SIGTERM it stops admitting, lets streams finish until --shutdown-deadline, ends the
    rest with an `error` event, and exits.
    """
    from gunicorn.app.base import BaseApplication

    from llama_orch.reference_impl.api.auth import Authenticator, AuthError
    from llama_orch.reference_impl.config import ConfigError, load_config
    from llama_orch.reference_impl.policy import PolicyLoadError, host_for
    from llama_orch.reference_impl.pool.trust import TrustSetupError, load_roots

    try:  # fail here, in the foreground, with a clear message, not inside a worker
        config = load_config(config_path)
        Authenticator.from_config(config, insecure_no_auth=insecure_no_auth)
        load_roots(config.catalog.trust_policy.ca_roots, Path(config_path).parent)
        plugins = host_for(config.policy, config.source_path)  # refuses bad plugins now
        if plugins is not None:
            plugins.close()
    except (ConfigError, AuthError, TrustSetupError, PolicyLoadError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)

    class _Server(BaseApplication):
        def load_config(self) -> None:
            for key, value in {
                "bind": f"{host}:{port}",
                "workers": str(workers),
                "worker_class": "llama_orch.cli.commands.serve_worker.OrchWorker",
                "graceful_timeout": str(int(shutdown_deadline + 5)),
                "timeout": "0",
                "loglevel": log_level,
                "accesslog": None,
            }.items():
                if value is not None:
                    self.cfg.set(key, value)

        def load(self):
            from llama_orch.reference_impl.api.bootstrap import build_app

            return build_app(
                config_path,
                insecure_no_auth=insecure_no_auth,
                shutdown_deadline_s=shutdown_deadline,
                log_level=log_level.upper(),
                freeze_gc=True,
            )

    click.echo(f"llorch serve: http://{host}:{port} (config {config_path})", err=True)
    _Server().run()
