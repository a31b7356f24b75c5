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

A :class:`StreamParser` is ``feed(data) -> list[Event]`` plus ``error``; ``b""`` means the
upstream closed, and a stream that ends before its finish marker raises
``bad_upstream_response``. Every failure raised is a :class:`~chatproto.ChatError`; any
other exception escaping a codec is a bug. Every parser follows the one lifecycle of
:mod:`chatproto._lifecycle` (open, draining after the terminator, ended, failed for good).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import orjson

from ._errors import ChatError, Headers
from ._events import Event
from ._types import ChatRequest, ChatResponse, HTTPRequest, Provider, Route

__all__ = ["RAW_ARGUMENTS", "Codec", "StreamParser", "history_arguments", "request_headers"]


def request_headers(provider: Provider, defaults: Sequence[tuple[str, str]], *,
                    key_header: str = "authorization") -> tuple[tuple[str, str], ...]:
    """An upstream request's headers: ``defaults``, the key, then the configured headers,
    each replacing a default or key header of the same name.

    The key is ``Authorization: Bearer <key>`` (SPEC §2), or the bare key in an
    ``x-api-key`` header where ``key_header`` says so; it is revealed here and nowhere else
    on the way to an upstream.
    """
    out = list(defaults)
    if provider.key is not None:
        if key_header == "x-api-key":
            out.append(("x-api-key", provider.key.reveal()))
        else:
            out.append(("Authorization", f"Bearer {provider.key.reveal()}"))
    if provider.headers:
        configured = {k.lower() for k, _ in provider.headers}
        out = [h for h in out if h[0].lower() not in configured]
        out.extend(provider.headers)
    return tuple(out)


RAW_ARGUMENTS = "raw_arguments"
"""The key under which :func:`history_arguments` keeps arguments that are not an object."""


def history_arguments(text: str) -> dict[str, Any]:
    """A history tool call's JSON-text arguments as the object an upstream wants where the
    wire carries arguments as an object (Anthropic ``tool_use.input``, Ollama
    ``function.arguments``, providers.md §1.4).

    Chat Completions takes any string there, so a call cut by ``max_tokens`` leaves text
    that is not JSON in the history; the agent answers it with an error and goes on, and
    every later turn carries that call again. Refusing it would make the conversation a
    400 on that upstream for good, so text that is not a JSON object is sent as
    ``{"raw_arguments": text}``: the model still sees what it wrote. Empty text (OpenAI
    clients send it for a call without arguments) is ``{}``.
    """
    if not text.strip():
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = None
    if type(value) is dict:
        return value
    return {RAW_ARGUMENTS: text}


class StreamParser(Protocol):
    """One upstream stream's parser (see :mod:`chatproto._lifecycle` for its states).

    Errors after events: a feed returns every event completed before a failure, even
    when the failure is in the same bytes; the failure then waits in :attr:`error` and is
    raised by the next feed (whatever its data, ``b""`` included) and by every feed after.
    A feed that fails before completing any event raises at once. So a caller sees the
    same events, then the same error, however the upstream's bytes were split, and a
    relay delivers what came before an error. A consumer that would stop reading (it got
    no StreamEnded, or the body ended) checks :attr:`error` first, rather than waiting on
    a read that may never come::

        events = parser.feed(chunk)      # deliver these...
        if parser.error is not None:     # ...then the failure found after them
            raise parser.error

    Feeding after the end (``b""``) was fed raises
    :class:`~chatproto._lifecycle.StreamClosedError`, a caller bug.
    """

    def feed(self, data: bytes) -> list[Event]:
        """Take the next bytes of the body (``b""`` = end of body); return new events."""
        ...

    @property
    def error(self) -> ChatError | None:
        """The failure found so far (the parser is failed for good), or None."""
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
