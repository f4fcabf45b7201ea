"""`llorch bench` through an HTTP engine (issue 16): the engine-alone baseline per protocol,
CPU accounting from /proc, interleaved rounds and their medians, and the CLI's `--direct`.

No requirement in the spec set covers the bench tool (see test_bench.py); these tests guard
the numbers it reports.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket

import pytest
from click.testing import CliRunner

from llama_orch.cli.commands.bench import bench
from llama_orch.cli.commands.bench_engine import Engine, pool_config
from llama_orch.engine_sim.engine import SimConfig
from llama_orch.harness.loadgen.client import make_client
from llama_orch.harness.loadgen.engines import EngineTarget, engine_request, served_model
from llama_orch.harness.loadgen.load import LoadPlan, TaskResult
from llama_orch.harness.loadgen.procstat import CpuMeter, pids_listening, sample
from llama_orch.harness.loadgen.rounds import Side, format_rounds, run_rounds, versus
from tests._sims import running_sim_ports

PROMPT = "[[sim tokens=5]] bench"


@pytest.mark.parametrize("protocol", ["vllm", "llamacpp", "tgi", "triton"])
def test_engine_target_streams_each_protocol(protocol: str) -> None:
    model = "tiny" if protocol == "triton" else "sim/tiny-llama"
    with running_sim_ports(SimConfig(protocol, model=model, slots=4)) as (url, _m, engine):

        async def go() -> list[TaskResult]:
            async with make_client(url, api_key=None, max_connections=2) as client:
                name = await served_model(client) if protocol == "vllm" else model
                req = engine_request(protocol, prompt=PROMPT, max_tokens=8, seed=3, model=name)
                target = EngineTarget(client, req)
                return [await target.run_task(n) for n in range(3)]

        results = asyncio.run(go())
    assert all(r.ok for r in results), [(r.outcome, r.detail) for r in results]
    assert all(r.tokens == 5 and len(r.itl_ms) == 4 for r in results)
    assert all(r.ttft_ms is not None and r.e2e_ms >= r.ttft_ms for r in results)
    assert engine.stats.requests == 3


def test_engine_target_reports_engine_errors() -> None:
    with running_sim_ports(SimConfig("vllm", slots=4)) as (url, _m, _engine):

        async def go() -> list[TaskResult]:
            async with make_client(url, api_key=None, max_connections=1) as client:
                out = []
                for prompt in ("[[sim overload=true]] x", "[[sim tokens=5 fail_after=2]] x"):
                    req = engine_request(
                        "vllm", prompt=prompt, max_tokens=8, seed=None, model="sim/tiny-llama"
                    )
                    out.append(await EngineTarget(client, req).run_task(0))
                return out

        overload, failure = asyncio.run(go())
    assert overload.outcome == "HTTP_503"
    assert failure.outcome == "ENGINE_ERROR" and failure.tokens == 2


def test_procstat_finds_the_listener_and_meters_cpu() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert pids_listening(port) == [os.getpid()]
    assert pids_listening(port) == []
    meter = CpuMeter([os.getpid()])
    meter.start()
    end = os.times().elapsed + 0.2
    while os.times().elapsed < end:  # burn some CPU
        sum(range(1000))
    cpu, rss = meter.stop()
    assert 0.05 < cpu < 5 and rss > 1 << 20
    assert sample([2**22 + 12345]).cpu_s == 0  # a pid that does not exist counts nothing


class _Fixed:
    """A target whose every task takes `ms` and yields `tokens` tokens; records its calls."""

    def __init__(self, name: str, ms: float, log: list[str]) -> None:
        self.name, self.ms, self.log = name, ms, log

    async def run_task(self, task_no: int) -> TaskResult:
        self.log.append(self.name)
        await asyncio.sleep(self.ms / 1000)
        return TaskResult(task_no, tokens=2, ttft_ms=self.ms, itl_ms=[0.1], e2e_ms=self.ms + 0.1)


def test_rounds_alternate_sides_and_report_medians_and_ratios() -> None:
    log: list[str] = []
    sides = [
        Side("orchestrator", _Fixed("o", 6.0, log), "o", proxy_pids=(os.getpid(),)),
        Side("engine alone", _Fixed("e", 2.0, log), "e"),
    ]
    plan = LoadPlan(concurrency=1, requests=3, warmup=1)
    results = asyncio.run(run_rounds(sides, plan, 3))
    # round 0: o then e; round 1: e then o; round 2: o then e (4 calls per side per round)
    blocks = ["".join(log[i : i + 4]) for i in range(0, len(log), 4)]
    assert blocks == ["oooo", "eeee", "eeee", "oooo", "oooo", "eeee"]
    orch, base = results
    assert [r.summary.tasks_ok for r in orch.rounds] == [3, 3, 3]
    assert orch.median("ttft_p50") == pytest.approx(6.0)
    assert orch.median("proxy_cpu_ms_per_task") is not None
    assert base.median("proxy_cpu_ms_per_task") is None
    v = versus(orch, base)
    assert v["added_ttft_p50_ms"] == pytest.approx(4.0)
    assert 0.1 < v["tasks_per_s_ratio"] < 0.9
    text = format_rounds(results, 1)
    assert "medians of 3 interleaved round(s)" in text and "added TTFT p50 +4.00 ms" in text


def test_generated_pool_config_points_at_the_engine() -> None:
    text = pool_config(
        Engine("http://127.0.0.1:9", "triton", "tiny", "http://127.0.0.1:10/metrics"),
        "repo:mock/x",
        2048,
        64,
    )
    assert "endpoint: http://127.0.0.1:9" in text and "served_model_name: tiny" in text
    assert "metrics_endpoint: http://127.0.0.1:10/metrics" in text and "engine: triton" in text


def test_cli_direct_baseline_against_a_simulator(tmp_path) -> None:
    """`--direct` alone: the engine-alone side, with the engine's CPU metered."""
    with running_sim_ports(SimConfig("vllm", slots=4)) as (url, _m, _engine):
        path = tmp_path / "b.json"
        out = CliRunner().invoke(
            bench,
            [
                *("--direct", url, "--engine", "vllm", "--requests", "6", "--concurrency", "2"),
                *("--prompt", PROMPT, "--rounds", "2", "--json", str(path), "-q"),
            ],
        )
    assert out.exit_code == 0, out.output
    assert "medians of 2 interleaved round(s)" in out.output
    doc = json.loads(path.read_text())
    (side,) = doc["rounds"]["sides"]
    assert side["name"] == "engine alone" and len(side["rounds"]) == 2
    assert all(r["tasks_ok"] == 6 and r["tokens_total"] == 30 for r in side["rounds"])
    assert side["engine_pids"] == [os.getpid()]  # the in-process simulator listens here


