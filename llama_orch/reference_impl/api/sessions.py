"""Sessions: read TTL, turns, KV use and warmth; delete to end a session and evict its KV."""

from __future__ import annotations

import uuid

import falcon

from llama_orch.reference_impl.api.errors import ApiError
from llama_orch.reference_impl.service.orchestrator import Orchestrator
from llama_orch.reference_impl.service.views import budget_fields


def _session_id(raw: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise ApiError(404, "INVALID_PARAMS", f"no session {raw!r}") from None


class Session:
    def __init__(self, orch: Orchestrator) -> None:
        self._orch = orch

    async def on_get(self, req, resp, session_id: str) -> None:
        view = self._orch.session(_session_id(session_id))
        if view is None:
            raise ApiError(404, "INVALID_PARAMS", f"no session {session_id!r}")
        body = {
            "ttl_ms_remaining": view.ttl_ms_remaining,
            "turns": view.turns,
            "kv_bytes": view.kv_bytes,
            "kv_warmth": view.kv_warmth,
        }
        body.update(budget_fields(view))
        resp.media = body

    async def on_delete(self, req, resp, session_id: str) -> None:
        if not self._orch.end_session(_session_id(session_id)):
            raise ApiError(404, "INVALID_PARAMS", f"no session {session_id!r}")
        resp.status = falcon.HTTP_204
