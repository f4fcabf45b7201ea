"""CPU time and memory of the processes behind a local port, read from /proc (Linux).

The bench reports what a task costs the orchestrator in CPU, not in wall time: on a shared
machine wall time swings with everyone else's load, CPU seconds much less. The processes are
found by the listening socket: every process holding the socket that listens on the target's
port (gunicorn's master and its workers), so a server started elsewhere is measured without
being told its pid. Child processes that do not hold the socket (an engine the orchestrator
launched) are not counted.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
_LISTEN = "0A"
_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _listen_inodes(port: int, proc: Path = PROC) -> set[str]:
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) < 10 or cols[3] != _LISTEN:
                continue
            if int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(cols[9])
    return inodes


def pids_listening(port: int, proc: Path = PROC) -> list[int]:
    """Pids of the processes holding a socket that listens on TCP `port` (sorted); empty
    when none is visible (another user's processes, or not Linux)."""
    inodes = _listen_inodes(port, proc)
    if not inodes:
        return []
    targets = {f"socket:[{i}]" for i in inodes}
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in targets:
                    found.append(int(entry.name))
                    break
            except OSError:
                continue
    return sorted(found)


@dataclass(frozen=True)
class ProcSample:
    """CPU seconds (user + system) and resident memory of a set of processes at one time."""

    cpu_s: float
    rss_bytes: int
    pids: tuple[int, ...]


def sample(pids: Iterable[int], proc: Path = PROC) -> ProcSample:
    """CPU time and RSS summed over `pids`; a process that is gone counts nothing."""
    cpu = 0.0
    rss = 0
    alive = []
    for pid in pids:
        try:
            stat = (proc / str(pid) / "stat").read_text()
            statm = (proc / str(pid) / "statm").read_text().split()
        except OSError:
            continue
        # Fields after the command name (which may hold spaces) start at state (field 3).
        fields = stat.rsplit(")", 1)[1].split()
        cpu += (int(fields[11]) + int(fields[12])) * _TICK_S  # utime, stime
        rss += int(statm[1]) * _PAGE
        alive.append(pid)
    return ProcSample(cpu, rss, tuple(alive))


class CpuMeter:
    """CPU seconds spent by a fixed set of processes between `start()` and `stop()`."""

    def __init__(self, pids: Iterable[int], proc: Path = PROC) -> None:
        self.pids = tuple(pids)
        self._proc = proc
        self._start: ProcSample | None = None

    def start(self) -> None:
        self._start = sample(self.pids, self._proc)

    def stop(self) -> tuple[float, int]:
        """(CPU seconds since start(), RSS now in bytes)."""
        assert self._start is not None, "stop() before start()"
        end = sample(self.pids, self._proc)
        return max(0.0, end.cpu_s - self._start.cpu_s), end.rss_bytes
