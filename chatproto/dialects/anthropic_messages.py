"""Anthropic Messages at both ends: the ``/v1/messages`` door and the ``anthropic_messages``
upstream codec.

Strategy: one module owns every byte of the wire format, in both directions, so each
mapping and its inverse sit side by side (``stop_reason``, tool ``input`` object vs JSON
text, usage with its cache counts, the error envelope):

- **The door** (:class:`MessagesDoor`, the server end of :mod:`chatproto._door`) parses
  what Claude Code and the ``anthropic`` SDK send into the canonical
  :class:`~chatproto.ChatRequest`, and renders answers, streams and errors back. The
  stream renderer (:class:`MessagesStream`) keeps the one order Claude Code's parser
  needs (research/agents.md): ``message_start`` (with usage), ``ping``, then for every
  block ``content_block_start`` / ``content_block_delta``... / ``content_block_stop`` with
  contiguous indices from 0, then ``message_delta`` (``stop_reason``, usage) and
  ``message_stop``, every event with its ``event:`` line (without those lines Claude Code
  falls back to ``stream: false``; without ``content_block_stop`` it silently drops the
  block).
- **The codec** (:class:`MessagesCodec`, :mod:`chatproto._codec`) calls an Anthropic-speaking
  upstream (OpenCode Zen's ``claude-*`` models, Kimi For Coding's Anthropic endpoint; SPEC
  §2) and reduces its answers, SSE streams and error bodies to canonical values and events.
- **The same dialect loses nothing** (SPEC §2 "Dialects"): the door keeps the client's
  decoded body in ``ChatRequest.raw`` and this codec sends it back out with only the model
  (and ``stream``) rewritten, so ``cache_control``, citations, server-tool blocks and every
  field chatd does not read reach the upstream; with ``passthrough`` the parsers keep the
  upstream's body (``ChatResponse.raw``) and every stream event (:class:`~chatproto.RawEvent`)
  for the door to relay unchanged but for the model name. Two rewrites are made even then,
  each because an Anthropic upstream would refuse the body otherwise (see
  :func:`_upstream_messages`).
- **Across dialects** the canonical model carries what has a counterpart: thinking with
  its signature, tool calls with their ids, tool results as ``role: "tool"`` messages,
  images, usage with cache reads and writes. What has none is listed in the README
  ("Anthropic Messages across dialects") with what chatd does with it.

The stream parser's and renderer's per-event paths are written flat (locals, one
``orjson`` call, precomputed byte prefixes): they run once per relayed token.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

import orjson

from .._codec import history_arguments, request_headers
from .._decoders import SSEDecoder, dumps, encode_body, loads
from .._door import Answer, CallContext, DoorCall, Served, render_batch
from .._errors import ChatError, Headers, clip_message, error_from_upstream
from .._events import Event, RawEvent, StreamEnded, TextDelta, ThinkingDelta, ToolCallDelta
from .._lifecycle import StreamLifecycle
from .._request import (
    boolean,
    decode_body,
    integer,
    invalid,
    json_object,
    json_type,
    number,
    parse_model,
    parse_stop,
    positive_int,
)
from .._types import (
    JSON,
    ChatRequest,
    ChatResponse,
    HTTPRequest,
    ImagePart,
    Message,
    Part,
    Provider,
    Route,
    TextPart,
    ThinkingPart,
    ToolCall,
    Usage,
)

__all__ = [
    "API",
    "DEFAULT_VERSION",
    "MAX_HELD_BYTES",
    "MAX_HELD_CALLS",
    "MessagesCodec",
    "MessagesDoor",
    "MessagesStream",
    "MessagesStreamParser",
    "MessagesView",
    "codec",
    "door",
    "estimate_tokens",
    "parse_request",
    "render_error",
    "render_message",
]

API = "anthropic_messages"
"""The ``Provider.api`` name of this wire format."""

DEFAULT_VERSION = "2023-06-01"
"""``anthropic-version`` sent when the client gave none (the only version the Messages API
has; Claude Code and the SDKs send it, research/agents.md)."""

# --------------------------------------------------------------------------------------
# Shared tables


#: Anthropic ``stop_reason`` -> SPEC §3 ``finish_reason``. ``pause_turn`` (a server tool
#: paused a long turn) ends this answer normally; ``refusal`` is the content filter;
#: ``model_context_window_exceeded`` is a truncation like ``max_tokens``.
_FINISH: Mapping[str | None, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

#: SPEC §3 ``finish_reason`` -> Anthropic ``stop_reason`` (``stop`` is ``end_turn`` unless
#: the stop sequence that matched is known).
_STOP_REASON: Mapping[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}

#: Anthropic error ``type`` -> the HTTP status Anthropic answers it with. Used for a
#: mid-stream ``event: error`` (the status line said 200 long ago) so it is classified as
#: the status would have been; 529 is Anthropic's "overloaded", which SPEC §4 reports as
#: 503 ``upstream_overloaded`` (see :func:`_from_status`).
_ERROR_STATUS: Mapping[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

#: Think levels (``ChatRequest.think``) -> ``budget_tokens`` for ``thinking: {type:
#: "enabled"}``. Anthropic's minimum is 1,024; ``max`` is the budget Claude Code itself
#: asks for (31,999, research/agents.md); ``True`` is ``medium``, as in Ollama
#: (providers.md §1.3: "true means level medium where a level is needed").
_BUDGET: Mapping[bool | str, int] = {
    "low": 2048, "medium": 8192, True: 8192, "high": 16384, "max": 31999,
}
_MIN_BUDGET = 1024

#: ``max_tokens`` is required by Anthropic; an OpenAI or Ollama client may not send it.
#: Every Claude model can write at least this many tokens, so the default is never refused.
_DEFAULT_MAX_TOKENS = 4096

#: Base64 openings of the image formats Anthropic takes (PNG, JPEG, GIF, WebP), for an
#: image whose media type the client did not say (Ollama and OpenAI clients send bare
#: base64 or a data URL).
_IMAGE_MAGIC = (("iVBORw0KGgo", "image/png"), ("/9j/", "image/jpeg"),
                ("R0lGOD", "image/gif"), ("UklGR", "image/webp"))


def _bad(provider: str | None, what: str) -> ChatError:
    return ChatError("bad_upstream_response", f"upstream sent {what}", provider=provider)


# ======================================================================================
# The door: a client's request
# ======================================================================================


@dataclass(frozen=True, slots=True, kw_only=True)
class MessagesView:
    """What rendering needs beyond the request: the model name as the client spelled it
    (every answer echoes it, a tier or prefixed name included)."""

    model: str


#: Top-level fields the door reads into the canonical request; the rest go to ``extras``
#: (``context_management``, ``service_tier``, ``container``, ``mcp_servers``...).
_INTERPRETED = frozenset({
    "model", "messages", "system", "max_tokens", "stream", "temperature", "top_p", "top_k",
    "stop_sequences", "tools", "tool_choice", "thinking", "output_config", "metadata",
})

#: Client headers the request carries (lower case): the version and betas for a
#: same-dialect upstream, the User-Agent for a provider that forwards it (SPEC §2, Kimi).
_FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta", "user-agent")

#: ``output_config.effort`` -> ``ChatRequest.think`` level. ``xhigh`` becomes ``high`` as
#: in Ollama's own ``/v1/messages`` (OL ``anthropic/anthropic.go FromMessagesRequest``).
_EFFORT: Mapping[str, str] = {
    "low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "max",
}


def parse_request(body: bytes, headers: Headers = (), *, count: bool = False) -> DoorCall:
    """Validate a ``POST /v1/messages`` body (``count``: a ``count_tokens`` body, which has
    no ``max_tokens`` and does not stream) into a :class:`DoorCall`.

    The mapping into the canonical request:

    - ``system`` (a string or text blocks) is a leading ``system`` message; a ``role:
      "system"`` message inside ``messages`` (Claude Code sends one, outside Anthropic's
      published schema, research/agents.md) stays a system message where it stands.
    - Blocks become typed parts, in order: ``text``; ``image`` (base64 with its media type,
      or a URL); ``thinking`` with its ``signature``; ``redacted_thinking`` as encrypted
      thinking; ``tool_use`` as a tool call whose ``input`` object becomes JSON text; a
      text ``document`` as its text. Each ``tool_result`` becomes a ``role: "tool"``
      message naming the call (``tool_call_id``, and the tool's name from the call),
      with its text and images and ``is_error``. Blocks with no counterpart (server-tool
      blocks, PDF documents, ``search_result``...) are left out of the canonical messages
      and reach only a same-dialect upstream, through ``raw``.
    - ``tools``: custom tools become OpenAI-shaped function tools, an empty or untyped
      ``input_schema`` an empty object schema; server tools (a ``type`` such as
      ``web_search_20250305``) only reach a same-dialect upstream. ``defer_loading`` is
      kept only there too; elsewhere the tool is simply offered.
    - ``tool_choice`` ``auto``/``any``/``tool``/``none`` -> ``auto``/``required``/a named
      function/``none``; ``disable_parallel_tool_use`` -> ``options.parallel_tool_calls``.
    - ``thinking`` ``disabled`` -> ``think: false``, ``enabled`` -> ``true``; otherwise
      (``adaptive``, or none) ``output_config.effort`` is the level, as Ollama's own
      ``/v1/messages`` maps them (OL ``anthropic/anthropic.go``). ``output_config.format``
      (a JSON schema) -> ``format``.
    - ``stop_sequences`` -> ``stop``; ``top_k`` and ``metadata.user_id`` (as ``user``) ->
      ``options``; ``temperature``, ``top_p``, ``max_tokens`` as they are.
    - ``anthropic-version`` and ``anthropic-beta`` go to ``headers`` for a same-dialect
      upstream, with ``user-agent`` (forwarded where the provider does); every other
      top-level field goes to ``extras``, and the whole body to ``raw``.
      ``cache_control`` is read nowhere: only the same dialect has it.

    Raises:
        ChatError: ``invalid_request`` (400), naming the field.
    """
    obj = decode_body(body)
    model = parse_model(obj)
    max_tokens = positive_int(obj.get("max_tokens"), "max_tokens")
    if max_tokens is None and not count:
        raise invalid("max_tokens is required")
    messages: list[Message] = []
    system = obj.get("system")
    if system is not None:
        messages.extend(_system(system, "system"))
    raw_messages = obj.get("messages")
    if raw_messages is None:
        raise invalid("messages is required")
    if not isinstance(raw_messages, list):
        raise invalid(f"messages must be an array of messages, not {json_type(raw_messages)}")
    if not raw_messages:
        raise invalid("messages must not be empty")
    names: dict[str, str] = {}
    for i, item in enumerate(raw_messages):
        messages.extend(_message(item, f"messages[{i}]", names))

    options: dict[str, JSON] = {}
    top_k = integer(obj.get("top_k"), "top_k")
    if top_k is not None:
        options["top_k"] = top_k
    metadata = obj.get("metadata")
    if metadata is not None:
        metadata = json_object(metadata, "metadata")
        user = metadata.get("user_id")
        if user is not None:
            if not isinstance(user, str):
                raise invalid(f"metadata.user_id must be a string, not {json_type(user)}")
            options["user"] = user
    tool_choice, parallel = _tool_choice(obj.get("tool_choice"))
    if parallel is False:
        options["parallel_tool_calls"] = False
    output_config = obj.get("output_config")
    if output_config is not None and not isinstance(output_config, dict):
        raise invalid(f"output_config must be an object, not {json_type(output_config)}")
    chat = ChatRequest(
        model=model,
        messages=tuple(messages),
        max_tokens=max_tokens,
        temperature=number(obj.get("temperature"), "temperature"),
        top_p=number(obj.get("top_p"), "top_p"),
        stop=parse_stop(obj.get("stop_sequences"), "stop_sequences"),
        format=_format(output_config),
        think=_think(obj.get("thinking"), output_config),
        stream=False if count else bool(boolean(obj.get("stream"), "stream")),
        tools=_tools(obj.get("tools")),
        tool_choice=tool_choice,
        options=options,
        dialect=API,
        extras={k: v for k, v in obj.items() if k not in _INTERPRETED},
        headers=tuple((k, v) for k, v in ((k.lower(), v) for k, v in headers)
                      if k in _FORWARDED_HEADERS),
        raw=obj,
    )
    return DoorCall(chat=chat, view=MessagesView(model=model))


def _blocks(value: object, field: str) -> list[dict[str, Any]]:
    """Content as a list of blocks: a string is one text block."""
    if isinstance(value, str):
        return [{"type": "text", "text": value}]
    if not isinstance(value, list):
        shown = "missing" if value is None else json_type(value)
        raise invalid(f"{field} must be a string or an array of content blocks, not {shown}")
    for i, block in enumerate(value):
        block = json_object(block, f"{field}[{i}]")
        kind = block.get("type")
        if not isinstance(kind, str):
            raise invalid(f"{field}[{i}].type must be a string, not {json_type(kind)}")
    return value


def _text(block: Mapping[str, Any], where: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise invalid(f"{where}.text must be a string, not {json_type(text)}")
    return text


def _system(value: object, field: str) -> list[Message]:
    """``system``, or a ``role: "system"`` message's content: text blocks only (what
    Anthropic's schema allows there). Each block stays its own text part."""
    parts: list[Part] = []
    for i, block in enumerate(_blocks(value, field)):
        where = f"{field}[{i}]" if isinstance(value, list) else field
        if block["type"] != "text":
            raise invalid(f'{where}.type must be "text" in a system prompt, not '
                          f'{block["type"]!r}')
        text = _text(block, where)
        if text:
            parts.append(TextPart(text=text))
    return [Message(role="system", parts=tuple(parts))] if parts else []


def _message(value: object, field: str, names: dict[str, str]) -> list[Message]:
    """One Anthropic message -> canonical messages (a user turn with ``tool_result``
    blocks becomes one ``tool`` message per result, in order, with the user's other
    blocks around them as user messages). ``names`` maps tool-use ids seen so far to
    their tool names."""
    value = json_object(value, field)
    role = value.get("role")
    if role not in ("user", "assistant", "system"):
        shown = "missing" if role is None else repr(role)
        raise invalid(f'{field}.role must be "user" or "assistant"; got {shown}')
    content = value.get("content")
    if role == "system":
        return _system(content, f"{field}.content")
    blocks = _blocks(content, f"{field}.content")
    out: list[Message] = []
    parts: list[Part] = []
    for i, block in enumerate(blocks):
        where = f"{field}.content[{i}]" if isinstance(content, list) else f"{field}.content"
        kind = block["type"]
        if kind == "text":
            parts.append(TextPart(text=_text(block, where)))
        elif kind == "image":
            image = _image(block, where)
            if image is not None:
                parts.append(image)
        elif kind == "document":
            parts.extend(_document(block, where))
        elif role == "user" and kind == "tool_result":
            if parts:
                out.append(Message(role="user", parts=tuple(parts)))
                parts = []
            out.append(_tool_result(block, where, names))
        elif role == "assistant" and kind == "tool_use":
            call = _tool_use(block, where)
            names[call.id or ""] = call.name  # _tool_use checked the id
            parts.append(call)
        elif role == "assistant" and kind == "thinking":
            text = block.get("thinking")
            if not isinstance(text, str):
                raise invalid(f"{where}.thinking must be a string, not {json_type(text)}")
            signature = block.get("signature")
            if signature is not None and not isinstance(signature, str):
                raise invalid(f"{where}.signature must be a string, not "
                              f"{json_type(signature)}")
            parts.append(ThinkingPart(text=text, signature=signature or None))
        elif role == "assistant" and kind == "redacted_thinking":
            data = block.get("data")
            if not isinstance(data, str):
                raise invalid(f"{where}.data must be a string, not {json_type(data)}")
            parts.append(ThinkingPart(encrypted=data))
        elif kind in ("tool_use", "tool_result", "thinking", "redacted_thinking"):
            other = "assistant" if role == "user" else "user"
            raise invalid(f"{where}: {kind} blocks belong in {other} messages")
        # Any other block (server-tool use and results, search results, containers...)
        # has no canonical counterpart: it reaches a same-dialect upstream through raw.
    if parts or not out:
        out.append(Message(role=str(role), parts=tuple(parts)))
    return out


def _image(block: Mapping[str, Any], where: str) -> ImagePart | None:
    """``{"type": "image", "source": {"type": "base64", "media_type", "data"} | {"type":
    "url", "url"}}``; a ``file`` source (Anthropic's Files API) has no counterpart."""
    source = block.get("source")
    source = json_object(source, f"{where}.source")
    kind = source.get("type")
    if kind == "base64":
        data = source.get("data")
        media = source.get("media_type")
        if not isinstance(data, str) or not data:
            raise invalid(f"{where}.source.data must be a non-empty base64 string")
        if media is not None and not isinstance(media, str):
            raise invalid(f"{where}.source.media_type must be a string")
        return ImagePart(data=data, media_type=media)
    if kind == "url":
        url = source.get("url")
        if not isinstance(url, str) or not url:
            raise invalid(f"{where}.source.url must be a non-empty string")
        return ImagePart(url=url)
    if kind == "file":
        return None
    raise invalid(f'{where}.source.type must be "base64", "url" or "file", not {kind!r}')


def _document(block: Mapping[str, Any], where: str) -> list[Part]:
    """A ``document`` whose source is text (``{"type": "text", "data"}``) or content
    blocks is that text; a PDF (base64, URL or file) has no counterpart."""
    source = block.get("source")
    source = json_object(source, f"{where}.source")
    if source.get("type") == "text":
        data = source.get("data")
        if not isinstance(data, str):
            raise invalid(f"{where}.source.data must be a string, not {json_type(data)}")
        return [TextPart(text=data)]
    if source.get("type") == "content":
        parts: list[Part] = []
        for i, inner in enumerate(_blocks(source.get("content"), f"{where}.source.content")):
            inner_where = f"{where}.source.content[{i}]"
            if inner["type"] == "text":
                parts.append(TextPart(text=_text(inner, inner_where)))
            elif inner["type"] == "image":
                image = _image(inner, inner_where)
                if image is not None:
                    parts.append(image)
        return parts
    return []


def _tool_use(block: Mapping[str, Any], where: str) -> ToolCall:
    call_id = block.get("id")
    name = block.get("name")
    if not isinstance(call_id, str) or not call_id:
        raise invalid(f"{where}.id must be a non-empty string")
    if not isinstance(name, str) or not name:
        raise invalid(f"{where}.name must be a non-empty string")
    arguments = block.get("input", {})
    arguments = json_object(arguments, f"{where}.input")
    try:
        text = dumps(arguments).decode()
    except TypeError:  # orjson reads 1,024 levels of nesting but writes 254
        raise invalid(f"{where}.input nests too deeply") from None
    return ToolCall(id=call_id, name=name, arguments=text)


def _tool_result(block: Mapping[str, Any], where: str, names: Mapping[str, str]) -> Message:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise invalid(f"{where}.tool_use_id must be a non-empty string")
    is_error = boolean(block.get("is_error"), f"{where}.is_error")
    content = block.get("content")
    parts: list[Part] = []
    if content is not None:
        for i, inner in enumerate(_blocks(content, f"{where}.content")):
            inner_where = f"{where}.content[{i}]" if isinstance(content, list) else where
            if inner["type"] == "text":
                parts.append(TextPart(text=_text(inner, inner_where)))
            elif inner["type"] == "image":
                image = _image(inner, inner_where)
                if image is not None:
                    parts.append(image)
            elif inner["type"] == "document":
                parts.extend(_document(inner, inner_where))
    return Message(role="tool", parts=tuple(parts), tool_call_id=call_id,
                   name=names.get(call_id), is_error=bool(is_error))


def _tools(value: object) -> tuple[JSON, ...]:
    """Custom tools -> OpenAI-shaped function tools; server tools are left to ``raw``."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise invalid(f"tools must be an array of tools, not {json_type(value)}")
    out: list[JSON] = []
    for i, tool in enumerate(value):
        where = f"tools[{i}]"
        tool = json_object(tool, where)
        kind = tool.get("type")
        if kind is not None and kind != "custom":
            if not isinstance(kind, str):
                raise invalid(f"{where}.type must be a string, not {json_type(kind)}")
            continue  # a server tool (web_search_..., bash_..., text_editor_...)
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise invalid(f"{where}.name must be a non-empty string")
        description = tool.get("description")
        if description is not None and not isinstance(description, str):
            raise invalid(f"{where}.description must be a string, not "
                          f"{json_type(description)}")
        schema = tool.get("input_schema")
        if schema is None or schema == {}:
            # An empty schema (Claude Code's deferred-tool placeholder sends
            # ``{"type": "object", "properties": {}}``; others send ``{}``): OpenAI-family
            # upstreams want an object schema, so an empty one is written out as one.
            schema = {"type": "object", "properties": {}}
        elif not isinstance(schema, dict):
            raise invalid(f"{where}.input_schema must be an object, not {json_type(schema)}")
        elif "type" not in schema:
            schema = {"type": "object", **schema}
        function: dict[str, JSON] = {"name": name}
        if description:
            function["description"] = description
        function["parameters"] = schema
        out.append({"type": "function", "function": function})
    return tuple(out)


def _tool_choice(value: object) -> tuple[JSON, bool | None]:
    """``tool_choice`` -> (the canonical, OpenAI-shaped choice, parallel calls allowed)."""
    if value is None:
        return None, None
    value = json_object(value, "tool_choice")
    disable = boolean(value.get("disable_parallel_tool_use"),
                      "tool_choice.disable_parallel_tool_use")
    parallel = None if disable is None else not disable
    kind = value.get("type")
    if kind == "auto":
        return "auto", parallel
    if kind == "any":
        return "required", parallel
    if kind == "none":
        return "none", parallel
    if kind == "tool":
        name = value.get("name")
        if not isinstance(name, str) or not name:
            raise invalid('tool_choice.name must be a non-empty string with type "tool"')
        return {"type": "function", "function": {"name": name}}, parallel
    raise invalid(f'tool_choice.type must be "auto", "any", "tool" or "none", not {kind!r}')


def _think(thinking: object, output_config: Mapping[str, Any] | None) -> bool | str | None:
    """``thinking`` and ``output_config.effort`` -> ``think`` (see :func:`parse_request`)."""
    level: str | None = None
    if output_config is not None:
        effort = output_config.get("effort")
        if effort is not None:
            if not isinstance(effort, str) or effort not in _EFFORT:
                allowed = ", ".join(f'"{e}"' for e in _EFFORT)
                raise invalid(f"output_config.effort must be one of {allowed}, not {effort!r}")
            level = _EFFORT[effort]
    if thinking is None:
        return level
    thinking = json_object(thinking, "thinking")
    kind = thinking.get("type")
    if kind == "disabled":
        return False
    if kind == "enabled":
        budget = integer(thinking.get("budget_tokens"), "thinking.budget_tokens")
        if budget is not None and budget < 1:
            raise invalid(f"thinking.budget_tokens must be positive, not {budget}")
        return True
    if kind == "adaptive":
        return level
    raise invalid(f'thinking.type must be "enabled", "adaptive" or "disabled", not {kind!r}')


def _format(output_config: Mapping[str, Any] | None) -> JSON:
    """``output_config.format: {"type": "json_schema", "schema"}`` -> ``format``."""
    if output_config is None:
        return None
    fmt = output_config.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        raise invalid('output_config.format must be {"type": "json_schema", "schema": {...}}')
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        raise invalid(f"output_config.format.schema must be an object, not "
                      f"{json_type(schema)}")
    return schema


def estimate_tokens(request: ChatRequest) -> int:
    """A rough input-token count for ``count_tokens`` when the upstream has no counter:
    characters / 4, the estimate Ollama's own ``/v1/messages/count_tokens`` gives (OL
    ``anthropic/anthropic.go estimateTokens``), over the text, the tool calls and results
    and the tool definitions; at least 1. The door marks it ``x-chatd-estimate: true``."""
    chars = 0
    for message in request.messages:
        chars += len(message.role)
        for part in message.parts:
            if type(part) is TextPart or type(part) is ThinkingPart:
                chars += len(part.text)
            elif type(part) is ToolCall:
                chars += len(part.name) + len(part.arguments)
    for tool in request.tools:
        chars += len(dumps(tool))
    return max(1, chars // 4)


# ======================================================================================
# The door: answers, streams and errors
# ======================================================================================


def _view(call: DoorCall) -> MessagesView:
    view = call.view
    if isinstance(view, MessagesView):
        return view
    return MessagesView(model=call.chat.model)


def _usage_json(usage: Usage | None) -> dict[str, int]:
    """Usage in Anthropic's shape. Anthropic's ``input_tokens`` leaves out cache reads and
    writes, which it counts apart; canonical ``prompt_tokens`` includes them (Usage's
    convention), so they are taken back out. The cache counts appear only when the
    upstream reported them (usage is never estimated; Claude Code, like the SDK, reads
    an absent count as 0)."""
    if usage is None:
        return {"input_tokens": 0, "output_tokens": 0}
    cached = usage.cached_tokens or 0
    created = usage.cache_creation_tokens or 0
    out = {"input_tokens": max(0, usage.prompt_tokens - cached - created),
           "output_tokens": usage.completion_tokens}
    if usage.cache_creation_tokens is not None:
        out["cache_creation_input_tokens"] = usage.cache_creation_tokens
    if usage.cached_tokens is not None:
        out["cache_read_input_tokens"] = usage.cached_tokens
    return out


def _stop_reason(finish: str, stop_sequence: str | None) -> str:
    if finish == "stop" and stop_sequence is not None:
        return "stop_sequence"
    return _STOP_REASON.get(finish, "end_turn")


def _tool_input(call: ToolCall) -> dict[str, Any]:
    """A tool call's JSON-text arguments as the ``input`` object Anthropic wants."""
    if not call.arguments.strip():
        return {}
    try:
        value = orjson.loads(call.arguments)
    except orjson.JSONDecodeError:
        value = None
    if type(value) is not dict:
        raise ChatError("bad_upstream_response",
                        f"upstream sent arguments for tool {call.name!r} that are not a "
                        "JSON object")
    return value


