"""`llorch config`: validate config files and generate or check the committed JSON schema."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from llama_orch.reference_impl.config import (
    DEFAULT_SCHEMA_PATH,
    ConfigError,
    load_config,
    schema_diff,
    write_schema,
)
from llama_orch.reference_impl.config.loader import logger as config_logger


@click.group()
def config() -> None:
    """Validate orchestrator configs and keep the config JSON schema current."""


@config.command("schema")
@click.option(
    "--check",
    is_flag=True,
    help="Do not write; exit 1 with a diff when the file differs from a fresh generation.",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_SCHEMA_PATH,
    show_default="contracts/config-schema/config.schema.json",
    help="Schema file to write or check.",
)
def schema(check: bool, output: Path) -> None:
    """Generate the config JSON schema from the config model."""
    if not check:
        click.echo(f"wrote {write_schema(output)}")
        return
    diff = schema_diff(output)
    if not diff:
        click.echo(f"{output} is up to date")
        return
    state = "is missing" if not output.exists() else "is stale"
    click.echo(diff, nl=False)
    click.echo(f"{output} {state}; run `llorch config schema` to regenerate it", err=True)
    raise SystemExit(1)


class _EchoHandler(logging.Handler):
    """Shows the loader's compat-mode warnings (unknown keys) on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"warning: {record.getMessage()}", err=True)


@config.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--mode",
    type=click.Choice(["strict", "compat"]),
    default=None,
    help="Override the files' own `validation` setting (default: the file's, else strict).",
)
def validate(files: tuple[Path, ...], mode: str | None) -> None:
    """Validate config FILES; exit 1 if any is invalid, printing one error per line."""
    handler = _EchoHandler(logging.WARNING)
    config_logger.addHandler(handler)
    failed = False
    try:
        for path in files:
            try:
                loaded = load_config(path, mode=mode)
            except ConfigError as exc:
                failed = True
                for issue in exc.issues:
                    click.echo(issue.format(exc.source), err=True)
                continue
            count = len(loaded.pools)
            click.echo(f"{path}: ok ({count} pool{'s' if count != 1 else ''})")
    finally:
        config_logger.removeHandler(handler)
    if failed:
        raise SystemExit(1)
