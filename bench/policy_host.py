"""Benchmark of the policy host (specs/50): added admission latency, runaway plugins.

Two parts:

`calls`   (in process) the latency of one plugin call for each example plugin, the latency
          `Scheduler.admit` gains with the plugins of examples/mock.yaml loaded, and how long
          the host takes to abort a runaway call (endless loop, memory bomb) at its bounds;
`serve`   (over HTTP) a reference server with the probe plugin loaded
          (bench/mock-bench-policy.yaml): ordinary tasks stream at a steady rate while a
          second client fires runaway admissions (probe triggers 333 and 334); the ordinary
          tasks' TTFT is compared with a quiet baseline.

Run: .venv/bin/python bench/policy_host.py calls
     LLORCH_API_KEY=k .venv/bin/llorch serve --config bench/mock-bench-policy.yaml --port 18081
     LLORCH_API_KEY=k .venv/bin/python bench/policy_host.py serve --target http://127.0.0.1:18081
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llama_orch.policy_sdk.scaffold import example_snapshot  # noqa: E402
from llama_orch.reference_impl.config.policy import PolicyConfig  # noqa: E402
from llama_orch.reference_impl.core import testing as ct  # noqa: E402
from llama_orch.reference_impl.policy import PolicyHost  # noqa: E402

PLUGINS = ROOT / "examples" / "policies"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(label: str, seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    p50, p99 = pct(ms, 0.5), pct(ms, 0.99)
    return f"{label:<44} p50 {p50:7.3f} ms  p99 {p99:7.3f} ms  max {max(ms):7.3f} ms"


def host(entries: list[dict], limits: dict | None = None) -> PolicyHost:
    config = {"plugins": entries, **({"limits": limits} if limits else {})}
    return PolicyHost.from_config(PolicyConfig.model_validate(config))


def time_calls(fn, n: int) -> list[float]:
    out = []
    gc.disable()
    try:
        for _ in range(n):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    finally:
        gc.enable()
    return out


def admit_latency(hooks, n: int) -> list[float]:
    """`Scheduler.admit` of `n` tasks (spread over 8 tenants), timed one by one."""
    sched = ct.scheduler(pools=[ct.pool(capacity=n + 10)], slots={"p:r0": 4, "p:r1": 4})
    sched._hooks = hooks  # the same scheduler, with or without plugins
    tasks = [ct.task(tenant=f"tenant-{i % 8}") for i in range(n)]
    it = iter(range(n))
    return time_calls(lambda: sched.admit(tasks[next(it)], 0), n)


def calls(n: int) -> None:
    logging.disable(logging.CRITICAL)  # every call logs; the bench measures the host itself
    budget = {"path": str(PLUGINS / "admission_budget" / "plugin.wasm"), "hooks": ["admission"]}
    budget["config"] = {"budgets": {"tenant-a": 4096}}
    placement = {"path": str(PLUGINS / "placement_label" / "plugin.wasm"), "hooks": ["placement"]}
    placement["config"] = {"label": "tier", "value": "fast"}
    probe = {"path": str(PLUGINS / "llorch_probe" / "plugin.wasm"), "hooks": ["admission"]}
    h = host([budget, placement, probe])
    adm, plc = example_snapshot("admission"), example_snapshot("placement")
    by_id = {p.id: p for p in h.plugins}
    print(f"plugin calls, {n} each (fresh instance, JSON in, validated decision out):")
    for pid, hook, snap in (
        ("admission-budget", "admission", adm),
        ("placement-label", "placement", plc),
        ("llorch-probe", "admission", adm),
    ):
        plugin = by_id[pid]
        fuel = h.decide(plugin, hook, snap).fuel
        print(
            summary(
                f"  {pid} ({hook}, {fuel} fuel)",
                time_calls(lambda p=plugin, k=hook, s=snap: h.decide(p, k, s), n),
            )
        )

    print("\nScheduler.admit, pure core, with and without the mock.yaml admission plugins:")
    base = admit_latency(None, n)
    with_plugins = admit_latency(host([budget, probe]), n)
    print(summary("  no policy host", base))
    print(summary("  admission-budget + llorch-probe", with_plugins))
    added = [b - a for a, b in zip(sorted(base), sorted(with_plugins), strict=True)]
    print(summary("  added per admission (2 plugin calls)", added))

    print("\nrunaway calls, default bounds (fuel 20,000,000, memory 16 MiB, wall 100 ms):")
    rh = host([probe])
    for trigger, what in ((333, "endless loop"), (334, "memory bomb")):
        snap = {**adm, "task": {**adm["task"], "max_tokens": trigger}}
        out: list = []
        seconds = time_calls(
            lambda s=snap, out=out: out.append(rh.decide(rh.plugins[0], "admission", s)), 20
        )
        outcomes = {r.outcome.value for r in out}
        print(summary(f"  {what} -> {','.join(sorted(outcomes))}", seconds))
    wall = host([probe], {"fuel": 10**15, "memory_bytes": 16 << 20, "wall_ms": 100})
    snap = {**adm, "task": {**adm["task"], "max_tokens": 333}}
    records = []
    seconds = time_calls(
        lambda: records.append(wall.decide(wall.plugins[0], "admission", snap)), 10
    )
    print(summary(f"  endless loop, fuel unbounded -> {records[0].outcome.value}", seconds))


async def _stream_task(client, target: str, body: dict) -> float | None:
    """Submit and read the stream; seconds from submit to the first token (None on failure)."""
    started = time.perf_counter()
    resp = await client.post(f"{target}/v1/tasks", json=body)
    if resp.status_code != 202:
        return None
    first = None
    async with client.stream("GET", f"{target}/v1/tasks/{body['task_id']}/stream") as s:
        async for line in s.aiter_lines():
            if line.startswith("event: token") and first is None:
                first = time.perf_counter() - started
            if line.startswith("event: end") or line.startswith("event: error"):
                break
    return first


def _body(prompt: str, max_tokens: int = 64) -> dict:
    return {
        "task_id": str(uuid.uuid4()),
        "session_id": str(uuid.uuid4()),
        "workload": "completion",
        "model_ref": "repo:mock/tiny-llama",
        "engine": "llamacpp",
        "ctx": 4096,
        "priority": "interactive",
        "max_tokens": max_tokens,
        "deadline_ms": 0,
        "prompt": prompt,
    }


async def _serve(target: str, seconds: float, rate: float, runaway: bool) -> dict:
    import httpx

    headers = {"Authorization": f"Bearer {os.environ['LLORCH_API_KEY']}"}
    async with httpx.AsyncClient(headers=headers, timeout=30) as client:
        ordinary: list[asyncio.Task] = []
        runaway_admits: list[float] = []
        stop = time.perf_counter() + seconds

        async def runaways() -> None:
            i = 0
            while time.perf_counter() < stop:
                trigger = 333 if i % 2 == 0 else 334
                t = time.perf_counter()
                resp = await client.post(
                    f"{target}/v1/tasks", json=_body("[[sim tokens=1]] r", trigger)
                )
                runaway_admits.append(time.perf_counter() - t)
                assert resp.status_code == 202, resp.text
                i += 1

        bg = asyncio.create_task(runaways()) if runaway else None
        while time.perf_counter() < stop:
            ordinary.append(
                asyncio.create_task(_stream_task(client, target, _body("[[sim tokens=8]] o")))
            )
            await asyncio.sleep(1 / rate)
        ttft = [x for x in await asyncio.gather(*ordinary) if x is not None]
        if bg is not None:
            await bg
    return {
        "ordinary": len(ordinary),
        "ok": len(ttft),
        "ttft": ttft,
        "runaway_admits": runaway_admits,
    }


def serve(target: str, seconds: float, rate: float) -> None:
    for runaway in (False, True):
        r = asyncio.run(_serve(target, seconds, rate, runaway))
        label = "with runaway admissions" if runaway else "quiet baseline"
        print(f"{label}: {r['ok']} of {r['ordinary']} ordinary tasks streamed to the end")
        print(summary("  ordinary TTFT", r["ttft"]))
        if runaway:
            print(
                summary(
                    f"  runaway admissions ({len(r['runaway_admits'])}, answered 202)",
                    r["runaway_admits"],
                )
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("calls")
    c.add_argument("-n", type=int, default=2000)
    s = sub.add_parser("serve")
    s.add_argument("--target", required=True)
    s.add_argument("--seconds", type=float, default=10.0)
    s.add_argument("--rate", type=float, default=20.0, help="ordinary tasks per second")
    args = parser.parse_args()
    if args.mode == "calls":
        calls(args.n)
    else:
        serve(args.target, args.seconds, args.rate)


if __name__ == "__main__":
    main()
