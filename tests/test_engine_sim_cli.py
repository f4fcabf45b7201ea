"""`llorch engine-sim` serves each protocol from the command line."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest

from tests._server import ROOT, free_port

HEALTH = {
    "llamacpp": "/health",
    "vllm": "/health",
    "tgi": "/health",
    "triton": "/v2/health/ready",
}

pytestmark = pytest.mark.slow


@pytest.mark.req("OC-HARNESS-8404")
@pytest.mark.parametrize("protocol", sorted(HEALTH))
def test_engine_sim_serves_the_protocol(protocol: str) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_orch.cli",
            "engine-sim",
            "--protocol",
            protocol,
            "--port",
            str(port),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, proc.stderr.read()
            try:
                if httpx.get(f"http://127.0.0.1:{port}{HEALTH[protocol]}").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "engine-sim did not come up"
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_engine_sim_rejects_an_unknown_protocol() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "llama_orch.cli",
            "engine-sim",
            "--protocol",
            "ollama",
            "--port",
            "1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and "Invalid value for '--protocol'" in proc.stderr
