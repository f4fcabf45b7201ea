"""Shared plumbing of the HTTP engine adapters (llama.cpp, vLLM, TGI, Triton).

One `httpx.AsyncClient` per replica; streaming responses are tracked by request id so that
`cancel()` can close the upstream connection, which is how every supported engine learns that
a request was abandoned. Engine failures become typed `AdapterError`s here, in one place:

- connection refused / DNS / connect timeout       -> POOL_UNAVAILABLE (retriable)
- the engine's own overload answer (429, 503)      -> REPLICA_EXHAUSTED (retriable)
- 400 / 422 (the engine refused the parameters)    -> INVALID_PARAMS
- other 5xx, a dropped or truncated stream         -> WORKER_RESET (retriable)
- no byte for `idle_timeout_s` while streaming     -> DECODE_TIMEOUT
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

from llama_orch.reference_impl.adapters.aio_transport import AioBody, AiohttpTransport
from llama_orch.reference_impl.adapters.base import (
    AdapterError,
    AdapterHealth,
    CompletionRequest,
    TokenEvent,
    TokenStream,
)
from llama_orch.reference_impl.adapters.oom import classify_oom

# How long a stream may take to end its body after its end event (see finish_body).
DRAIN_TIMEOUT_S = 1.0


def error_from_status(engine: str, status: int, body: str) -> AdapterError:
    """Typed error for a non-success HTTP answer from an engine."""
    detail = body.strip().replace("\n", " ")[:300] or f"HTTP {status}"
    if status in (429, 503):
        return AdapterError("REPLICA_EXHAUSTED", f"engine overloaded: {detail}", engine=engine)
    if status in (400, 413, 422):
        return AdapterError(
            "INVALID_PARAMS", f"engine refused the request: {detail}", engine=engine
        )
    return AdapterError(
        "WORKER_RESET", f"engine error {status}: {detail}", engine=engine, oom=classify_oom(detail)
    )


def error_from_transport(engine: str, exc: httpx.HTTPError, *, streaming: bool) -> AdapterError:
    """Typed error for a transport failure; mid-stream failures are worker resets."""
    if isinstance(exc, httpx.ReadTimeout) and streaming:
        return AdapterError(
            "DECODE_TIMEOUT", f"engine sent nothing for too long: {exc}", engine=engine
        )
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return AdapterError("POOL_UNAVAILABLE", f"engine unreachable: {exc}", engine=engine)
    return AdapterError("WORKER_RESET", f"engine connection failed: {exc!r}", engine=engine)


async def sse_data(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """(field, value) of each `data:` or `error:` line; comments (pings) and blanks skipped.

    Reads the raw body and splits it itself: one pass over each network chunk instead of
    httpx's byte, text and line decoders per chunk. Lines end in LF, CRLF or CR (SSE's line
    rule); values are UTF-8 (a line never splits a character: the split is at ASCII bytes).
    A body with a Content-Encoding (or one already read into memory) goes through
    `aiter_bytes`.
    """
    chunks: AsyncIterator[bytes]
    if response.is_stream_consumed or "content-encoding" in response.headers:
        chunks = response.aiter_bytes()
    elif isinstance(response.stream, AioBody):
        chunks = response.stream.__aiter__()  # straight from aiohttp
    else:
        chunks = response.aiter_raw()
    pending = b""
    async for chunk in chunks:
        if pending:
            chunk = pending + chunk
        if b"\r" in chunk:
            # CR LF split over two chunks must stay one line end: keep a trailing CR pending.
            held = chunk.endswith(b"\r")
            body = chunk[:-1] if held else chunk
            chunk = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n") + (b"\r" if held else b"")
        cut = chunk.rfind(b"\n")
        if cut < 0:
            pending = chunk
            continue
        pending = chunk[cut + 1 :]
        for item in _fields(chunk[:cut]):
            yield item
    if pending.rstrip(b"\r"):
        for item in _fields(pending.rstrip(b"\r")):
            yield item


def _fields(block: bytes) -> list[tuple[str, str]]:
    """The `data`/`error` fields of complete lines (LF-separated, no CR left)."""
    out = []
    for line in block.split(b"\n"):
        if not line or line[0] == 58:  # blank line, or ":" comment
            continue
        name, _, value = line.partition(b":")
        if name == b"data" or name == b"error":
            if value[:1] == b" ":
                value = value[1:]
            out.append((name.decode(), value.decode("utf-8", "replace")))
    return out


async def finish_body(rest: AsyncIterator[Any], timeout_s: float = DRAIN_TIMEOUT_S) -> None:
    """Read what is left of a stream after its end event, so that the connection can go back
    to the pool (a response closed before its end closes the connection). An engine ends the
    body right after the end event; one that does not within `timeout_s` is left to close."""
    try:
        async with asyncio.timeout(timeout_s):
            async for _ in rest:
                pass
    except (TimeoutError, httpx.HTTPError, httpx.StreamError):
        pass


def parse_json(engine: str, text: str) -> Any:
    """The JSON value of `text` (orjson; the standard parser for what orjson refuses but JSON
    parsers commonly accept, such as NaN or integers over 64 bits)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(text)
    except ValueError as exc:
        raise AdapterError(
            "WORKER_RESET", f"engine sent invalid JSON: {text[:200]!r}", engine=engine
        ) from exc


