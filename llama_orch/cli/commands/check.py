"""`llorch check`: run the compliance checks against a target and write the reports."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command()
@click.option(
    "--target",
    metavar="URL",
    default=None,
    help="OrchQueue v1 base URL. Default: start the reference with examples/mock.yaml.",
)
@click.option(
    "--api-key-env",
    default="LLORCH_API_KEY",
    show_default=True,
    metavar="VAR",
    help="Environment variable holding the target's API key (never a flag).",
)
@click.option(
    "--profile",
    type=click.Choice(["core", "extended"]),
    default="core",
    show_default=True,
    help="Compliance profile to judge.",
)
@click.option(
    "--report-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("reports"),
    show_default=True,
    help="Where the four reports go.",
)
@click.option("--only", multiple=True, metavar="ID", help="Only these requirement IDs.")
@click.option(
    "--family",
    "families",
    multiple=True,
    metavar="FAMILY",
    help="Only these families (e.g. OC-CTRL).",
)
@click.option(
    "--list",
    "list_only",
    is_flag=True,
    help="List requirements with the checks that prove them, then exit.",
)
@click.option(
    "--partial-exit-code",
    type=click.IntRange(0, 1),
    default=1,
    show_default=True,
    help="Exit code for a partial result.",
)
@click.option("--impl-name", default=None, help="Implementation name for the report.")
@click.option("--impl-version", default=None, help="Implementation version for the report.")
@click.option("--impl-url", default=None, help="Implementation URL for the report.")
@click.option(
    "--determinism-report",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="A `llorch determinism` report to count as evidence (default for the embedded "
    "reference: reports/determinism/determinism.json when present).",
)
@click.option("-q", "--quiet", is_flag=True, help="Less output while running.")
def check(
    target,
    api_key_env,
    profile,
    report_dir,
    only,
    families,
    list_only,
    partial_exit_code,
    impl_name,
    impl_version,
    impl_url,
    determinism_report,
    quiet,
) -> None:
    """Check an orchestrator against the requirements and write compliance reports.

    Without --target the reference orchestrator is started on a free local port with
    examples/mock.yaml and stopped afterwards, even on failure or Ctrl-C. Reports:
    compliance.json, COMPLIANCE.md, junit.xml and index.html in --report-dir.
    Exit codes: 0 success, 1 failure (or partial), 2 the harness could not run.
    """
    from llama_orch.harness.determinism_evidence import DeterminismReportError
    from llama_orch.harness.requirements import RequirementsError
    from llama_orch.harness.runner import CheckOptions, HarnessError, run_check
    from llama_orch.harness.target import TargetError
    from llama_orch.harness.verdicts import VerdictInputError

    if list_only:
        sys.exit(_list(only, families))
    opts = CheckOptions(
        target=target,
        api_key_env=api_key_env,
        profile=profile,
        report_dir=report_dir,
        only=tuple(only),
        families=tuple(families),
        partial_exit_code=partial_exit_code,
        impl_name=impl_name,
        impl_version=impl_version,
        impl_url=impl_url,
        determinism=determinism_report,
        quiet=quiet,
    )
    try:
        run = run_check(opts)
    except (
        HarnessError,
        TargetError,
        RequirementsError,
        VerdictInputError,
        DeterminismReportError,
        OSError,
    ) as exc:
        click.echo(f"error: {exc}", err=True)
        click.echo("no report written: the harness could not run (exit 2)", err=True)
        sys.exit(2)
    click.echo(summary_text(run))
    sys.exit(run.exit_code)


def summary_text(run) -> str:
    """The closing table: verdict counts, result, failures, claims, report paths."""
    lines = ["", "verdict          count", "---------------  -----"]
    lines += [f"{name:<15}  {count:>5}" for name, count in run.summary.items()]
    lines += [f"{'total':<15}  {sum(run.summary.values()):>5}", "", f"result: {run.result}"]
    if run.failed:
        lines.append(f"failed: {', '.join(run.failed)}")
    if run.claimed_not_shown:
        lines.append(f"claimed but not shown: {', '.join(run.claimed_not_shown)}")
    lines.append("reports: " + ", ".join(str(p) for p in run.paths))
    lines.append(f"time: {run.duration_s:.1f} s")
    return "\n".join(lines)


def _list(only, families) -> int:
    """Requirements with the harness checks that name them (collected, not run).

    A scenario with an undefined Gherkin step is marked: it would not run, so it proves nothing.
    """
    import pytest

    from llama_orch.harness.gherkin_lint import undefined_of
    from llama_orch.harness.pytest_plugin import requirement_ids
    from llama_orch.harness.requirements import load_requirements
    from llama_orch.harness.runner import REQUIREMENTS_DIR

    found: dict[str, list[str]] = {}
    undefined: set[str] = set()

    class Collector:
        def pytest_collection_finish(self, session) -> None:
            for item in session.items:
                if undefined_of(item):
                    undefined.add(item.nodeid)
                for rid in requirement_ids(item):
                    found.setdefault(rid, []).append(item.nodeid)

    code = pytest.main(
        [
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            "--collect-only",
            "-p",
            "no:terminal",
            "--pyargs",
            "llama_orch.harness.checks",
        ],
        plugins=[Collector()],
    )
    if code not in (0, 5):
        return 2
    for req in load_requirements(REQUIREMENTS_DIR):
        if only and req.id not in only:
            continue
        if families and not req.id.startswith(tuple(f"{f}-" for f in families)):
            continue
        checks = found.get(req.id, [])
        click.echo(f"{req.id:<20} {req.level:<6} {req.profile:<8} {len(checks)} check(s)")
        for check_id in checks:
            mark = "  [undefined step: will not run]" if check_id in undefined else ""
            click.echo(f"    {check_id}{mark}")
    return 0
