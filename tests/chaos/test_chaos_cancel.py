"""Cancel races: thousands of cancels at random moments against streaming tasks.

Each task streams 40 tokens from a llama.cpp simulator (4 ms apart, about 160 ms); its cancel
comes after a delay drawn uniformly from 0 to 200 ms, so it lands while the task is queued,
mid-stream, or after the end. Right after the `204`, a second reader replays the stream: it
must already hold its terminal event, and the live stream must hold no more tokens than that
replay (a token appended after the acknowledgment would show up there). Afterwards no slot may
stay taken, neither the orchestrator's nor the engine's.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

import httpx
import pytest

from tests.chaos import _client as oq
from tests.chaos._engines import SIM_MODEL, pool_yaml, sims
from tests.chaos.conftest import Chaos, config, size
from tests.ops._reference import Reference

WORKERS = 32
POOL = "chaos-cancel"
PROMPT = "[[sim tokens=40 itl_ms=4]] cancel race"


def _leaked(ref: Reference, sim_url: str) -> tuple[int, int]:
    """(orchestrator slots taken, engine slots processing) once both settle, or after 5 s."""
    deadline = time.monotonic() + 5
    while True:
        sets = httpx.get(f"{ref.url}/v1/replicasets", headers=ref.headers, timeout=5).json()
        orch = sum(s["slots_total"] - s["slots_free"] for s in sets)
        engine = sum(
            1 for s in httpx.get(f"{sim_url}/slots", timeout=5).json() if s["is_processing"]
        )
        if (orch == 0 and engine == 0) or time.monotonic() > deadline:
            return orch, engine
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.req("OC-CTRL-2012", "ORCH-3026", "ORCH-2003")
def test_cancel_races(chaos: Chaos, scenario: str) -> None:
    total = int(size("cancels"))
    rng = random.Random(20261203)
    delays = [rng.uniform(0.0, 0.2) for _ in range(total)]
    tally: Counter[str] = Counter()
    problems: list[str] = []

    async def one(http, delay: float) -> None:
        body = oq.task_body(PROMPT, model_ref=f"repo:sim/{SIM_MODEL}", max_tokens=40, ctx=4096)
        sub = await oq.submit(http, body)
        if sub.status != 202:
            tally[f"admission {sub.status}"] += 1
            return
        live = oq.Stream(body["task_id"])
        reader = asyncio.create_task(oq.read_stream(http, body["task_id"], out=live))
        await asyncio.sleep(delay)
        status, acked_at = await oq.cancel(http, body["task_id"])
        snap = await oq.read_stream(http, body["task_id"])
        try:
            await asyncio.wait_for(reader, 10)
        except TimeoutError:
            tally["hung"] += 1
            return
        tally["cancels"] += 1
        tally["acked 204"] += status == 204
        tally["open at ack"] += snap.terminal is None
        tally["tokens after ack"] += max(0, len(live.tokens) - len(snap.tokens))
        tally["in flight at ack"] += sum(
            1 for e in live.events if e.name == "token" and e.at > acked_at
        )
        term = live.terminal
        kind = (
            "no terminal"
            if term is None
            else f"{term.name} {term.data.get('finish_reason') or term.data.get('code')}"
        )
        tally[kind] += 1
        if not live.tokens and term is not None and term.name == "end":
            tally["canceled before a token"] += 1
        problem = live.index_problem()
        if problem or term is None or snap.terminal is None or status != 204:
            problems.append(f"{body['task_id']}: {problem or kind} (cancel {status})")

    async def worker(http, queue: asyncio.Queue) -> None:
        while True:
            try:
                delay = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await one(http, delay)

    workdir = chaos.workdir(scenario)
    with sims(workdir, ("llamacpp",), slots=8) as (sim,):
        with chaos.reference(scenario, config(pool_yaml(sim, POOL))) as ref:
            ref.wait_ready([POOL], timeout_s=60)

            async def run() -> float:
                queue: asyncio.Queue = asyncio.Queue()
                for d in delays:
                    queue.put_nowait(d)
                start = time.monotonic()
                async with oq.session(ref.url, ref.api_key) as http:
                    await asyncio.gather(*(worker(http, queue) for _ in range(WORKERS)))
                    took = time.monotonic() - start
                    # Capacity is intact: a fresh task runs to its end.
                    _sub, after = await oq.run_task(
                        http,
                        oq.task_body(
                            "[[sim tokens=4]] after", model_ref=f"repo:sim/{SIM_MODEL}", ctx=4096
                        ),
                    )
                    tally["fresh task ended"] += (
                        after.terminal is not None and after.terminal.name == "end"
                    )
                return took

            took = asyncio.run(run())
            orch_leak, engine_leak = _leaked(ref, sim.url)
    print(f"[chaos {scenario}] outcomes: {dict(tally)}; first problems: {problems[:5]}")
    n = tally["cancels"]
    chaos.figure(
        scenario,
        "cancels run (random delay 0-200 ms)",
        f"{n} in {took:.0f} s",
        f"{total}",
        n == total,
    )
    chaos.figure(
        scenario,
        "cancels acknowledged 204",
        f"{tally['acked 204']}/{n}",
        "all",
        tally["acked 204"] == n,
    )
    chaos.figure(
        scenario,
        "tokens after a cancel acknowledgment",
        str(tally["tokens after ack"]),
        "0",
        tally["tokens after ack"] == 0,
    )
    chaos.figure(
        scenario,
        "streams still open at the acknowledgment",
        str(tally["open at ack"]),
        "0",
        tally["open at ack"] == 0,
    )
    chaos.figure(
        scenario,
        "hung streams or bad index sequences",
        str(tally["hung"] + len(problems)),
        "0",
        tally["hung"] == 0 and not problems,
    )
    chaos.figure(
        scenario,
        "leaked slots (orchestrator + engine)",
        f"{orch_leak} + {engine_leak}",
        "0 + 0",
        orch_leak == 0 and engine_leak == 0,
    )
    chaos.figure(
        scenario,
        "a fresh task runs to its end afterwards",
        str(tally["fresh task ended"]),
        "1",
        tally["fresh task ended"] == 1,
    )
    mix = ", ".join(f"{k}: {v}" for k, v in sorted(tally.items()) if k.startswith(("end", "error")))
    chaos.figure(
        scenario,
        "how streams ended",
        mix + f"; token events the live reader took from its buffer after the 204: "
        f"{tally['in flight at ack']} (emitted before it: the replay holds them)",
        "(info)",
        True,
    )
    chaos.check(scenario)
