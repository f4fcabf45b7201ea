"""`llorch bench`: load an OrchQueue v1 target and report TTFT, ITL, end-to-end and throughput.

The runner and statistics live in `harness.loadgen`; this module parses options, builds the
targets (the HTTP one, and with `--direct-mock` the reference's mock adapter called without the
orchestrator in between) and prints the report. The reference implementation is imported only
for `--direct-mock`, so the harness package stays independent of it. `--priority-mix` spreads
tasks over the priority classes and adds a per-class block; `--scenario priority-inversion`
runs the ORCH-3051 load test (harness.loadgen.inversion) and prints its verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from llama_orch.cli.commands import bench_engine, bench_modes, bench_sides
from llama_orch.cli.commands.bench_modes import redact as _redact
from llama_orch.harness.loadgen import inversion
from llama_orch.harness.loadgen.client import TaskTemplate
from llama_orch.harness.loadgen.load import LoadPlan
from llama_orch.harness.loadgen.mix import PRIORITIES, PriorityMix
from llama_orch.harness.loadgen.procstat import pids_listening
from llama_orch.harness.loadgen.report import ProgressPrinter, compare, format_table, to_json
from llama_orch.harness.loadgen.rounds import (
    SideResult,
    format_rounds,
    rounds_json,
)
from llama_orch.harness.loadgen.stats import RunSummary

ENGINES = ("llamacpp", "vllm", "tgi", "triton")
_RATE_MODE_CONNECTIONS = 256
_DEFAULT_REQUESTS = 100


def _emit(
    opts: dict[str, Any],
    doc: dict[str, Any],
    text: str,
    runs: list[tuple[RunSummary, str]],
    verdict: inversion.Verdict | None,
) -> None:
    """Write the JSON file, print the report (and a scenario's verdict line), set the exit
    code: 1 when no task succeeded, else the verdict's."""
    if verdict is not None:
        doc["priority_inversion"] = verdict.to_dict()
    if opts["json_path"] is not None:
        opts["json_path"].write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    if opts["fmt"] == "json":
        click.echo(json.dumps(doc, indent=2))
        if verdict is not None:
            click.echo(verdict.line, err=True)
    else:
        click.echo(text, nl=False)
        if verdict is not None:
            click.echo("\n" + verdict.line)
    if all(summary.tasks_ok == 0 for summary, _ in runs):
        raise SystemExit(1)
    if verdict is not None and verdict.exit_code:
        raise SystemExit(verdict.exit_code)


def _report(
    settings: dict[str, Any], results: list[SideResult]
) -> tuple[dict[str, Any], str, list[tuple[RunSummary, str]]]:
    """JSON document, text and the last round's runs. `runs` and `added_latency` describe the
    last round (the only one unless --rounds); `rounds` holds the medians over all rounds."""
    runs = [(r.rounds[-1].summary, r.side.where) for r in results]
    baseline = len(results) - 1 if len(results) > 1 else None
    comparison = compare(runs[0][0], runs[-1][0]) if baseline is not None else None
    doc = to_json(settings, runs, comparison)
    doc["rounds"] = rounds_json(results, baseline)
    blocks = []
    if len(results[0].rounds) == 1:
        blocks.append(format_table(runs, comparison))
    blocks.append(format_rounds(results, baseline))
    return doc, "\n".join(blocks), runs


@click.command("bench")
@click.option("--target", "target_url", metavar="URL", help="Base URL of an OrchQueue v1 server.")
@click.option(
    "--api-key-env",
    default="LLORCH_API_KEY",
    show_default=True,
    metavar="VAR",
    help="Environment variable holding the API key (sent as a Bearer token, never printed).",
)
@click.option("--concurrency", type=click.IntRange(min=1), help="Closed loop: tasks in flight [1].")
@click.option(
    "--rate", type=click.FloatRange(min=0, min_open=True), help="Open loop: task starts per second."
)
@click.option(
    "--arrival",
    type=click.Choice(["poisson", "fixed"]),
    default="poisson",
    show_default=True,
    help="Rate mode: exponential (Poisson) or fixed gaps between starts.",
)
@click.option("--requests", type=click.IntRange(min=1), help=f"Tasks to run [{_DEFAULT_REQUESTS}].")
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds to keep starting tasks.",
)
@click.option("--warmup", type=click.IntRange(min=0), default=0, help="Uncounted tasks run first.")
@click.option("--prompt", default=TaskTemplate.prompt, show_default=True)
@click.option("--max-tokens", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--engine", type=click.Choice(ENGINES), default="llamacpp", show_default=True)
@click.option("--model-ref", default=TaskTemplate.model_ref, show_default=True)
@click.option("--ctx", type=click.IntRange(min=1), default=4096, show_default=True)
@click.option(
    "--priority",
    type=click.Choice(PRIORITIES),
    default="interactive",
    show_default=True,
    help="Priority class of every task.",
)
@bench_modes.mix_option
@click.option("--deadline-ms", type=click.IntRange(min=0), default=60_000, show_default=True)
@click.option(
    "--seed",
    type=int,
    help="Seed sent with every task; also seeds Poisson arrivals and --priority-mix.",
)
@click.option(
    "--sampler-profile", help="sampler_profile_version to send (server default if unset)."
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    help=f"HTTP pool size [the concurrency; {_RATE_MODE_CONNECTIONS} in rate mode; one per "
    "task with --scenario]. Waiting for a free connection counts in a task's latency.",
)
@click.option("--connect-timeout", type=float, default=5.0, show_default=True, help="Seconds.")
@click.option(
    "--read-timeout",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds of silence allowed on a stream (also the wait for a pooled connection).",
)
@click.option(
    "--direct-mock",
    is_flag=True,
    help="Micro-benchmark baseline: the reference's in-process mock adapter, no HTTP engine "
    "(not what a deployment runs); with --target, report the difference.",
)
@click.option(
    "--direct-slots",
    type=click.IntRange(min=1),
    help="Slots of the direct mock adapter [the concurrency; 64 in rate mode].",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the JSON report to this file.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="What to print on stdout.",
)
@bench_modes.engine_options
@bench_modes.scenario_options
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
def bench(**opts: Any) -> None:
    """Load a target with tasks and report latency percentiles, throughput and CPU cost.

    Default (no --target, no --direct-mock): start the engine simulator of --engine (or the
    real llama-server with --real-llamacpp, or use --engine-url) and the reference
    orchestrator in front of it, and measure both side by side: the orchestrator, and the same
    tasks sent to the engine alone, interleaved over --rounds. With --target URL, measure that
    orchestrator; --direct ENGINE_URL adds the engine-alone baseline. --direct-mock is the
    micro-benchmark baseline of the in-process mock adapter.

    Each task is POST /v1/tasks followed by its SSE stream. TTFT runs from sending the POST to
    the first `token` event (engine alone: from the request to the first event with text), ITL
    is the gap between token events, E2E runs to `end`; latency figures cover successful
    tasks. CPU ms/task is the CPU time (user + system, from /proc) the orchestrator's processes
    spent in the measured phase, divided by the tasks that completed. Failures are counted by
    the ErrorEnvelope or SSE `error` code, HTTP_<status> without one, or TRANSPORT_<error>.
    Exits 1 when no task succeeded.

    Per-class queue wait (with --priority-mix or --scenario) runs to the first `metrics`
    event naming a `replica_id`, which the reference sends at dispatch; other targets show
    none.

    --scenario priority-inversion (ORCH-3051): sends --backlog long batch tasks
    (--batch-prompt) at once, then, once all are answered, --probes interactive tasks
    (--prompt) at --probe-rate. Verdict line: "priority inversion: none" (exit 0) when
    interactive p95 TTFT is at most --inversion-ratio x batch p95 TTFT and at most one batch
    decode plus the batch class's --class-weights share of batch p95 TTFT; "INVERSION" (exit
    1) otherwise or when an interactive task failed; "INCONCLUSIVE" (exit 2) when no backlog
    formed or a class had no successful task.
    """
    mix = bench_modes.check_modes(click.get_current_context(), opts)
    if opts["real_llamacpp"]:
        opts["engine"] = "llamacpp"
    managed = opts["target_url"] is None and not opts["direct_mock"] and not opts["direct_url"]
    if opts["scenario"] is not None and opts["target_url"] is None:
        raise click.UsageError(f"--scenario {opts['scenario']} needs --target URL")
    if opts["requests"] is None and opts["duration"] is None:
        opts["requests"] = _DEFAULT_REQUESTS
    if opts["rate"] is None and opts["concurrency"] is None:
        opts["concurrency"] = 1
    if managed:
        with contextlib.ExitStack() as stack:
            try:
                engine = stack.enter_context(_managed_engine(opts))
                ref = stack.enter_context(
                    bench_engine.reference(
                        engine, opts["model_ref"], opts["ctx"], opts["sim_slots"]
                    )
                )
            except RuntimeError as exc:
                raise click.ClickException(str(exc)) from exc
            _run(
                opts,
                mix,
                target_url=ref.url,
                api_key=ref.api_key,
                proxy_pids=ref.pids,
                engine=engine,
            )
        return
    api_key = None
    if opts["target_url"] is not None:
        api_key = os.environ.get(opts["api_key_env"]) or None
        if api_key is None:
            click.echo(
                f"warning: ${opts['api_key_env']} is not set; no Authorization sent", err=True
            )
    proxy_pids: tuple[int, ...] = tuple(opts["proxy_pids"])
    if opts["target_url"] is not None and not proxy_pids:
        proxy_pids = _local_pids(opts["target_url"])
    engine = None
    if opts["direct_url"] is not None:
        engine = bench_engine.external(opts["direct_url"], opts["engine"], opts["direct_model"])
    _run(
        opts,
        mix,
        target_url=opts["target_url"],
        api_key=api_key,
        proxy_pids=proxy_pids,
        engine=engine,
    )


@contextlib.contextmanager
def _managed_engine(opts: dict[str, Any]) -> Iterator[bench_engine.Engine]:
    if opts["engine_url"]:
        yield bench_engine.external(opts["engine_url"], opts["engine"], opts["direct_model"])
    elif opts["real_llamacpp"]:
        with bench_engine.llama_server(tuple(opts["engine_args"])) as engine:
            yield engine
    else:
        with bench_engine.simulator(opts["engine"], opts["sim_slots"]) as engine:
            yield engine


def _local_pids(url: str) -> tuple[int, ...]:
    """The processes listening on a loopback target's port (none for a remote one)."""
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1") or parts.port is None:
        return ()
    return tuple(pids_listening(parts.port))


def _run(
    opts: dict[str, Any],
    mix: PriorityMix | None,
    *,
    target_url: str | None,
    api_key: str | None,
    proxy_pids: tuple[int, ...],
    engine: bench_engine.Engine | None,
) -> None:
    plan = LoadPlan(
        concurrency=opts["concurrency"],
        rate=opts["rate"],
        requests=opts["requests"],
        duration_s=opts["duration"],
        warmup=opts["warmup"],
        arrival=opts["arrival"],
        seed=opts["seed"] or 0,
    )
    template = TaskTemplate(
        prompt=opts["prompt"],
        max_tokens=opts["max_tokens"],
        engine=opts["engine"],
        model_ref=opts["model_ref"],
        ctx=opts["ctx"],
        priority=opts["priority"],
        deadline_ms=opts["deadline_ms"],
        seed=opts["seed"],
        sampler_profile_version=opts["sampler_profile"],
    )
    sized = opts["concurrency"] or 0
    max_connections = opts["max_connections"] or sized or _RATE_MODE_CONNECTIONS
    direct = None
    if opts["direct_mock"]:
        slots = opts["direct_slots"] or sized or 64
        direct = (
            *bench_sides.direct_mock(template, slots),
            f"reference mock adapter, {slots} slots",
        )
    printer = None if opts["quiet"] else ProgressPrinter(sys.stderr)
    interval = 0.5 if printer is not None and printer.tty else 5.0
    timeouts = (opts["connect_timeout"], opts["read_timeout"])
    task = template.body("<per-task>", "<per-task>")
    verdict = None
    if opts["scenario"] is not None:
        scenario, summary, verdict = asyncio.run(
            bench_modes.run_inversion(
                target_url=target_url,
                api_key=api_key,
                template=template,
                opts=opts,
                timeouts=timeouts,
                progress=printer,
                interval=interval,
            )
        )
        runs = [(summary, _redact(target_url))]
        task["priority"] = "<per-class>"
        settings: dict[str, Any] = {
            "mode": "scenario",
            "scenario": scenario.settings(),
            "max_connections": opts["max_connections"] or scenario.tasks,
            "api_key_env": opts["api_key_env"],
            "task": task,
        }
        text = format_table(runs)
        doc = to_json(settings, runs)
    else:
        results = asyncio.run(
            bench_sides.measure(
                target_url=target_url,
                api_key=api_key,
                proxy_pids=proxy_pids,
                direct=direct,
                engine=engine,
                template=template,
                plan=plan,
                rounds=opts["rounds"],
                mix=mix,
                max_connections=max_connections,
                timeouts=timeouts,
                progress=printer,
                interval=interval,
                direct_body=opts["direct_body"],
            )
        )
        settings = {
            "mode": plan.mode,
            "concurrency": plan.concurrency,
            "rate_per_s": plan.rate,
            "arrival": plan.arrival if plan.rate is not None else None,
            "requests": plan.requests,
            "duration_s": plan.duration_s,
            "warmup": plan.warmup,
            "rounds": opts["rounds"],
            "max_connections": max_connections if target_url else None,
            "api_key_env": opts["api_key_env"] if opts["target_url"] else None,
            "load_average": list(os.getloadavg()),
            "task": task,
        }
        if mix is not None:
            task["priority"] = "<per-task>"
            settings["priority_mix"] = {"weights": dict(mix.weights), "seed": mix.seed}
        doc, text, runs = _report(settings, results)
    _emit(opts, doc, text, runs, verdict)
