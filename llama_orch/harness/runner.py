"""`llorch check` in one call: pytest with the `llorch` plugin, in this process.

The plugin does everything (registry, target, checks, verdicts, reports); this module only
hands pytest the arguments and a recorder that picks up the finished run, so `llorch check`
and `pytest -p llorch --pyargs llama_orch.harness.checks` are one path.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from llama_orch.harness.finish import ERROR_KEY, RUN_KEY, CheckRun
from llama_orch.resources import PACKAGE_DIR

CHECKS = "llama_orch.harness.checks"


class HarnessError(RuntimeError):
    """The harness itself could not run (exit code 2)."""


class _Recorder:
    """Collects what the plugin left behind: the finished run, or why there is none."""

    def __init__(self) -> None:
        self.run: CheckRun | None = None
        self.error: str | None = None
        self.collect_errors: list[str] = []

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.collect_errors.append(f"{report.nodeid}: {report.longreprtext[-1500:]}")

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.run = config.stash.get(RUN_KEY, None)
        self.error = config.stash.get(ERROR_KEY, None)


def pytest_args(args: Sequence[str]) -> list[str]:
    """pytest's own arguments for a check run, then the harness options in `args`."""
    return [
        "-p",
        "no:cacheprovider",
        "-p",
        "no:terminal",
        "--rootdir",
        str(PACKAGE_DIR.parent),
        "--confcutdir",
        str(PACKAGE_DIR),
        "-o",
        "addopts=",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
        "--pyargs",
        CHECKS,
        *args,
    ]


def run_check(args: Sequence[str]) -> CheckRun:
    """Run the checks with harness options `args`; HarnessError when no result was reached."""
    recorder = _Recorder()
    code = pytest.main(pytest_args(args), plugins=[recorder])
    if recorder.error:
        raise HarnessError(recorder.error)
    if recorder.run is None:
        detail = "; ".join(recorder.collect_errors) or f"pytest exit code {code}"
        raise HarnessError(f"the check suite could not run: {detail}")
    return recorder.run
