"""`llorch determinism`: replay the determinism corpus on two replicas and compare token ids.

Direct mode only: the suite talks to two engine replicas through the reference adapters. The
black-box mode through the orchestrator with replica pinning is future work.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import click

ENGINES = ("llamacpp", "vllm", "tgi", "triton")


def make_adapter(
    engine: str, replica_id: str, url: str, *, model_ref: str, ctx: int, model_name: str
) -> Any:
    """The reference adapter for one replica, with the engine's determinism settings."""
    from determinism_suite.runner import load_settings

    settings = load_settings(engine)
    if engine == "llamacpp":
        from reference_impl.adapters.llamacpp import LlamaCppAdapter

        cache = bool((settings.get("request") or {}).get("cache_prompt", False))
        return LlamaCppAdapter(
            replica_id, url, model_ref=model_ref, ctx_max=ctx, cache_prompt=cache
        )
    if engine == "vllm":
        from reference_impl.adapters.vllm import VllmAdapter

        return VllmAdapter(replica_id, url, model_ref=model_ref, ctx_max=ctx)
    if engine == "tgi":
        from reference_impl.adapters.tgi import TgiAdapter

        return TgiAdapter(replica_id, url, model_ref=model_ref, ctx_max=ctx)
    from reference_impl.adapters.triton import TritonAdapter

    return TritonAdapter(replica_id, url, model_ref=model_ref, ctx_max=ctx, model_name=model_name)


async def _run(
    engine: str, urls: tuple[str, ...], report_dir: Path, opts: dict[str, Any]
) -> dict[str, Any]:
    from determinism_suite.corpus import load_corpus
    from determinism_suite.report import write_reports
    from determinism_suite.runner import Replica, run_direct

    corpus = load_corpus(opts["corpus"]) if opts["corpus"] else load_corpus()
    profile = opts["sampler_profile_version"] or corpus.sampler_profile_version
    adapters = [
        make_adapter(
            engine,
            f"{engine}-{i}",
            url,
            model_ref=opts["model_ref"],
            ctx=opts["ctx"],
            model_name=opts["model_name"],
        )
        for i, url in enumerate(urls)
    ]
    try:
        run = await run_direct(
            corpus,
            Replica(adapters[0], profile),
            Replica(adapters[1], profile),
            engine=engine,
            order_seed=opts["order_seed"],
        )
    finally:
        for adapter in adapters:
            await adapter.close()
    return write_reports(run, report_dir)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--engine-url",
    "urls",
    multiple=True,
    required=True,
    help="Base URL of one replica; give exactly two, of one replica set.",
)
@click.option("--engine", type=click.Choice(ENGINES), default="llamacpp", show_default=True)
@click.option(
    "--report-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("reports"),
    show_default=True,
)
@click.option("--model-ref", default="determinism-model", show_default=True)
@click.option("--model-name", default="model", show_default=True, help="Triton model name.")
@click.option("--ctx", type=int, default=2048, show_default=True)
@click.option("--corpus", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--sampler-profile-version", default=None, help="Default: the corpus's own.")
@click.option("--order-seed", type=int, default=None, help="Fix the shuffled request order.")
def determinism(urls: tuple[str, ...], engine: str, report_dir: Path, **opts: Any) -> None:
    """Replay the determinism corpus on two replicas and compare their token ids.

    Direct mode only: both replicas are called through the reference adapters with the
    engine's determinism settings (determinism_suite/settings/). The mode that goes through
    an orchestrator with replica pinning is future work. Writes determinism.json and
    determinism.md; exits 1 when any case is not equal, 2 when the replicas are not one
    replica set.
    """
    from determinism_suite.runner import ReplicaSetMismatch

    if len(urls) != 2:
        raise click.UsageError("give --engine-url exactly twice")
    try:
        report = asyncio.run(_run(engine, urls, report_dir, opts))
    except ReplicaSetMismatch as exc:
        click.echo(f"refused: {exc}", err=True)
        sys.exit(2)
    s = report["summary"]
    click.echo(
        f"{s['equal']}/{report['corpus']['cases']} equal, {s['diverged']} diverged, "
        f"{s['unverified']} unverified; {report['bound']['statement']}"
    )
    click.echo(f"reports: {report_dir / 'determinism.json'}, {report_dir / 'determinism.md'}")
    sys.exit(0 if s["passed"] else 1)
