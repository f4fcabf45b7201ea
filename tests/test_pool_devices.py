"""Devices: NVML discovery, no CPU fallback, device masks, explicit splits and headroom."""

from __future__ import annotations

import asyncio
import math
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llama_orch.reference_impl.config import OrchestratorConfig
from llama_orch.reference_impl.pool.backoff import BackoffPolicy
from llama_orch.reference_impl.pool.devices import (
    KV_BYTES_PER_TOKEN,
    MIN_KV_TOKENS,
    NO_GPU,
    SPLIT_RESERVE_BYTES,
    DeviceRegistry,
    Inventory,
    NvmlUnavailable,
    PlacementRefused,
    host_memory,
    nvml_discover,
    place_pool,
    split_fits,
)
from llama_orch.reference_impl.pool.factory import make_adapter
from llama_orch.reference_impl.pool.manager import PoolManager
from tests.fixtures.pool_kit import GIB, fake_factory, gpus, launched, no_nvml, pool_logs

L4 = ("NVIDIA L4", 24 * GIB, 20 * GIB)
SMALL = ("NVIDIA T400", 8 * GIB, 6 * GIB)


def inventory(*specs: tuple[str, int, int]) -> Inventory:
    return Inventory({g.index: g for g in gpus(*specs)()})


class FakeNvml:
    """Just the pynvml functions nvml_discover calls; device 1 lacks utilisation counters."""

    def __init__(self, fail_init: bool = False) -> None:
        self.fail_init = fail_init
        self.shut = False

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise RuntimeError("Driver Not Loaded")

    def nvmlShutdown(self) -> None:
        self.shut = True

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetName(self, h: int) -> bytes | str:
        return b"NVIDIA A10" if h == 0 else "NVIDIA L4"

    def nvmlDeviceGetUUID(self, h: int) -> str:
        return f"GPU-{h}"

    def nvmlDeviceGetMemoryInfo(self, h: int) -> SimpleNamespace:
        return SimpleNamespace(total=24 * GIB, used=GIB * (h + 1), free=24 * GIB - GIB * (h + 1))

    def nvmlDeviceGetUtilizationRates(self, h: int) -> SimpleNamespace:
        if h == 1:
            raise RuntimeError("Not Supported")
        return SimpleNamespace(gpu=37, memory=5)


def test_nvml_discovery_reads_name_memory_uuid_and_utilisation() -> None:
    nvml = FakeNvml()
    found = nvml_discover(nvml)
    assert [(g.index, g.name, g.uuid) for g in found] == [
        (0, "NVIDIA A10", "GPU-0"),
        (1, "NVIDIA L4", "GPU-1"),
    ]
    assert found[0].memory_used == GIB and found[1].memory_free == 22 * GIB
    assert found[0].utilization_pct == 37.0 and found[1].utilization_pct is None
    assert nvml.shut
    with pytest.raises(NvmlUnavailable, match="Driver Not Loaded"):
        nvml_discover(FakeNvml(fail_init=True))


@pytest.mark.req("ORCH-1101")
def test_without_nvml_the_log_says_so_once() -> None:
    try:
        nvml_discover()
    except NvmlUnavailable:
        pass
    else:  # pragma: no cover - only on a machine with an NVIDIA GPU
        pytest.skip("this machine has a working NVML")
    registry = DeviceRegistry()
    with pool_logs() as records:
        assert registry.inventory().gpus == {} and registry.sample() == []
    lines = [r.getMessage() for r in records if "NVML unavailable" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].startswith("NVML unavailable: ")
    assert lines[0].endswith(" — only CPU carve-out pools will serve")


@pytest.mark.req("ORCH-1101", "OC-POOL-3012")
def test_gpu_pools_never_fall_back_to_the_cpu() -> None:
    nothing = Inventory({}, "NVML Shared Library Not Found")
    with pytest.raises(PlacementRefused) as err:
        place_pool([0], inventory=nothing)
    assert str(err.value) == NO_GPU and err.value.permanent
    carve_out = place_pool([0], inventory=nothing, allow_cpu_inference=True)
    assert carve_out.cpu and carve_out.cuda_visible_devices == ""
    # The carve-out never covers a GPU pool that lost its device.
    with pytest.raises(PlacementRefused, match="device 2 not found"):
        place_pool([2], inventory=inventory(L4), allow_cpu_inference=True)


