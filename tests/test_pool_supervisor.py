"""Engines the pool manager launches itself: start, health wait, crash, restart, breaker.

The engine is tests/fixtures/fake_engine.py started through `launch.binary`, so the real
process handling runs: process groups, output capture, exit detection, SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llama_orch.reference_impl.adapters.base import AdapterError, CompletionRequest, SamplerParams
from llama_orch.reference_impl.config import OrchestratorConfig
from llama_orch.reference_impl.pool.backoff import BackoffPolicy, BreakerPolicy
from llama_orch.reference_impl.pool.determinism import load_settings
from llama_orch.reference_impl.pool.devices import DeviceRegistry
from llama_orch.reference_impl.pool.factory import make_adapter
from llama_orch.reference_impl.pool.manager import PoolManager
from llama_orch.reference_impl.pool.supervisor import (
    EngineProcess,
    EngineStartError,
    LaunchSpec,
    OutputRing,
    free_port,
    llama_server_argv,
)
from tests.fixtures.pool_kit import (
    FAKE_ENGINE,
    GIB,
    Recorder,
    config,
    fake_factory,
    gpus,
    launched,
    no_nvml,
    pool_logs,
    wait_for,
)

FAST = BackoffPolicy(initial_s=0.05, max_s=0.2, jitter=0)
BREAKER = BreakerPolicy(max_failures=3, window_s=30, cooldown_s=30)


def manager(cfg, rec=None, discover=no_nvml) -> PoolManager:
    return PoolManager(
        cfg,
        fake_factory,
        rec or Recorder(),
        devices=DeviceRegistry(discover),
        backoff=FAST,
        breaker=BREAKER,
        heartbeat_s=0.1,
    )


def request(n: int) -> CompletionRequest:
    sampler = SamplerParams(temperature=0.0, top_k=1, top_p=1.0, min_p=0.0)
    return CompletionRequest("t1", "hello", n, 1, sampler, "v1")


def argv_of(pm: PoolManager) -> tuple[str, ...]:
    return pm.pools["p0"].replicas[0].process.spec.argv


@pytest.mark.req("OC-POOL-3001", "ORCH-3002", "ORCH-3037")
def test_launched_engine_is_ready_only_after_health_and_preload(tmp_path: Path) -> None:
    cfg = launched(tmp_path, "--load-ms", "300")

    async def run() -> None:
        rec = Recorder()
        pm = manager(cfg, rec)
        await pm.start()
        try:
            pool = pm.pools["p0"]
            assert rec.seen[0][:2] == ("loading", False)  # not ready while loading
            assert pool.ready and rec.seen[-1] == ("ready", True, True, None)
            assert pool.engine_version == "fake-b1" and pool.cpu_inference
            assert pool.model_digest == "sha256:" + cfg.pools[0].model_sha256
            argv = argv_of(pm)
            assert argv[1:3] == ("--model", str(cfg.model_path_for(cfg.pools[0])))
            assert "--metrics" in argv and argv[argv.index("--ctx-size") + 1] == "256"
            assert "CUDA_VISIBLE_DEVICES=''" in pool.replicas[0].process.output.tail(10)
            stream = pool.replicas[0].adapter.stream(request(3))
            assert [e.token_id async for e in stream] == [0, 1, 2]
        finally:
            await pm.close()

    asyncio.run(run())


@pytest.mark.req("OC-POOL-3010", "ORCH-3038", "OC-POOL-3030")
def test_killed_engine_fails_streams_fast_then_restarts(tmp_path: Path) -> None:
    cfg = launched(tmp_path)
    with pool_logs() as records:
        asyncio.run(_kill_mid_stream(cfg))
    events = {(r.event, getattr(r, "outcome", None)) for r in records if hasattr(r, "event")}
    assert {("preload", "success"), ("driver_reset", None), ("restart", None)} <= events
    restart = next(r for r in records if getattr(r, "event", None) == "restart")
    assert restart.attempt == 1 and restart.backoff_ms == 50 and restart.pool_id == "p0"
    reset = next(r for r in records if getattr(r, "event", None) == "driver_reset")
    assert reset.device == "cpu" and "killed by signal 9" in reset.error


async def _kill_mid_stream(cfg: OrchestratorConfig) -> None:
    rec = Recorder()
    pm = manager(cfg, rec)
    await pm.start()
    pool = pm.pools["p0"]
    try:
        old = pool.replicas[0].process
        stream = pool.replicas[0].adapter.stream(request(1000))
        it = aiter(stream)
        await anext(it)
        os.kill(old.pid, signal.SIGKILL)
        t0 = time.monotonic()
        with pytest.raises(AdapterError) as err:
            while True:
                await anext(it)
        assert err.value.code == "WORKER_RESET"
        assert time.monotonic() - t0 < 2.0
        await wait_for(lambda: not pool.ready, 2.0)
        assert "killed by signal 9" in pool.last_error and pool.driver_resets == 1
        assert ("failed", False, False) in [s[:3] for s in rec.seen]
        await wait_for(lambda: pool.ready)
        assert pool.restarts == 1 and pool.last_error is None
        assert pool.replicas[0].process.pid != old.pid
    finally:
        await pm.close()


@pytest.mark.req("OC-POOL-3010", "ORCH-3038")
def test_the_llamacpp_adapter_reports_a_killed_engine_as_worker_reset(tmp_path: Path) -> None:
    """The same path with the real LlamaCppAdapter the factory builds for launched pools."""
    cfg = launched(tmp_path, "--itl-ms", "50")

    async def run() -> None:
        pm = PoolManager(
            cfg, make_adapter, devices=DeviceRegistry(no_nvml), backoff=FAST, heartbeat_s=0.1
        )
        await pm.start()
        pool = pm.pools["p0"]
        try:
            assert pool.ready and pool.model_digest == "sha256:" + cfg.pools[0].model_sha256
            it = aiter(pool.replicas[0].adapter.stream(request(1000)))
            assert (await anext(it)).token_id == 0
            os.kill(pool.replicas[0].process.pid, signal.SIGKILL)
            t0 = time.monotonic()
            with pytest.raises(AdapterError) as err:
                while True:
                    await anext(it)
            assert err.value.code == "WORKER_RESET" and time.monotonic() - t0 < 2.0
            await wait_for(lambda: pool.restarts == 1 and pool.ready)
        finally:
            await pm.close()

    asyncio.run(run())


@pytest.mark.req("OC-POOL-3010", "ORCH-3038")
def test_a_hung_engine_is_detected_by_its_heartbeat_and_replaced(tmp_path: Path) -> None:
    cfg = launched(tmp_path)

    async def run() -> None:
        pm = PoolManager(
            cfg,
            fake_factory,
            devices=DeviceRegistry(no_nvml),
            backoff=FAST,
            heartbeat_s=0.05,
            health_timeout_s=0.2,
        )
        await pm.start()
        pool = pm.pools["p0"]
        hung = pool.replicas[0].process
        try:
            os.kill(hung.pid, signal.SIGSTOP)  # alive, socket open, never answers
            await wait_for(lambda: pool.driver_resets == 1, 3.0)
            assert pool.last_error.startswith("engine stopped answering health checks")
            await wait_for(lambda: pool.ready, 3.0)
            assert hung.returncode == -signal.SIGKILL  # killed, not left behind
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(hung.pid, signal.SIGKILL)
            await pm.close()

    asyncio.run(run())


@pytest.mark.req("OC-POOL-3011", "ORCH-3053", "OC-POOL-3003")
def test_crash_loop_is_cut_off_by_the_circuit_breaker(tmp_path: Path) -> None:
    cfg = launched(tmp_path, "--crash-after-ms", "250")

    async def run() -> None:
        pm = manager(cfg)
        await pm.start()
        pool = pm.pools["p0"]
        try:
            await wait_for(lambda: pool.breaker_open, 8.0)
            assert pool.last_error.startswith("circuit open:")
            assert "fatal: simulated crash" in pool.last_error  # the engine's own last words
            assert "exited with code 3" in pool.last_error
            assert not pool.ready and not pool.live and pool.preload_state.value == "failed"
            # Three failures: crashes while serving, or (on a slow machine) during start-up.
            assert pool.restarts == 2
            assert pool.driver_resets + pool.preload_outcomes["failure"] == 3
            assert pool.next_retry_at is not None and pool.next_retry_at > time.monotonic() + 20
            await asyncio.sleep(0.4)  # several backoff periods: no further start
            assert pool.restarts == 2 and pool.driver_resets == pool.preload_outcomes["success"]
        finally:
            await pm.close()

    asyncio.run(run())


@pytest.mark.req("OC-POOL-3011", "OC-POOL-3003", "OC-POOL-3001")
def test_start_failures_report_engine_output_and_reload_closes_the_breaker(
    tmp_path: Path,
) -> None:
    flag = tmp_path / "broken"
    flag.touch()
    cfg = launched(tmp_path, "--fail-if-exists", str(flag))

    async def run() -> None:
        pm = manager(cfg)
        await pm.start()
        pool = pm.pools["p0"]
        try:
            assert not pool.ready and pool.preload_state.value == "failed"
            assert "failed to load model" in pool.last_error
            assert "during start-up" in pool.last_error
            await wait_for(lambda: pool.breaker_open, 5.0)
            assert pool.preload_outcomes == {"success": 0, "failure": 3}
            flag.unlink()
            assert await pm.reload("p0", "repo:test/tiny")  # the operator's way out
            assert pool.ready and not pool.breaker_open and pool.last_error is None
        finally:
            await pm.close()

    asyncio.run(run())


def test_reload_starts_a_new_engine_beside_the_old_and_retires_it(tmp_path: Path) -> None:
    cfg = launched(tmp_path)

    async def run() -> None:
        rec = Recorder()
        pm = manager(cfg, rec)
        await pm.start()
        pool = pm.pools["p0"]
        try:
            old, before = pool.replicas[0].process, len(rec.seen)
            assert await pm.reload("p0", "repo:test/other")
            new = pool.replicas[0].process
            assert new.pid != old.pid and pool.model_ref == "repo:test/other"
            assert rec.seen[before:] and all(r[1] for r in rec.seen[before:])  # no unready gap
            await wait_for(lambda: not old.running, 5.0)  # retired once idle
            await asyncio.sleep(0.3)  # a retired engine's exit is no fault
            assert pool.ready and pool.driver_resets == 0 and new.running
        finally:
            await pm.close()

    asyncio.run(run())


@pytest.mark.req(
    "OC-POOL-3020", "ORCH-3011", "OC-POOL-3021", "ORCH-3012", "ORCH-3001", "OC-CORE-1011"
)
def test_engine_sees_only_the_pool_mask_and_its_explicit_split(tmp_path: Path) -> None:
    """One engine process per replica: one model, and only the pool's devices visible to it."""
    four = gpus(*[("NVIDIA L4", 24 * GIB, 20 * GIB)] * 4)
    cfg = launched(tmp_path, devices=[1, 3], tensor_split=[0.75, 0.25], allow_cpu_inference=False)

    async def run() -> None:
        pm = manager(cfg, discover=four)
        await pm.start()
        try:
            pool = pm.pools["p0"]
            assert pool.ready and not pool.cpu_inference
            output = pool.replicas[0].process.output.tail(10)
            assert "CUDA_VISIBLE_DEVICES='1,3'" in output
            argv = argv_of(pm)
            assert argv[argv.index("--tensor-split") + 1] == "0.75,0.25"
            assert argv.count("--model") == 1
            assert argv[argv.index("--model") + 1] == str(cfg.model_path_for(cfg.pools[0]))
            assert pool.replicas[0].devices == frozenset({1, 3})
        finally:
            await pm.close()

    asyncio.run(run())


