"""`llorch check`: run the compliance checks against a target and write the reports.

Its options are the harness's own (`llama_orch.harness.options.OPTIONS`), so this command and
`pytest -p llorch --pyargs llama_orch.harness.checks` accept the same flags.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from llama_orch.harness.options import OPTIONS, Opt


def _click_option(o: Opt) -> Callable:
    kwargs: dict[str, Any] = {
        "help": o.help,
        "default": o.default,
        "show_default": o.default is not None,
    }
    if o.metavar:
        kwargs["metavar"] = o.metavar
    if o.choices:
        kwargs["type"] = click.Choice(o.choices)
    elif o.type is not str:
        kwargs["type"] = o.type
    if o.multiple:
        kwargs.update(multiple=True, default=(), show_default=False)
    return click.option(o.flag, o.dest, **kwargs)


def _with_harness_options(fn: Callable) -> Callable:
    for o in reversed(OPTIONS):
        fn = _click_option(o)(fn)
    return fn


@click.command(context_settings={"max_content_width": 100})
@_with_harness_options
@click.option(
    "--determinism-report",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="A `llorch determinism` report to count as evidence (default for the embedded "
    "reference: reports/determinism/determinism.json when present).",
)
@click.option(
    "--list", "list_only", is_flag=True, help="List requirements with their checks; run nothing."
)
@click.option("-q", "--quiet", is_flag=True, help="No progress display.")
def check(list_only: bool, quiet: bool, determinism_report: str | None, **values: Any) -> None:
    """Check an orchestrator against the requirements and write compliance reports.

    Without --target the reference orchestrator is started on a free local port with
    examples/mock.yaml and stopped afterwards, even on failure or Ctrl-C. A target is
    described by flags and an optional --target-file (target.yaml); flags win. Keys are read
    from environment variables only. Reports (compliance.json, COMPLIANCE.md, junit.xml,
    index.html) go to --report-dir (default reports/).

    Exit codes: 0 success, 1 failure (or partial), 2 the harness could not run.
    """
    from llama_orch.harness.finish import summary_text
    from llama_orch.harness.options import as_args
    from llama_orch.harness.runner import HarnessError, run_check

    if list_only:
        sys.exit(_list(values["only"], values["family"], values["profile"]))
    if values.get("report_dir") is None:
        values["report_dir"] = "reports"
    if quiet:
        values["progress"] = "none"
    args = as_args(values)
    if determinism_report:
        args += ["--determinism-report", determinism_report]
    try:
        run = run_check(args)
    except HarnessError as exc:
        click.echo(f"error: {exc}", err=True)
        click.echo("no report written: the harness could not run (exit 2)", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("interrupted: no report written (exit 2)", err=True)
        sys.exit(2)
    click.echo(summary_text(run))
    sys.exit(run.exit_code)


def _list(only: tuple[str, ...], families: tuple[str, ...], profile: str) -> int:
    """Requirements with the registered checks that prove them (nothing runs)."""
    from llama_orch.cli.registry import full_registry
    from llama_orch.harness import gherkin_lint
    from llama_orch.harness.requirements import load_requirements
    from llama_orch.harness.verdicts import profile_selects
    from llama_orch.resources import data_path

    registry = full_registry()
    features = data_path("features")
    # A scenario with an undefined step would not run: it proves nothing (marked below).
    undefined = {
        (u.feature, u.scenario) for u in gherkin_lint.lint_features(features, root=features.parent)
    }
    for req in load_requirements(data_path("requirements")):
        if only and req.id not in only:
            continue
        if families and not req.id.startswith(tuple(f"{f}-" for f in families)):
            continue
        if not profile_selects(profile, req.profile):
            continue
        checks = registry.proving(req.id)
        click.echo(
            f"{req.id:<22} {req.level:<6} {req.profile:<8} {req.verify:<9} {len(checks)} check(s)"
        )
        for c in checks:
            extra = []
            if c.features:
                extra.append(f"needs feature {', '.join(c.features)}")
            if c.needs:
                extra.append(f"needs {', '.join(n.value for n in c.needs)}")
            if (c.source.rpartition(":")[0], c.description) in undefined:
                extra.append("undefined step: will not run")
            note = f"  [{'; '.join(extra)}]" if extra else ""
            click.echo(f"    {c.kind.value:<11} {c.id}{note}")
    return 0
