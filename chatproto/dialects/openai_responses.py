"""OpenAI Responses at both ends: the stateless ``POST /v1/responses`` door and the
``openai_responses`` upstream codec.

Strategy: one module owns every byte of the Responses wire format (the request body,
the ``response`` object, the typed SSE events and the error shape), read and written in
both directions, so the door and the codec cannot disagree about it. The format is
OpenAI's (openai-python ``types/responses/*``: ``response_create_params.py``,
``response.py``, ``response_stream_event.py``); what its clients need on top of the
published types was found by running them (research/agents.md, "Codex CLI").

Canonical mapping, both ways (chatproto/_types.py):

- ``message`` items are messages (``developer`` is ``system``); ``input_text`` /
  ``output_text`` / ``refusal`` parts are text, ``input_image`` an :class:`ImagePart`;
  ``instructions`` is a first system message.
- ``function_call`` is a :class:`ToolCall` whose id is the ``call_id`` (what
  ``function_call_output`` names), ``function_call_output`` a ``role="tool"`` message.
  Adjacent reasoning, assistant messages and function calls are one assistant turn, as
  Chat Completions needs them.
- ``reasoning`` items are :class:`ThinkingPart` s. Their opaque ``encrypted_content`` must
  come back with the item's ``id`` (``ResponseReasoningItemParam.id`` is required), so the
  canonical ``encrypted`` of this dialect packs both (:func:`_pack`). Another dialect's
  opaque reasoning (an Anthropic ``signature``, redacted thinking) is rendered in
  ``encrypted_content`` under a marker prefix and recovered from it on the next turn, so a
  Responses client such as Codex carries it back unchanged without knowing what it is.
- Tools: ``function`` tools map to Chat-shaped tool definitions; the function tools of a
  ``namespace`` group are flattened to ``<namespace>__<name>`` and mapped back to
  ``name`` + ``namespace`` on the way out (and in on ``function_call`` history items).
  Hosted tools that no upstream here can run (``web_search``, ``file_search``,
  ``code_interpreter``, ``mcp``, ``custom``...) are left out and named in
  :attr:`DoorCall.dropped` for the server to log; the turn goes on without them.
- Same dialect: the door keeps the client's body (:attr:`ChatRequest.raw`) and the codec
  sends it with only ``model`` and ``stream`` rewritten; answers come back as
  :class:`RawEvent` s / :attr:`ChatResponse.raw` and are relayed with only ``model``
  rewritten, so items, ids, hosted tools and events chatd does not know pass untouched.

Stateless: ``previous_response_id`` and ``conversation`` are a 400 naming the field, and
``store`` is validated but not honoured (chatd keeps nothing; a fallback chain may send
consecutive turns to different upstreams, none of which could resolve the other's ids).

The stream renderer runs once per relayed event: the bytes around a text delta are built
once per output item, so a delta costs one ``dumps`` of its text. The stream parser's
per-event path reads the event type first and dispatches on the frequent ones first.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from .._codec import request_headers
from .._decoders import SSEDecoder, dumps, encode_body, loads
from .._door import Answer, CallContext, DoorCall, Served, render_batch
from .._errors import ChatError, Headers, clip_message, error_from_upstream
from .._events import Event, RawEvent, StreamEnded, TextDelta, ThinkingDelta, ToolCallDelta
from .._lifecycle import StreamLifecycle
from .._options import schema_naming
from .._request import (
    boolean,
    decode_body,
    integer,
    invalid,
    json_object,
    json_type,
    number,
    parse_model,
    positive_int,
    string,
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
from .openai_chat import _error_category, _error_message

__all__ = [
    "API",
    "DEFAULT_RETRY_AFTER_SECS",
    "OpenAIResponsesCodec",
    "ResponseStream",
    "ResponsesDoor",
    "ResponsesStreamParser",
    "ResponsesView",
    "codec",
    "door",
    "flat_name",
    "parse_request",
    "render_error",
    "render_response",
]

API = "openai_responses"

#: The wait named in a mid-stream rate-limit failure when the upstream named none
#: (SPEC §4 ``default_retry_after_secs``' default). Codex reads it from the message of
#: ``response.failed``: ``(?i)try again in\s*(\d+(?:\.\d+)?)\s*(s|ms|seconds?)`` when
#: ``code == "rate_limit_exceeded"`` (codex-rs ``codex-api/src/sse/responses.rs``).
DEFAULT_RETRY_AFTER_SECS = 2.0

#: Between a namespace and a tool name in a flattened name. Chat Completions and
#: Anthropic tool names allow ``[a-zA-Z0-9_-]``; a dot or slash would be refused.
NAMESPACE_SEP = "__"

# Canonical ``ThinkingPart.encrypted`` of this dialect: ``openai_responses:<id>:<enc>``.
_OWN = "openai_responses:"
# ``encrypted_content`` rendered for another dialect's opaque reasoning.
_SIGNATURE = "chatd-signature:"
_ENCRYPTED = "chatd-encrypted:"

def flat_name(namespace: str | None, name: str) -> str:
    """The one-level tool name of ``name`` in ``namespace`` (``multi_agent_v1__spawn``)."""
    return f"{namespace}{NAMESPACE_SEP}{name}" if namespace else name


def _pack(item_id: str, encrypted: str) -> str:
    return f"{_OWN}{item_id}:{encrypted}"


def _unpack(blob: str | None) -> tuple[str, str] | None:
    """(item id, encrypted_content) of this dialect's own opaque reasoning, else None."""
    if blob is None or not blob.startswith(_OWN):
        return None
    item_id, sep, encrypted = blob[len(_OWN):].partition(":")
    return (item_id, encrypted) if sep and item_id else None


def _opaque_out(part_signature: str | None, part_encrypted: str | None
                ) -> tuple[str | None, str | None]:
    """(item id or None, ``encrypted_content`` or None) that render a thinking block."""
    own = _unpack(part_encrypted)
    if own is not None:
        return own
    if part_encrypted is not None:
        return None, _ENCRYPTED + part_encrypted
    if part_signature is not None:
        return None, _SIGNATURE + part_signature
    return None, None


def _opaque_in(item_id: str | None, content: str | None) -> tuple[str | None, str | None]:
    """(signature, encrypted) of a client's reasoning item: the inverse of _opaque_out."""
    if content is None:
        return None, None
    if content.startswith(_SIGNATURE):
        return content[len(_SIGNATURE):], None
    if content.startswith(_ENCRYPTED):
        return None, content[len(_ENCRYPTED):]
    return None, (_pack(item_id, content) if item_id else content)


def _bad(provider: str | None, what: str) -> ChatError:
    return ChatError("bad_upstream_response", what, provider=provider)


#: The id chatd gives a reasoning item it renders from another dialect's thinking
#: (``rs_<call id>_<n>``, :func:`render_response`; the call id is 32 hex digits).
_MADE_ID = re.compile(r"rs_[0-9a-f]{32}_[0-9]+")


def _made_here(item: object) -> bool:
    """Whether ``item`` of a client's ``input`` is a reasoning item chatd made from another
    dialect's thinking: its ``encrypted_content`` under one of chatd's markers (an
    Anthropic signature, redacted thinking), or chatd's id on plain thinking text. Such an
    item is not the upstream's reasoning, which it could decrypt or resolve: OpenAI
    answers a 400 for a blob it did not encrypt, and a 404 for an id it never gave."""
    if type(item) is not dict or item.get("type") != "reasoning":
        return False
    content = item.get("encrypted_content")
    if isinstance(content, str) and content.startswith((_SIGNATURE, _ENCRYPTED)):
        return True
    item_id = item.get("id")
    return isinstance(item_id, str) and _MADE_ID.fullmatch(item_id) is not None


# ======================================================================================
# Server end: the request
# ======================================================================================

#: ``reasoning.effort`` (openai-python ``shared/reasoning_effort.py``: none|minimal|low|
#: medium|high|xhigh|max) -> ``ChatRequest.think``, as the Chat Completions door maps
#: ``reasoning_effort`` (openai_chat.py: ``minimal`` asks for the least, false).
_EFFORT: Mapping[str, bool | str] = {
    "none": False, "minimal": False, "low": "low", "medium": "medium", "high": "high",
    "xhigh": "max", "max": "max",
}
_SUMMARIES = ("auto", "concise", "detailed")

