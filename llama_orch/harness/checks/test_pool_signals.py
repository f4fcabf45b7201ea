"""Pool lifecycle signals: preloads, restarts and host memory are exported as metrics."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from llama_orch.harness.registry import Kind, check


@check("OC-POOL-3030", kind=Kind.METRICS)
def test_pool_lifecycle_signals_are_exported(orch) -> None:
    resp = orch.get("/metrics")
    assert resp.status_code == 200, f"GET /metrics answered {resp.status_code}"
    families = {f.name: f for f in text_string_to_metric_families(resp.text)}
    for name in ("pool_preload", "pool_restarts", "host_memory_used_bytes"):
        assert name in families, f"/metrics lacks {name} (specs/30 section 5)"
    outcomes = {s.labels.get("outcome") for s in families["pool_preload"].samples}
    assert "success" in outcomes, "preload outcomes must be counted"
    assert any(s.value > 0 for s in families["host_memory_used_bytes"].samples)
