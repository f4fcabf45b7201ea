"""The orchestrator under test: a URL given by the user, or the embedded reference.

The embedded reference runs as a separate process (`python -m llorch serve`), so the harness
never imports the reference implementation: everything it learns, it learns over HTTP.
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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from llama_orch.resources import data_path

DEFAULT_CONFIG = data_path("examples", "mock.yaml")
DATA_ROOT = DEFAULT_CONFIG.parent.parent  # the embedded reference runs from here
START_TIMEOUT_S = 60.0


class TargetError(RuntimeError):
    """The target cannot be used: unreachable, not OrchQueue v1, or failed to start."""


@dataclass
class Target:
    url: str
    api_key: str | None = field(repr=False)
    api_key_env: str
    embedded: bool
    tenant_key: str | None = field(default=None, repr=False)  # data-plane-only key, if known
    log_path: Path | None = None  # the target's JSON-lines log, when the harness can read it
    capabilities: dict[str, Any] = field(default_factory=dict)
    replica_sets: list[dict[str, Any]] = field(default_factory=list)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def embedded_reference(
    config: Path = DEFAULT_CONFIG, api_key_env: str = "LLORCH_API_KEY", log_path: Path | None = None
):
    """Start the reference orchestrator on a free loopback port; always stop it.

    Its JSON-lines log goes to `log_path` (a temporary file when None), so checks of the
    log contract can read it and a failed start can say why.
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
    env = {**os.environ, api_key_env: key, "LLORCH_TENANT_KEY": tenant_key}
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
        cwd=DATA_ROOT,
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
        _stop(proc)
        log.close()
        if owned:
            log_path.unlink(missing_ok=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def describe(url: str, api_key: str | None, api_key_env: str, embedded: bool) -> Target:
    """Read what the target declares (capabilities, replica sets) before any check runs."""
    target = Target(url, api_key, api_key_env, embedded)
    try:
        caps = httpx.get(f"{url}/v1/capabilities", headers=target.headers(), timeout=10)
        sets = httpx.get(f"{url}/v1/replicasets", headers=target.headers(), timeout=10)
    except httpx.HTTPError as exc:
        raise TargetError(f"target {url} is unreachable: {exc}") from exc
    if caps.status_code != 200:
        raise TargetError(f"GET /v1/capabilities answered {caps.status_code}; is the key right?")
    target.capabilities = caps.json()
    version = str(target.capabilities.get("api_version", ""))
    if not version.startswith("1."):
        raise TargetError(f"target speaks API {version!r}; this harness checks OrchQueue v1")
    if sets.status_code == 200:
        target.replica_sets = sets.json()
    return target


@contextlib.contextmanager
def select_target(
    url: str | None,
    api_key_env: str,
    log_path: Path | None = None,
    config: Path = DEFAULT_CONFIG,
) -> Iterator[Target]:
    """The user's target (key from `api_key_env`), or the embedded reference when none,
    started from `config`.

    `log_path`: for a given URL, a file where that target's JSON-lines log can be read.
    """
    if url:
        target = describe(url.rstrip("/"), os.environ.get(api_key_env), api_key_env, False)
        target.log_path = log_path
        yield target
        return
    with tempfile.TemporaryDirectory(prefix="llorch-target-") as tmp:
        log = Path(tmp) / "reference.log"
        with embedded_reference(config, api_key_env, log) as (ref, key, tenant):
            target = describe(ref, key, api_key_env, True)
            target.tenant_key = tenant
            target.log_path = log
            yield target
