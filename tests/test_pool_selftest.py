"""The start-up self-test (ORCH-3049): preload, a minimal decode, cancel and telemetry.

Pools are built as in the other pool tests (tests/fixtures/pool_kit.py); the failing replicas
are small MockAdapter subclasses that break one item each.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llama_orch.reference_impl.adapters.base import (
    AdapterHealth,
    CompletionRequest,
    LoadSignals,
    SamplerParams,
    TokenStream,
)
from llama_orch.reference_impl.adapters.mock import MockAdapter
from llama_orch.reference_impl.config import load_config
from llama_orch.reference_impl.pool.backoff import BackoffPolicy
from llama_orch.reference_impl.pool.devices import DeviceRegistry
from llama_orch.reference_impl.pool.factory import make_adapter
from llama_orch.reference_impl.pool.manager import PoolManager
from llama_orch.reference_impl.pool.preflight import PoolFault
from llama_orch.reference_impl.pool.selftest import (
    ITEMS,
    SHARED_REASON,
    SelfTestLimits,
    run_self_test,
)
from tests._engine import engine_binary
from tests._server import ROOT, running_server
from tests.fixtures.pool_kit import (
    Recorder,
    config,
    endpoint_engine,
    fake_factory,
    launched,
    no_nvml,
    pool_logs,
    wait_for,
)

FAST = BackoffPolicy(initial_s=0.05, max_s=0.2, jitter=0)
QUICK = SelfTestLimits(step_s=1.0, cancel_free_s=0.2, settle_s=0.1)
ALL_PASS = dict.fromkeys(ITEMS, "pass")


class KeepsSlotOnCancel(MockAdapter):
    """An engine that goes on holding the slot of a stream whose client went away."""

    def stream(self, req: CompletionRequest) -> TokenStream:
        ts = super().stream(req)
        closed = ts._on_close

        def leak() -> None:
            if closed is not None:
                closed()
            if ts.end is None:  # closed early: the engine never notices
                self._busy += 1

        ts._on_close = leak
        return ts


class DecodesNothing(MockAdapter):
    """An engine that ends every stream normally without producing a token."""

    def stream(self, req: CompletionRequest) -> TokenStream:
        return super().stream(dataclasses.replace(req, max_tokens=0))


class BadMetrics(MockAdapter):
    async def metrics(self) -> LoadSignals:
        return LoadSignals(waiting=0, running=-1)


def factory_of(cls: type[MockAdapter], *, only_model: str | None = None) -> Any:
    """A factory building `cls` (for `only_model`, else every model) and plain mocks else."""

    def make(pc: Any, replica_id: str, model_ref: str, **_kw: Any) -> MockAdapter:
        chosen = cls if only_model in (None, model_ref) else MockAdapter
        return chosen(pc.engine.value, replica_id, model_ref=model_ref, ctx_max=2048, slots=2)

    return make


def manager(cfg: Any, factory: Any, rec: Recorder | None = None) -> PoolManager:
    return PoolManager(
        cfg,
        factory,
        rec or Recorder(),
        devices=DeviceRegistry(no_nvml),
        backoff=FAST,
        heartbeat_s=0.1,
        self_test=QUICK,
    )


def self_test_events(records: list[Any]) -> list[Any]:
    return [r for r in records if getattr(r, "event", None) == "self_test"]


def snapshot(pm: PoolManager, pool_id: str = "p0") -> tuple[bool, str | None, dict | None]:
    """(ready, last_error, self-test summary) while the manager runs (close() unreadies)."""
    pool = pm.pools[pool_id]
    return pool.ready, pool.last_error, pm.self_test(pool_id)


async def started(pm: PoolManager, pool_id: str = "p0") -> tuple[bool, str | None, dict | None]:
    await pm.start()
    return snapshot(pm, pool_id)


@pytest.mark.req("ORCH-3049", "OC-POOL-3001")
def test_mock_pool_passes_every_item_and_health_shows_them() -> None:
    cfg = """
auth: {api_keys_env: LLORCH_API_KEY}
pools:
  - {id: st, engine: llamacpp, adapter: mock, model: repo:mock/tiny, replicas: 2,
     devices: [], allow_cpu_inference: true}
