"""Speculative decoding and prefix caching are counted before an engine starts (ORCH-3020).

llama-server keeps a prompt cache in host RAM unless told otherwise (`--cache-ram`, 8192 MiB by
default in the pinned build), and a draft model (`--model-draft`) brings weights and a KV cache
of its own. A pool whose engine would not fit once these are counted does not start; the
cause names what was counted.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from llama_orch.reference_impl.config import OrchestratorConfig
from llama_orch.reference_impl.pool.catalog import DigestCache
from llama_orch.reference_impl.pool.devices import (
    KV_BYTES_PER_TOKEN,
    DeviceRegistry,
    Inventory,
    PlacementRefused,
    estimate_footprint,
    place_pool,
)
from llama_orch.reference_impl.pool.preflight import (
    DEFAULT_PROMPT_CACHE_MIB,
    PoolFault,
    Preflight,
    preflight,
)
from tests.fixtures.pool_kit import GIB, gpus, launched, no_nvml

MIB = 1 << 20
CTX = 256  # the context of `launched` pools
MODEL = 4096  # the size of `launched`'s model file
BASE = estimate_footprint(MODEL, CTX)  # weights and KV cache, nothing else


def _preflight(cfg: OrchestratorConfig, host_free: int, devices: DeviceRegistry | None = None):
    return asyncio.run(
        preflight(
            cfg,
            cfg.pools[0],
            catalog=DigestCache(),
            devices=devices or DeviceRegistry(no_nvml),
            host_free=lambda: host_free,
        )
    )


@pytest.mark.req("ORCH-3020", "ORCH-3003")
def test_the_default_prompt_cache_is_counted_in_host_ram(tmp_path: Path) -> None:
    cache = DEFAULT_PROMPT_CACHE_MIB * MIB
    with pytest.raises(PoolFault) as err:
        _preflight(launched(tmp_path), host_free=BASE + cache - 1)
    assert "prompt cache 8.0 GiB" in str(err.value) and not err.value.permanent
    assert isinstance(_preflight(launched(tmp_path), host_free=BASE + cache), Preflight)


@pytest.mark.req("ORCH-3020")
def test_a_configured_or_disabled_prompt_cache_counts_what_it_says(tmp_path: Path) -> None:
    sized = launched(tmp_path, "--cache-ram", "64")
    with pytest.raises(PoolFault, match=r"of which prompt cache 64\.0 MiB"):
        _preflight(sized, host_free=BASE + 64 * MIB - 1)
    assert isinstance(_preflight(sized, host_free=BASE + 64 * MIB), Preflight)
    off = launched(tmp_path, "-cram=0")
    assert isinstance(_preflight(off, host_free=BASE), Preflight)  # nothing beyond the model


@pytest.mark.req("ORCH-3020")
def test_an_unbounded_prompt_cache_is_refused_for_good(tmp_path: Path) -> None:
    with pytest.raises(PoolFault, match="unbounded") as err:
        _preflight(launched(tmp_path, "--cache-ram", "-1"), host_free=100 * GIB)
    assert err.value.permanent  # retrying cannot make an unbounded cache fit


@pytest.mark.req("ORCH-3020", "ORCH-3003")
def test_a_draft_model_and_its_kv_cache_are_counted(tmp_path: Path) -> None:
    draft = tmp_path / "draft.gguf"
    draft.write_bytes(b"\0" * (3 * MIB))
    with_draft = estimate_footprint(MODEL, CTX, draft_bytes=3 * MIB)
    assert with_draft == BASE + 3 * MIB + CTX * KV_BYTES_PER_TOKEN
    cfg = launched(tmp_path, "--model-draft", str(draft), "--cache-ram", "0")
    with pytest.raises(PoolFault, match="insufficient host RAM"):
        _preflight(cfg, host_free=with_draft - 1)  # enough for the model alone, not the draft
    assert isinstance(_preflight(cfg, host_free=with_draft), Preflight)
    missing = launched(tmp_path, "-md", str(tmp_path / "absent.gguf"))
    with pytest.raises(PoolFault, match=r"-md .*absent\.gguf"):
        _preflight(missing, host_free=100 * GIB)


@pytest.mark.req("ORCH-3020")
def test_on_a_gpu_the_draft_counts_in_vram_and_the_prompt_cache_in_host_ram() -> None:
    l4 = Inventory({g.index: g for g in gpus(("NVIDIA L4", 24 * GIB, 2 * GIB))()})
    model = GIB
    plain = estimate_footprint(model, 1024)
    place_pool([0], inventory=l4, model_bytes=model, ctx=1024)  # fits without a draft
    with pytest.raises(PlacementRefused, match="insufficient VRAM on device 0"):
        place_pool([0], inventory=l4, model_bytes=model, ctx=1024, draft_bytes=2 * GIB - plain)
    with pytest.raises(PlacementRefused, match=r"prompt cache 8\.0 GiB\), free 4\.0 GiB"):
        place_pool(
            [0],
            inventory=l4,
            model_bytes=model,
            ctx=1024,
            host_free=4 * GIB,
            host_cache_bytes=8 * GIB,
        )
