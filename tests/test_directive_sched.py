"""The scheduling directives `interruptible` and `oom` (specs/80 section 6): the shared parser,
the engine simulators' failure wording, and what the adapters make of both."""

from __future__ import annotations

import asyncio

import pytest

from llama_orch.engine_sim.directive import Directive, DirectiveError, parse_directive
from llama_orch.engine_sim.engine import SimConfig
from llama_orch.reference_impl.adapters.base import AdapterError, CompletionRequest, SamplerParams
from llama_orch.reference_impl.adapters.llamacpp import LlamaCppAdapter
from llama_orch.reference_impl.adapters.vllm import VllmAdapter
from llama_orch.reference_impl.pool.preemption_proof import prove_interruptible
from tests._sims import running_sim

GREEDY = SamplerParams(temperature=0.0, top_k=1, top_p=1.0, min_p=0.0)


@pytest.mark.req("OC-HARNESS-8402", "OC-HARNESS-8403")
def test_interruptible_and_oom_parse_with_their_value_types() -> None:
    d, rest = parse_directive("[[sim tokens=3 interruptible=false oom=host]] text")
    assert (d.interruptible, d.oom, rest) == (False, "host", "text")
    assert parse_directive("[[sim]] x")[0] == Directive()
    assert Directive(oom="device").failure_at() == 0
    assert Directive(oom="device", fail_after=2).failure_at() == 2
    for bad in ("[[sim interruptible=0]]", "[[sim oom=gpu]]", "[[sim oom=device oom=host]]"):
        with pytest.raises(DirectiveError):
            parse_directive(bad)


@pytest.mark.req("OC-HARNESS-8404", "ORCH-3039")
@pytest.mark.parametrize(
    ("protocol", "adapter_cls"), [("llamacpp", LlamaCppAdapter), ("vllm", VllmAdapter)]
)
def test_simulated_oom_reaches_the_adapter_as_its_kind(protocol: str, adapter_cls: type) -> None:
    with running_sim(SimConfig(protocol=protocol)) as (url, _engine):

        async def go(kind: str) -> AdapterError:
            adapter = adapter_cls("r0", url, model_ref="repo:m/x", ctx_max=512)
            req = CompletionRequest(
                "t", f"[[sim tokens=4 fail_after=1 oom={kind}]] x", 4, 0, GREEDY, "v1"
            )
            try:
                with pytest.raises(AdapterError) as info:
                    async for _ in adapter.stream(req):
                        pass
                return info.value
            finally:
                await adapter.close()

        for kind in ("device", "host"):
            error = asyncio.run(go(kind))
            assert error.oom == kind and error.code == "WORKER_RESET", error


@pytest.mark.req("ORCH-3088", "ORCH-3090")
def test_a_replica_on_the_llamacpp_simulator_cannot_prove_interruptible_decode() -> None:
    with running_sim(SimConfig(protocol="llamacpp")) as (url, _engine):

        async def go():
            adapter = LlamaCppAdapter("r0", url, model_ref="repo:m/x", ctx_max=512, slot_saves=True)
            try:
                return await prove_interruptible(adapter)
            finally:
                await adapter.close()

        proof = asyncio.run(go())
    assert not proof.proven and proof.reason
