"""Build and serve a simulator app for one engine protocol (`llorch engine-sim`).

Protocol options (`create_app` keywords of the protocol module) select engine versions or
deployments the simulator can play, e.g. Triton's `seed_input="random_seed"` or TGI's
`inband_errors=False`; `OPTIONS` lists them per protocol. Triton serves metrics on a second
port (its metrics server), so `build_servers` returns that app too.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import falcon.asgi

from llama_orch.engine_sim.engine import SimConfig, SimEngine

PROTOCOLS = ("llamacpp", "vllm", "tgi", "triton")
OPTIONS: dict[str, tuple[str, ...]] = {
    "llamacpp": (),
    "vllm": ("null_usage",),
    "tgi": ("inband_errors", "split_multibyte"),
    "triton": ("seed_input", "decoupled", "text_mode", "output_ids", "trtllm_version"),
}


@dataclass(frozen=True)
class SimServers:
    """The apps of one simulated engine: the API, and Triton's metrics server (else None)."""

    app: falcon.asgi.App
    metrics_app: falcon.asgi.App | None
    engine: SimEngine


def _check(protocol: str, options: dict[str, Any]) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; one of {', '.join(PROTOCOLS)}")
    unknown = sorted(set(options) - set(OPTIONS[protocol]))
    if unknown:
        known = ", ".join(OPTIONS[protocol]) or "none"
        raise ValueError(f"{protocol} simulator has no option {unknown} (known: {known})")


def build_servers(config: SimConfig, **options: Any) -> SimServers:
    """The protocol's apps around a fresh SimEngine."""
    _check(config.protocol, options)
    module = importlib.import_module(f"llama_orch.engine_sim.{config.protocol}")
    engine = SimEngine(config)
    if config.protocol == "triton":
        app, metrics_app = module.create_apps(engine, **options)
        return SimServers(app, metrics_app, engine)
    return SimServers(module.create_app(engine, **options), None, engine)


def build_app(config: SimConfig, **options: Any) -> tuple[falcon.asgi.App, SimEngine]:
    """The protocol's API app around a fresh SimEngine (returned too, for its stats)."""
    servers = build_servers(config, **options)
    return servers.app, servers.engine


def serve(servers: SimServers, host: str, port: int, metrics_port: int | None) -> None:
    """Serve the API on `port` and, for Triton, its metrics server on `metrics_port`, until a
    signal stops the API server (the metrics server stops with it)."""
    import asyncio
    import contextlib
    from collections.abc import Iterator

    import uvicorn

    class Companion(uvicorn.Server):
        """A second server in the process: the API server owns the signals."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    def config(app: falcon.asgi.App, at: int) -> uvicorn.Config:
        return uvicorn.Config(app, host=host, port=at, log_level="warning", lifespan="off")

    async def both() -> None:
        main = uvicorn.Server(config(servers.app, port))
        if servers.metrics_app is None or metrics_port is None:
            await main.serve()
            return
        companion = Companion(config(servers.metrics_app, metrics_port))
        task = asyncio.create_task(companion.serve())
        try:
            await main.serve()
        finally:
            companion.should_exit = True
            await task

    asyncio.run(both())
