"""The priority options of `llorch bench`: `--priority-mix` and `--scenario priority-inversion`.

Kept apart from llorch.commands.bench so each module stays readable: this one declares the
options, checks which of them exclude each other, and sizes and runs the ORCH-3051 scenario
(harness.loadgen.inversion holds the scenario and its verdict rules).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import click
from click.core import ParameterSource

from llama_orch.harness.loadgen import inversion
from llama_orch.harness.loadgen.client import TaskTemplate, make_client
from llama_orch.harness.loadgen.load import ProgressFn
from llama_orch.harness.loadgen.mix import PriorityMix, parse_weights
from llama_orch.harness.loadgen.stats import RunSummary, summarize

F = TypeVar("F", bound=Callable[..., Any])
_LOOP_OPTIONS = ("concurrency", "rate", "requests", "duration", "warmup")
_NOT_WITH_SCENARIO = (
    "priority",
    "priority_mix",
    "direct_mock",
    "direct_url",
    "rounds",
    "engine_url",
)
_SCENARIO_OPTIONS = ("backlog", "probes", "probe_rate", "batch_prompt", "class_weights", "ratio")

_MIX_OPTION = click.option(
    "--priority-mix",
    metavar="CLASS=W,...",
    help="Instead of --priority: give each task a class drawn with these weights, e.g. "
    "interactive=0.2,batch=0.8. The draw hashes --seed and the task number, so a rerun gives "
    "every task the same class. Adds per-class counts, TTFT, E2E and queue wait.",
)

_SCENARIO = [
    click.option(
        "--scenario",
        type=click.Choice([inversion.NAME]),
        help="Run a named load test instead of --concurrency/--rate (see above).",
    ),
    click.option(
        "--backlog",
        type=click.IntRange(min=1),
        help="Scenario: batch tasks sent at once [4 x the target's slots_total for --engine].",
    ),
    click.option(
        "--probes",
        type=click.IntRange(min=1),
        default=20,
        show_default=True,
        help="Scenario: interactive tasks sent into the backlog.",
    ),
    click.option(
        "--probe-rate",
        type=click.FloatRange(min=0, min_open=True),
        default=20.0,
        show_default=True,
        help="Scenario: interactive arrivals per second, fixed spacing.",
    ),
    click.option(
        "--batch-prompt",
        default=inversion.DEFAULT_BATCH_PROMPT,
        show_default=True,
        help="Scenario: prompt of the batch tasks (a [[sim]] directive makes them long).",
    ),
    click.option(
        "--class-weights",
        default="interactive=8,batch=1",
        show_default=True,
        metavar="CLASS=W,...",
        help="Scenario: the target's WFQ class weights, for the bound on interactive waiting "
        "(strict precedence meets any bound).",
    ),
    click.option(
        "--inversion-ratio",
        "ratio",
        type=click.FloatRange(min=0, max=1, min_open=True),
        default=0.5,
        show_default=True,
        help="Scenario: interactive p95 TTFT must not exceed this times batch p95 TTFT.",
    ),
]


_ENGINE = [
    click.option(
        "--direct",
        "direct_url",
        metavar="URL",
        help="Engine-alone baseline: run the same tasks straight against the engine at URL "
        "(speaking --engine's protocol; an OpenAI-compatible proxy with --engine vllm), "
        "interleaved with the orchestrator's rounds.",
    ),
    click.option(
        "--direct-model",
        metavar="NAME",
        help="Model name the --direct requests carry [vllm: the first of /v1/models].",
    ),
    click.option(
        "--direct-body",
        metavar="JSON",
        help="A JSON object merged into every engine-alone request body, e.g. the sampler "
        'fields the orchestrator sends (\'{"top_k": 1, "samplers": ["top_k"]}\'), so that '
        "both sides ask the engine for the same work.",
        callback=lambda _ctx, _param, value: json_object(value),
    ),
    click.option(
        "--rounds",
        type=click.IntRange(min=1),
        default=1,
        show_default=True,
        help="Run orchestrator and baseline alternately this many times; the side-by-side "
        "table shows medians over rounds.",
    ),
    click.option(
        "--proxy-pid",
        "proxy_pids",
        type=int,
        multiple=True,
        metavar="PID",
        help="Processes whose CPU time is the orchestrator's [those listening on --target's "
        "port, when local].",
    ),
    click.option(
        "--engine-url",
        metavar="URL",
        help="Default mode (no --target): put the reference in front of the engine at URL "
        "instead of starting a simulator.",
    ),
    click.option(
        "--real-llamacpp",
        is_flag=True,
        help="Default mode: start the real llama-server (`make engine`) with the test model "
        "instead of a simulator (sets --engine llamacpp).",
    ),
    click.option(
        "--engine-arg",
        "engine_args",
        multiple=True,
        metavar="ARG",
        help="Extra llama-server argument for --real-llamacpp (repeatable).",
    ),
    click.option(
        "--sim-slots",
        type=click.IntRange(min=1),
        default=256,
        show_default=True,
        help="Default mode: slots of the simulator it starts.",
    ),
]


def engine_options(f: F) -> F:
    """Decorator adding the engine-baseline, rounds and default-mode options."""
    for option in reversed(_ENGINE):
        f = option(f)
    return f


def mix_option(f: F) -> F:
    """Decorator adding `--priority-mix`."""
    return _MIX_OPTION(f)


def scenario_options(f: F) -> F:
    """Decorator adding `--scenario` and the options that size it."""
    for option in reversed(_SCENARIO):
        f = option(f)
    return f


def redact(url: str) -> str:
    """The URL without any user:password part, for the report."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=netloc))


