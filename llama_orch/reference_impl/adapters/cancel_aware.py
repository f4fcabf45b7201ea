"""Cancel-aware streaming and preload helpers shared by the llama.cpp and vLLM adapters.

Both talk to servers that may send response headers only with the first token, report
failures inside a 200 stream, and stop generating when the connection closes; the same cancel,
error and preload rules therefore serve both.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx

from llama_orch.reference_impl.adapters.base import AdapterError, CompletionRequest, SamplerParams
from llama_orch.reference_impl.adapters.http_common import (
    HttpEngineAdapter,
    error_from_status,
    error_from_transport,
    sse_data,
)
from llama_orch.reference_impl.adapters.oom import classify_oom

# What ends a response body early: a transport failure, or reading a response that cancel()
# (or close()) already closed.
STREAM_BREAKS = (httpx.HTTPError, httpx.StreamError)
PRELOAD_PROMPT = "Hello"
PRELOAD_SAMPLER = SamplerParams(temperature=0.0, top_k=1, top_p=1.0, min_p=0.0)


def stream_error(engine: str, payload: Any, delivered: int) -> AdapterError:
    """Typed error for a failure the engine reported inside a 200 stream.

    Before the first token a client-side or overload code keeps its meaning (older
    llama-server builds report an oversized prompt this way); after it, it is a worker reset.
    """
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            payload = {"message": payload}
    body = payload.get("error", payload) if isinstance(payload, dict) else {}
    body = body if isinstance(body, dict) else {"message": str(body)}
    message = str(body.get("message") or payload)
    code = body.get("code")
    if delivered == 0 and isinstance(code, int) and code in (400, 413, 422, 429, 503):
        return error_from_status(engine, code, message)
    return AdapterError(
        "WORKER_RESET",
        f"engine failed mid-stream after {delivered} tokens: {message}",
        engine=engine,
        oom=classify_oom(message),
    )


def last_id(ids: Any) -> int | None:
    """The token id of a piece (the last one when the engine packed several)."""
    if isinstance(ids, list) and ids and type(ids[-1]) is int:
        return ids[-1]
    return None


def token_ids(ids: Any) -> list[int]:
    """The token ids of a piece, as a list of ints (anything else dropped)."""
    if not isinstance(ids, list):
        return []
    return [i for i in ids if type(i) is int]


async def decode_one(adapter: Any) -> None:
    """The preload self-test: one greedy token through the ordinary stream path."""
    rid = f"preload-{adapter.replica_id}-{uuid.uuid4().hex[:8]}"
    req = CompletionRequest(rid, PRELOAD_PROMPT, 1, 0, PRELOAD_SAMPLER, "preload")
    try:
        async with adapter.stream(req) as stream:
            async for _ in stream:
                pass
    except AdapterError as exc:
        raise AdapterError(
            "POOL_UNAVAILABLE", f"preload decode failed: {exc.message}", engine=adapter.engine
        ) from exc


def lines(response: httpx.Response | None) -> AsyncIterator[tuple[str, str]]:
    """`sse_data` of a response; nothing when cancel() aborted the request before it."""
    return sse_data(response) if response is not None else _no_lines()


async def _no_lines() -> AsyncIterator[tuple[str, str]]:
    return
    yield  # an async generator that yields nothing


class CancelAware(HttpEngineAdapter):
    """Cancel that works in every phase of a stream.

    While the request waits for its response headers (queued at the engine, or before the
    first token: newer llama-server builds send headers only with the first result), cancel()
    aborts the pending request; afterwards it closes the response. Either way the reader ends
    with a `canceled` StreamEnd instead of a broken-connection error. A cross-task
    `TokenStream.aclose()` also cancels (the base would only forget the response).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._canceled: set[str] = set()
        self._starting: dict[str, asyncio.Task[httpx.Response]] = {}
        self._closing: set[asyncio.Task[bool]] = set()

    async def _start(self, req: CompletionRequest, path: str, body: Any) -> httpx.Response | None:
        """`_open` (POST) that cancel() can abort; None when it did."""
        rid = req.request_id
        opening = asyncio.ensure_future(self._open(req, "POST", path, body))
        self._starting[rid] = opening
        try:
            response = await opening
            if rid in self._canceled:  # cancel() came as the headers arrived
                self._live.pop(rid, None)
                await response.aclose()
                return None
            return response
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if rid in self._canceled and not (current and current.cancelling()):
                return None
            raise
        finally:
            self._starting.pop(rid, None)

    async def cancel(self, request_id: str) -> bool:
        opening = self._starting.get(request_id)
        if opening is not None:
            self._canceled.add(request_id)
            opening.cancel()
            return True
        if request_id not in self._live:
            return False
        self._canceled.add(request_id)
        return await super().cancel(request_id)

    def _forget(self, request_id: str) -> None:
        if request_id in self._live or request_id in self._starting:  # cross-task aclose()
            task = asyncio.get_running_loop().create_task(self.cancel(request_id))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def settle(self, request_id: str) -> bool:
        """Whether cancel() closed this stream; forgets it (call once, when the stream ends)."""
        if request_id in self._canceled:
            self._canceled.discard(request_id)
            return True
        return False

    def broken(self, req: CompletionRequest, exc: Exception) -> AdapterError | None:
        """None when a read failed because cancel() closed the stream; else the typed error."""
        if req.request_id in self._canceled:
            return None
        if isinstance(exc, httpx.HTTPError):
            return error_from_transport(self.engine, exc, streaming=True)
        return AdapterError("WORKER_RESET", f"engine stream closed: {exc!r}", engine=self.engine)