def scrape(text: str) -> dict[str, float]:
    """Prometheus text -> {sample name: value} (labels summed), via prometheus_client."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + float(sample.value)
    return out


def digest_for(model_ref: str, explicit: str | None = None) -> str:
    """The model identity: an explicit digest, a `sha256:` model ref, else a hash of the ref."""
    if explicit:
        return explicit
    if model_ref.startswith("sha256:"):
        return model_ref
    return "sha256:" + hashlib.sha256(model_ref.encode()).hexdigest()


class HttpEngineAdapter:
    """Base of the HTTP adapters: client, request tracking, cancel, error mapping."""

    engine = ""
    # Whether a stream's connection may serve the next request once its body was read to the
    # end. False for an engine that closes the connection itself after every stream.
    stream_keep_alive = True

    def __init__(
        self,
        replica_id: str,
        base_url: str,
        *,
        model_ref: str,
        ctx_max: int,
        connect_timeout_s: float = 5.0,
        idle_timeout_s: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        metrics_url: str | None = None,
    ) -> None:
        self.replica_id = replica_id
        self.base_url = base_url.rstrip("/")
        # Where the engine's Prometheus text is: `/metrics` on the engine's own port unless the
        # replica names another URL (Triton serves it only on its metrics port).
        self.metrics_url = metrics_url or "/metrics"
        self.model_ref = model_ref
        self.ctx_max = ctx_max
        timeout = httpx.Timeout(
            connect=connect_timeout_s, read=idle_timeout_s, write=10.0, pool=10.0
        )
        # aiohttp underneath unless a test injects a transport (see aio_transport); streaming
        # requests then go to it directly, the rest through httpx.
        self._aio = AiohttpTransport(limit=256) if transport is None else None
        self._timeouts = timeout.as_dict()
        self.client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout,
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
            transport=transport if transport is not None else self._aio,
        )
        self._live: dict[str, httpx.Response] = {}
        self._close_tasks: set[asyncio.Task] = set()  # closes started by aclose() hooks

    # -- streaming ---------------------------------------------------------------------
    def stream(self, req: CompletionRequest) -> TokenStream:
        stream = TokenStream(req.request_id)
        return stream.attach(self._guarded(req, stream), lambda: self._forget(req.request_id))

    async def _guarded(
        self, req: CompletionRequest, stream: TokenStream
    ) -> AsyncGenerator[TokenEvent, None]:
        try:
            async for event in self._generate(req, stream):
                yield event
        except (httpx.HTTPError, httpx.StreamError) as exc:
            if isinstance(exc, httpx.StreamError):
                raise AdapterError(
                    "WORKER_RESET", f"engine stream closed: {exc!r}", engine=self.engine
                ) from exc
            raise error_from_transport(self.engine, exc, streaming=True) from exc
        finally:
            response = self._live.pop(req.request_id, None)
            if response is not None:
                await response.aclose()

    async def _open(
        self, req: CompletionRequest, method: str, path: str, body: Any
    ) -> httpx.Response:
        """Send a streaming request; raise the typed error for a non-success status."""
        try:
            if self._aio is not None:
                content = orjson.dumps(body)
                response = await self._aio.stream(
                    method,
                    self.base_url + path,
                    content,
                    self._timeouts,
                    keep_alive=self.stream_keep_alive,
                )
            else:
                headers = None if self.stream_keep_alive else {"Connection": "close"}
                request = self.client.build_request(method, path, json=body, headers=headers)
                response = await self.client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise error_from_transport(self.engine, exc, streaming=False) from exc
        if response.status_code >= 400:
            text = (await response.aread()).decode("utf-8", "replace")
            await response.aclose()
            raise error_from_status(self.engine, response.status_code, text)
        self._live[req.request_id] = response
        return response

    def _generate(
        self, req: CompletionRequest, stream: TokenStream
    ) -> AsyncIterator[TokenEvent]:  # pragma: no cover - each engine implements it
        raise NotImplementedError

    def _forget(self, request_id: str) -> None:
        """aclose() hook: close the upstream response even while another task is reading it."""
        response = self._live.pop(request_id, None)
        if response is not None:
            task = asyncio.get_running_loop().create_task(response.aclose())
            self._close_tasks.add(task)
            task.add_done_callback(self._close_tasks.discard)

    async def cancel(self, request_id: str) -> bool:
        """Close the upstream stream: the engine stops when it sees the connection gone."""
        response = self._live.pop(request_id, None)
        if response is None:
            return False
        await response.aclose()
        return True

    # -- plain requests ----------------------------------------------------------------
    async def get_json(self, path: str) -> Any:
        try:
            response = await self.client.get(path)
        except httpx.HTTPError as exc:
            raise error_from_transport(self.engine, exc, streaming=False) from exc
        if response.status_code >= 400:
            raise error_from_status(self.engine, response.status_code, response.text)
        return parse_json(self.engine, response.text)

    async def get_metrics(self) -> dict[str, float]:
        try:
            response = await self.client.get(self.metrics_url)
        except httpx.HTTPError as exc:
            raise error_from_transport(self.engine, exc, streaming=False) from exc
        if response.status_code >= 400:
            raise error_from_status(self.engine, response.status_code, response.text)
        return scrape(response.text)

    async def health_at(self, path: str) -> AdapterHealth:
        """Ready on `200`; any other answer is live but not ready, with the engine's own
        words (e.g. TGI's `{"error": "unhealthy", "error_type": "healthcheck"}`) in `detail`."""
        try:
            response = await self.client.get(path)
        except httpx.HTTPError as exc:
            return AdapterHealth(live=False, ready=False, detail=f"unreachable: {exc!r}")
        if response.status_code == 200:
            return AdapterHealth(live=True, ready=True)
        body = response.text.strip().replace("\n", " ")[:200]
        detail = f"HTTP {response.status_code}" + (f": {body}" if body else "")
        return AdapterHealth(live=True, ready=False, detail=detail)

    def estimate_tokens(self, prompt: str) -> int:
        return max(1, -(-len(prompt) // 4))

    async def generate_once(self, path: str, body: dict[str, Any]) -> None:
        """The preload self-test of engines served without a stream cancel: one
        non-streamed token; POOL_UNAVAILABLE with the engine's answer when it is not a 200."""
        try:
            response = await self.client.post(path, json=body)
        except httpx.HTTPError as exc:
            raise AdapterError(
                "POOL_UNAVAILABLE", f"{self.engine} self-test failed: {exc!r}", engine=self.engine
            ) from exc
        if response.status_code != 200:
            raise AdapterError(
                "POOL_UNAVAILABLE",
                f"{self.engine} self-test answered {response.status_code}: {response.text[:200]}",
                engine=self.engine,
            )

    async def close(self) -> None:
        for response in list(self._live.values()):
            await response.aclose()
        self._live.clear()
        await self.client.aclose()


class ClosingAware:
    """Mixin for adapters whose read loop must tell a cancel from a close or a broken stream.

    After `close()`, running streams end with WORKER_RESET; a request no longer tracked in
    `_live` was canceled; any other break is a worker reset (transport errors stay typed).
    """

    _shut_down = False

    async def close(self) -> None:
        self._shut_down = True
        await super().close()  # type: ignore[misc]

    def _stopped_early(
        self, req: CompletionRequest, index: int, broke: BaseException | None
    ) -> bool:
        """After the read loop: True for a cancel; raises for a close or a broken stream."""
        if self._shut_down:
            raise AdapterError(
                "WORKER_RESET", f"adapter closed after {index} tokens", engine=self.engine
            ) from broke
        if req.request_id not in self._live:
            return True
        if isinstance(broke, httpx.HTTPError):
            raise broke  # typed by HttpEngineAdapter (reset, timeout)
        if broke is not None:
            raise AdapterError(
                "WORKER_RESET", f"stream broke after {index} tokens: {broke!r}", engine=self.engine
            ) from broke
        return False


async def wait_ready(adapter: Any, timeout_s: float) -> None:
    """Poll `health()` until ready; POOL_UNAVAILABLE with the last detail at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        health = await adapter.health()
        if health.ready:
            return
        if loop.time() >= deadline:
            raise AdapterError(
                "POOL_UNAVAILABLE",
                f"engine not ready after {timeout_s:g}s: {health.detail}",
                engine=adapter.engine,
            )
        await asyncio.sleep(0.1)