@pytest.mark.req("OC-POOL-3020", "ORCH-3011")
def test_placement_is_exactly_the_mask() -> None:
    placed = place_pool([1, 3], inventory=inventory(L4, L4, L4, L4))
    assert placed.devices == (1, 3) and placed.cuda_visible_devices == "1,3"
    assert placed.shares == (0.5, 0.5)  # identical GPUs: an even split
    assert place_pool([], inventory=inventory(L4), allow_cpu_inference=True).cpu


@pytest.mark.req("OC-POOL-3021", "ORCH-3012")
def test_heterogeneous_splits_must_be_explicit_and_fit_the_smallest_gpu() -> None:
    mixed = inventory(L4, SMALL)
    with pytest.raises(PlacementRefused, match="explicit tensor_split") as err:
        place_pool([0, 1], inventory=mixed)
    assert "NVIDIA T400" in str(err.value) and err.value.permanent
    with pytest.raises(PlacementRefused) as err:
        place_pool([0, 1], inventory=mixed, tensor_split=[0.5, 0.5], model_bytes=20 * GIB, ctx=0)
    assert str(err.value) == (
        "insufficient VRAM on device 1: need 10.2 GiB (share 0.50 of the weights and 0 tokens "
        "of KV cache, plus a 256.0 MiB reserve), free 6.0 GiB"
    )
    fits = place_pool([0, 1], inventory=mixed, tensor_split=[0.75, 0.25], model_bytes=20 * GIB)
    assert fits.shares == (0.75, 0.25) and fits.explicit_split
    even = place_pool([0, 1], inventory=mixed, homogeneous=True)
    assert even.shares == (0.5, 0.5)  # the operator declared them identical


@pytest.mark.req("OC-POOL-3002", "ORCH-3003")
def test_headroom_checks_vram_per_device_and_host_ram_for_cpu_pools() -> None:
    with pytest.raises(PlacementRefused, match=r"insufficient VRAM on device 0: need 30\.0 GiB"):
        place_pool([0], inventory=inventory(L4), model_bytes=30 * GIB)
    with pytest.raises(PlacementRefused) as err:
        place_pool(
            [],
            inventory=Inventory({}),
            allow_cpu_inference=True,
            model_bytes=GIB - 1024 * KV_BYTES_PER_TOKEN,
            ctx=1024,
            host_free=GIB // 2,
        )
    assert str(err.value) == "insufficient host RAM: need 1.0 GiB, free 512.0 MiB"
    assert not err.value.permanent  # memory may free up: retried with backoff


def test_host_memory_reads_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  2048 kB\nMemFree: 10 kB\nMemAvailable:  1024 kB\n")
    assert host_memory(meminfo) == (2048 * 1024, 1024 * 1024)
    assert host_memory(tmp_path / "absent") is None


def pools(*pcs: dict) -> OrchestratorConfig:
    base = {"engine": "llamacpp", "model": "repo:test/tiny"}
    return OrchestratorConfig.model_validate({"pools": [{**base, **pc} for pc in pcs]})


@pytest.mark.req("ORCH-1101", "OC-POOL-3012", "OC-POOL-3003", "OC-POOL-3001")
def test_no_gpu_keeps_gpu_pools_unready_and_serves_the_carve_out_and_mocks() -> None:
    cfg = pools(
        {"id": "gpu", "devices": [0], "endpoint": "http://127.0.0.1:9"},
        {"id": "mock-gpu", "devices": [0], "adapter": "mock"},
        {"id": "cpu", "devices": [], "allow_cpu_inference": True, "adapter": "mock"},
    )
    made: list[str] = []

    def factory(pc, replica_id, model_ref, **kw):
        made.append(pc.id)
        return make_adapter(pc, replica_id, model_ref, **kw)

    async def run() -> None:
        pm = PoolManager(cfg, factory, devices=DeviceRegistry(no_nvml), backoff=BackoffPolicy(0.01))
        await pm.start()
        await asyncio.sleep(0.1)  # ten backoff periods: a retry would have happened
        gpu = pm.pools["gpu"]
        assert gpu.last_error == "no NVIDIA GPU" and not gpu.ready and not gpu.live
        assert gpu.preload_state.value == "failed" and gpu.restarts == 0
        assert "gpu" not in made  # no engine client was even created
        assert pm.pools["mock-gpu"].ready  # a mock never needs a GPU
        assert pm.pools["cpu"].ready
        await pm.close()

    asyncio.run(run())