#: Top-level fields the door reads; every other one is an extra (same dialect only).
_READ = frozenset({
    "model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls",
    "reasoning", "max_output_tokens", "temperature", "top_p", "text", "stream", "store",
    "include", "prompt_cache_key", "metadata", "user", "top_logprobs",
    "previous_response_id", "conversation", "background",
})


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponsesView:
    """What rendering needs beyond the answer: the client's model spelling, the
    flattened tool names to map back, and the request fields a ``response`` echoes."""

    model: str
    names: Mapping[str, tuple[str, str]]
    """flattened name -> (namespace, name)."""
    echo: Mapping[str, JSON]


def _shown(value: object) -> str:
    """A client value for a log note: repr'd (no raw control characters), short."""
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def parse_request(body: bytes, headers: Headers = ()) -> DoorCall:
    """Parse and validate a ``POST /v1/responses`` body (``response_create_params.py``).

    Raises:
        ChatError: ``invalid_request`` (400), naming the offending field.
    """
    obj = decode_body(body)
    model = parse_model(obj)
    for key in ("previous_response_id", "conversation"):
        if obj.get(key) is not None:
            raise invalid(
                f"{key} is not supported: chatd's /v1/responses is stateless (store is not "
                "honoured); send the whole conversation in input")
    if boolean(obj.get("background"), "background"):
        raise invalid("background is not supported: chatd's /v1/responses is stateless "
                      "and answers in the request")
    dropped: list[str] = []
    tools, names = _tools(obj.get("tools"), dropped)
    messages = _input(obj.get("input"), string(obj.get("instructions"), "instructions"))
    tool_choice = _tool_choice(obj.get("tool_choice"), dropped)
    reasoning = obj.get("reasoning")
    think, summary = _reasoning(reasoning)
    fmt, verbosity = _text(obj.get("text"))
    boolean(obj.get("store"), "store")
    _strings(obj.get("include"), "include")
    metadata = obj.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise invalid(f"metadata must be an object, not {json_type(metadata)}")

    options: dict[str, JSON] = {}
    text_obj = obj.get("text")
    text_format = text_obj.get("format") if isinstance(text_obj, dict) else None
    if isinstance(text_format, dict) and text_format.get("type") == "json_schema" \
            and isinstance(text_format.get("schema"), dict):
        # The schema's name and strict, which ``format`` (the schema alone) cannot hold,
        # for the upstreams that take them back (``_text`` checked their types).
        for key, option in (("name", "format_name"), ("strict", "format_strict")):
            if text_format.get(key) is not None:
                options[option] = text_format[key]
    parallel = boolean(obj.get("parallel_tool_calls"), "parallel_tool_calls")
    for key, value in (
        ("parallel_tool_calls", parallel),
        ("prompt_cache_key", string(obj.get("prompt_cache_key"), "prompt_cache_key")),
        ("user", string(obj.get("user"), "user")),
        ("top_logprobs", integer(obj.get("top_logprobs"), "top_logprobs")),
        ("reasoning_summary", summary),
        ("verbosity", verbosity),
    ):
        if value is not None:
            options[key] = value
    chat = ChatRequest(
        model=model,
        messages=messages,
        max_tokens=positive_int(obj.get("max_output_tokens"), "max_output_tokens"),
        temperature=number(obj.get("temperature"), "temperature"),
        top_p=number(obj.get("top_p"), "top_p"),
        format=fmt,
        think=think,
        stream=bool(boolean(obj.get("stream"), "stream")),
        tools=tools,
        tool_choice=tool_choice,
        options=options,
        dialect=API,
        extras={k: v for k, v in obj.items() if k not in _READ},
        raw=obj,
    )
    echo: dict[str, JSON] = {
        "instructions": obj.get("instructions"),
        "max_output_tokens": chat.max_tokens,
        "metadata": metadata or {},
        "parallel_tool_calls": True if parallel is None else parallel,
        "previous_response_id": None,
        "reasoning": {"effort": reasoning.get("effort") if isinstance(reasoning, dict)
                      else None, "summary": summary},
        "store": False,
        "temperature": chat.temperature,
        "text": obj.get("text") or {"format": {"type": "text"}},
        "tool_choice": obj.get("tool_choice") or "auto",
        "tools": obj.get("tools") or [],
        "top_p": chat.top_p,
        "truncation": obj.get("truncation") or "disabled",
    }
    view = ResponsesView(model=model, names=names, echo=echo)
    return DoorCall(chat=chat, view=view, dropped=tuple(dropped))


