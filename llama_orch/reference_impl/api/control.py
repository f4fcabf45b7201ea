"""Control plane: pool health, drain and reload, replica sets, capabilities."""

from __future__ import annotations

import hashlib

import falcon

from llama_orch.reference_impl.api.body import read_model
from llama_orch.reference_impl.api.errors import ApiError
from llama_orch.reference_impl.api.schemas import DrainRequest, ReloadRequest
from llama_orch.reference_impl.pool.state import PoolState
from llama_orch.reference_impl.service.orchestrator import Orchestrator

API_VERSION = "1.0.0"  # equals info.version of contracts/openapi/*.yaml (ORCH-3096)


def _pool(orch: Orchestrator, pool_id: str) -> PoolState:
    pool = orch.pools.pools.get(pool_id)
    if pool is None:
        raise ApiError(404, "INVALID_PARAMS", f"no pool {pool_id!r}")
    return pool


class PoolHealth:
    def __init__(self, orch: Orchestrator) -> None:
        self._orch = orch

    async def on_get(self, req, resp, pool_id: str) -> None:
        pool = _pool(self._orch, pool_id)
        view = self._orch.scheduler.snapshot(self._orch.now_ms()).pools[pool_id]
        resp.media = {
            "live": pool.live,
            "ready": pool.ready,
            "draining": pool.draining,
            "last_error": pool.last_error,
            "metrics": {
                "preload_state": pool.preload_state.value,
                "queue_depth": sum(view.queue_depth.values()),
                "running": view.running,
                "slots_total": view.slots_total,
                "slots_free": view.slots_free,
                "model_ref": pool.model_ref,
                "engine_version": pool.engine_version,
                "model_digest": pool.model_digest,
                "restarts": pool.restarts,
                "breaker_open": pool.breaker_open,
                # Start-up self-test (ORCH-3049) of the serving model, item -> pass/fail/skip,
                # null before one; a later attempt that did not take over (failed reload) too.
                "self_test": self._orch.pools.self_test(pool_id),
                "self_test_last_attempt": self._orch.pools.self_test_last_attempt(pool_id),
            },
        }


class PoolDrain:
    def __init__(self, orch: Orchestrator, max_body: int) -> None:
        self._orch = orch
        self._max_body = max_body

    async def on_post(self, req, resp, pool_id: str) -> None:
        _pool(self._orch, pool_id)
        body = await read_model(req, DrainRequest, self._max_body)
        self._orch.drain(pool_id, body.deadline_ms)
        resp.status = falcon.HTTP_202


class PoolReload:
    def __init__(self, orch: Orchestrator, max_body: int) -> None:
        self._orch = orch
        self._max_body = max_body

    async def on_post(self, req, resp, pool_id: str) -> None:
        _pool(self._orch, pool_id)
        body = await read_model(req, ReloadRequest, self._max_body)
        self._orch.reload(pool_id, body.new_model_ref)
        resp.status = falcon.HTTP_202


class ReplicaSets:
    """Pools agreeing on engine, model, quant, ctx, engine and sampler versions form a set."""

    def __init__(self, orch: Orchestrator) -> None:
        self._orch = orch

    async def on_get(self, req, resp) -> None:
        snapshot = self._orch.scheduler.snapshot(self._orch.now_ms())
        groups: dict[tuple[str, ...], list[PoolState]] = {}
        for pool in self._orch.pools.pools.values():
            groups.setdefault(pool.replica_set_key, []).append(pool)
        out = []
        for key, pools in sorted(groups.items()):
            views = [snapshot.pools[p.pool_id] for p in pools]
            total = sum(v.slots_total for v in views)
            free = sum(v.slots_free for v in views)
            out.append(
                {
                    "id": "rs-" + hashlib.sha256("\x00".join(key).encode()).hexdigest()[:12],
                    "engine": key[0],
                    "load": round((total - free) / total, 4) if total else 0.0,
                    "slots_total": total,
                    "slots_free": free,
                    # Replica ids a task may pin with `placement.replica_id`.
                    "replicas": [
                        {
                            "id": r.replica_id,
                            "pool_id": p.pool_id,
                            "ready": r.ready and p.ready,  # a draining pool takes no task
                            "slots_total": r.slots_total,
                        }
                        for p in pools
                        for r in p.replicas
                    ],
                    "slo": {
                        "pools": [p.pool_id for p in pools],
                        "model_ref": key[1],
                        "engine_version": key[4],
                        "model_digest": pools[0].model_digest,
                        "sampler_profile_version": key[5],
                        "queue_depth": sum(sum(v.queue_depth.values()) for v in views),
                    },
                }
            )
        resp.media = out


class Capabilities:
    """What clients may rely on, with the API version they can pin (ORCH-3095, ORCH-3096)."""

    def __init__(self, orch: Orchestrator) -> None:
        self._orch = orch

    async def on_get(self, req, resp) -> None:
        engines: dict[str, dict] = {}
        for pc in self._orch.config.pools:
            entry = engines.setdefault(
                pc.engine.value,
                {
                    "engine": pc.engine.value,
                    "ctx_max": 0,
                    "supported_workloads": ["completion"],
                    "rate_limits": {},
                    "features": {
                        "sse_resume": True,
                        "sessions": True,
                        "cpu_inference": False,
                        "preemption_soft": False,
                        "deadlines": False,
                        "replica_pinning": True,
                        "stop_sequences": True,
                    },
                },
            )
            entry["ctx_max"] = max(entry["ctx_max"], self._orch.pools.pools[pc.id].ctx_max)
            entry["rate_limits"][pc.id] = {"queue_capacity": pc.queue.capacity}
            features = entry["features"]
            features["cpu_inference"] |= pc.allow_cpu_inference
            features["preemption_soft"] |= pc.preemption.mode.value == "soft"
            features["deadlines"] |= pc.deadlines.reject_infeasible
            features["policy_host"] = self._orch.policy is not None  # specs/50
        resp.media = {"api_version": API_VERSION, "engines": list(engines.values())}
        if self._orch.policy is not None:  # a policy host (extended profile, specs/50)
            resp.media["policy_host"] = self._orch.policy.describe()
