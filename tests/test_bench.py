"""`llorch bench`: percentile math, the load runner, the HTTP target and the CLI.

No requirement in the spec set covers the bench tool, so these tests carry no `req` marker;
they guard the numbers the tool reports.
"""

from __future__ import annotations

import asyncio
import io
import json
import statistics
import time
from collections.abc import AsyncIterator, Iterator

import falcon
import falcon.asgi
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from llama_orch.cli.commands.bench import bench
from llama_orch.harness.loadgen.client import OrchQueueTarget, TaskTemplate, make_client
from llama_orch.harness.loadgen.load import (
    DirectStreamTarget,
    LoadPlan,
    Progress,
    RunResult,
    TaskResult,
    TaskTimer,
    run_load,
)
from llama_orch.harness.loadgen.report import ProgressPrinter, compare, format_table, to_json
from llama_orch.harness.loadgen.stats import percentile, summarize
from tests._server import serve_asgi

API_KEY = "test-key-do-not-print"
TOKEN_GAP_S = 0.005

# --------------------------------------------------------------------------- percentiles


def test_percentile_on_known_data() -> None:
    data = [15.0, 20.0, 35.0, 40.0, 50.0]
    assert percentile(data, 50) == 35.0
    assert percentile(data, 0) == 15.0
    assert percentile(data, 100) == 50.0
    assert percentile(data, 40) == pytest.approx(29.0)  # rank 1.6: 20 + 0.6 * 15
    ramp = [float(i) for i in range(1, 101)]
    assert percentile(ramp, 50) == pytest.approx(50.5)
    assert percentile(ramp, 95) == pytest.approx(95.05)
    assert percentile(ramp, 99) == pytest.approx(99.01)
    assert percentile([], 50) is None
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile(data, 101)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=2, max_size=50))
def test_percentile_matches_statistics_inclusive(data: list[float]) -> None:
    cuts = statistics.quantiles(data, n=100, method="inclusive")
    for q in (50, 95, 99):
        assert percentile(data, q) == pytest.approx(cuts[q - 1], rel=1e-9, abs=1e-9)


@pytest.mark.req("OC-HARNESS-8601")
def test_summary_counts_errors_and_keeps_latency_to_successes() -> None:
    results = [
        TaskResult(0, tokens=3, ttft_ms=10.0, itl_ms=[1.0, 2.0], e2e_ms=14.0),
        TaskResult(1, tokens=3, ttft_ms=20.0, itl_ms=[3.0, 4.0], e2e_ms=28.0),
        TaskResult(2, outcome="QUEUE_FULL_DROP_LRU", e2e_ms=0.5),
        TaskResult(3, outcome="WORKER_RESET", tokens=1, ttft_ms=1.0, e2e_ms=2.0),
    ]
    plan = LoadPlan(concurrency=1, requests=4)
    s = summarize(RunResult("x", plan, results, wall_s=2.0, max_in_flight=1))
    assert (s.tasks_total, s.tasks_ok, s.tasks_failed) == (4, 2, 2)
    assert s.errors == {"QUEUE_FULL_DROP_LRU": 1, "WORKER_RESET": 1}
    assert s.latency_ms["ttft"].count == 2 and s.latency_ms["ttft"].p50 == 15.0
    assert s.latency_ms["itl"].count == 4 and s.latency_ms["itl"].max == 4.0
    assert s.latency_ms["e2e"].max == 28.0
    assert s.tokens_total == 7  # partial output of a failed task still reached the client
    assert s.tasks_per_s == 1.0 and s.tokens_per_s == 3.5


# --------------------------------------------------------------------------- runner


class FakeTarget:
    """Three tokens `gap` seconds apart; records how many tasks overlap."""

    def __init__(self, gap: float = 0.002) -> None:
        self.gap = gap
        self.in_flight = 0
        self.max_in_flight = 0
        self.starts: list[float] = []
        self.task_nos: list[int] = []

    async def run_task(self, task_no: int) -> TaskResult:
        timer = TaskTimer(task_no)
        self.starts.append(time.perf_counter())
        self.task_nos.append(task_no)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            for _ in range(3):
                await asyncio.sleep(self.gap)
                timer.token()
        finally:
            self.in_flight -= 1
        return timer.finish()


