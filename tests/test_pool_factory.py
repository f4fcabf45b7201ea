"""The adapter factory: which adapter class backs a pool, and where it points."""

from __future__ import annotations

import asyncio

import pytest

from llama_orch.reference_impl.adapters.mock import MockAdapter
from llama_orch.reference_impl.pool import factory
from llama_orch.reference_impl.pool.devices import DeviceRegistry
from llama_orch.reference_impl.pool.manager import PoolManager
from tests.fixtures.pool_kit import RecordingAdapter, config, no_nvml

KIT = ("tests.fixtures.pool_kit", "RecordingAdapter")


def test_mock_pools_get_the_in_process_mock() -> None:
    pc = config().pools[0]
    adapter = factory.make_adapter(pc, "p0-r0", "repo:test/tiny")
    assert isinstance(adapter, MockAdapter) and adapter.replica_id == "p0-r0"


@pytest.mark.parametrize("engine", ["llamacpp", "vllm", "tgi", "triton"])
def test_endpoint_pools_get_their_engine_adapter(
    engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(factory.ENGINE_ADAPTERS, engine, KIT)
    pc = config(engine=engine, adapter=None, endpoint="http://127.0.0.1:8081", ctx=2048).pools[0]
    adapter = factory.make_adapter(pc, "p0-r0", "repo:test/tiny")
    assert isinstance(adapter, RecordingAdapter)
    assert adapter.base_url == "http://127.0.0.1:8081"
    expected = {"model_ref": "repo:test/tiny", "ctx_max": 2048}
    if engine == "triton":
        expected["model_name"] = "repo:test/tiny"  # no served_model_name: the model itself
    if engine == "llamacpp":
        expected["cache_prompt"] = True
    assert adapter.kwargs == expected


def test_triton_uses_the_served_model_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(factory.ENGINE_ADAPTERS, "triton", KIT)
    pc = config(
        engine="triton", adapter=None, endpoint="http://h:8000", served_model_name="ensemble"
    ).pools[0]
    assert factory.make_adapter(pc, "r", "repo:test/tiny").kwargs["model_name"] == "ensemble"


def test_a_launched_engine_address_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(factory.ENGINE_ADAPTERS, "llamacpp", KIT)
    pc = config(adapter=None, endpoint="http://127.0.0.1:1").pools[0]
    adapter = factory.make_adapter(pc, "r", "m", base_url="http://127.0.0.1:5555")
    assert adapter.base_url == "http://127.0.0.1:5555"


def test_a_missing_adapter_keeps_the_pool_unready_without_a_restart_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(factory.ENGINE_ADAPTERS, "vllm", ("no.such.module", "VllmAdapter"))
    with pytest.raises(LookupError, match="not available in this build"):
        factory.adapter_class("vllm")
    cfg = config(engine="vllm", adapter=None, endpoint="http://127.0.0.1:9")

    async def run() -> None:
        pm = PoolManager(cfg, factory.make_adapter, devices=DeviceRegistry(no_nvml))
        await pm.start()
        pool = pm.pools["p0"]
        assert "vllm adapter is not available" in pool.last_error and not pool.ready
        assert pool.restarts == 0
        await pm.close()

    asyncio.run(run())


def test_llamacpp_gets_the_verified_digest_and_no_prompt_cache_in_determinism_mode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(factory.ENGINE_ADAPTERS, "llamacpp", KIT)
    pc = config(
        adapter=None,
        endpoint="http://h:1",
        determinism=True,
        model_path="/m.gguf",
        model_sha256="ab" * 32,
    ).pools[0]
    kwargs = factory.make_adapter(pc, "r", "m").kwargs
    assert kwargs["cache_prompt"] is False and kwargs["model_digest"] == "sha256:" + "ab" * 32


def test_the_real_adapters_take_the_factory_arguments() -> None:
    """Guards the constructor contract with the engine adapters of this build."""
    for engine in factory.ENGINE_ADAPTERS:
        pc = config(engine=engine, adapter=None, endpoint="http://127.0.0.1:9").pools[0]
        adapter = factory.make_adapter(pc, "p0-r0", "repo:test/tiny")
        assert adapter.replica_id == "p0-r0" and adapter.engine == engine
        asyncio.run(adapter.close())


@pytest.mark.req("OC-ADAPT-5060")
def test_triton_metrics_come_from_the_metrics_port() -> None:
    """Triton serves `/metrics` only on its metrics server (port 8002 by default; the
    inference port answers 404): triton-inference-server/server docs/user_guide/metrics.md
    and src/http_server.cc @00a165a6. A triton pool's adapter scrapes the pool's
    `metrics_endpoint`, else port 8002 of the endpoint's host; other engines keep their own
    port unless the pool says otherwise."""
    plain = config(engine="triton", adapter=None, endpoint="http://10.0.0.5:8000").pools[0]
    named = config(
        engine="triton",
        adapter=None,
        endpoint="http://10.0.0.5:8000",
        metrics_endpoint="http://10.0.0.5:9102/metrics",
    ).pools[0]
    vllm = config(engine="vllm", adapter=None, endpoint="http://10.0.0.5:8000").pools[0]
    adapters = [factory.make_adapter(pc, "r", "repo:test/tiny") for pc in (plain, named, vllm)]
    try:
        assert [a.metrics_url for a in adapters] == [
            "http://10.0.0.5:8002/metrics",
            "http://10.0.0.5:9102/metrics",
            "/metrics",
        ]
    finally:
        for a in adapters:
            asyncio.run(a.close())


def test_metrics_endpoint_is_checked_like_an_endpoint() -> None:
    """A bad URL, a mock pool or a launched llama-server with `metrics_endpoint` is a clear
    config error naming the field."""
    from pydantic import ValidationError

    for extra in (
        {"engine": "triton", "adapter": None, "endpoint": "http://h:8000", "metrics_endpoint": "x"},
        {"metrics_endpoint": "http://h:8002/metrics"},  # the default kit pool is a mock
    ):
        with pytest.raises(ValidationError, match="metrics_endpoint"):
            config(**extra)
