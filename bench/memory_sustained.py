"""Worker memory under sustained load through an HTTP engine: is it bounded? (issue 16)

Starts the engine simulator and the reference as `llorch bench` does by default, runs a closed
loop of 16-token tasks (every task a new session, the worst case for the session store) for
`--seconds`, and prints the worker's RSS every `--every` seconds with the tasks done so far.
Finished streams are kept for replay for 120 s and at most MAX_FINISHED_STREAMS of them;
sessions live `ttl_ms` (10 min by default; `--session-ttl-ms` to see the plateau sooner).

    .venv/bin/python bench/memory_sustained.py --seconds 240
    .venv/bin/python bench/memory_sustained.py --seconds 240 --tree before=/tmp/base
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

from llama_orch.cli.commands import bench_engine
from llama_orch.harness.loadgen.client import OrchQueueTarget, TaskTemplate, make_client
from llama_orch.harness.loadgen.load import LoadPlan, run_load
from llama_orch.harness.loadgen.procstat import sample


async def _run(ref: bench_engine.Reference, args: argparse.Namespace) -> None:
    template = TaskTemplate(engine=args.engine)
    worker = ref.worker
    done = 0
    start = time.monotonic()
    print(f"{'t s':>6} {'tasks':>8} {'RSS MB':>8}  (worker {worker})")
    print(f"{0:6.0f} {0:8d} {sample([worker]).rss_bytes / 2**20:8.1f}")
    async with make_client(ref.url, api_key=ref.api_key, max_connections=args.concurrency) as c:
        target = OrchQueueTarget(c, template)
        while time.monotonic() - start < args.seconds:
            plan = LoadPlan(concurrency=args.concurrency, duration_s=args.every)
            run = await run_load(target, plan, name="orchestrator")
            done += sum(1 for r in run.results if r.ok)
            rss = sample([worker]).rss_bytes / 2**20
            print(f"{time.monotonic() - start:6.0f} {done:8d} {rss:8.1f}", flush=True)
    idle = 0
    for step in (30, 30, 75):  # idle: finished streams age out 120 s after they ended
        await asyncio.sleep(step)
        idle += step
        rss = sample([worker]).rss_bytes / 2**20
        print(f"idle +{idle:3d} s          {rss:8.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engine", default="vllm", choices=bench_engine.PROTOCOLS)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=240)
    parser.add_argument("--every", type=float, default=10)
    parser.add_argument("--session-ttl-ms", type=int)
    parser.add_argument("--tree", metavar="LABEL=PATH", help="measure another checkout")
    args = parser.parse_args()
    os.environ.pop("PYTHONPATH", None)
    env = None
    if args.tree:
        env = {"PYTHONPATH": str(Path(args.tree.partition("=")[2]).resolve())}
    extra = f"sessions: {{ttl_ms: {args.session_ttl_ms}}}" if args.session_ttl_ms else ""
    with bench_engine.simulator(args.engine, 256) as engine:
        with bench_engine.reference(
            engine, TaskTemplate.model_ref, 4096, 256, env=env, extra=extra
        ) as ref:
            asyncio.run(_run(ref, args))
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
