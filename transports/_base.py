"""The one interface every chatd transport implements.

Strategy: the core describes a request (:class:`chatproto.HTTPRequest`); a transport executes
it. ``transport.open(request, timeouts)`` is an async context manager: entering it sends the
request and returns a :class:`Response` as soon as the head is in; the body is then pulled
chunk by chunk, each read under its own deadline (``anyio.fail_after`` around the read,
never around a ``yield``). Leaving the block always settles the connection: back to the pool
only when the body was read to the end and the connection can carry another request,
otherwise closed, with the cleanup shielded from cancellation. Everything a transport raises
about the upstream is a :class:`chatproto.ChatError` with ``provider=None`` (the caller, who
knows the provider, fills it in).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from chatproto import ChatError, HTTPRequest
from chatproto import __version__ as _chatd_version

__all__ = [
    "DEFAULT_READ_LIMIT",
    "DEFAULT_TIMEOUTS",
    "USER_AGENT",
    "Response",
    "Timeouts",
    "Transport",
]

#: The User-Agent sent unless the request (or provider config) sets its own.
USER_AGENT = f"chatd/{_chatd_version}"

#: Default bound for :meth:`Response.aread`: SPEC §5's 8 MiB request cap, doubled; a
#: non-streamed chat answer is text plus JSON framing, far below this.
DEFAULT_READ_LIMIT = 16 * 1024 * 1024

#: Header names the transport owns: it derives framing from ``HTTPRequest.body``.
FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    """Deadlines for one upstream call, in seconds.

    ``total`` bounds the whole call for a non-streamed request (until the last body byte)
    and only the wait for the response head for a streamed one: a stream may legitimately
    run for minutes as long as data keeps coming, which ``read`` polices. (The chat
    service applies the same whole-call budget to a stream's first *event*, which bytes of
    keep-alive alone cannot satisfy: see ``server/service.py``.)
    """

    connect: float = 5.0
    """TCP connect plus TLS handshake."""
    read: float = 120.0
    """Idle limit: the longest wait for any single read (head or one body chunk)."""
    total: float = 120.0
    """Whole call (non-streamed) or until the head arrives (streamed)."""


#: The defaults above; chatd's server passes values from lakehouse.toml instead.
DEFAULT_TIMEOUTS = Timeouts()


ReceiveChunk = Callable[[], Awaitable[bytes]]
"""Returns the next non-empty body chunk, or ``b""`` once the body has ended."""


class Response:
    """A response whose head has arrived; the body is read through this object.

    Read the body once, either with :meth:`aiter_bytes` or with :meth:`aread`. Transports
    build it from a ``receive`` callable; users never construct one.
    """

    __slots__ = ("_receive", "headers", "status")

    status: int
    headers: tuple[tuple[str, str], ...]
    """Response headers in arrival order, names lower-cased."""

    def __init__(
        self, *, status: int, headers: tuple[tuple[str, str], ...], receive: ReceiveChunk
    ) -> None:
        self.status = status
        self.headers = headers
        self._receive = receive

    def aiter_bytes(self) -> AsyncIterator[bytes]:
        """Body chunks as they arrive from the network (never ``b""``).

        Each step is one read under ``Timeouts.read``. This is a plain iterator object, not
        an async generator, so abandoning it early leaves nothing to finalise later.
        """
        return _Chunks(self._receive)

    async def aread(self, limit: int = DEFAULT_READ_LIMIT) -> bytes:
        """The whole body, refusing to hold more than ``limit`` bytes.

        Raises:
            ChatError: ``bad_upstream_response`` past ``limit``; any transport error.
        """
        parts: list[bytes] = []
        size = 0
        while chunk := await self._receive():
            size += len(chunk)
            if size > limit:
                raise ChatError(
                    "bad_upstream_response", f"response body exceeds the {limit}-byte limit"
                )
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def __repr__(self) -> str:
        return f"<Response {self.status}>"


class _Chunks:
    __slots__ = ("_receive",)

    def __init__(self, receive: ReceiveChunk) -> None:
        self._receive = receive

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self._receive()
        if not chunk:
            raise StopAsyncIteration
        return chunk


class Transport(ABC):
    """Executes :class:`~chatproto.HTTPRequest` descriptions; see the module docstring.

    Use as ``async with transport:`` (or call :meth:`aclose`) to release pooled
    connections when done.
    """

    @abstractmethod
    def open(
        self, request: HTTPRequest, timeouts: Timeouts = DEFAULT_TIMEOUTS
    ) -> AbstractAsyncContextManager[Response]:
        """Send ``request``; the context manager yields once the response head is in.

        Raises:
            ChatError: ``upstream_unavailable``, ``upstream_timeout``,
                ``bad_upstream_response`` (see ``transports._errors``), or
                ``invalid_request`` when the request cannot be expressed on the wire.
        """

    @abstractmethod
    async def aclose(self) -> None:
        """Close idle pooled connections; the transport accepts no new requests after."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

