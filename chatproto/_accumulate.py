"""Fold a stream of events back into one ChatResponse.

Strategy: chatd sometimes streams from the upstream while answering the client in one
piece (and tests compare a stream against the non-streamed answer), so one small fold
turns any codec's events into the same :class:`~chatproto.ChatResponse` that
``parse_response`` returns. Text is collected as lists of parts and joined once at the
end (linear in the answer's length). Tool-call pieces are grouped by ``index``, the
OpenAI streaming convention every codec follows (see :class:`~chatproto.ToolCallDelta`);
a door whose wire wants whole calls (Ollama's) folds them here too, with bounds, since
what it holds comes from an upstream (SPEC: bounded buffers). Passthrough events
(:class:`~chatproto.RawEvent`) carry nothing to fold and are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable

from ._errors import ChatError
from ._events import Event, RawEvent, StreamEnded, TextDelta, ThinkingDelta, ToolCallDelta
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
        max_tool_calls: more distinct tool calls than this is ``bad_upstream_response``.
        max_tool_call_bytes: so are more argument bytes than this, all calls together.
    """

    __slots__ = ("_arg_bytes", "_calls", "_content", "_end", "_max_bytes", "_max_calls",
                 "_provider", "_thinking")

    def __init__(
        self,
        provider: str | None = None,
        *,
        max_tool_calls: int | None = None,
        max_tool_call_bytes: int | None = None,
    ) -> None:
        self._provider = provider
        self._content: list[str] = []
        self._thinking: list[str] = []
        self._calls: dict[int, _PartialCall] = {}
        self._end: StreamEnded | None = None
        self._max_calls = max_tool_calls
        self._max_bytes = max_tool_call_bytes
        self._arg_bytes = 0

    def feed(self, event: Event) -> None:
        """Take one event. Events after :class:`StreamEnded` are a codec bug."""
        if self._end is not None:
            raise RuntimeError(f"event after StreamEnded: {event!r}")
        if isinstance(event, TextDelta):
            self._content.append(event.text)
        elif isinstance(event, ThinkingDelta):
            self._thinking.append(event.text)
        elif isinstance(event, ToolCallDelta):
            self._tool_delta(event)
        elif isinstance(event, StreamEnded):
            self._end = event
        elif isinstance(event, RawEvent):
            pass
        else:
            raise TypeError(f"not a chatproto event: {event!r}")

    def _tool_delta(self, event: ToolCallDelta) -> None:
        call = self._calls.get(event.index)
        if call is None:
            if self._max_calls is not None and len(self._calls) >= self._max_calls:
                raise ChatError(
                    "bad_upstream_response",
                    f"upstream streamed more than {self._max_calls} tool calls",
                    provider=self._provider,
                )
            call = self._calls[event.index] = _PartialCall()
        # The first piece carries id and name; later pieces repeat them or send None.
        if call.id is None:
            call.id = event.id
        if call.name is None:
            call.name = event.name
        if event.arguments:
            self._arg_bytes += len(event.arguments)
            if self._max_bytes is not None and self._arg_bytes > self._max_bytes:
                raise ChatError(
                    "bad_upstream_response",
                    f"upstream tool call arguments exceed {self._max_bytes} bytes",
                    provider=self._provider,
                )
            call.arguments.append(event.arguments)

    def feed_all(self, events: Iterable[Event]) -> None:
        for event in events:
            self.feed(event)

    @property
    def ended(self) -> bool:
        return self._end is not None

    @property
    def has_tool_calls(self) -> bool:
        return bool(self._calls)

    def tool_calls(self) -> tuple[ToolCall, ...]:
        """The tool calls so far, whole, in ``index`` order.

        Raises:
            ChatError: ``bad_upstream_response`` when a call never received its name.
        """
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
        return tuple(calls)

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
        calls = self.tool_calls()
        thinking = "".join(self._thinking)
        return ChatResponse(
            content="".join(self._content),
            finish_reason=end.finish_reason,
            usage=end.usage if end.usage is not None else Usage(),
            thinking=thinking or None,
            tool_calls=calls,
        )
