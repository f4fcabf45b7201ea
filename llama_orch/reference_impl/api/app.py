"""App factory: wires middleware, error handling and routes around one Orchestrator.

`create_app` takes its collaborators ready-made, so tests build an app around any config and
adapter factory without patching; `reference_impl.api.asgi` builds the served one.
"""

from __future__ import annotations

import falcon
import falcon.asgi

from llama_orch.reference_impl.api import (
    artifacts,
    catalog,
    control,
    errors,
    sessions,
    tasks,
    tools,
)
from llama_orch.reference_impl.api.auth import Authenticator
from llama_orch.reference_impl.api.middleware import (
    Authentication,
    BodyLimit,
    CorrelationId,
    Lifespan,
)
from llama_orch.reference_impl.service.metrics import CONTENT_TYPE
from llama_orch.reference_impl.service.orchestrator import Orchestrator

MAX_BODY_BYTES = 1 << 20


class Metrics:
    """`GET /metrics`: Prometheus text exposition (unauthenticated, see api/auth.py)."""

    def __init__(self, orch: Orchestrator) -> None:
        self._orch = orch

    async def on_get(self, req, resp) -> None:
        resp.content_type = CONTENT_TYPE
        resp.data = self._orch.metrics.exposition()


class Live:
    """`GET /livez`: the process serves HTTP (readiness is per pool, on the control plane)."""

    async def on_get(self, req, resp) -> None:
        resp.media = {"status": "ok"}


def create_app(
    orch: Orchestrator,
    authenticator: Authenticator,
    *,
    max_body: int = MAX_BODY_BYTES,
    shutdown_deadline_s: float = 10.0,
    freeze_gc: bool = False,
) -> falcon.asgi.App:
    app = falcon.asgi.App(
        middleware=[
            CorrelationId(),
            Lifespan(orch, shutdown_deadline_s, freeze_gc=freeze_gc),
            BodyLimit(max_body),
            Authentication(authenticator),
        ],
    )
    app.req_options.strip_url_path_trailing_slash = True
    errors.install(app)
    app.add_route("/v1/tasks", tasks.Tasks(orch, max_body))
    app.add_route("/v1/tasks/{task_id}/stream", tasks.TaskStream(orch))
    app.add_route("/v1/tasks/{task_id}/cancel", tasks.TaskCancel(orch))
    app.add_route("/v1/sessions/{session_id}", sessions.Session(orch))
    app.add_route("/v1/pools/{pool_id}/health", control.PoolHealth(orch))
    app.add_route("/v1/pools/{pool_id}/drain", control.PoolDrain(orch, max_body))
    app.add_route("/v1/pools/{pool_id}/reload", control.PoolReload(orch, max_body))
    app.add_route("/v1/replicasets", control.ReplicaSets(orch))
    app.add_route("/v1/capabilities", control.Capabilities(orch))
    app.add_route("/v1/catalog/models", catalog.CatalogModels(orch, max_body))
    app.add_route("/v1/catalog/models/{model_id}", catalog.CatalogModel(orch))
    app.add_route("/v1/catalog/models/{model_id}/verify", catalog.CatalogVerify(orch))
    app.add_route("/v1/catalog/models/{model_id}/state", catalog.CatalogState(orch, max_body))
    if orch.config.artifacts.enabled:
        app.add_route("/v1/artifacts", artifacts.Artifacts(orch, max_body))
        app.add_route("/v1/artifacts/{artifact_id}", artifacts.Artifact(orch))
    app.add_route("/v1/tools/{tool}", tools.ToolInvoke(orch, max_body))
    app.add_route("/metrics", Metrics(orch))
    app.add_route("/livez", Live())
    return app
