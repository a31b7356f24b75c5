"""The codec for Ollama's native chat endpoint, ``POST /api/chat`` (provider ``ollama``).

Strategy: requests map field for field onto Ollama's ``ChatRequest`` (OL ``api/types.go``),
with the knobs shared with ``/api/generate`` built in :mod:`._ollama_common`. Answers are a
JSON object, or NDJSON lines of the same shape ending with a ``done: true`` object
(providers.md OL §1.4, §1.5). The stream parser decodes each line once with orjson and
reads the few fields it needs inline; everything unusual (errors, tool calls, the final
object) leaves the hot path through a helper.

Decisions, each with its reason:

- Tool-call ``arguments`` are a JSON *object* on Ollama's wire, JSON *text* in chatd (OL
  §1.4: "a JSON object, not a string (unlike OpenAI)"). Going out, the text is parsed and
  must be an object (an empty string, as OpenAI clients send for no-argument calls, is
  ``{}``); coming back, the object is serialised to compact JSON text.
- Ollama's tool calls usually carry no ``id`` (OL ``types.go``: optional). OpenAI-style
  clients need one to answer the call, so a missing id becomes ``call_<index>``, ``index``
  being the call's position in the answer; the same answer gets the same ids streamed or
  not, and replays are deterministic.
- A tool result without a name is sent with the ``tool_name`` of the call its
  ``tool_call_id`` answers: OpenAI clients name results by id only, Ollama by ``tool_name``
  (OL §1.2).
- ``tool_choice`` is not sent: Ollama has no such field ("NOT supported: tool_choice", OL
  ``openai-compatibility.mdx``; LiteLLM drops it because it "causes ollama requests to
  hang", LL ``ollama/chat/transformation.py``).
- After the ``done: true`` line the parser returns no more events and ignores what
  follows: Ollama writes nothing after it (OL §1.5), and a complete answer is not thrown
  away over trailing bytes a proxy may add (the loop shared with ``/api/generate``,
  :class:`._ollama_common.NDJSONStream`).
"""

from __future__ import annotations

from typing import Any

import orjson

from .._codec import Codec
from .._decoders import dumps
from .._errors import ChatError, Headers
from .._events import Event, StreamEnded, TextDelta, ThinkingDelta, ToolCallDelta
from .._types import ChatRequest, ChatResponse, HTTPRequest, Message, Provider, Route, ToolCall
from . import ollama as common

__all__ = ["OllamaChatCodec", "codec"]

_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError


def _arguments(call: ToolCall) -> dict[str, Any]:
    """A tool call's JSON-text arguments as the object Ollama wants (OL §1.4)."""
    if not call.arguments.strip():
        return {}
    try:
        value = _loads(call.arguments)
    except _JSONDecodeError:
        raise ChatError(
            "invalid_request", f"tool call {call.name!r}: arguments are not valid JSON"
        ) from None
    if type(value) is not dict:
        raise ChatError(
            "invalid_request", f"tool call {call.name!r}: arguments must be a JSON object"
        )
    return value


def _call_json(call: ToolCall) -> dict[str, Any]:
    out: dict[str, Any] = {"function": {"name": call.name, "arguments": _arguments(call)}}
    if call.id is not None:
        out["id"] = call.id
    return out


def _message_json(message: Message, names: dict[str, str]) -> dict[str, Any]:
    """One message in Ollama's shape: ``{role, content, thinking?, images?, tool_calls?,
    tool_name?, tool_call_id?}`` (providers.md OL §1.2).

    ``names`` maps the ids of the tool calls seen so far to their function names: OpenAI
    clients answer a call with only its ``tool_call_id``, while Ollama matches a result to
    its call by ``tool_name``, so a tool message without a name takes its call's.
    """
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.thinking:
        out["thinking"] = message.thinking
    if message.images:
        out["images"] = message.images
    if message.tool_calls:
        out["tool_calls"] = [_call_json(call) for call in message.tool_calls]
        for call in message.tool_calls:
            if call.id is not None:
                names[call.id] = call.name
    if message.role == "tool":
        name = message.name
        if name is None and message.tool_call_id is not None:
            name = names.get(message.tool_call_id)
        if name is not None:
            out["tool_name"] = name
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    return out


