"""Operations under load: drain and reload of pools, and SIGTERM of the whole server.

Drain and reload: two pools of one replica set carry a steady load; in each cycle one pool is
drained with a short deadline (its running tasks are cut, its queued ones move to the other
pool), reloaded, and must serve again, then the other. SIGTERM: the server is stopped while
streams of different lengths run; the short ones finish, the long ones are ended at the
shutdown deadline. Bars for both: no stream cut without a terminal event, no lost or duplicated
token index, no error code other than the documented one (POOL_UNAVAILABLE).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable

import aiohttp
import pytest

from tests.chaos import _client as oq
from tests.chaos.conftest import Chaos, config, size

EXPECTED_ERRORS = {"POOL_UNAVAILABLE"}


def _pool(pool_id: str, replicas: int) -> str:
    return f"""
  - id: {pool_id}
    engine: llamacpp
    adapter: mock
    model: repo:mock/chaos
    ctx: 4096
    devices: []
    allow_cpu_inference: true
    replicas: {replicas}
    queue: {{capacity: 512, full_policy: reject}}"""


class Judge:
    """Tallies what clients saw; `problems` are the streams that broke a bar."""

    def __init__(self) -> None:
        self.tally: Counter[str] = Counter()
        self.problems: list[str] = []
        self.served_by: Counter[str] = Counter()  # dispatches per pool, from `metrics` events
        self.dispatches: list[tuple[str, float]] = []  # (pool, when its task was submitted)

    def admission(self, sub: oq.Submitted) -> None:
        self.tally[f"POST {sub.status}"] += 1
        code = sub.body.get("code")
        if sub.status >= 500 and not (sub.status == 503 and code in EXPECTED_ERRORS):
            self.problems.append(f"admission {sub.status} {code}")

    def stream(self, stream: oq.Stream, k: int, submitted_at: float = 0.0) -> None:
        if stream.status != 200:
            self.tally[f"stream HTTP {stream.status}"] += 1
            if stream.status is not None and stream.status >= 500:
                self.problems.append(f"{stream.task_id}: stream HTTP {stream.status}")
            return
        for event in stream.events:
            replica = event.data.get("replica_id") if event.name == "metrics" else None
            if replica:
                pool = replica.rsplit("-r", 1)[0]
                self.served_by[pool] += 1
                self.dispatches.append((pool, submitted_at))
        term, problem = stream.terminal, stream.index_problem()
        if term is None:
            self.tally["truncated"] += 1
            self.problems.append(f"{stream.task_id}: no terminal event ({stream.transport_error})")
        elif term.name == "error":
            code = term.data.get("code")
            self.tally[f"error {code}"] += 1
            if code not in EXPECTED_ERRORS:
                self.problems.append(f"{stream.task_id}: error {code}")
        elif len(stream.tokens) != k:
            self.problems.append(f"{stream.task_id}: {len(stream.tokens)} of {k} tokens")
        else:
            self.tally["end"] += 1
        if problem:
            self.tally["bad indices"] += 1
            self.problems.append(f"{stream.task_id}: {problem}")

    def report(self, chaos: Chaos, scenario: str) -> None:
        truncated, bad = self.tally["truncated"], self.tally["bad indices"]
        print(f"[chaos {scenario}] outcomes: {dict(self.tally)}; problems: {self.problems[:5]}")
        chaos.figure(
            scenario, "streams cut without a terminal event", str(truncated), "0", not truncated
        )
        chaos.figure(
            scenario, "streams with lost or duplicated token indices", str(bad), "0", not bad
        )
        others = len(self.problems) - truncated - bad
        chaos.figure(
            scenario,
            "other breaks (unexpected error code or 5xx, short stream)",
            str(others),
            "0",
            others == 0,
        )
        ended = {k: v for k, v in self.tally.items() if k.startswith(("end", "error", "POST 5"))}
        chaos.figure(scenario, "how tasks ended", str(ended), "(info)", True)


async def _clients(
    http: aiohttp.ClientSession,
    judge: Judge,
    n: int,
    running: Callable[[], bool],
    lengths: tuple[int, ...],
) -> None:
    rng = random.Random(n)
    while running():
        k = rng.choice(lengths)
        body = oq.task_body(f"[[sim tokens={k} itl_ms=10]] ops {n}", max_tokens=k)
        try:
            sub = await oq.submit(http, body)
        except (aiohttp.ClientError, ConnectionError, TimeoutError):
            judge.tally["POST refused"] += 1
            await asyncio.sleep(0.05)
            continue
        judge.admission(sub)
        if sub.status != 202:
            await asyncio.sleep(0.05)
            continue
        judge.stream(await oq.read_stream(http, body["task_id"]), k, sub.at)


@pytest.mark.slow
@pytest.mark.req("OC-CTRL-2002")
def test_drain_and_reload_under_load(chaos: Chaos, scenario: str) -> None:
    cycles = int(size("drain_cycles"))
    pools = ["chaos-a", "chaos-b"]
    judge = Judge()
    reload_s: list[float] = []
    drained: list[tuple[str, float, float]] = []  # (pool, drain acknowledged, reload sent)
    served_again = 0
    with chaos.reference(scenario, config(_pool("chaos-a", 2) + _pool("chaos-b", 2))) as ref:
        ref.wait_ready(pools, timeout_s=60)

        async def run() -> None:
            nonlocal served_again
            stop = asyncio.Event()
            async with oq.session(ref.url, ref.api_key) as http:
                load = [
                    asyncio.create_task(
                        _clients(http, judge, n, lambda: not stop.is_set(), (5, 30, 60))
                    )
                    for n in range(40)
                ]
                await asyncio.sleep(1.0)
                for _ in range(cycles):
                    for pool in pools:
                        resp = await http.post(f"/v1/pools/{pool}/drain", json={"deadline_ms": 300})
                        assert resp.status == 202, await resp.text()
                        acked = time.monotonic()
                        await asyncio.sleep(1.0)
                        drained.append((pool, acked, time.monotonic()))
                        resp = await http.post(
                            f"/v1/pools/{pool}/reload", json={"new_model_ref": "repo:mock/chaos"}
                        )
                        assert resp.status == 202, await resp.text()
                        began = time.monotonic()
                        await asyncio.to_thread(ref.wait_ready, [pool], 60)
                        reload_s.append(time.monotonic() - began)
                        before = judge.served_by[pool]
                        await asyncio.sleep(1.0)
                        served_again += judge.served_by[pool] > before
                stop.set()
                await asyncio.gather(*load)

        asyncio.run(run())
    judge.report(chaos, scenario)
    # A task submitted after a drain was acknowledged never runs on the drained pool.
    leaked = sum(
        1
        for pool, acked, reloaded in drained
        for where, submitted in judge.dispatches
        if where == pool and acked < submitted < reloaded
    )
    chaos.figure(
        scenario,
        "tasks submitted during a drain that ran on the drained pool",
        f"{leaked} ({len(drained)} drains, {len(judge.dispatches)} dispatches seen)",
        "0",
        leaked == 0 and len(judge.dispatches) > 0,
    )
    chaos.figure(
        scenario,
        "pools Ready and serving again after each reload",
        f"{served_again}/{2 * cycles}; reload took max {max(reload_s):.2f} s",
        "all",
        served_again == 2 * cycles,
    )
    chaos.check(scenario)


@pytest.mark.slow
def test_sigterm_under_load(chaos: Chaos, scenario: str) -> None:
    runs = int(size("sigterm_runs"))
    deadline_s = 2.0
    judge = Judge()
    exits: list[tuple[int | None, float]] = []
    for run_no in range(runs):
        pools = _pool("chaos-term", 4)
        with chaos.reference(
            scenario, config(pools), name=f"reference-{run_no}", shutdown_deadline_s=deadline_s
        ) as ref:
            ref.wait_ready(["chaos-term"], timeout_s=60)

            async def run() -> None:
                async with oq.session(ref.url, ref.api_key) as http:
                    alive = lambda: ref.proc.poll() is None  # noqa: E731
                    # 10 tokens finish within the deadline, 500 (5 s) do not.
                    load = [
                        asyncio.create_task(_clients(http, judge, n, alive, (10, 100, 500)))
                        for n in range(60)
                    ]
                    await asyncio.sleep(2.0)
                    ref.terminate()
                    sent = time.monotonic()
                    while alive() and time.monotonic() - sent < deadline_s + 30:
                        await asyncio.sleep(0.05)
                    exits.append((ref.proc.poll(), time.monotonic() - sent))
                    await asyncio.gather(*load)

            asyncio.run(run())
    judge.report(chaos, scenario)
    slowest = max(t for _, t in exits)
    chaos.figure(
        scenario,
        f"server exit after SIGTERM (shutdown deadline {deadline_s:g} s)",
        f"{len(exits)} runs, exit codes {sorted({str(c) for c, _ in exits})}, "
        f"slowest {slowest:.1f} s",
        f"exit 0 within {deadline_s + 5:g} s",
        all(code == 0 for code, _ in exits) and slowest <= deadline_s + 5,
    )
    cut = judge.tally["error POOL_UNAVAILABLE"]
    chaos.figure(
        scenario,
        "long streams ended by the deadline with an error event",
        str(cut),
        "> 0 (the scenario reached the deadline)",
        cut > 0,
    )
    chaos.check(scenario)
