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

import base64
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Self
from urllib.parse import SplitResult, unquote

import anyio
import anyio.abc

from chatproto import ChatError, HTTPRequest
from chatproto import __version__ as _chatd_version

__all__ = [
    "DEFAULT_READ_LIMIT",
    "DEFAULT_REAP_INTERVAL",
    "DEFAULT_TIMEOUTS",
    "USER_AGENT",
    "Response",
    "Sweeper",
    "Timeouts",
    "Transport",
    "userinfo_auth",
]

logger = logging.getLogger("chatd.transport")

#: The User-Agent sent unless the request (or provider config) sets its own.
USER_AGENT = f"chatd/{_chatd_version}"

#: Default bound for :meth:`Response.aread`: SPEC §5's 8 MiB request cap, doubled; a
#: non-streamed chat answer is text plus JSON framing, far below this.
DEFAULT_READ_LIMIT = 16 * 1024 * 1024

#: Header names the transport owns: it derives framing from ``HTTPRequest.body``.
FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding"})

#: Seconds between two sweeps of a pool's idle connections (see :class:`Sweeper`): the
#: longest an upstream-closed connection sits in CLOSE_WAIT.
DEFAULT_REAP_INTERVAL = 1.0

_USERINFO_AND_AUTH = (
    "the URL carries credentials (user:password@) and the request its own Authorization "
    "header; only one can be sent"
)


def userinfo_auth(
    url: SplitResult, headers: tuple[tuple[str, str], ...]
) -> tuple[str, str] | None:
    """The ``Authorization`` header for credentials in ``url``'s userinfo, else None.

    ``https://user:pass@proxy/v1`` is how a base URL names a basic-auth proxy in front of
    an upstream: the userinfo is percent-decoded (RFC 3986 §3.2.1) and sent as RFC 7617
    Basic credentials, never as part of the target or Host. A request that also carries
    an Authorization header (a provider key) is refused rather than one of the two being
    dropped silently; the message quotes neither.

    Raises:
        ChatError: ``invalid_request`` for userinfo plus an Authorization header.
    """
    if "@" not in url.netloc:
        return None
    if any(name.lower() == "authorization" for name, _ in headers):
        raise ChatError("invalid_request", _USERINFO_AND_AUTH)
    user = unquote(url.username or "")
    password = unquote(url.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return ("Authorization", f"Basic {token}")


class Sweeper:
    """Runs a pool's ``sweep`` every ``interval`` seconds while a transport is entered.

    An upstream closes idle keep-alive connections whenever it likes; until our end is
    closed too, each one sits in CLOSE_WAIT holding a descriptor, which the probe at
    checkout only notices when the next call to that origin comes (perhaps never). One
    sweeper task per transport polls the idle connections instead: a periodic zero-timeout
    poll costs nothing per request, where a watcher task per idle connection would cost a
    task start and a cancellation on every checkin and checkout. The task lives in a task
    group entered by ``__aenter__`` and left by ``__aexit__`` in the same task (the ASGI
    lifespan task in chatd), so a transport used without ``async with`` simply has no
    sweeper. A sweep that fails is logged and retried at the next interval: it must never
    take its host task down with it.
    """

    __slots__ = ("_group", "_interval", "_sweep")

    def __init__(self, sweep: Callable[[], Awaitable[None]], interval: float) -> None:
        if not interval > 0:
            raise ValueError("the reap interval must be positive")
        self._sweep = sweep
        self._interval = interval
        self._group: anyio.abc.TaskGroup | None = None

    async def start(self) -> None:
        if self._group is not None or math.isinf(self._interval):
            return
        group = anyio.create_task_group()
        await group.__aenter__()
        group.start_soon(self._run)
        self._group = group

    async def stop(self) -> None:
        group, self._group = self._group, None
        if group is not None:
            group.cancel_scope.cancel()
            await group.__aexit__(None, None, None)

    async def _run(self) -> None:
        while True:
            await anyio.sleep(self._interval)
            try:
                await self._sweep()
            except Exception:
                logger.exception("sweeping idle upstream connections failed")


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
        self, request: HTTPRequest, timeouts: Timeouts = DEFAULT_TIMEOUTS, *,
        written: Callable[[], None] | None = None,
    ) -> AbstractAsyncContextManager[Response]:
        """Send ``request``; the context manager yields once the response head is in.

        ``written``, when given, is called once the request has been written, before the
        head is awaited (a caller that bounds how many large bodies are in memory at once
        lets one go then; server/asgi.py ``BodyBudget``). A transport that cannot see the
        write end calls it as the write begins. It may be called again for a retry.

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