@pytest.mark.req("OC-POOL-3003", "OC-POOL-3012")
def test_endpoint_pool_follows_its_heartbeat(tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, str(FAKE_ENGINE), "--model", "m", "--host", "127.0.0.1"]
    argv += ["--port", str(port)]
    cfg = config(adapter=None, endpoint=f"http://127.0.0.1:{port}")

    async def run(engine: subprocess.Popen) -> subprocess.Popen:
        pm = manager(cfg)
        try:
            await wait_for(lambda: engine.stderr.readline().startswith(b"fake-engine: listen"))
            await pm.start()
            pool = pm.pools["p0"]
            assert pool.ready
            engine.kill()
            engine.wait()
            engine.stderr.close()
            await wait_for(lambda: not pool.ready, 2.0)
            assert pool.preload_state.value == "failed"
            assert pool.last_error.startswith("engine health check failed")
            engine = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
            await wait_for(lambda: pool.ready, 5.0)
            assert pool.last_error is None and pool.restarts == 0
        finally:
            await pm.close()
        return engine

    engine = subprocess.Popen(argv, stderr=subprocess.PIPE)
    try:
        engine = asyncio.run(run(engine))
    finally:
        engine.kill()
        engine.wait()
        if engine.stderr is not None:
            engine.stderr.close()


