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

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ._errors import ChatError, Headers
from ._events import Event
from ._types import ChatRequest, ChatResponse, Route

__all__ = ["Answer", "CallContext", "Door", "DoorCall", "DoorStream", "Served"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CallContext:
    """What the server hands every rendering of one call: its id and creation time."""

    id: str
    """A fresh random token (hex); the door prefixes it as its dialect does
    (``chatcmpl-``, ``msg_``, ``resp_``)."""
    created: int
    """Epoch seconds when the call was received."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DoorCall:
    """A parsed client request: the core request and the door's own rendering options."""

    chat: ChatRequest
    view: object = None
    """Door-private facts needed to render the answer (``include_usage``, a tool-name map,
    the client's model name spelling...). The server never reads it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Served:
    """Who answered a stream, as far as it is known when a batch is rendered."""

    route: Route
    latency_ms: float | None = None
    """Set on the batch that holds StreamEnded: from the request to the end."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """A whole answer and who gave it."""

    response: ChatResponse
    route: Route
    latency_ms: float
    fallbacks: tuple[str, ...] = field(default=())
    """Providers tried and left before this one, in order."""


class DoorStream(Protocol):
    """Renders one streamed answer; one instance per call."""

    def start(self) -> bytes:
        """Bytes that open the stream (sent with the first batch; may be empty)."""
        ...

    def events(self, batch: Sequence[Event], served: Served) -> bytes:
        """The bytes for one batch of events (what one upstream read produced).

        A batch ending with StreamEnded renders the end of the stream too."""
        ...

    def error(self, exc: ChatError) -> bytes:
        """The last bytes of a stream that failed after it started, in the dialect's way
        (SPEC §4: native ``done``+``error``, an OpenAI error chunk and ``[DONE]``,
        Anthropic ``event: error``, Responses ``response.failed``, Ollama ``{"error"}``)."""
        ...


class Door(Protocol):
    """A client-facing wire format."""

    name: str
    """The door's label in metrics and logs: ``native``, ``openai``, ``ollama``,
    ``anthropic``, ``responses``."""
    api: str | None
    """The upstream API of the same wire format (``Provider.api``), for lossless
    same-dialect relaying; None when no upstream speaks it (the native door)."""
    content_type: bytes
    """Of a whole answer and of errors."""
    stream_content_type: bytes

    def parse(self, body: bytes, headers: Headers) -> DoorCall:
        """Validate a request; ChatError ``invalid_request`` naming the field."""
        ...

    def render(self, call: DoorCall, answer: Answer, ctx: CallContext) -> bytes: ...

    def stream(self, call: DoorCall, ctx: CallContext) -> DoorStream: ...

    def render_error(self, exc: ChatError) -> bytes: ...
