"""CORS for browser clients: ``[chatd.cors] allow_origins`` (SPEC §5).

Strategy: CORS is headers only, decided from the request's ``Origin`` before any route
runs, so it is one small policy the app consults per request (Fetch standard, "CORS
protocol"; MDN "Cross-Origin Resource Sharing"):

- a preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) is
  answered 204 at once, on any path and without client auth: a browser never sends
  credentials on a preflight, so requiring them would make auth and CORS exclusive;
- every other response to an allowed origin carries ``Access-Control-Allow-Origin`` (the
  origin itself, with ``Vary: Origin``, so a cache never serves one origin's answer to
  another) and exposes the headers a client reads (``x-request-id``, ``retry-after``,
  ``x-should-retry``);
- an origin not on the list gets no CORS header at all, and so the browser's own refusal.

A preflight's ``Access-Control-Allow-Headers`` echoes the headers it asked for (a
wildcard does not cover ``Authorization``, which chatd's client auth needs), reduced to
header-name characters so nothing a client sends is written back raw.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .asgi import Send, Sent

__all__ = ["CorsPolicy"]

#: What chatd answers on; a preflight for anything else is refused by the browser itself.
ALLOW_METHODS = b"GET, HEAD, POST, OPTIONS"
#: Response headers a browser script may read (the rest are hidden by default).
EXPOSE_HEADERS = b"x-request-id, retry-after, x-should-retry, x-chatd-estimate"
#: How long a browser may cache a preflight answer (seconds).
MAX_AGE = b"600"
#: A requested header list longer than this is not echoed (it is no real client's).
MAX_REQUEST_HEADERS = 2048
#: An origin as a browser serializes it (RFC 6454 §6.1): printable ASCII, no spaces.
_ORIGIN = re.compile(rb"[!-~]{1,256}")
_TOKEN_LIST = re.compile(rb"[A-Za-z0-9!#$%&'*+.^_`|~-]+(?:\s*,\s*[A-Za-z0-9!#$%&'*+.^_`|~-]+)*")


class CorsPolicy:
    """The allowed origins and the headers that follow from them."""

    __slots__ = ("_any", "_origins")

    def __init__(self, allow_origins: Sequence[str]) -> None:
        self._any = "*" in allow_origins
        self._origins = frozenset(o.encode().lower() for o in allow_origins if o != "*")

    def allows(self, origin: bytes) -> bool:
        if not _ORIGIN.fullmatch(origin):
            return False  # never echoed: it could not be a header value a browser sent
        return self._any or origin.lower() in self._origins

    @staticmethod
    def is_preflight(method: str, origin: bytes | None, request_method: bytes | None) -> bool:
        return method == "OPTIONS" and origin is not None and request_method is not None

    def preflight_headers(
        self, origin: bytes, request_headers: bytes | None
    ) -> list[tuple[bytes, bytes]]:
        """The headers of the 204 answering a preflight from ``origin`` (none when the
        origin is not allowed)."""
        if not self.allows(origin):
            return [(b"vary", b"Origin")]
        headers = [
            (b"access-control-allow-origin", origin),
            (b"access-control-allow-methods", ALLOW_METHODS),
            (b"access-control-max-age", MAX_AGE),
            (b"vary", b"Origin, Access-Control-Request-Headers"),
        ]
        if request_headers is not None:
            asked = request_headers.strip()
            if len(asked) <= MAX_REQUEST_HEADERS and _TOKEN_LIST.fullmatch(asked):
                headers.append((b"access-control-allow-headers", asked))
        return headers

    def response_headers(self, origin: bytes) -> list[tuple[bytes, bytes]]:
        """The headers added to an ordinary response to ``origin``."""
        if not self.allows(origin):
            return [(b"vary", b"Origin")]
        return [
            (b"access-control-allow-origin", origin),
            (b"access-control-expose-headers", EXPOSE_HEADERS),
            (b"vary", b"Origin"),
        ]

    def wrap(self, send: Send, origin: bytes) -> Send:
        """``send`` with this policy's headers added to the response start."""
        extra = self.response_headers(origin)

        async def send_with_cors(message: Sent) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message["headers"], *extra]}
            await send(message)

        return send_with_cors