@pytest.mark.req("OC-HARNESS-8602")
def test_concurrency_mode_keeps_exactly_n_in_flight() -> None:
    target = FakeTarget()
    plan = LoadPlan(concurrency=4, requests=20, warmup=3)
    run = asyncio.run(run_load(target, plan))
    assert target.max_in_flight == 4 == run.max_in_flight
    assert [r.task_no for r in run.results] == list(range(20))
    assert sorted(n for n in target.task_nos if n < 0) == [-3, -2, -1]  # warm-up, not counted
    assert all(r.ok and r.tokens == 3 and len(r.itl_ms) == 2 for r in run.results)
    assert all(r.ttft_ms >= 1.0 and r.e2e_ms >= r.ttft_ms for r in run.results)


@pytest.mark.req("OC-HARNESS-8602")
def test_rate_mode_is_open_loop_with_fixed_spacing() -> None:
    target = FakeTarget(gap=0.02)  # 60 ms per task, started every 5 ms
    plan = LoadPlan(rate=200.0, requests=12, arrival="fixed")
    run = asyncio.run(run_load(target, plan))
    assert len(run.results) == 12
    assert run.max_in_flight >= 5  # starts do not wait for earlier tasks to finish
    span = target.starts[-1] - target.starts[0]
    assert 0.05 <= span < 0.12  # eleven gaps of 5 ms, allowing for a slow event loop


def test_rate_mode_duration_and_poisson_counts() -> None:
    fixed = asyncio.run(
        run_load(FakeTarget(), LoadPlan(rate=100.0, duration_s=0.105, arrival="fixed"))
    )
    assert 10 <= len(fixed.results) <= 11  # starts at 0, 10, ..., 100 ms
    poisson = asyncio.run(run_load(FakeTarget(), LoadPlan(rate=2000.0, requests=30, seed=7)))
    assert len(poisson.results) == 30


def test_runner_counts_a_raising_target_and_rejects_bad_plans() -> None:
    class Broken:
        async def run_task(self, task_no: int) -> TaskResult:
            raise RuntimeError("boom")

    run = asyncio.run(run_load(Broken(), LoadPlan(concurrency=2, requests=3)))
    assert [r.outcome for r in run.results] == ["EXC_RuntimeError"] * 3
    for bad in ({"concurrency": 1, "rate": 1.0, "requests": 1}, {"concurrency": 1}, {"rate": 0}):
        with pytest.raises(ValueError):
            LoadPlan(**bad)


def test_direct_stream_target_measures_like_the_http_target() -> None:
    class EngineError(Exception):
        code = "WORKER_RESET"

    async def stream(prompt: str, max_tokens: int, seed: int | None) -> AsyncIterator[str]:
        for i in range(max_tokens):
            await asyncio.sleep(TOKEN_GAP_S)
            if "fail" in prompt and i == 2:
                raise EngineError("reset")
            yield f"t{i}"

    ok = asyncio.run(DirectStreamTarget(stream, prompt="x", max_tokens=4).run_task(0))
    assert ok.ok and ok.tokens == 4 and len(ok.itl_ms) == 3
    assert ok.ttft_ms >= 4.0 and min(ok.itl_ms) >= 4.0
    bad = asyncio.run(DirectStreamTarget(stream, prompt="fail", max_tokens=4).run_task(1))
    assert (bad.outcome, bad.tokens, bad.detail) == ("WORKER_RESET", 2, "reset")


# --------------------------------------------------------------------------- HTTP target


class _Tasks:
    def __init__(self) -> None:
        self.admitted: dict[str, dict] = {}
        self.client_ports: set[int] = set()

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        self.client_ports.add(req.scope["client"][1])
        if req.get_header("Authorization") != f"Bearer {API_KEY}":
            resp.status = 401
            resp.media = {"message": "missing or wrong API key", "retriable": False}
            return
        body = await req.get_media()
        if "overload" in body["prompt"]:
            resp.status = 429
            resp.set_header("Retry-After", "1")
            resp.set_header("X-Backoff-Ms", "1000")
            resp.media = {
                "code": "QUEUE_FULL_DROP_LRU",
                "message": "queue saturated; retry later",
                "retriable": True,
                "retry_after_ms": 1000,
                "policy_label": "drop-lru",
            }
            return
        self.admitted[body["task_id"]] = body
        resp.status = 202
        resp.media = {
            "task_id": body["task_id"],
            "queue_position": 0,
            "predicted_start_ms": 0,
            "backoff_ms": 0,
        }

    async def on_get_stream(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, task_id: str
    ) -> None:
        self.client_ports.add(req.scope["client"][1])
        body = self.admitted.pop(task_id, None)
        if body is None:
            resp.status = 404
            resp.media = {"message": "no such task", "retriable": False}
            return

        async def events() -> AsyncIterator[falcon.asgi.SSEvent]:
            yield falcon.asgi.SSEvent(
                event="started", json={"queue_position": 0, "predicted_start_ms": 0}
            )
            for i in range(body["max_tokens"]):
                await asyncio.sleep(TOKEN_GAP_S)
                if "fail" in body["prompt"] and i == 2:
                    err = {"code": "WORKER_RESET", "message": "worker restarted"}
                    yield falcon.asgi.SSEvent(event="error", json=err)
                    return
                yield falcon.asgi.SSEvent(
                    event="token", event_id=str(i), json={"t": f"t{i}", "i": i}
                )
                if i == 0:
                    yield falcon.asgi.SSEvent(event="metrics", json={"queue_depth": 0})
            end = {"tokens_out": body["max_tokens"], "decode_ms": 1}
            yield falcon.asgi.SSEvent(event="end", json=end)

        resp.sse = events()


