"""Determinism settings files and their application by the pool manager (OC-TEST-7002,
ORCH-3050): start flags on launched engines, per-request fields, the in-flight cap."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from llama_orch.reference_impl.adapters.mock import MockAdapter
from llama_orch.reference_impl.pool import determinism as settings_module
from llama_orch.reference_impl.pool import factory
from llama_orch.reference_impl.pool.backoff import BackoffPolicy
from llama_orch.reference_impl.pool.determinism import (
    DeterminismSettingsError,
    load_settings,
    parse_settings,
    settings_dir,
)
from llama_orch.reference_impl.pool.devices import DeviceRegistry
from llama_orch.reference_impl.pool.manager import PoolManager
from tests.fixtures.pool_kit import Recorder, config, fake_factory, launched, no_nvml

ROOT = Path(__file__).resolve().parents[1]
FAST = BackoffPolicy(initial_s=0.02, max_s=0.05, jitter=0)


@pytest.mark.req("OC-TEST-7002")
def test_every_engine_has_one_valid_settings_file() -> None:
    files = sorted(p.stem for p in settings_dir().glob("*.yaml"))
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


def test_importing_the_pool_manager_does_not_need_the_determinism_suite() -> None:
    """The settings folder is located on first use, not when the pool manager is imported."""
    code = (
        "import sys\n"
        "import llama_orch.reference_impl.pool.manager, llama_orch.reference_impl.pool.factory\n"
        "print(sorted(m for m in sys.modules if m.startswith('llama_orch.determinism_suite')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


class _Recording:
    """A factory of mock adapters that keeps the keyword arguments it was given."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, pc: Any, replica_id: str, model_ref: str, **kw: Any) -> MockAdapter:
        self.calls.append(kw)
        return MockAdapter(pc.engine.value, replica_id, model_ref=model_ref, ctx_max=2048, slots=3)


BROKEN = {
    "vllm": ("engine: vllm\nstart_args: --x\n", "`start_args` must be a list of strings"),
    "llamacpp": (
        "engine: llamacpp\nmax_in_flight_per_replica: 0\n",
        "`max_in_flight_per_replica` must be a positive integer",
    ),
}


@pytest.mark.req("ORCH-3050", "OC-POOL-3003")
@pytest.mark.parametrize("kind", ["vllm", "llamacpp-launched", "missing"])
def test_a_broken_settings_file_fails_the_pool_permanently_until_a_reload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """A vLLM pool got stuck in `loading`, a launched llama.cpp pool retried forever: both now
    fail at once, permanently, naming the file and the field; a reload after the fix works."""
    folder = tmp_path / "settings"
    folder.mkdir()
    monkeypatch.setattr(settings_module, "settings_dir", lambda: folder)
    engine = "llamacpp" if kind == "llamacpp-launched" else "vllm"
    if kind == "llamacpp-launched":
        cfg = launched(tmp_path, determinism=True)
        make: Any = fake_factory
    else:
        cfg = config(engine="vllm", determinism=True)
        make = _Recording()
    if kind != "missing":
        (folder / f"{engine}.yaml").write_text(BROKEN[engine][0])

    async def run() -> tuple[Any, ...]:
        pm = PoolManager(
            cfg, make, Recorder(), devices=DeviceRegistry(no_nvml), backoff=FAST, heartbeat_s=0.1
        )
        await pm.start()
        pool = pm.pools["p0"]
        try:
            await asyncio.sleep(0.3)  # several backoff periods: no automatic retry
            failed = (
                pool.preload_state.value,
                pool.last_error,
                pool.restarts,
                dict(pool.preload_outcomes),
                [h.adapter for h in pool.replicas],
                pm._rt["p0"].task.done(),
            )
            shutil.copy(settings_dir() / f"{engine}.yaml", folder)  # the fix
            reloaded = await pm.reload("p0", "repo:test/tiny")
            return failed, reloaded, pool.ready, pool.replicas[0].slots_total
        finally:
            await pm.close()

    (state, last_error, restarts, outcomes, adapters, stopped), reloaded, ready, slots = (
        asyncio.run(run())
    )
    assert state == "failed" and restarts == 0 and stopped
    assert outcomes == {"success": 0, "failure": 1} and adapters == [None]
    prefix = "determinism settings of pool p0: "
    if kind == "missing":
        assert last_error.startswith(f"{prefix}no determinism settings for engine 'vllm' (")
        assert str(folder / "vllm.yaml") in last_error
    else:
        assert last_error == f"{prefix}{engine}.yaml: {BROKEN[engine][1]}"
    assert reloaded and ready and slots == 1  # the settings' in-flight cap applies again
    if isinstance(make, _Recording):  # the factory gets the settings the manager resolved
        assert make.calls[-1]["determinism"] == load_settings("vllm")