def test_cli_direct_body_reaches_the_engine_and_bad_json_is_refused(tmp_path) -> None:
    """`--direct-body` fields are merged into each engine-alone request (same sampler work as
    the orchestrator's requests); a value that is not a JSON object is a usage error."""
    with running_sim_ports(SimConfig("llamacpp", slots=4)) as (url, _m, engine):
        base = ["--direct", url, "--engine", "llamacpp", "--requests", "2", "--prompt", PROMPT]
        body = '{"top_k": 1, "samplers": ["top_k"]}'
        out = CliRunner().invoke(bench, [*base, "--direct-body", body, "-q"])
        assert out.exit_code == 0, out.output
        sent = engine.last_request
        refused = CliRunner().invoke(bench, [*base, "--direct-body", "[1]", "-q"])
    assert sent["top_k"] == 1 and sent["samplers"] == ["top_k"] and sent["n_predict"] == 16
    assert refused.exit_code == 2 and "--direct-body" in refused.output
    assert "must be a JSON object" in refused.output


@pytest.mark.slow
def test_default_mode_runs_reference_and_engine_side_by_side(tmp_path) -> None:
    """No --target: a simulator and the reference are started, measured, and stopped."""
    path = tmp_path / "b.json"
    out = CliRunner().invoke(
        bench,
        [
            *("--engine", "vllm", "--requests", "20", "--concurrency", "2", "--warmup", "2"),
            *("--prompt", PROMPT, "--rounds", "2", "--sim-slots", "8", "--json", str(path), "-q"),
        ],
    )
    assert out.exit_code == 0, out.output
    doc = json.loads(path.read_text())
    names = [s["name"] for s in doc["rounds"]["sides"]]
    assert names == ["orchestrator", "engine alone"]
    orch = doc["rounds"]["sides"][0]
    assert all(r["tasks_ok"] == 20 and r["tokens_total"] == 100 for r in orch["rounds"])
    assert orch["medians"]["proxy_cpu_ms_per_task"] > 0  # from the reference's /proc entries
    assert orch["medians"]["engine_cpu_ms_per_task"] > 0
    ratio = doc["rounds"]["versus_baseline"]["orchestrator"]["tasks_per_s_ratio"]
    assert 0 < ratio
