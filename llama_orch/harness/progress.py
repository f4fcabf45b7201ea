"""Progress of a compliance run on stderr (OC-HARNESS-8205): alive, but not one line per check.

On a terminal a progress bar shows the family running, checks done out of selected, and the
failures so far; elsewhere (CI logs) one line is printed per tenth of the run. `--progress`
chooses: auto (bar on a terminal, else lines), bar, lines or none.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from llama_orch.harness.registry import Check
from llama_orch.harness.results import CheckResult, Outcome

KEY = pytest.StashKey["Display"]()


@dataclass
class Display:
    total: int
    mode: str
    done: int = 0
    failed: int = 0
    errors: int = 0
    bar: Progress | None = None
    task: int | None = None
    next_line: int = 0
    families: list[str] = field(default_factory=list)

    def line(self, family: str) -> str:
        return (
            f"[llorch] {self.done}/{self.total} checks done ({family}); "
            f"{self.failed} failed, {self.errors} could not run"
        )


@contextlib.contextmanager
def _uncaptured(config: pytest.Config) -> Iterator[None]:
    """Write past pytest's output capture: progress is for the person watching the run."""
    capman = config.pluginmanager.getplugin("capturemanager")
    if capman is None:
        yield
        return
    with capman.global_and_fixture_disabled():
        yield


def start(config: pytest.Config, state, items: list[pytest.Item]) -> None:
    mode = config.getoption("progress")
    if mode == "auto":
        mode = "bar" if sys.stderr.isatty() else "lines"
    if mode == "none" or not items:
        return
    display = Display(len(items), mode)
    if mode == "bar":
        display.bar = Progress(
            TextColumn("[bold]{task.fields[family]:<14}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
            auto_refresh=False,
        )
        display.task = display.bar.add_task("checks", total=len(items), family="", status="")
        with _uncaptured(config):
            display.bar.start()
    else:
        with _uncaptured(config):
            sys.stderr.write(f"[llorch] running {len(items)} checks against {state.target.url}\n")
    config.stash[KEY] = display


def advance(config: pytest.Config, check: Check, result: CheckResult) -> None:
    display = config.stash.get(KEY, None)
    if display is None:
        return
    display.done += 1
    display.failed += result.outcome is Outcome.FAILED
    display.errors += result.outcome in (Outcome.ERROR, Outcome.UNDEFINED)
    if display.bar is not None and display.task is not None:
        status = f"{display.failed} failed" + (
            f", {display.errors} errors" if display.errors else ""
        )
        display.bar.update(display.task, advance=1, family=check.family, status=status)
        with _uncaptured(config):
            display.bar.refresh()
        return
    step = max(1, display.total // 10)
    if display.done >= display.next_line + step or display.done == display.total:
        display.next_line = display.done
        with _uncaptured(config):
            sys.stderr.write(display.line(check.family) + "\n")
            sys.stderr.flush()


def stop(config: pytest.Config) -> None:
    display = config.stash.get(KEY, None)
    if display is not None and display.bar is not None:
        with _uncaptured(config):
            display.bar.stop()
