"""Operational requirements: logs, tenant quotas, pool signals, start-up validation, faults.

Some need more than HTTP: the target's log (`--target-log`), a data-plane tenant key
(`--tenant-key-env`), or a target the harness starts itself (`--reference-config`). Without
that prerequisite a check does not guess: it ends as `error`, so its requirement is reported
`unverified` with the reason, never as passed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from llama_orch.harness.client import OrchClient, task_body

LOG_FIELDS = (
    "job_id",
    "session_id",
    "engine",
    "pool_id",
    "replica_id",
    "model_id",
    "quant",
    "ctx",
    "kv_warmth",
    "queue_time_ms",
    "decode_time_ms",
)
HOLD = "[[sim tokens=1 hold_ms=2500]] hold"


def _served(target) -> tuple[str, str]:
    for rs in target.replica_sets:
        ref = (rs.get("slo") or {}).get("model_ref")
        if ref:
            return rs["engine"], ref
    pytest.skip("the target's replica sets name no model_ref; pass --model-ref")


def _pool_engine(target, pool_hint: str | None = None) -> tuple[str, str, int]:
    """(engine, model_ref, slots_total) of a replica set with at least 2 slots."""
    for rs in target.replica_sets:
        slo = rs.get("slo") or {}
        if slo.get("model_ref") and rs.get("slots_total", 0) >= 2:
            return rs["engine"], slo["model_ref"], rs["slots_total"]
    pytest.skip("needs a replica set with at least two slots")


@pytest.mark.req("ORCH-3027", "OC-CORE-1040", "OC-CTRL-2050", "OC-CTRL-2041")
def test_log_records_carry_the_required_fields_and_no_secrets(orch, target) -> None:
    if target.log_path is None or not Path(target.log_path).exists():
        pytest.skip("needs the target's JSON-lines log (--target-log FILE)")
    engine, ref = _served(target)
    body = task_body(engine=engine, model_ref=ref, prompt="[[sim tokens=3]] logged")
    assert orch.submit(body, headers={"X-Correlation-Id": "llorch-log-check"}).status_code == 202
    orch.stream(body["task_id"])
    deadline = time.monotonic() + 5
    records: list[dict] = []
    while time.monotonic() < deadline:
        lines = Path(target.log_path).read_text(encoding="utf-8", errors="replace").splitlines()
        records = []
        for line in lines:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        mine = [r for r in records if r.get("job_id") == body["task_id"]]
        if any("decode_time_ms" in r for r in mine):
            break
        time.sleep(0.1)
    mine = [r for r in records if r.get("job_id") == body["task_id"]]
    assert mine, "no JSON log record names the task's job_id"
    final = next((r for r in mine if "decode_time_ms" in r), None)
    assert final is not None, f"no record with decode_time_ms for the task: {mine}"
    missing = [f for f in LOG_FIELDS if f not in final]
    assert not missing, f"log record lacks {missing}: {final}"
    admitted = next((r for r in mine if "queue_position" in r), None)
    assert admitted is not None and "predicted_start_ms" in admitted, (
        "the admission log record must carry queue_position and predicted_start_ms"
    )
    assert any(r.get("correlation_id") == "llorch-log-check" for r in mine)
    text = Path(target.log_path).read_text(encoding="utf-8", errors="replace")
    for secret in filter(None, (target.api_key, target.tenant_key)):
        assert secret not in text, "an API key appears in the log"


@pytest.mark.req("ORCH-3036")
def test_tenant_concurrency_quota_is_enforced(orch, target, request) -> None:
    env = request.config.getoption("tenant_key_env")
    key = os.environ.get(env) if env else target.tenant_key
    if not key:
        pytest.skip("needs a tenant API key with a quota (--tenant-key-env VAR)")
    engine, ref = _served(target)
    tenant = OrchClient(target.url, key, api_key_env=env or "LLORCH_TENANT_KEY")
    admitted: list[str] = []
    try:
        refused = None
        for _ in range(12):
            body = task_body(engine=engine, model_ref=ref, prompt=HOLD)
            resp = tenant.submit(body)
            if resp.status_code == 202:
                admitted.append(body["task_id"])
                continue
            refused = resp
            break
        if refused is None:
            pytest.skip("no quota was reached within 12 concurrent tasks of the tenant")
        assert refused.status_code == 429, f"quota refusal must be 429, got {refused.status_code}"
        assert refused.json().get("code") == "ADMISSION_REJECT", refused.text
        other = task_body(engine=engine, model_ref=ref, prompt="[[sim tokens=1]] other tenant")
        assert orch.submit(other).status_code == 202, "another tenant must still be admitted"
        admitted.append(other["task_id"])
    finally:
        for task_id in admitted:
            orch.cancel(task_id)
        tenant.close()


@pytest.mark.kind("metrics")
@pytest.mark.req("OC-POOL-3030")
def test_pool_lifecycle_signals_are_exported(orch) -> None:
    resp = orch.get("/metrics", auth=False)
    assert resp.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(resp.text)}
    for name in ("pool_preload", "pool_restarts", "host_memory_used_bytes"):
        assert name in families, f"/metrics lacks {name} (specs/30 section 5)"
    outcomes = {s.labels.get("outcome") for s in families["pool_preload"].samples}
    assert "success" in outcomes, "preload outcomes must be counted"
    assert any(s.value > 0 for s in families["host_memory_used_bytes"].samples)


@pytest.mark.req("ORCH-3023")
def test_a_session_failover_reports_kv_not_migrated(orch, target) -> None:
    engine, ref, _slots = _pool_engine(target)
    started: list[str] = []
    try:
        for _attempt in range(3):
            session = task_body(engine=engine, model_ref=ref)["session_id"]
            first = task_body(
                engine=engine, model_ref=ref, session_id=session, prompt="[[sim tokens=1]] turn one"
            )
            orch.submit(first)
            orch.stream(first["task_id"])
            blocker = task_body(engine=engine, model_ref=ref, prompt=HOLD)
            orch.submit(blocker)
            started.append(blocker["task_id"])
            second = task_body(
                engine=engine, model_ref=ref, session_id=session, prompt="[[sim tokens=1]] turn two"
            )
            orch.submit(second)
            _, events = orch.stream(second["task_id"])
            placed = [
                e.data
                for e in events
                if e.event == "metrics" and "kv_warmth" in e.data and "kv_migrated" in e.data
            ]
            cold = [m for m in placed if m["kv_warmth"] is False]
            if cold:
                assert all(m["kv_migrated"] is False for m in cold), cold
                return
        pytest.skip("no failover happened in 3 tries (the session kept its replica)")
    finally:
        for task_id in started:
            orch.cancel(task_id)


@pytest.mark.req("ORCH-3030")
def test_an_unknown_config_key_stops_the_server_in_strict_mode(request) -> None:
    config = request.config.getoption("reference_config")
    if not config:
        pytest.skip("only observable where the harness starts the target (--reference-config)")
    text = Path(config).read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        bad = Path(tmp) / "bad.yaml"
        bad.write_text(text + "\nunexpected_key: 1\n", encoding="utf-8")
        proc = subprocess.run(
            [sys.executable, "-m", "llama_orch.cli", "serve", "--config", str(bad), "--port", "9"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "LLORCH_API_KEY": "unused"},
        )
    assert proc.returncode != 0, "a config with an unknown key must not start in strict mode"
    assert "unexpected_key" in proc.stderr, f"the error must name the key: {proc.stderr[-500:]}"


@pytest.mark.req("ORCH-3003", "OC-POOL-3002")
def test_preload_without_memory_headroom_fails_fast() -> None:
    pytest.skip(
        "needs a pool whose model does not fit the device memory; the harness cannot make a "
        "target's GPU run short of VRAM over HTTP (the reference proves it in its own tests)"
    )


@pytest.mark.req("ORCH-3038", "OC-POOL-3010")
def test_a_driver_fault_makes_the_pool_unready_and_restart() -> None:
    pytest.skip(
        "needs an engine fault (driver/CUDA reset) that the harness can trigger; the test "
        "engines offer none over HTTP (the reference proves it with a real llama-server crash)"
    )
