"""Chaos and load suite: scale, figures, and the secrets scan over everything it wrote.

Two sizes. `short` (the default) runs inside `make test` in a few minutes; `nightly`
(`LLORCH_CHAOS=nightly`, what `make chaos` sets) runs the full counts of the issue: 100 engine
kills, 10,000 cancels, 1,000 clients for 60 s and so on. Everything is loopback-only and
bounded: each scenario stops by itself, and every process it starts is stopped with it.

Each scenario reports figures (value, bar, met or not) through the `chaos` fixture; they are
printed at the end of the run and written, with the machine and the command, to
reports/chaos/<scale>/CHAOS.md and chaos.json. Every log and report a scenario writes goes under
that folder, and every API key the suite hands out is remembered: each scenario scans its own
files before it passes, and the whole folder is scanned once more after the summary is written.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shlex
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest

from tests.e2e._anticheat import scan
from tests.ops._reference import ROOT, Reference, reference, write_config

SCALE = os.environ.get("LLORCH_CHAOS", "short")
if SCALE not in ("short", "nightly"):
    raise pytest.UsageError(f"LLORCH_CHAOS must be short or nightly, not {SCALE!r}")

# Scenario sizes: short for `make test`, nightly for `make chaos`.
SIZES = {
    "short": {
        "real_kills": 2,
        "sim_rounds": 1,
        "cancels": 300,
        "clients": 100,
        "client_seconds": 10.0,
        "drain_cycles": 1,
        "sigterm_runs": 1,
        "fuzz_examples": 8,
    },
    "nightly": {
        "real_kills": 100,
        "sim_rounds": 25,
        "cancels": 10_000,
        "clients": 1_000,
        "client_seconds": 60.0,
        "drain_cycles": 10,
        "sigterm_runs": 5,
        "fuzz_examples": 60,
    },
}


def size(name: str) -> float:
    return SIZES[SCALE][name]


def config(pools: str, *, wall_ms: int = 120_000, idle_ms: int = 30_000) -> str:
    """A reference config around `pools` (YAML list items): strict, key from LLORCH_API_KEY,
    task timeouts long enough that only a scenario's own faults end a task."""
    return (
        "validation: strict\nauth: {api_keys_env: LLORCH_API_KEY}\n"
        f"timeouts: {{wall_ms: {wall_ms}, idle_ms: {idle_ms}}}\npools:\n{pools.strip(chr(10))}\n"
    )


@dataclass
class Figure:
    scenario: str
    name: str
    value: str
    bar: str
    met: bool


@dataclass
class Chaos:
    """One per session: where scenarios write, the keys they used, the figures they report."""

    scale: str
    root: Path
    figures: list[Figure] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)
    load: dict[str, list[float]] = field(default_factory=dict)

    def workdir(self, scenario: str) -> Path:
        path = self.root / scenario
        path.mkdir(parents=True, exist_ok=True)
        return path

    @contextlib.contextmanager
    def reference(
        self, scenario: str, config: str, name: str = "reference", **kwargs
    ) -> Iterator[Reference]:
        """The reference from a config text, its log under the scenario's folder."""
        workdir = self.workdir(scenario)
        path = write_config(workdir, f"{name}.yaml", config)
        with reference(path, workdir / f"{name}.log", **kwargs) as ref:
            self.keys.update(ref.keys)
            yield ref

    def figure(self, scenario: str, name: str, value: str, bar: str, met: bool) -> bool:
        self.figures.append(Figure(scenario, name, value, bar, bool(met)))
        print(f"[chaos {scenario}] {name}: {value} (bar: {bar}) {'ok' if met else 'BELOW BAR'}")
        return bool(met)

    def note_load(self, scenario: str) -> None:
        """The 1-minute load average, at a scenario's start and end: the machine is shared."""
        self.load.setdefault(scenario, []).append(round(os.getloadavg()[0], 2))

    def secrets_found(self, under: Path | None = None) -> list[str]:
        files = [p for p in (under or self.root).rglob("*") if p.is_file()]
        return scan(sorted(self.keys), files)

    def check(self, scenario: str) -> None:
        """Scan the scenario's files for keys, then fail on any figure below its bar."""
        leaks = self.secrets_found(self.workdir(scenario))
        self.figure(scenario, "API keys in logs and reports", str(len(leaks)), "0", not leaks)
        below = [f for f in self.figures if f.scenario == scenario and not f.met]
        assert not below, "below bar: " + "; ".join(f"{f.name} = {f.value}" for f in below)


_SESSION: Chaos | None = None


@pytest.fixture(scope="session")
def chaos() -> Chaos:
    global _SESSION
    if _SESSION is None:
        root = ROOT / "reports" / "chaos" / SCALE
        shutil.rmtree(root, ignore_errors=True)  # a run's folder holds that run's files only
        root.mkdir(parents=True)
        _SESSION = Chaos(SCALE, root)
    return _SESSION


@pytest.fixture
def scenario(request: pytest.FixtureRequest, chaos: Chaos) -> Iterator[str]:
    """The scenario's name (its test's name), with the machine load noted around it."""
    name = request.node.name.removeprefix("test_")
    chaos.note_load(name)
    yield name
    chaos.note_load(name)


def _summary(chaos: Chaos) -> str:
    cpu = ""
    with contextlib.suppress(OSError):
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    lines = [
        f"# Chaos and load suite ({chaos.scale})",
        "",
        f"- machine: {os.cpu_count()} CPUs ({cpu}), {platform.platform()}, Python "
        f"{platform.python_version()}",
        f"- command: `LLORCH_CHAOS={chaos.scale} {shlex.join(sys.argv)}`",
        f"- finished: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        "- load average (1 min) at each scenario's start and end: "
        + ", ".join(f"{k} {v}" for k, v in chaos.load.items()),
        "",
        "| scenario | figure | value | bar | met |",
        "|---|---|---|---|---|",
    ]
    for f in chaos.figures:
        lines.append(
            f"| {f.scenario} | {f.name} | {f.value} | {f.bar} | {'yes' if f.met else '**no**'} |"
        )
    return "\n".join(lines) + "\n"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    chaos = _SESSION
    if chaos is None or not chaos.figures:
        return
    (chaos.root / "CHAOS.md").write_text(_summary(chaos), encoding="utf-8")
    doc = {"scale": chaos.scale, "load": chaos.load, "figures": [asdict(f) for f in chaos.figures]}
    (chaos.root / "chaos.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    leaks = chaos.secrets_found()
    if leaks:
        print(f"\nchaos: API keys found in {len(leaks)} place(s): {leaks[:5]}", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter) -> None:
    chaos = _SESSION
    if chaos is None or not chaos.figures:
        return
    terminalreporter.section(f"chaos figures ({chaos.scale})")
    for f in chaos.figures:
        mark = "ok " if f.met else "NO "
        terminalreporter.write_line(f"{mark} {f.scenario}: {f.name} = {f.value}  (bar {f.bar})")
    terminalreporter.write_line(f"summary: {chaos.root.relative_to(ROOT)}/CHAOS.md")
