"""Schema-driven fuzzing: schemathesis generates requests from the OpenAPI contracts.

The schemathesis CLI, as a user runs it, against the reference started from examples/mock.yaml:
valid and invalid requests for every operation of both documents (examples, coverage and
fuzzing phases), checked with `not_a_server_error`. Bars: at least 1,000 requests (the
coverage phase alone gets there at the short scale; nightly draws more examples per operation)
and 0 server errors. The run's JSON report goes to the scenario's folder, where the secrets
scan reads it too; schemathesis filters the Authorization header from its own output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.chaos.conftest import Chaos, size
from tests.ops._reference import ROOT

DOCUMENTS = ("data.yaml", "control.yaml")
MIN_REQUESTS = 1000


def _schemathesis(document: str, url: str, key: str, workdir: Path, examples: int) -> dict:
    report = workdir / f"schemathesis-{document}.json"
    argv = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        str(ROOT / "contracts" / "openapi" / document),
        "--url",
        url,
        "--header",
        f"Authorization: Bearer {key}",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        str(examples),
        "--phases",
        "examples,coverage,fuzzing",
        "--seed",
        "20261203",
        "--generation-database",
        "none",
        "--request-timeout",
        "10",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        "--no-color",
    ]
    env = {**os.environ, "NO_COLOR": "1"}
    done = subprocess.run(
        argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    (workdir / f"schemathesis-{document}.log").write_text(done.stdout + done.stderr)
    assert report.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(report.read_text())


@pytest.mark.slow
def test_schemathesis_against_the_reference(chaos: Chaos, scenario: str) -> None:
    examples = int(size("fuzz_examples"))
    workdir = chaos.workdir(scenario)
    # The config is written into the workdir: its plugin paths must stay those of examples/.
    config = (ROOT / "examples" / "mock.yaml").read_text(encoding="utf-8")
    config = config.replace("path: policies/", f"path: {ROOT / 'examples' / 'policies'}/")
    generated, failures, errors = 0, [], []
    with chaos.reference(scenario, config) as ref:
        for document in DOCUMENTS:
            result = _schemathesis(document, ref.url, ref.api_key, workdir, examples)
            generated += result["test_cases"]["generated"]
            failures += [f"{document}: {f}" for f in result["failures"]]
            errors += [f"{document}: {e}" for e in result["errors"]]
    wanted = MIN_REQUESTS
    chaos.figure(
        scenario,
        "generated requests (both OpenAPI documents)",
        str(generated),
        f">= {wanted}",
        generated >= wanted,
    )
    chaos.figure(
        scenario,
        "server errors (not_a_server_error failures)",
        str(len(failures)),
        "0",
        not failures,
    )
    chaos.figure(scenario, "schemathesis run errors", str(len(errors)), "0", not errors)
    if failures or errors:
        print(f"[chaos {scenario}] {(failures + errors)[:3]}")
    chaos.check(scenario)
