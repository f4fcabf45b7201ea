"""`llorch engine-sim`: a controllable stand-in for llama.cpp, vLLM, TGI or Triton."""

from __future__ import annotations

import click

from llama_orch.engine_sim.server import PROTOCOLS


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
def engine_sim(
    protocol: str,
    port: int,
    host: str,
    model: str,
    engine_version: str,
    slots: int,
    ctx: int,
    divergent: str | None,
) -> None:
    """Serve PROTOCOL on HOST:PORT with directive-controlled output.

    A prompt may begin with `[[sim tokens=N itl_ms=N ttft_ms=N hold_ms=N fail_after=N
    overload=true|false|N diverge_at=N]]` (specs/80, section 6); the rest is the prompt.
    Output is a pure function of (prompt, seed, token index).
    """
    import uvicorn

    from llama_orch.engine_sim.engine import SimConfig
    from llama_orch.engine_sim.server import build_app

    config = SimConfig(
        protocol=protocol,
        model=model,
        engine_version=engine_version,
        slots=slots,
        ctx=ctx,
        divergent_salt=divergent,
    )
    app, _engine = build_app(config)
    click.echo(f"engine-sim {protocol} on http://{host}:{port} (model {model})", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", lifespan="off")
