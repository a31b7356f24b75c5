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

from typing import TYPE_CHECKING

from ._base import DEFAULT_TIMEOUTS as DEFAULT_TIMEOUTS
from ._base import Response as Response
from ._base import Timeouts as Timeouts
from ._base import Transport as Transport

if TYPE_CHECKING:  # what type checkers see; at run time __getattr__ imports on first use
    from ._h11 import H11Transport as H11Transport
    from ._httpx import HTTPXTransport as HTTPXTransport
    from ._mock import MockHandler as MockHandler
    from ._mock import MockResponse as MockResponse
    from ._mock import MockTransport as MockTransport

# The implementations are imported on first use, not with the package: httpx alone costs
# ~50 ms of chatd's startup, and a process uses one transport.
_LAZY = {
    "H11Transport": "._h11",
    "HTTPXTransport": "._httpx",
    "MockHandler": "._mock",
    "MockResponse": "._mock",
    "MockTransport": "._mock",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


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