_SERVER = _Tasks()


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """A tiny OrchQueue v1 stand-in, served by uvicorn on a free port in a thread."""
    app = falcon.asgi.App()
    tasks = _SERVER
    app.add_route("/v1/tasks", tasks)
    app.add_route("/v1/tasks/{task_id}/stream", tasks, suffix="stream")
    with serve_asgi(app, what="bench stand-in") as url:
        yield url


def _http_run(url: str, prompt: str, *, key: str = API_KEY, n: int = 6) -> RunResult:
    async def go() -> RunResult:
        async with make_client(url, api_key=key, max_connections=3) as client:
            target = OrchQueueTarget(client, TaskTemplate(prompt=prompt, max_tokens=4))
            return await run_load(target, LoadPlan(concurrency=3, requests=n), name="orchestrator")

    return asyncio.run(go())


@pytest.mark.req("OC-HARNESS-8601")
def test_http_target_records_ttft_itl_and_e2e(server_url: str) -> None:
    _SERVER.client_ports.clear()
    run = _http_run(server_url, "[[sim tokens=4]] hi")
    assert len(_SERVER.client_ports) <= 3  # 12 requests over at most 3 kept-alive connections
    assert all(r.ok for r in run.results), [r.detail for r in run.results]
    for r in run.results:
        assert r.tokens == 4 and len(r.itl_ms) == 3
        assert r.admit_ms is not None and r.admit_ms <= r.ttft_ms
        # The stand-in waits TOKEN_GAP_S before each token; a busy client may read two tokens
        # in one go, so only the arrival of the last token is bounded below, not each gap.
        gap_ms = TOKEN_GAP_S * 1000 * 0.8
        assert r.ttft_ms >= gap_ms and min(r.itl_ms) >= 0.0
        assert r.ttft_ms + sum(r.itl_ms) >= 4 * gap_ms
        assert r.e2e_ms >= r.ttft_ms + sum(r.itl_ms) - 0.01
    s = summarize(run)
    assert s.tokens_total == 24 and s.latency_ms["itl"].count == 18


@pytest.mark.req("OC-HARNESS-8601")
def test_http_target_counts_error_codes(server_url: str) -> None:
    rejected = summarize(_http_run(server_url, "overload please"))
    assert rejected.errors == {"QUEUE_FULL_DROP_LRU": 6} and rejected.tasks_ok == 0
    reset = summarize(_http_run(server_url, "fail midway", n=3))
    assert reset.errors == {"WORKER_RESET": 3} and reset.tokens_total == 6
    unauthorised = summarize(_http_run(server_url, "x", key="wrong", n=2))
    assert unauthorised.errors == {"HTTP_401": 2}
    dead = summarize(_http_run("http://127.0.0.1:9", "x", n=2))  # nothing listens on port 9
    assert list(dead.errors) == ["TRANSPORT_ConnectError"]


# --------------------------------------------------------------------------- report and CLI


