"""Engine simulators on real loopback ports, in background threads, for end-to-end tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from llama_orch.engine_sim.engine import SimConfig, SimEngine
from llama_orch.engine_sim.server import build_servers
from tests._server import serve_asgi


@contextlib.contextmanager
def running_sim_ports(
    config: SimConfig, **options: Any
) -> Iterator[tuple[str, str | None, SimEngine]]:
    """(API URL, metrics URL or None, engine): Triton's metrics server gets its own port, as
    real Triton's does; the other engines serve `/metrics` on the API port (None here)."""
    servers = build_servers(config, **options)
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(serve_asgi(servers.app, what="simulator"))
        metrics_url = None
        if servers.metrics_app is not None:
            base = stack.enter_context(serve_asgi(servers.metrics_app, what="simulator metrics"))
            metrics_url = f"{base}/metrics"
        yield url, metrics_url, servers.engine


@contextlib.contextmanager
def running_sim(config: SimConfig, **options: Any) -> Iterator[tuple[str, SimEngine]]:
    with running_sim_ports(config, **options) as (url, _metrics, engine):
        yield url, engine
