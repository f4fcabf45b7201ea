"""Capability and versioning checks: what the target declares about itself."""

from __future__ import annotations

import pytest

from llama_orch.harness.openapi import load_doc


@pytest.mark.req("ORCH-3095", "ORCH-3096", "OC-CTRL-2060", "OC-CTRL-2061", "ORCH-3044")
def test_capabilities_declare_the_contract_version(orch) -> None:
    resp = orch.get("/v1/capabilities")
    assert resp.status_code == 200, "GET /v1/capabilities must answer 200"
    caps = resp.json()
    expected = load_doc("data.yaml")["info"]["version"]
    assert caps.get("api_version") == expected, f"api_version must equal {expected}"
    assert isinstance(caps.get("engines"), list) and caps["engines"], "engines must be listed"
    for engine in caps["engines"]:
        assert engine.get("engine") in ("llamacpp", "vllm", "tgi", "triton"), engine
        assert isinstance(engine.get("ctx_max"), int) and engine["ctx_max"] > 0, engine