def _strings(value: object, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise invalid(f"{field} must be an array of strings, not {json_type(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise invalid(f"{field}[{i}] must be a string, not {json_type(item)}")
    return tuple(value)


def _required(value: object, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise invalid(f"{field} must be a non-empty string, not {json_type(value)}")
    return value


def _arguments_in(value: object, field: str) -> str:
    if value is None:
        return "{}"
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        try:
            return dumps(value).decode()
        except TypeError:  # orjson reads 1,024 levels of nesting but writes 254
            raise invalid(f"{field} nests too deeply") from None
    raise invalid(f"{field} must be a JSON string, not {json_type(value)}")


def _input(value: object, instructions: str | None) -> tuple[Message, ...]:
    """``input`` (a string or items) and ``instructions`` -> messages (module docstring)."""
    messages: list[Message] = []
    if instructions:
        messages.append(Message(role="system", content=instructions))
    if value is None or value == []:
        if not messages:
            raise invalid("input is required")
        return tuple(messages)
    if isinstance(value, str):
        messages.append(Message(role="user", content=value))
        return tuple(messages)
    if not isinstance(value, list):
        raise invalid(f"input must be a string or an array of items, not {json_type(value)}")
    turn: list[Part] = []

    def flush() -> None:
        if turn:
            messages.append(Message(role="assistant", parts=tuple(turn)))
            turn.clear()

    for i, item in enumerate(value):
        where = f"input[{i}]"
        item = json_object(item, where)
        kind = item.get("type")
        if kind is None and "role" in item:
            kind = "message"  # EasyInputMessage: {"role", "content"} without a type
        if kind == "message":
            role = item.get("role")
            if role == "assistant":
                turn.extend(_parts(item.get("content"), f"{where}.content", assistant=True))
                continue
            if role not in ("user", "system", "developer"):
                shown = "missing" if role is None else _shown(role)
                raise invalid(f"{where}.role must be one of user, assistant, system, "
                              f"developer; got {shown}")
            flush()
            messages.append(Message(
                role="user" if role == "user" else "system",
                parts=_parts(item.get("content"), f"{where}.content", assistant=False)))
        elif kind == "function_call":
            namespace = string(item.get("namespace"), f"{where}.namespace")
            turn.append(ToolCall(
                id=_required(item.get("call_id"), f"{where}.call_id"),
                name=flat_name(namespace, _required(item.get("name"), f"{where}.name")),
                arguments=_arguments_in(item.get("arguments"), f"{where}.arguments")))
        elif kind == "function_call_output":
            flush()
            call_id = _required(item.get("call_id"), f"{where}.call_id")
            output = item.get("output")
            if isinstance(output, str):
                parts: tuple[Part, ...] = (TextPart(text=output),) if output else ()
            elif isinstance(output, list):
                parts = _parts(output, f"{where}.output", assistant=False)
            else:
                raise invalid(f"{where}.output must be a string or an array of parts, not "
                              f"{json_type(output)}")
            messages.append(Message(role="tool", tool_call_id=call_id, parts=parts))
        elif kind == "reasoning":
            part = _reasoning_item(item, where)
            if part is not None:
                turn.append(part)
        elif kind == "item_reference":
            raise invalid(f"{where}: item_reference names a stored item, and chatd's "
                          "/v1/responses is stateless; send the item itself")
        else:
            raise invalid(
                f"{where}.type {_shown(kind)} is not supported; chatd carries message, "
                "function_call, function_call_output and reasoning items")
    flush()
    return tuple(messages)


def _parts(content: object, field: str, *, assistant: bool) -> tuple[Part, ...]:
    """A message's ``content`` (a string or parts) -> typed parts; adjacent text parts
    are joined with ``"\\n"`` as the Chat Completions door joins them."""
    if isinstance(content, str):
        return (TextPart(text=content),) if content else ()
    if content is None:
        raise invalid(f"{field} is required")
    if not isinstance(content, list):
        raise invalid(f"{field} must be a string or an array of parts, not "
                      f"{json_type(content)}")
    parts: list[Part] = []
    texts: list[str] = []
    for i, part in enumerate(content):
        where = f"{field}[{i}]"
        part = json_object(part, where)
        kind = part.get("type")
        key = "refusal" if kind == "refusal" and assistant else "text"
        if kind in ("input_text", "output_text", "text") or key == "refusal":
            text = part.get(key)
            if not isinstance(text, str):
                raise invalid(f"{where}.{key} must be a string, not {json_type(text)}")
            texts.append(text)
        elif kind == "input_image" and not assistant:
            if texts:
                parts.append(TextPart(text="\n".join(texts)))
                texts = []
            parts.append(_image(part, where))
        else:
            raise invalid(f"{where}.type {_shown(kind)} is not supported here; chatd "
                          "carries input_text, output_text, refusal and input_image parts")
    if texts:
        parts.append(TextPart(text="\n".join(texts)))
    return tuple(parts)


def _image(part: dict[str, Any], field: str) -> ImagePart:
    """``input_image``: ``image_url`` as a ``data:`` URL (RFC 2397) or an http(s) URL.
    ``file_id`` names an uploaded file, which chatd cannot fetch."""
    url = part.get("image_url")
    if url is None and part.get("file_id") is not None:
        raise invalid(f"{field}.file_id names an uploaded file, which chatd cannot fetch; "
                      "send image_url as a data: URL")
    if not isinstance(url, str):
        raise invalid(f"{field}.image_url must be a string, not {json_type(url)}")
    if url[:5].lower() == "data:":
        header, comma, payload = url[5:].partition(",")
        params = header.split(";")
        if not comma or not params[0].lower().startswith("image/") \
                or "base64" not in (p.lower() for p in params[1:]) or not payload:
            raise invalid(f"{field}.image_url must be a data:image/<type>;base64,<data> URL")
        return ImagePart(data=payload, media_type=params[0].lower())
    if url[:8].lower() == "https://" or url[:7].lower() == "http://":
        return ImagePart(url=url)
    raise invalid(f"{field}.image_url must be a data: or http(s) URL")


def _reasoning_item(item: dict[str, Any], field: str) -> ThinkingPart | None:
    """A ``reasoning`` item: its ``content`` texts and ``summary`` texts, joined by blank
    lines, and its opaque part (see :func:`_opaque_in`); None when it says nothing."""
    texts: list[str] = []
    for key, kind in (("content", "reasoning_text"), ("summary", "summary_text")):
        pieces = item.get(key)
        if pieces is None:
            continue
        if not isinstance(pieces, list):
            raise invalid(f"{field}.{key} must be an array, not {json_type(pieces)}")
        for i, piece in enumerate(pieces):
            text = piece.get("text") if isinstance(piece, dict) else None
            if not isinstance(text, str):
                raise invalid(f"{field}.{key}[{i}] must be a {kind} part with a text")
            if text:
                texts.append(text)
    signature, encrypted = _opaque_in(
        string(item.get("id"), f"{field}.id"),
        string(item.get("encrypted_content"), f"{field}.encrypted_content"))
    if not texts and signature is None and encrypted is None:
        return None
    return ThinkingPart(text="\n\n".join(texts), signature=signature, encrypted=encrypted)


def _tools(value: object, dropped: list[str]
           ) -> tuple[tuple[JSON, ...], dict[str, tuple[str, str]]]:
    """``tools`` -> Chat-shaped function tools and the flattened-name map."""
    if value is None:
        return (), {}
    if not isinstance(value, list):
        raise invalid(f"tools must be an array of tool objects, not {json_type(value)}")
    out: list[JSON] = []
    names: dict[str, tuple[str, str]] = {}
    seen: set[str] = set()

    def add(tool: dict[str, Any], where: str, namespace: str | None) -> None:
        name = _required(tool.get("name"), f"{where}.name")
        flat = flat_name(namespace, name)
        if flat in seen:
            raise invalid(f"{where}: a tool named {flat!r} is already defined")
        seen.add(flat)
        if namespace is not None:
            names[flat] = (namespace, name)
        parameters = tool.get("parameters")
        if parameters is None:
            parameters = {"type": "object", "properties": {}}
        elif not isinstance(parameters, dict):
            raise invalid(f"{where}.parameters must be an object, not {json_type(parameters)}")
        function: dict[str, JSON] = {"name": flat}
        description = string(tool.get("description"), f"{where}.description")
        if description:
            function["description"] = description
        function["parameters"] = parameters
        strict = boolean(tool.get("strict"), f"{where}.strict")
        if strict is not None:
            function["strict"] = strict
        out.append({"type": "function", "function": function})

    for i, tool in enumerate(value):
        where = f"tools[{i}]"
        tool = json_object(tool, where)
        kind = tool.get("type")
        if kind == "function":
            add(tool, where, None)
        elif kind == "namespace":
            namespace = _required(tool.get("name"), f"{where}.name")
            inner = tool.get("tools")
            if not isinstance(inner, list):
                raise invalid(f"{where}.tools must be an array, not {json_type(inner)}")
            for j, sub in enumerate(inner):
                if not isinstance(sub, dict):
                    raise invalid(f"{where}.tools[{j}] must be an object, not "
                                  f"{json_type(sub)}")
                if sub.get("type") == "function":
                    add(sub, f"{where}.tools[{j}]", namespace)
                else:
                    dropped.append(f"{where}.tools[{j}] type {_shown(sub.get('type'))}")
        else:
            dropped.append(f"{where} type {_shown(kind)}")
    return tuple(out), names


def _tool_choice(value: object, dropped: list[str]) -> JSON:
    """``tool_choice``: ``auto``/``none``/``required``, a function (with its namespace),
    or ``allowed_tools`` (its mode kept, its list not carried); a hosted tool's choice
    goes with the tool."""
    if value is None:
        return None
    if isinstance(value, str):
        if value in ("auto", "none", "required"):
            return value
        raise invalid(f'tool_choice must be "auto", "none", "required" or an object, not '
                      f"{_shown(value)}")
    if not isinstance(value, dict):
        raise invalid(f"tool_choice must be a string or an object, not {json_type(value)}")
    kind = value.get("type")
    if kind == "function":
        name = _required(value.get("name"), "tool_choice.name")
        namespace = string(value.get("namespace"), "tool_choice.namespace")
        return {"type": "function", "function": {"name": flat_name(namespace, name)}}
    if kind == "allowed_tools":
        mode = value.get("mode")
        if mode not in ("auto", "required"):
            raise invalid('tool_choice.mode must be "auto" or "required"')
        dropped.append("tool_choice allowed_tools list (its mode is kept)")
        return mode
    dropped.append(f"tool_choice type {_shown(kind)}")
    return None


def _reasoning(value: object) -> tuple[bool | str | None, str | None]:
    if value is None:
        return None, None
    value = json_object(value, "reasoning")
    effort = value.get("effort")
    think: bool | str | None = None
    if effort is not None:
        if not isinstance(effort, str) or effort not in _EFFORT:
            allowed = ", ".join(f'"{e}"' for e in _EFFORT)
            raise invalid(f"reasoning.effort must be one of {allowed}, not {_shown(effort)}")
        think = _EFFORT[effort]
    summary = value.get("summary")
    if summary is None:
        summary = value.get("generate_summary")
    if summary is not None and summary not in _SUMMARIES:
        raise invalid('reasoning.summary must be "auto", "concise" or "detailed", not '
                      f"{_shown(summary)}")
    return think, summary


def _text(value: object) -> tuple[JSON, str | None]:
    """``text``: ``format`` (``text`` / ``json_object`` / ``json_schema`` with its
    ``schema``) -> ``ChatRequest.format``; ``verbosity`` kept as an option."""
    if value is None:
        return None, None
    value = json_object(value, "text")
    verbosity = string(value.get("verbosity"), "text.verbosity")
    fmt = value.get("format")
    if fmt is None:
        return None, verbosity
    fmt = json_object(fmt, "text.format")
    kind = fmt.get("type")
    if kind == "text":
        return None, verbosity
    if kind == "json_object":
        return "json", verbosity
    if kind == "json_schema":
        schema = fmt.get("schema")
        if schema is None:
            return "json", verbosity
        schema = json_object(schema, "text.format.schema")
        string(fmt.get("name"), "text.format.name")
        boolean(fmt.get("strict"), "text.format.strict")
        return schema, verbosity
    raise invalid('text.format.type must be "text", "json_object" or "json_schema", not '
                  f"{_shown(kind)}")


# ======================================================================================
# Server end: answers, streams, errors
# ======================================================================================

#: finish_reason -> (status, incomplete_details.reason) for a truncated answer.
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _usage_out(usage: Usage | None) -> JSON:
    """``ResponseUsage``; its detail counts are required fields, 0 when unknown."""
    if usage is None:
        return None
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens or 0,
                                 "cache_write_tokens": usage.cache_creation_tokens or 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens or 0},
        "total_tokens": usage.total_tokens,
    }


def _message_item(item_id: str, text: str, status: str) -> dict[str, JSON]:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [],
                         "logprobs": []}]}


