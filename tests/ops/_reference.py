"""The reference orchestrator as a real process (`llorch serve`), for operations tests.

Operations tests (dashboards, the real-model gate, chaos) see the reference the way an operator
does: a separate process behind OrchQueue v1 and `/metrics`, signalled like a service, with its
JSON-lines log in a file the test can read (and scan for secrets). Fresh random API keys per
start; they are handed to the test and never written anywhere by this module.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def children(pid: int) -> list[int]:
    """Direct children of `pid`, from /proc (Linux)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Field 4 (ppid) follows the command name, which is in parentheses and may hold spaces.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            out.append(int(entry.name))
    return out


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for child in children(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def running(root_pid: int, binary: Path) -> list[int]:
    """Processes under `root_pid` whose executable is `binary` (the same file, by inode)."""
    real = binary.resolve().stat()
    out = []
    for pid in descendants(root_pid):
        with contextlib.suppress(OSError):
            st = Path(os.readlink(f"/proc/{pid}/exe")).stat()
            if (st.st_dev, st.st_ino) == (real.st_dev, real.st_ino):
                out.append(pid)
    return out


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class Reference:
    """A running `llorch serve` (gunicorn master; one worker serves)."""

    url: str
    api_key: str = field(repr=False)
    tenant_key: str = field(repr=False)
    proc: subprocess.Popen
    log_path: Path

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    @property
    def keys(self) -> tuple[str, str]:
        return self.api_key, self.tenant_key

    def worker_pid(self) -> int:
        """The gunicorn worker: the process that holds the queue and launches engines."""
        kids = children(self.proc.pid)
        if len(kids) != 1:
            raise RuntimeError(f"expected one worker under {self.proc.pid}, found {kids}")
        return kids[0]

    def client(self, timeout: float = 10.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=timeout)

    def health(self, pool_id: str) -> dict:
        resp = httpx.get(f"{self.url}/v1/pools/{pool_id}/health", headers=self.headers, timeout=5)
        resp.raise_for_status()
        return resp.json()

    def wait_ready(self, pool_ids: list[str], timeout_s: float) -> float:
        """Wait until every pool reports ready; seconds waited (TimeoutError naming the rest)."""
        start = time.monotonic()
        waiting = list(pool_ids)
        while waiting:
            waiting = [p for p in waiting if not self._ready(p)]
            if not waiting:
                break
            if time.monotonic() - start > timeout_s:
                states = {p: self._state(p) for p in waiting}
                raise TimeoutError(f"pools not ready after {timeout_s:g} s: {states}")
            time.sleep(0.05)
        return time.monotonic() - start

    def _ready(self, pool_id: str) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return bool(self.health(pool_id)["ready"])
        return False

    def _state(self, pool_id: str) -> str:
        try:
            h = self.health(pool_id)
        except httpx.HTTPError as exc:
            return repr(exc)
        return f"ready={h['ready']} last_error={h.get('last_error')!r}"

    def metrics_text(self) -> str:
        resp = httpx.get(f"{self.url}/metrics", timeout=10)
        resp.raise_for_status()
        return resp.text

    def terminate(self) -> None:
        """SIGTERM the server, as a service manager would."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGTERM)


def write_config(workdir: Path, name: str, text: str) -> Path:
    path = workdir / name
    path.write_text(text, encoding="utf-8")
    return path


@contextlib.contextmanager
def reference(
    config: Path,
    log_path: Path,
    *,
    shutdown_deadline_s: float = 2.0,
    start_timeout_s: float = 60.0,
    env: dict[str, str] | None = None,
) -> Iterator[Reference]:
    """Start `llorch serve --config CONFIG` on a free loopback port; always stop it.

    Its stdout and stderr (the JSON-lines log) go to `log_path`, appended, so several starts
    in one test share a file. Waits for `/livez`; pools may still be loading.
    """
    port = free_port()
    api_key, tenant_key = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    full_env = {
        **os.environ,
        **(env or {}),
        "LLORCH_API_KEY": api_key,
        "LLORCH_TENANT_KEY": tenant_key,
    }
    argv = [
        sys.executable,
        "-m",
        "llama_orch.cli",
        "serve",
        "--config",
        str(config),
        "--port",
        str(port),
        "--shutdown-deadline",
        str(shutdown_deadline_s),
        "--log-level",
        "info",
    ]
    log = log_path.open("a", encoding="utf-8")
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    ref = Reference(f"http://127.0.0.1:{port}", api_key, tenant_key, proc, log_path)
    try:
        wait_up(proc, f"{ref.url}/livez", start_timeout_s, "llorch serve", log_path)
        yield ref
    finally:
        stop(proc)
        log.close()


def wait_up(proc: subprocess.Popen, url: str, timeout_s: float, what: str, log: Path) -> None:
    """Poll `url` until it answers 200; a RuntimeError with the log's tail if the process
    exits first or the time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
            raise RuntimeError(f"{what} exited {proc.returncode}: {tail}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        if time.monotonic() > deadline:
            tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
            raise RuntimeError(f"{what} did not answer {url} in {timeout_s:g} s: {tail}")
        time.sleep(0.1)


def stop(proc: subprocess.Popen, grace_s: float = 20.0) -> None:
    """SIGTERM the process group, SIGKILL it after `grace_s`; engines it started go too."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group (an engine mid-start)
