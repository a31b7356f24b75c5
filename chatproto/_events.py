"""Stream events: what every provider stream reduces to.

Strategy: a provider's stream (NDJSON or SSE, any framing quirk) is turned by its codec into
these few frozen, keyword-only events. They never depend on how the bytes were split: the
same stream fed whole or byte by byte yields the same events. Errors are not events; a
mid-stream error is raised as :class:`~chatproto.ChatError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._types import Usage

__all__ = ["Event", "StreamEnded", "TextDelta", "ThinkingDelta", "ToolCallDelta"]


class Event:
    """Base of the stream events. Don't subclass the concrete events."""

    __slots__ = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class TextDelta(Event):
    """A piece of the answer's content."""

    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ThinkingDelta(Event):
    """A piece of the model's reasoning (Ollama ``thinking``, OpenAI-family ``reasoning``)."""

    text: str


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
class StreamEnded(Event):
    """The stream finished normally; always the last event, emitted exactly once."""

    finish_reason: str
    """One of ``stop``, ``length``, ``tool_calls``, ``content_filter``."""
    usage: Usage | None = None