def render_message(call: DoorCall, answer: Answer, ctx: CallContext) -> bytes:
    """A whole answer: ``{"id", "type": "message", "role", "model", "content", "stop_reason",
    "stop_sequence", "usage"}``. A same-dialect upstream's body is relayed as it came,
    only ``model`` rewritten to the name the client sent. Otherwise the content is the
    thinking blocks (with their signatures), the text, then the tool calls; a tool call
    without an id (Ollama) gets ``toolu_<message id>_<n>``."""
    resp = answer.response
    model = _view(call).model
    if resp.dialect == API and isinstance(resp.raw, dict):
        return dumps({**resp.raw, "model": model})
    content: list[dict[str, Any]] = []
    thinking = resp.thinking_parts
    if not thinking and resp.thinking:
        thinking = (ThinkingPart(text=resp.thinking),)
    for part in thinking:
        if part.encrypted is not None:
            content.append({"type": "redacted_thinking", "data": part.encrypted})
        else:
            content.append({"type": "thinking", "thinking": part.text,
                            "signature": part.signature or ""})
    if resp.content:
        content.append({"type": "text", "text": resp.content})
    for i, tool in enumerate(resp.tool_calls):
        content.append({"type": "tool_use", "id": tool.id or f"toolu_{ctx.id}_{i}",
                        "name": tool.name, "input": _tool_input(tool)})
    return dumps({
        "id": f"msg_{ctx.id}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _stop_reason(resp.finish_reason, resp.stop_sequence),
        "stop_sequence": resp.stop_sequence,
        "usage": _usage_json(resp.usage),
    })


