"""ORCH-3051: the load generator's priority mix and its priority-inversion scenario.

The mix must be repeatable and follow its weights; runs with a mix must report each class; the
scenario must find no inversion on the reference orchestrator and must report one (and exit 1)
on targets that serve batch first or in arrival order (tests/fixtures/inverting_target.py).
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter

import httpx
import pytest
from click.testing import CliRunner

from llama_orch.cli.commands.bench import bench
from llama_orch.harness.loadgen.inversion import Scenario, judge
from llama_orch.harness.loadgen.load import LoadPlan, RunResult, TaskResult
from llama_orch.harness.loadgen.mix import PriorityMix, parse_weights
from tests._server import API_KEY, running_server
from tests.fixtures.inverting_target import serving

pytestmark = pytest.mark.req("ORCH-3051")

ENV = {"LLORCH_API_KEY": API_KEY}
BATCH_PROMPT = "[[sim tokens=8 itl_ms=25]] batch"  # 200 ms per batch task
PROBE_PROMPT = "[[sim tokens=2]] probe"
SCENARIO_ARGS = [
    "--scenario",
    "priority-inversion",
    "--batch-prompt",
    BATCH_PROMPT,
    "--prompt",
    PROBE_PROMPT,
    "--max-tokens",
    "8",
    "--probes",
    "6",
    "--probe-rate",
    "40",
    "--format",
    "json",
    "--quiet",
]

# One mock replica (4 slots), interactive weighted 8:1 over batch, as in examples/mock.yaml.
REFERENCE_CONFIG = """
auth:
  api_keys_env: LLORCH_API_KEY
pools:
  - id: p-prio
    engine: llamacpp
    adapter: mock
    model: repo:mock/tiny-llama
    ctx: 4096
    devices: []
    allow_cpu_inference: true
    replicas: 1
    queue: {capacity: 64, full_policy: reject}
    admission:
      priorities:
        - {name: interactive, weight: 8}
        - {name: batch, weight: 1}
      fairness: {kind: wfq}
"""

# --------------------------------------------------------------------------- the mix


def test_mix_is_deterministic_and_follows_the_weights() -> None:
    mix = PriorityMix.parse("interactive=0.2,batch=0.8", seed=7)
    n = 20_000
    drawn = [mix.priority_of(i) for i in range(n)]
    again = PriorityMix.parse("interactive=0.2,batch=0.8", seed=7)
    assert [again.priority_of(i) for i in reversed(range(n))] == drawn[::-1]  # order-free
    share = Counter(drawn)["interactive"] / n
    sigma = math.sqrt(0.2 * 0.8 / n)
    assert abs(share - 0.2) < 4 * sigma, share
    other = PriorityMix.parse("interactive=0.2,batch=0.8", seed=8)
    assert [other.priority_of(i) for i in range(200)] != drawn[:200]
    assert mix.shares == pytest.approx({"interactive": 0.2, "batch": 0.8})
    # weights need not sum to 1, and a heavier class gets more tasks
    heavy = PriorityMix.parse("batch=1,interactive=3", seed=7)
    assert Counter(heavy.priority_of(i) for i in range(4000))["interactive"] > 2700


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("urgent=1", "unknown priority class 'urgent'"),
        ("interactive=0", "must be above 0"),
        ("batch=-1", "must be above 0"),
        ("batch=nan", "must be above 0"),
        ("batch=lots", "not a number"),
        ("batch=1,batch=2", "given twice"),
        ("interactive", "not CLASS=WEIGHT"),
        ("", "expected CLASS=WEIGHT"),
        ("interactive=1,", "expected CLASS=WEIGHT"),
    ],
)
def test_mix_rejects_bad_weights(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="--priority-mix") as info:
        parse_weights(text)
    assert message in str(info.value)


def test_cli_option_clashes() -> None:
    runner = CliRunner()
    url = ["--target", "http://127.0.0.1:9"]
    both = runner.invoke(bench, [*url, "--priority", "batch", "--priority-mix", "batch=1"])
    assert both.exit_code == 2 and "--priority and --priority-mix exclude each other" in both.output
    bad = runner.invoke(bench, [*url, "--priority-mix", "interactive=1,urgent=2"])
    assert bad.exit_code == 2 and "unknown priority class 'urgent'" in bad.output
    stray = runner.invoke(bench, [*url, "--backlog", "5"])
    assert stray.exit_code == 2 and "--backlog only apply with --scenario" in stray.output
    clash = runner.invoke(bench, [*url, "--scenario", "priority-inversion", "--concurrency", "4"])
    assert clash.exit_code == 2 and "drop --concurrency" in clash.output
    weights = runner.invoke(
        bench, [*url, "--scenario", "priority-inversion", "--backlog", "2", "--class-weights", "x"]
    )
    assert weights.exit_code == 2 and "--class-weights" in weights.output
    helped = runner.invoke(bench, ["--help"])
    assert "--priority-mix" in helped.output and "priority-inversion" in helped.output


# --------------------------------------------------------------------------- per-class report


def test_mix_run_reports_each_class() -> None:
    args = ["--priority-mix", "interactive=1,batch=1", "--seed", "3", "--requests", "16"]
    with serving("interactive-first", slots=4) as (url, target):
        out = CliRunner().invoke(
            bench,
            ["--target", url, *args, "--concurrency", "4", "--format", "json", "--quiet"],
            env=ENV,
        )
        table = CliRunner().invoke(bench, ["--target", url, *args, "--quiet"], env=ENV)
    assert out.exit_code == 0, out.output
    (run,) = json.loads(out.stdout)["runs"]
    mix = PriorityMix.parse("interactive=1,batch=1", seed=3)
    expected = Counter(mix.priority_of(i) for i in range(16))
    classes = run["by_priority"]
    assert list(classes) == ["interactive", "batch"]
    for name, c in classes.items():
        assert c["tasks_total"] == c["tasks_ok"] == expected[name]
        assert set(c["latency_ms"]) == {"ttft", "e2e", "queue_wait"}
        assert c["latency_ms"]["queue_wait"]["count"] == expected[name]
        assert c["latency_ms"]["queue_wait"]["p50"] <= c["latency_ms"]["ttft"]["p50"]
    assert Counter(target.dispatch_order) == expected + expected  # two runs, same classes
    assert table.exit_code == 0 and "by priority" in table.output and "wait p95" in table.output


def test_single_priority_run_has_no_class_block() -> None:
    with serving("fifo", slots=4) as (url, _):
        out = CliRunner().invoke(
            bench, ["--target", url, "--requests", "4", "--format", "json", "-q"], env=ENV
        )
    assert out.exit_code == 0, out.output
    (run,) = json.loads(out.stdout)["runs"]
    assert "by_priority" not in run and set(run["latency_ms"]) == {"ttft", "itl", "e2e", "admit"}


# --------------------------------------------------------------------------- the scenario


def _wait_ready(url: str, pool_id: str, headers: dict[str, str]) -> None:
    """Block until the pool's preload and start-up self-test are done (admission refuses
    tasks with POOL_UNREADY before that)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        health = httpx.get(f"{url}/v1/pools/{pool_id}/health", headers=headers).json()
        if health.get("ready"):
            return
        time.sleep(0.02)
    raise AssertionError(f"pool {pool_id} not ready after 10 s: {health}")


