"""The harness as another team installs it: the built wheel, in a fresh venv, from anywhere.

Builds the wheel, installs it into a new virtual environment (dependencies from the package
index, as a user's CI would get them), and runs both routes — `llorch check` and plain
`pytest -p llorch` — from a directory that is not this checkout, against a reference
orchestrator started separately. Both must find their data in the installed package, write
the same four reports with the same verdicts, and exit by verdict (OC-HARNESS-8701).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from llama_orch.harness.embedded import embedded_reference

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
KEY_ENV = "LLORCH_WHEEL_KEY"
REPORTS = ["COMPLIANCE.md", "compliance.json", "index.html", "junit.xml"]
TARGET_YAML = """\
# A target description as a third party writes it (the reference's facts live in slo).
url: {url}
auth: {{scheme: x-api-key, key_env: {key_env}}}
facts:
  model_ref: slo.model_ref
  engine_version: slo.engine_version
  model_digest: slo.model_digest
"""


def _run(
    cmd: list[str], cwd: Path, timeout: float = 900, **env: str
) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    full_env.update(env)
    return subprocess.run(
        cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the fresh venv's bin folder, the built wheel)."""
    base = tmp_path_factory.mktemp("wheel")
    dist = base / "dist"
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(dist), str(ROOT)],
        cwd=base,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = dist.glob("llama_orch-*.whl")
    venv = base / "venv"
    made = _run([sys.executable, "-m", "venv", str(venv)], cwd=base)
    assert made.returncode == 0, made.stderr
    pip = _run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], cwd=base, timeout=1200)
    assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]
    return venv / "bin", wheel


@pytest.mark.req("OC-HARNESS-8701")
def test_the_wheel_installs_one_package_with_its_data(installed: tuple[Path, Path]) -> None:
    bin_dir, wheel = installed
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {
        "llama_orch",
        wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info",
    }
    for data in (
        "features/streaming/sse.feature",
        "requirements/20-orchestratord.yaml",
        "contracts/openapi/data.yaml",
        "examples/reference.target.yaml",
    ):
        assert f"llama_orch/_data/{data}" in names, data
    where = _run([str(bin_dir / "python"), "-c", "import llama_orch; print(llama_orch.__file__)"],
                 cwd=Path("/"))  # fmt: skip
    assert where.returncode == 0 and str(bin_dir.parent) in where.stdout, where


@pytest.mark.req("OC-HARNESS-8701", "OC-HARNESS-8301", "OC-HARNESS-8202")
def test_both_routes_check_a_target_from_any_directory(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    bin_dir, _ = installed
    work = tmp_path / "their-project"
    work.mkdir()
    with embedded_reference() as (url, key, _):
        (work / "target.yaml").write_text(TARGET_YAML.format(url=url, key_env=KEY_ENV))
        common = ["--target-file", "target.yaml", "--family", "OC-CTRL", "--partial-exit-code", "0"]
        cli = _run(
            [str(bin_dir / "llorch"), "check", *common, "--report-dir", "r-cli", "-q"],
            cwd=work,
            **{KEY_ENV: key},
        )
        route = _run(
            [str(bin_dir / "python"), "-m", "pytest", "-p", "llorch", "-q",
             "--pyargs", "llama_orch.harness.checks", *common, "--report-dir", "r-pytest"],
            cwd=work,
            **{KEY_ENV: key},
        )  # fmt: skip
    for proc in (cli, route):
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert key not in proc.stdout + proc.stderr
    assert "result: " in cli.stdout and "result: " in route.stdout
    reports = {}
    for name in ("r-cli", "r-pytest"):
        assert sorted(p.name for p in (work / name).iterdir()) == REPORTS
        doc = json.loads((work / name / "compliance.json").read_text())
        doc.pop("run")
        reports[name] = doc
    assert reports["r-cli"] == reports["r-pytest"], "the two routes judged differently"
    verdicts = {r["id"]: r["verdict"] for r in reports["r-cli"]["requirements"]}
    assert verdicts["OC-CTRL-2012"] == "pass" and verdicts["OC-CTRL-2040"] == "pass", verdicts
