"""`llorch determinism`: replay the determinism corpus on two replicas and compare token ids.

Two modes. Pinned (black-box, the default): through an orchestrator, each task pinned to one
replica of a replica set with `placement.replica_id`; with no `--target` the reference
orchestrator is started with `examples/determinism-llamacpp.yaml` (two real llama-server
replicas) and stopped afterwards. Direct (`--engine-url` twice): straight to two engine
replicas through the reference adapters, which also gives the logprob margin at a split.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import click

from llama_orch.resources import data_path

ENGINES = ("llamacpp", "vllm", "tgi", "triton")
DEFAULT_CONFIG = data_path("examples", "determinism-llamacpp.yaml")
ROOT = DEFAULT_CONFIG.parent.parent


async def _direct(engine: str, urls: tuple[str, ...], corpus: Any, opts: dict[str, Any]):
    from llama_orch.determinism_suite.direct import Replica, engine_adapter, run_direct

    profile = opts["sampler_profile_version"] or corpus.sampler_profile_version
    adapters = [
        engine_adapter(
            engine,
            f"{engine}-{i}",
            url,
            model_ref=opts["model_ref"],
            ctx=corpus.ctx_budget,
            model_name=opts["model_name"],
        )
        for i, url in enumerate(urls)
    ]
    try:
        return await run_direct(
            corpus,
            Replica(adapters[0], profile),
            Replica(adapters[1], profile),
            engine=engine,
            order_seed=opts["order_seed"],
            max_in_flight=opts["max_in_flight"],
            progress=_Progress(2 * len(corpus), opts["quiet"]),
        )
    finally:
        for adapter in adapters:
            await adapter.close()


def _pinned(url: str | None, corpus: Any, opts: dict[str, Any]):
    from llama_orch.determinism_suite.pinned import run_pinned
    from llama_orch.harness.client import OrchClient
    from llama_orch.harness.description import load_description, validate
    from llama_orch.harness.target import open_target, reference_description
    from llama_orch.harness.timeouts import DEFAULT as BOUNDS

    config = opts["config"] or DEFAULT_CONFIG
    if opts.get("target_file"):
        desc = load_description(Path(opts["target_file"]))
        desc = desc.merged({"url": url, "auth": {"key_env": opts["api_key_env"]}})
    elif url:
        desc = validate({"url": url, "auth": {"key_env": opts["api_key_env"]}}, "--target")
    else:
        desc = reference_description()
    # A real engine's first token can take seconds (long prompts, a queue on two slots).
    bounds = BOUNDS.with_overrides({"request_s": 60, "stream_gap_s": 180})
    with open_target(desc, config) as target:
        engine = opts["engine"]

        def client() -> OrchClient:
            return OrchClient(target.url, target.api_key, auth=desc.auth, timeouts=bounds)

        if not opts["quiet"]:
            where = "embedded reference" if target.embedded else target.url
            click.echo(f"determinism: {len(corpus)} cases x 2 replicas via {where}", err=True)
        return asyncio.run(
            run_pinned(
                corpus,
                client,
                target=target.url if not target.embedded else f"embedded:{_rel(config)}",
                replica_set=opts["replica_set"],
                engine=engine,
                order_seed=opts["order_seed"],
                fact=target.fact,
                max_in_flight=opts["max_in_flight"],
                ready_wait_s=opts["ready_wait"],
                progress=_Progress(2 * len(corpus), opts["quiet"]),
            )
        )


class _Progress:
    """One stderr line each time another tenth of the requests has finished."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.total, self.done, self.quiet, self.step = total, 0, quiet, max(1, total // 10)

    def __call__(self, _case_id: str) -> None:
        self.done += 1
        if not self.quiet and (self.done % self.step == 0 or self.done == self.total):
            click.echo(f"[determinism] {self.done}/{self.total} requests", err=True)


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--target", default=None, help="OrchQueue v1 base URL (pinned mode).")
@click.option(
    "--target-file",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="target.yaml describing the target (auth scheme, facts such as model_ref).",
)
@click.option(
    "--engine-url",
    "urls",
    multiple=True,
    help="Direct mode: base URL of one engine replica; give exactly two, of one replica set.",
)
@click.option(
    "--engine",
    type=click.Choice(ENGINES),
    default=None,
    help="Engine of the replicas (direct mode default: llamacpp; pinned: the set's engine).",
)
@click.option(
    "--api-key-env",
    default="LLORCH_API_KEY",
    show_default=True,
    help="Env var holding the target's API key (pinned mode with --target).",
)
@click.option(
    "--config",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Config of the embedded reference (default examples/determinism-llamacpp.yaml).",
)
@click.option("--replica-set", default=None, help="Replica set id (default: the first usable).")
@click.option(
    "--report-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("reports/determinism"),
    show_default=True,
)
@click.option(
    "--model-ref",
    default="determinism-model",
    show_default=True,
    help="Direct mode: the model name the adapters report (digest source where none).",
)
@click.option("--model-name", default="model", show_default=True, help="Triton model name.")
@click.option(
    "--corpus",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Another corpus file (default: determinism_suite/corpus.yaml).",
)
@click.option(
    "--small-corpus-ok",
    is_flag=True,
    help="Accept a --corpus under 64 cases (negative controls); it proves no requirement.",
)
@click.option(
    "--sampler-profile-version",
    default=None,
    help="Direct mode: the replicas' profile table version (default: the corpus's own).",
)
@click.option("--order-seed", type=int, default=None, help="Fix the shuffled request order.")
@click.option(
    "--max-in-flight",
    type=click.IntRange(1, 64),
    default=None,
    help="Upper bound of requests in flight per replica; each side draws its level from "
    "1..N (default: the engine's max_in_flight_per_replica, 1).",
)
@click.option(
    "--ready-wait",
    type=float,
    default=240.0,
    show_default=True,
    help="Seconds to wait for two ready replicas (engines load their model first).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress line.")
