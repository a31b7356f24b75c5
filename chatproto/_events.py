"""Stream events: what every provider stream reduces to.

Strategy: a provider's stream (NDJSON or SSE, any framing quirk) is turned by its codec into
these few frozen, keyword-only events. They never depend on how the bytes were split: the
same stream fed whole or byte by byte yields the same events. Errors are not events; a
mid-stream error is raised as :class:`~chatproto.ChatError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._types import Usage

__all__ = ["Event", "RawEvent", "StreamEnded", "TextDelta", "ThinkingDelta", "ToolCallDelta"]


class Event:
    """Base of the stream events. Don't subclass the concrete events."""

    __slots__ = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class TextDelta(Event):
    """A piece of the answer's content."""

    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ThinkingDelta(Event):
    """A piece of the model's reasoning (Ollama ``thinking``, OpenAI-family ``reasoning``).

    ``signature`` (Anthropic ``signature_delta``) and ``encrypted`` (Anthropic
    ``redacted_thinking``, Responses ``encrypted_content``) close the current thinking
    block: the next ThinkingDelta with text starts a new one.
    """

    text: str = ""
    signature: str | None = None
    encrypted: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallDelta(Event):
    """A piece of a tool call; pieces with the same ``index`` belong to one call.

    ``id`` and ``name`` arrive on the first piece (later pieces carry None);
    ``arguments`` is a fragment of the JSON text of the arguments, to be concatenated.
    """

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RawEvent(Event):
    """An upstream stream event exactly as decoded, for a door of the same dialect.

    A stream parser opened with ``passthrough=True`` emits one before the canonical events
    it derives from the same upstream event, so a door speaking the upstream's dialect can
    relay it unchanged (only the model name rewritten) and lose nothing, while every other
    consumer (other doors, the accumulator, telemetry) reads the canonical events and
    ignores this one.
    """

    dialect: str
    """The upstream API it came from (a ``Provider.api`` name)."""
    data: object
    """The decoded JSON of the event."""
    name: str | None = None
    """The SSE ``event:`` name, where the dialect uses one."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamEnded(Event):
    """The stream finished normally; always the last event, emitted exactly once."""

    finish_reason: str
    """One of ``stop``, ``length``, ``tool_calls``, ``content_filter``."""
    usage: Usage | None = None
    stop_sequence: str | None = None
    """With ``finish_reason == "stop"``: the stop sequence that ended the answer, where
    the upstream says which (Anthropic ``stop_sequence``)."""
