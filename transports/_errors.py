"""How transport failures become :class:`~chatproto.ChatError`.

Strategy: every backend exception is translated at the narrowest scope that raised it, by a
:func:`map_exceptions` block naming the phase it guards. The phase decides the SPEC §4 type,
because the same socket error means different things before and after a response exists:

* **connect** (TCP, TLS): refused, reset, DNS, unreachable, certificate rejected ->
  ``upstream_unavailable``; too slow -> ``upstream_timeout``.
* **head** (writing the request, reading the response head): a head that never arrives whole
  and valid (closed, reset or garbled before the blank line) means no HTTP answer was
  obtained, so the upstream was not reachable *as an HTTP server*: ``upstream_unavailable``.
  SPEC §4 reserves ``bad_upstream_response`` for a response whose body is not the expected
  shape, and without a complete head there is no response (no status) to speak of. Both
  types are 502 and retryable, so a fallback chain treats them alike.
* **body**: once the head is in, a response exists; a body that is cut (peer closes or
  resets mid-body) or garbled (bad chunked framing) is ``bad_upstream_response``.

Any of the three that is too slow is ``upstream_timeout``. Cancellation is a
``BaseException`` and is never caught here: it always propagates.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from types import TracebackType

import anyio

from chatproto import ChatError

__all__ = ["BODY_ERRORS", "CONNECT_ERRORS", "HEAD_ERRORS", "ExceptionMap", "map_exceptions"]

ExceptionMap = Mapping[type[BaseException], str]
"""Backend exception class -> SPEC §4 error type."""

# TimeoutError subclasses OSError, so lookups walk the MRO: the most specific entry wins.
CONNECT_ERRORS: ExceptionMap = {
    TimeoutError: "upstream_timeout",
    OSError: "upstream_unavailable",  # refused, reset, unreachable, socket.gaierror (DNS)
    ssl.SSLError: "upstream_unavailable",  # handshake or certificate failure (an OSError too)
    anyio.BrokenResourceError: "upstream_unavailable",
    anyio.EndOfStream: "upstream_unavailable",  # closed during the TLS handshake
}
HEAD_ERRORS: ExceptionMap = {
    TimeoutError: "upstream_timeout",
    OSError: "upstream_unavailable",
    anyio.BrokenResourceError: "upstream_unavailable",
    anyio.ClosedResourceError: "upstream_unavailable",
}
BODY_ERRORS: ExceptionMap = {
    TimeoutError: "upstream_timeout",
    OSError: "bad_upstream_response",
    anyio.BrokenResourceError: "bad_upstream_response",
    anyio.ClosedResourceError: "bad_upstream_response",
}


class map_exceptions:  # lower-case like contextlib.suppress: it is used the same way
    """Re-raise a mapped backend exception as a ChatError whose message starts with ``what``.

    Use as ``with map_exceptions(HEAD_ERRORS, "reading the response head"): ...``. A
    ChatError passes through untouched; an unmapped exception propagates unchanged (it is
    a bug, and hiding it would make it harder to find); a BaseException such as
    cancellation is never touched. The original stays as ``__cause__`` for logs; backend
    messages name addresses and errno, never a request header. A class rather than a
    ``@contextmanager`` generator: it sits on every read of the hot path.
    """

    __slots__ = ("_mapping", "_what")

    def __init__(self, mapping: ExceptionMap, what: str) -> None:
        self._mapping = mapping
        self._what = what

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None or isinstance(exc, ChatError) or not isinstance(exc, Exception):
            return
        for cls in type(exc).__mro__:
            error_type = self._mapping.get(cls)
            if error_type is not None:
                raise ChatError(error_type, f"{self._what}: {describe(exc)}") from exc


def describe(exc: BaseException) -> str:
    """A short human text for ``exc``; many backend errors have an empty ``str()``."""
    if isinstance(exc, TimeoutError) and not str(exc):
        return "timed out"
    text = str(exc)
    if not text and exc.__cause__ is not None:
        text = str(exc.__cause__)
    return text or type(exc).__name__
