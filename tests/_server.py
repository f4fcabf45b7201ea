"""Run the reference app on a real loopback port in a background thread, for HTTP tests."""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from llama_orch.reference_impl.api.app import create_app
from llama_orch.reference_impl.api.auth import Authenticator
from llama_orch.reference_impl.config import load_config, parse_config
from llama_orch.reference_impl.pool.factory import make_adapter
from llama_orch.reference_impl.service.logs import configure_logging
from llama_orch.reference_impl.service.orchestrator import Orchestrator

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "test-operator-key-0123456789"
TENANT_KEY = "test-tenant-key-abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve_asgi(
    app: Any,
    *,
    port: int | None = None,
    lifespan: str = "off",
    what: str = "test server",
    http: str = "auto",
) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on 127.0.0.1 in a daemon thread; yield its base URL.

    The one way the tests run servers in-process: started before the yield (or a clear error
    naming `what`), stopped and joined afterwards, whatever the test did.
    """
    port = port or free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan=lifespan, http=http
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=what, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@dataclass
class Running:
    url: str
    orchestrator: Orchestrator
    logs: io.StringIO

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {API_KEY}"}


@contextlib.contextmanager
def running_server(config: str | Path, *, env: dict[str, str] | None = None) -> Iterator[Running]:
    """Start the app (lifespan included) on a free port; stop it and its thread afterwards."""
    cfg = load_config(config) if isinstance(config, Path) else parse_config(config)
    env = {"LLORCH_API_KEY": API_KEY, **(env or {})}
    authenticator = Authenticator.from_config(cfg, env=env)
    logs = io.StringIO()
    configure_logging("INFO", secrets=authenticator.secrets, stream=logs)
    orch = Orchestrator(cfg, make_adapter)
    app = create_app(orch, authenticator, shutdown_deadline_s=1.0)
    with serve_asgi(app, lifespan="on") as url:
        yield Running(url, orch, logs)
