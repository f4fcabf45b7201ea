"""Engines a chaos scenario kills: simulator processes, and the reference's llama-server.

Simulators run as their own processes (`llorch engine-sim`), so a SIGKILL closes their sockets
exactly as a crashed engine's; they restart on the same port, as a supervisor outside the
orchestrator would bring an endpoint engine back. The real llama-server is launched by the
reference itself; it is found among the reference's descendants by its executable.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.ops._reference import ROOT, free_port, stop, wait_up

PROTOCOLS = ("llamacpp", "vllm", "tgi", "triton")
HEALTH = {
    "llamacpp": "/health",
    "vllm": "/health",
    "tgi": "/health",
    "triton": "/v2/health/ready",
}
SIM_MODEL = "llama-3-8b"


@dataclass
class Sim:
    """One simulator process on a fixed port; `kill()` and `start()` as often as needed."""

    protocol: str
    port: int
    log_path: Path
    slots: int = 4
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> None:
        argv = [
            sys.executable,
            "-m",
            "llama_orch.cli",
            "engine-sim",
            "--protocol",
            self.protocol,
            "--port",
            str(self.port),
            "--model",
            SIM_MODEL,
            "--slots",
            str(self.slots),
        ]
        with self.log_path.open("a", encoding="utf-8") as log:
            self.proc = subprocess.Popen(
                argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        url = self.url + HEALTH[self.protocol]
        wait_up(self.proc, url, timeout_s, f"{self.protocol} simulator", self.log_path)

    def kill(self) -> float:
        """SIGKILL the simulator; the time of the kill."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        at = time.monotonic()
        self.proc.wait()
        return at

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, grace_s=5)


def pool_yaml(sim: Sim, pool_id: str) -> str:
    """A config entry for a pool on this simulator (CPU carve-out: simulators need no GPU)."""
    lines = [
        f"  - id: {pool_id}",
        f"    engine: {sim.protocol}",
        f"    model: repo:sim/{SIM_MODEL}",
        "    ctx: 4096",
        "    devices: []",
        "    allow_cpu_inference: true",
        f"    endpoint: {sim.url}",
        "    queue: {capacity: 64, full_policy: reject}",
    ]
    if sim.protocol == "triton":
        lines.append(f"    served_model_name: {SIM_MODEL}")
        lines.append("    preemption: {mode: disabled}")
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def sims(
    workdir: Path, protocols: tuple[str, ...] = PROTOCOLS, slots: int = 4
) -> Iterator[list[Sim]]:
    running = []
    try:
        for protocol in protocols:
            sim = Sim(protocol, free_port(), workdir / f"sim-{protocol}.log", slots)
            sim.start()
            running.append(sim)
        yield running
    finally:
        for sim in running:
            sim.stop()
