"""`llorch engine-sim`: a controllable stand-in for llama.cpp, vLLM, TGI or Triton."""

from __future__ import annotations

from typing import Any

import click

from llama_orch.engine_sim.server import PROTOCOLS

TRITON_METRICS_PORT = 8002  # tritonserver --metrics-port default


@click.command("engine-sim")
@click.option("--protocol", required=True, type=click.Choice(PROTOCOLS), help="Wire protocol.")
@click.option("--port", required=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--model", default="sim/tiny-llama", show_default=True, help="Model name served.")
@click.option("--engine-version", default="sim-1.0", show_default=True, help="Reported version.")
@click.option("--slots", default=4, show_default=True, type=click.IntRange(1), help="Slots.")
@click.option("--ctx", default=4096, show_default=True, type=click.IntRange(1), help="Context.")
@click.option(
    "--divergent",
    metavar="SALT",
    default=None,
    help="Divergent mode: tokens from a directive's diverge_at index on are salted with SALT.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    default=None,
    help=f"triton: port of the metrics server [default: {TRITON_METRICS_PORT}]; the API port "
    "answers /metrics with 404, as Triton's does.",
)
@click.option(
    "--seed-input",
    type=click.Choice(["seed", "random_seed"]),
    default=None,
    help="triton: the ensemble's seed input name (random_seed: tensorrtllm_backend <= v0.19.0) "
    "[default: seed].",
)
@click.option(
    "--not-decoupled",
    is_flag=True,
    help="triton: a model that is not decoupled (stream: true is refused).",
)
@click.option(
    "--text-mode",
    type=click.Choice(["piece", "sentencepiece", "accumulate"]),
    default=None,
    help="triton: how streamed text is detokenized (accumulate: BLS accumulate_tokens) "
    "[default: piece].",
)
@click.option(
    "--status-errors",
    is_flag=True,
    help="tgi: refuse /generate_stream requests with a status (429/422) instead of TGI's "
    "in-band error event.",
)
@click.option(
    "--split-multibyte",
    is_flag=True,
    help='tgi: stream non-ASCII words as a text "" lead byte token plus the rest.',
)
@click.option(
    "--no-null-usage",
    is_flag=True,
    help='vllm: leave the "usage" key out of ordinary chunks instead of "usage": null.',
)
def engine_sim(
    protocol: str,
    port: int,
    host: str,
    model: str,
    engine_version: str,
    slots: int,
    ctx: int,
    divergent: str | None,
    metrics_port: int | None,
    seed_input: str | None,
    not_decoupled: bool,
    text_mode: str | None,
    status_errors: bool,
    split_multibyte: bool,
    no_null_usage: bool,
) -> None:
    """Serve PROTOCOL on HOST:PORT with directive-controlled output.

    A prompt may begin with `[[sim tokens=N itl_ms=N ttft_ms=N hold_ms=N fail_after=N
    overload=true|false|N diverge_at=N]]` (specs/80, section 6); the rest is the prompt.
    Output is a pure function of (prompt, seed, token index). Options named after an engine
    select the version or deployment of that engine to play.
    """
    from llama_orch.engine_sim.engine import SimConfig
    from llama_orch.engine_sim.server import build_servers, serve

    # flag -> (protocol it belongs to, create_app option or None, value when given)
    given: dict[str, tuple[str, str | None, Any]] = {
        "--metrics-port": ("triton", None, metrics_port),
        "--seed-input": ("triton", "seed_input", seed_input),
        "--not-decoupled": ("triton", "decoupled", False if not_decoupled else None),
        "--text-mode": ("triton", "text_mode", text_mode),
        "--status-errors": ("tgi", "inband_errors", False if status_errors else None),
        "--split-multibyte": ("tgi", "split_multibyte", True if split_multibyte else None),
        "--no-null-usage": ("vllm", "null_usage", False if no_null_usage else None),
    }
    options: dict[str, Any] = {}
    for flag, (engine, option, value) in given.items():
        if value is None:
            continue
        if engine != protocol:
            raise click.UsageError(f"{flag} applies to --protocol {engine} only")
        if option is not None:
            options[option] = value
    config = SimConfig(
        protocol=protocol,
        model=model,
        engine_version=engine_version,
        slots=slots,
        ctx=ctx,
        divergent_salt=divergent,
    )
    servers = build_servers(config, **options)
    where = f"engine-sim {protocol} on http://{host}:{port} (model {model})"
    if servers.metrics_app is not None:
        metrics_port = metrics_port or TRITON_METRICS_PORT
        where += f", metrics on http://{host}:{metrics_port}/metrics"
    click.echo(where, err=True)
    serve(servers, host, port, metrics_port)