@pytest.mark.req("OC-POOL-3002", "ORCH-3003", "OC-POOL-3003")
def test_short_vram_fails_preload_at_once_and_retries_with_backoff(tmp_path: Path) -> None:
    tiny = gpus(("NVIDIA L4", 24 * GIB, 1024))  # 1 KiB free
    cfg = launched(tmp_path, devices=[0], allow_cpu_inference=False)

    async def run() -> None:
        pm = PoolManager(
            cfg,
            fake_factory,
            devices=DeviceRegistry(tiny),
            backoff=BackoffPolicy(initial_s=0.02, max_s=0.02, jitter=0),
        )
        await pm.start()
        pool = pm.pools["p0"]
        assert not pool.ready and pool.preload_state.value == "failed"
        assert pool.last_error.startswith("insufficient VRAM on device 0: need 16.0 MiB")
        assert pool.replicas[0].process is None  # the engine was never started
        await asyncio.sleep(0.1)
        assert pool.restarts >= 2 and pool.preload_outcomes["failure"] >= 2
        await pm.close()

    asyncio.run(run())


# -- ORCH-3052: resident KV capped per GPU on split pools --------------------------------------

KV = KV_BYTES_PER_TOKEN


def closed_form_cap(share: Fraction, model_bytes: int, free: int) -> int:
    """The cap of one device in exact arithmetic: share * (model + ctx * KV) <= free - reserve."""
    return math.floor(((free - SPLIT_RESERVE_BYTES) / share - model_bytes) / KV)


@pytest.mark.req("ORCH-3052")
def test_heterogeneous_split_caps_the_context_at_what_the_smallest_share_holds() -> None:
    mixed = inventory(("NVIDIA L4", 24 * GIB, 24 * GIB), ("NVIDIA T400", 8 * GIB, 8 * GIB))
    split = [0.75, 0.25]
    placed = place_pool([0, 1], inventory=mixed, tensor_split=split, model_bytes=28 * GIB)
    # Device 1: (8 GiB - reserve) / 0.25 - 28 GiB = 3 GiB of KV = 49152 tokens; device 0 more.
    assert closed_form_cap(Fraction(1, 4), 28 * GIB, 8 * GIB) == 49152
    assert closed_form_cap(Fraction(3, 4), 28 * GIB, 24 * GIB) > 49152
    assert (placed.kv_cap_tokens, placed.kv_cap_device) == (49152, 1)
    assert placed.capped(65536) == 49152 and placed.capped(4096) == 4096
    assert split_fits(0.25, 28 * GIB, 49152, 8 * GIB)
    assert not split_fits(0.25, 28 * GIB, 49153, 8 * GIB)
    # Weights that leave no room for the least useful context are refused, not capped.
    with pytest.raises(PlacementRefused, match="insufficient VRAM on device 1") as err:
        place_pool([0, 1], inventory=mixed, tensor_split=split, model_bytes=31 * GIB, ctx=8192)
    assert f"{MIN_KV_TOKENS} tokens of KV cache" in str(err.value)


@pytest.mark.req("ORCH-3052")
def test_unsplit_and_roomy_homogeneous_pools_keep_their_context() -> None:
    single = place_pool([0], inventory=inventory(L4), model_bytes=GIB, ctx=8192)
    assert single.kv_cap_tokens is None and single.capped(8192) == 8192
    twins = place_pool([0, 1], inventory=inventory(L4, L4), model_bytes=8 * GIB, ctx=32768)
    assert twins.shares == (0.5, 0.5) and twins.kv_cap_tokens > 32768
    assert twins.capped(32768) == 32768
    assert place_pool([0, 1], inventory=inventory(L4, L4)).kv_cap_tokens is None  # no model


