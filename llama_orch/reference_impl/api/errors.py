"""Every error leaves the server as an ErrorEnvelope; this module is the one place that builds it.

Falcon's own errors (unknown route, wrong method, oversized body) and unexpected exceptions
are mapped here too, so a client never sees a body of another shape.
"""

from __future__ import annotations

import logging
import math

import falcon
import falcon.asgi
from pydantic import ValidationError

log = logging.getLogger("llama_orch.reference_impl.api")


class ApiError(Exception):
    """An error with an HTTP status and an ErrorEnvelope body."""

    def __init__(
        self,
        status: int,
        code: str | None,
        message: str,
        *,
        engine: str | None = None,
        pool_id: str | None = None,
        retriable: bool | None = None,
        retry_after_ms: int | None = None,
        policy_label: str | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, object] = {"message": message}
        if code is None and status in (401, 403):  # auth refusals carry a code like any error
            code = "ADMISSION_REJECT"
        if code is not None:
            self.body["code"] = code
        for key, value in (
            ("engine", engine),
            ("pool_id", pool_id),
            ("retriable", retriable),
            ("retry_after_ms", retry_after_ms),
            ("policy_label", policy_label),
            ("field", field),
        ):
            if value is not None:
                self.body[key] = value
        self.headers: dict[str, str] = {}
        if retry_after_ms is not None and status in (429, 503):
            self.headers["Retry-After"] = str(max(1, math.ceil(retry_after_ms / 1000)))
            if status == 429:
                self.headers["X-Backoff-Ms"] = str(retry_after_ms)


def invalid_body(exc: ValidationError) -> ApiError:
    """Name the first field at fault, in dotted form, with what was expected."""
    first = exc.errors(include_url=False)[0]
    field = ".".join(str(p) for p in first["loc"]) or None
    if first["type"] == "json_invalid":
        return ApiError(400, "INVALID_PARAMS", "request body is not valid JSON")
    if first["type"] == "extra_forbidden":
        return ApiError(400, "INVALID_PARAMS", f"unknown field {field!r}", field=field)
    if first["type"] == "missing":
        return ApiError(400, "INVALID_PARAMS", f"missing required field {field!r}", field=field)
    return ApiError(400, "INVALID_PARAMS", f"{field}: {first['msg']}", field=field)


_FALCON_CODES = {404: "INVALID_PARAMS", 405: "INVALID_PARAMS", 413: "INVALID_PARAMS"}


async def handle_api_error(req, resp, exc: ApiError, params) -> None:
    resp.status = exc.status
    resp.media = exc.body
    for name, value in exc.headers.items():
        resp.set_header(name, value)


async def handle_http_error(req, resp, exc: falcon.HTTPError, params) -> None:
    status = int(str(exc.status).split()[0]) if not isinstance(exc.status, int) else exc.status
    message = exc.title if not exc.description else f"{exc.title}: {exc.description}"
    resp.status = status
    resp.media = {"code": _FALCON_CODES.get(status, "INVALID_PARAMS"), "message": message}
    for name, value in (exc.headers or {}).items():
        resp.set_header(name, value)


async def handle_unexpected(req, resp, exc: Exception, params) -> None:
    if isinstance(exc, falcon.HTTPError | ApiError):  # handled by their own handlers
        raise exc
    log.exception("unhandled error", extra={"path": req.path, "method": req.method})
    resp.status = 500
    resp.media = {"code": "INTERNAL", "message": "internal error", "retriable": True}


def install(app: falcon.asgi.App) -> None:
    # Falcon picks the most specific handler by class, so order does not matter here.
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(falcon.HTTPError, handle_http_error)
    app.add_error_handler(ApiError, handle_api_error)
