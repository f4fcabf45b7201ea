"""Artifacts (extended profile, ORCH-3097/3098): store and read content-addressed work products.

Tenant keys may use these operations for their own artifacts (api/middleware.py); an operator
key reads any tenant's. The store and its id rules are service/artifacts.py.
"""

from __future__ import annotations

import time

import falcon

from llama_orch.reference_impl.api.body import read_model
from llama_orch.reference_impl.api.errors import ApiError
from llama_orch.reference_impl.api.schemas import ArtifactRequest
from llama_orch.reference_impl.service.artifacts import BadParent, NoSuchArtifact, NotYourArtifact
from llama_orch.reference_impl.service.orchestrator import Orchestrator


def _tenant(req) -> str | None:
    """The caller's tenant; None for an operator key (reads every tenant's artifacts)."""
    principal = req.context.principal
    return None if principal is None or principal.operator else principal.tenant


def _owner(req) -> str:
    principal = req.context.principal
    return principal.tenant if principal is not None else ""


class Artifacts:
    """`POST /v1/artifacts`: 201 with the ArtifactRef."""

    def __init__(self, orch: Orchestrator, max_body: int) -> None:
        self._orch = orch
        self._max_body = max_body

    async def on_post(self, req, resp) -> None:
        body = await read_model(req, ArtifactRequest, self._max_body)
        try:
            item = self._orch.artifacts.put(
                _owner(req),
                body.kind.value,
                body.content,
                tags=list(body.tags),
                parent=body.parent,
                metadata=body.metadata,
                now_ms=int(time.time() * 1000),
            )
        except BadParent:
            msg = f"parent {body.parent!r} names no artifact of this tenant"
            raise ApiError(400, "INVALID_PARAMS", msg, field="parent") from None
        resp.status = falcon.HTTP_201
        resp.media = {
            "id": item.artifact_id,
            "kind": item.kind,
            "digest": item.digest,
            "created_ms": item.created_ms,
            "tags": list(item.tags),
        }


class Artifact:
    """`GET /v1/artifacts/{id}`: the artifact with tags, lineage and timestamps."""

    def __init__(self, orch: Orchestrator) -> None:
        self._orch = orch

    async def on_get(self, req, resp, artifact_id: str) -> None:
        try:
            item = self._orch.artifacts.get(_tenant(req), artifact_id)
        except NoSuchArtifact:
            raise ApiError(404, "INVALID_PARAMS", f"no artifact {artifact_id!r}") from None
        except NotYourArtifact:
            raise ApiError(403, None, "this artifact belongs to another tenant") from None
        body = {
            "id": item.artifact_id,
            "digest": item.digest,
            "created_ms": item.created_ms,
            "kind": item.kind,
            "content": item.content,
            "tags": list(item.tags),
        }
        if item.parent is not None:
            body["parent"] = item.parent
        if item.metadata is not None:
            body["metadata"] = item.metadata
        resp.media = body
