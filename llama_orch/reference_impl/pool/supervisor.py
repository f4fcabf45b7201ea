"""Engine processes the pool manager starts itself (`launch`, llama-server only).

`EngineProcess` starts the server in its own process group, keeps its last output lines in a
bounded ring (they become `last_error` when it fails), waits for `GET /health` to answer 200
within the start-up limit, and watches for the process to exit. An exit the manager did not
ask for is reported through `on_exit` right away; the kernel has closed the engine's sockets
by then, so streams on it fail at once (WORKER_RESET) rather than waiting for a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import sys
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

log = logging.getLogger("llama_orch.reference_impl.pool")

OUTPUT_LINES = 200
LINE_CHARS = 1000
TAIL_CHARS = 800
POLL_S = 0.05
STOP_GRACE_S = 5.0

# The only flags of determinism settings matched by their llama-server aliases too; any other
# flag is matched by its exact spelling (`--flag` or `--flag=value`).
_ALIASES = {
    "--parallel": ("--parallel", "-np"),
    "--no-cont-batching": ("--no-cont-batching", "-nocb"),
}
_CTX = ("--ctx-size", "-c")
_METRICS = ("--metrics",)
_TENSOR_SPLIT = ("--tensor-split", "-ts")


class EngineStartError(Exception):
    """The engine exited or did not become healthy in time; the message ends with its output."""


class OutputRing:
    """The last lines an engine wrote (stdout and stderr merged), bounded in lines and width."""

    def __init__(self, max_lines: int = OUTPUT_LINES) -> None:
        self.lines: deque[str] = deque(maxlen=max_lines)
        self._partial = ""

    def feed(self, chunk: bytes) -> None:
        text = self._partial + chunk.decode("utf-8", "replace")
        *complete, self._partial = text.split("\n")
        for line in complete:
            self._add(line)
        if len(self._partial) > LINE_CHARS:
            self._add(self._partial)
            self._partial = ""

    def flush(self) -> None:
        if self._partial:
            self._add(self._partial)
            self._partial = ""

    def _add(self, line: str) -> None:
        line = line.rstrip("\r")
        if line.strip():
            self.lines.append(line[:LINE_CHARS])

    def tail(self, n: int = 5, max_chars: int = TAIL_CHARS) -> str:
        """The last `n` non-empty lines on one line (its end kept), for `last_error`."""
        text = " | ".join(list(self.lines)[-n:])
        return text if len(text) <= max_chars else "…" + text[-(max_chars - 1) :]


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS reports free right now (a race is possible; a failed bind is retried)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def connect_host(host: str) -> str:
    """Host part of a URL that reaches a server bound to `host` from this machine."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _has(args: Sequence[str], names: Sequence[str]) -> bool:
    return any(a.split("=")[0] in names for a in args)


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _flag_groups(args: Sequence[str]) -> list[list[str]]:
    """Split flags from their values: a group is a flag plus the tokens after it that do not
    start with "-" or are numbers, so `--seed -1 --no-cont-batching` gives two groups."""
    groups: list[list[str]] = []
    for arg in args:
        if groups and (not arg.startswith("-") or _is_number(arg)):
            groups[-1].append(arg)
        else:
            groups.append([arg])
    return groups


@dataclass(frozen=True)
class LaunchSpec:
    """Everything needed to start one engine process."""

    argv: tuple[str, ...]
    host: str
    port: int
    env: dict[str, str] = field(default_factory=dict)  # added to (and overriding) os.environ
    startup_timeout_s: float = 120.0
    health_path: str = "/health"

    @property
    def base_url(self) -> str:
        return f"http://{connect_host(self.host)}:{self.port}"


def llama_server_argv(
    binary: str,
    model_path: str,
    host: str,
    port: int,
    args: Sequence[str],
    *,
    ctx: int | None = None,
    determinism_args: Sequence[str] = (),
    tensor_split: Sequence[float] | None = None,
) -> tuple[str, ...]:
    """`llama-server --model P --host H --port N <args>` plus the flags the pool implies.

    `determinism_args` (the engine's determinism settings) are added group by group (a flag
    and its values, negative numbers included), each only when the operator's own args do not
    already set that flag: `--parallel` also counts as set by `-np`, `--no-cont-batching` by
    `-nocb`; every other flag only by its exact spelling. `--metrics`, `--ctx-size`/`-c` and
    `--tensor-split`/`-ts` are added the same way when the pool implies them.
    """
    extra = list(args)
    if not _has(extra, _METRICS):
        extra.append("--metrics")  # /metrics is 404 without it; the adapter scrapes it
    if ctx is not None and not _has(extra, _CTX):
        extra += ["--ctx-size", str(ctx)]
    for group in _flag_groups(determinism_args):
        if not _has(extra, _ALIASES.get(group[0], (group[0],))):
            extra += group
    if tensor_split is not None and not _has(extra, _TENSOR_SPLIT):
        extra += ["--tensor-split", ",".join(f"{r:g}" for r in tensor_split)]
    return (
        binary,
        "--model",
        model_path,
        "--host",
        host,
        "--port",
        str(port),
        *extra,
    )


