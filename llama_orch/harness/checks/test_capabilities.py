"""Capability and versioning checks: what the target declares about itself.

Each check reads the capability data afresh, from the source discovery found it in (GET
/v1/capabilities, or the enriched GET /v1/replicasets): what it judges is what the target
answers while the checks run, not what it said before them.
"""

from __future__ import annotations

from typing import Any

from llama_orch.harness.discovery import enriched
from llama_orch.harness.openapi import load_doc
from llama_orch.harness.outcomes import Violation
from llama_orch.harness.registry import check

ENGINES = ("llamacpp", "vllm", "tgi", "triton")


def capability_data(orch, target) -> tuple[dict[str, Any], str]:
    """The capability data as the target answers it now, and where it came from."""
    if target.capabilities_source == "capabilities":
        resp = orch.get("/v1/capabilities")
        assert resp.status_code == 200, f"GET /v1/capabilities answered {resp.status_code}"
        body = resp.json()
        assert isinstance(body, dict), "GET /v1/capabilities did not answer a JSON object"
        return body, "GET /v1/capabilities"
    resp = orch.get("/v1/replicasets")
    assert resp.status_code == 200, f"GET /v1/replicasets answered {resp.status_code}"
    body = resp.json()
    data = enriched(body if isinstance(body, list) else [], target) or {}
    if target.description.api_version and not data.get("api_version"):
        data["api_version"] = target.description.api_version
    return data, "the replica sets"


@check("ORCH-3095", "OC-CTRL-2060")
def test_capability_data_lists_engines_with_their_context_limit(orch, target) -> None:
    """Capability data (either source of OC-CTRL-2060) lists each engine with its ctx_max."""
    data, where = capability_data(orch, target)
    engines = data.get("engines")
    assert isinstance(engines, list) and engines, f"{where} lists no engine"
    for engine in engines:
        assert engine.get("engine") in ENGINES, f"{where}: engine {engine.get('engine')!r}"
        ctx = engine.get("ctx_max")
        assert isinstance(ctx, int) and ctx > 0, f"{where}: ctx_max {ctx!r} for {engine}"


@check("ORCH-3096", "OC-CTRL-2061", "ORCH-3044")
def test_capability_data_declares_the_contract_version(orch, target) -> None:
    """api_version is stated (ORCH-3044) and equals the OpenAPI info.version this harness
    checks (ORCH-3096, OC-CTRL-2061)."""
    expected = load_doc("data.yaml")["info"]["version"]
    got = capability_data(orch, target)[0].get("api_version")
    assert isinstance(got, str) and got, f"the capability data states no api_version ({got!r})"
    if got != expected:
        raise Violation(
            ("ORCH-3096", "OC-CTRL-2061"), f"api_version is {got!r}, the contract is {expected}"
        )
