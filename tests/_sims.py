"""Engine simulators on real loopback ports, in background threads, for end-to-end tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from llama_orch.engine_sim.engine import SimConfig, SimEngine
from llama_orch.engine_sim.server import build_app
from tests._server import serve_asgi


@contextlib.contextmanager
def running_sim(config: SimConfig) -> Iterator[tuple[str, SimEngine]]:
    app, engine = build_app(config)
    with serve_asgi(app, what="simulator") as url:
        yield url, engine
