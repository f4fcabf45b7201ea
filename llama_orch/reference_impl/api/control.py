"""Control plane: pool health, drain and reload, replica sets, capabilities.

The service builds each read model (service/views.py); these resources only name its fields.
"""

from __future__ import annotations

import falcon

from llama_orch.reference_impl.api.body import read_model
from llama_orch.reference_impl.api.errors import ApiError
from llama_orch.reference_impl.api.schemas import DrainRequest, ReloadRequest
from llama_orch.reference_impl.service.orchestrator import Orchestrator

API_VERSION = "1.0.0"  # equals info.version of contracts/openapi/*.yaml (ORCH-3096)


def _known(orch: Orchestrator, pool_id: str) -> None:
    if not orch.has_pool(pool_id):
        raise ApiError(404, "INVALID_PARAMS", f"no pool {pool_id!r}")


class PoolHealth:
    def __init__(self, orch: Orchestrator) -> None:
        self._orch = orch

    async def on_get(self, req, resp, pool_id: str) -> None:
        h = self._orch.pool_health(pool_id)
        if h is None:
            raise ApiError(404, "INVALID_PARAMS", f"no pool {pool_id!r}")
        resp.media = {
            "live": h.live,
            "ready": h.ready,
            "draining": h.draining,
            "last_error": h.last_error,
            "metrics": {
                "preload_state": h.preload_state,
                "queue_depth": h.queue_depth,
                "running": h.running,
                "slots_total": h.slots_total,
                "slots_free": h.slots_free,
                "model_ref": h.model_ref,
                "engine_version": h.engine_version,
                "model_digest": h.model_digest,
                "restarts": h.restarts,
                "breaker_open": h.breaker_open,
                "self_test": h.self_test,
                "self_test_last_attempt": h.self_test_last_attempt,
            },
        }


class PoolDrain:
    def __init__(self, orch: Orchestrator, max_body: int) -> None:
        self._orch = orch
        self._max_body = max_body

    async def on_post(self, req, resp, pool_id: str) -> None:
        _known(self._orch, pool_id)
        body = await read_model(req, DrainRequest, self._max_body)
        self._orch.drain(pool_id, body.deadline_ms)
        resp.status = falcon.HTTP_202


class PoolReload:
    def __init__(self, orch: Orchestrator, max_body: int) -> None:
        self._orch = orch
        self._max_body = max_body

    async def on_post(self, req, resp, pool_id: str) -> None:
        _known(self._orch, pool_id)
        body = await read_model(req, ReloadRequest, self._max_body)
        self._orch.reload(pool_id, body.new_model_ref)
        resp.status = falcon.HTTP_202


class ReplicaSets:
    """`GET /v1/replicasets`: the sets, each with the replicas a task may pin (ORCH-3007)."""

    def __init__(self, orch: Orchestrator) -> None:
        self._orch = orch

    async def on_get(self, req, resp) -> None:
        resp.media = [
            {
                "id": s.set_id,
                "engine": s.engine,
                "load": s.load,
                "slots_total": s.slots_total,
                "slots_free": s.slots_free,
                "replicas": [
                    {
                        "id": r.replica_id,
                        "pool_id": r.pool_id,
                        "ready": r.ready,
                        "slots_total": r.slots_total,
                    }
                    for r in s.replicas
                ],
                "slo": {
                    "pools": list(s.pools),
                    "model_ref": s.model_ref,
                    "engine_version": s.engine_version,
                    "model_digest": s.model_digest,
                    "sampler_profile_version": s.sampler_profile_version,
                    "queue_depth": s.queue_depth,
                },
            }
            for s in self._orch.replica_sets()
        ]


class Capabilities:
    """What clients may rely on, with the API version they can pin (ORCH-3095, ORCH-3096)."""

    def __init__(self, orch: Orchestrator) -> None:
        self._orch = orch

    async def on_get(self, req, resp) -> None:
        engines = [
            {
                "engine": e.engine,
                "ctx_max": e.ctx_max,
                "supported_workloads": list(e.supported_workloads),
                "rate_limits": {
                    pool_id: {"queue_capacity": capacity}
                    for pool_id, capacity in e.queue_capacity.items()
                },
                "features": dict(e.features),
            }
            for e in self._orch.capabilities()
        ]
        resp.media = {"api_version": API_VERSION, "engines": engines}
        policy_host = self._orch.policy_host_view()
        if policy_host is not None:  # a policy host (extended profile, specs/50)
            resp.media["policy_host"] = policy_host