@pytest.mark.req("OC-HARNESS-8601")
def test_report_table_json_and_comparison() -> None:
    plan = LoadPlan(concurrency=1, requests=2)
    fast = [TaskResult(i, tokens=2, ttft_ms=5.0, itl_ms=[1.0], e2e_ms=6.0) for i in range(2)]
    slow = [TaskResult(i, tokens=2, ttft_ms=8.0, itl_ms=[1.0], e2e_ms=9.5) for i in range(2)]
    orch = summarize(RunResult("orchestrator", plan, slow, 1.0, 1))
    direct = summarize(RunResult("direct-mock", plan, fast, 1.0, 1))
    diff = compare(orch, direct)
    assert diff == {"ttft_p50_ms": 3.0, "ttft_p99_ms": 3.0, "e2e_p50_ms": 3.5}
    runs = [(orch, "http://h"), (direct, "mock")]
    doc = to_json({"mode": "concurrency"}, runs, diff)
    assert doc["added_latency"]["ms"]["ttft_p50_ms"] == 3.0
    assert doc["runs"][0]["latency_ms"]["ttft"]["p99"] == 8.0
    text = format_table(runs, diff)
    assert "TTFT p50  +3.00" in text and "errors: none" in text


@pytest.mark.req("OC-HARNESS-8602")
def test_progress_line_rewrites_on_a_tty_only() -> None:
    snap = Progress("o", "run", 5, 3, 1, 2, 30, 1.25, 10, None)
    tty, plain = io.StringIO(), io.StringIO()
    ProgressPrinter(tty, tty=True)(snap)
    ProgressPrinter(plain, tty=False)(snap)
    assert tty.getvalue().startswith("\r[o] run 3/10 done") and "\n" not in tty.getvalue()
    assert plain.getvalue() == "[o] run 3/10 done  2 in flight  1 failed  30 tokens  1.2 s\n"


def test_cli_help_and_option_checks() -> None:
    runner = CliRunner()
    out = runner.invoke(bench, ["--help"])
    assert out.exit_code == 0 and "--direct-mock" in out.output and "--rate" in out.output
    both = runner.invoke(bench, ["--target", "http://x", "--concurrency", "2", "--rate", "1"])
    assert both.exit_code == 2 and "exclude each other" in both.output
    two = runner.invoke(bench, ["--target", "http://x", "--direct", "http://y", "--direct-mock"])
    assert two.exit_code == 2 and "--direct and --direct-mock exclude" in two.output
    stray = runner.invoke(bench, ["--target", "http://x", "--engine-url", "http://y"])
    assert stray.exit_code == 2 and "default mode" in stray.output


@pytest.mark.req("OC-HARNESS-8601")
def test_cli_runs_against_the_server_and_writes_json(server_url: str, tmp_path) -> None:
    path = tmp_path / "bench.json"
    args = ["--target", server_url, "--requests", "5", "--concurrency", "2", "--max-tokens", "3"]
    runner = CliRunner()
    out = runner.invoke(bench, [*args, "--json", str(path)], env={"LLORCH_API_KEY": API_KEY})
    assert out.exit_code == 0, out.output
    assert "TTFT" in out.output and "tokens/s" in out.output and API_KEY not in out.output
    doc = json.loads(path.read_text())
    assert API_KEY not in path.read_text()
    (run,) = doc["runs"]
    assert run["tasks_ok"] == 5 and run["tokens_total"] == 15 and run["errors"] == {}
    assert set(run["latency_ms"]) == {"ttft", "itl", "e2e", "admit"}
    assert doc["settings"]["task"]["max_tokens"] == 3
    full = runner.invoke(
        bench,
        [*args, "--prompt", "overload", "--format", "json", "--quiet"],
        env={"LLORCH_API_KEY": API_KEY},
    )
    assert full.exit_code == 1  # no task succeeded
    assert json.loads(full.stdout)["runs"][0]["errors"] == {"QUEUE_FULL_DROP_LRU": 5}


def test_cli_direct_mock_against_the_server(server_url: str) -> None:
    pytest.importorskip("llama_orch.reference_impl.adapters.mock")
    out = CliRunner().invoke(
        bench,
        [
            "--target",
            server_url,
            "--direct-mock",
            "--requests",
            "4",
            "--concurrency",
            "2",
            "--prompt",
            "[[sim tokens=4]] hi",
            "--max-tokens",
            "4",
            "--format",
            "json",
            "--quiet",
        ],
        env={"LLORCH_API_KEY": API_KEY},
    )
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert [r["name"] for r in doc["runs"]] == ["orchestrator", "direct-mock"]
    assert doc["runs"][1]["tasks_ok"] == 4 and doc["runs"][1]["tokens_total"] == 16
    assert doc["added_latency"]["ms"]["ttft_p50_ms"] is not None