def _error_type(status: int) -> str:
    """Anthropic's ``error.type`` for a status (SPEC §4: "the types are Anthropic's"); the
    SDK picks its exception class from the status."""
    if status == 400:
        return "invalid_request_error"
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 404:
        return "not_found_error"
    if status == 413:
        return "request_too_large"
    if status == 429:
        return "rate_limit_error"
    if status in (503, 529):
        return "overloaded_error"
    if status >= 500:
        return "api_error"
    return "invalid_request_error"


def _error_object(exc: ChatError) -> dict[str, object]:
    error: dict[str, object] = {"type": _error_type(exc.status), "message": exc.message,
                                "code": exc.type}
    if exc.provider is not None:
        error["provider"] = exc.provider
    if exc.upstream_status is not None:
        error["upstream_status"] = exc.upstream_status
    return error


def render_error(exc: ChatError) -> bytes:
    """``{"type": "error", "error": {"type", "message"}}`` (SPEC §3, §4), sent with
    ``exc.status``. ``code`` is chatd's SPEC §4 type, the precise one; ``provider`` and
    ``upstream_status`` as on the other doors (the SDK keeps extra fields in
    ``APIStatusError.body``)."""
    return dumps({"type": "error", "error": _error_object(exc)})


# Stream renderer states of the open block.
_NONE, _TEXT, _THINKING, _SIGNED, _TOOL = 0, 1, 2, 3, 4

_PING = b'event: ping\ndata: {"type":"ping"}\n\n'
_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
_TEXT_BLOCK = b'{"type":"text","text":""}'
_THINKING_BLOCK = b'{"type":"thinking","thinking":"","signature":""}'