@pytest.mark.req("ORCH-3052")
@settings(max_examples=max(10, settings.default.max_examples // 4), deadline=None)
@given(
    devices=st.lists(
        st.tuples(st.integers(1, 10), st.integers(SPLIT_RESERVE_BYTES, 80 * GIB)),
        min_size=2,
        max_size=4,
    ),
    model_bytes=st.integers(0, 40 * GIB),
    ctx=st.integers(0, 1 << 20),
)
def test_every_device_fits_at_the_cap_and_the_limiting_one_not_one_token_more(
    devices: list[tuple[int, int]], model_bytes: int, ctx: int
) -> None:
    gpu_specs = [("NVIDIA GPU", free, free) for _, free in devices]
    split = [float(ratio) for ratio, _ in devices]
    shares = [r / sum(split) for r in split]
    frees = [free for _, free in devices]
    mask = list(range(len(devices)))
    least = min(ctx, MIN_KV_TOKENS)
    inv = inventory(*gpu_specs)
    if not all(split_fits(s, model_bytes, least, f) for s, f in zip(shares, frees, strict=True)):
        with pytest.raises(PlacementRefused, match="insufficient VRAM"):
            place_pool(mask, inventory=inv, tensor_split=split, model_bytes=model_bytes, ctx=ctx)
        return
    placed = place_pool(mask, inventory=inv, tensor_split=split, model_bytes=model_bytes, ctx=ctx)
    cap, limit = placed.kv_cap_tokens, placed.kv_cap_device
    assert cap is not None and cap >= least and placed.capped(ctx) == min(ctx, cap)
    assert all(split_fits(s, model_bytes, cap, f) for s, f in zip(shares, frees, strict=True))
    assert not split_fits(shares[limit], model_bytes, cap + 1, frees[limit])
    exact = min(
        closed_form_cap(Fraction(r, sum(r for r, _ in devices)), model_bytes, f) for r, f in devices
    )
    assert abs(cap - exact) <= 1  # float shares may round one token either way


def capped_pool(tmp_path: Path, *args: str, ctx: int = 8192) -> OrchestratorConfig:
    """A launched pool split 3:1 over a roomy GPU and one whose quarter holds 1000 KV tokens."""
    cfg = launched(
        tmp_path, *args, devices=[0, 1], tensor_split=[0.75, 0.25], allow_cpu_inference=False
    )
    data = cfg.model_dump()
    data["pools"][0]["ctx"] = ctx
    return OrchestratorConfig.model_validate(data)


def small_share_gpus(model_bytes: int):
    free = SPLIT_RESERVE_BYTES + (model_bytes + 1000 * KV) // 4
    return gpus(("NVIDIA L4", 24 * GIB, 20 * GIB), ("NVIDIA T400", 8 * GIB, free))


@pytest.mark.req("ORCH-3052")
def test_launched_split_engine_gets_the_capped_context(tmp_path: Path) -> None:
    cfg = capped_pool(tmp_path)
    model_bytes = cfg.model_path_for(cfg.pools[0]).stat().st_size

    async def run() -> None:
        pm = PoolManager(cfg, fake_factory, devices=DeviceRegistry(small_share_gpus(model_bytes)))
        with pool_logs() as records:
            await pm.start()
        try:
            pool = pm.pools["p0"]
            assert pool.ready and pool.ctx_max == 1000  # what the replica sets and admission see
            argv = pool.replicas[0].process.spec.argv
            assert argv[argv.index("--ctx-size") + 1] == "1000"
            capped = [r for r in records if getattr(r, "event", None) == "kv_capped"]
            assert len(capped) == 1 and capped[0].levelname == "WARNING"
            assert (capped[0].pool_id, capped[0].ctx, capped[0].kv_cap_tokens) == ("p0", 8192, 1000)
            assert capped[0].device == 1
        finally:
            await pm.close()

    asyncio.run(run())


@pytest.mark.req("ORCH-3052")
def test_operator_ctx_size_above_the_cap_is_a_permanent_fault(tmp_path: Path) -> None:
    cfg = capped_pool(tmp_path, "--ctx-size", "4096")
    model_bytes = cfg.model_path_for(cfg.pools[0]).stat().st_size

    async def run() -> None:
        discover = small_share_gpus(model_bytes)
        pm = PoolManager(cfg, fake_factory, devices=DeviceRegistry(discover))
        await pm.start()
        try:
            pool = pm.pools["p0"]
            assert not pool.ready and pool.preload_state.value == "failed"
            assert "--ctx-size 4096 exceeds the KV cap of 1000 tokens" in pool.last_error
            assert pool.replicas[0].process is None and pool.restarts == 0  # not retried
        finally:
            await pm.close()

    asyncio.run(run())