def test_reference_shows_no_priority_inversion() -> None:
    # Six waves of batch work on the 4 slots (about 1.1 s), so the WFQ share term of the
    # bound leaves room for a busy test machine.
    args = ["--target", "", *SCENARIO_ARGS, "--backlog", "24"]
    with running_server(REFERENCE_CONFIG) as server:
        _wait_ready(server.url, "p-prio", server.headers)
        args[1] = server.url
        out = CliRunner().invoke(bench, args, env=ENV)
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    verdict = doc["priority_inversion"]
    assert verdict["verdict"] == "none" and verdict["line"].startswith("priority inversion: none")
    classes = doc["runs"][0]["by_priority"]
    assert classes["batch"]["tasks_ok"] == 24 and classes["interactive"]["tasks_ok"] == 6
    f = verdict["figures"]
    assert f["interactive_ttft_p95_ms"] < f["ratio_limit_ms"] and f["batch_decode_ms"] >= 150


@pytest.mark.parametrize("mode", ["batch-first", "fifo"])
def test_inverting_target_fails_the_check(mode: str) -> None:
    with serving(mode, slots=2) as (url, target):
        out = CliRunner().invoke(bench, ["--target", url, *SCENARIO_ARGS[:-3], "--quiet"], env=ENV)
    assert out.exit_code == 1, out.output
    last = out.output.strip().splitlines()[-1]
    assert last.startswith("INVERSION: interactive p95 TTFT"), last
    assert "by priority" in out.output
    assert target.dispatch_order[-6:] == ["interactive"] * 6  # the probes went last


def test_correct_fake_target_passes_the_check() -> None:
    with serving("interactive-first", slots=2) as (url, target):
        out = CliRunner().invoke(bench, ["--target", url, *SCENARIO_ARGS], env=ENV)
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["priority_inversion"]["verdict"] == "none"
    assert doc["settings"]["scenario"]["backlog"] == 8  # 4 x the 2 slots GET /v1/replicasets gave
    assert target.dispatch_order.count("interactive") == 6


# --------------------------------------------------------------------------- verdict rules


def _run(results: list[TaskResult]) -> RunResult:
    return RunResult("orchestrator", LoadPlan(concurrency=1, requests=1), results, 1.0, 1)


def _task(n: int, priority: str, ttft: float, e2e: float, outcome: str = "ok") -> TaskResult:
    return TaskResult(n, outcome=outcome, ttft_ms=ttft, e2e_ms=e2e, priority=priority)


def test_judge_rules() -> None:
    scenario = Scenario(backlog=4, probes=2)
    backlog = [_task(i, "batch", 100.0 * i, 100.0 * i + 200.0) for i in range(4)]  # D = 200
    fine = judge(scenario, _run([*backlog, _task(4, "interactive", 50, 51)]))
    assert fine.status == "none" and fine.exit_code == 0
    # ratio: 0.5 x p95(batch TTFT 0..300 -> 285) = 142.5; WFQ bound 200 + 285 / 9 = 231.7
    slow = judge(scenario, _run([*backlog, _task(4, "interactive", 180, 181)]))
    assert slow.status == "inversion" and "limit 0.5 x batch" in slow.line
    assert "WFQ bound" not in slow.line
    lenient = Scenario(backlog=4, probes=2, ratio=1.0)
    bound = judge(lenient, _run([*backlog, _task(4, "interactive", 250, 251)]))
    assert bound.status == "inversion" and "WFQ bound 232 ms" in bound.line
    refused = judge(scenario, _run([*backlog, _task(4, "interactive", 1, 1, "ADMISSION_REJECT")]))
    assert refused.status == "inversion" and "ADMISSION_REJECT 1" in refused.line
    no_queue = [_task(i, "batch", 5.0, 205.0) for i in range(4)]
    idle = judge(scenario, _run([*no_queue, _task(4, "interactive", 1, 2)]))
    assert idle.status == "inconclusive" and idle.exit_code == 2 and "no backlog" in idle.line
    assert judge(scenario, _run(backlog)).status == "inconclusive"
