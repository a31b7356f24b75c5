"""The server end of a dialect: what a front door is, as data the server drives.

Strategy: a door owns every byte of one client-facing wire format and nothing else. The
server reads the body and headers, asks the door to :meth:`~Door.parse` them into a
:class:`DoorCall`, runs the call, and asks the door to render the outcome: a whole answer
(:meth:`~Door.render`), a stream (:meth:`~Door.stream`, whose renderer turns batches of
core events into bytes), or an error (:meth:`~Door.render_error`). Ids, timestamps and
latency are arguments (:class:`CallContext`, :class:`Served`): the door reads no clock and
draws no randomness, so it is tested with tables like the upstream codecs.

A door and the upstream codec of the same wire format live in one module (one home per
wire format, both ends together); this protocol is the door's half.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ._errors import ChatError, Headers
from ._events import Event
from ._types import ChatRequest, ChatResponse, Route

__all__ = [
    "Answer", "CallContext", "Door", "DoorCall", "DoorStream", "Served", "keep_rendered",
    "render_batch", "render_each", "rendered_before",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class CallContext:
    """What the server hands every rendering of one call: its id and creation time."""

    id: str
    """A fresh random token (hex); the door prefixes it as its dialect does
    (``chatcmpl-``, ``msg_``, ``resp_``)."""
    created: int
    """Epoch seconds when the call was received."""
    received: float | None = None
    """The same moment with sub-second precision, for a dialect that shows it (Ollama's
    ``created_at``); None means :attr:`created`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DoorCall:
    """A parsed client request: the core request and the door's own rendering options."""

    chat: ChatRequest
    view: object = None
    """Door-private facts needed to render the answer (``include_usage``, a tool-name map,
    the client's model name spelling...). The server never reads it."""
    reply: Callable[[CallContext], bytes] | None = None
    """An answer the door gives without any upstream call (Ollama's "load the model"
    call). The server still routes the model name first, so a name it cannot route is
    refused as it would be with a real call; then it sends these bytes with status 200."""
    dropped: tuple[str, ...] = ()
    """What the door left out of :attr:`chat` because no upstream here can carry it
    (hosted tools such as ``web_search``), one short note each, for the server to log
    once; the turn goes on without them."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Served:
    """Who answered a stream, as far as it is known when a batch is rendered."""

    route: Route
    latency_ms: float | None = None
    """Set on the batch that holds StreamEnded: the upstream round trip (SPEC §3)."""
    elapsed_ns: int | None = None
    """Set on the batch that holds StreamEnded: from the call's start in the server to
    the end (Ollama's ``total_duration``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """A whole answer and who gave it."""

    response: ChatResponse
    route: Route
    latency_ms: float
    """The upstream round trip, as the server measured it (SPEC §3)."""
    elapsed_ns: int = 0
    """From the call's start in the server to the answer (Ollama's ``total_duration``)."""
    fallbacks: tuple[str, ...] = field(default=())
    """Providers tried and left before this one, in order."""


class DoorStream(Protocol):
    """Renders one streamed answer; one instance per call."""

    def start(self) -> bytes:
        """Bytes that open the stream (sent with the first batch; may be empty)."""
        ...

    def events(self, batch: Sequence[Event], served: Served) -> bytes:
        """The bytes for one batch of events (what one upstream read produced).

        A batch ending with StreamEnded renders the end of the stream too. If an event
        cannot be rendered, the exception carries the bytes rendered for the events before
        it (:func:`keep_rendered`), for the server to send ahead of :meth:`error` (SPEC §4:
        "every event parsed before the failure reaches the client first, however the
        upstream's bytes were split", so how many events one read held cannot matter)."""
        ...

    def error(self, exc: ChatError) -> bytes:
        """The last bytes of a stream that failed after it started, in the dialect's way
        (SPEC §4: native ``done``+``error``, an OpenAI error chunk and ``[DONE]``,
        Anthropic ``event: error``, Responses ``response.failed``, Ollama ``{"error"}``)."""
        ...


class Door(Protocol):
    """A client-facing wire format."""

    # Read-only members (properties in the protocol), so a door may declare them as plain
    # class attributes of narrower types (``api = "openai_chat"``, ``stream_headers = ()``).

    @property
    def name(self) -> str:
        """The door's label in metrics and logs: ``native``, ``openai``, ``ollama``,
        ``anthropic``, ``responses``."""
        ...

    @property
    def api(self) -> str | None:
        """The upstream API of the same wire format (``Provider.api``), for lossless
        same-dialect relaying; None when no upstream speaks it (the native door). The
        server sets ``ChatRequest.dialect`` to it."""
        ...

    @property
    def content_type(self) -> bytes:
        """Of a whole answer. Errors are ``application/json`` in every dialect."""
        ...

    @property
    def stream_content_type(self) -> bytes: ...

    @property
    def stream_headers(self) -> Sequence[tuple[bytes, bytes]]:
        """Further headers of a stream's response (``cache-control: no-cache`` for SSE)."""
        ...

    def parse(self, body: bytes, headers: Headers) -> DoorCall:
        """Validate a request; ChatError ``invalid_request`` naming the field.

        ``headers`` are the client's, names lower-case; the door copies the ones a
        same-dialect upstream should see into ``ChatRequest.headers``."""
        ...

    def render(self, call: DoorCall, answer: Answer, ctx: CallContext) -> bytes:
        """A whole answer; may raise ChatError (``bad_upstream_response``) when the
        dialect cannot carry what the upstream gave."""
        ...

    def stream(self, call: DoorCall, ctx: CallContext) -> DoorStream: ...

    def render_error(self, exc: ChatError) -> bytes:
        """The error body, sent with ``exc.status``. Also shapes errors raised before the
        door ran (401, 404, 405, 413) on the door's paths."""
        ...


_RENDERED = "chatd_rendered"
"""The attribute under which an exception from :meth:`DoorStream.events` carries the bytes
rendered before it."""


def keep_rendered(exc: BaseException, out: Sequence[bytes]) -> None:
    """Attach to ``exc`` what a :meth:`DoorStream.events` call rendered for its batch
    before it raised (``out``, the pieces in order); the caller re-raises ``exc``.

    An attribute rather than a wrapping exception, so what was raised keeps its type
    (a ChatError stays one, with its status) for every caller of ``events``."""
    setattr(exc, _RENDERED, b"".join(out))


def rendered_before(exc: BaseException) -> bytes:
    """The bytes a :meth:`DoorStream.events` call rendered before it raised ``exc``
    (b"" for any other exception)."""
    rendered = getattr(exc, _RENDERED, b"")
    return rendered if type(rendered) is bytes else b""


def render_batch(fill: Callable[[Sequence[Event], list[bytes]], None],
                 batch: Sequence[Event]) -> bytes:
    """What ``fill`` appends to a list for ``batch``, joined; if it raises, what it had
    appended rides on the exception (:func:`keep_rendered`). For renderers that keep
    state across a batch's events and so write into one list."""
    out: list[bytes] = []
    try:
        fill(batch, out)
    except Exception as exc:
        keep_rendered(exc, out)
        raise
    return b"".join(out)


def render_each(render: Callable[[Event], bytes], batch: Sequence[Event]) -> bytes:
    """``render`` applied to each event of ``batch``, joined; if one raises, what the
    events before it gave rides on the exception (:func:`keep_rendered`)."""
    out: list[bytes] = []
    append = out.append
    try:
        for ev in batch:
            append(render(ev))
    except Exception as exc:
        keep_rendered(exc, out)
        raise
    return b"".join(out)
