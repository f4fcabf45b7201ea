"""Topology hints from config reach placement (ORCH-3013, ORCH-3092).

The core's tie-break on `topology_rank` is tested in test_core_residency_slo.py; this follows a
hint from the operator's config through the pool manager to the service's pool choice, so a
hint that is parsed but dropped on the way fails here.
"""

from __future__ import annotations

import asyncio

import pytest

from llama_orch.reference_impl.config import OrchestratorConfig
from llama_orch.reference_impl.core.types import Priority
from llama_orch.reference_impl.pool.devices import DeviceRegistry
from llama_orch.reference_impl.pool.factory import make_adapter
from llama_orch.reference_impl.pool.manager import PoolManager
from llama_orch.reference_impl.service.admission import pick_pool
from llama_orch.reference_impl.service.records import NewTask
from tests.fixtures.pool_kit import no_nvml


def _config(*interconnects: str | None) -> OrchestratorConfig:
    pools = []
    for n, link in enumerate(interconnects):
        pool = {
            "id": f"p{n}",
            "engine": "llamacpp",
            "adapter": "mock",
            "model": "repo:test/tiny",
            "devices": [],
            "allow_cpu_inference": True,
        }
        if link is not None:
            pool["topology"] = {"interconnect": link, "numa_node": n}
        pools.append(pool)
    return OrchestratorConfig.model_validate({"pools": pools})


def _task() -> NewTask:
    return NewTask(
        task_id="t",
        session_id="s",
        engine="llamacpp",
        model_ref="repo:test/tiny",
        ctx=0,
        priority=Priority.INTERACTIVE,
        max_tokens=4,
        deadline_ms=60_000,
        prompt="hi",
    )


def _picks(cfg: OrchestratorConfig, loads: list[dict[str, float]]) -> tuple[list, list[str]]:
    """Start the (mock) pools, wait until all are Ready, pick a pool under each load map."""

    async def run() -> tuple[list, list[str]]:
        pm = PoolManager(cfg, make_adapter, devices=DeviceRegistry(no_nvml))
        await pm.start()
        try:
            for _ in range(200):
                if all(p.ready for p in pm.pools.values()):
                    break
                await asyncio.sleep(0.02)
            pools = list(pm.pools.values())
            assert all(p.ready for p in pools), [(p.pool_id, p.last_error) for p in pools]
            ranks = [p.topology_rank for p in pools]
            return ranks, [pick_pool(pools, _task(), load.__getitem__).pool_id for load in loads]
        finally:
            await pm.close()

    return asyncio.run(run())


@pytest.mark.req("ORCH-3013", "ORCH-3092")
def test_equal_pools_go_to_the_better_interconnect_named_in_config() -> None:
    idle = {"p0": 0.0, "p1": 0.0, "p2": 0.0}
    busier = {**idle, "p1": 0.5}  # the hint only breaks ties: load comes first
    ranks, picked = _picks(_config("pcie", "nvlink", None), [idle, busier])
    assert ranks == [1, 0, 2]  # NVLink 0, PCIe 1, no hint 2
    assert picked == ["p1", "p0"]
    ranks, picked = _picks(_config(None, "pcie"), [{"p0": 0.0, "p1": 0.0}])
    assert picked == ["p1"]  # a PCIe hint beats no hint at all