def _reasoning_out(item_id: str, text: str, encrypted: str | None) -> dict[str, JSON]:
    item: dict[str, JSON] = {
        "id": item_id, "type": "reasoning",
        "summary": [{"type": "summary_text", "text": text}] if text else []}
    if encrypted is not None:
        item["encrypted_content"] = encrypted
    return item


def _call_out(view: ResponsesView, item_id: str, call_id: str, name: str, arguments: str,
              status: str) -> dict[str, JSON]:
    namespace, bare = view.names.get(name, (None, name))
    item: dict[str, JSON] = {"id": item_id, "type": "function_call", "status": status,
                             "arguments": arguments, "call_id": call_id, "name": bare}
    if namespace is not None:
        item["namespace"] = namespace
    return item


def _response_obj(view: ResponsesView, ctx: CallContext, status: str,
                  output: list[JSON], usage: Usage | None = None,
                  finish: str | None = None, error: JSON = None) -> dict[str, JSON]:
    reason = _INCOMPLETE.get(finish or "")
    return {
        "id": f"resp_{ctx.id}", "object": "response", "created_at": ctx.created,
        "status": status, "error": error,
        "incomplete_details": {"reason": reason} if reason and status == "incomplete"
        else None,
        "model": view.model, "output": output, "usage": _usage_out(usage), **view.echo,
    }


def _view(call: DoorCall) -> ResponsesView:
    view = call.view
    if not isinstance(view, ResponsesView):
        raise TypeError("a DoorCall not parsed by the Responses door")
    return view


def render_response(call: DoorCall, answer: Answer, ctx: CallContext) -> bytes:
    """A whole ``response`` object (``response.py``). A same-dialect answer is the
    upstream's body with only ``model`` rewritten."""
    view = _view(call)
    resp = answer.response
    if resp.dialect == API and isinstance(resp.raw, dict):
        return dumps({**resp.raw, "model": view.model})
    output: list[JSON] = []
    thinking = resp.thinking_parts or (
        (ThinkingPart(text=resp.thinking),) if resp.thinking else ())
    for i, part in enumerate(thinking):
        own_id, encrypted = _opaque_out(part.signature, part.encrypted)
        output.append(_reasoning_out(own_id or f"rs_{ctx.id}_{i}", part.text, encrypted))
    status = "incomplete" if resp.finish_reason in _INCOMPLETE else "completed"
    if resp.content:
        output.append(_message_item(f"msg_{ctx.id}", resp.content, status))
    for j, call_ in enumerate(resp.tool_calls):
        output.append(_call_out(view, f"fc_{ctx.id}_{j}", call_.id or f"call_{ctx.id}_{j}",
                                call_.name, call_.arguments, "completed"))
    return dumps(_response_obj(view, ctx, status, output, resp.usage, resp.finish_reason))


def _error_code(exc: ChatError) -> str:
    """``error.code``: chatd's SPEC §4 type, except that a route that cannot exist (no
    such provider, an upstream 404) is OpenAI's ``model_not_found``, the one code on which
    Codex stops retrying a 404 (research/agents.md: six requests otherwise)."""
    if exc.type == "provider_not_registered" or exc.upstream_status == 404:
        return "model_not_found"
    return exc.type


def render_error(exc: ChatError) -> bytes:
    """``{"error": {"message", "type", "param", "code", "provider"?, "upstream_status"?}}``
    (providers.md §3.4), sent with ``exc.status``."""
    error: dict[str, JSON] = {"message": exc.message, "type": _error_category(exc.status),
                              "param": None, "code": _error_code(exc)}
    if exc.provider is not None:
        error["provider"] = exc.provider
    if exc.upstream_status is not None:
        error["upstream_status"] = exc.upstream_status
    return dumps({"error": error})


def _failure(exc: ChatError) -> dict[str, JSON]:
    """``response.error`` of ``response.failed`` (``response_error.py`` codes). A rate
    limit names its wait in the message, the only place Codex reads one mid-stream."""
    if exc.type == "rate_limited":
        wait = exc.retry_after if exc.retry_after is not None else DEFAULT_RETRY_AFTER_SECS
        message = f"{exc.message} Please try again in {max(1, math.ceil(wait))}s."
        code = "rate_limit_exceeded"
    else:
        message = exc.message
        code = "invalid_prompt" if exc.status == 400 else "server_error"
    out: dict[str, JSON] = {"code": code, "message": message, "type": exc.type}
    if exc.provider is not None:
        out["provider"] = exc.provider
    return out


_MESSAGE, _REASONING, _CALL = 0, 1, 2


class _Item:
    """An output item being streamed."""

    __slots__ = ("call_id", "done", "head", "id", "index", "kind", "name", "opaque",
                 "open_part", "status", "texts")

    def __init__(self, kind: int, item_id: str, index: int) -> None:
        self.kind = kind
        self.id = item_id
        self.index = index
        self.texts: list[str] = []
        self.head = b""
        self.call_id = ""
        self.name: str | None = None
        self.opaque: str | None = None
        self.open_part = False
        """A reasoning item's summary part has been opened."""
        self.done = False
        self.status = "completed"


