"""Reading and validating JSON bodies with a hard size limit."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError

from llama_orch.reference_impl.api.errors import ApiError, invalid_body

M = TypeVar("M", bound=BaseModel)


async def read_model(req, model: type[M], max_bytes: int) -> M:
    """Parse the body as `model`; 413 over the limit, 400 naming the field at fault otherwise."""
    raw = await req.stream.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise ApiError(413, "INVALID_PARAMS", f"request body over {max_bytes} bytes")
    if not raw:
        raise ApiError(400, "INVALID_PARAMS", "request body is empty; a JSON object is required")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise invalid_body(exc) from None
