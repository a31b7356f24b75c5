"""transports: chatd's HTTP clients, written once on anyio (they run under asyncio and trio).

Each executes a :class:`chatproto.HTTPRequest` the core built::

    async with H11Transport() as transport:
        async with transport.open(request, Timeouts(total=30)) as response:
            async for chunk in response.aiter_bytes():
                events = parser.feed(chunk)

:class:`H11Transport` is the fast path (h11 over anyio sockets, pooled keep-alive),
:class:`HTTPXTransport` adds HTTP/2 and environment proxies, and :class:`MockTransport`
lets a handler function play the upstream in tests. All raise only
:class:`chatproto.ChatError` for upstream failures.
"""

from ._base import DEFAULT_TIMEOUTS as DEFAULT_TIMEOUTS
from ._base import Response as Response
from ._base import Timeouts as Timeouts
from ._base import Transport as Transport
from ._h11 import H11Transport as H11Transport
from ._httpx import HTTPXTransport as HTTPXTransport
from ._mock import MockHandler as MockHandler
from ._mock import MockResponse as MockResponse
from ._mock import MockTransport as MockTransport

__all__ = [
    "DEFAULT_TIMEOUTS",
    "H11Transport",
    "HTTPXTransport",
    "MockHandler",
    "MockResponse",
    "MockTransport",
    "Response",
    "Timeouts",
    "Transport",
]
