"""`llorch serve`: gunicorn + uvicorn worker, startup refusal, graceful SIGTERM shutdown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
from httpx_sse import connect_sse

from tests._api import task_body
from tests._server import API_KEY, ROOT, free_port

pytestmark = pytest.mark.slow


def _serve(port: int, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_orch.cli",
            "serve",
            "--config",
            "examples/mock.yaml",
            "--port",
            str(port),
            *extra,
        ],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_live(url: str, proc: subprocess.Popen, timeout: float = 20) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stdout.read()}")
        try:
            if httpx.get(f"{url}/livez", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("server did not come up")


def test_serve_refuses_to_start_without_an_api_key() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("LLORCH_API_KEY", "LLORCH_TENANT_KEY")}
    proc = subprocess.run(
        [sys.executable, "-m", "llama_orch.cli", "serve", "--config", "examples/mock.yaml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert "no API key configured (set LLORCH_API_KEY)" in proc.stderr


@pytest.mark.req("ORCH-3035", "OC-POOL-3001", "ORCH-3002")
def test_sigterm_ends_open_streams_with_an_error_event_and_exits() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _serve(port, "--shutdown-deadline", "1", env={"LLORCH_API_KEY": API_KEY})
    try:
        _wait_live(url, proc)
        headers = {"Authorization": f"Bearer {API_KEY}"}
        long = task_body(
            prompt="[[sim tokens=2000 itl_ms=10]] long",
            max_tokens=2000,
            model_ref="repo:mock/tiny-llama",
            ctx=4096,
        )
        admitted = httpx.post(f"{url}/v1/tasks", json=long, headers=headers)
        assert admitted.status_code == 202, admitted.text
        received: list[str] = []

        def read() -> None:
            with httpx.Client(base_url=url, headers=headers, timeout=30) as c:
                path = f"/v1/tasks/{long['task_id']}/stream"
                with connect_sse(c, "GET", path) as source:
                    received.extend(f"{s.event} {s.data}" for s in source.iter_sse())

        reader = threading.Thread(target=read)
        reader.start()
        while not any(r.startswith("token") for r in received):
            time.sleep(0.02)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        reader.join(timeout=15)
        assert proc.wait(timeout=15) == 0
        assert time.monotonic() - sent < 10
        last = received[-1]
        assert last.startswith("error "), last
        assert json.loads(last.split(" ", 1)[1])["code"] == "POOL_UNAVAILABLE"
        tokens = [r for r in received if r.startswith("token")]
        assert 0 < len(tokens) < 2000
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
