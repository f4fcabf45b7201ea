"""A real Prometheus server for tests: Debian's `prometheus`, on a loopback port, temp data dir.

`make deps` installs the package (it brings `promtool` too). The server scrapes the given
targets every second and evaluates the given rule files every second, so a test of a few
seconds already has rates over its windows. Queries go through the HTTP API, as Grafana's do.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ops._reference import free_port, stop, wait_up

JOB = "llama-orch"  # the scrape job name ci/alerts/slo.rules.yml expects


def binary(name: str) -> str:
    """Path of `prometheus` or `promtool`; a clear failure when the package is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: run `make deps` (Debian package `prometheus`)", False)
    return path


@dataclass
class Prometheus:
    url: str

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query; the result vector (an error names the expression)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        resp = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=30)
        body = resp.json()
        if resp.status_code != 200 or body.get("status") != "success":
            raise AssertionError(f"query {expr!r} failed: {body.get('error', resp.text)}")
        return body["data"]["result"]

    def rules(self) -> list[dict[str, Any]]:
        resp = httpx.get(f"{self.url}/api/v1/rules", timeout=30)
        resp.raise_for_status()
        return [rule for group in resp.json()["data"]["groups"] for rule in group["rules"]]

    def wait_for(self, expr: str, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """Poll until the query has at least one finite sample; the last result either way."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = self.query(expr)
            if finite(result) or time.monotonic() > deadline:
                return result
            time.sleep(0.5)


def finite(result: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The samples of an instant-query vector whose value is a finite number."""
    return [s for s in result if math.isfinite(float(s["value"][1]))]


@contextlib.contextmanager
def prometheus(targets: list[str], rule_files: list[Path], workdir: Path) -> Iterator[Prometheus]:
    """Start Prometheus scraping `targets` (host:port) as job `llama-orch`; always stop it."""
    exe = binary("prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": [str(p.resolve()) for p in rule_files],
        "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": targets}]}],
    }
    config_path = workdir / "prometheus.yml"
    config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")  # JSON is YAML
    port = free_port()
    log = (workdir / "prometheus.log").open("w", encoding="utf-8")
    proc = subprocess.Popen(
        [
            exe,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_up(proc, f"{url}/-/ready", 30, "prometheus", workdir / "prometheus.log")
        yield Prometheus(url)
    finally:
        stop(proc)
        log.close()
