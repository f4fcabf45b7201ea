"""Would a second orchestrator process pay on this machine? (issue 16, item 3)

The ceiling of any multi-process design is N independent orchestrators with no coordination at
all: each its own queue, the tasks split between them by the client. Whatever a real design
adds (a dispatcher process owning the queue, hand-offs between processes) only costs on top.
So this measures that ceiling against one process, side by side in interleaved rounds, in
front of the same engine simulator, with the engine alone as the baseline:

- `engine alone`: the tasks straight to the engine;
- `reference x1`: one `llorch serve` (one worker);
- `reference x2`: two `llorch serve` processes, task n going to process n % 2.

It also reports how busy the whole machine was during each side's measured phase (from
/proc/stat: 100% = every core busy), which says whether there was a free core to use.

    .venv/bin/python bench/multiproc.py --engine vllm --concurrency 32 --requests 1500 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llama_orch.cli.commands import bench_engine
from llama_orch.harness.loadgen.client import OrchQueueTarget, TaskTemplate, make_client
from llama_orch.harness.loadgen.engines import EngineTarget, engine_request, served_model
from llama_orch.harness.loadgen.load import LoadPlan
from llama_orch.harness.loadgen.rounds import Side, format_rounds, run_rounds


class Split:
    """A load target that sends task n to `targets[n % len(targets)]`."""

    def __init__(self, targets: Sequence[Any]) -> None:
        self.targets = list(targets)

    async def run_task(self, task_no: int) -> Any:
        return await self.targets[task_no % len(self.targets)].run_task(task_no)


def busy_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the whole machine since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


class Metered:
    """Wraps a target; accumulates the machine's busy share while its tasks run."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.busy = 0
        self.total = 0
        self._inflight = 0
        self._mark: tuple[int, int] | None = None

    async def run_task(self, task_no: int) -> Any:
        if self._inflight == 0:
            self._mark = busy_jiffies()
        self._inflight += 1
        try:
            return await self.target.run_task(task_no)
        finally:
            self._inflight -= 1
            if self._inflight == 0 and self._mark is not None:
                busy, total = busy_jiffies()
                self.busy += busy - self._mark[0]
                self.total += total - self._mark[1]

    def share(self) -> float | None:
        return None if self.total == 0 else self.busy / self.total


async def _run(args: argparse.Namespace, engine: bench_engine.Engine, refs: list) -> None:
    template = TaskTemplate(prompt=args.prompt, max_tokens=args.max_tokens, engine=args.engine)
    plan = LoadPlan(
        concurrency=args.concurrency, requests=args.requests, warmup=args.warmup, seed=0
    )
    async with contextlib.AsyncExitStack() as stack:

        async def session(url: str, key: str | None):
            client = make_client(url, api_key=key, max_connections=args.concurrency)
            return await stack.enter_async_context(client)

        direct = await session(engine.url, None)
        model = engine.model or await served_model(direct)
        request = engine_request(
            args.engine,
            prompt=template.prompt,
            max_tokens=template.max_tokens,
            seed=None,
            model=model,
        )
        targets = [OrchQueueTarget(await session(r.url, r.api_key), template) for r in refs]
        metered = [
            Metered(EngineTarget(direct, request)),
            Metered(targets[0]),
            Metered(Split(targets)),
        ]
        sides = [
            Side("engine alone", metered[0], engine.url, (), engine.pids),
            Side("reference x1", metered[1], refs[0].url, refs[0].pids, engine.pids),
            Side(
                f"reference x{len(refs)}",
                metered[2],
                refs[0].url,
                tuple(p for r in refs for p in r.pids),
                engine.pids,
            ),
        ]
        started = time.monotonic()
        results = await run_rounds(sides, plan, args.rounds)
    print(format_rounds(results, 0), end="")
    for side, meter in zip(sides, metered, strict=True):
        share = meter.share()
        print(f"machine busy during {side.name}: {share * 100:.0f}%" if share else side.name)
    print(f"wall {time.monotonic() - started:.0f} s; load average {os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engine", default="vllm", choices=bench_engine.PROTOCOLS)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--prompt", default="[[sim tokens=16]] bench")
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        engine = stack.enter_context(bench_engine.simulator(args.engine, 256))
        refs = [
            stack.enter_context(
                bench_engine.reference(engine, TaskTemplate.model_ref, TaskTemplate.ctx, 256)
            )
            for _ in range(args.processes)
        ]
        print(f"cores: {os.cpu_count()}; {args.processes} reference processes")
        asyncio.run(_run(args, engine, refs))


if __name__ == "__main__":
    main()
