"""Side by side in one run: the engine alone, the reference, other trees of it, a peer proxy.

One engine (the protocol simulator of `--engine`) serves every side; each round runs every
side once, in alternating order, and the table shows medians over rounds (harness.loadgen.
rounds), with the proxy processes' CPU per task from /proc. The sides:

- `engine alone`: the same tasks sent straight to the engine (the baseline);
- `reference`: this tree's `llorch serve` in front of the engine;
- `--tree LABEL=PATH`: the reference from another checkout (e.g. the commit before a change,
  `git archive <commit> | tar -x -C /tmp/base`), run with PYTHONPATH=PATH; repeatable;
- `--litellm`: the LiteLLM proxy (one worker) in front of the same engine, installed on first
  use into its own throwaway venv (`--litellm-venv`, under /tmp), never a project dependency.
  Its tasks are OpenAI `/v1/completions` streams (what it serves), so its TTFT is one request
  where the reference's counts `POST /v1/tasks` plus the stream request.

    .venv/bin/python bench/peers/compare.py --engine vllm --concurrency 1 --requests 300 \\
        --warmup 30 --rounds 5 --tree before=/tmp/base --litellm
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from llama_orch.cli.commands import bench_engine
from llama_orch.harness.loadgen.client import OrchQueueTarget, TaskTemplate, make_client
from llama_orch.harness.loadgen.engines import EngineTarget, engine_request, served_model
from llama_orch.harness.loadgen.load import LoadPlan
from llama_orch.harness.loadgen.procstat import pids_listening
from llama_orch.harness.loadgen.rounds import Side, format_rounds, rounds_json, run_rounds

LITELLM_VENV = Path("/tmp/llorch-peer-litellm")
LITELLM_MODEL = "sim"


def litellm_binary(venv: Path) -> Path:
    """The `litellm` command of the throwaway venv, made on first use."""
    binary = venv / "bin" / "litellm"
    if not binary.exists():
        print(f"installing litellm[proxy] into {venv} (once)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "pip"), "install", "--quiet", "litellm[proxy]"]
        subprocess.run(pip, check=True)
    return binary


@contextlib.contextmanager
def litellm_proxy(venv: Path, engine: bench_engine.Engine, model: str):
    """LiteLLM's proxy, one worker, forwarding `/v1/completions` to the engine; yields (url,
    pids, version, master key). Recent releases refuse to start without a master key, so a
    fresh one is made (auth on, as a deployment runs it); it never leaves this process tree."""
    binary = litellm_binary(venv)
    port = bench_engine.free_port()
    master_key = "sk-" + secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="llorch-litellm-") as tmp:
        config = Path(tmp) / "litellm.yaml"
        config.write_text(
            "model_list:\n"
            f"  - model_name: {LITELLM_MODEL}\n"
            "    litellm_params:\n"
            f"      model: text-completion-openai/{model}\n"
            f"      api_base: {engine.url}/v1\n"
            "      api_key: none\n"
            "litellm_settings:\n"
            "  drop_params: true\n",
            encoding="utf-8",
        )
        log = Path(tmp) / "litellm.log"
        argv = [str(binary), "--config", str(config), "--port", str(port), "--num_workers", "1"]
        argv += ["--host", "127.0.0.1"]
        with log.open("w") as out:
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=tmp,
                env=os.environ | {"LITELLM_MASTER_KEY": master_key},
            )
        url = f"http://127.0.0.1:{port}"
        try:
            bench_engine.wait_http(url + "/health/liveliness", proc, "litellm", log)
            version = subprocess.run(
                [
                    str(venv / "bin" / "python"),
                    "-c",
                    "import importlib.metadata as m;print(m.version('litellm'))",
                ],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
            yield url, tuple(pids_listening(port)), version, master_key
        finally:
            bench_engine.stop_process(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engine", default="vllm", choices=bench_engine.PROTOCOLS)
    parser.add_argument("--concurrency", type=int)
    parser.add_argument("--rate", type=float, help="open loop: task starts per second")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--duration", type=float)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--prompt", default="[[sim tokens=16]] bench")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--sim-slots", type=int, default=256)
    parser.add_argument("--tree", action="append", default=[], metavar="LABEL=PATH")
    parser.add_argument("--litellm", action="store_true", help="add the LiteLLM proxy")
    parser.add_argument("--litellm-venv", type=Path, default=LITELLM_VENV)
    parser.add_argument("--no-reference", action="store_true", help="leave this tree out")
    parser.add_argument("--json", type=Path, help="write the JSON report here")
    args = parser.parse_args()
    if args.rate is None and args.concurrency is None:
        args.concurrency = 1
    plan = LoadPlan(
        concurrency=args.concurrency,
        rate=args.rate,
        requests=args.requests if args.duration is None else None,
        duration_s=args.duration,
        warmup=args.warmup,
    )
    template = TaskTemplate(prompt=args.prompt, max_tokens=args.max_tokens, engine=args.engine)
    os.environ.pop("PYTHONPATH", None)  # the trees get theirs one by one
    with contextlib.ExitStack() as stack:
        engine = stack.enter_context(bench_engine.simulator(args.engine, args.sim_slots))
        refs: list[tuple[str, bench_engine.Reference]] = []
        trees = [] if args.no_reference else [("reference", None)]
        for item in args.tree:
            label, _, path = item.partition("=")
            trees.append((f"reference ({label})", {"PYTHONPATH": str(Path(path).resolve())}))
        for name, env in trees:
            ref = bench_engine.reference(engine, template.model_ref, template.ctx, 256, env=env)
            refs.append((name, stack.enter_context(ref)))
        peer = None
        if args.litellm:
            model = httpx.get(f"{engine.url}/v1/models", timeout=5).json()["data"][0]["id"]
            peer = stack.enter_context(litellm_proxy(args.litellm_venv, engine, model))
        results, doc = asyncio.run(_run(args, plan, template, engine, refs, peer))
    doc["load_average"] = list(os.getloadavg())
    doc["settings"] = vars(args) | {"json": str(args.json) if args.json else None}
    doc["settings"]["litellm_venv"] = str(args.litellm_venv)
    print(format_rounds(results, 0), end="")
    if peer is not None:
        print(f"LiteLLM {peer[2]} (one worker)")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json is not None:
        args.json.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


async def _run(args, plan, template, engine, refs, peer):
    max_conn = args.concurrency or 256
    async with contextlib.AsyncExitStack() as stack:

        async def session(url: str, key: str | None):
            return await stack.enter_async_context(
                make_client(url, api_key=key, max_connections=max_conn)
            )

        direct = await session(engine.url, None)
        model = engine.model or await served_model(direct)
        request = engine_request(
            args.engine,
            prompt=template.prompt,
            max_tokens=template.max_tokens,
            seed=None,
            model=model,
        )
        sides = [Side("engine alone", EngineTarget(direct, request), engine.url, (), engine.pids)]
        for name, ref in refs:
            client = await session(ref.url, ref.api_key)
            sides.append(
                Side(name, OrchQueueTarget(client, template), ref.url, ref.pids, engine.pids)
            )
        if peer is not None:
            url, pids, _version, master_key = peer
            client = await session(url, master_key)
            peer_request = engine_request(
                "vllm",
                prompt=template.prompt,
                max_tokens=template.max_tokens,
                seed=None,
                model=LITELLM_MODEL,
            )
            sides.append(
                Side("LiteLLM proxy", EngineTarget(client, peer_request), url, pids, engine.pids)
            )
        started = time.monotonic()
        results = await run_rounds(sides, plan, args.rounds)
        doc = rounds_json(results, 0)
        doc["wall_s"] = round(time.monotonic() - started, 1)
        return results, doc


if __name__ == "__main__":
    main()