def _tool_call(raw: object, index: int, provider: str) -> tuple[str, str, str]:
    """``(id, name, arguments JSON text)`` of one returned tool call.

    Shape: ``{"id"?, "function": {"index"?, "name", "arguments": {...}}}`` (OL ``types.go``).
    """
    if type(raw) is not dict:
        raise common.bad_response(provider, "a tool call that is not an object")
    function = raw.get("function")
    if type(function) is not dict:
        raise common.bad_response(provider, "a tool call without a function object")
    name = function.get("name")
    if type(name) is not str or not name:
        raise common.bad_response(provider, "a tool call without a name")
    arguments = function.get("arguments")
    if arguments is None:
        text = "{}"
    elif type(arguments) is dict:
        try:
            text = dumps(arguments).decode()
        except TypeError:  # orjson writes 254 levels of nesting; it read up to 1,024
            raise common.bad_response(provider, "tool call arguments nested too deeply") \
                from None
    else:
        raise common.bad_response(provider, "tool call arguments that are not an object")
    call_id = raw.get("id")
    if not call_id:
        call_id = f"call_{index}"
    elif type(call_id) is not str:
        raise common.bad_response(provider, "a non-string tool call id")
    return call_id, name, text


def _tool_calls(message: dict[str, Any], provider: str, start: int) -> list[tuple[str, str, str]]:
    raw = message.get("tool_calls")
    if not raw:
        return []
    if type(raw) is not list:
        raise common.bad_response(provider, "'tool_calls' that is not a list")
    return [_tool_call(call, start + i, provider) for i, call in enumerate(raw)]


class _ChatStream(common.NDJSONStream):
    """Parses ``/api/chat`` NDJSON into events: ``message.thinking``, ``message.content``,
    ``message.tool_calls`` (OL §1.4); the loop is :class:`._ollama_common.NDJSONStream`."""

    __slots__ = ("_tools",)

    api = "ollama_chat"

    def __init__(self, provider: str, *, passthrough: bool = False) -> None:
        super().__init__(provider, passthrough=passthrough)
        self._tools = 0
        """Tool calls seen so far: the next call's index, and whether finish is tool_calls."""

    def _deltas(self, obj: dict[str, Any], out: list[Event]) -> None:
        message = obj.get("message")
        if message is None:
            return
        if type(message) is not dict:
            raise common.bad_response(self._provider, "a non-object 'message'")
        thinking = message.get("thinking")
        if thinking is not None:
            if type(thinking) is not str:
                raise common.bad_response(self._provider, "a non-string 'thinking'")
            if thinking:
                out.append(ThinkingDelta(text=thinking))
        text = message.get("content")
        if text is not None:
            if type(text) is not str:
                raise common.bad_response(self._provider, "a non-string 'content'")
            if text:
                out.append(TextDelta(text=text))
        if message.get("tool_calls"):
            # "Tool calls arrive as a complete tool_calls array inside a done:false
            # chunk, followed by a final done:true chunk" (providers.md OL §1.5):
            # one delta per whole call; the count survives until the done line.
            for call_id, name, arguments in _tool_calls(message, self._provider, self._tools):
                out.append(
                    ToolCallDelta(index=self._tools, id=call_id, name=name, arguments=arguments)
                )
                self._tools += 1

    def _ended(self, obj: dict[str, Any]) -> StreamEnded:
        return common.stream_ended(obj, self._provider, self._tools > 0)


class OllamaChatCodec:
    """Ollama ``/api/chat``; see the module docstring for the decisions it makes."""

    __slots__ = ()

    api = "ollama_chat"

    def build_request(self, request: ChatRequest, route: Route, provider: Provider) -> HTTPRequest:
        names: dict[str, str] = {}
        body: dict[str, Any] = {
            "model": route.upstream_model,
            "messages": [_message_json(m, names) for m in request.messages],
        }
        common.request_fields(request, body)
        if request.tools:
            # Ollama takes OpenAI's {type:"function", function:{name, description,
            # parameters}} shape as is (providers.md OL §1.2).
            body["tools"] = request.tools
        return common.http_request(provider, "/api/chat", body, request.stream)

    def parse_response(
        self, provider: str, body: bytes, *, passthrough: bool = False
    ) -> ChatResponse:
        obj = common.answer_object(body, provider)
        message = obj.get("message")
        if type(message) is not dict:
            raise common.bad_response(provider, "a body without a 'message' object")
        calls = _tool_calls(message, provider, 0)
        return ChatResponse(
            content=common.text_field(message, "content", provider),
            finish_reason=common.finish_reason(obj, provider, bool(calls)),
            usage=common.usage(obj, provider),
            thinking=common.text_field(message, "thinking", provider) or None,
            tool_calls=tuple([ToolCall(id=i, name=n, arguments=a) for i, n, a in calls])
            if calls
            else (),
            raw=obj if passthrough else None,
            dialect=self.api if passthrough else None,
        )

    def stream_parser(self, provider: str, *, passthrough: bool = False) -> _ChatStream:
        return _ChatStream(provider, passthrough=passthrough)

    def parse_error(
        self, provider: str, status: int, headers: Headers, body: bytes, *, now: float
    ) -> ChatError:
        return common.parse_error(provider, status, headers, body, now=now)


codec: Codec = OllamaChatCodec()
