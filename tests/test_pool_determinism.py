"""Determinism settings files and their application by the pool manager (OC-TEST-7002,
ORCH-3050): start flags on launched engines, per-request fields, the in-flight cap."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from reference_impl.pool import factory
from reference_impl.pool.determinism import (
    SETTINGS_DIR,
    DeterminismSettingsError,
    load_settings,
    parse_settings,
)
from reference_impl.pool.devices import DeviceRegistry
from reference_impl.pool.manager import PoolManager
from tests.fixtures.pool_kit import Recorder, config, fake_factory, launched, no_nvml


@pytest.mark.req("OC-TEST-7002")
def test_every_engine_has_one_valid_settings_file() -> None:
    files = sorted(p.stem for p in SETTINGS_DIR.glob("*.yaml"))
    assert files == ["llamacpp", "tgi", "triton", "vllm"]
    llama = load_settings("llamacpp")
    assert llama.start_args == ("--parallel", "1", "--no-cont-batching")
    assert llama.request == {"cache_prompt": False} and llama.expect == {"slots_total": 1}
    for engine in files:
        assert load_settings(engine).max_in_flight_per_replica == 1
    assert load_settings("vllm").start_env == {"VLLM_BATCH_INVARIANT": "1"}
    with pytest.raises(DeterminismSettingsError, match="sglang"):
        load_settings("sglang")


@pytest.mark.parametrize(
    ("doc", "error"),
    [
        ([], "must be a mapping"),
        ({"engine": "vllm"}, "`engine` must be 'llamacpp'"),
        ({"engine": "llamacpp", "colour": 1}, "unknown field"),
        ({"engine": "llamacpp", "start_args": "--parallel 1"}, "start_args"),
        ({"engine": "llamacpp", "request": {"temperature": 0}}, "cannot apply"),
        ({"engine": "llamacpp", "max_in_flight_per_replica": 0}, "positive integer"),
    ],
)
def test_broken_settings_files_are_refused_with_file_and_field(doc, error: str) -> None:
    with pytest.raises(DeterminismSettingsError, match=error) as info:
        parse_settings(doc, Path("llamacpp.yaml"), "llamacpp")
    assert str(info.value).startswith("llamacpp.yaml: ")


def _manager(cfg) -> PoolManager:
    return PoolManager(
        cfg, fake_factory, Recorder(), devices=DeviceRegistry(no_nvml), heartbeat_s=0.1
    )


@pytest.mark.req("OC-TEST-7002", "ORCH-3050")
@pytest.mark.parametrize("determinism", [True, False])
def test_the_pool_manager_applies_the_settings_to_a_launched_engine(
    tmp_path: Path, determinism: bool
) -> None:
    cfg = launched(tmp_path, determinism=determinism)

    async def run() -> tuple[tuple[str, ...], int]:
        pm = _manager(cfg)
        await pm.start()
        try:
            handle = pm.pools["p0"].replicas[0]
            return handle.process.spec.argv, handle.slots_total
        finally:
            await pm.close()

    argv, slots = asyncio.run(run())
    if determinism:
        assert argv[argv.index("--parallel") + 1] == "1" and "--no-cont-batching" in argv
        assert slots == 1  # the fake engine reports 2 slots; the settings cap it at 1
    else:
        assert "--parallel" not in argv and "--no-cont-batching" not in argv
        assert slots == 2


@pytest.mark.req("OC-TEST-7002")
def test_llamacpp_adapters_get_the_request_fields_of_the_settings() -> None:
    for determinism, cache in ((True, False), (False, True)):
        pc = config(adapter=None, endpoint="http://127.0.0.1:9", determinism=determinism)
        adapter = factory.make_adapter(pc.pools[0], "p0-r0", "repo:test/tiny")
        assert adapter.cache_prompt is cache
        asyncio.run(adapter.close())
