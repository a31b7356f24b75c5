"""The interface every provider codec implements.

Strategy: a codec is a stateless object (one per API family) with four pure operations.
The transport does the I/O in between::

    http = codec.build_request(request, route, provider)
    # ...transport sends http, receives status, headers...
    if not 200 <= status < 300:
        raise codec.parse_error(provider.name, status, headers, body, now=now)
    response = codec.parse_response(provider.name, body)          # stream=False
    parser = codec.stream_parser(provider.name)                     # stream=True
    for chunk in chunks: events = parser.feed(chunk)
    events = parser.feed(b"")                                       # end of stream

A :class:`StreamParser` has one method, ``feed(data) -> list[Event]``; ``b""`` means the
upstream closed, and a stream that ends before its finish marker raises
``bad_upstream_response``. Every failure raised is a :class:`~chatproto.ChatError`; any
other exception escaping a codec is a bug.
"""

from __future__ import annotations

from typing import Protocol

from ._errors import ChatError, Headers
from ._events import Event
from ._types import ChatRequest, ChatResponse, HTTPRequest, Provider, Route

__all__ = ["Codec", "StreamParser"]


class StreamParser(Protocol):
    def feed(self, data: bytes) -> list[Event]:
        """Take the next bytes of the body (``b""`` = end of body); return new events."""
        ...


class Codec(Protocol):
    #: The ``Provider.api`` value this codec serves.
    api: str

    def build_request(
        self, request: ChatRequest, route: Route, provider: Provider
    ) -> HTTPRequest: ...

    def parse_response(
        self, provider: str, body: bytes, *, passthrough: bool = False
    ) -> ChatResponse:
        """Parse a 2xx non-streamed body; malformed → ``bad_upstream_response``.

        With ``passthrough`` (the client's door speaks this API), the decoded body is kept
        in ``ChatResponse.raw`` for the door to relay unchanged."""
        ...

    def stream_parser(self, provider: str, *, passthrough: bool = False) -> StreamParser:
        """A parser for one stream; with ``passthrough`` it also emits a
        :class:`~chatproto.RawEvent` before the events each upstream event yields."""
        ...

    def parse_error(
        self, provider: str, status: int, headers: Headers, body: bytes, *, now: float
    ) -> ChatError:
        """Turn a non-2xx answer into the SPEC §4 error, with the upstream's message."""
        ...
