"""The same transport interface on httpx: HTTP/2, proxies from the environment.

Strategy: a thin adapter. httpx (through httpcore) owns connections, pooling, HTTP/2 and
proxies; this module translates our request description into ``client.build_request``, runs
``client.send(stream=True)`` for the head, and hands the caller httpx's body iterator one
read at a time. httpx enforces connect/read/write timeouts per operation itself; the total
deadline (head for a streamed call, whole body otherwise) is an ``anyio.fail_after`` around
each step. Leaving the block closes the body iterator and the response, shielded: httpcore
returns a fully read HTTP/1.1 connection to its pool and closes any other.

Use it where the h11 transport cannot go: an HTTP(S) proxy from ``HTTPS_PROXY`` and friends
(``trust_env``), or a provider that is faster over HTTP/2.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import anyio
import httpx

from chatproto import ChatError, HTTPRequest

from ._base import (
    DEFAULT_REAP_INTERVAL,
    DEFAULT_TIMEOUTS,
    FRAMING_HEADERS,
    USER_AGENT,
    Response,
    Sweeper,
    Timeouts,
    Transport,
    userinfo_auth,
)
from ._errors import ExceptionMap, map_exceptions

__all__ = ["HTTPXTransport"]

# The phase rule of _errors.py, in httpx's exception tree. TransportError covers connect,
# read/write, protocol and proxy errors; the mapping walks the MRO, so more specific
# entries win.
_HEAD_ERRORS: ExceptionMap = {
    TimeoutError: "upstream_timeout",  # our total deadline
    httpx.TimeoutException: "upstream_timeout",  # connect/read/write/pool
    httpx.UnsupportedProtocol: "invalid_request",  # not an http(s) URL
    httpx.TransportError: "upstream_unavailable",
}
_BODY_ERRORS: ExceptionMap = {
    TimeoutError: "upstream_timeout",
    httpx.TimeoutException: "upstream_timeout",
    httpx.TransportError: "bad_upstream_response",  # cut or garbled body
    httpx.DecodingError: "bad_upstream_response",  # bad gzip/deflate body
}

_INVALID = (
    "the request is not valid HTTP (method, target or a header has characters HTTP does "
    "not allow)"
)


class HTTPXTransport(Transport):
    """httpx ``AsyncClient`` behind the transport interface.

    Args:
        ssl_context: for ``https``; default: httpx's (certifi CAs, or ``SSL_CERT_FILE``
            when ``trust_env``).
        max_connections: live connections across all origins (httpx pools globally).
        max_keepalive_connections: idle connections kept for reuse.
        keepalive_expiry: seconds an idle connection is kept.
        http2: offer HTTP/2 by ALPN on TLS connections.
        trust_env: honour ``HTTP(S)_PROXY``/``NO_PROXY``/``SSL_CERT_FILE`` from the
            environment.
        user_agent: sent unless the request sets ``User-Agent`` itself.
        reap_interval: seconds between sweeps of httpcore's idle connections while the
            transport is entered (see :meth:`_sweep`).
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = 1024,
        max_keepalive_connections: int = 20,
        keepalive_expiry: float = 30.0,
        http2: bool = True,
        trust_env: bool = True,
        user_agent: str = USER_AGENT,
        reap_interval: float = DEFAULT_REAP_INTERVAL,
    ) -> None:
        self._sweeper = Sweeper(self._sweep, reap_interval)
        self._client = httpx.AsyncClient(
            http2=http2,
            trust_env=trust_env,
            verify=ssl_context if ssl_context is not None else True,
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_keepalive_connections,
                keepalive_expiry=keepalive_expiry,
            ),
            headers={"User-Agent": user_agent},
            follow_redirects=False,  # a provider redirect is an answer to report, not follow
        )

    def open(
        self, request: HTTPRequest, timeouts: Timeouts = DEFAULT_TIMEOUTS, *,
        written: Callable[[], None] | None = None,
    ) -> _Exchange:
        return _Exchange(self._client, request, timeouts, written)

    async def __aenter__(self) -> Self:
        await self._sweeper.start()
        return self

    async def aclose(self) -> None:
        await self._sweeper.stop()
        await self._client.aclose()

    async def _sweep(self) -> None:
        """Close the idle connections httpcore would drop at its next request, now.

        httpcore 1.0 notices a connection the server closed (``has_expired``: idle and
        readable, or past its keep-alive expiry) only when a request enters the pool, so
        until then it sits in CLOSE_WAIT. Its own bookkeeping step,
        ``_assign_requests_to_connections``, removes exactly those from the pool
        synchronously and returns them for closing; it is private, so a httpcore without it
        simply keeps its old behaviour.
        """
        transports = [self._client._transport, *self._client._mounts.values()]
        for transport in transports:
            pool = getattr(transport, "_pool", None)
            assign = getattr(pool, "_assign_requests_to_connections", None)
            close = getattr(pool, "_close_connections", None)
            if assign is None or close is None:
                continue
            with pool._optional_thread_lock:  # type: ignore[union-attr]
                closing = assign()
            if closing:
                await close(closing)

    def __repr__(self) -> str:
        return "<HTTPXTransport>"


