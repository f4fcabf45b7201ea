"""`llorch spec ...`: extract requirements, check links, report traceability."""

from __future__ import annotations

import difflib
import json
import sys
from pathlib import Path

import click

from llama_orch.spec_extract import SpecError, extract, plan_outputs
from llama_orch.spec_extract.extract import DIVERGENCES_FILE, stale_outputs
from llama_orch.spec_extract.links import check_links, markdown_files

_root_option = click.option(
    "--root",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Project root holding specs/, requirements/ and README.md.",
)


@click.group()
def spec() -> None:
    """Work with the normative specs in specs/ and the generated requirements/."""


@spec.command("extract")
@_root_option
@click.option(
    "--check",
    is_flag=True,
    help=(
        "Write nothing; exit 1 with a unified diff if requirements/, the README counts or "
        f"{DIVERGENCES_FILE} are stale."
    ),
)
def extract_cmd(root: Path, check: bool) -> None:
    """Parse specs/*.md and write requirements/<spec-stem>.yaml.

    Also refreshes the generated requirement-count table in README.md and writes the table of
    divergences from upstream (CHANGELOG_SPEC.md). A second run is byte-identical. Exit codes:
    0 up to date (or written), 1 stale (--check), 2 a spec is broken (each problem is printed
    as file:line: reason).
    """
    out_dir = root / "requirements"
    try:
        extraction = extract(root / "specs", root)
    except SpecError as exc:
        for issue in exc.issues:
            click.echo(f"error: {issue}", err=True)
        click.echo(f"{len(exc.issues)} spec error(s); nothing written.", err=True)
        sys.exit(2)
    planned = plan_outputs(extraction, out_dir, root / "README.md", root / DIVERGENCES_FILE)
    stale = stale_outputs(out_dir, planned)
    count = len(extraction.requirements)
    if check:
        diffs = [_diff(path, text, root) for path, text in planned.items()]
        diffs += [f"stale file {p.relative_to(root)} (no spec produces it)\n" for p in stale]
        diffs = [d for d in diffs if d]
        if diffs:
            click.echo("".join(diffs), nl=False)
            click.echo(
                f"requirements are stale: {len(diffs)} file(s) differ; run `llorch spec extract`.",
                err=True,
            )
            sys.exit(1)
        click.echo(f"ok: {count} requirements in {len(planned)} file(s) are up to date.")
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    changed = 0
    for path, text in planned.items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed += 1
    for path in stale:
        path.unlink()
        changed += 1
    click.echo(f"extracted {count} requirements; {changed} file(s) changed.")


def _diff(path: Path, expected: str, root: Path) -> str:
    current = path.read_text(encoding="utf-8") if path.exists() else ""
    if current == expected:
        return ""
    rel = path.relative_to(root).as_posix()
    return "".join(
        difflib.unified_diff(
            current.splitlines(keepends=True),
            expected.splitlines(keepends=True),
            fromfile=f"a/{rel} (committed)",
            tofile=f"b/{rel} (from specs)",
        )
    )


@spec.command("links")
@_root_option
def links_cmd(root: Path) -> None:
    """Check relative links and #anchors in the project's Markdown (no network).

    Exit 1 listing each broken link as file:line: reason.
    """
    files = markdown_files(root.resolve())
    issues = check_links(files, root.resolve())
    for issue in issues:
        click.echo(f"error: {issue}", err=True)
    if issues:
        sys.exit(1)
    click.echo(f"ok: links in {len(files)} Markdown file(s) resolve.")


@spec.command("coverage")
@click.option("--json", "as_json", is_flag=True, help="Print the full mapping as JSON.")
@click.option(
    "--fail-uncovered",
    is_flag=True,
    help="Exit 1 when a requirement has no check (off by default while coverage grows).",
)
@click.option("--verbose", "-v", is_flag=True, help="List every requirement, not only gaps.")
def coverage_cmd(as_json: bool, fail_uncovered: bool, verbose: bool) -> None:
    """List, per requirement, the registered checks that prove it; report uncovered ones.

    Reads the one check registry (Gherkin scenarios, Pact interactions, OpenAPI operations,
    plain checks, determinism cases, the reference's white-box tests) that `llorch check`,
    its verdicts and its reports read too. Exit 1 when a check names an ID that no spec
    defines (or, with --fail-uncovered, when any requirement has no check).
    """
    from llama_orch.cli.registry import full_registry
    from llama_orch.harness.registry import RegistryError
    from llama_orch.harness.requirements import load_requirements
    from llama_orch.resources import data_path

    reqs = load_requirements(data_path("requirements"))
    try:
        registry = full_registry()
    except RegistryError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    checks = {r.id: registry.proving(r.id) for r in reqs}
    if as_json:
        payload = {rid: [f"{c.kind.value}:{c.id}" for c in cs] for rid, cs in checks.items()}
        click.echo(json.dumps({"requirements": payload}, indent=2))
    else:
        _print_coverage(reqs, checks, verbose)
    if fail_uncovered and any(not cs for cs in checks.values()):
        sys.exit(1)


def _print_coverage(reqs, checks, verbose: bool) -> None:
    by_family: dict[str, list[int]] = {}
    for req in reqs:
        family = req.id.rpartition("-")[0]
        tally = by_family.setdefault(family, [0, 0])
        tally[0] += 1
        tally[1] += bool(checks[req.id])
        if verbose or not checks[req.id]:
            kinds = sorted({c.kind.value for c in checks[req.id]})
            names = f"{len(checks[req.id])} ({', '.join(kinds)})" if kinds else "UNCOVERED"
            click.echo(f"{req.id:<22} {req.level:<6} {req.verify:<9} {req.profile:<8} {names}")
    click.echo("")
    click.echo(f"{'family':<16} {'covered':>8} {'total':>6}")
    for family, (total, covered) in by_family.items():
        click.echo(f"{family:<16} {covered:>8} {total:>6}")
    covered_all = sum(c for _, c in by_family.values())
    click.echo(f"{'all':<16} {covered_all:>8} {len(reqs):>6}")
    click.echo(f"{len(reqs) - covered_all} requirement(s) have no check yet.")
