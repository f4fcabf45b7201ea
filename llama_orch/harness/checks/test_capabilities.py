"""Capability and versioning checks: what the target declares about itself."""

from __future__ import annotations

from llama_orch.harness.openapi import load_doc
from llama_orch.harness.outcomes import Violation
from llama_orch.harness.registry import check

ENGINES = ("llamacpp", "vllm", "tgi", "triton")


@check("ORCH-3095", "OC-CTRL-2060")
def test_capability_data_lists_engines_with_their_context_limit(target) -> None:
    """Capability data (either source of OC-CTRL-2060) lists each engine with its ctx_max."""
    engines = target.capabilities.get("engines")
    where = (
        "GET /v1/capabilities"
        if target.capabilities_source == "capabilities"
        else "the replica sets"
    )
    assert isinstance(engines, list) and engines, f"{where} lists no engine"
    for engine in engines:
        assert engine.get("engine") in ENGINES, f"{where}: engine {engine.get('engine')!r}"
        ctx = engine.get("ctx_max")
        assert isinstance(ctx, int) and ctx > 0, f"{where}: ctx_max {ctx!r} for {engine}"


@check("ORCH-3096", "OC-CTRL-2061", "ORCH-3044")
def test_capability_data_declares_the_contract_version(target) -> None:
    """api_version is stated (ORCH-3044) and equals the OpenAPI info.version this harness
    checks (ORCH-3096, OC-CTRL-2061)."""
    expected = load_doc("data.yaml")["info"]["version"]
    got = target.capabilities.get("api_version")
    assert isinstance(got, str) and got, f"the capability data states no api_version ({got!r})"
    if got != expected:
        raise Violation(
            ("ORCH-3096", "OC-CTRL-2061"), f"api_version is {got!r}, the contract is {expected}"
        )