def test_start_timeout_kills_the_engine_and_says_why(tmp_path: Path) -> None:
    port = free_port()
    argv = (sys.executable, str(FAKE_ENGINE), "--model", "m", "--host", "127.0.0.1")
    spec = LaunchSpec((*argv, "--port", str(port), "--load-ms", "60000"), "127.0.0.1", port)
    spec = LaunchSpec(spec.argv, spec.host, spec.port, startup_timeout_s=0.4)

    async def run() -> None:
        proc = EngineProcess(spec)
        with pytest.raises(EngineStartError, match=r"not healthy within 400 ms .*HTTP 503"):
            await proc.start()
        assert proc.returncode is not None and not proc.running

    asyncio.run(run())


def test_missing_binary_is_a_start_error() -> None:
    spec = LaunchSpec(("/nonexistent/llama-server",), "127.0.0.1", 1)

    async def run() -> None:
        with pytest.raises(EngineStartError, match="cannot start"):
            await EngineProcess(spec).start()

    asyncio.run(run())


def test_close_stops_the_engines_it_started(tmp_path: Path) -> None:
    cfg = launched(tmp_path)

    async def run() -> None:
        pm = manager(cfg)
        await pm.start()
        proc = pm.pools["p0"].replicas[0].process
        assert proc.running
        await pm.close()
        assert not proc.running and pm.pools["p0"].replicas[0].process is None

    asyncio.run(run())


