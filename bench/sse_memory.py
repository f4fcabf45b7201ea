"""Memory cost of many open SSE streams in one server worker (issue 3 target: 2,000 streams,
growth <= 100 MB).

Usage: `.venv/bin/python bench/sse_memory.py --engine vllm --streams 2000` starts the engine
simulator and the reference in front of it (as `llorch bench` does by default); or start a
server yourself and give `--url` and `--pid <worker pid>` (API key in LLORCH_API_KEY). Each task
holds its stream open (slow tokens, or queued); the script reads the worker's RSS from /proc
before and while all streams are open, then cancels every task. `--tree before=/tmp/base`
starts another checkout's server instead (PYTHONPATH for that process only).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llama_orch.harness.loadgen.client import TaskTemplate, iter_sse


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def main(url: str, pid: int, streams: int, key: str, engine: str) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    template = TaskTemplate(
        prompt="[[sim tokens=1000 itl_ms=2000]] hold", max_tokens=1000, engine=engine
    )
    connector = aiohttp.TCPConnector(limit=streams + 10)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    async with aiohttp.ClientSession(
        url, headers=headers, connector=connector, timeout=timeout
    ) as session:
        before = rss_mb(pid)
        ids = [str(uuid.uuid4()) for _ in range(streams)]
        for tid in ids:
            async with session.post("/v1/tasks", json=template.body(tid, str(uuid.uuid4()))) as r:
                assert r.status == 202, await r.text()
        opened = asyncio.Event()
        started = 0

        async def hold(tid: str) -> None:
            nonlocal started
            async with session.get(f"/v1/tasks/{tid}/stream") as resp:
                async for event, _ in iter_sse(resp.content):
                    if event == "started":
                        started += 1
                        if started == streams:
                            opened.set()

        readers = [asyncio.create_task(hold(t)) for t in ids]
        await asyncio.wait_for(opened.wait(), 120)
        await asyncio.sleep(2)
        during = rss_mb(pid)
        print(f"streams open: {started}")
        print(
            f"worker RSS before: {before:.1f} MB, with all streams open: {during:.1f} MB, "
            f"growth {during - before:.1f} MB (target <= 100 MB)"
        )
        for tid in ids:
            async with session.post(f"/v1/tasks/{tid}/cancel") as r:
                assert r.status == 204
        await asyncio.gather(*readers)
        print(f"worker RSS after cancel: {rss_mb(pid):.1f} MB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running server (else one is started)")
    parser.add_argument("--pid", type=int, help="pid of the server worker (with --url)")
    parser.add_argument("--engine", default="vllm", help="engine of the tasks / simulator")
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--tree", metavar="LABEL=PATH", help="start another checkout's server")
    args = parser.parse_args()
    if args.url is not None:
        key = os.environ["LLORCH_API_KEY"]
        asyncio.run(main(args.url, args.pid, args.streams, key, args.engine))
    else:
        from llama_orch.cli.commands import bench_engine

        env = None
        if args.tree:
            env = {"PYTHONPATH": str(Path(args.tree.partition("=")[2]).resolve())}
        os.environ.pop("PYTHONPATH", None)
        with bench_engine.simulator(args.engine, 256) as sim:
            with bench_engine.reference(sim, TaskTemplate.model_ref, 4096, 256, env=env) as ref:
                print(f"reference {ref.url}, worker {ref.worker}, {args.engine} simulator")
                asyncio.run(main(ref.url, ref.worker, args.streams, ref.api_key, args.engine))
