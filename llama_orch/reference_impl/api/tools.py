"""`POST /v1/tools/{tool}`: the policy host's mediated fetch and search, offered to clients.

Clients such as CLI agents send a ToolRequest of the tool ABI (`policy-abi-v1.schema.json`)
and get its ToolResult; the operator's policy (domains, MIME types, size and rate caps,
redaction, audit) decides, exactly as for plugins (OC-POLICY-4030..4033). The blocking
upstream request runs in a worker thread, so the event loop keeps serving meanwhile.
"""

from __future__ import annotations

import asyncio
import json

from llama_orch.reference_impl.api.errors import ApiError
from llama_orch.reference_impl.service.orchestrator import Orchestrator


class ToolInvoke:
    def __init__(self, orch: Orchestrator, max_body: int) -> None:
        self._orch = orch
        self._max_body = max_body

    async def on_post(self, req, resp, tool: str) -> None:
        if not self._orch.tools_offered():
            raise ApiError(404, "INVALID_PARAMS", "this orchestrator offers no mediated tools")
        if tool not in ("fetch", "search"):
            raise ApiError(404, "INVALID_PARAMS", f"no tool {tool!r}; tools: fetch, search")
        raw = await req.stream.read(self._max_body + 1)
        if len(raw) > self._max_body:
            raise ApiError(413, "INVALID_PARAMS", f"request body over {self._max_body} bytes")
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ApiError(400, "INVALID_PARAMS", "request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "INVALID_PARAMS", "request body must be a ToolRequest object")
        request = {**body, "tool": tool}
        request.setdefault("correlation_id", getattr(req.context, "correlation_id", None))
        principal = req.context.principal
        caller = f"client:{principal.tenant if principal is not None else 'anonymous'}"
        resp.media = await asyncio.to_thread(self._orch.invoke_tool, request, caller=caller)