def test_llama_server_argv_adds_what_the_pool_implies_once() -> None:
    argv = llama_server_argv(
        "llama-server",
        "/m.gguf",
        "127.0.0.1",
        8080,
        ["-np", "2"],
        ctx=512,
        determinism_args=load_settings("llamacpp").start_args,
    )
    assert argv[:7] == (
        "llama-server",
        "--model",
        "/m.gguf",
        "--host",
        "127.0.0.1",
        "--port",
        "8080",
    )
    assert "--parallel" not in argv  # the operator's -np wins
    assert "--no-cont-batching" in argv and "--metrics" in argv
    assert argv[argv.index("--ctx-size") + 1] == "512"


def test_determinism_flags_keep_negative_values_with_their_flag() -> None:
    """`--seed -1` is one group: skipped whole when the operator sets --seed, kept whole else."""
    settings = ("--seed", "-1", "--temp", "-0.5", "--no-cont-batching", "--parallel", "1")

    def extra(args: list[str]) -> tuple[str, ...]:
        return llama_server_argv("ls", "/m", "h", 1, args, determinism_args=settings)[7:]

    assert extra(["--seed", "42", "-nocb"]) == (
        "--seed",
        "42",
        "-nocb",
        "--metrics",
        "--temp",
        "-0.5",
        "--parallel",
        "1",
    )
    assert extra(["--seed=7", "--temp", "0.1", "-np", "4"]) == (
        "--seed=7",
        "--temp",
        "0.1",
        "-np",
        "4",
        "--metrics",
        "--no-cont-batching",
    )
    # only --parallel and --no-cont-batching are matched by alias: `-s` is not `--seed`
    assert extra(["-s", "3"])[3:5] == ("--seed", "-1")


def test_output_ring_is_bounded() -> None:
    ring = OutputRing(max_lines=3)
    ring.feed(b"one\ntwo\nthr")
    ring.feed(b"ee\nfour\n" + b"x" * 5000)
    ring.flush()
    assert list(ring.lines)[:2] == ["three", "four"] and len(ring.lines) == 3
    assert len(ring.lines[-1]) == 1000
    assert ring.tail(2, max_chars=10_000) == "four | " + "x" * 1000
    assert ring.tail(2) == "…" + "x" * 799