"""
    with running_server(cfg) as server:
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=10) as c:
            health = c.get("/v1/pools/st/health").json()
            scraped = c.get("/metrics").text
        lines = [json.loads(line) for line in server.logs.getvalue().splitlines()]
    assert health["ready"] is True and health["last_error"] is None
    assert health["metrics"]["self_test"] == ALL_PASS
    events = [e for e in lines if e.get("event") == "self_test"]
    assert sorted(e["replica_id"] for e in events) == ["st-r0", "st-r1"]
    for event in events:
        assert event["outcome"] == "pass" and event["pool_id"] == "st"
        assert list(event["items"]) == list(ITEMS)
        assert all(i["status"] == "pass" and i["ms"] >= 0 for i in event["items"].values())
    # The pool's own telemetry counts the attempt the self-test was part of.
    preload = {
        s.labels["outcome"]: s.value
        for f in text_string_to_metric_families(scraped)
        for s in f.samples
        if s.name == "pool_preload_total" and s.labels["pool_id"] == "st"
    }
    assert preload == {"success": 1.0, "failure": 0.0}


@pytest.mark.req("ORCH-3049", "OC-POOL-3002")
def test_cancel_that_keeps_the_slot_keeps_the_pool_unready_and_retries() -> None:
    async def go() -> tuple[Any, tuple]:
        pm = manager(config(), factory_of(KeepsSlotOnCancel))
        try:
            first = await started(pm)
            pool = pm.pools["p0"]
            await wait_for(lambda: pool.restarts >= 1)  # the usual backoff applies
            return pool, first
        finally:
            await pm.close()

    with pool_logs() as records:
        pool, (ready, last_error, summary) = asyncio.run(go())
    assert not ready and last_error is not None
    assert last_error.startswith("start-up self-test on p0-r0: cancel did not free the slot")
    assert pool.preload_outcomes["failure"] >= 1 and pool.preload_outcomes["success"] == 0
    assert summary == {"preload": "pass", "decode": "pass", "cancel": "fail", "telemetry": "skip"}
    failed = self_test_events(records)[0]
    assert failed.outcome == "fail" and failed.replica_id == "p0-r0"
    assert "did not free the slot within 0.2 s" in failed.items["cancel"]["reason"]
    preload = next(r for r in records if getattr(r, "event", None) == "preload")
    assert preload.outcome == "failure"
    assert preload.last_error.startswith(
        "start-up self-test on p0-r0: cancel did not free the slot within 0.2 s"
    )


@pytest.mark.req("ORCH-3049")
def test_decode_without_a_token_fails_the_decode_item() -> None:
    async def go() -> tuple:
        pm = manager(config(), factory_of(DecodesNothing))
        try:
            return await started(pm)
        finally:
            await pm.close()

    ready, last_error, summary = asyncio.run(go())
    assert not ready
    assert last_error == "start-up self-test on p0-r0: decode ended without a token"
    assert summary == {"preload": "pass", "decode": "fail", "cancel": "skip", "telemetry": "skip"}


@pytest.mark.req("ORCH-3049", "OC-POOL-3003")
def test_failed_preload_names_replica_step_and_cause_and_skips_the_rest() -> None:
    async def go() -> tuple:
        pm = manager(config(model="repo:mock/unloadable-x"), make_adapter)
        try:
            return await started(pm)
        finally:
            await pm.close()

    ready, last_error, summary = asyncio.run(go())
    assert not ready
    assert last_error == (
        "start-up self-test on p0-r0: preload: "
        "POOL_UNAVAILABLE: cannot load repo:mock/unloadable-x: no such model"
    )
    assert summary == {"preload": "fail", "decode": "skip", "cancel": "skip", "telemetry": "skip"}


class RefusesForGood(MockAdapter):
    async def preload(self) -> None:
        raise PoolFault("model format not supported", permanent=True)


@pytest.mark.req("ORCH-3049", "OC-POOL-3011")
def test_a_permanent_preload_fault_stays_permanent_under_its_new_name() -> None:
    async def go() -> tuple:
        pm = manager(config(), factory_of(RefusesForGood))
        try:
            first = await started(pm)
            await asyncio.sleep(0.3)  # several backoff periods
            return first, pm.pools["p0"].restarts
        finally:
            await pm.close()

    (ready, last_error, _summary), restarts = asyncio.run(go())
    assert not ready and restarts == 0
    assert last_error == "start-up self-test on p0-r0: preload: model format not supported"


@pytest.mark.req("ORCH-3049")
def test_reload_runs_the_self_test_and_a_failure_keeps_the_old_model() -> None:
    """The health's `self_test` stays the serving model's; the failed attempt is shown apart."""

    async def go() -> tuple:
        pm = manager(config(), factory_of(BadMetrics, only_model="repo:test/bad-metrics"))
        try:
            assert await started(pm) == (True, None, ALL_PASS)
            assert pm.self_test_last_attempt("p0") is None
            assert not await pm.reload("p0", "repo:test/bad-metrics")
            failed = (*snapshot(pm), pm.self_test_last_attempt("p0"), pm.pools["p0"].model_ref)
            assert await pm.reload("p0", "repo:test/good")
            return failed, (pm.self_test("p0"), pm.self_test_last_attempt("p0"))
        finally:
            await pm.close()

    with pool_logs() as records:
        (ready, last_error, summary, attempt, model_ref), after = asyncio.run(go())
    assert ready and model_ref == "repo:test/tiny"  # the old model keeps serving
    assert last_error == (
        "reload to repo:test/bad-metrics failed: start-up self-test on p0-r0: "
        "metrics scrape gave running=-1"
    )
    assert summary == ALL_PASS  # the model that serves passed
    assert attempt == {"preload": "pass", "decode": "pass", "cancel": "pass", "telemetry": "fail"}
    assert after == (ALL_PASS, None)  # a successful reload: one result again
    assert [e.outcome for e in self_test_events(records)] == ["pass", "fail", "pass"]


@pytest.mark.req("ORCH-3049", "OC-POOL-3003")
def test_pool_health_shows_the_serving_models_self_test_and_the_failed_reload_apart() -> None:
    cfg = """
