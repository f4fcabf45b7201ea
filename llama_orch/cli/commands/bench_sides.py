"""The sides `llorch bench` measures, built from its options: the orchestrator over HTTP, the
engine alone (`--direct`, or the engine of the default mode), and the in-process mock adapter
(`--direct-mock`, a micro-benchmark). Kept apart from llama_orch.cli.commands.bench so each
module stays readable; the reference is imported only for `--direct-mock`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from collections.abc import AsyncIterator
from typing import Any

import click

from llama_orch.cli.commands import bench_engine
from llama_orch.cli.commands.bench_modes import redact as _redact
from llama_orch.harness.loadgen.client import OrchQueueTarget, TaskTemplate, make_client
from llama_orch.harness.loadgen.engines import EngineTarget, engine_request, served_model
from llama_orch.harness.loadgen.load import DirectStreamTarget, LoadPlan, ProgressFn, StreamFn
from llama_orch.harness.loadgen.mix import PriorityMix
from llama_orch.harness.loadgen.rounds import Side, SideResult, run_rounds


def direct_mock(template: TaskTemplate, slots: int) -> tuple[StreamFn, Any]:
    """A stream function over the reference mock adapter (no orchestrator in front) and the
    adapter itself, which the caller preloads and closes."""
    try:
        from llama_orch.reference_impl.adapters.base import CompletionRequest, SamplerParams
        from llama_orch.reference_impl.adapters.mock import MockAdapter
    except ImportError as exc:
        raise click.UsageError(f"--direct-mock needs the reference mock adapter: {exc}") from exc
    adapter = MockAdapter(
        template.engine,
        "bench-direct-0",
        model_ref=template.model_ref,
        ctx_max=template.ctx,
        slots=slots,
    )
    # The built-in `v1` profile; the mock's output does not depend on it.
    sampler = SamplerParams(temperature=0.7, top_k=40, top_p=0.95, min_p=0.05)
    profile = template.sampler_profile_version or "v1"
    numbers = itertools.count()

    async def stream(prompt: str, max_tokens: int, seed: int | None) -> AsyncIterator[str]:
        request = CompletionRequest(
            request_id=f"bench-direct-{next(numbers)}",
            prompt=prompt,
            max_tokens=max_tokens,
            seed=0 if seed is None else seed,
            sampler=sampler,
            sampler_profile_version=profile,
        )
        async with adapter.stream(request) as tokens:
            async for event in tokens:
                yield event.text

    return stream, adapter


async def measure(
    *,
    target_url: str | None,
    api_key: str | None,
    proxy_pids: tuple[int, ...],
    direct: tuple[StreamFn, Any, str] | None,
    engine: bench_engine.Engine | None,
    template: TaskTemplate,
    plan: LoadPlan,
    rounds: int,
    mix: PriorityMix | None,
    max_connections: int,
    timeouts: tuple[float, float],
    progress: ProgressFn | None,
    interval: float,
    direct_body: dict[str, Any] | None = None,
) -> list[SideResult]:
    """Build the sides (orchestrator, then the baseline: engine alone or the mock adapter)
    and run them interleaved for `rounds` rounds."""
    shape = None
    if mix is not None:
        shapes = {p: dataclasses.replace(template, priority=p) for p, _ in mix.weights}
        shape = lambda n: shapes[mix.priority_of(n)]  # noqa: E731
    sides: list[Side] = []
    engine_pids = engine.pids if engine is not None else ()
    async with contextlib.AsyncExitStack() as stack:

        def client(url: str, key: str | None) -> Any:
            return make_client(
                url,
                api_key=key,
                max_connections=max_connections,
                connect_timeout=timeouts[0],
                read_timeout=timeouts[1],
            )

        if target_url is not None:
            session = await stack.enter_async_context(client(target_url, api_key))
            sides.append(
                Side(
                    "orchestrator",
                    OrchQueueTarget(session, template, shape=shape),
                    _redact(target_url),
                    proxy_pids=proxy_pids,
                    engine_pids=engine_pids,
                    per_priority=mix is not None,
                )
            )
        if engine is not None:
            session = await stack.enter_async_context(client(engine.url, None))
            model = engine.model
            if model is None and engine.protocol == "vllm":
                model = await served_model(session)
            request = engine_request(
                engine.protocol,
                prompt=template.prompt,
                max_tokens=template.max_tokens,
                seed=template.seed,
                model=model,
                extra=direct_body,
            )
            where = f"{engine.protocol} engine at {_redact(engine.url)}"
            sides.append(
                Side("engine alone", EngineTarget(session, request), where, (), engine_pids)
            )
        if direct is not None:
            stream, adapter, where = direct
            await adapter.preload()
            stack.push_async_callback(adapter.close)
            target = DirectStreamTarget(
                stream, prompt=template.prompt, max_tokens=template.max_tokens, seed=template.seed
            )
            sides.append(Side("direct-mock", target, where))
        return await run_rounds(sides, plan, rounds, progress=progress, interval=interval)
