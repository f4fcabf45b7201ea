"""Render check: a real Prometheus scrapes the reference while `llorch bench` loads it.

One reference process (mock engines, sized so that load reaches every code path a panel shows:
full queues under both policies, soft preemption, evictions, deadlines, cancels), one Prometheus
server loaded with ci/alerts/slo.rules.yml and scraping it every second, and two `llorch bench`
runs with mixed priorities. Then every dashboard query and every recording rule is run through
Prometheus's HTTP API: each must return at least one finite sample, every rule must evaluate
without error, and `promtool check metrics` must find nothing to say about `/metrics`.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.ops import _dashboards as ops
from tests.ops._prometheus import JOB, Prometheus, binary, finite, prometheus
from tests.ops._reference import Reference, reference, write_config

CONFIG = """
validation: strict
auth: {api_keys_env: LLORCH_API_KEY}
timeouts: {wall_ms: 30000, idle_ms: 5000}
pools:
  # 4 slots, 6 queued: a closed loop of 24 clients keeps it full. Drop-LRU evicts (failed
  # tasks), soft preemption evicts batch work for interactive, EDF tracks deadlines.
  - id: render-llamacpp
    engine: llamacpp
    adapter: mock
    model: repo:mock/render
    ctx: 4096
    devices: []
    allow_cpu_inference: true
    queue: {capacity: 6, full_policy: drop-lru}
    admission:
      priorities:
        - {name: interactive, weight: 8}
        - {name: batch, weight: 1}
    deadlines: {edf: true, reject_infeasible: false}
    preemption: {mode: soft}
  # A small queue under `reject`: full-queue 429s and rejections by reason.
  - id: render-vllm
    engine: vllm
    adapter: mock
    model: repo:mock/render
    ctx: 4096
    devices: []
    allow_cpu_inference: true
    queue: {capacity: 2, full_policy: reject}
"""
POOLS = ["render-llamacpp", "render-vllm"]


@dataclass
class Loaded:
    ref: Reference
    prom: Prometheus
    workdir: Path


def _bench(ref: Reference, engine: str, seconds: float, concurrency: int) -> None:
    """`llorch bench` as an operator runs it; its exit code 1 means no task succeeded."""
    argv = [
        sys.executable,
        "-m",
        "llama_orch.cli",
        "bench",
        "--target",
        ref.url,
        "--engine",
        engine,
        "--model-ref",
        "repo:mock/render",
        "--priority-mix",
        "interactive=1,batch=1",
        "--concurrency",
        str(concurrency),
        "--duration",
        str(seconds),
        "--prompt",
        "[[sim tokens=12 itl_ms=6]] render check",
        "--max-tokens",
        "12",
        "--seed",
        "7",
        "-q",
    ]
    env = {**os.environ, "LLORCH_API_KEY": ref.api_key}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"llorch bench failed: {done.stdout[-2000:]}{done.stderr[-2000:]}"


def _cancel_some(ref: Reference, n: int = 3) -> None:
    """A few user cancels, so that `tasks_canceled_total` has samples."""
    with ref.client() as client:
        for _ in range(n):
            body = {
                "task_id": str(uuid.uuid4()),
                "session_id": str(uuid.uuid4()),
                "workload": "completion",
                "model_ref": "repo:mock/render",
                "engine": "vllm",
                "ctx": 1024,
                "priority": "batch",
                "max_tokens": 64,
                "deadline_ms": 0,
                "prompt": "[[sim tokens=64 itl_ms=20]] to be canceled",
            }
            resp = client.post("/v1/tasks", json=body)
            assert resp.status_code == 202, resp.text
            assert client.post(f"/v1/tasks/{body['task_id']}/cancel").status_code == 204


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    workdir = tmp_path_factory.mktemp("render")
    config = write_config(workdir, "render.yaml", CONFIG)
    with reference(config, workdir / "reference.log") as ref:
        ref.wait_ready(POOLS, timeout_s=30)
        target = ref.url.removeprefix("http://")
        with prometheus([target], [ops.RULES], workdir / "prometheus") as prom:
            prom.wait_for(f'up{{job="{JOB}"}} == 1')
            _cancel_some(ref)
            _bench(ref, "llamacpp", seconds=8, concurrency=24)
            _bench(ref, "vllm", seconds=3, concurrency=8)
            time.sleep(3)  # two more scrapes and rule evaluations after the load
            yield Loaded(ref, prom, workdir)


@pytest.mark.slow
@pytest.mark.parametrize("query", ops.panel_queries(), ids=str)
def test_every_dashboard_query_returns_data(loaded: Loaded, query: ops.PanelQuery) -> None:
    result = loaded.prom.query(query.runnable)
    assert finite(result), f"{query} returned no finite sample: {query.runnable!r} -> {result}"


@pytest.mark.slow
@pytest.mark.req("ORCH-3041")
def test_slos_are_measured_per_priority_from_live_metrics(loaded: Loaded) -> None:
    """Every recording rule returns data, and the SLIs exist for every priority class."""
    for name in ops.recording_rules():
        assert finite(loaded.prom.query(name)), f"recording rule {name} returned nothing"
    for sli in (
        "priority:task_errors:ratio_rate5m",
        "priority:first_token_over_target:ratio_rate5m",
        "priority:decode_over_target:ratio_rate5m",
    ):
        got = {s["metric"]["priority"]: float(s["value"][1]) for s in loaded.prom.query(sli)}
        assert set(got) == set(ops.priorities()), f"{sli}: {got}"
        assert all(0 <= v <= 1 for v in got.values()), f"{sli}: {got}"
    # Drop-LRU evictions and soft preemptions ended some tasks with an error event: the error
    # SLI is not just the `or 0` default.
    errors = loaded.prom.query("sum(priority:task_errors:ratio_rate5m)")
    assert float(errors[0]["value"][1]) > 0


@pytest.mark.slow
def test_every_rule_evaluates_without_error(loaded: Loaded) -> None:
    rules = loaded.prom.rules()
    assert len(rules) == sum(len(g["rules"]) for g in ops.rule_groups()), "rules not loaded"
    bad = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not bad, bad
    # The scrape works, so the alert on missing metrics is not even pending.
    missing = [r for r in rules if r["name"] == "OrchSLOMetricsMissing"]
    assert missing and missing[0]["state"] == "inactive"


@pytest.mark.slow
def test_reference_metrics_pass_promtool_check_metrics(loaded: Loaded) -> None:
    text = loaded.ref.metrics_text()
    assert "latency_first_token_seconds_bucket" in text and "tasks_failed_total{" in text
    done = subprocess.run(
        [binary("promtool"), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), (
        done.stdout + done.stderr
    )


@pytest.mark.slow
def test_histograms_have_the_slo_bucket_bounds(loaded: Loaded) -> None:
    """The latency SLIs read the 0.9 s and 2.5 s buckets exactly; both bounds exist."""
    for family, bound in (("latency_first_token_seconds", 0.9), ("latency_decode_seconds", 2.5)):
        result = loaded.prom.query(f"{family}_bucket")
        bounds = {float(s["metric"]["le"]) for s in result}
        assert any(math.isclose(b, bound) for b in bounds), f"{family}: buckets {sorted(bounds)}"
    resp = httpx.get(f"{loaded.prom.url}/api/v1/targets", timeout=10).json()
    health = [t["health"] for t in resp["data"]["activeTargets"]]
    assert health == ["up"], health
