"""Run the compliance checks against a target in a child process, as another project's CI would.

`pytest -p llorch --pyargs llama_orch.harness.checks --target URL` with the
key in the environment; the run's compliance.json is returned with the console output, so a
test can assert on verdicts, check outcomes and evidence.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_orch.harness.discovery import Target, discover
from llama_orch.harness.target import contract_version, reference_description
from llama_orch.resources import data_path

REFERENCE_TARGET_FILE = data_path("examples", "reference.target.yaml")


@dataclass
class ChildRun:
    returncode: int
    output: str
    report: dict[str, Any] | None

    def verdicts(self) -> dict[str, str]:
        assert self.report is not None, self.output[-3000:]
        return {r["id"]: r["verdict"] for r in self.report["requirements"]}

    def checks(self) -> dict[str, dict[str, Any]]:
        assert self.report is not None, self.output[-3000:]
        return {c["id"]: c for r in self.report["requirements"] for c in r["checks"]}

    def reasons(self) -> dict[str, str | None]:
        assert self.report is not None, self.output[-3000:]
        return {r["id"]: r["reason"] for r in self.report["requirements"]}


def run_checks(
    url: str,
    key: str,
    report_dir: Path,
    *args: str,
    key_env: str = "LLORCH_CHILD_KEY",
    target_file: Path | None = REFERENCE_TARGET_FILE,
    timeout_s: float = 600,
    env: dict[str, str] | None = None,
) -> ChildRun:
    """The checks against `url` in a child pytest; the reference's target file by default."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"]
    cmd += ["-o", "addopts=", "--pyargs", "llama_orch.harness.checks", "--target", url]
    cmd += ["--api-key-env", key_env, "--report-dir", str(report_dir), "--progress", "none"]
    if target_file is not None:
        cmd += ["--target-file", str(target_file)]
    cmd += list(args)
    child_env = {**os.environ, key_env: key, "PACT_DO_NOT_TRACK": "true", **(env or {})}
    proc = subprocess.run(
        cmd, env=child_env, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    path = report_dir / "compliance.json"
    report = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
    return ChildRun(proc.returncode, proc.stdout + proc.stderr, report)


def reference_target(url: str, key: str, **overrides: Any) -> Target:
    """A discovered Target for a URL serving the reference (or a proxy in front of it)."""
    desc = reference_description().merged({"url": url, **overrides})
    return discover(Target(url, desc, key), contract_version())
