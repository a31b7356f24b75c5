"""An in-memory transport: a handler function plays the upstream.

Strategy: the handler gets the exact :class:`~chatproto.HTTPRequest` and returns a
:class:`MockResponse` (or an awaitable of one, or raises :class:`~chatproto.ChatError` to
simulate a connection failure). The body is a list of chunks delivered one per read, so
parsers see the real splits a network would produce; an async iterable of chunks lets a
test pace the body (wait for an event, sleep) the way a slow upstream does. The mock keeps
the real transports' contract rather than shortcutting it: the handler runs under
``Timeouts.total``, each body step under ``Timeouts.read``, every step is a checkpoint where
cancellation can land, a body shorter or longer than its declared ``Content-Length`` is
``bad_upstream_response``, and leaving the block closes the chunk source (the upstream "sees"
the client hang up). Public, so code that embeds chatd's core can be tested the same way.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType

import anyio
import anyio.lowlevel

from chatproto import ChatError, HTTPRequest

from ._base import DEFAULT_TIMEOUTS, Response, Timeouts, Transport
from ._errors import ExceptionMap, map_exceptions

__all__ = ["MockHandler", "MockResponse", "MockTransport"]

_TIMEOUT: ExceptionMap = {TimeoutError: "upstream_timeout"}


@dataclass(frozen=True, slots=True)
class MockResponse:
    """What the simulated upstream answers.

    ``chunks`` is a sequence of byte strings (empty ones are skipped, as a socket never
    returns one) or an async iterable of them.
    """

    status: int = 200
    headers: Sequence[tuple[str, str]] = ()
    chunks: Sequence[bytes] | AsyncIterable[bytes] = ()

    def __post_init__(self) -> None:
        if isinstance(self.chunks, bytes | bytearray | memoryview):
            # bytes is a Sequence of ints: almost certainly meant as one chunk.
            raise TypeError("chunks is a sequence of bytes chunks; wrap one body as (body,)")
        object.__setattr__(self, "headers", tuple(self.headers))
        if not isinstance(self.chunks, AsyncIterable):
            object.__setattr__(self, "chunks", tuple(self.chunks))


MockHandler = Callable[[HTTPRequest], MockResponse | Awaitable[MockResponse]]
"""Plays the upstream: sync or async; may raise ChatError to simulate a failed connect."""


class MockTransport(Transport):
    """A transport whose upstream is ``handler``.

    Attributes:
        requests: every request passed to :meth:`open`, in order.
    """

    def __init__(self, handler: MockHandler) -> None:
        self.handler = handler
        self.requests: list[HTTPRequest] = []
        self._closed = False

    def open(
        self, request: HTTPRequest, timeouts: Timeouts = DEFAULT_TIMEOUTS, *,
        written: Callable[[], None] | None = None,
    ) -> _Exchange:
        return _Exchange(self, request, timeouts, written)

    async def aclose(self) -> None:
        self._closed = True

    def __repr__(self) -> str:
        return f"<MockTransport requests={len(self.requests)}>"


class _Exchange:
    __slots__ = (
        "_async_chunks",
        "_deadline",
        "_declared",
        "_done",
        "_received",
        "_request",
        "_sync_chunks",
        "_timeouts",
        "_transport",
        "_written",
    )

    def __init__(
        self, transport: MockTransport, request: HTTPRequest, timeouts: Timeouts,
        written: Callable[[], None] | None = None,
    ) -> None:
        self._transport = transport
        self._request = request
        self._timeouts = timeouts
        self._written = written
        self._deadline = 0.0
        self._declared: int | None = None
        self._received = 0
        self._done = False
        self._sync_chunks: Iterator[bytes] | None = None
        self._async_chunks: AsyncIterator[bytes] | None = None

    async def __aenter__(self) -> Response:
        transport = self._transport
        if transport._closed:
            raise RuntimeError("this MockTransport is closed")
        transport.requests.append(self._request)
        if self._written is not None:
            self._written()  # the handler has the request: it is "written"
        self._deadline = anyio.current_time() + self._timeouts.total
        # Waiting for the head is one read: under both the idle and the total limit.
        limit = min(self._timeouts.read, self._timeouts.total)
        with map_exceptions(_TIMEOUT, "awaiting the response"), anyio.fail_after(limit):
            result = transport.handler(self._request)
            if inspect.isawaitable(result):
                result = await result
            else:
                await anyio.lowlevel.checkpoint()  # a real round trip always yields
        if not isinstance(result, MockResponse):
            raise TypeError(f"the mock handler returned {result!r}, not a MockResponse")
        headers = tuple((name.lower(), value) for name, value in result.headers)
        for name, value in headers:
            if name == "content-length":
                self._declared = int(value)
        chunks = result.chunks
        if isinstance(chunks, AsyncIterable):
            self._async_chunks = aiter(chunks)
        else:
            self._sync_chunks = iter(chunks)
        return Response(status=result.status, headers=headers, receive=self._receive)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # The "connection" closes: an async-generator body runs its finally now, which is
        # how a test observes that the client hung up.
        close = getattr(self._async_chunks, "aclose", None)
        if close is not None:
            with anyio.CancelScope(shield=True):
                await close()

    async def _receive(self) -> bytes:
        while not self._done:
            chunk = await self._next_chunk()
            if chunk is None:
                self._done = True
                if self._declared is not None and self._received < self._declared:
                    raise ChatError(
                        "bad_upstream_response",
                        f"reading the response body: it ended after {self._received} of the "
                        f"{self._declared} bytes its Content-Length announced",
                    )
            elif chunk:
                self._received += len(chunk)
                if self._declared is not None and self._received > self._declared:
                    raise ChatError(
                        "bad_upstream_response",
                        "reading the response body: more bytes than its Content-Length",
                    )
                return chunk
        return b""

    async def _next_chunk(self) -> bytes | None:
        if self._async_chunks is None:
            assert self._sync_chunks is not None
            await anyio.lowlevel.checkpoint()
            return next(self._sync_chunks, None)
        limit = self._timeouts.read
        if not self._request.stream:
            limit = min(limit, self._deadline - anyio.current_time())
        with map_exceptions(_TIMEOUT, "reading the response body"), anyio.fail_after(limit):
            try:
                return await anext(self._async_chunks)
            except StopAsyncIteration:
                return None