async def run_inversion(
    *,
    target_url: str,
    api_key: str | None,
    template: TaskTemplate,
    opts: dict[str, Any],
    timeouts: tuple[float, float],
    progress: ProgressFn | None,
    interval: float,
) -> tuple[inversion.Scenario, RunSummary, inversion.Verdict]:
    """Size the scenario (the backlog from the target's slots unless given), run, judge."""

    def client(connections: int) -> Any:
        return make_client(
            target_url,
            api_key=api_key,
            max_connections=connections,
            connect_timeout=timeouts[0],
            read_timeout=timeouts[1],
        )

    backlog = opts["backlog"]
    if backlog is None:
        async with client(1) as probe:
            slots = await inversion.replica_slots(probe, template.engine, template.model_ref)
        if slots is None:
            raise click.UsageError(
                f"{redact(target_url)} did not report slots_total for engine "
                f"{template.engine!r} in GET /v1/replicasets; give --backlog N"
            )
        backlog = inversion.default_backlog(slots)
    try:
        weights = parse_weights(opts["class_weights"], option="--class-weights")
        scenario = inversion.Scenario(
            backlog=backlog,
            probes=opts["probes"],
            probe_rate=opts["probe_rate"],
            batch_prompt=opts["batch_prompt"],
            ratio=opts["ratio"],
            class_weights={"interactive": 8.0, "batch": 1.0, **weights},
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    # One connection per task: a probe must never wait for a pooled connection behind the
    # backlog's open streams, or the client itself would cause the inversion it measures.
    async with client(opts["max_connections"] or scenario.tasks) as session:
        run = await inversion.run_scenario(
            session, template, scenario, progress=progress, progress_interval=interval
        )
    return scenario, summarize(run, per_priority=True), inversion.judge(scenario, run)


def _given(ctx: click.Context, name: str) -> bool:
    """True when the user set option `name` (on the command line or through the env)."""
    source = ctx.get_parameter_source(name)
    return source not in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)


def check_modes(ctx: click.Context, opts: dict[str, Any]) -> PriorityMix | None:
    """Reject option combinations that exclude each other; the parsed --priority-mix."""
    if opts["concurrency"] is not None and opts["rate"] is not None:
        raise click.UsageError("--concurrency and --rate exclude each other")
    if opts["priority_mix"] is not None and _given(ctx, "priority"):
        raise click.UsageError("--priority and --priority-mix exclude each other")
    if opts["scenario"] is None:
        stray = [f"--{n.replace('_', '-')}" for n in _SCENARIO_OPTIONS if _given(ctx, n)]
        if stray:
            raise click.UsageError(f"{', '.join(stray)} only apply with --scenario")
    else:
        clash = [
            f"--{n.replace('_', '-')}"
            for n in (*_LOOP_OPTIONS, *_NOT_WITH_SCENARIO)
            if _given(ctx, n)
        ]
        if clash:
            raise click.UsageError(
                f"--scenario {opts['scenario']} sets its own load and classes; drop "
                + ", ".join(clash)
            )
        if opts["target_url"] is None:
            raise click.UsageError(f"--scenario {opts['scenario']} needs --target URL")
    if opts["direct_url"] is not None and opts["direct_mock"]:
        raise click.UsageError("--direct and --direct-mock exclude each other")
    managed = [n for n in ("engine_url", "real_llamacpp") if opts[n]]
    if managed and (opts["target_url"] is not None or opts["direct_mock"]):
        raise click.UsageError(
            f"--{managed[0].replace('_', '-')} is for the default mode (no --target, "
            "no --direct-mock)"
        )
    if opts["engine_url"] and opts["real_llamacpp"]:
        raise click.UsageError("--engine-url and --real-llamacpp exclude each other")
    if opts["priority_mix"] is None:
        return None
    try:
        return PriorityMix.parse(opts["priority_mix"], seed=opts["seed"] or 0)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


def json_object(text: str | None) -> dict[str, Any] | None:
    """An option's JSON object; a clear usage error when it is not one."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise click.BadParameter("must be a JSON object")
    return value
