"""Profile the reference's serving worker under load through an HTTP engine (py-spy).

Starts the engine simulator and the reference the way `llorch bench` does by default, loads it
at a fixed concurrency, samples the busiest serving process with `py-spy record` meanwhile,
and prints the top frames by own time (where the CPU goes) and by total time (which call
paths hold it). py-spy is a profiling tool, not a project dependency: install it into the
venv for this (`.venv/bin/pip install py-spy`).

    .venv/bin/python bench/profile_hot_path.py --engine vllm --concurrency 64 --seconds 15
    .venv/bin/python bench/profile_hot_path.py ... --tree /tmp/base   # an older tree

With `--tree`, only the reference process runs that checkout (PYTHONPATH for it alone).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from llama_orch.cli.commands import bench_engine
from llama_orch.harness.loadgen.client import OrchQueueTarget, TaskTemplate, make_client
from llama_orch.harness.loadgen.load import LoadPlan, run_load
from llama_orch.harness.loadgen.procstat import sample


def top_frames(raw: Path, n: int) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """(own-time top n, total-time top n) as (frame, share of samples) from py-spy's raw
    (collapsed stacks) output."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        k = int(count)
        frames = [f for f in stack.split(";") if f]
        samples += k
        if frames:
            own[_short(frames[-1])] += k
        for f in {_short(f) for f in frames}:
            total[f] += k
    samples = max(samples, 1)
    # Frames on (nearly) every stack are the process's start-up chain (gunicorn, click,
    # asyncio.run): left out of the total-time list.
    inner = [(f, c) for f, c in total.most_common() if c < 0.85 * samples]
    return (
        [(f, c / samples) for f, c in own.most_common(n)],
        [(f, c / samples) for f, c in inner[:n]],
    )


def _worker(pids: tuple[int, ...]) -> int:
    """The serving worker: the process whose parent (gunicorn's arbiter) is among `pids`."""
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        if int(stat[1]) in pids:
            return pid
    return max(pids, key=lambda p: sample([p]).cpu_s)


def _short(frame: str) -> str:
    """`func (path/to/module.py:123)` -> `func (module.py)`: lines differ between trees."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    parts = where.split("/")
    tail = "/".join(parts[-2:]) if len(parts) > 1 else where
    return f"{name} ({tail})"


async def _load(url: str, key: str, args: argparse.Namespace, seconds: float) -> int:
    template = TaskTemplate(prompt=args.prompt, max_tokens=16, engine=args.engine)
    concurrency = args.concurrency
    async with make_client(url, api_key=key, max_connections=concurrency) as client:
        target = OrchQueueTarget(client, template)
        plan = LoadPlan(concurrency=concurrency, duration_s=seconds)
        run = await run_load(target, plan, name="orchestrator")
    return sum(1 for r in run.results if r.ok)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engine", default="vllm", choices=bench_engine.PROTOCOLS)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--prompt", default="[[sim tokens=16]] bench")
    parser.add_argument("--raw", type=Path, help="keep py-spy's collapsed stacks here")
    parser.add_argument("--tree", type=Path, help="profile another checkout's reference")
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        sys.exit("py-spy is missing: .venv/bin/pip install py-spy")
    extra = {"PYTHONPATH": str(args.tree.resolve())} if args.tree else None
    os.environ.pop("PYTHONPATH", None)
    raw = args.raw or Path(tempfile.mkstemp(suffix=".txt", prefix="pyspy-")[1])
    with bench_engine.simulator(args.engine, 256) as engine:
        with bench_engine.reference(engine, "repo:mock/tiny-llama", 4096, 256, env=extra) as ref:
            # warm up, then profile the busiest serving process
            asyncio.run(_load(ref.url, ref.api_key, args, 2.0))
            worker = _worker(ref.pids)
            spy_proc = subprocess.Popen(
                [
                    *(spy, "record", "-p", str(worker), "-d", str(int(args.seconds))),
                    *("-r", str(args.rate), "-f", "raw", "-o", str(raw), "--nonblocking"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            before = sample([worker]).cpu_s
            done = asyncio.run(_load(ref.url, ref.api_key, args, args.seconds))
            cpu = sample([worker]).cpu_s - before
            _, err = spy_proc.communicate(timeout=60)
            if spy_proc.returncode != 0:
                sys.exit(f"py-spy failed: {err.decode(errors='replace')[-500:]}")
    own, total = top_frames(raw, args.top)
    print(f"worker {worker}: {done} tasks in {args.seconds:g} s, {cpu * 1000 / max(done, 1):.2f}")
    print(f"CPU ms/task (load average {os.getloadavg()[0]:.2f}); samples in {raw}")
    print("\ntop frames by own time:")
    for frame, share in own:
        print(f"  {share * 100:5.1f}%  {frame}")
    print("\ntop frames by total time:")
    for frame, share in total:
        print(f"  {share * 100:5.1f}%  {frame}")


if __name__ == "__main__":
    main()
