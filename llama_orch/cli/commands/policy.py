"""`llorch policy`: scaffold, build and test WebAssembly policy plugins (specs/51)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click


@click.group()
def policy() -> None:
    """Write, build and test policy plugins (SDK 1.x, plugin ABI 1.x)."""


@policy.command("new")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", default=None, help="Plugin id (default: the directory name).")
@click.option(
    "--hook",
    "hooks",
    multiple=True,
    type=click.Choice(["admission", "placement", "session"]),
    help="Hook to implement (repeatable; default admission).",
)
def new(directory: Path, name: str | None, hooks: tuple[str, ...]) -> None:
    """Create DIRECTORY with plugin.zig, example snapshots and a config snippet."""
    from llama_orch.policy_sdk.scaffold import new_plugin

    plugin_name = name or directory.name.replace("_", "-").lower()
    try:
        written = new_plugin(directory, plugin_name, hooks or ("admission",))
    except (ValueError, FileExistsError) as exc:
        raise click.UsageError(str(exc)) from None
    for path in written:
        click.echo(f"wrote {path}")
    click.echo(f"next: llorch policy build {directory / 'plugin.zig'}")


@policy.command("build")
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Output .wasm (one source only; default: next to the source).",
)
def build(sources: tuple[Path, ...], output: Path | None) -> None:
    """Compile plugin sources (.zig) to .wasm with the pinned Zig toolchain (offline)."""
    from llama_orch.policy_sdk.build import BuildError
    from llama_orch.policy_sdk.build import build as build_plugin

    if output is not None and len(sources) != 1:
        raise click.UsageError("--output takes exactly one source")
    for source in sources:
        try:
            result = build_plugin(source, output)
        except BuildError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        click.echo(f"built {result.output} ({result.size} bytes, {result.seconds:.2f} s)")


@policy.command("test")
@click.argument("plugin", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--snapshots",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder of call files (*.json: hook, config, snapshot, optional expect).",
)
@click.option("--fuel", type=click.IntRange(1), default=None, help="Fuel bound per call.")
@click.option("--memory-bytes", type=click.IntRange(65536), default=None, help="Memory bound.")
@click.option("--wall-ms", type=click.IntRange(1), default=None, help="Wall-clock bound (ms).")
@click.option(
    "--grant",
    "grants",
    multiple=True,
    type=click.Choice(["clock", "random", "filesystem", "fetch", "search"]),
    help="Grant a capability (as an operator would in config).",
)
def test(
    plugin: Path,
    snapshots: Path,
    fuel: int | None,
    memory_bytes: int | None,
    wall_ms: int | None,
    grants: tuple[str, ...],
) -> None:
    """Run PLUGIN over the snapshots under the host's limits; check purity and validity."""
    from llama_orch.reference_impl.config.policy import CallLimits
    from llama_orch.reference_impl.policy import AbiError
    from llama_orch.reference_impl.policy.trial import load_module, run_trial

    defaults = CallLimits()
    limits = CallLimits(
        fuel=fuel or defaults.fuel,
        memory_bytes=memory_bytes or defaults.memory_bytes,
        wall_ms=wall_ms or defaults.wall_ms,
    )
    try:
        module = load_module(plugin, limits, set(grants))
    except AbiError as exc:
        click.echo(f"error: {plugin}: refused at load: {exc}", err=True)
        sys.exit(1)
    files = sorted(snapshots.glob("*.json"))
    if not files:
        click.echo(f"error: no *.json call files in {snapshots}", err=True)
        sys.exit(1)
    info = module.info
    click.echo(
        f"{info['id']} {info['version']} (ABI {module.abi_version}); limits: fuel {limits.fuel}, "
        f"memory {limits.memory_bytes} bytes, wall {limits.wall_ms} ms"
    )
    # The table reports every call; the host's own call log would repeat it line by line.
    logger = logging.getLogger("llama_orch.reference_impl.policy")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        rows = run_trial(module, files)
    finally:
        logger.setLevel(level)
    header = ("snapshot", "hook", "outcome", "decision", "pure", "fuel", "ms", "result")
    table = [
        (
            r.file,
            r.hook,
            r.outcome,
            r.decision,
            "-" if r.pure is None else ("yes" if r.pure else "NO"),
            str(r.fuel),
            f"{r.ms:.3f}",
            "ok" if r.ok else "FAIL",
        )
        for r in rows
    ]
    widths = [max(len(c[i]) for c in [header, *table]) for i in range(len(header))]
    for line in [header, *table]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    for r in rows:
        if r.note:
            click.echo(f"  {r.file}: {r.note}")
    failed = sum(not r.ok for r in rows)
    click.echo(f"{len(rows) - failed} ok, {failed} failed")
    sys.exit(1 if failed else 0)
