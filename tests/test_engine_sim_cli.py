"""`llorch engine-sim` serves each protocol from the command line."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator

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


@contextlib.contextmanager
def engine_sim(protocol: str, *args: str) -> Iterator[str]:
    """`llorch engine-sim` in a subprocess; yields its base URL once it answers health."""
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
            *args,
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, proc.stderr.read()
            try:
                if httpx.get(f"{url}{HEALTH[protocol]}").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "engine-sim did not come up"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) is not None


@pytest.mark.req("OC-HARNESS-8404")
@pytest.mark.parametrize("protocol", sorted(set(HEALTH) - {"triton"}))
def test_engine_sim_serves_the_protocol(protocol: str) -> None:
    with engine_sim(protocol) as url:
        assert httpx.get(f"{url}/metrics").status_code == 200


@pytest.mark.req("OC-HARNESS-8404")
def test_triton_sim_serves_metrics_on_its_metrics_port_only() -> None:
    """Like tritonserver (`--metrics-port`, 8002 by default): the API port answers `/metrics`
    with 404, the metrics port serves it; `--seed-input` picks the deployment's seed name."""
    metrics_port = free_port()
    args = ("--metrics-port", str(metrics_port), "--seed-input", "random_seed")
    with engine_sim("triton", *args) as url:
        assert httpx.get(f"{url}/metrics").status_code == 404
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert metrics.status_code == 200 and "nv_inference_count" in metrics.text
        inputs = {i["name"] for i in httpx.get(f"{url}/v2/models/ensemble").json()["inputs"]}
        assert "random_seed" in inputs and "seed" not in inputs


VLLM_WITH_TGI_FLAG = ("--protocol", "vllm", "--port", "1", "--split-multibyte")


def test_engine_options_belong_to_their_protocol() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "llama_orch.cli", "engine-sim", *VLLM_WITH_TGI_FLAG],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and "--split-multibyte applies to --protocol tgi" in proc.stderr


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
