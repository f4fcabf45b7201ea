"""Engine simulators on real loopback ports, in background threads, for end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator

import uvicorn

from harness.engine_sim.engine import SimConfig, SimEngine
from harness.engine_sim.server import build_app
from tests._server import free_port


@contextlib.contextmanager
def running_sim(config: SimConfig) -> Iterator[tuple[str, SimEngine]]:
    app, engine = build_app(config)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("simulator did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", engine
    finally:
        server.should_exit = True
        thread.join(timeout=10)
