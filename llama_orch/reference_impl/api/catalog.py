"""Control plane, extended profile: the model catalog and its lifecycle (ORCH-3060..3074).

Registration and verification run the service's trust policy (service/catalog.py); a state
change runs the lifecycle's effects on pools (service/lifecycle.py). These resources map HTTP
to those calls and name the fields of a CatalogModel.
"""

from __future__ import annotations

from typing import Any

import falcon

from llama_orch.reference_impl.api.body import read_model
from llama_orch.reference_impl.api.errors import ApiError
from llama_orch.reference_impl.api.schemas import CatalogModelRequest, CatalogStateRequest
from llama_orch.reference_impl.service.catalog import CatalogError, NewModel, Untrusted
from llama_orch.reference_impl.service.orchestrator import Orchestrator


def _document(orch: Orchestrator, model_id: str) -> dict[str, Any]:
    entry = orch.catalog.get(model_id)
    if entry is None:
        raise ApiError(404, "INVALID_PARAMS", f"no model {model_id!r} in the catalog")
    body: dict[str, Any] = {
        "id": entry.model_id,
        "digest": entry.digest,
        "tags": list(entry.tags),
        "manifests": [dict(m) for m in entry.manifests],
        "signatures": [dict(s) for s in entry.signatures],
        "trust_policy": orch.catalog.trust_policy(),
        "state": entry.state.value,
        "engine": entry.engine,
    }
    if entry.source_url is not None:
        body["source_url"] = entry.source_url
    if entry.sbom is not None:
        body["sbom"] = dict(entry.sbom)
    return body


def _refused(exc: CatalogError) -> ApiError:
    return ApiError(exc.status, "INVALID_PARAMS", exc.message, field=exc.field, retriable=False)


def _clean(doc: Any) -> dict[str, Any]:
    return {k: v for k, v in doc.model_dump().items() if v is not None}


class CatalogModels:
    """`POST /v1/catalog/models`: verify under the trust policy, then record (201)."""

    def __init__(self, orch: Orchestrator, max_body: int) -> None:
        self._orch = orch
        self._max_body = max_body

    async def on_post(self, req, resp) -> None:
        body = await read_model(req, CatalogModelRequest, self._max_body)
        new = NewModel(
            model_id=body.id,
            digest=body.digest,
            source_url=body.source_url,
            tags=tuple(body.tags),
            manifests=tuple(_clean(m) for m in body.manifests),
            signatures=tuple({**_clean(s), "verified": False} for s in body.signatures),
            sbom=_clean(body.sbom) if body.sbom is not None else None,
            engine=body.engine.value if body.engine is not None else None,
        )
        try:
            entry = self._orch.catalog.register(new)
        except Untrusted as exc:
            raise ApiError(400, "UNTRUSTED_ARTIFACT", str(exc), retriable=False) from None
        except CatalogError as exc:
            raise _refused(exc) from None
        resp.status = falcon.HTTP_201
        resp.media = _document(self._orch, entry.model_id)


class CatalogModel:
    """`GET /v1/catalog/models/{id}`: the entry with provenance, documents and state."""

    def __init__(self, orch: Orchestrator) -> None:
        self._orch = orch

    async def on_get(self, req, resp, model_id: str) -> None:
        resp.media = _document(self._orch, model_id)


class CatalogVerify:
    """`POST /v1/catalog/models/{id}/verify`: run the trust rules again (logged, counted)."""

    def __init__(self, orch: Orchestrator) -> None:
        self._orch = orch

    async def on_post(self, req, resp, model_id: str) -> None:
        if self._orch.catalog.verify(model_id) is None:
            raise ApiError(404, "INVALID_PARAMS", f"no model {model_id!r} in the catalog")
        resp.status = falcon.HTTP_202


class CatalogState:
    """`POST /v1/catalog/models/{id}/state`: a lifecycle transition with an optional drain
    deadline; draining and unloading continue in the background (202)."""

    def __init__(self, orch: Orchestrator, max_body: int) -> None:
        self._orch = orch
        self._max_body = max_body

    async def on_post(self, req, resp, model_id: str) -> None:
        if self._orch.catalog.get(model_id) is None:
            raise ApiError(404, "INVALID_PARAMS", f"no model {model_id!r} in the catalog")
        body = await read_model(req, CatalogStateRequest, self._max_body)
        try:
            self._orch.set_model_state(model_id, body.state.value, body.deadline_ms)
        except CatalogError as exc:
            raise _refused(exc) from None
        resp.status = falcon.HTTP_202