def determinism(urls: tuple[str, ...], target: str | None, report_dir: Path, **opts: Any) -> None:
    """Replay the determinism corpus on two replicas and compare their token ids.

    \b
    Pinned mode (default, black-box): through an orchestrator; every case runs on two
      replicas of one replica set, each task pinned with placement.replica_id. Without
      --target the reference orchestrator is started from --config (two real llama-server
      replicas; needs `make engine`) and stopped afterwards.
    Direct mode (--engine-url A --engine-url B): straight to two engines through the
      reference adapters with the engine's determinism settings; a divergent case is
      replayed once with top logprobs to report the margin at the split.

    Writes determinism.json and determinism.md (feed the JSON to `llorch check
    --determinism-report`); exits 0 when every case is equal, 1 when any is not, 2 when
    the replicas are not one replica set or the suite cannot run.
    """
    from llama_orch.determinism_suite.corpus import MIN_CASES, CorpusError, load_corpus
    from llama_orch.determinism_suite.report import write_determinism_reports
    from llama_orch.determinism_suite.runner import ReplicaSetMismatch, SuiteError
    from llama_orch.harness.description import TargetDescriptionError
    from llama_orch.harness.target import TargetError

    if urls and target:
        raise click.UsageError("give either --target (pinned mode) or --engine-url (direct)")
    if urls and len(urls) != 2:
        raise click.UsageError("give --engine-url exactly twice")
    for stale in ("determinism.json", "determinism.md"):  # never leave an old verdict behind
        (report_dir / stale).unlink(missing_ok=True)
    try:
        minimum = 1 if opts["small_corpus_ok"] else MIN_CASES
        corpus = load_corpus(opts["corpus"], min_cases=minimum) if opts["corpus"] else load_corpus()
        if urls:
            run = asyncio.run(_direct(opts["engine"] or "llamacpp", urls, corpus, opts))
        else:
            run = _pinned(target, corpus, opts)
    except ReplicaSetMismatch as exc:
        click.echo(f"refused: {exc}", err=True)
        sys.exit(2)
    except (SuiteError, TargetError, TargetDescriptionError, CorpusError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    report = write_determinism_reports(run, report_dir)
    s = report["summary"]
    click.echo(
        f"{s['equal']}/{report['corpus']['cases']} equal, {s['diverged']} diverged, "
        f"{s['error']} error, {s['unverified']} unverified ({report['mode']} mode, "
        f"{report['wall_s']} s); {report['bound']['statement']}"
    )
    click.echo(f"reports: {report_dir / 'determinism.json'}, {report_dir / 'determinism.md'}")
    sys.exit(0 if s["passed"] else 1)