#: Bounds on the tool calls a stream holds back while another call's block is open (SPEC:
#: bounded buffers). A real answer has a handful of calls of a few kilobytes each.
MAX_HELD_CALLS = 128
MAX_HELD_BYTES = 1 << 20


class _Held:
    """A tool call held back: its id, name and argument fragments so far."""

    __slots__ = ("arguments", "id", "name")

    def __init__(self) -> None:
        self.id: str | None = None
        self.name: str | None = None
        self.arguments: list[str] = []


class MessagesStream:
    """Renders one streamed answer as Anthropic SSE (see the module docstring for the order).

    Blocks open as the events need them: text deltas go to a text block, thinking deltas
    to a thinking block (a signature completes it: later thinking opens a new one),
    encrypted thinking is a ``redacted_thinking`` block, each tool call a ``tool_use``
    block whose argument fragments are ``input_json_delta``. Opening a block closes the
    one before, so indices are contiguous from 0 and every block is stopped.
    ``message_start`` goes out with the first event, not from :meth:`start`: a
    same-dialect stream's first event is the upstream's own ``message_start``, relayed
    (its :class:`~chatproto.RawEvent` events are rendered as they came, only the model
    rewritten, and the canonical events beside them are skipped).

    ``message_start`` carries ``input_tokens: 0``: upstreams other than Anthropic report
    the prompt's size at the end, and ``message_delta``'s usage (which the SDK and Claude
    Code take over the start's) has the real counts.

    Parallel tool calls: Chat Completions streams them by ``index`` and may interleave
    their argument fragments (OpenAI's chunk format allows it), while an Anthropic block,
    once closed, does not reopen. So one call's block is open at a time and streams live;
    fragments of another call are held while the open call's arguments are not yet a
    whole JSON object (then the open call is done, its block closes and the first held
    call's opens, with what it held). Before a block of another kind, or the end, every
    held call is written out whole, in the order the calls began. What is held is
    bounded (:data:`MAX_HELD_CALLS`, :data:`MAX_HELD_BYTES`; past them the stream fails
    with ``bad_upstream_response``), as is a fragment for a call whose block already
    closed (after text, say).
    """

    __slots__ = ("_closed", "_delta", "_held", "_held_bytes", "_id", "_index", "_kind",
                 "_live", "_live_bytes", "_model", "_raw", "_started", "_tool", "_tools_done")

    def __init__(self, *, id: str, model: str) -> None:
        self._id = id
        self._model = model
        self._started = False
        self._raw = False
        self._closed = False
        self._kind = _NONE
        self._index = -1
        """The open block's index (-1: none yet)."""
        self._delta = b""
        """``event: content_block_delta`` ... up to the delta object, for the open block."""
        self._tool = -1
        """The canonical index of the open tool call."""
        self._tools_done: set[int] = set()
        self._held: dict[int, _Held] = {}
        """Calls whose fragments came while another call's block was open, in order."""
        self._held_bytes = 0
        self._live: list[str] | None = None
        """The open call's argument fragments (None: past :data:`MAX_HELD_BYTES`)."""
        self._live_bytes = 0

    def start(self) -> bytes:
        return b""

    def _message_start(self) -> bytes:
        self._started = True
        message: dict[str, Any] = {
            "id": f"msg_{self._id}", "type": "message", "role": "assistant",
            "model": self._model, "content": [], "stop_reason": None,
            "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0}}
        return (b"event: message_start\ndata: "
                + dumps({"type": "message_start", "message": message}) + b"\n\n" + _PING)

    def _open(self, kind: int, block: bytes, out: list[bytes]) -> None:
        if kind != _TOOL and self._held:
            self._release(out)
        self._close(out)
        self._index += 1
        self._kind = kind
        index = str(self._index).encode()
        out.append(b'event: content_block_start\ndata: {"type":"content_block_start",'
                   b'"index":' + index + b',"content_block":' + block + b"}\n\n")
        self._delta = (b'event: content_block_delta\ndata: {"type":"content_block_delta",'
                       b'"index":' + index + b',"delta":')

    def _close(self, out: list[bytes]) -> None:
        if self._kind == _NONE:
            return
        if self._kind == _TOOL:
            self._tools_done.add(self._tool)
        out.append(b'event: content_block_stop\ndata: {"type":"content_block_stop","index":'
                   + str(self._index).encode() + b"}\n\n")
        self._kind = _NONE

    def events(self, batch: Sequence[Event], served: Served | None = None) -> bytes:
        """The bytes for one batch of core events; StreamEnded renders the end."""
        if self._closed:
            raise RuntimeError("events() after the stream ended")
        return render_batch(self._events, batch)  # what came before a failure goes first

    def _events(self, batch: Sequence[Event], out: list[bytes]) -> None:
        for ev in batch:
            t = type(ev)
            if t is RawEvent:
                assert isinstance(ev, RawEvent)
                if ev.dialect == API:
                    self._raw = True
                    out.append(self._relay(ev))
                continue
            if self._raw:
                if t is StreamEnded:
                    self._closed = True
                continue
            if not self._started:
                out.append(self._message_start())
            if t is TextDelta:
                assert isinstance(ev, TextDelta)
                if not ev.text:
                    continue
                if self._kind != _TEXT:
                    self._open(_TEXT, _TEXT_BLOCK, out)
                out.append(self._delta + b'{"type":"text_delta","text":' + dumps(ev.text)
                           + b"}}\n\n")
            elif t is ThinkingDelta:
                assert isinstance(ev, ThinkingDelta)
                self._thinking(ev, out)
            elif t is ToolCallDelta:
                assert isinstance(ev, ToolCallDelta)
                self._tool_delta(ev, out)
            elif t is StreamEnded:
                assert isinstance(ev, StreamEnded)
                out.append(self._end(ev))
            else:
                raise TypeError(f"not a stream event: {ev!r}")

    def _thinking(self, ev: ThinkingDelta, out: list[bytes]) -> None:
        if ev.encrypted is not None:
            self._open(_SIGNED, b'{"type":"redacted_thinking","data":' + dumps(ev.encrypted)
                       + b"}", out)
            self._close(out)
        if ev.text:
            if self._kind != _THINKING:
                self._open(_THINKING, _THINKING_BLOCK, out)
            out.append(self._delta + b'{"type":"thinking_delta","thinking":' + dumps(ev.text)
                       + b"}}\n\n")
        if ev.signature is not None:
            if self._kind != _THINKING:
                self._open(_THINKING, _THINKING_BLOCK, out)
            out.append(self._delta + b'{"type":"signature_delta","signature":'
                       + dumps(ev.signature) + b"}}\n\n")
            self._kind = _SIGNED

    def _tool_delta(self, ev: ToolCallDelta, out: list[bytes]) -> None:
        index = ev.index
        fragment = ev.arguments
        if self._tool == index and self._kind == _TOOL:  # the open call: once per fragment
            if fragment:
                live = self._live
                if live is not None:
                    self._live_bytes += len(fragment)
                    if self._live_bytes > MAX_HELD_BYTES:
                        self._live = None  # too big to check: taken as whole
                    else:
                        live.append(fragment)
                out.append(self._delta + b'{"type":"input_json_delta","partial_json":'
                           + dumps(fragment) + b"}}\n\n")
            return
        while self._kind == _TOOL and self._tool != index:
            if index in self._held or not self._live_complete():
                self._hold(ev)
                return
            # The open call's arguments are whole: it is done, and the next one may go.
            self._close(out)
            self._promote(out)
        if self._kind == _TOOL:  # this call's block is open
            if ev.arguments:
                self._live_arguments(ev.arguments)
                out.append(self._delta + b'{"type":"input_json_delta","partial_json":'
                           + dumps(ev.arguments) + b"}}\n\n")
            return
        if index in self._tools_done:
            raise ChatError("bad_upstream_response",
                            f"upstream sent more of tool call {index} after its block "
                            "had closed")
        self._open_tool(index, ev.id, ev.name, ev.arguments, out)

    def _open_tool(self, index: int, call_id: str | None, name: str | None,
                   arguments: str, out: list[bytes]) -> None:
        block = {"type": "tool_use", "id": call_id or f"toolu_{self._id}_{index}",
                 "name": name or "", "input": {}}
        self._open(_TOOL, dumps(block), out)
        self._tool = index
        self._live = []
        self._live_bytes = 0
        if arguments:
            self._live_arguments(arguments)
            out.append(self._delta + b'{"type":"input_json_delta","partial_json":'
                       + dumps(arguments) + b"}}\n\n")

    def _live_arguments(self, fragment: str) -> None:
        live = self._live
        if live is not None:
            self._live_bytes += len(fragment)
            if self._live_bytes > MAX_HELD_BYTES:
                self._live = None  # too big to check: taken as whole
            else:
                live.append(fragment)

    def _live_complete(self) -> bool:
        """Whether the open call's arguments so far are a whole JSON object (then a
        fragment of another call means this one is done)."""
        live = self._live
        if live is None:
            return True
        try:
            return type(orjson.loads("".join(live))) is dict
        except orjson.JSONDecodeError:
            return False

    def _hold(self, ev: ToolCallDelta) -> None:
        held = self._held.get(ev.index)
        if held is None:
            if len(self._held) >= MAX_HELD_CALLS:
                raise ChatError("bad_upstream_response",
                                f"upstream interleaved more than {MAX_HELD_CALLS} tool calls")
            held = self._held[ev.index] = _Held()
        if ev.id and held.id is None:
            held.id = ev.id
        if ev.name and held.name is None:
            held.name = ev.name
        if ev.arguments:
            self._held_bytes += len(ev.arguments)
            if self._held_bytes > MAX_HELD_BYTES:
                raise ChatError("bad_upstream_response",
                                "upstream interleaved tool calls of more than "
                                f"{MAX_HELD_BYTES} bytes of arguments")
            held.arguments.append(ev.arguments)

    def _promote(self, out: list[bytes]) -> None:
        """Open the first held call's block, with what it holds, as the live one."""
        if not self._held:
            return
        index = next(iter(self._held))
        held = self._held.pop(index)
        arguments = "".join(held.arguments)
        self._held_bytes -= len(arguments)
        self._open_tool(index, held.id, held.name, arguments, out)

    def _release(self, out: list[bytes]) -> None:
        """Every held call, each block opened and closed in turn (before another kind of
        block, or the end)."""
        while self._held:
            self._close(out)
            self._promote(out)

    def _end(self, ev: StreamEnded) -> bytes:
        self._closed = True
        out: list[bytes] = []
        self._release(out)
        self._close(out)
        delta = {"type": "message_delta",
                 "delta": {"stop_reason": _stop_reason(ev.finish_reason, ev.stop_sequence),
                           "stop_sequence": ev.stop_sequence},
                 "usage": _usage_json(ev.usage)}
        out.append(b"event: message_delta\ndata: " + dumps(delta) + b"\n\n")
        out.append(_STOP)
        return b"".join(out)

    def _relay(self, ev: RawEvent) -> bytes:
        """One upstream event as it came; ``message_start`` gets the client's model name."""
        data = ev.data
        name = ev.name
        if isinstance(data, dict):
            if name is None:
                kind = data.get("type")
                name = kind if isinstance(kind, str) else "message"
            message = data.get("message")
            if name == "message_start" and isinstance(message, dict):
                data = {**data, "message": {**message, "model": self._model}}
        self._started = True
        return b"event: " + (name or "message").encode() + b"\ndata: " + dumps(data) + b"\n\n"

    def error(self, exc: ChatError) -> bytes:
        """A failure after the stream began: ``event: error`` with Anthropic's envelope
        (what Anthropic itself sends mid-stream; Claude Code then retries without
        streaming, research/agents.md)."""
        if self._closed:
            raise RuntimeError("error() after the stream ended")
        self._closed = True
        return b"event: error\ndata: " + render_error(exc) + b"\n\n"


class MessagesDoor:
    """The ``/v1/messages`` door (the :class:`~chatproto.Door` protocol)."""

    name = "anthropic"
    api = API
    content_type = b"application/json"
    stream_content_type = b"text/event-stream"
    stream_headers = ((b"cache-control", b"no-cache"),)

    def parse(self, body: bytes, headers: Headers) -> DoorCall:
        return parse_request(body, headers)

    def parse_count(self, body: bytes, headers: Headers) -> DoorCall:
        """A ``/v1/messages/count_tokens`` body (``max_tokens`` is not part of it)."""
        return parse_request(body, headers, count=True)

    def render(self, call: DoorCall, answer: Answer, ctx: CallContext) -> bytes:
        return render_message(call, answer, ctx)

    def stream(self, call: DoorCall, ctx: CallContext) -> MessagesStream:
        return MessagesStream(id=ctx.id, model=_view(call).model)

    def render_error(self, exc: ChatError) -> bytes:
        return render_error(exc)

    def render_count(self, input_tokens: int) -> bytes:
        return dumps({"input_tokens": input_tokens})


door = MessagesDoor()


# ======================================================================================
# The codec: the upstream request
# ======================================================================================

#: Fields of a Messages body that ``count_tokens`` takes (the rest it refuses).
_COUNT_FIELDS = ("model", "messages", "system", "tools", "tool_choice", "thinking",
                 "mcp_servers", "context_management", "output_config", "output_format")


def messages_url(provider: Provider) -> str:
    """``{base_url}/v1/messages``, where the SDKs put it under an Anthropic base URL (Kimi's
    ``https://api.kimi.com/coding``, Anthropic's host), unless the provider's row names
    another path: OpenCode Zen serves ``{base_url}/messages`` under its ``…/zen/v1`` base
    (SPEC §2; providers.md §5.1, §5.2 "the SDK appends /v1/messages", §6.2)."""
    return provider.base_url.rstrip("/") + provider.path(API, "/v1/messages")


def _headers(
    request: ChatRequest, provider: Provider, stream: bool
) -> tuple[tuple[str, str], ...]:
    """JSON in, SSE or JSON out, the key (:attr:`Provider.key_header`),
    ``anthropic-version`` (the client's on the same dialect, else :data:`DEFAULT_VERSION`),
    the client's ``anthropic-beta`` flags on the same dialect only (they name features of
    this API; across dialects they mean nothing), then the configured headers, each
    replacing a default of its name. (The client's ``user-agent`` is the call plan's to
    forward, where the provider does.)"""
    same = request.dialect == API
    version = DEFAULT_VERSION
    betas: list[str] = []
    for name, value in request.headers:
        if same and name == "anthropic-version":
            version = value
        elif same and name == "anthropic-beta":
            betas.append(value)
    out = [("Content-Type", "application/json"),
           ("Accept", "text/event-stream" if stream else "application/json"),
           ("anthropic-version", version)]
    if betas:
        out.append(("anthropic-beta", ",".join(betas)))
    # SPEC §2: Bearer (OpenCode Zen reads only that header, providers.md §5.1; Kimi
    # takes it); ``x-api-key`` where the provider says (Anthropic's own API).
    return request_headers(provider, out, key_header=provider.key_header)


def _reminder(text: str) -> dict[str, Any]:
    return {"type": "text", "text": f"<system-reminder>\n{text}\n</system-reminder>"}


#: Anthropic's pattern for ``tool_use.id`` and ``tool_use_id`` (a 400 outside it).
_TOOL_ID = re.compile(r"[a-zA-Z0-9_-]+")
_NOT_ID = re.compile(r"[^a-zA-Z0-9_-]")


class _ToolIds:
    """Tool-call ids as Anthropic takes them, for one request.

    Anthropic refuses a ``tool_use.id`` / ``tool_use_id`` outside ``^[a-zA-Z0-9_-]+$``;
    other upstreams' ids need not fit (Kimi K2 names its calls ``functions.<name>:<n>``),
    and a conversation may move from one to a Claude model. An id that fits is sent as
    it is; one that does not becomes its characters with the others replaced by ``_``,
    then ``_`` and a SHA-256 prefix of the whole id: the same id always gives the same
    one (every turn resends the history, and a call and its result are rewritten alike),
    and two ids never give one, since the prefix grows until it names no other id of the
    request. Only the upstream body is rewritten: the client keeps its ids, and the ids
    in the answer are the ones Anthropic gives.
    """

    __slots__ = ("_all", "_map", "_taken")

    def __init__(self, every_id: Callable[[], Iterable[str]]) -> None:
        self._all = every_id
        self._map: dict[str, str] = {}
        self._taken: set[str] | None = None

    def __call__(self, call_id: str) -> str:
        if _TOOL_ID.fullmatch(call_id):
            return call_id
        got = self._map.get(call_id)
        if got is not None:
            return got
        if self._taken is None:
            self._taken = {i for i in self._all() if _TOOL_ID.fullmatch(i)}
        base = _NOT_ID.sub("_", call_id)[:48]
        digest = sha256(call_id.encode("utf-8", "surrogatepass")).hexdigest()
        n = 12
        got = f"{base}_{digest[:n]}"
        while got in self._taken:
            n += 4
            got = f"{base}_{digest[:n]}" if n <= len(digest) else f"{got}_"
        self._taken.add(got)
        self._map[call_id] = got
        return got


def _block_ids(messages: list[Any]) -> Iterable[str]:
    """Every tool-call id of a same-dialect ``messages`` array."""
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            for block in content:
                if isinstance(block, dict):
                    for key in ("id", "tool_use_id"):
                        value = block.get(key)
                        if isinstance(value, str):
                            yield value


def _sendable(block: object, ids: _ToolIds) -> object | None:
    """One block of a same-dialect message as an Anthropic upstream takes it (None: left
    out), see :func:`_upstream_messages`."""
    if not isinstance(block, dict):
        return block
    kind = block.get("type")
    if kind == "thinking":
        return block if block.get("signature") else None
    if kind == "redacted_thinking":
        data = block.get("data")
        return block if not isinstance(data, str) or _anthropic_opaque(data) else None
    if kind == "text":
        text = block.get("text")
        return None if isinstance(text, str) and (not text or text.isspace()) else block
    if kind == "tool_use":
        call_id = block.get("id")
        if isinstance(call_id, str) and (new := ids(call_id)) != call_id:
            return {**block, "id": new}
    elif kind == "tool_result":
        call_id = block.get("tool_use_id")
        if isinstance(call_id, str) and (new := ids(call_id)) != call_id:
            return {**block, "tool_use_id": new}
    return block


def _upstream_messages(messages: list[Any]) -> list[Any]:
    """A same-dialect ``messages`` array, with the rewrites an Anthropic upstream needs:

    - a ``role: "system"`` message (Claude Code sends one for a model name it does not
      take for Claude, research/agents.md; not in Anthropic's schema, which allows only
      user and assistant) becomes a user message holding its text in a
      ``<system-reminder>`` block, which is what Claude Code itself sends a Claude model
      in its place; consecutive user messages are one turn to Anthropic;
    - a ``thinking`` block without a signature (an answer from another upstream, echoed
      back) is left out: Anthropic verifies signatures and refuses the block, and it
      lets earlier turns' thinking be omitted; so is a ``redacted_thinking`` block that
      another dialect packed (an OpenAI Responses model's encrypted reasoning,
      :func:`_anthropic_opaque`), which Anthropic cannot decrypt;
    - an empty or whitespace-only ``text`` block is left out (Anthropic: "text content
      blocks must contain non-whitespace text", claude-code #575);
    - tool ids outside Anthropic's pattern are rewritten, the call and its result alike
      (:class:`_ToolIds`);
    - a message these left empty is left out (Anthropic: "all messages must have
      non-empty content except for the optional final assistant message"); the turns
      around it then are consecutive turns of one role, which Anthropic joins into one.

    Everything else, ``cache_control`` included, is the client's, unchanged. The list is
    copied only when something changes.
    """
    out: list[Any] | None = None
    ids = _ToolIds(lambda: _block_ids(messages))
    for i, message in enumerate(messages):
        new = message
        if isinstance(message, dict):
            role = message.get("role")
            content = message.get("content")
            if role == "system":
                if isinstance(content, str):
                    blocks = [_reminder(content)]
                elif not isinstance(content, list):
                    blocks = []
                else:
                    blocks = [_reminder(b.get("text", "")) | (
                        {"cache_control": b["cache_control"]} if "cache_control" in b else {})
                        for b in content if isinstance(b, dict)]
                new = {"role": "user", "content": blocks}
            elif isinstance(content, list):
                kept = [b for b in (_sendable(b, ids) for b in content) if b is not None]
                if len(kept) != len(content) or any(
                        a is not b for a, b in zip(kept, content, strict=True)):
                    new = None if content and not kept else {**message, "content": kept}
        if new is not message and out is None:
            out = list(messages[:i])
        if out is not None and new is not None:
            out.append(new)
    return messages if out is None else out


def _guess_media_type(data: str) -> str:
    return next((m for prefix, m in _IMAGE_MAGIC if data.startswith(prefix)), "image/png")


def _image_block(part: ImagePart) -> dict[str, Any]:
    if part.url is not None:
        if part.url[:5].lower() == "data:":
            header, _, payload = part.url[5:].partition(",")
            media = header.split(";")[0] or _guess_media_type(payload)
            return {"type": "image", "source": {"type": "base64", "media_type": media,
                                                "data": payload}}
        return {"type": "image", "source": {"type": "url", "url": part.url}}
    data = part.data or ""
    return {"type": "image", "source": {"type": "base64",
                                        "media_type": part.media_type or _guess_media_type(data),
                                        "data": data}}


def _call_input(call: ToolCall) -> dict[str, Any]:
    """A history call's JSON-text arguments as the object ``tool_use.input`` must be
    (:func:`~chatproto._codec.history_arguments`: text that is not a JSON object, such as
    a call cut by ``max_tokens``, goes as ``{"raw_arguments": text}`` rather than fail
    every later turn of the conversation)."""
    return history_arguments(call.arguments)


def _stop_sequences(stops: Iterable[str]) -> list[str]:
    """The stop sequences Anthropic takes: it refuses the whole request over one without a
    non-whitespace character ("stop_sequences: each stop sequence must contain
    non-whitespace", LiteLLM #3286, which drops them too), and an Ollama or native client
    often sends ``"\\n"`` (SPEC §3's own example). Those are left out, the rest kept."""
    return [stop for stop in stops if stop and not stop.isspace()]


#: ``ThinkingPart.encrypted`` that another dialect packed (openai_responses.py ``_pack``:
#: ``openai_responses:<item id>:<encrypted_content>``). Anthropic's ``redacted_thinking``
#: ``data`` is Anthropic's own ciphertext; another provider's is a 400 there.
_FOREIGN_OPAQUE = ("openai_responses:",)


def _anthropic_opaque(data: str) -> bool:
    """Whether opaque reasoning can go to Anthropic as ``redacted_thinking``: only what an
    Anthropic upstream made (not another dialect's packing, :data:`_FOREIGN_OPAQUE`)."""
    return bool(data) and not data.startswith(_FOREIGN_OPAQUE)


def _canonical_ids(messages: Sequence[Message]) -> Iterable[str]:
    """Every tool-call id of canonical messages, those chatd derives included."""
    for m_index, message in enumerate(messages):
        if message.tool_call_id is not None:
            yield message.tool_call_id
        for c_index, part in enumerate(message.parts):
            if type(part) is ToolCall:
                assert isinstance(part, ToolCall)
                yield part.id or f"toolu_{m_index}_{c_index}"
        yield f"toolu_{m_index}_0"


def _canonical_messages(messages: Sequence[Message]) -> tuple[list[dict[str, Any]],
                                                             list[dict[str, Any]]]:
    """Canonical messages -> (``system`` blocks, Anthropic ``messages``).

    Leading system messages become ``system``; a later one becomes a user
    ``<system-reminder>`` (see :func:`_upstream_messages`). Tool messages become
    ``tool_result`` blocks of a user turn; a tool call without an id (Ollama clients) gets
    ``toolu_<message>_<call>``, and a tool result without a ``tool_call_id`` answers the
    earliest unanswered call of its name (SPEC §2: chatd derives stable ids); ids outside
    Anthropic's pattern are rewritten (:class:`_ToolIds`). Thinking without a signature,
    and opaque reasoning another upstream made (:func:`_anthropic_opaque`), is left out
    (Anthropic would refuse it), as is whitespace-only text (Anthropic: "text content
    blocks must contain non-whitespace text"). Consecutive turns of one role are merged
    into one, tool results first in a user turn, and empty turns are dropped: Anthropic
    wants every turn non-empty.
    """
    system: list[dict[str, Any]] = []
    turns: list[tuple[str, list[dict[str, Any]]]] = []
    pending: list[tuple[str, str]] = []  # (id, name) of calls not answered yet
    ids = _ToolIds(lambda: _canonical_ids(messages))
    leading = True
    for m_index, message in enumerate(messages):
        role = message.role
        if role == "system":
            if leading:  # one block per part: Anthropic's system is blocks too
                system.extend({"type": "text", "text": p.text} for p in message.parts
                              if type(p) is TextPart and p.text and not p.text.isspace())
                continue
            text = message.content
            if text:
                turns.append(("user", [_reminder(text)]))
            continue
        leading = False
        blocks: list[dict[str, Any]] = []
        if role == "tool":
            call_id = message.tool_call_id
            if call_id is None:
                match = next((p for p in pending if p[1] == message.name), None)
                if match is None and pending:
                    match = pending[0]
                call_id = match[0] if match else f"toolu_{m_index}_0"
            pending = [p for p in pending if p[0] != call_id]
            result: dict[str, Any] = {"type": "tool_result", "tool_use_id": ids(call_id)}
            if message.image_parts:
                inner: list[dict[str, Any]] = []
                for p in message.parts:
                    if isinstance(p, TextPart) and p.text:
                        inner.append({"type": "text", "text": p.text})
                    elif isinstance(p, ImagePart):
                        inner.append(_image_block(p))
                result["content"] = inner
            elif message.content:
                result["content"] = message.content
            if message.is_error:
                result["is_error"] = True
            turns.append(("user", [result]))
            continue
        for c_index, part in enumerate(message.parts):
            t = type(part)
            if t is TextPart:
                assert isinstance(part, TextPart)
                if not part.text.isspace() and part.text:
                    blocks.append({"type": "text", "text": part.text})
            elif t is ImagePart:
                assert isinstance(part, ImagePart)
                blocks.append(_image_block(part))
            elif t is ThinkingPart and role == "assistant":
                assert isinstance(part, ThinkingPart)
                if part.encrypted is not None:
                    if _anthropic_opaque(part.encrypted):
                        blocks.append({"type": "redacted_thinking", "data": part.encrypted})
                elif part.signature:
                    blocks.append({"type": "thinking", "thinking": part.text,
                                   "signature": part.signature})
            elif t is ToolCall and role == "assistant":
                assert isinstance(part, ToolCall)
                call_id = part.id or f"toolu_{m_index}_{c_index}"
                pending.append((call_id, part.name))
                blocks.append({"type": "tool_use", "id": ids(call_id), "name": part.name,
                               "input": _call_input(part)})
        if blocks:
            turns.append(("assistant" if role == "assistant" else "user", blocks))
    merged: list[dict[str, Any]] = []
    for role, blocks in turns:
        if merged and merged[-1]["role"] == role:
            merged[-1]["content"].extend(blocks)
        else:
            merged.append({"role": role, "content": list(blocks)})
    for turn in merged:
        if turn["role"] == "user":
            content = turn["content"]
            results = [b for b in content if b["type"] == "tool_result"]
            if results and len(results) != len(content):
                turn["content"] = results + [b for b in content if b["type"] != "tool_result"]
    return system, merged


def _canonical_tools(tools: Iterable[JSON]) -> list[dict[str, Any]]:
    """OpenAI-shaped function tools -> Anthropic custom tools (a tool already in
    Anthropic's shape, with an ``input_schema``, passes as it is)."""
    out: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        if isinstance(tool, dict) and "input_schema" in tool and "name" in tool:
            out.append(tool)
            continue
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise invalid(f"tools[{i}] must be a function tool with a name")
        entry: dict[str, Any] = {"name": function["name"]}
        description = function.get("description")
        if isinstance(description, str) and description:
            entry["description"] = description
        schema = function.get("parameters")
        entry["input_schema"] = schema if isinstance(schema, dict) and schema else {
            "type": "object", "properties": {}}
        out.append(entry)
    return out


def _canonical_tool_choice(choice: JSON, parallel: object) -> dict[str, Any] | None:
    out: dict[str, Any] | None
    if choice is None:
        out = None
    elif choice == "auto":
        out = {"type": "auto"}
    elif choice in ("required", "any"):
        out = {"type": "any"}
    elif choice == "none":
        out = {"type": "none"}
    elif isinstance(choice, dict):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else choice.get("name")
        if not isinstance(name, str) or not name:
            raise invalid("tool_choice must name a function")
        out = {"type": "tool", "name": name}
    else:
        raise invalid(f"tool_choice {choice!r} has no Anthropic counterpart")
    if parallel is False:
        out = dict(out or {"type": "auto"})
        if out["type"] != "none":
            out["disable_parallel_tool_use"] = True
    return out


def _canonical_body(request: ChatRequest, route: Route) -> dict[str, Any]:
    """The Messages body for a request that came through another door.

    ``think`` becomes ``thinking: {type: "enabled", budget_tokens}`` (:data:`_BUDGET`),
    ``max_tokens`` defaulting to the budget plus :data:`_DEFAULT_MAX_TOKENS`; a caller's
    ``max_tokens`` too small for Anthropic's minimum budget (1,024, and the budget must
    stay below ``max_tokens``) leaves thinking off rather than fail, as does a forced
    ``tool_choice``; with thinking on, the sampling settings Anthropic refuses beside it
    are left out. ``think: false`` is ``thinking: {type: "disabled"}``. Stop sequences
    without a non-whitespace character are left out (:func:`_stop_sequences`). ``format``
    has no dependable counterpart and is refused (400) rather than ignored; ``seed`` has
    none and is dropped (README).
    """
    if request.format is not None:
        raise invalid("format (JSON mode) has no counterpart in Anthropic Messages; send "
                      "the request without it, or to a model of another API")
    system, messages = _canonical_messages(request.messages)
    if not messages:
        raise invalid("messages must hold at least one user or assistant turn")
    body: dict[str, Any] = {"model": route.upstream_model}
    think = request.think
    budget = _BUDGET.get(think, 0) if think not in (None, False) else 0
    max_tokens = request.max_tokens
    if max_tokens is None:
        max_tokens = budget + _DEFAULT_MAX_TOKENS
    elif budget >= max_tokens:
        budget = max_tokens - 1 if max_tokens - 1 >= _MIN_BUDGET else 0
    body["max_tokens"] = max_tokens
    body["messages"] = messages
    if system:
        body["system"] = system
    if request.tools:
        body["tools"] = _canonical_tools(request.tools)
    choice = _canonical_tool_choice(request.tool_choice,
                                    request.options.get("parallel_tool_calls"))
    if choice is not None and (request.tools or choice["type"] == "none"):
        body["tool_choice"] = choice
        if choice["type"] in ("any", "tool"):
            # Anthropic: "Tool use with thinking only supports tool_choice auto or none";
            # any other is a 400 ("Thinking may not be enabled when tool_choice forces
            # tool use", extended-thinking docs, "Extended thinking with tool use"). The
            # forced choice is what the client's code depends on (it reads the call);
            # thinking only refines the answer, and a forced call is prefilled without
            # it anyway. So the choice stays and thinking goes.
            budget = 0
    top_k = request.options.get("top_k")
    if budget:
        # Anthropic extended-thinking docs, "Feature compatibility": "Thinking isn't
        # compatible with temperature or top_k modifications"; temperature may only be
        # 1 and top_p only 0.95 to 1. What the client asked outside that is left out.
        if request.temperature == 1:
            body["temperature"] = 1
        if request.top_p is not None and request.top_p >= 0.95:
            body["top_p"] = request.top_p
    else:
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if type(top_k) is int:
            body["top_k"] = top_k
    stops = _stop_sequences(request.stop)
    if stops:
        body["stop_sequences"] = stops
    if budget:
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    elif think is False:
        body["thinking"] = {"type": "disabled"}
    user = request.options.get("user")
    if isinstance(user, str):
        body["metadata"] = {"user_id": user}
    return body


def _body(request: ChatRequest, route: Route) -> dict[str, Any]:
    raw = request.raw
    if request.dialect == API and isinstance(raw, dict):
        body = dict(raw)
        body["model"] = route.upstream_model
        body["stream"] = request.stream
        messages = body.get("messages")
        if isinstance(messages, list):
            body["messages"] = _upstream_messages(messages)
        return body
    body = _canonical_body(request, route)
    if request.stream:
        body["stream"] = True
    return body


# ======================================================================================
# The codec: answers
# ======================================================================================


def _count(value: object) -> int | None:
    return value if type(value) is int and value >= 0 else None


class _UsageCounts:
    """Anthropic's usage pieces as they arrive (``message_start``, then cumulative
    ``message_delta`` counts that replace them)."""

    __slots__ = ("created", "input", "output", "read", "seen")

    def __init__(self) -> None:
        self.input = 0
        self.output = 0
        self.read: int | None = None
        self.created: int | None = None
        self.seen = False

    def update(self, usage: object, provider: str) -> None:
        if usage is None:
            return
        if type(usage) is not dict:
            raise _bad(provider, "usage that is not an object")
        self.seen = True
        n = _count(usage.get("input_tokens"))
        if n is not None:
            self.input = n
        n = _count(usage.get("output_tokens"))
        if n is not None:
            self.output = n
        n = _count(usage.get("cache_read_input_tokens"))
        if n is not None:
            self.read = n
        n = _count(usage.get("cache_creation_input_tokens"))
        if n is not None:
            self.created = n

    def usage(self) -> Usage | None:
        if not self.seen:
            return None
        return Usage(prompt_tokens=self.input + (self.read or 0) + (self.created or 0),
                     completion_tokens=self.output, cached_tokens=self.read,
                     cache_creation_tokens=self.created)


def _finish(reason: object, provider: str, tools: bool) -> str:
    if reason is not None and not isinstance(reason, str):
        raise _bad(provider, "a stop_reason that is not a string")
    finish = _FINISH.get(reason, "stop")
    return "tool_calls" if finish == "stop" and tools else finish


def _stop_sequence(value: object, provider: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise _bad(provider, "a stop_sequence that is not a string")


def _from_status(provider: str, status: int, message: str, headers: Headers = (),
                 now: float = 0.0) -> ChatError:
    """SPEC §4 by status, with Anthropic's 529 ("overloaded") read as the 503 it means:
    retryable, ``upstream_overloaded``, its Retry-After passed on."""
    exc = error_from_upstream(provider, 503 if status == 529 else status, message, headers,
                              now=now)
    exc.upstream_status = status
    return exc


def _embedded_error(provider: str, obj: Mapping[str, Any]) -> ChatError:
    """``{"type": "error", "error": {"type", "message"}}`` inside a 2xx body or a stream:
    classified by the status Anthropic gives that type (:data:`_ERROR_STATUS`)."""
    error = obj.get("error")
    kind = error.get("type") if isinstance(error, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    text = message if isinstance(message, str) and message else (
        f"upstream reported {kind}" if isinstance(kind, str) else "upstream reported an error")
    status = _ERROR_STATUS.get(kind, 500) if isinstance(kind, str) else 500
    return _from_status(provider, status, clip_message(text))


def _tool_call(block: Mapping[str, Any], provider: str) -> ToolCall:
    call_id = block.get("id")
    name = block.get("name")
    if not isinstance(name, str) or not name:
        raise _bad(provider, "a tool_use block without a name")
    if call_id is not None and not isinstance(call_id, str):
        raise _bad(provider, "a tool_use id that is not a string")
    arguments = block.get("input")
    if arguments is None:
        arguments = {}
    if type(arguments) is not dict:
        raise _bad(provider, "a tool_use input that is not an object")
    try:
        text = dumps(arguments).decode()
    except TypeError:  # orjson writes 254 levels of nesting; it read up to 1,024
        raise _bad(provider, "a tool_use input nested too deeply") from None
    return ToolCall(id=call_id or None, name=name, arguments=text)


def _parse_message(provider: str, obj: Mapping[str, Any], passthrough: bool) -> ChatResponse:
    content = obj.get("content")
    if not isinstance(content, list):
        raise _bad(provider, "a message without a content array")
    texts: list[str] = []
    thinking: list[ThinkingPart] = []
    calls: list[ToolCall] = []
    for block in content:
        if type(block) is not dict:
            raise _bad(provider, "a content block that is not an object")
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            if not isinstance(text, str):
                raise _bad(provider, "a text block without text")
            texts.append(text)
        elif kind == "thinking":
            text = block.get("thinking")
            signature = block.get("signature")
            if not isinstance(text, str):
                raise _bad(provider, "a thinking block without thinking")
            if signature is not None and not isinstance(signature, str):
                raise _bad(provider, "a thinking signature that is not a string")
            thinking.append(ThinkingPart(text=text, signature=signature or None))
        elif kind == "redacted_thinking":
            data = block.get("data")
            if not isinstance(data, str):
                raise _bad(provider, "a redacted_thinking block without data")
            thinking.append(ThinkingPart(encrypted=data))
        elif kind == "tool_use":
            calls.append(_tool_call(block, provider))
        # Server-tool blocks and the like: only a same-dialect client can use them, and
        # it gets the whole body (raw).
    counts = _UsageCounts()
    counts.update(obj.get("usage"), provider)
    joined = "".join(p.text for p in thinking)
    return ChatResponse(
        content="".join(texts),
        finish_reason=_finish(obj.get("stop_reason"), provider, bool(calls)),
        usage=counts.usage() or Usage(),
        thinking=joined or None,
        tool_calls=tuple(calls),
        thinking_parts=tuple(thinking),
        stop_sequence=_stop_sequence(obj.get("stop_sequence"), provider),
        raw=dict(obj) if passthrough else None,
        dialect=API if passthrough else None,
    )


_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError


class MessagesStreamParser(StreamLifecycle):
    """Anthropic SSE (``event:`` + ``data:`` lines) -> canonical events.

    The lifecycle (feed, draining, failing, the events before an error) is
    :class:`~chatproto._lifecycle.StreamLifecycle`'s. ``message_stop`` is the terminator:
    it emits the one :class:`StreamEnded`, and whatever follows is dropped (OpenCode Zen
    appends a ``ping`` carrying the cost after the upstream's end, providers.md §5.3). A
    body that ends without ``message_stop`` is whole if its ``message_delta`` with a stop
    reason came (only the last event was lost), else cut (``bad_upstream_response``).

    Tool calls are numbered in the order their ``tool_use`` blocks open, whatever the
    block indices (a canonical index names a call); server-tool blocks and their
    ``input_json_delta`` produce nothing canonical. With ``passthrough`` every upstream
    event is also emitted as a :class:`RawEvent` before the events derived from it,
    except ``error``, which is raised (the door renders its own). An ``event: error`` is
    raised as the error its type stands for (:func:`_embedded_error`).
    """

    __slots__ = ("_blocks", "_passthrough", "_sse", "_stop_reason", "_stop_sequence",
                 "_tools", "_usage")

    # Shape errors deep inside an event (a list where an object belongs, a missing
    # ``delta``) are caught once around the event instead of checked at every level.
    _SHAPE_ERRORS = (AttributeError, TypeError, KeyError, IndexError)

    def __init__(self, provider: str, *, passthrough: bool = False) -> None:
        super().__init__(provider)
        self._passthrough = passthrough
        self._sse = SSEDecoder(provider=provider)
        self._blocks: dict[int, int] = {}
        """Block index -> canonical tool-call index, for the ``tool_use`` blocks."""
        self._tools = 0
        self._usage = _UsageCounts()
        self._stop_reason: object = None
        self._stop_sequence: str | None = None

    def _parse(self, data: bytes, out: list[Event]) -> None:
        for name, payload, _ in self._sse.feed(data):
            if self._event(name, payload, out):
                return
        if not data and self._stop_reason is not None:
            self._terminate(out, self._ended())

    def _ended(self) -> StreamEnded:
        return StreamEnded(
            finish_reason=_finish(self._stop_reason, self._provider, self._tools > 0),
            usage=self._usage.usage(),
            stop_sequence=self._stop_sequence,
        )

    def _event(self, name: str, payload: bytes, out: list[Event]) -> bool:
        """One SSE event; True at the terminator."""
        provider = self._provider
        try:
            obj = _loads(payload)
        except _JSONDecodeError as exc:
            if b"\n" in payload:
                # OpenCode Zen appends ``event: ping`` with its cost to the upstream's
                # bytes (providers.md §5.3, OC console ``zen/util/handler.ts``); after an
                # event without its blank line the two arrive joined, two ``data:``
                # lines under the name ``ping``. Each line is an event of its own, read
                # by its ``type``: the upstream's error stays its error, cost apart.
                lines = [line for line in payload.split(b"\n") if line.strip()]
                if len(lines) > 1 and all(line[:1] == b"{" for line in lines):
                    return any(self._event(name, line, out) for line in lines)
            raise ChatError("bad_upstream_response",
                            f"upstream sent malformed JSON: {exc}", provider=provider) from None
        if type(obj) is not dict:
            raise _bad(provider, "a stream event that is not a JSON object")
        kind = obj.get("type")
        if kind is None:
            kind = name
        if kind == "error":
            raise _embedded_error(provider, obj)
        if self._passthrough:
            out.append(RawEvent(dialect=API, data=obj, name=name if name != "message" else kind))
        if kind == "content_block_delta":
            delta = obj["delta"]
            dtype = delta["type"]
            if dtype == "text_delta":
                text = delta["text"]
                if type(text) is not str:
                    raise _bad(provider, "a text_delta whose text is not a string")
                if text:
                    out.append(TextDelta(text=text))
            elif dtype == "input_json_delta":
                tool = self._blocks.get(obj.get("index"))  # type: ignore[arg-type]
                fragment = delta["partial_json"]
                if type(fragment) is not str:
                    raise _bad(provider, "an input_json_delta that is not a string")
                if tool is not None and fragment:
                    out.append(ToolCallDelta(index=tool, arguments=fragment))
            elif dtype == "thinking_delta":
                text = delta["thinking"]
                if type(text) is not str:
                    raise _bad(provider, "a thinking_delta that is not a string")
                if text:
                    out.append(ThinkingDelta(text=text))
            elif dtype == "signature_delta":
                signature = delta["signature"]
                if type(signature) is not str:
                    raise _bad(provider, "a signature_delta that is not a string")
                out.append(ThinkingDelta(signature=signature))
            # citations_delta and future deltas: nothing canonical.
        elif kind == "content_block_start":
            self._block_start(obj, out)
        elif kind == "message_delta":
            delta = obj.get("delta")
            if type(delta) is dict:
                if "stop_reason" in delta:
                    self._stop_reason = delta["stop_reason"]
                    _finish(self._stop_reason, provider, False)  # type check only
                self._stop_sequence = _stop_sequence(delta.get("stop_sequence"), provider)
            self._usage.update(obj.get("usage"), provider)
        elif kind == "message_start":
            message = obj.get("message")
            if type(message) is not dict:
                raise _bad(provider, "a message_start without a message")
            self._usage.update(message.get("usage"), provider)
        elif kind == "message_stop":
            if self._stop_reason is None:
                self._stop_reason = "end_turn"
            self._terminate(out, self._ended())
            return True
        # content_block_stop, ping and unknown events: nothing canonical.
        return False

    def _block_start(self, obj: dict[str, Any], out: list[Event]) -> None:
        provider = self._provider
        block = obj["content_block"]
        kind = block["type"]
        if kind == "text":
            text = block.get("text")
            if text:
                if type(text) is not str:
                    raise _bad(provider, "a text block whose text is not a string")
                out.append(TextDelta(text=text))
        elif kind == "tool_use":
            call = _tool_call(block, provider)
            index = obj.get("index")
            if type(index) is not int:
                raise _bad(provider, "a content block without an integer index")
            self._blocks[index] = self._tools
            out.append(ToolCallDelta(index=self._tools, id=call.id, name=call.name,
                                     arguments="" if call.arguments == "{}" else call.arguments))
            self._tools += 1
        elif kind == "thinking":
            text = block.get("thinking")
            if text:
                if type(text) is not str:
                    raise _bad(provider, "a thinking block that is not a string")
                out.append(ThinkingDelta(text=text))
            signature = block.get("signature")
            if signature:
                if type(signature) is not str:
                    raise _bad(provider, "a thinking signature that is not a string")
                out.append(ThinkingDelta(signature=signature))
        elif kind == "redacted_thinking":
            data = block.get("data")
            if type(data) is not str:
                raise _bad(provider, "a redacted_thinking block without data")
            out.append(ThinkingDelta(encrypted=data))


# ======================================================================================
# The codec: errors
# ======================================================================================


def _error_message(body: bytes) -> str:
    """The upstream's message from ``{"type": "error", "error": {"type", "message"}}``
    (Anthropic; OpenCode Zen's own errors have the same shape with a class name as the
    type, providers.md §5.3, which then prefixes the message because it says more than
    the status), or the body's text."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        obj = None
    if isinstance(obj, dict):
        error = obj.get("error")
        if isinstance(error, dict):
            message = error.get("message")
            message = message if isinstance(message, str) else ""
            kind = error.get("type")
            if isinstance(kind, str) and kind and kind not in _ERROR_STATUS:
                message = f"{kind}: {message}" if message else kind
            if not message and isinstance(kind, str):
                message = kind
            if message:
                return clip_message(message)
        elif isinstance(error, str) and error:
            return clip_message(error)
        message = obj.get("message")
        if isinstance(message, str) and message:
            return clip_message(message)
    return clip_message(body.decode("utf-8", "replace"))


class MessagesCodec:
    """The ``anthropic_messages`` codec (:class:`~chatproto.Codec`)."""

    __slots__ = ()

    api = API

    def build_request(
        self, request: ChatRequest, route: Route, provider: Provider
    ) -> HTTPRequest:
        """``POST {base_url}[/v1]/messages`` (:func:`messages_url`).

        A request that came through the ``/v1/messages`` door is sent as the client wrote
        it, only ``model`` and ``stream`` rewritten (and :func:`_upstream_messages`);
        any other is built from the canonical fields (:func:`_canonical_body`). Headers:
        :func:`_headers`.
        """
        return HTTPRequest(
            method="POST",
            url=messages_url(provider),
            headers=_headers(request, provider, request.stream),
            body=encode_body(_body(request, route), provider.name),
            stream=request.stream,
        )

    def build_count_request(
        self, request: ChatRequest, route: Route, provider: Provider
    ) -> HTTPRequest:
        """``POST …/messages/count_tokens``: the fields of the Messages body it takes."""
        if request.dialect == API and isinstance(request.raw, dict):
            body = _body(request, route)
        else:
            body = _canonical_body(request, route)
        counted = {k: body[k] for k in _COUNT_FIELDS if k in body}
        return HTTPRequest(
            method="POST",
            url=messages_url(provider) + "/count_tokens",
            headers=_headers(request, provider, False),
            body=encode_body(counted, provider.name),
        )

    def parse_count_response(self, provider: str, body: bytes) -> int:
        obj = loads(body, provider)
        count = _count(obj.get("input_tokens")) if isinstance(obj, dict) else None
        if count is None:
            raise _bad(provider, "a count_tokens answer without input_tokens")
        return count

    def parse_response(
        self, provider: str, body: bytes, *, passthrough: bool = False
    ) -> ChatResponse:
        """A whole ``message`` body; ``{"type": "error"}`` under a 2xx is the upstream's
        error (:func:`_embedded_error`)."""
        obj = loads(body, provider)
        if not isinstance(obj, dict):
            raise _bad(provider, "an answer that is not a JSON object")
        if obj.get("type") == "error":
            raise _embedded_error(provider, obj)
        return _parse_message(provider, obj, passthrough)

    def stream_parser(self, provider: str, *, passthrough: bool = False) -> MessagesStreamParser:
        return MessagesStreamParser(provider, passthrough=passthrough)

    def parse_error(
        self, provider: str, status: int, headers: Headers, body: bytes, *, now: float
    ) -> ChatError:
        """A non-2xx answer -> SPEC §4 by status (529 -> 503 ``upstream_overloaded``,
        :func:`_from_status`), with the upstream's own message (:func:`_error_message`)."""
        return _from_status(provider, status, _error_message(body), headers, now)


codec = MessagesCodec()

