"""The embedded target: the reference orchestrator, started as a separate process.

`python -m llama_orch.cli serve` on a free loopback port, so the harness never imports the
reference implementation (OC-HARNESS-8004): everything it learns, it learns over HTTP.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from llama_orch.harness.discovery import TargetError
from llama_orch.resources import data_path

DEFAULT_CONFIG = data_path("examples", "mock.yaml")
DATA_ROOT = DEFAULT_CONFIG.parent.parent  # the embedded reference runs from here
START_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def embedded_reference(
    config: Path = DEFAULT_CONFIG,
    api_key_env: str = "LLORCH_API_KEY",
    log_path: Path | None = None,
    *,
    extra_env: dict[str, str] | None = None,
    cwd: Path | None = None,
):
    """Start the reference orchestrator on a free loopback port; always stop it.

    Its JSON-lines log goes to `log_path` (a temporary file when None), so checks of the
    log contract can read it and a failed start can say why. `extra_env` adds variables the
    config reads (the catalog's test CA root). `cwd` runs it from another checkout (the bench
    compares trees that way; `python -m` puts the working directory first on sys.path).
    """
    port = _free_port()
    owned = log_path is None
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix="llorch-reference-", suffix=".log")
        os.close(fd)
        log_path = Path(name)
    log = log_path.open("w", encoding="utf-8")
    key = secrets.token_urlsafe(24)
    tenant_key = secrets.token_urlsafe(24)
    env = {**os.environ, **(extra_env or {}), api_key_env: key, "LLORCH_TENANT_KEY": tenant_key}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_orch.cli",
            "serve",
            "--config",
            str(config),
            "--port",
            str(port),
            "--shutdown-deadline",
            "2",
            "--log-level",
            "info",
        ],
        cwd=cwd or DATA_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                tail = log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
                raise TargetError(f"embedded reference exited: {tail}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/livez", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TargetError("embedded reference did not start in time")
            time.sleep(0.1)
        yield url, key, tenant_key
    finally:
        stop_process_group(proc)
        log.close()
        if owned:
            log_path.unlink(missing_ok=True)


def stop_process_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group of a process started in its own session, SIGKILL after
    15 s."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