class _Exchange:
    """One request/response through the client: what :meth:`HTTPXTransport.open` returns."""

    __slots__ = (
        "_chunks",
        "_client",
        "_deadline",
        "_request",
        "_response",
        "_suspended",
        "_timeouts",
        "_written",
    )

    _response: httpx.Response
    _chunks: AsyncIterator[bytes]

    def __init__(
        self, client: httpx.AsyncClient, request: HTTPRequest, timeouts: Timeouts,
        written: Callable[[], None] | None = None,
    ) -> None:
        self._client = client
        self._request = request
        self._timeouts = timeouts
        self._written = written
        self._deadline = 0.0
        self._suspended = False

    async def __aenter__(self) -> Response:
        request = self._request
        t = self._timeouts
        self._deadline = anyio.current_time() + t.total
        try:
            url = urlsplit(request.url)
            # httpx would turn userinfo into Basic auth *over* a key's Authorization header;
            # both transports follow one rule instead (transports._base.userinfo_auth).
            basic = userinfo_auth(url, request.headers)
            target = request.url
            headers = [(n, v) for n, v in request.headers if n.lower() not in FRAMING_HEADERS]
            if basic is not None:
                target = url._replace(netloc=url.netloc.rpartition("@")[2]).geturl()
                headers.append(basic)
            built = self._client.build_request(
                request.method,
                target,
                headers=headers,
                content=request.body,
                timeout=httpx.Timeout(connect=t.connect, read=t.read, write=t.read, pool=t.total),
            )
        except (httpx.InvalidURL, UnicodeError, ValueError):
            raise ChatError("invalid_request", _INVALID) from None
        if self._written is not None:
            self._written()  # httpx writes inside send(): its end is not to be seen here
        with map_exceptions(_HEAD_ERRORS, f"requesting {request.host}"):
            try:
                with anyio.fail_after(t.total):
                    response = await self._client.send(built, stream=True)
            except httpx.LocalProtocolError:
                # Its message quotes the offending header value, which may be a key.
                raise ChatError("invalid_request", _INVALID) from None
        self._response = response
        self._chunks = response.aiter_bytes()
        return Response(
            status=response.status_code,
            headers=tuple(response.headers.multi_items()),  # names lower-cased by httpx
            receive=self._receive,
        )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with anyio.CancelScope(shield=True):
            await self._response.aclose()  # closes the connection unless fully read
            if self._suspended:
                await self._unwind()

    async def _unwind(self) -> None:
        """End httpx's body iterator, suspended mid-body, through every layer.

        httpx 0.28 reads a body through a chain of five async generators (httpx's
        ``aiter_bytes``/``aiter_raw``, httpcore's pool and connection streams), and closing
        the outermost one leaves the inner ones suspended: trio later finalises them with
        a ResourceWarning (encode/httpx#3686, encode/httpcore#1019). One more step on the
        closed response raises through the whole chain and ends every layer now; the
        cancelled scope makes sure that step cannot wait on the network.
        """
        with anyio.CancelScope() as scope:
            scope.cancel()
            with contextlib.suppress(httpx.HTTPError, StopAsyncIteration):
                await anext(self._chunks)
        self._suspended = False

    async def _receive(self) -> bytes:
        limit = self._timeouts.read
        if not self._request.stream:
            limit = min(limit, self._deadline - anyio.current_time())
        # An exception ends the iterator chain on its way out; only a returned chunk leaves
        # it suspended (see _unwind).
        self._suspended = False
        with map_exceptions(_BODY_ERRORS, "reading the response body"):
            with anyio.fail_after(limit):
                async for chunk in self._chunks:
                    if chunk:
                        self._suspended = True
                        return chunk
        return b""
