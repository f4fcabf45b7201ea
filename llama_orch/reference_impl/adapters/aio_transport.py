"""An httpx transport that sends requests through aiohttp: the engine adapters' network path.

The adapters speak httpx (`httpx.Response`, typed `httpx.HTTPError`s, tests inject
`httpx.MockTransport`), but httpcore's per-request and per-chunk cost (anyio cancel scopes,
h11, locks) was the largest single item of the orchestrator's CPU per task (bench/RESULTS.md,
issue 16). This transport keeps the httpx surface and hands the wire to aiohttp's C HTTP
parser and connection pool:

- connections are kept alive and reused; a response read to its end goes back to the pool,
  one closed early (a cancel, a stop string) closes its connection, which is how an engine
  learns that the request was abandoned;
- httpx's timeouts map onto aiohttp's: `connect` (plus `pool`, the wait for a free
  connection) bounds connecting, `read` bounds each read of the body (the idle timeout);
- aiohttp's failures come back as the httpx exceptions httpcore would raise (ConnectError,
  ConnectTimeout, ReadTimeout, RemoteProtocolError, ReadError), so the adapters' error mapping
  (http_common) is the same on either transport;
- bodies pass through undecoded (`auto_decompress=False`): httpx decodes them as usual.

The aiohttp session belongs to an event loop; it is made on first use in the running loop, and
made again if a later request runs in another loop (tests run several loops in turn).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx

_DEFAULT_LIMIT = 256
_DEFAULT_TIMEOUT = 5.0
_JSON_HEADERS = {"Content-Type": "application/json"}
# `Connection: close` on the request: the connection is not pooled after the response (for an
# engine that closes it itself once a stream ends; reusing it would race the server's FIN).
_JSON_CLOSE_HEADERS = {"Content-Type": "application/json", "Connection": "close"}


class AioBody(httpx.AsyncByteStream):
    """An aiohttp response body as httpx reads it; `aclose` releases or drops the connection.
    `adapters.http_common.sse_data` iterates it directly (no httpx chunker in between)."""

    __slots__ = ("_request", "_response")

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request | None) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        try:
            while True:
                chunk = await content.readany()
                if not chunk:
                    return
                yield chunk
        except aiohttp.ClientPayloadError as exc:
            raise httpx.RemoteProtocolError(str(exc), request=self._request) from exc
        except aiohttp.ClientError as exc:
            raise _mapped(exc, self._request, reading=True) from exc
        except TimeoutError as exc:
            raise httpx.ReadTimeout(str(exc) or "read timed out", request=self._request) from exc

    async def aclose(self) -> None:
        # Read to the end, the connection has already gone back to the pool (aiohttp releases
        # it at the end of the payload); otherwise close it: the server sees the disconnect.
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


def _mapped(exc: BaseException, request: httpx.Request | None, *, reading: bool) -> httpx.HTTPError:
    """The httpx exception httpcore raises for the same failure."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message, request=request)
    if isinstance(exc, aiohttp.ServerTimeoutError | TimeoutError):
        return httpx.ReadTimeout(message, request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message, request=request)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return httpx.RemoteProtocolError(message, request=request)
    if reading:
        return httpx.ReadError(message, request=request)
    return httpx.TransportError(message, request=request)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx transport over one aiohttp session (`limit` connections at most)."""

    def __init__(self, *, limit: int = _DEFAULT_LIMIT) -> None:
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def _session_now(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._limit, limit_per_host=self._limit)
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),  # engines set no cookies we would keep
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
                timeout=aiohttp.ClientTimeout(total=None),
            )
            self._loop = loop
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        body = request.content if request.method not in ("GET", "HEAD") else None
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        return await self._send(
            request.method, str(request.url), headers, body, timeouts, request=request
        )

    async def stream(
        self,
        method: str,
        url: str,
        body: bytes,
        timeouts: dict[str, float | None],
        *,
        keep_alive: bool = True,
    ) -> httpx.Response:
        """The engine adapters' streaming request, without httpx's request machinery: a JSON
        `body` to `url`; the answer as an httpx.Response whose body is still unread. Without
        `keep_alive` the connection is closed after this response instead of pooled."""
        headers = _JSON_HEADERS if keep_alive else _JSON_CLOSE_HEADERS
        return await self._send(method, url, headers, body, timeouts, request=None)

    async def _send(
        self,
        method: str,
        url: str,
        headers: Any,
        body: bytes | None,
        timeouts: dict[str, float | None],
        *,
        request: httpx.Request | None,
    ) -> httpx.Response:
        if self._closed:
            raise RuntimeError("the transport has been closed")
        session = self._session_now()
        connect = timeouts.get("connect", _DEFAULT_TIMEOUT)
        pool = timeouts.get("pool", _DEFAULT_TIMEOUT)
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=None if connect is None or pool is None else connect + pool,
            sock_connect=connect,
            sock_read=timeouts.get("read", _DEFAULT_TIMEOUT),
        )
        try:
            response = await session.request(
                method, url, headers=headers, data=body, allow_redirects=False, timeout=timeout
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _mapped(exc, request, reading=False) from exc
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=AioBody(response, request),
            request=request,
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (response.reason or "").encode("latin-1", "replace"),
            },
        )

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None and not self._session.closed:
            try:
                await self._session.close()
            except RuntimeError:  # made in a loop that is gone
                pass
