"""Entry point of the `llorch` console script.

Subcommands live in `llorch.commands.<name>` and are imported only when they run, so that
`llorch spec extract` does not pay for importing the orchestrator or the harness.
"""

from __future__ import annotations

import importlib

import click

# name -> (module, attribute, one-line help shown in `llorch --help`)
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "spec": (
        "llama_orch.cli.commands.spec",
        "spec",
        "Extract requirements from specs/ and trace them.",
    ),
    "check": (
        "llama_orch.cli.commands.check",
        "check",
        "Check an orchestrator; write compliance reports.",
    ),
    "config": (
        "llama_orch.cli.commands.config",
        "config",
        "Validate configs; generate the JSON schema.",
    ),
    "serve": (
        "llama_orch.cli.commands.serve",
        "serve",
        "Run the reference orchestrator (gunicorn).",
    ),
    "bench": ("llama_orch.cli.commands.bench", "bench", "Load-test an OrchQueue v1 target."),
    "determinism": (
        "llama_orch.cli.commands.determinism",
        "determinism",
        "Compare token streams of two replicas over a seeded corpus.",
    ),
    "policy": (
        "llama_orch.cli.commands.policy",
        "policy",
        "Scaffold, build and test WebAssembly policy plugins.",
    ),
    "engine-sim": (
        "llama_orch.cli.commands.engine_sim",
        "engine_sim",
        "Serve a controllable llama.cpp/vLLM/TGI/Triton simulator.",
    ),
}


class _LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = _COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module = importlib.import_module(entry[0])
        return getattr(module, entry[1])

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, _COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="llama-orch", prog_name="llorch")
def main() -> None:
    """llama-orch: a compliance harness for LLM-inference orchestrators, and its reference.

    Specs in specs/ state requirements with stable IDs; `llorch spec extract` turns them into
    requirements/*.yaml, which drive the checks.
    """