auth: {api_keys_env: LLORCH_API_KEY}
pools:
  - {id: st, engine: llamacpp, adapter: mock, model: repo:mock/tiny,
     devices: [], allow_cpu_inference: true}
"""
    with running_server(cfg) as server:
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=10) as c:
            before = c.get("/v1/pools/st/health").json()
            reload = {"new_model_ref": "repo:mock/unloadable-x"}
            assert c.post("/v1/pools/st/reload", json=reload).status_code == 202
            deadline = time.monotonic() + 5
            while (after := c.get("/v1/pools/st/health").json())["last_error"] is None:
                assert time.monotonic() < deadline, "the reload did not finish"
                time.sleep(0.02)
    assert before["metrics"]["self_test"] == ALL_PASS
    assert before["metrics"]["self_test_last_attempt"] is None
    assert after["ready"] is True and after["metrics"]["model_ref"] == "repo:mock/tiny"
    assert after["metrics"]["self_test"] == ALL_PASS
    assert after["metrics"]["self_test_last_attempt"] == {
        "preload": "fail",
        "decode": "skip",
        "cancel": "skip",
        "telemetry": "skip",
    }
    assert after["last_error"].startswith(
        "reload to repo:mock/unloadable-x failed: start-up self-test on st-r0: preload: "
    )


@pytest.mark.req("ORCH-3049")
def test_http_engine_passes_and_a_stalled_decode_times_out(tmp_path: Path) -> None:
    """Through the real HTTP adapter base against the fake engine process."""
    cfg = launched(tmp_path, "--itl-ms", "5")

    async def go() -> tuple[Any, Any]:
        pm = manager(cfg, fake_factory)
        await pm.start()
        try:
            adapter = pm.pools["p0"].replicas[0].adapter
            ok = pm.self_test("p0")
            slow = await run_self_test(adapter, SelfTestLimits(decode_tokens=400, step_s=0.3))
            return ok, slow
        finally:
            await pm.close()

    ok, slow = asyncio.run(go())
    assert ok == ALL_PASS
    decode = slow.failure
    assert decode is not None and decode.item == "decode" and decode.status == "fail"
    assert decode.reason == "decode did not finish within 0.3 s" and decode.duration_ms >= 300


class Flaky(MockAdapter):
    """An endpoint engine whose health and metrics a test switches."""

    down = False
    bad_metrics = False

    async def health(self) -> AdapterHealth:
        if self.down:
            return AdapterHealth(live=False, ready=False, detail="connection refused")
        return await super().health()

    async def metrics(self) -> LoadSignals:
        if self.bad_metrics:
            return LoadSignals(waiting=0, running=-1)
        return await super().metrics()


@pytest.mark.req("ORCH-3049", "OC-POOL-3003")
def test_an_endpoint_pool_that_answers_again_is_self_tested_before_ready() -> None:
    cfg = config(adapter=None, endpoint="http://127.0.0.1:9")

    async def go() -> tuple:
        pm = manager(cfg, factory_of(Flaky))
        try:
            assert await started(pm) == (True, None, ALL_PASS)
            pool = pm.pools["p0"]
            engine = pool.replicas[0].adapter
            engine.down = True
            await wait_for(lambda: not pool.ready)
            engine.bad_metrics, engine.down = True, False
            await wait_for(lambda: (pool.last_error or "").startswith("start-up self-test"))
            await asyncio.sleep(0.3)  # several heartbeats: still failing, still unready
            failing = snapshot(pm)
            engine.bad_metrics = False
            await wait_for(lambda: pool.ready)
            return failing, snapshot(pm), pool.restarts
        finally:
            await pm.close()

    with pool_logs() as records:
        (ready, last_error, summary), recovered, restarts = asyncio.run(go())
    assert not ready
    assert last_error == "start-up self-test on p0-r0: metrics scrape gave running=-1"
    assert summary == {"preload": "pass", "decode": "pass", "cancel": "pass", "telemetry": "fail"}
    assert recovered == (True, None, ALL_PASS) and restarts == 0
    outcomes = [e.outcome for e in self_test_events(records)]
    assert outcomes[0] == "pass" and "fail" in outcomes and outcomes[-1] == "pass"


def _live(n: int) -> CompletionRequest:
    greedy = SamplerParams(temperature=0.0, top_k=1, top_p=1.0, min_p=0.0)
    return CompletionRequest("live-1", "hello", n, 1, greedy, "v1")


@pytest.mark.req("ORCH-3049")
def test_a_replica_busy_with_other_work_skips_decode_and_cancel_with_the_reason() -> None:
    """One slot, held by a live task: a decode would queue behind it and time out."""

    async def go() -> Any:
        adapter = MockAdapter("llamacpp", "p0-r0", model_ref="m", ctx_max=2048, slots=1)
        await adapter.preload()
        live = adapter.stream(_live(100))
        try:
            await anext(aiter(live))  # the live task holds the only slot
            return await run_self_test(adapter, QUICK)
        finally:
            await live.aclose()

    result = asyncio.run(go())
    assert result.failure is None and result.passed
    assert result.summary() == {
        "preload": "pass",
        "decode": "skip",
        "cancel": "skip",
        "telemetry": "pass",
    }
    reasons = {r.item: r.reason for r in result.items}
    busy = "skipped: the engine is busy with other work (0 of 1 free)"
    assert reasons["decode"] == reasons["cancel"] == busy


@pytest.mark.req("ORCH-3049")
def test_an_endpoint_reload_does_not_self_test_against_live_traffic() -> None:
    """A real HTTP engine with one slot: the old model's live task holds it during the reload,
    so a decode would queue; the reload skips decode and cancel and succeeds."""

    async def go(url: str) -> tuple:
        pm = manager(config(adapter=None, endpoint=url), fake_factory)
        try:
            assert await started(pm) == (True, None, ALL_PASS)
            pool = pm.pools["p0"]
            live = pool.replicas[0].adapter.stream(_live(1000))
            try:
                await anext(aiter(live))
                reloaded = await pm.reload("p0", "repo:test/other")
            finally:
                await live.aclose()
            return reloaded, snapshot(pm), pool.model_ref
        finally:
            await pm.close()

    with endpoint_engine("--slots", "1", "--itl-ms", "5") as url, pool_logs() as records:
        reloaded, (ready, last_error, summary), model_ref = asyncio.run(go(url))
    assert reloaded and ready and last_error is None and model_ref == "repo:test/other"
    assert summary == {"preload": "pass", "decode": "skip", "cancel": "skip", "telemetry": "pass"}
    items = self_test_events(records)[-1].items
    assert items["decode"]["reason"] == items["cancel"]["reason"] == SHARED_REASON


@pytest.mark.real_engine
@pytest.mark.slow
@pytest.mark.req("ORCH-3049")
def test_real_llama_server_pool_passes_the_self_test_cheaply() -> None:
    """The example CPU pool with the real llama-server: every item passes, and the self-test
    spends only a handful of tokens (its wall time is printed: ~0.2 s on an idle 2-core box)."""
    engine_binary()
    cfg = load_config(ROOT / "examples" / "llamacpp-cpu.yaml")

    async def go() -> tuple[tuple, float]:
        pm = PoolManager(cfg, make_adapter, devices=DeviceRegistry(no_nvml))
        try:
            seen = await started(pm, "gemma3-270m-cpu")
            adapter = pm.pools["gemma3-270m-cpu"].replicas[0].adapter
            return seen, (await adapter.get_metrics())["llamacpp:tokens_predicted_total"]
        finally:
            await pm.close()

    with pool_logs() as records:
        (ready, last_error, summary), predicted = asyncio.run(go())
    assert ready and last_error is None and summary == ALL_PASS
    (event,) = self_test_events(records)
    extra_ms = sum(event.items[i]["ms"] for i in ("decode", "cancel", "telemetry"))
    print(f"self-test beyond preload: {extra_ms} ms; tokens predicted {predicted:g}")
    # preload's 1 token + the short decode + the first tokens of the canceled stream, which the
    # cancel stopped well before its 32-token limit
    limits = SelfTestLimits()
    assert 1 + limits.decode_tokens + 1 <= predicted < 1 + limits.decode_tokens + 16
