"""Model files are checked against their SHA-256 before load, and the digest is reported."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from llama_orch.reference_impl.config import OrchestratorConfig
from llama_orch.reference_impl.pool.catalog import DigestCache, UntrustedArtifact, file_sha256
from llama_orch.reference_impl.pool.devices import DeviceRegistry
from llama_orch.reference_impl.pool.factory import make_adapter
from llama_orch.reference_impl.pool.manager import PoolManager
from tests.fixtures.pool_kit import config, model_file, no_nvml


def start(cfg: OrchestratorConfig) -> tuple[PoolManager, bool]:
    """Start the pools, let a failed one reach its first backoff; (manager, ready)."""

    async def run() -> tuple[PoolManager, bool]:
        pm = PoolManager(cfg, make_adapter, devices=DeviceRegistry(no_nvml))
        await pm.start()
        await asyncio.sleep(0.05)
        ready = pm.pools["p0"].ready
        await pm.close()
        return pm, ready

    return asyncio.run(run())


def test_chunked_digest_equals_the_whole_file_digest(tmp_path: Path) -> None:
    path, digest = model_file(tmp_path, size=10_000)
    assert (
        file_sha256(path, chunk_bytes=333)
        == digest
        == hashlib.sha256(path.read_bytes()).hexdigest()
    )


@pytest.mark.req("ORCH-3037", "ORCH-3042")
def test_verify_returns_the_digest_and_refuses_a_mismatch(tmp_path: Path) -> None:
    path, digest = model_file(tmp_path)
    cache = DigestCache()
    assert cache.verify(path, digest.upper()) == f"sha256:{digest}"
    wrong = "0" * 64
    with pytest.raises(UntrustedArtifact) as err:
        cache.verify(path, wrong)
    text = str(err.value)
    assert text.startswith("UNTRUSTED_ARTIFACT") and digest in text and wrong in text


@pytest.mark.req("ORCH-3042")
def test_digests_are_cached_until_the_file_changes_and_the_cache_is_bounded(
    tmp_path: Path,
) -> None:
    path, digest = model_file(tmp_path)
    cache = DigestCache(max_entries=2)
    for _ in range(3):
        cache.verify(path, digest)
    assert cache.hashed == 1  # restarts do not hash the file again
    path.write_bytes(b"replaced")
    os.utime(path, ns=(1, 1))
    assert cache.sha256(path) == hashlib.sha256(b"replaced").hexdigest()
    assert cache.hashed == 2
    for i in range(3):
        other = tmp_path / f"m{i}"
        other.write_bytes(bytes([i]))
        cache.sha256(other)
    assert len(cache) == 2  # least recently used entries are dropped


@pytest.mark.req("ORCH-3037", "OC-POOL-3003")
def test_a_pool_with_a_wrong_model_file_stays_unready_without_retrying(tmp_path: Path) -> None:
    path, digest = model_file(tmp_path)
    pm, ready = start(config(model_path=str(path), model_sha256="ab" * 32))
    pool = pm.pools["p0"]
    assert not ready and pool.preload_state.value == "failed"
    assert pool.last_error.startswith("UNTRUSTED_ARTIFACT")
    assert f"sha256:{digest}" in pool.last_error and "ab" * 32 in pool.last_error
    assert pool.restarts == 0  # a wrong file does not fix itself: no restart loop


@pytest.mark.req("ORCH-3037", "ORCH-3042")
def test_a_verified_model_reports_the_file_digest(tmp_path: Path) -> None:
    path, digest = model_file(tmp_path)
    pm, ready = start(config(model_path=str(path), model_sha256=digest))
    pool = pm.pools["p0"]
    assert ready and pool.last_error is None
    assert pool.preload_outcomes == {"success": 1, "failure": 0}
    assert pool.model_digest == f"sha256:{digest}"


def test_permissive_trust_policy_admits_a_mismatch_with_the_actual_digest(tmp_path: Path) -> None:
    path, digest = model_file(tmp_path)
    cfg = config(model_path=str(path), model_sha256="cd" * 32)
    cfg = cfg.model_copy(
        update={"catalog": cfg.catalog.model_validate({"trust_policy": {"mode": "permissive"}})}
    )
    pm, ready = start(cfg)
    pool = pm.pools["p0"]
    assert (
        ready and pool.preload_outcomes["success"] == 1 and pool.model_digest == f"sha256:{digest}"
    )


def test_a_missing_model_file_is_retried(tmp_path: Path) -> None:
    pm, ready = start(config(model_path=str(tmp_path / "absent.gguf"), model_sha256="ab" * 32))
    assert not ready
    pool = pm.pools["p0"]
    assert pool.last_error.startswith("model file not found") and pool.restarts == 1
