"""Many concurrent clients with mixed priorities: no lost or duplicated token, no 5xx.

Every client loops for the scenario's duration: submit a task (interactive three times in ten,
else batch; 4 to 24 tokens, 5 ms apart), read its stream to the end, check it, repeat. The
reference serves from the in-process mock engine (16 replicas x 4 slots), so the figures are
the orchestrator's: admission, WFQ, dispatch, SSE fan-out. Load generator and server share the
machine's two cores. Bars: 0 streams with lost or duplicated token indices (or fewer tokens than
asked), 0 HTTP 5xx, 0 streams cut without a terminal event. The worker's memory growth is
stated: the first wave's growth includes the finished streams the reference keeps replayable
for two minutes; nightly, a second identical wave after those are reaped shows whether
anything else stays behind (a leak).
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
from tests.ops._reference import rss_bytes

POOL = "chaos-load"
CONFIG = config(
    f"""
  - id: {POOL}
    engine: llamacpp
    adapter: mock
    model: repo:mock/chaos
    ctx: 4096
    devices: []
    allow_cpu_inference: true
    replicas: 16
    queue: {{capacity: 4096, full_policy: reject}}
    admission:
      priorities:
        - {{name: interactive, weight: 8}}
        - {{name: batch, weight: 1}}
""",
    wall_ms=180_000,
    idle_ms=60_000,
)
MEMORY_BAR_MB = 256
LEAK_BAR_BYTES = 1024  # a leak of 1 KiB per task shows as 15 MB over a nightly wave
STREAM_RETENTION_S = 120  # the reference keeps finished streams replayable this long
SECOND_WAVE = {"short": False, "nightly": True}


@pytest.mark.slow
@pytest.mark.req("ORCH-2002")
def test_concurrent_clients(chaos: Chaos, scenario: str) -> None:
    clients = int(size("clients"))
    seconds = float(size("client_seconds"))
    tally: Counter[str] = Counter()
    problems: list[str] = []

    async def client(http: aiohttp.ClientSession, n: int, more: Callable[[], bool]) -> None:
        rng = random.Random(n)
        while more():
            tally["sent"] += 1
            priority = "interactive" if rng.random() < 0.3 else "batch"
            k = rng.randint(4, 24)
            body = oq.task_body(
                f"[[sim tokens={k} itl_ms=5]] client {n}", priority=priority, max_tokens=k
            )
            try:
                sub, stream = await oq.run_task(http, body)
            except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
                tally["transport errors"] += 1
                problems.append(f"client {n}: {exc!r}")
                await asyncio.sleep(0.1)
                continue
            tally[f"POST {sub.status}"] += 1
            tally["5xx"] += sub.status >= 500 or (stream.status or 0) >= 500
            if sub.status != 202:
                await asyncio.sleep(0.05)
                continue
            tally[priority] += 1
            term = stream.terminal
            problem = stream.index_problem()
            if term is None:
                tally["truncated"] += 1
                problems.append(f"{body['task_id']}: no terminal event ({stream.transport_error})")
            elif term.name == "error":
                tally[f"error {term.data.get('code')}"] += 1
            elif problem or len(stream.tokens) != k:
                tally["lost or duplicated"] += 1
                problems.append(f"{body['task_id']}: {problem or f'{len(stream.tokens)} of {k}'}")
            else:
                tally["ok"] += 1
                tally["tokens"] += k

    with chaos.reference(scenario, CONFIG) as ref:
        ref.wait_ready([POOL], timeout_s=60)
        worker = ref.worker_pid()

        def until(t: float) -> Callable[[], bool]:
            return lambda: time.monotonic() < t

        async def wave(more: Callable[[], bool] | None, peak: str) -> float:
            """All clients, for `seconds` or while `more()`; peak RSS is sampled meanwhile."""
            async with oq.session(ref.url, ref.api_key) as http:
                if more is None:  # the first wave warms up: imports, connections, arenas
                    await asyncio.gather(
                        *(client(http, -n - 1, until(time.monotonic() + 2)) for n in range(50))
                    )
                    tally.clear()
                    memory["before"] = rss_bytes(worker)
                memory[peak] = rss_bytes(worker)

                async def sample() -> None:
                    while True:
                        memory[peak] = max(memory[peak], rss_bytes(worker))
                        await asyncio.sleep(1)

                sampler = asyncio.create_task(sample())
                start = time.monotonic()
                more = more or until(start + seconds)
                await asyncio.gather(*(client(http, n, more) for n in range(clients)))
                sampler.cancel()
                return time.monotonic() - start

        memory: dict[str, int] = {}
        took = asyncio.run(wave(None, "peak"))
        first = Counter(tally)
        time.sleep(5)  # let the loop settle; finished streams stay replayable for a while
        memory["after"] = rss_bytes(worker)
        if SECOND_WAVE[chaos.scale]:
            # Once the first wave's streams are reaped, a wave of as many tasks should reuse
            # their memory: what it adds is what a leak would show.
            time.sleep(STREAM_RETENTION_S + 10)
            asyncio.run(wave(lambda: tally["sent"] < 2 * first["sent"], "second peak"))
            time.sleep(5)
            memory["second"] = rss_bytes(worker)
    mb = 1024 * 1024
    growth = (memory["after"] - memory["before"]) / mb
    print(f"[chaos {scenario}] outcomes: {dict(tally)}; first problems: {problems[:5]}")
    done = first["ok"]
    chaos.figure(
        scenario,
        "tasks completed",
        f"{done} in {took:.0f} s ({done / took:.0f} tasks/s, "
        f"{first['tokens'] / took:.0f} tokens/s; "
        f"interactive {first['interactive']}, batch {first['batch']}) by {clients} clients",
        f"{clients} clients x {seconds:g} s",
        done > 0 and first["interactive"] > 0 and first["batch"] > 0,
    )
    chaos.figure(
        scenario,
        "streams with lost or duplicated token indices",
        str(tally["lost or duplicated"]),
        "0",
        tally["lost or duplicated"] == 0,
    )
    chaos.figure(scenario, "HTTP 5xx", str(tally["5xx"]), "0", tally["5xx"] == 0)
    chaos.figure(
        scenario,
        "streams cut without a terminal event, transport errors",
        f"{tally['truncated']}, {tally['transport errors']}",
        "0, 0",
        tally["truncated"] == 0 and tally["transport errors"] == 0,
    )
    errors = {k: v for k, v in tally.items() if k.startswith(("error ", "POST 4"))}
    chaos.figure(scenario, "error events and 4xx", str(errors or 0), "(info)", True)
    chaos.figure(
        scenario,
        "worker memory (RSS)",
        f"{memory['before'] / mb:.0f} MB before, {memory['peak'] / mb:.0f} MB peak, "
        f"{memory['after'] / mb:.0f} MB 5 s after; growth {growth:+.1f} MB",
        f"growth <= {MEMORY_BAR_MB} MB",
        growth <= MEMORY_BAR_MB,
    )
    if "second" in memory:
        again = memory["second"] - memory["after"]
        tasks = tally["sent"] - first["sent"]
        chaos.figure(
            scenario,
            "worker RSS growth over a second wave of as many tasks, after the first was reaped",
            f"{again / mb:+.1f} MB over {tasks} tasks ({again / max(tasks, 1):+.0f} bytes per "
            f"task; {memory['second'] / mb:.0f} MB after it, "
            f"peak {memory['second peak'] / mb:.0f} MB)",
            f"<= {LEAK_BAR_BYTES} bytes per task",
            again / max(tasks, 1) <= LEAK_BAR_BYTES,
        )
    chaos.check(scenario)
