"""Fold a stream of events back into one ChatResponse.

Strategy: chatd sometimes streams from the upstream while answering the client in one
piece (and tests compare a stream against the non-streamed answer), so one small fold
turns any codec's events into the same :class:`~chatproto.ChatResponse` that
``parse_response`` returns. Text is collected as lists of parts and joined once at the
end (linear in the answer's length). Tool-call pieces are grouped by ``index``, the
OpenAI streaming convention every codec follows (see :class:`~chatproto.ToolCallDelta`).
"""

from __future__ import annotations

from collections.abc import Iterable

from ._errors import ChatError
from ._events import Event, StreamEnded, TextDelta, ThinkingDelta, ToolCallDelta
from ._types import ChatResponse, ToolCall, Usage

__all__ = ["Accumulator"]


class _PartialCall:
    __slots__ = ("arguments", "id", "name")

    def __init__(self) -> None:
        self.id: str | None = None
        self.name: str | None = None
        self.arguments: list[str] = []


class Accumulator:
    """Collects events; :meth:`response` gives the whole answer once the stream ended.

    Args:
        provider: named in the errors raised, for the error body.
    """

    __slots__ = ("_calls", "_content", "_end", "_provider", "_thinking")

    def __init__(self, provider: str | None = None) -> None:
        self._provider = provider
        self._content: list[str] = []
        self._thinking: list[str] = []
        self._calls: dict[int, _PartialCall] = {}
        self._end: StreamEnded | None = None

    def feed(self, event: Event) -> None:
        """Take one event. Events after :class:`StreamEnded` are a codec bug."""
        if self._end is not None:
            raise RuntimeError(f"event after StreamEnded: {event!r}")
        if isinstance(event, TextDelta):
            self._content.append(event.text)
        elif isinstance(event, ThinkingDelta):
            self._thinking.append(event.text)
        elif isinstance(event, ToolCallDelta):
            call = self._calls.get(event.index)
            if call is None:
                call = self._calls[event.index] = _PartialCall()
            # The first piece carries id and name; later pieces repeat them or send None.
            if call.id is None:
                call.id = event.id
            if call.name is None:
                call.name = event.name
            call.arguments.append(event.arguments)
        elif isinstance(event, StreamEnded):
            self._end = event
        else:
            raise TypeError(f"not a chatproto event: {event!r}")

    def feed_all(self, events: Iterable[Event]) -> None:
        for event in events:
            self.feed(event)

    @property
    def ended(self) -> bool:
        return self._end is not None

    def response(self) -> ChatResponse:
        """The folded answer.

        Raises:
            ChatError: ``bad_upstream_response`` when the stream has not ended (the
                upstream cut it) or a tool call never received its name.
        """
        end = self._end
        if end is None:
            raise ChatError(
                "bad_upstream_response",
                "upstream stream ended before its final message",
                provider=self._provider,
            )
        calls: list[ToolCall] = []
        for index in sorted(self._calls):
            call = self._calls[index]
            if not call.name:
                raise ChatError(
                    "bad_upstream_response",
                    f"upstream tool call {index} has no function name",
                    provider=self._provider,
                )
            # An argument-less call may stream no fragments at all; "{}" keeps
            # ToolCall.arguments valid JSON text.
            arguments = "".join(call.arguments) or "{}"
            calls.append(ToolCall(id=call.id, name=call.name, arguments=arguments))
        thinking = "".join(self._thinking)
        return ChatResponse(
            content="".join(self._content),
            finish_reason=end.finish_reason,
            usage=end.usage if end.usage is not None else Usage(),
            thinking=thinking or None,
            tool_calls=tuple(calls),
        )