def resolve_binary(binary: str) -> str:
    """A bare name is looked up on PATH, then beside this Python (`make engine` links
    llama-server into the virtualenv's bin/); paths are used as given."""
    if os.sep in binary or shutil.which(binary):
        return binary
    beside = Path(sys.prefix) / "bin" / binary
    return str(beside) if beside.exists() else binary


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the engine gets SIGKILL if the orchestrator dies, so no orphan holds the GPU."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class EngineProcess:
    """One supervised engine server: start, health wait, exit watch, stop."""

    def __init__(
        self,
        spec: LaunchSpec,
        *,
        name: str = "engine",
        on_exit: Callable[[EngineProcess, int], None] | None = None,
        poll_s: float = POLL_S,
    ) -> None:
        self.spec = spec
        self.name = name
        self.on_exit = on_exit
        self.output = OutputRing()
        self.returncode: int | None = None
        self.exited = asyncio.Event()
        self._poll_s = poll_s
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task | None = None
        self._watcher: asyncio.Task | None = None
        self._stopping = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def base_url(self) -> str:
        return self.spec.base_url

    @property
    def running(self) -> bool:
        return self._proc is not None and self.returncode is None

    def describe_exit(self) -> str:
        """One line: how the process ended and what it said last."""
        rc = self.returncode
        how = f"killed by signal {-rc}" if rc is not None and rc < 0 else f"exited with code {rc}"
        tail = self.output.tail()
        return f"engine process {how}" + (f": {tail}" if tail else "")

    async def start(self) -> None:
        """Spawn and wait until /health answers 200; raise EngineStartError otherwise."""
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.spec.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, **self.spec.env},
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        except OSError as exc:
            raise EngineStartError(f"cannot start {self.spec.argv[0]}: {exc}") from exc
        log.info(
            "engine started",
            extra={"event": "engine_start", "replica_id": self.name, "pid": self._proc.pid},
        )
        loop = asyncio.get_running_loop()
        self._reader = loop.create_task(self._read())
        self._watcher = loop.create_task(self._watch())
        try:
            await self._wait_healthy()
        except BaseException:
            await self.kill()
            raise

    async def _wait_healthy(self) -> None:
        timeout_s = self.spec.startup_timeout_s
        deadline = asyncio.get_running_loop().time() + timeout_s
        last = "no answer yet"
        url = self.spec.base_url + self.spec.health_path
        async with httpx.AsyncClient(timeout=httpx.Timeout(1.0)) as client:
            while True:
                if self.exited.is_set():
                    raise EngineStartError(f"{self.describe_exit()} (during start-up)")
                try:
                    response = await client.get(url)
                    if response.status_code == 200:
                        return
                    last = f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    last = exc.__class__.__name__
                if asyncio.get_running_loop().time() >= deadline:
                    tail = self.output.tail()
                    raise EngineStartError(
                        f"engine not healthy within {timeout_s * 1000:.0f} ms (last /health: "
                        f"{last})" + (f": {tail}" if tail else "")
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.exited.wait(), self._poll_s)

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        stream = self._proc.stdout
        while chunk := await stream.read(4096):
            self.output.feed(chunk)
        self.output.flush()

    async def _watch(self) -> None:
        assert self._proc is not None
        rc = await self._proc.wait()
        if self._reader is not None:  # let the last lines land in the ring first
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._reader), 0.5)
        self.returncode = rc
        self.exited.set()
        if not self._stopping:
            log.warning(
                "engine exited",
                extra={
                    "event": "engine_exit",
                    "replica_id": self.name,
                    "pid": self._proc.pid,
                    "returncode": rc,
                    "output_tail": self.output.tail(),
                },
            )
            if self.on_exit is not None:
                self.on_exit(self, rc)

    def _signal(self, sig: int) -> None:
        if self._proc is None or self._proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)  # the whole group: wrappers and their children

    async def kill(self) -> None:
        """SIGKILL the process group now and wait for the exit; no on_exit callback."""
        self._stopping = True
        self._signal(signal.SIGKILL)
        await self._reap()

    async def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM, then SIGKILL after `grace_s`; no on_exit callback."""
        self._stopping = True
        self._signal(signal.SIGTERM)
        if self._watcher is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._watcher), grace_s)
        self._signal(signal.SIGKILL)
        await self._reap()

    async def _reap(self) -> None:
        if self._watcher is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