class ResponseStream:
    """Renders one streamed answer as Responses SSE events (``response_stream_event.py``).

    Every event has ``event:`` and a ``sequence_number``. Output items open on the first
    event of their kind (``output_item.added`` and, for text, ``content_part.added``) and
    are closed with their ``.done`` events, ``output_item.done`` last, when another kind
    starts or the answer ends; Codex needs ``response.output_item.done`` for each item
    and ``response.completed`` at the end (research/agents.md). A truncated answer ends
    with ``response.incomplete``, as OpenAI ends one; a failure with ``response.failed``.

    The opening ``response.created`` / ``response.in_progress`` go out with the first
    batch, once it shows who answered: a batch of :class:`RawEvent` s is a same-dialect
    upstream's own events, relayed with only ``model`` rewritten.
    """

    __slots__ = ("_calls", "_closed", "_ctx", "_current", "_items", "_model", "_raw",
                 "_seq", "_started", "_terminal", "_view")

    def __init__(self, view: ResponsesView, ctx: CallContext) -> None:
        self._view = view
        self._ctx = ctx
        self._model = view.model
        self._seq = 0
        self._items: list[_Item] = []
        self._current: _Item | None = None
        self._calls: dict[int, _Item] = {}
        self._started = False
        self._raw = False
        self._closed = False
        self._terminal = False

    def start(self) -> bytes:
        return b""

    # --- events ---------------------------------------------------------------------

    def _event(self, out: list[bytes], kind: str, fields: dict[str, JSON]) -> None:
        obj: dict[str, JSON] = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        out.append(b"event: " + kind.encode() + b"\ndata: " + dumps(obj) + b"\n\n")

    def _open(self, out: list[bytes]) -> None:
        self._event(out, "response.created",
                    {"response": _response_obj(self._view, self._ctx, "in_progress", [])})
        self._event(out, "response.in_progress",
                    {"response": _response_obj(self._view, self._ctx, "in_progress", [])})

    def events(self, batch: Sequence[Event], served: Served) -> bytes:
        if self._closed:
            raise RuntimeError("events() after the stream ended")
        return render_batch(self._events, batch)  # what came before a failure goes first

    def _events(self, batch: Sequence[Event], out: list[bytes]) -> None:
        if not self._started:
            self._started = True
            self._raw = any(type(ev) is RawEvent for ev in batch)
            if not self._raw:
                self._open(out)
        if self._raw:
            self._relay(batch, out)
            return
        for ev in batch:
            kind = type(ev)
            if kind is TextDelta:
                assert isinstance(ev, TextDelta)
                item = self._current
                if item is None or item.kind != _MESSAGE:
                    item = self._open_message(out)
                item.texts.append(ev.text)
                out.append(item.head + str(self._seq).encode() + b',"delta":'
                           + dumps(ev.text) + b',"logprobs":[]}\n\n')
                self._seq += 1
            elif kind is ThinkingDelta:
                assert isinstance(ev, ThinkingDelta)
                self._thinking(ev, out)
            elif kind is ToolCallDelta:
                assert isinstance(ev, ToolCallDelta)
                self._tool(ev, out)
            elif kind is StreamEnded:
                assert isinstance(ev, StreamEnded)
                self._end(ev, out)
            elif kind is not RawEvent:
                raise TypeError(f"not a stream event: {ev!r}")

    def _new(self, kind: int, item_id: str) -> _Item:
        item = _Item(kind, item_id, len(self._items))
        self._items.append(item)
        return item

    def _open_message(self, out: list[bytes]) -> _Item:
        self._close_all(out)
        item = self._current = self._new(_MESSAGE, f"msg_{self._ctx.id}_{len(self._items)}")
        ids = {"item_id": item.id, "output_index": item.index}
        self._event(out, "response.output_item.added", {
            "output_index": item.index,
            "item": {"id": item.id, "type": "message", "status": "in_progress",
                     "role": "assistant", "content": []}})
        self._event(out, "response.content_part.added", {
            **ids, "content_index": 0,
            "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}})
        item.head = (b'event: response.output_text.delta\ndata: {"type":'
                     b'"response.output_text.delta","item_id":' + dumps(item.id)
                     + b',"output_index":' + str(item.index).encode()
                     + b',"content_index":0,"sequence_number":')
        return item

    def _thinking(self, ev: ThinkingDelta, out: list[bytes]) -> None:
        item = self._current
        if item is None or item.kind != _REASONING:
            self._close_all(out)
            item = self._current = self._new(_REASONING,
                                             f"rs_{self._ctx.id}_{len(self._items)}")
            self._event(out, "response.output_item.added", {
                "output_index": item.index,
                "item": {"id": item.id, "type": "reasoning", "summary": []}})
        if ev.text:
            ids = {"item_id": item.id, "output_index": item.index, "summary_index": 0}
            if not item.open_part:
                item.open_part = True
                self._event(out, "response.reasoning_summary_part.added",
                            {**ids, "part": {"type": "summary_text", "text": ""}})
            item.texts.append(ev.text)
            self._event(out, "response.reasoning_summary_text.delta",
                        {**ids, "delta": ev.text})
        if ev.signature is not None or ev.encrypted is not None:
            _, item.opaque = _opaque_out(ev.signature, ev.encrypted)
            self._close_current(out)

    def _tool(self, ev: ToolCallDelta, out: list[bytes]) -> None:
        item = self._calls.get(ev.index)
        if item is None:
            self._close_current(out)
            item = self._calls[ev.index] = self._new(
                _CALL, f"fc_{self._ctx.id}_{ev.index}")
            item.call_id = ev.id or f"call_{self._ctx.id}_{ev.index}"
            item.name = ev.name
            self._event(out, "response.output_item.added", {
                "output_index": item.index,
                "item": _call_out(self._view, item.id, item.call_id, ev.name or "", "",
                                  "in_progress")})
        elif item.done:
            return  # a fragment after its call was closed by other output: unplaceable
        elif item.name is None and ev.name is not None:
            item.name = ev.name
        if ev.arguments:
            item.texts.append(ev.arguments)
            self._event(out, "response.function_call_arguments.delta", {
                "item_id": item.id, "output_index": item.index, "delta": ev.arguments})

    def _close_current(self, out: list[bytes]) -> None:
        item = self._current
        if item is None:
            return
        self._current = None
        item.done = True
        text = "".join(item.texts)
        ids = {"item_id": item.id, "output_index": item.index}
        if item.kind == _MESSAGE:
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            self._event(out, "response.output_text.done",
                        {**ids, "content_index": 0, "text": text, "logprobs": []})
            self._event(out, "response.content_part.done",
                        {**ids, "content_index": 0, "part": part})
        elif item.open_part:
            self._event(out, "response.reasoning_summary_text.done",
                        {**ids, "summary_index": 0, "text": text})
            self._event(out, "response.reasoning_summary_part.done",
                        {**ids, "summary_index": 0,
                         "part": {"type": "summary_text", "text": text}})
        self._event(out, "response.output_item.done",
                    {"output_index": item.index, "item": self._done_item(item)})

    def _close_calls(self, out: list[bytes]) -> None:
        for item in self._calls.values():
            if item.done:
                continue
            item.done = True
            arguments = "".join(item.texts) or "{}"
            item.texts = [arguments]
            _, bare = self._view.names.get(item.name or "", (None, item.name or ""))
            self._event(out, "response.function_call_arguments.done", {
                "item_id": item.id, "output_index": item.index, "name": bare,
                "arguments": arguments})
            self._event(out, "response.output_item.done",
                        {"output_index": item.index, "item": self._done_item(item)})

    def _close_all(self, out: list[bytes]) -> None:
        self._close_current(out)
        self._close_calls(out)

    def _done_item(self, item: _Item) -> dict[str, JSON]:
        text = "".join(item.texts)
        if item.kind == _MESSAGE:
            return _message_item(item.id, text, item.status)
        if item.kind == _REASONING:
            return _reasoning_out(item.id, text, item.opaque)
        return _call_out(self._view, item.id, item.call_id, item.name or "", text or "{}",
                         item.status)

    def _end(self, ev: StreamEnded, out: list[bytes]) -> None:
        status = "incomplete" if ev.finish_reason in _INCOMPLETE else "completed"
        current = self._current
        if status == "incomplete" and current is not None and current.kind == _MESSAGE:
            current.status = "incomplete"  # the truncated message, as OpenAI marks it
        self._close_all(out)
        self._closed = True
        output = [self._done_item(i) for i in self._items]
        self._event(out, f"response.{status}", {
            "response": _response_obj(self._view, self._ctx, status, output, ev.usage,
                                      ev.finish_reason)})

    def error(self, exc: ChatError) -> bytes:
        """``response.failed`` with the items completed so far and ``response.error``."""
        if self._closed:
            raise RuntimeError("error() after the stream ended")
        self._closed = True
        if self._terminal:  # the same-dialect upstream already said so itself
            return b""
        out: list[bytes] = []
        if not self._started:
            self._started = True
            self._open(out)
        output = [self._done_item(i) for i in self._items if i.done]
        self._event(out, "response.failed", {"response": _response_obj(
            self._view, self._ctx, "failed", output, error=_failure(exc))})
        return b"".join(out)

    # --- same dialect ---------------------------------------------------------------

    def _relay(self, batch: Sequence[Event], out: list[bytes]) -> None:
        """The upstream's own events, each re-encoded with only ``model`` rewritten."""
        model = self._model
        for ev in batch:
            if type(ev) is RawEvent:
                assert isinstance(ev, RawEvent)
                data = ev.data
                name = ev.name
                if isinstance(data, dict):
                    response = data.get("response")
                    if isinstance(response, dict) and "model" in response:
                        data = {**data, "response": {**response, "model": model}}
                    seq = data.get("sequence_number")
                    if type(seq) is int:
                        self._seq = seq + 1
                    kind = data.get("type")
                    if kind in ("response.failed", "error"):
                        self._terminal = True
                    if name is None and isinstance(kind, str):
                        name = kind
                head = b"event: " + name.encode() + b"\n" if name else b""
                out.append(head + b"data: " + dumps(data) + b"\n\n")
            elif type(ev) is StreamEnded:
                self._closed = True


class ResponsesDoor:
    """The ``POST /v1/responses`` door (:class:`chatproto.Door`)."""

    name = "responses"
    api: str | None = API
    content_type = b"application/json"
    stream_content_type = b"text/event-stream"
    stream_headers = ((b"cache-control", b"no-cache"),)

    def parse(self, body: bytes, headers: Headers) -> DoorCall:
        return parse_request(body, headers)

    def render(self, call: DoorCall, answer: Answer, ctx: CallContext) -> bytes:
        return render_response(call, answer, ctx)

    def stream(self, call: DoorCall, ctx: CallContext) -> ResponseStream:
        return ResponseStream(_view(call), ctx)

    def render_error(self, exc: ChatError) -> bytes:
        return render_error(exc)


door = ResponsesDoor()


# ======================================================================================
# Client end: the request
# ======================================================================================

#: chatd's think levels -> ``reasoning.effort`` (``max`` is OpenAI's ``xhigh``, the
#: highest effort most Responses models take).
_LEVEL = {"low": "low", "medium": "medium", "high": "high", "max": "xhigh"}

#: Base64 openings of the image formats (PNG, JPEG, GIF, WebP), for a data URL's type.
_IMAGE_MAGIC = (("iVBORw0KGgo", "image/png"), ("/9j/", "image/jpeg"),
                ("R0lGOD", "image/gif"), ("UklGR", "image/webp"))


def _image_url(part: ImagePart) -> str:
    if part.url is not None:
        return part.url
    data = part.data or ""
    media = part.media_type or next(
        (m for prefix, m in _IMAGE_MAGIC if data.startswith(prefix)), "image/png")
    return f"data:{media};base64,{data}"


def _content_out(msg: Message) -> JSON:
    """A message's content: its text, or ``input_text`` / ``input_image`` parts."""
    if not any(type(p) is ImagePart for p in msg.parts):
        return msg.content
    parts: list[JSON] = []
    for part in msg.parts:
        if type(part) is TextPart:
            parts.append({"type": "input_text", "text": part.text})
        elif type(part) is ImagePart:
            parts.append({"type": "input_image", "image_url": _image_url(part),
                          "detail": "auto"})
    return parts


def _items_out(messages: Sequence[Message]) -> list[JSON]:
    """Canonical messages -> ``input`` items (the inverse of the door's mapping).

    A tool call without an id (Ollama's) gets ``call_<message>_<part>``, and a tool result
    without one answers the earliest such call of the turn before it, in order (SPEC §2:
    derived ids keep a tool result naming its call). Reasoning goes back only when it is
    this dialect's own (an id and ``encrypted_content``): OpenAI refuses a reasoning item
    it cannot resolve, and text from another model's thinking is not its reasoning.
    """
    out: list[JSON] = []
    derived: list[str] = []
    for i, msg in enumerate(messages):
        role = msg.role
        if role == "assistant":
            derived = []
            texts: list[str] = []
            for j, part in enumerate(msg.parts):
                if type(part) is TextPart:
                    texts.append(part.text)
                    continue
                if texts:
                    out.append({"type": "message", "role": "assistant",
                                "content": "".join(texts)})
                    texts = []
                if type(part) is ThinkingPart:
                    own = _unpack(part.encrypted)
                    if own is not None:
                        summary = [{"type": "summary_text", "text": part.text}] \
                            if part.text else []
                        out.append({"type": "reasoning", "id": own[0], "summary": summary,
                                    "encrypted_content": own[1]})
                elif type(part) is ToolCall:
                    call_id = part.id
                    if call_id is None:
                        call_id = f"call_{i}_{j}"
                        derived.append(call_id)
                    out.append({"type": "function_call", "call_id": call_id,
                                "name": part.name, "arguments": part.arguments})
            if texts:
                out.append({"type": "message", "role": "assistant",
                            "content": "".join(texts)})
        elif role == "tool":
            call_id = msg.tool_call_id
            if call_id is None:
                if not derived:
                    raise ChatError("invalid_request", f"messages[{i}] is a tool result "
                                    "that names no tool call to answer")
                call_id = derived.pop(0)
            out.append({"type": "function_call_output", "call_id": call_id,
                        "output": _content_out(msg)})
        else:
            out.append({"type": "message", "role": "user" if role == "user" else "system",
                        "content": _content_out(msg)})
    return out


def _tool_out(tool: JSON) -> JSON:
    """A Chat-shaped function tool -> a Responses function tool. ``strict`` is sent
    false unless the tool says otherwise: left out, Responses "attempts to use strict
    validation" (``function_tool_param.py``), which Chat Completions never did."""
    if not isinstance(tool, dict) or tool.get("type") != "function":
        return tool
    function = tool.get("function")
    if not isinstance(function, dict):
        return tool
    out: dict[str, JSON] = {"type": "function", "name": function.get("name")}
    if function.get("description") is not None:
        out["description"] = function["description"]
    out["parameters"] = function.get("parameters") or {"type": "object", "properties": {}}
    out["strict"] = bool(function.get("strict", False))
    return out


def _tool_choice_out(choice: JSON) -> JSON:
    if isinstance(choice, dict) and choice.get("type") == "function":
        function = choice.get("function")
        if isinstance(function, dict) and "name" in function:
            return {"type": "function", "name": function["name"]}
    return choice


def _format_out(fmt: JSON, options: Mapping[str, JSON]) -> JSON:
    """``ChatRequest.format`` -> ``text.format`` (``response_format_text_config_param``),
    with the client's schema ``name`` and ``strict`` where it gave them
    (``options.format_name`` / ``format_strict``, from an OpenAI or Responses client).
    A Chat ``response_format`` object passed on by another door is reshaped."""
    if fmt == "json":
        return {"type": "json_object"}
    if isinstance(fmt, dict):
        kind = fmt.get("type")
        if kind == "json_object":
            return {"type": "json_object"}
        if kind == "json_schema" and isinstance(fmt.get("json_schema"), dict):
            return {"type": "json_schema", "name": "response", **fmt["json_schema"]}
        return {"type": "json_schema", "name": "response", "schema": fmt,
                **schema_naming(options)}
    raise ChatError("invalid_request", 'format must be "json" or a JSON schema object')


def _body(request: ChatRequest, route: Route) -> dict[str, JSON]:
    """The ``/responses`` body from canonical fields. Left out, having no counterpart in
    Responses: ``stop``, ``seed`` and the sampling options Ollama alone has. chatd is
    stateless, so ``store`` is false and reasoning comes back encrypted for the next
    turn (``include: ["reasoning.encrypted_content"]``, as Codex asks)."""
    body: dict[str, JSON] = {}
    if request.dialect == API:
        body.update(request.extras)
    body["model"] = route.upstream_model
    body["input"] = _items_out(request.messages)
    if request.max_tokens is not None:
        body["max_output_tokens"] = request.max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.tools:
        body["tools"] = [_tool_out(t) for t in request.tools]
    if request.tool_choice is not None:
        body["tool_choice"] = _tool_choice_out(request.tool_choice)
    options = request.options
    for key in ("parallel_tool_calls", "prompt_cache_key", "user", "top_logprobs"):
        if key in options:
            body[key] = options[key]
    think = request.think
    reasoning: dict[str, JSON] = {}
    if think is False:
        reasoning["effort"] = "none"
    elif isinstance(think, str):
        reasoning["effort"] = _LEVEL.get(think, think)
    if think or "reasoning_summary" in options:
        reasoning["summary"] = options.get("reasoning_summary", "auto")
    if reasoning:
        body["reasoning"] = reasoning
    text: dict[str, JSON] = {}
    if request.format is not None:
        text["format"] = _format_out(request.format, options)
    if "verbosity" in options:
        text["verbosity"] = options["verbosity"]
    if text:
        body["text"] = text
    body["store"] = False
    body["include"] = ["reasoning.encrypted_content"]
    if request.stream:
        body["stream"] = True
    return body


# ======================================================================================
# Client end: answers and streams
# ======================================================================================

#: ``response.error.code`` -> SPEC §4 type: a rate limit is one, a server error or an
#: unknown code the upstream's failure, every other code (invalid_prompt, image and
#: policy errors, ``response_error.py``) a refusal of this request.
_FAILED = {"rate_limit_exceeded": "rate_limited", "server_error": "upstream_error",
           "vector_store_timeout": "upstream_error", "insufficient_quota": "upstream_error"}


def _failed(provider: str, error: Any) -> ChatError:
    """``response.failed``'s ``response.error`` or an ``error`` event -> ChatError."""
    if isinstance(error, dict) and isinstance(error.get("error"), dict):
        error = error["error"]  # {"type": "error", "error": {...}}
    code: Any = None
    message = ""
    if isinstance(error, dict):
        code = error.get("code")
        raw = error.get("message")
        message = raw if isinstance(raw, str) else ""
    message = clip_message(message) or f"upstream reported a failure ({code or 'no code'})"
    kind = _FAILED.get(code, "upstream_rejected") if isinstance(code, str) \
        else "upstream_error"
    return ChatError(kind, message, provider=provider)


def _usage_in(value: Any, provider: str) -> Usage:
    if not isinstance(value, dict):
        raise _bad(provider, "upstream sent usage that is not an object")

    def count(obj: Any, key: str) -> int | None:
        n = obj.get(key) if isinstance(obj, dict) else None
        return n if type(n) is int and n >= 0 else None

    inputs = value.get("input_tokens_details")
    outputs = value.get("output_tokens_details")
    return Usage(
        prompt_tokens=count(value, "input_tokens") or 0,
        completion_tokens=count(value, "output_tokens") or 0,
        cached_tokens=count(inputs, "cached_tokens"),
        cache_creation_tokens=count(inputs, "cache_write_tokens"),
        reasoning_tokens=count(outputs, "reasoning_tokens"),
    )


def _finish(status: Any, details: Any, tools: bool) -> str:
    if status == "incomplete":
        reason = details.get("reason") if isinstance(details, dict) else None
        return "content_filter" if reason == "content_filter" else "length"
    return "tool_calls" if tools else "stop"


def _item_texts(item: dict[str, Any], provider: str) -> list[str]:
    """The non-empty texts of a reasoning item: ``content`` then ``summary`` parts."""
    texts: list[str] = []
    for key in ("content", "summary"):
        pieces = item.get(key) or []
        if not isinstance(pieces, list):
            raise _bad(provider, f"upstream sent a reasoning {key} that is not a list")
        for piece in pieces:
            text = piece.get("text") if isinstance(piece, dict) else None
            if isinstance(text, str) and text:
                texts.append(text)
    return texts


def _call_in(item: dict[str, Any], provider: str) -> tuple[str | None, str, str]:
    """(call_id, flattened name, arguments) of a ``function_call`` item."""
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise _bad(provider, "upstream sent a function call without a name")
    namespace = item.get("namespace")
    call_id = item.get("call_id")
    arguments = item.get("arguments")
    if arguments is not None and not isinstance(arguments, str):
        raise _bad(provider, "upstream sent function-call arguments that are not a string")
    return (call_id if isinstance(call_id, str) and call_id else None,
            flat_name(namespace if isinstance(namespace, str) else None, name),
            arguments or "")


def _opaque_of(item: dict[str, Any]) -> str | None:
    encrypted = item.get("encrypted_content")
    if not isinstance(encrypted, str) or not encrypted:
        return None
    item_id = item.get("id")
    return _pack(item_id, encrypted) if isinstance(item_id, str) and item_id else encrypted


class ResponsesStreamParser(StreamLifecycle):
    """A Responses SSE body -> chatd events (``response_stream_event.py``).

    The lifecycle (draining after the end, failing, the events before an error) is
    :class:`~chatproto._lifecycle.StreamLifecycle`'s. The event type is read from the JSON
    ``type`` (Codex reads it there too and tolerates a missing ``event:`` line). Text and
    refusal deltas are :class:`TextDelta`, reasoning summary and reasoning text deltas
    :class:`ThinkingDelta` (consecutive parts joined by a blank line), and a reasoning
    item's ``encrypted_content`` closes its thinking block. A ``function_call`` item is a
    :class:`ToolCallDelta` per fragment, indexed in order of appearance; a server that
    sends no deltas has its items' content taken from ``output_item.done``.
    ``response.completed`` / ``response.incomplete`` are the terminator (OpenCode Zen
    appends a ``ping`` with the cost after it, providers.md §5.3, which is dropped);
    ``response.failed`` and ``error`` raise; a body that ends first is
    ``bad_upstream_response``.

    With ``passthrough`` each upstream event is also a :class:`RawEvent`, before the
    events derived from it. The envelope events that open a stream
    (``response.created``, ``response.in_progress``) are held until the next event, so
    an upstream that fails at once still fails before the stream commits (the server
    can then answer with a status, or try the next target of a chain).
    """

    __slots__ = ("_held", "_indexes", "_key", "_next", "_pass", "_said", "_sse", "_thought",
                 "_tools")

    _SHAPE_ERRORS = (AttributeError, TypeError, KeyError, IndexError)

    def __init__(self, provider: str, passthrough: bool = False) -> None:
        super().__init__(provider)
        self._pass = passthrough
        self._sse = SSEDecoder(provider=provider)
        self._held: list[Event] = []
        self._indexes: dict[str, int] = {}
        """item id -> tool-call index."""
        self._said: set[str] = set()
        """ids of the items whose content or arguments already went out as deltas."""
        self._next = 0
        self._tools = False
        self._thought = False
        self._key: tuple[Any, ...] | None = None

    def _parse(self, data: bytes, out: list[Event]) -> None:
        provider = self._provider
        for name, payload, _ in self._sse.feed(data):
            try:
                obj = orjson.loads(payload)
            except orjson.JSONDecodeError:
                raise _bad(provider, "upstream sent a stream event that is not JSON") \
                    from None
            if type(obj) is not dict:
                raise _bad(provider, "upstream sent a stream event that is not an object")
            kind = obj.get("type")
            if self._pass:
                raw = RawEvent(dialect=API, data=obj, name=None if name == "message" else name)
                if kind in ("response.created", "response.in_progress") and not out:
                    self._held.append(raw)
                    continue
                if self._held:
                    out.extend(self._held)
                    self._held.clear()
                out.append(raw)
            if kind == "response.output_text.delta" or kind == "response.refusal.delta":
                delta = obj.get("delta")
                if type(delta) is not str:
                    raise _bad(provider, "upstream sent a text delta that is not a string")
                if delta:
                    self._said.add(obj.get("item_id") or "")
                    out.append(TextDelta(text=delta))
            elif kind == "response.function_call_arguments.delta":
                self._arguments(obj, out)
            elif kind == "response.reasoning_summary_text.delta" \
                    or kind == "response.reasoning_text.delta":
                delta = obj.get("delta")
                if type(delta) is not str:
                    raise _bad(provider, "upstream sent a reasoning delta that is not a string")
                self._think(delta, (obj.get("item_id"), kind, obj.get("summary_index"),
                                    obj.get("content_index")), out)
            elif kind == "response.output_item.added":
                item = obj.get("item")
                if type(item) is dict and item.get("type") == "function_call":
                    self._call(item, out)
            elif kind == "response.output_item.done":
                item = obj.get("item")
                if type(item) is not dict:
                    raise _bad(provider, "upstream sent an output item that is not an object")
                self._item_done(item, out)
            elif kind == "response.completed" or kind == "response.incomplete":
                self._terminate(out, self._ended(obj))
                return
            elif kind == "response.failed":
                response = obj.get("response")
                raise _failed(provider, response.get("error")
                              if isinstance(response, dict) else None)
            elif kind == "error":
                raise _failed(provider, obj)
        if not data:
            raise _bad(provider, "upstream stream ended before response.completed")

    def _think(self, text: str, key: tuple[Any, ...], out: list[Event]) -> None:
        if not text:
            return
        if key != self._key:
            if self._thought:
                text = "\n\n" + text
            self._key = key
        self._thought = True
        if isinstance(key[0], str):
            self._said.add(key[0])
        out.append(ThinkingDelta(text=text))

    def _call(self, item: dict[str, Any], out: list[Event]) -> None:
        call_id, name, arguments = _call_in(item, self._provider)
        item_id = item.get("id")
        key = item_id if isinstance(item_id, str) else f"#{self._next}"
        index = self._indexes[key] = self._next
        self._next += 1
        self._tools = True
        if arguments:
            self._said.add(key)
        out.append(ToolCallDelta(index=index, id=call_id, name=name, arguments=arguments))

    def _arguments(self, obj: dict[str, Any], out: list[Event]) -> None:
        delta = obj.get("delta")
        if type(delta) is not str:
            raise _bad(self._provider, "upstream sent an arguments delta that is not a "
                       "string")
        item_id = obj.get("item_id")
        index = self._indexes.get(item_id) if isinstance(item_id, str) else None
        if index is None or not isinstance(item_id, str):
            raise _bad(self._provider, "upstream sent arguments for a function call it "
                       "never opened")
        if delta:
            self._said.add(item_id)
            out.append(ToolCallDelta(index=index, arguments=delta))

    def _item_done(self, item: dict[str, Any], out: list[Event]) -> None:
        """A finished item: what its deltas did not say (a server that sends whole items
        only) and a reasoning item's opaque part."""
        kind = item.get("type")
        item_id = item.get("id")
        said = isinstance(item_id, str) and item_id in self._said
        if kind == "function_call":
            if not isinstance(item_id, str) or item_id not in self._indexes:
                self._call(item, out)
            elif not said:
                _, _, arguments = _call_in(item, self._provider)
                if arguments:
                    out.append(ToolCallDelta(index=self._indexes[item_id],
                                             arguments=arguments))
        elif kind == "reasoning":
            if not said:
                for i, text in enumerate(_item_texts(item, self._provider)):
                    self._think(text, (item_id, "done", i), out)
            opaque = _opaque_of(item)
            if opaque is not None:
                out.append(ThinkingDelta(encrypted=opaque))
        elif kind == "message" and not said:
            content = item.get("content") or []
            if not isinstance(content, list):
                raise _bad(self._provider, "upstream sent message content that is not a "
                           "list")
            for part in content:
                if not isinstance(part, dict):
                    continue
                piece = part.get("refusal" if part.get("type") == "refusal" else "text")
                if isinstance(piece, str) and piece:
                    out.append(TextDelta(text=piece))

    def _ended(self, obj: dict[str, Any]) -> StreamEnded:
        response = obj.get("response")
        if not isinstance(response, dict):
            raise _bad(self._provider, "upstream sent a final event without its response")
        usage = response.get("usage")
        status = "incomplete" if obj["type"] == "response.incomplete" \
            else response.get("status")
        return StreamEnded(
            finish_reason=_finish(status, response.get("incomplete_details"), self._tools),
            usage=_usage_in(usage, self._provider) if usage else None)


class OpenAIResponsesCodec:
    """The ``openai_responses`` codec: ``POST {base_url}/responses``."""

    api = API

    def build_request(
        self, request: ChatRequest, route: Route, provider: Provider
    ) -> HTTPRequest:
        """The request: the client's own body when it came through the Responses door
        (only ``model`` and ``stream`` rewritten, and the reasoning items chatd made from
        another dialect's thinking left out, :func:`_made_here`), else built from
        canonical fields (:func:`_body`). Headers as for Chat Completions: JSON,
        ``Accept`` for SSE or JSON, the Bearer key, then the configured
        ``provider.headers``, which replace a default of the same name."""
        raw = request.raw if request.dialect == API else None
        if isinstance(raw, dict):
            body: dict[str, JSON] = {**raw, "model": route.upstream_model,
                                     "stream": request.stream}
            if not request.stream:
                body.pop("stream_options", None)
            items = raw.get("input")
            if type(items) is list and any(_made_here(item) for item in items):
                # Codex on a Claude model, then on an OpenAI one: the reasoning chatd
                # encoded for the first cannot go to the second (as in _items_out).
                body["input"] = [item for item in items if not _made_here(item)]
        else:
            body = _body(request, route)
        headers = request_headers(provider, (
            ("Content-Type", "application/json"),
            ("Accept", "text/event-stream" if request.stream else "application/json"),
        ))
        url = provider.base_url.rstrip("/") + provider.path(API, "/responses")
        return HTTPRequest(method="POST", url=url, headers=headers,
                           body=encode_body(body, provider.name), stream=request.stream)

    def parse_response(
        self, provider: str, body: bytes, *, passthrough: bool = False
    ) -> ChatResponse:
        """A whole ``response`` object -> ChatResponse; ``status: "failed"`` (or an
        ``error`` object) raises as in a stream."""
        obj = loads(body, provider)
        if not isinstance(obj, dict):
            raise _bad(provider, "upstream answered with JSON that is not an object")
        status = obj.get("status")
        if status == "failed" or obj.get("error"):
            raise _failed(provider, obj.get("error"))
        output = obj.get("output")
        if not isinstance(output, list):
            raise _bad(provider, "upstream answered without an output list")
        texts: list[str] = []
        thinking: list[ThinkingPart] = []
        calls: list[ToolCall] = []
        for item in output:
            if not isinstance(item, dict):
                raise _bad(provider, "upstream sent an output item that is not an object")
            kind = item.get("type")
            if kind == "message":
                content = item.get("content") or []
                if not isinstance(content, list):
                    raise _bad(provider, "upstream sent message content that is not a list")
                for part in content:
                    if not isinstance(part, dict):
                        continue
                    text = part.get("refusal" if part.get("type") == "refusal" else "text")
                    if isinstance(text, str):
                        texts.append(text)
            elif kind == "reasoning":
                part_texts = _item_texts(item, provider)
                opaque = _opaque_of(item)
                if part_texts or opaque is not None:
                    thinking.append(ThinkingPart(text="\n\n".join(part_texts),
                                                 encrypted=opaque))
            elif kind == "function_call":
                call_id, name, arguments = _call_in(item, provider)
                calls.append(ToolCall(id=call_id, name=name, arguments=arguments or "{}"))
        usage = obj.get("usage")
        joined = "\n\n".join(p.text for p in thinking if p.text)
        return ChatResponse(
            content="".join(texts),
            finish_reason=_finish(status, obj.get("incomplete_details"), bool(calls)),
            usage=_usage_in(usage, provider) if usage else Usage(),
            thinking=joined or None,
            tool_calls=tuple(calls),
            thinking_parts=tuple(thinking),
            raw=obj if passthrough else None,
            dialect=API if passthrough else None,
        )

    def stream_parser(self, provider: str, *, passthrough: bool = False
                      ) -> ResponsesStreamParser:
        return ResponsesStreamParser(provider, passthrough)

    def parse_error(
        self, provider: str, status: int, headers: Headers, body: bytes, *, now: float
    ) -> ChatError:
        """A non-2xx answer, classified by status alone (SPEC §4); the message read from
        OpenAI's, OpenRouter's or OpenCode Zen's error shape (providers.md §8)."""
        return error_from_upstream(provider, status, _error_message(body), headers, now=now)


codec = OpenAIResponsesCodec()
