"""OpenAI Chat Completions, both ends: the ``openai_chat`` codec (openrouter, opencode,
kimi and configured OpenAI-compatible providers) and the ``/v1/chat/completions`` door;
and, at the end of the module, the model list (``GET /models``) and embeddings
(``POST /embeddings``), both ends too.

Strategy: one module owns every byte of the format, so the two directions of each mapping
sit side by side ("Both ends" below): the tool-call object, the
``response_format`` <-> ``format`` pair, the image data URL, the error body. The client end
builds upstream requests and parses answers, streams and errors; the server end parses
client requests and renders answers, streams and errors. Nothing here does I/O or reads a
clock: ids and timestamps are arguments.

Client end. One stateless codec speaks the OpenAI family (providers.md §3). The providers
differ in a handful of documented quirks, each handled here as a named flag of
:class:`~chatproto.Provider` with its providers.md tag beside it, rather than in
near-copies:

- reasoning control: OpenRouter's ``reasoning`` object, Kimi's ``thinking`` object;
  OpenCode Zen proxies to many upstreams and documents none, so it gets nothing;
- reasoning text arrives as ``reasoning`` (OpenRouter) or ``reasoning_content`` (Kimi,
  and whatever Zen passes through) and both become thinking;
- usage sits in ``chunk.usage`` or, on Kimi, in ``choices[0].usage``;
- streams may carry comment keep-alives (OpenRouter), an error chunk with HTTP 200
  already sent (OpenAI, OpenRouter), and an extra chunk after ``[DONE]`` (OpenCode Zen);
- error bodies come in three shapes (OpenAI, OpenRouter, OpenCode Zen).

The stream parser's per-chunk path is written flat (locals, ``dict.get``, no helper per
chunk) because the budget is about 3 us a chunk, SSE framing and JSON decoding included.
Shape errors deep inside a chunk (a list where an object belongs) are caught once around
the chunk and reported as ``bad_upstream_response``; values that end up in events are
type-checked, so a wrong type never leaks into an event.

Server end. An OpenAI Chat Completions body becomes the same
:class:`~chatproto.ChatRequest` the native door builds (the field validators of
:mod:`chatproto._request` are reused, so both doors agree on what is valid), and chatd's
answers, events and errors are rendered back as OpenAI bytes. The stream renderer runs once
per relayed chunk, so :class:`CompletionStream` encodes the constant parts of a chunk (id,
created, model, the ``choices`` wrapper) once per stream and splices each JSON-encoded delta
between them; a chunk costs one ``orjson.dumps`` of the delta's text and two byte
concatenations.

Decisions of the server end (each is a choice where OpenAI's contract leaves room; the
source is beside it):


- Text content parts are joined with ``"\\n"``, not ``""``: parts are usually separate
  blocks (an instruction, then a document) and gluing them can fuse words. vLLM renders
  text parts the same way for chat templates (vllm ``entrypoints/chat_utils.py``,
  ``"\\n".join(texts)``).
- Images must be inline ``data:image/...;base64,`` URLs; their payload becomes
  ``Message.images``. A remote URL is a 400: Ollama takes only base64 images and chatd does
  no fetching ("image URLs not supported" on Ollama's own /v1, providers.md §1.9).
- ``max_completion_tokens`` (OpenAI's current name) wins over ``max_tokens`` (deprecated,
  providers.md §3.1) when both are set. Ollama's /v1 ignores ``max_completion_tokens``
  altogether (providers.md §1.9); chatd honours both.
- ``reasoning_effort`` / ``reasoning.effort`` -> ``think`` follows Ollama's own /v1 mapping
  (providers.md §1.9, OL ``openai.go thinkFromReasoningEffort``: none -> false, minimal ->
  "low", low|medium|high|max -> same, xhigh|ultra -> "max", else 400) with one difference:
  ``minimal`` -> false, as LiteLLM maps it (PR #15763, research/anchors.md L10), because
  asking for the least reasoning should not turn thinking on where false is available.
  ``ultra`` (Ollama-only) is not an OpenAI value and is refused. OpenRouter's
  ``reasoning.enabled`` is honoured too. When both spellings are given they must agree.
- Thinking goes out as ``reasoning_content`` *and* ``reasoning``: DeepSeek-style clients
  (and Kimi) read the first, OpenRouter- and Ollama-style clients the second
  (providers.md §1.9, §4.2, §8 "Reasoning field"; anchors.md takeaway 7). Clients that know
  both read one of them, so nothing is shown twice.
- A tool call without an id (Ollama may omit it) gets ``call_<completion id>_<index>``:
  OpenAI's ``tool_calls[].id`` is required and clients answer tool results by it; deriving
  it from the completion id keeps it unique across turns.
- ``system_fingerprint`` is left out (it is optional in the SDK, OAI ``chat_completion.py``,
  and chatd has no backend fingerprint to vouch for), but for an upstream of this dialect,
  whose own it is (:func:`render_completion` keeps such an upstream's other fields).
  ``finish_reason`` is chatd's own (SPEC §3), which is OpenAI's set.
- A stream that ended without upstream usage gets no usage chunk even with
  ``include_usage``: OpenAI says it "may be missing" (providers.md §3.3) and a zero count
  would be a false number (anchors.md takeaway 3: usage is never estimated).
- Errors keep SPEC §4's status; the body is OpenAI's shape with chatd's type as ``code``
  and ``provider`` / ``upstream_status`` as extra fields (the SDK keeps extra fields in
  ``APIError.body``).
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import orjson

from .._codec import request_headers
from .._decoders import SSEDecoder, dumps, encode_body, loads
from .._door import Answer, CallContext, DoorCall, Served, render_each
from .._embed import MAX_INPUTS, EmbedRequest, EmbedResponse, embed_vector
from .._errors import ChatError, Headers, clip_message, error_from_upstream
from .._events import Event, RawEvent, StreamEnded, TextDelta, ThinkingDelta, ToolCallDelta
from .._lifecycle import StreamLifecycle
from .._models import CatalogEntry, ListedModel, list_entries, usable_id
from .._options import read_options, schema_naming
from .._request import (
    boolean,
    decode_body,
    integer,
    invalid,
    json_object,
    json_type,
    number,
    parse_message,
    parse_model,
    parse_stop,
    parse_tool_choice,
    parse_tools,
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
    Provider,
    Route,
    ToolCall,
    Usage,
)

__all__ = [
    "API",
    "ENCODINGS",
    "JSON_CONTENT_TYPE",
    "SSE_CONTENT_TYPE",
    "CompletionStream",
    "OpenAIChatCodec",
    "OpenAIChatDoor",
    "OpenAIChatStreamParser",
    "OpenAIEmbedCall",
    "OpenAIEmbedCodec",
    "OpenAIRequest",
    "codec",
    "decode_base64_vector",
    "door",
    "embed_codec",
    "encode_base64_vector",
    "parse_embeddings",
    "parse_models",
    "parse_request",
    "render_completion",
    "render_embeddings",
    "render_error",
    "render_model",
    "render_models",
]

#: The wire format's name: ``Provider.api`` of its upstreams, ``Door.api`` of its door.
API = "openai_chat"
JSON_CONTENT_TYPE = b"application/json"
SSE_CONTENT_TYPE = b"text/event-stream"



# --------------------------------------------------------------------------------------
# Both ends: the shapes one end writes and the other reads


def _tool_call_json(call_id: str | None, name: str, arguments: str) -> dict[str, JSON]:
    """One ``tool_calls[]`` entry (providers.md §3.1, §3.2): ``{"id"?, "type": "function",
    "function": {"name", "arguments"}}``, arguments as JSON text. The codec writes it into
    assistant history; the door into answers (always with an id there)."""
    function = {"name": name, "arguments": arguments}
    if call_id is None:
        return {"type": "function", "function": function}
    return {"id": call_id, "type": "function", "function": function}


def _response_format_json(fmt: JSON, options: Mapping[str, JSON] | None = None) -> JSON:
    """``ChatRequest.format`` -> OpenAI ``response_format`` (SPEC §2; providers.md §3.1).

    ``"json"`` is JSON mode, ``{"type": "json_object"}``. A schema object is wrapped as
    ``{"type": "json_schema", "json_schema": {"name": "response", "schema": ...}}``, with
    the client's own ``name`` and ``strict`` where it gave them (``options.format_name``,
    ``options.format_strict``, from an OpenAI or Responses client). Without one,
    ``strict`` is left out (OpenAI's default, false): strict mode refuses any schema that
    does not list every property as required and forbid additional ones, and chatd
    passes the caller's schema through as written. A dict whose ``type`` is already
    ``json_schema`` or ``json_object`` is an OpenAI ``response_format`` (no JSON Schema has
    those types) and is sent as is.
    """
    if fmt == "json":
        return {"type": "json_object"}
    if isinstance(fmt, dict):
        if fmt.get("type") in ("json_schema", "json_object"):
            return fmt
        spec: dict[str, JSON] = {"name": "response", "schema": fmt}
        if options:
            spec.update(schema_naming(options))
        return {"type": "json_schema", "json_schema": spec}
    raise ChatError("invalid_request", 'format must be "json" or a JSON schema object')


def _parse_response_format(value: object) -> object:
    """``response_format`` -> ``ChatRequest.format`` (the mapping of Ollama's own /v1,
    providers.md §1.9): ``json_object`` -> ``"json"``, ``json_schema`` -> its ``schema``,
    ``text`` -> None. A ``json_schema`` without a schema is JSON mode, the nearest honest
    reading. The schema's ``name`` and ``strict`` have no place in chatd's ``format``."""
    if value is None:
        return None
    value = json_object(value, "response_format")
    kind = value.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict):
            raise invalid(
                f"response_format.json_schema must be an object, not {json_type(spec)}"
            )
        schema = spec.get("schema")
        if schema is None:
            return "json"
        if not isinstance(schema, dict):
            raise invalid(
                f"response_format.json_schema.schema must be an object, not "
                f"{json_type(schema)}"
            )
        return schema
    raise invalid(
        f'response_format.type must be "text", "json_object" or "json_schema", not {kind!r}'
    )


#: Base64 openings of the image formats chat APIs take (PNG, JPEG, GIF, WebP).
_IMAGE_MAGIC = (("iVBORw0KGgo", "image/png"), ("/9j/", "image/jpeg"),
                ("R0lGOD", "image/gif"), ("UklGR", "image/webp"))


def _image_url(image: str) -> str:
    """An OpenAI ``image_url.url`` for one of ``Message.images``.

    chatd's images are Ollama-style bare base64; OpenAI wants a URL or a data URL, whose
    media type is read from the base64 of the file's magic bytes (PNG when unknown; the
    upstream refuses a mismatch with a 400, which chatd reports as upstream_rejected).
    URLs and data URLs are passed through.
    """
    if image.startswith(("data:", "https://", "http://")):
        return image
    mime = next((m for prefix, m in _IMAGE_MAGIC if image.startswith(prefix)), "image/png")
    return f"data:{mime};base64,{image}"


def _parse_image_url(value: object, field: str) -> str | ImagePart:
    """``image_url`` (``{"url", "detail"?}``, or the bare URL string some clients send) ->
    the base64 payload of a ``data:image/<type>;base64,<payload>`` URL (RFC 2397), or an
    :class:`ImagePart` holding a remote ``http(s)`` URL.

    A remote URL is carried to upstreams that take URLs (the OpenAI family, Anthropic);
    the call plan refuses it with a clear 400 only where the upstream takes base64 alone
    (Ollama: "image URLs not supported", providers.md §1.9). chatd fetches nothing.
    """
    url = value.get("url") if isinstance(value, dict) else value
    where = f"{field}.url" if isinstance(value, dict) else field
    if not isinstance(url, str):
        raise invalid(f"{where} must be a string, not {json_type(url)}")
    if url[:8].lower() == "https://" or url[:7].lower() == "http://":
        return ImagePart(url=url)
    if url[:5].lower() != "data:":
        raise invalid(f"{where}: expected an http(s) URL or a data:image/...;base64 URL")
    header, comma, payload = url[5:].partition(",")
    params = header.lower().split(";")
    if not comma or not params[0].startswith("image/") or "base64" not in params[1:]:
        raise invalid(f"{where} must be a data:image/<type>;base64,<data> URL")
    if not payload:
        raise invalid(f"{where} has no image data")
    return payload



_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def _error_message(body: bytes) -> str:
    """The upstream's own message from an error body, short (at most 500 characters).

    Shapes (providers.md §8 "Error body"):

    - OpenAI and Kimi: ``{"error": {"message", "type", "param", "code"}}`` (§3.4, §6.1);
    - OpenRouter: ``{"error": {"code": int, "message", "metadata"?}, "user_id"}``; a
      provider error's ``metadata`` names the provider and carries its ``raw`` answer,
      which is where the useful text is (§4.4, OR mirror 176), so both are appended;
    - OpenCode Zen's own: ``{"type": "error", "error": {"type", "message"}}``, whose type
      is a class name such as ``ModelError`` that says more than the status (§5.3), so it
      prefixes the message;
    - anything else: ``{"error": "text"}``, ``{"message": "text"}``, or the body as
      text (an HTML page is reduced to its ``<title>``).

    An empty result lets :func:`error_from_upstream` say "upstream answered HTTP N".
    """
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        obj = None
    if isinstance(obj, dict):
        error = obj.get("error")
        if isinstance(error, str) and error:
            return clip_message(error)
        if isinstance(error, dict):
            message = error.get("message")
            message = message if isinstance(message, str) else ""
            kind = error.get("type")
            if obj.get("type") == "error" and isinstance(kind, str) and kind:
                message = f"{kind}: {message}" if message else kind
            metadata = error.get("metadata")
            if isinstance(metadata, dict):
                source = metadata.get("provider_name")
                raw = metadata.get("raw")
                if raw is not None and not isinstance(raw, str):
                    try:
                        raw = dumps(raw).decode()
                    except TypeError:  # orjson writes 254 levels; it read up to 1,024
                        raw = None
                detail = ": ".join(s for s in (source, raw) if isinstance(s, str) and s)
                if detail:
                    message = f"{message} ({detail})" if message else detail
            if not message:
                code = error.get("code")
                message = "" if code is None else f"upstream error code {code}"
            if message:
                return clip_message(message)
        message = obj.get("message")
        if isinstance(message, str) and message:
            return clip_message(message)
    title = _TITLE.search(body)
    if title is not None:
        return clip_message(title.group(1).decode("utf-8", "replace"))
    return clip_message(body.decode("utf-8", "replace"))


def _error_category(status: int) -> str:
    """OpenAI's ``error.type`` for a status (providers.md §3.4; Ollama's /v1 uses the same
    names, §1.9). The SDK picks its exception class from the status alone."""
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 404:
        return "not_found_error"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "api_error"
    return "invalid_request_error"


def render_error(exc: ChatError) -> bytes:
    """``{"error": {"message", "type", "param", "code"}}`` for ``exc`` (SPEC §4).

    Send it with ``exc.status`` (and Retry-After as on the native door). ``code`` is
    chatd's SPEC §4 type, the precise one; ``type`` is OpenAI's category for the status.
    """
    error: dict[str, object] = {
        "message": exc.message,
        "type": _error_category(exc.status),
        "param": None,
        "code": exc.type,
    }
    if exc.provider is not None:
        error["provider"] = exc.provider
    if exc.upstream_status is not None:
        error["upstream_status"] = exc.upstream_status
    return dumps({"error": error})


# --------------------------------------------------------------------------------------
# Client end: the request


#: Upstream finish reasons -> SPEC §3 finish reasons. OpenAI's own set is
#: stop/length/tool_calls/content_filter plus the legacy function_call (OAI
#: ``chat_completion.py``); OpenRouter normalises to that set (providers.md §4.2). The
#: Anthropic-style and Mistral names cover proxies that pass an upstream's raw value
#: through (OpenCode Zen passes upstream bytes verbatim, providers.md §5.3): reporting a
#: truncated answer as "stop" would hide the truncation. Anything else, or null, is
#: "stop". "error" is not here: it is an upstream failure and raised.
_FINISH: dict[str | None, str] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    "function_call": "tool_calls",
    "max_tokens": "length",
    "model_length": "length",
    "tool_use": "tool_calls",
    "end_turn": "stop",
    "stop_sequence": "stop",
}

#: chatd's think levels (``ChatRequest.think``) -> OpenRouter ``reasoning.effort``, whose
#: values are xhigh/high/medium/low/minimal/none (providers.md §4.2, OR reasoning doc).
_OPENROUTER_EFFORT = {"low": "low", "medium": "medium", "high": "high", "max": "xhigh"}


def _bad(provider: str | None, what: str) -> ChatError:
    return ChatError("bad_upstream_response", what, provider=provider)


#: ``ChatRequest.options`` every OpenAI-family upstream takes, under the same name
#: (providers.md §3.1, OAI ``completion_create_params.py``; OpenRouter documents them all,
#: openrouter.ai/docs/api-reference/parameters).
_FAMILY_OPTIONS = ("presence_penalty", "frequency_penalty", "parallel_tool_calls",
                   "logprobs", "top_logprobs", "user")

#: The sampling fields OpenRouter adds (``Provider.extra_sampling``): chatd's name ->
#: the wire name (openrouter.ai/docs/api-reference/parameters: ``top_k``, ``min_p``,
#: ``repetition_penalty``, which is Ollama's ``repeat_penalty``).
_EXTRA_SAMPLING = (("top_k", "top_k"), ("min_p", "min_p"),
                   ("repeat_penalty", "repetition_penalty"))


def _option_fields(options: Mapping[str, JSON], body: dict[str, JSON], extra: bool) -> None:
    """The options the upstream has, into ``body``: :data:`_FAMILY_OPTIONS` always,
    :data:`_EXTRA_SAMPLING` where ``extra`` (OpenRouter, or a client that spoke this
    dialect and sent them itself)."""
    for name in _FAMILY_OPTIONS:
        if name in options:
            body[name] = options[name]
    if extra:
        for name, wire in _EXTRA_SAMPLING:
            if name in options:
                body[wire] = options[name]


def _think_fields(
    control: str, think: bool | str | None, options: Mapping[str, JSON] | None = None
) -> dict[str, JSON]:
    """The body fields that carry ``think`` under ``Provider.reasoning_control``, or none.

    ``None`` (no preference) sends nothing anywhere: the provider's default stands.

    - ``"reasoning"`` (OpenRouter): ``reasoning: {"enabled": bool}`` for a bool,
      ``{"effort": level}`` for a level (``max`` -> ``xhigh``; an unknown level is passed
      through, and OpenRouter answers 400 if it is not one of its efforts). "enabled ...
      Default: inferred from effort or max_tokens" (providers.md §4.2,
      openrouter.ai/docs/use-cases/reasoning-tokens). A model whose reasoning is
      mandatory refuses to disable it; that 400 is the honest answer to ``think: false``.
    - ``"thinking"`` (Kimi): ``thinking: {"type": "enabled"|"disabled"}``, what the
      official Kimi CLI sends as ``extra_body.thinking`` (providers.md §6.1, KC
      ``kosong/chat_provider/kimi.py``); Kimi has no levels, so any level means enabled.
    - ``"effort"`` (OpenCode Zen): ``reasoning_effort``, the client's own value when it
      sent one (``options.reasoning_effort``), else the level (``max`` -> ``xhigh``) or
      ``"none"`` for false; true (no level) sends nothing, the model's default. Zen
      forwards a chat body to the model's upstream as is, and reads
      ``reasoning_effort: "none"`` (or ``thinking: {type: "disabled"}``) itself as "no
      reasoning" (OC console ``zen/util/provider/provider.ts``
      ``isNoReasoningRequest``), so this is the control it understands everywhere.
    - ``""`` (configured providers): nothing; no documented control.
    """
    if control == "effort":
        effort = options.get("reasoning_effort") if options else None
        if isinstance(effort, str):
            return {"reasoning_effort": effort}
        if think is False:
            return {"reasoning_effort": "none"}
        if isinstance(think, str):
            return {"reasoning_effort": _OPENROUTER_EFFORT.get(think, think)}
        return {}
    if think is None:
        return {}
    if control == "reasoning":
        if isinstance(think, bool):
            return {"reasoning": {"enabled": think}}
        return {"reasoning": {"effort": _OPENROUTER_EFFORT.get(think, think)}}
    if control == "thinking":
        return {"thinking": {"type": "enabled" if think else "disabled"}}
    return {}


def _image_part_json(part: ImagePart) -> dict[str, JSON]:
    """An ``image_url`` content part: a URL image (the Anthropic and Responses doors take
    them) as its URL, a base64 one as a data URL of its media type, when the client said
    it, else of the type its bytes show (:func:`_image_url`)."""
    return {"type": "image_url", "image_url": {"url": (
        part.url if part.url is not None else
        f"data:{part.media_type};base64,{part.data}" if part.media_type else
        _image_url(part.data or ""))}}


def _messages_json(request: ChatRequest, echo_reasoning: bool) -> list[JSON]:
    """``messages`` for the upstream: each chatd message in OpenAI shape
    (:func:`_message_json`), with what a client of this dialect sent beside it
    (:func:`_as_sent`).

    Images in tool results (Claude Code's Read tool answers with one) cannot stay there:
    a tool message's content is text only (OAI ``ChatCompletionToolMessageParam.content:
    str | Iterable[ChatCompletionContentPartTextParam]``), and OpenAI-family upstreams
    refuse an ``image_url`` part in it with a 400. They follow, each after a line naming
    its call, in one user message after the run of tool messages (which must directly
    follow the assistant turn that made the calls): the one place Chat Completions takes
    an image, and still before the assistant's next turn. A result that was the image
    alone says where it went, rather than being empty (an empty text becomes an empty
    block some upstreams behind OpenRouter refuse, as with ``content: null`` below).
    """
    raw = request.raw
    sent = raw.get("messages") if request.dialect == API and type(raw) is dict else None
    same = sent if type(sent) is list and len(sent) == len(request.messages) else None
    out: list[JSON] = []
    images: list[JSON] = []
    for i, msg in enumerate(request.messages):
        if images and msg.role != "tool":
            out.append({"role": "user", "content": images})
            images = []
        one = _message_json(msg, echo_reasoning)
        if msg.role == "tool" and msg.image_parts:
            images.append({"type": "text", "text": f"The result of tool call "
                           f"{msg.tool_call_id or msg.name or ''} has this image:"})
            images.extend(_image_part_json(p) for p in msg.image_parts)
            one["content"] = msg.content or "The result is the image in the next message."
        if same is not None and type(same[i]) is dict:
            one = _as_sent(same[i], one)
        out.append(one)
    if images:
        out.append({"role": "user", "content": images})
    return out


def _as_sent(sent: dict[str, JSON], built: dict[str, JSON]) -> dict[str, JSON]:
    """A message of a client of this dialect, for an upstream of this dialect (SPEC §2
    "Dialects": nothing is lost): the fields chatd built (``built``) over the client's
    own, so the ones chatd does not interpret reach the upstream (OpenRouter's
    ``reasoning_details``, which it asks to have sent back on the assistant turn so
    Claude or Gemini can go on after a tool call, "Preserving reasoning blocks"), as do a
    list of content parts as sent (``cache_control`` breakpoints on text parts, OpenRouter
    "Prompt caching"; ``file`` parts) and each tool call's other fields. chatd's own
    choices still hold: ``developer`` is sent as ``system``, an assistant turn of tool
    calls alone has ``content: null``."""
    out = {**sent, **built}
    content = sent.get("content")
    if type(content) is list:
        out["content"] = content
    calls, made = sent.get("tool_calls"), built.get("tool_calls")
    if type(calls) is list and type(made) is list and len(calls) == len(made):
        out["tool_calls"] = [{**c, **m} if type(c) is dict else m
                             for c, m in zip(calls, made, strict=True)]
    return out


def _message_json(msg: Message, echo_reasoning: bool) -> dict[str, JSON]:
    """One chatd message in OpenAI shape (providers.md §3.1; OAI ``completion_create_params``).

    An assistant message with tool calls and no text gets ``content: null``, as OpenAI
    documents ("required unless tool_calls"): an empty string becomes an empty text block
    on some upstreams behind OpenRouter, which refuse it. Tool calls carry ``arguments``
    as JSON text. A tool result carries ``tool_call_id``; ``name`` is sent when set
    (OpenRouter's and Moonshot's tool messages accept it; OpenAI's other roles take it
    as the participant name).
    """
    out: dict[str, JSON] = {"role": msg.role}
    images = msg.image_parts
    if images:
        parts: list[JSON] = [{"type": "text", "text": msg.content}] if msg.content else []
        parts.extend(_image_part_json(p) for p in images)
        out["content"] = parts
    elif msg.content or not msg.tool_calls:
        out["content"] = msg.content
    else:
        out["content"] = None
    if msg.tool_calls:
        out["tool_calls"] = [_tool_call_json(c.id, c.name, c.arguments)
                             for c in msg.tool_calls]
    if msg.tool_call_id is not None:
        out["tool_call_id"] = msg.tool_call_id
    if msg.name is not None:
        out["name"] = msg.name
    if echo_reasoning and msg.thinking:
        # Kimi wants earlier reasoning back: the official CLI sends assistant history with
        # ``reasoning_content`` (KC kosong ``kimi.py _convert_message``), and thinking
        # models refuse a tool-call turn without it. Others: undocumented, left out.
        out["reasoning_content"] = msg.thinking
    return out


# --------------------------------------------------------------------------------------
# Client end: response pieces shared by the whole-body and stream paths


def _text(value: Any, provider: str) -> str:
    """Message content: a string, null, or a list of ``{"type": "text", "text"}`` parts."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for part in value:
            if not isinstance(part, dict):
                raise _bad(provider, "upstream sent a content part that is not an object")
            text = part.get("text")
            if part.get("type") == "text" and isinstance(text, str):
                texts.append(text)
        return "".join(texts)
    raise _bad(provider, "upstream sent content that is not a string")


def _count(value: Any) -> int | None:
    return value if type(value) is int and value >= 0 else None


def _usage(value: Any, provider: str) -> Usage:
    """OpenAI ``usage`` -> Usage; missing counts are 0 (extra fields ignored: cost...).

    The cache and reasoning counts, where the upstream reports them (a door such as
    Anthropic's shows them): ``prompt_tokens_details.cached_tokens`` (OpenAI, OpenRouter;
    Kimi may put it at top level as ``cached_tokens``, providers.md §6.1),
    ``prompt_tokens_details.cache_write_tokens`` (OpenRouter, providers.md §4.2) and
    ``completion_tokens_details.reasoning_tokens``; None where absent.
    """
    if not isinstance(value, dict):
        raise _bad(provider, "upstream sent usage that is not an object")
    prompt = value.get("prompt_tokens")
    completion = value.get("completion_tokens")
    details = value.get("prompt_tokens_details")
    cached = written = reasoning = None
    if isinstance(details, dict):
        cached = _count(details.get("cached_tokens"))
        written = _count(details.get("cache_write_tokens"))
    if cached is None:
        cached = _count(value.get("cached_tokens"))
    out_details = value.get("completion_tokens_details")
    if isinstance(out_details, dict):
        reasoning = _count(out_details.get("reasoning_tokens"))
    return Usage(
        prompt_tokens=prompt if type(prompt) is int and prompt >= 0 else 0,
        completion_tokens=completion if type(completion) is int and completion >= 0 else 0,
        cached_tokens=cached,
        cache_creation_tokens=written,
        reasoning_tokens=reasoning,
    )


def _arguments(value: Any, provider: str) -> str:
    """Tool-call arguments as JSON text; an object (sent by some proxies) is encoded."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        try:
            return dumps(value).decode()
        except TypeError:  # orjson writes 254 levels of nesting; it read up to 1,024
            raise _bad(provider, "upstream sent tool-call arguments nested too deeply") from None
    raise _bad(provider, "upstream sent tool-call arguments that are not a string")


def _opt_str(value: Any, provider: str, what: str) -> str | None:
    """An optional string field; ``""`` counts as absent (later stream pieces send it)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    raise _bad(provider, f"upstream sent a tool-call {what} that is not a string")


def _embedded_error(provider: str, error: Any) -> ChatError:
    """An error object inside a 2xx body or stream chunk -> ChatError.

    The HTTP status already said 200, so this is an upstream failure, not a bad request:
    ``upstream_error`` (502), except when ``error.code`` is an integer HTTP status. That is
    OpenRouter's shape, where "HTTP status equals error.code" (providers.md §4.4); and
    OpenRouter commits to 200 early (keep-alive comments precede the first token,
    providers.md §4.3), so its mid-stream error often *is* the status it would have
    answered. Then the code is classified like a status (a 429 stays ``rate_limited``),
    with no Retry-After (the headers are long gone). A string code (``"server_error"``,
    OpenAI and OpenRouter mid-stream, providers.md §3.3, §4.3) is not a status.
    """
    message = ""
    code: Any = None
    if isinstance(error, dict):
        raw = error.get("message")
        message = raw if isinstance(raw, str) else ""
        code = error.get("code")
        if not message:
            kind = error.get("type") or code
            message = f"upstream reported an error ({kind})" if kind else ""
    elif isinstance(error, str):
        message = error
    message = clip_message(message) or "upstream reported an error"
    if type(code) is int and 400 <= code <= 599:
        return error_from_upstream(provider, code, message)
    return ChatError("upstream_error", message, provider=provider)


def _chunk_error(provider: str, chunk: dict[str, Any], error: Any) -> ChatError:
    """A stream chunk's top-level ``error``, with the chunk's ``usage`` when it carries one:
    OpenRouter may end an answer with ``finish_reason: "length"`` and then an error chunk
    that holds the usage of the whole call (providers.md §4.2: full usage "in the last SSE
    message"). The counts were spent and billed; the door shows them beside the error."""
    exc = _embedded_error(provider, error)
    usage = chunk.get("usage")
    if type(usage) is dict:
        exc.usage = _usage(usage, provider)
    return exc


def _joined_chunks(events: list[Any], current: Any) -> dict[str, Any] | None:
    """The first chunk of a ``data`` payload that holds several JSON lines, the others
    queued after it in ``events``; None when the lines are not JSON either.

    OpenCode Zen relays the upstream's bytes verbatim and then appends its cost event
    (providers.md §5.3; OC console ``zen/util/handler.ts``: ``c.enqueue(value)``, then
    ``buildCostChunk``): when the upstream's last event lacks its blank line, an SSE
    decoder joins the two into one event of two ``data:`` lines, an error chunk and
    ``{"choices":[],"cost":...}``. Each line is then a chunk of its own, so the error is
    the upstream's, not a malformed-JSON failure with the cost in it. Off the hot path:
    only a payload that failed to decode gets here.
    """
    payload: bytes = current[1]
    if b"\n" not in payload:
        return None
    try:
        chunks = [orjson.loads(line) for line in payload.split(b"\n") if line.strip()]
    except orjson.JSONDecodeError:
        return None
    if not chunks:
        return None
    at = next(i for i, sse in enumerate(events) if sse is current)
    events[at + 1:at + 1] = [type(current)(current[0], orjson.dumps(c), current[2])
                             for c in chunks[1:]]
    first: dict[str, Any] | None = chunks[0] if type(chunks[0]) is dict else None
    return first


def _finish_error(provider: str, chunk: dict[str, Any], choice: dict[str, Any]) -> ChatError:
    """``finish_reason: "error"`` (OpenRouter, providers.md §4.2-4.3): the run failed.

    The error may sit at top level (streams) or in the choice (a body where "some tokens
    were sent", OR mirror 180); without either, a plain upstream_error.
    """
    error = chunk.get("error") or choice.get("error")
    if error:
        return _chunk_error(provider, chunk, error)
    return ChatError("upstream_error", "upstream ended the answer with an error",
                     provider=provider)


# --------------------------------------------------------------------------------------
# Client end: the stream


class OpenAIChatStreamParser(StreamLifecycle):
    """Turns an OpenAI-family SSE body into chatd events (providers.md §3.3, §4.3, §5.3).

    The lifecycle (feed, draining, failing, the errors after events) is
    :class:`~chatproto._lifecycle.StreamLifecycle`'s. ``data: [DONE]`` is the terminator: it
    emits the one :class:`StreamEnded`, and whatever follows is dropped unparsed (OpenCode
    Zen appends ``{"choices":[],"cost":...}`` after ``[DONE]``, providers.md §5.3). An end
    of body without ``[DONE]`` is accepted when a ``finish_reason`` was already seen (the
    answer is whole; only the terminator or the usage chunk was lost, and OpenAI warns the
    usage chunk "may be missing if the stream is interrupted", providers.md §3.3);
    otherwise the answer was cut and the stream fails with ``bad_upstream_response``.

    With ``passthrough``, each decoded chunk is emitted as a :class:`RawEvent` before its
    canonical events (``[DONE]`` and error chunks are not: the door renders its own end
    and error).
    """

    __slots__ = ("_finish", "_last_index", "_next_index", "_raw", "_sse", "_tools", "_usage")

    # Shape errors deep inside a chunk (a list where an object belongs) are caught once
    # around the chunk instead of type-checking every level on the hot path.
    _SHAPE_ERRORS = (AttributeError, TypeError, KeyError, IndexError)

    def __init__(self, provider: str, *, passthrough: bool = False) -> None:
        super().__init__(provider)
        self._sse = SSEDecoder(provider=provider)
        self._raw = passthrough
        self._finish: str | None = None
        self._usage: Usage | None = None
        self._tools = False
        self._next_index = 0
        self._last_index = 0

    def _parse(self, data: bytes, out: list[Event]) -> None:
        provider = self._provider
        raw = self._raw
        events = self._sse.feed(data)
        for sse in events:
            event, payload, _ = sse
            if event != "message":
                # OpenAI's SDK raises on ``event: error`` and skips names it does not
                # know (providers.md §3.3, OAI ``_streaming.py``); ``ping`` and the
                # like carry nothing for chatd.
                if event == "error":
                    raise self._error_event(payload)
                continue
            try:
                chunk = orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                # ``[DONE]`` is not JSON; testing for it here, once, keeps the test
                # off every other chunk. The OpenAI SDK matches it as a prefix
                # (providers.md §3.3, OAI ``_streaming.py``).
                if payload[:6] == b"[DONE]":
                    self._terminate(out, self._ended_event())
                    return
                chunk = _joined_chunks(events, sse)
                if chunk is None:
                    raise _bad(provider, f"upstream sent malformed JSON: {exc}") from None
            if type(chunk) is not dict:
                raise _bad(provider, "upstream sent a stream chunk that is not an object")
            error = chunk.get("error")
            if error is not None:
                raise _chunk_error(provider, chunk, error)
            if raw:
                out.append(RawEvent(dialect=API, data=chunk))
            choices = chunk.get("choices")
            if choices:
                choice = choices[0]
                delta = choice.get("delta")
                if delta:
                    # OpenRouter: ``reasoning``; Kimi: ``reasoning_content``
                    # (providers.md §4.2, §6.1). Servers that send both send the
                    # same text twice, so the first non-empty one wins.
                    text = delta.get("reasoning") or delta.get("reasoning_content")
                    if text:
                        if type(text) is not str:
                            raise _bad(provider, "upstream sent reasoning that is "
                                       "not a string")
                        out.append(ThinkingDelta(text=text))
                    text = delta.get("content")
                    if text:
                        if type(text) is not str:
                            text = _text(text, provider)
                        if text:
                            out.append(TextDelta(text=text))
                    calls = delta.get("tool_calls")
                    if calls:
                        self._tool_deltas(calls, out)
                reason = choice.get("finish_reason")
                if reason is not None:
                    if type(reason) is not str:
                        raise _bad(provider, "upstream sent a finish_reason that is "
                                   "not a string")
                    if reason == "error":
                        raise _finish_error(provider, chunk, choice)
                    self._finish = reason
                    # Kimi puts usage in the finishing choice, not at top level
                    # (providers.md §6.1); looked up only there, off the hot path.
                    usage = choice.get("usage")
                    if usage:
                        self._usage = _usage(usage, provider)
            usage = chunk.get("usage")
            if usage:
                self._usage = _usage(usage, provider)
        if not data:
            if self._finish is None:
                raise _bad(provider, "stream ended before completion")
            self._terminate(out, self._ended_event())

    def _ended_event(self) -> StreamEnded:
        reason = _FINISH.get(self._finish, "stop")
        if reason == "stop" and self._tools:
            # Some OpenAI-compatible servers end a tool-call turn with "stop"; a caller
            # that sees tool calls must be told to run them.
            reason = "tool_calls"
        return StreamEnded(finish_reason=reason, usage=self._usage)

    def _tool_deltas(self, calls: Any, out: list[Event]) -> None:
        """``delta.tool_calls`` fragments -> ToolCallDelta, one per fragment.

        "Only ``index`` is guaranteed on each delta tool call" (providers.md §3.3); the
        consumer joins fragments by index. A server that leaves ``index`` out (and sends
        whole calls) gets one: a fragment that names a call (id or name) starts the next
        index, any other continues the last.
        """
        provider = self._provider
        if type(calls) is not list:
            raise _bad(provider, "upstream sent tool_calls that is not a list")
        for call in calls:
            if type(call) is not dict:
                raise _bad(provider, "upstream sent a tool call that is not an object")
            function = call.get("function") or {}
            if type(function) is not dict:
                raise _bad(provider, "upstream sent a tool-call function that is not an "
                           "object")
            call_id = _opt_str(call.get("id"), provider, "id")
            name = _opt_str(function.get("name"), provider, "name")
            arguments = _arguments(function.get("arguments"), provider)
            index = call.get("index")
            if index is None:
                if call_id is not None or name is not None:
                    index = self._next_index
                else:
                    index = self._last_index
            elif type(index) is not int or index < 0:
                raise _bad(provider, "upstream sent a tool-call index that is not a "
                           "non-negative integer")
            if call_id is None and name is None and not arguments:
                continue  # an empty fragment says nothing
            self._last_index = index
            if index >= self._next_index:
                self._next_index = index + 1
            self._tools = True
            out.append(ToolCallDelta(index=index, id=call_id, name=name, arguments=arguments))

    def _error_event(self, payload: bytes) -> ChatError:
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError:
            # An error event that ran into the next one (OpenCode Zen's cost event, see
            # :func:`_joined_chunks`): its own first line, not the cost, is the message.
            first = payload.partition(b"\n")[0]
            try:
                body = orjson.loads(first) if first != payload else None
            except orjson.JSONDecodeError:
                body = None
            if body is None:
                return ChatError("upstream_error",
                                 clip_message(payload.decode("utf-8", "replace"))
                                 or "upstream reported an error", provider=self._provider)
        error = body.get("error", body) if isinstance(body, dict) else body
        return _embedded_error(self._provider, error)


# --------------------------------------------------------------------------------------
# Client end: the codec


class OpenAIChatCodec:
    """The ``openai_chat`` codec (see the module docstring)."""

    api = API

    def build_request(
        self, request: ChatRequest, route: Route, provider: Provider
    ) -> HTTPRequest:
        """``POST {base_url}/chat/completions`` (SPEC §2; providers.md §3.1, §4.1, §5.1, §6.1).

        ``route.upstream_model`` is sent verbatim (routing already stripped chatd's
        prefix: ``moonshotai/kimi-k2``, ``openrouter/auto``). Absent options are left out
        of the body entirely. ``max_tokens`` is sent as ``max_tokens`` as SPEC §2 fixes
        for the family: OpenRouter documents it, and although OpenAI prefers
        ``max_completion_tokens`` and some Kimi CLI versions send that, Kimi's own client
        also sends ``max_tokens`` (KC kosong ``kimi.py``). Streaming asks for
        ``stream_options.include_usage``, which OpenAI and Kimi need for streamed usage
        and OpenRouter ignores as a no-op (providers.md §4.2).

        Headers: JSON content type, ``Accept`` for SSE or JSON, the Bearer key when the
        provider has one, then the configured ``provider.headers`` (attribution,
        Kimi's agent User-Agent, providers.md §4.1, §6.1); a configured header replaces a
        default of the same name instead of repeating it.
        """
        name = provider.name
        body: dict[str, JSON] = {
            "model": route.upstream_model,
            "messages": _messages_json(request, provider.echo_reasoning),
        }
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop"] = list(request.stop)
        if request.seed is not None:
            body["seed"] = request.seed
        options = request.options
        if request.format is not None:
            body["response_format"] = _response_format_json(request.format, options)
        raw = request.raw
        if request.dialect == API and type(raw) is dict and raw.get("response_format"):
            # The client's own, whole: the schema's ``description`` ("used by the model to
            # determine how to respond", OAI ``response_format_json_schema.py``) and
            # whatever else chatd's ``format`` has no place for.
            body["response_format"] = raw["response_format"]
        if request.tools:
            body["tools"] = list(request.tools)
        if request.tool_choice is not None:
            body["tool_choice"] = request.tool_choice
        body.update(_think_fields(provider.reasoning_control, request.think, options))
        if options:
            _option_fields(options, body, provider.extra_sampling or request.dialect == API)
        if request.dialect == API and request.extras:
            body = {**request.extras, **body}
        if request.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}

        headers = request_headers(provider, (
            ("Content-Type", "application/json"),
            ("Accept", "text/event-stream" if request.stream else "application/json"),
        ))
        return HTTPRequest(
            method="POST",
            url=provider.base_url.rstrip("/") + provider.path("openai_chat", "/chat/completions"),
            headers=headers,
            body=encode_body(body, name),
            stream=request.stream,
        )

    def parse_response(
        self, provider: str, body: bytes, *, passthrough: bool = False
    ) -> ChatResponse:
        """A whole 2xx ``chat.completion`` body (providers.md §3.2) -> ChatResponse.

        A top-level ``error`` in a 2xx body, or ``finish_reason: "error"`` (OpenRouter
        embeds a failure in the choices when some tokens were already produced, OR mirror
        180), is an upstream error; see :func:`_embedded_error` for its status. Zero
        choices, malformed JSON or wrong types are ``bad_upstream_response``.
        """
        obj = loads(body, provider)
        if not isinstance(obj, dict):
            raise _bad(provider, "upstream answered with JSON that is not an object")
        error = obj.get("error")
        if error is not None:
            raise _embedded_error(provider, error)
        choices = obj.get("choices")
        if not isinstance(choices, list) or not choices:
            raise _bad(provider, "upstream answered with no choices")
        choice = choices[0]
        if not isinstance(choice, dict):
            raise _bad(provider, "upstream sent a choice that is not an object")
        message = choice.get("message")
        if not isinstance(message, dict):
            raise _bad(provider, "upstream sent a choice without a message object")
        reason = choice.get("finish_reason")
        if reason == "error":
            raise _finish_error(provider, obj, choice)

        content = _text(message.get("content"), provider)
        thinking = message.get("reasoning") or message.get("reasoning_content") or None
        if thinking is not None and not isinstance(thinking, str):
            raise _bad(provider, "upstream sent reasoning that is not a string")
        calls = message.get("tool_calls") or []
        if not isinstance(calls, list):
            raise _bad(provider, "upstream sent tool_calls that is not a list")
        tool_calls = []
        for call in calls:
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict):
                raise _bad(provider, "upstream sent a tool call without a function object")
            name = function.get("name")
            if not isinstance(name, str) or not name:
                raise _bad(provider, "upstream sent a tool call without a name")
            tool_calls.append(ToolCall(
                id=_opt_str(call.get("id"), provider, "id"),
                name=name,
                arguments=_arguments(function.get("arguments"), provider),
            ))

        usage = obj.get("usage") or choice.get("usage")  # Kimi: in the choice (§6.1)
        if reason is not None and not isinstance(reason, str):
            raise _bad(provider, "upstream sent a finish_reason that is not a string")
        finish = _FINISH.get(reason, "stop")
        if finish == "stop" and tool_calls:
            finish = "tool_calls"  # as in the stream parser's _ended_event
        return ChatResponse(
            content=content,
            finish_reason=finish,
            usage=_usage(usage, provider) if usage else Usage(),
            thinking=thinking,
            tool_calls=tuple(tool_calls),
            raw=obj if passthrough else None,
            dialect=API if passthrough else None,
        )

    def stream_parser(self, provider: str, *, passthrough: bool = False) -> OpenAIChatStreamParser:
        return OpenAIChatStreamParser(provider, passthrough=passthrough)

    def parse_error(
        self, provider: str, status: int, headers: Headers, body: bytes, *, now: float
    ) -> ChatError:
        """A non-2xx answer -> ChatError, classified by status alone (SPEC §4).

        Notable statuses, all handled by the status table, never by the text: OpenRouter
        answers an unknown model with 400 (-> upstream_rejected), OpenCode Zen with 401
        ``ModelError`` (-> upstream_error); 402 is OpenRouter's "no credits" (-> 502).
        ``Retry-After`` / ``retry-after-ms`` are read for 429 and 503.
        """
        return error_from_upstream(provider, status, _error_message(body), headers, now=now)


codec = OpenAIChatCodec()


# --------------------------------------------------------------------------------------
# Server end: the request


#: OpenAI's roles (providers.md §3.1); ``developer`` is OpenAI's newer name for ``system``.
_ROLES = ("system", "developer", "user", "assistant", "tool")

#: ``reasoning_effort`` values (OAI ``reasoning_effort.py``: none|minimal|low|medium|high|
#: xhigh|max) -> ``ChatRequest.think``. See the module docstring for ``minimal``.
_EFFORT: Mapping[str, bool | str] = {
    "none": False,
    "minimal": False,
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "max",
    "max": "max",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenAIRequest:
    """A validated ``/v1/chat/completions`` body.

    ``include_usage`` is ``stream_options.include_usage``: it changes only how the stream is
    rendered, so it lives beside the request rather than in it.
    """

    chat: ChatRequest
    include_usage: bool = False


#: Body fields read into ``ChatRequest.options`` (providers.md §3.1, OAI
#: ``completion_create_params.py``), and the sampling fields OpenRouter and vLLM add
#: (openrouter.ai/docs/api-reference/parameters: ``top_k``, ``min_p``,
#: ``repetition_penalty``), so an Ollama upstream gets them too.
_OPTIONS = ("presence_penalty", "frequency_penalty", "parallel_tool_calls", "logprobs",
            "top_logprobs", "user", "top_k", "min_p", "repetition_penalty")

#: OpenRouter's ``repetition_penalty`` is Ollama's ``repeat_penalty`` (a multiplier on
#: repeated tokens' logits, 1.0 = none, in both), chatd's name for it.
_RENAMED = {"repetition_penalty": "repeat_penalty"}

#: Every top-level field the door interprets; the rest is ``ChatRequest.extras``, sent
#: unchanged to an OpenAI-family upstream (OpenRouter's ``provider``, ``models``,
#: ``transforms``; ``service_tier``, ``metadata``, ``prediction``...).
_READ = frozenset({
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p",
    "stop", "seed", "response_format", "reasoning_effort", "reasoning", "stream",
    "stream_options", "tools", "tool_choice", "n", "functions", "function_call", *_OPTIONS,
})


def _format_options(value: object, options: dict[str, JSON]) -> None:
    """A ``json_schema`` response format's ``name`` and ``strict``, which ``format`` (the
    schema alone) cannot hold, as the options ``format_name`` / ``format_strict``: the
    OpenAI family and Responses take them back (providers.md §3.1); Ollama's ``format``
    and Anthropic's ``output_config.format`` have no place for them."""
    if not isinstance(value, dict) or value.get("type") != "json_schema":
        return
    spec = value.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
        return  # JSON mode, or refused by _parse_response_format
    name = string(spec.get("name"), "response_format.json_schema.name")
    strict = boolean(spec.get("strict"), "response_format.json_schema.strict")
    if name is not None:
        options["format_name"] = name
    if strict is not None:
        options["format_strict"] = strict


def parse_request(body: bytes) -> OpenAIRequest:
    """Parse and validate a Chat Completions body (providers.md §3.1).

    The sampling and control fields other dialects share go to ``options``
    (:data:`_OPTIONS`); every field chatd does not interpret goes to ``extras``, for an
    OpenAI-family upstream. ``null`` means "not given" everywhere.

    Raises:
        ChatError: ``invalid_request`` (400), its message naming the offending field.
    """
    obj = decode_body(body)
    model = parse_model(obj)
    n = integer(obj.get("n"), "n")
    if n is not None and n != 1:
        raise invalid(f"n must be 1: chatd returns one choice, not {n}")
    if obj.get("functions") is not None or obj.get("function_call") is not None:
        # Dropping them silently would leave the model without its tools.
        raise invalid("functions and function_call are deprecated by OpenAI and not "
                      "supported; send tools and tool_choice")
    max_tokens = positive_int(obj.get("max_tokens"), "max_tokens")
    newer = positive_int(obj.get("max_completion_tokens"), "max_completion_tokens")
    stream = bool(boolean(obj.get("stream"), "stream"))
    options = obj.get("stream_options")
    include_usage = False
    if options is not None:
        options = json_object(options, "stream_options")
        include_usage = bool(
            boolean(options.get("include_usage"), "stream_options.include_usage")
        )
    response_format = obj.get("response_format")
    options = read_options(obj, _OPTIONS, {}, rename=_RENAMED)
    _format_options(response_format, options)
    think = _parse_think(obj.get("reasoning_effort"), obj.get("reasoning"))
    if isinstance(obj.get("reasoning_effort"), str):
        # Checked by _parse_think; kept as sent for an upstream that takes it back
        # ("minimal" and "none" are both think false).
        options["reasoning_effort"] = obj["reasoning_effort"]
    kept: list[str] = []
    messages = _parse_messages(obj.get("messages"), kept)
    chat = ChatRequest(
        model=model,
        messages=messages,
        max_tokens=newer if newer is not None else max_tokens,
        temperature=number(obj.get("temperature"), "temperature"),
        top_p=number(obj.get("top_p"), "top_p"),
        stop=parse_stop(obj.get("stop")),
        seed=integer(obj.get("seed"), "seed"),
        format=_parse_response_format(response_format),
        think=think,
        stream=stream,
        tools=parse_tools(obj.get("tools")),
        tool_choice=parse_tool_choice(obj.get("tool_choice")),
        options=options,
        dialect=API,
        extras={k: v for k, v in obj.items() if k not in _READ},
        raw=obj,
        dialect_only=(f"{kept[0]}, which only an OpenAI Chat Completions upstream takes"
                      if kept else None),
    )
    return OpenAIRequest(chat=chat, include_usage=include_usage)


def _parse_messages(value: object, kept: list[str] | None = None) -> tuple[Message, ...]:
    """The ``messages``; ``kept`` collects where a part only this dialect can carry sits
    (see :func:`_parse_parts`)."""
    if value is None:
        raise invalid("messages is required")
    if not isinstance(value, list):
        raise invalid(f"messages must be an array of messages, not {json_type(value)}")
    if not value:
        raise invalid("messages must not be empty")
    return tuple(_parse_message(item, f"messages[{i}]", kept)
                 for i, item in enumerate(value))


def _parse_message(value: object, field: str, kept: list[str] | None = None) -> Message:
    """One OpenAI message, normalised to the native shape and checked by ``parse_message``.

    Only OpenAI's fields are carried over (Ollama's ``images`` / ``thinking`` spellings
    are the native door's). An assistant's ``reasoning_content`` (or ``reasoning``) is its
    earlier thinking: Kimi wants it back on tool-call turns (providers.md §6.1).
    """
    value = json_object(value, field)
    role = value.get("role")
    if role not in _ROLES:
        shown = "missing" if role is None else repr(role)
        raise invalid(f"{field}.role must be one of {', '.join(_ROLES)}; got {shown}")
    assert isinstance(role, str)
    content = value.get("content")
    images: tuple[str, ...] = ()
    linked: tuple[ImagePart, ...] = ()
    if isinstance(content, list):
        content, images, linked = _parse_parts(content, f"{field}.content", role, kept)
    native: dict[str, object] = {
        "role": "system" if role == "developer" else role,
        "content": content,
        "tool_calls": value.get("tool_calls"),
        "tool_call_id": value.get("tool_call_id"),
        "name": value.get("name"),
    }
    if images:
        native["images"] = list(images)
    if role == "assistant":
        key = "reasoning_content" if "reasoning_content" in value else "reasoning"
        native["thinking"] = string(value.get(key), f"{field}.{key}")
    message = parse_message(native, field)
    if linked:
        message = Message(role=message.role, parts=(*message.parts, *linked),
                          tool_call_id=message.tool_call_id, name=message.name)
    return message


#: User content parts with no counterpart in chatd's model (OAI
#: ``chat_completion_content_part_param.py``: ``input_audio``, ``file``, which OpenRouter
#: takes for PDFs): carried in the client's own body to an upstream of this dialect only.
_KEPT_PARTS = ("file", "input_audio")


def _parse_parts(
    parts: list[object], field: str, role: str, kept: list[str] | None = None
) -> tuple[str, tuple[str, ...], tuple[ImagePart, ...]]:
    """Content parts -> (text, base64 images, images by URL). OpenAI part types: ``text``,
    ``image_url`` (user), ``refusal`` (assistant history). ``file`` and ``input_audio``
    (user) have no canonical counterpart: they stay in the body kept for an upstream of
    this dialect (:attr:`ChatRequest.raw`), and where each sits is added to ``kept``, so
    the call plan skips an upstream of any other (:attr:`ChatRequest.dialect_only`)."""
    texts: list[str] = []
    images: list[str] = []
    linked: list[ImagePart] = []
    for i, part in enumerate(parts):
        where = f"{field}[{i}]"
        part = json_object(part, where)
        kind = part.get("type")
        if kind == "text" or (kind == "refusal" and role == "assistant"):
            key = str(kind)
            text = part.get(key)
            if not isinstance(text, str):
                raise invalid(f"{where}.{key} must be a string, not {json_type(text)}")
            texts.append(text)
        elif kind == "image_url":
            if role != "user":
                raise invalid(f"{where}: image parts are allowed only in user messages")
            image = _parse_image_url(part.get("image_url"), f"{where}.image_url")
            if isinstance(image, ImagePart):
                linked.append(image)
            else:
                images.append(image)
        elif kind in _KEPT_PARTS and role == "user" and kept is not None:
            json_object(part.get(str(kind)), f"{where}.{kind}")
            kept.append(f"{where} is a {kind} part")
        else:
            raise invalid(
                f"{where}.type {kind!r} is not supported; chatd takes text and image_url "
                "parts, and file and input_audio parts in user messages"
            )
    return "\n".join(texts), tuple(images), tuple(linked)


def _parse_effort(value: object, field: str) -> bool | str | None:
    if value is None:
        return None
    if isinstance(value, str) and value in _EFFORT:
        return _EFFORT[value]
    allowed = ", ".join(f'"{e}"' for e in _EFFORT)
    raise invalid(f"{field} must be one of {allowed}, not {value!r}")


def _parse_think(effort: object, reasoning: object) -> bool | str | None:
    """``reasoning_effort`` (OpenAI) and ``reasoning: {effort?, enabled?}`` (OpenRouter,
    providers.md §4.2; also read by Ollama's /v1, §1.9) -> ``think``."""
    think = _parse_effort(effort, "reasoning_effort")
    if reasoning is None:
        return think
    reasoning = json_object(reasoning, "reasoning")
    enabled = boolean(reasoning.get("enabled"), "reasoning.enabled")
    other = _parse_effort(reasoning.get("effort"), "reasoning.effort")
    if enabled is False:
        other = False
    elif other is None:
        other = enabled
    if think is not None and other is not None and think != other:
        raise invalid("reasoning_effort and reasoning disagree; send one of them")
    return other if think is None else think


# --------------------------------------------------------------------------------------
# Server end: whole answers


def _usage_json(usage: Usage, raw: object = None) -> dict[str, JSON]:
    """``usage`` as OpenAI writes it: the three counts, and the details chatd knows
    (``prompt_tokens_details.cached_tokens``, ``completion_tokens_details.
    reasoning_tokens``, providers.md §3.2), from whichever upstream reported them.

    ``raw`` is an OpenAI-family upstream's own usage object (the same dialect): it is
    passed on whole, so what only that upstream reports reaches the client too
    (OpenRouter's ``cost``, ``cost_details``, ``prompt_tokens_details.cache_write_tokens``,
    providers.md §4.2), with chatd's three counts written over it. An object orjson
    cannot write back (nested past 254 levels) is left for the counts alone.
    """
    out: dict[str, JSON] = usage.to_dict()
    if usage.cached_tokens is not None:
        out["prompt_tokens_details"] = {"cached_tokens": usage.cached_tokens}
    if usage.reasoning_tokens is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    if type(raw) is dict and raw:
        try:
            dumps(raw)
        except TypeError:
            return out
        return {**raw, **out, **{k: raw[k] for k in _DETAILS if type(raw.get(k)) is dict}}
    return out


#: The detail objects of an upstream's usage, passed on whole (``_usage_json``).
_DETAILS = ("prompt_tokens_details", "completion_tokens_details")


def _raw_usage(raw: object) -> object:
    """The usage object of a same-dialect upstream body (top level, or Kimi's in the
    choice, providers.md §6.1); None otherwise."""
    if type(raw) is not dict:
        return None
    usage = raw.get("usage")
    if usage is None:
        choices = raw.get("choices")
        if type(choices) is list and choices and type(choices[0]) is dict:
            usage = choices[0].get("usage")
    return usage


#: The delta fields a stream chunk's canonical events render (``role`` opens every
#: stream, :meth:`CompletionStream.start`); the others are passed on as they came.
_DELTA_READ = frozenset({"role", "content", "reasoning", "reasoning_content", "tool_calls"})


def _call_id(completion_id: str, index: int) -> str:
    return f"call_{completion_id}_{index}"


def _same_dialect(raw: object) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]] | None:
    """A same-dialect upstream body's top level, first choice and its message, or None
    when ``raw`` is not that shape (the parser already refused a body that is not)."""
    if type(raw) is not dict:
        return None
    choices = raw.get("choices")
    if type(choices) is not list or not choices or type(choices[0]) is not dict:
        return None
    message = choices[0].get("message")
    if type(message) is not dict:
        return None
    return raw, choices[0], message


#: The top-level fields chatd writes itself into an answer (its id, the client's model
#: name, the one choice, the usage); an upstream's other fields ride along.
_WRITTEN = frozenset({"id", "object", "created", "model", "choices", "usage"})


def render_completion(resp: ChatResponse, *, id: str, model: str, created: int) -> bytes:
    """A ``chat.completion`` object (providers.md §3.2) for one answer.

    ``model`` is the name the client sent (a tier or prefixed name), as Ollama's /v1 and
    OpenRouter echo the requested model. ``content`` is null when the answer is only tool
    calls, as OpenAI sends it.

    From an upstream of this dialect (``resp.raw``), what chatd does not interpret is kept
    (SPEC §2 "Dialects"): the message's other fields (OpenRouter's ``reasoning_details``
    with their signatures, which a client must send back for Claude or Gemini tool use,
    and ``annotations``; OpenAI's ``refusal``, ``audio``), the choice's ``logprobs`` and
    other fields, and the body's (``system_fingerprint``, ``service_tier``, OpenRouter's
    ``provider``), under the fields chatd writes, which say the same as the upstream's
    did, normalised (finish reason, tool-call ids, both reasoning spellings).
    """
    message: dict[str, object] = {
        "role": "assistant",
        "content": None if not resp.content and resp.tool_calls else resp.content,
    }
    if resp.thinking:
        message["reasoning_content"] = resp.thinking
        message["reasoning"] = resp.thinking
    if resp.tool_calls:
        message["tool_calls"] = [
            _completion_tool_call(c, id, i) for i, c in enumerate(resp.tool_calls)
        ]
    choice: dict[str, object] = {"index": 0, "message": message, "logprobs": None,
                                 "finish_reason": resp.finish_reason}
    answer: dict[str, object] = {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": _usage_json(
            resp.usage, _raw_usage(resp.raw) if resp.dialect == API else None),
    }
    upstream = _same_dialect(resp.raw) if resp.dialect == API else None
    if upstream is not None:
        top, first, said = upstream
        choice = {**first, **choice, "message": {**said, **message},
                  "logprobs": first.get("logprobs")}
        kept = {k: v for k, v in top.items() if k not in _WRITTEN}
        try:
            return dumps({**answer, "choices": [choice], **kept})
        except TypeError:  # nested past what orjson writes (254 levels): chatd's own
            pass
    return dumps(answer)


def _completion_tool_call(call: ToolCall, completion_id: str, index: int) -> dict[str, JSON]:
    call_id = call.id if call.id is not None else _call_id(completion_id, index)
    return _tool_call_json(call_id, call.name, call.arguments)


# --------------------------------------------------------------------------------------
# Server end: streams


class CompletionStream:
    """Renders one stream as OpenAI SSE chunks (providers.md §3.3).

    Call :meth:`start` once, then :meth:`event` for each core event; the
    :class:`~chatproto.StreamEnded` event renders the finish chunk, the usage chunk (when
    ``include_usage`` and the upstream reported usage) and ``data: [DONE]``. A failure
    after the first byte is :meth:`error`: one ``data: {"error": ...}`` event, which the
    openai SDK raises as ``APIError`` (OAI ``_streaming.py``), then ``[DONE]`` (SPEC §4). Every
    returned value is a whole number of SSE events, ready to send. Using the stream after
    its end or its error is a caller bug (RuntimeError).

    From an upstream of this dialect, each chunk's :class:`~chatproto.RawEvent` comes
    before the canonical events derived from it; the chunk's delta fields chatd does not
    interpret (OpenRouter's ``reasoning_details`` with their signatures, ``annotations``;
    OpenAI's ``refusal``) and its choice's ``logprobs`` ride on the first chunk chatd
    renders from it (SPEC §2 "Dialects"), or, when it yields no canonical event (a
    signature alone), on a chunk of their own before the next upstream chunk's, or on the
    finish chunk. A plain text chunk costs one look at its delta's keys.
    """

    __slots__ = ("_after_logprobs", "_closed", "_content", "_envelope", "_head", "_id",
                 "_include_usage", "_pending", "_raw_usage", "_reasoning", "_seen_tools",
                 "_tail", "_tool_head")

    def __init__(self, *, id: str, model: str, created: int, include_usage: bool) -> None:
        self._id = id
        self._include_usage = include_usage
        # Constant around every chunk. With include_usage, OpenAI sends "usage": null on
        # every chunk but the usage one (providers.md §3.3); without it, no usage key.
        envelope = (b'data: {"id":' + dumps(id) + b',"object":"chat.completion.chunk",'
                    b'"created":' + str(int(created)).encode() + b',"model":' + dumps(model))
        self._envelope = envelope
        self._head = head = envelope + b',"choices":[{"index":0,"delta":'
        usage = b',"usage":null' if include_usage else b""
        # Closes the delta object, then the choice, the choices and the chunk.
        self._after_logprobs = b',"finish_reason":null}]' + usage + b"}\n\n"
        self._tail = b'},"logprobs":null' + self._after_logprobs
        self._pending: tuple[bytes, bytes] | None = None
        """A same-dialect chunk's extra delta fields (JSON object members, or ``b""``) and
        its choice's ``logprobs`` (JSON), for the next chunk rendered."""
        self._content = head + b'{"content":'
        self._reasoning = head + b'{"reasoning_content":'
        self._tool_head = head + b'{"tool_calls":['
        self._seen_tools: set[int] = set()
        self._closed = False
        self._raw_usage: object = None
        """A same-dialect upstream's own usage object, passed on whole (:func:`_usage_json`)."""

    def start(self) -> bytes:
        """The first chunk: ``delta: {"role": "assistant", "content": ""}`` (OpenAI's and
        Ollama's /v1 first chunk, providers.md §1.9, §3.3)."""
        return self._head + b'{"role":"assistant","content":""' + self._tail

    def event(self, ev: Event) -> bytes:
        """The SSE bytes for one core event."""
        if self._closed:
            raise RuntimeError("event() after the stream ended")
        # ``type(ev) is`` rather than isinstance: the events are final by contract, and
        # this is the per-chunk path.
        if type(ev) is TextDelta:
            return self._content + dumps(ev.text) + (
                self._tail if self._pending is None else self._take())
        if type(ev) is ThinkingDelta:
            text = dumps(ev.text)
            return self._reasoning + text + b',"reasoning":' + text + (
                self._tail if self._pending is None else self._take())
        if type(ev) is ToolCallDelta:
            return self._tool(ev)
        if type(ev) is StreamEnded:
            return self._end(ev)
        if type(ev) is RawEvent:
            return self._raw(ev)
        raise TypeError(f"not a stream event: {ev!r}")

    def _raw(self, ev: RawEvent) -> bytes:
        """The upstream's own chunk (same-dialect passthrough): rendered from the canonical
        events that follow it, but for what they cannot say: its usage object, kept whole
        for the usage chunk (OpenRouter's cost and details), and its delta's other fields
        and its ``logprobs``, kept for the next chunk (:attr:`_pending`). Extras still
        pending from the chunk before (it yielded no canonical event) go out first."""
        data = ev.data
        if type(data) is not dict:
            return b""
        usage = data.get("usage")
        if usage:
            self._raw_usage = usage
        choices = data.get("choices")
        if not choices or type(choices) is not list:
            return b""  # the usage chunk: extras pending stay for the finish chunk
        out = b"" if self._pending is None else self._flush()
        choice = choices[0]
        if type(choice) is not dict:
            return out
        delta = choice.get("delta")
        logprobs = choice.get("logprobs")
        extra = None
        if type(delta) is dict and not _DELTA_READ.issuperset(delta):
            # A null says nothing in a delta (OpenAI's first delta has "refusal": null).
            extra = {k: v for k, v in delta.items()
                     if v is not None and k not in _DELTA_READ} or None
        if extra is not None or logprobs is not None:
            with suppress(TypeError):  # nested past what orjson writes: canonical alone
                self._pending = (dumps(extra)[1:-1] if extra else b"", dumps(logprobs))
        return out

    def _take(self) -> bytes:
        """The tail of a chunk that carries the pending extras: the extra delta fields,
        then ``logprobs``, then the usual rest."""
        assert self._pending is not None
        fields, logprobs = self._pending
        self._pending = None
        return ((b"," + fields if fields else b"") + b'},"logprobs":' + logprobs
                + self._after_logprobs)

    def _flush(self) -> bytes:
        """A chunk of the pending extras alone (their upstream chunk had nothing else)."""
        assert self._pending is not None
        fields, logprobs = self._pending
        self._pending = None
        return self._head + b"{" + fields + b'},"logprobs":' + logprobs + self._after_logprobs

    def events(self, batch: Sequence[Event], served: Served) -> bytes:
        """The SSE bytes for one batch of events (:class:`~chatproto.DoorStream`)."""
        return render_each(self.event, batch)

    def _tool(self, ev: ToolCallDelta) -> bytes:
        """``delta.tool_calls`` (providers.md §3.3): the first fragment of an index carries
        ``id`` and ``type``; every fragment carries ``function.arguments``."""
        call: dict[str, object] = {"index": ev.index}
        call_id = ev.id
        if ev.index not in self._seen_tools:
            self._seen_tools.add(ev.index)
            if call_id is None:
                call_id = _call_id(self._id, ev.index)
        if call_id is not None:
            call["id"] = call_id
            call["type"] = "function"
        function: dict[str, str] = {"arguments": ev.arguments}
        if ev.name is not None:
            function = {"name": ev.name, "arguments": ev.arguments}
        call["function"] = function
        return self._tool_head + dumps(call) + b"]" + (
            self._tail if self._pending is None else self._take())

    def _end(self, ev: StreamEnded) -> bytes:
        self._closed = True
        usage = b',"usage":null' if self._include_usage else b""
        fields, logprobs = (b"", b"null") if self._pending is None else self._pending
        self._pending = None
        out = (self._head + b"{" + fields + b'},"logprobs":' + logprobs + b',"finish_reason":'
               + dumps(ev.finish_reason) + b"}]" + usage + b"}\n\n")
        if self._include_usage and ev.usage is not None:
            out += self._usage_chunk(ev.usage)
        return out + b"data: [DONE]\n\n"

    def _usage_chunk(self, usage: Usage) -> bytes:
        """The ``choices: []`` chunk with the usage (providers.md §3.3)."""
        return (self._envelope + b',"choices":[],"usage":'
                + dumps(_usage_json(usage, self._raw_usage)) + b"}\n\n")

    def error(self, exc: ChatError) -> bytes:
        """A mid-stream failure: ``data: {"error": {...}}`` (providers.md §3.3), then
        ``data: [DONE]`` (SPEC §4: "OpenAI Chat an error chunk, then [DONE]"): the openai
        SDK raises ``APIError`` at the error chunk, and a client that reads to
        ``[DONE]`` still finds the end it waits for."""
        if self._closed:
            raise RuntimeError("error() after the stream ended")
        self._closed = True
        # What the upstream spent before failing (OpenRouter's error chunk after
        # finish_reason "length" carries it): the usage chunk first, as at a normal end.
        usage = self._usage_chunk(exc.usage) if self._include_usage and exc.usage else b""
        return usage + b"data: " + render_error(exc) + b"\n\ndata: [DONE]\n\n"


# --------------------------------------------------------------------------------------
# Server end: the door and the model list


class OpenAIChatDoor:
    """``POST /v1/chat/completions`` as a :class:`~chatproto.Door`.

    Ids are ``chatcmpl-<token>``; ``created`` and the model name echo the call (the name
    the client sent, as Ollama's /v1 and OpenRouter echo the requested model).
    """

    name = "openai"
    api = API
    content_type = JSON_CONTENT_TYPE
    stream_content_type = SSE_CONTENT_TYPE
    stream_headers = ((b"cache-control", b"no-cache"),)

    def parse(self, body: bytes, headers: Headers) -> DoorCall:
        parsed = parse_request(body)
        return DoorCall(chat=parsed.chat, view=parsed.include_usage)

    def render(self, call: DoorCall, answer: Answer, ctx: CallContext) -> bytes:
        return render_completion(
            answer.response, id=f"chatcmpl-{ctx.id}", model=call.chat.model,
            created=ctx.created,
        )

    def stream(self, call: DoorCall, ctx: CallContext) -> CompletionStream:
        return CompletionStream(
            id=f"chatcmpl-{ctx.id}", model=call.chat.model, created=ctx.created,
            include_usage=call.view is True,
        )

    def render_error(self, exc: ChatError) -> bytes:
        return render_error(exc)


door = OpenAIChatDoor()


def _model(entry: CatalogEntry, created: int) -> dict[str, object]:
    listed = entry.listed
    when = listed.created if listed is not None and listed.created is not None else created
    return {
        "id": entry.name,
        "object": "model",
        "created": when,
        "owned_by": entry.provider or "chatd",
        "type": "model",
        "display_name": entry.name,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when)),
    }


def render_models(entries: Sequence[CatalogEntry], *, created: int) -> bytes:
    """``GET /v1/models``: ``{"object": "list", "data": [{"id", "object", "created",
    "owned_by"}]}``, one per usable name (:func:`chatproto._models.catalog`, SPEC §3).

    ``owned_by`` is the provider the name routes to, ``"chatd"`` for a tier; ``created``
    is the upstream's where it listed one, else ``created``.

    The same body is also Anthropic's model list (SPEC §3: Claude Code's gateway model
    discovery and the anthropic SDK's ``models.list`` read it): each entry carries
    ``type: "model"``, ``display_name`` and ``created_at`` (RFC 3339) besides OpenAI's
    fields, and the page ``has_more``, ``first_id`` and ``last_id``. Each client ignores
    the other's fields.
    """
    data = [_model(e, created) for e in entries]
    return dumps({"object": "list", "data": data, "has_more": False,
                  "first_id": data[0]["id"] if data else None,
                  "last_id": data[-1]["id"] if data else None})


def render_model(entry: CatalogEntry, *, created: int) -> bytes:
    """``GET /v1/models/{id}``: the one model object (OAI ``types/model.py``; Anthropic's
    ``models.retrieve`` reads the same object's ``type``, ``display_name``,
    ``created_at``)."""
    return dumps(_model(entry, created))


# =========================================================================================
# The rest of OpenAI's API, both ends: the model list (GET /models) and embeddings
# (POST /embeddings) (OAI ``types/embedding_create_params.py``,
# ``create_embedding_response.py``, ``model.py``).
#
# - ``GET /models`` -> ``{"object": "list", "data": [{"id", "object", "created",
#   "owned_by"}]}``; OpenRouter's entries carry much more (pricing, context length), and
#   only the id and ``created`` are read.
# - ``encoding_format`` defaults to ``float``, but the official SDKs (openai-python,
#   openai-node) send ``base64`` whenever their caller did not choose and decode it
#   themselves (``np.frombuffer(..., dtype="float32")`` / a ``Float32Array``), so chatd
#   renders base64 as asked: little-endian float32, as OpenAI does. Upstream, the client's
#   choice is passed on only on the same wire format; an answer is read in either form,
#   since some compatible servers ignore the field and send floats.
# - Usage is OpenAI's required object; when the upstream counted nothing (an Ollama that
#   omits ``prompt_eval_count``) both counts are 0 rather than a made-up estimate.
# =========================================================================================

#: The values ``encoding_format`` takes (OAI ``embedding_create_params.py``).
ENCODINGS = ("float", "base64")


# --- GET /models ------------------------------------------------------------------------

def parse_models(provider: str, body: bytes, *, limit: int) -> tuple[ListedModel, ...]:
    """An upstream's ``GET /models``: each entry's ``id`` (and ``created``), at most
    ``limit``; entries without a usable id are skipped."""
    out: list[ListedModel] = []
    for item in list_entries(provider, body, "data"):
        if len(out) >= limit:
            break
        model_id = usable_id(item.get("id"))
        if model_id is None:
            continue
        created = item.get("created")
        out.append(ListedModel(
            id=model_id,
            created=created if isinstance(created, int) and not isinstance(created, bool)
            else None,
        ))
    return tuple(out)


# --- POST /embeddings: the door ------------------------------------------------------------

class OpenAIEmbedCall:
    """A parsed ``/v1/embeddings`` body: the request, and how the client wants vectors."""

    __slots__ = ("encoding_format", "request")

    def __init__(self, request: EmbedRequest, encoding_format: str) -> None:
        self.request = request
        self.encoding_format = encoding_format


def _token_array(value: list[object], field: str) -> tuple[int, ...]:
    for i, item in enumerate(value):
        if not isinstance(item, int) or isinstance(item, bool) or item < 0:
            raise invalid(f"{field}[{i}] must be a token id (a non-negative integer), not "
                          f"{json_type(item)}")
    return tuple(value)  # type: ignore[arg-type]  # checked: every item is an int


def _embed_inputs(value: object) -> tuple[str | tuple[int, ...], ...]:
    """``input``: a string, an array of strings, one token array, or an array of them."""
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list):
        raise invalid(f"input must be a string or an array, not {json_type(value)}")
    if not value:
        raise invalid("input must not be empty")
    if len(value) > MAX_INPUTS:
        raise invalid(f"input has {len(value)} items; at most {MAX_INPUTS} are taken")
    if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return (_token_array(value, "input"),)
    out: list[str | tuple[int, ...]] = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, list) and item:
            out.append(_token_array(item, f"input[{i}]"))
        else:
            raise invalid(f"input[{i}] must be a string or a non-empty token array, not "
                          f"{json_type(item)}")
    return tuple(out)


_OPENAI_EMBED_FIELDS = frozenset({"model", "input", "encoding_format", "dimensions"})


def parse_embeddings(body: bytes) -> OpenAIEmbedCall:
    """A client's ``POST /v1/embeddings`` body."""
    obj = decode_body(body)
    model = parse_model(obj)
    if obj.get("input") is None:
        raise invalid("input is required")
    encoding = string(obj.get("encoding_format"), "encoding_format") or "float"
    if encoding not in ENCODINGS:
        raise invalid(f"encoding_format must be one of {', '.join(ENCODINGS)}, not "
                      f"{encoding!r}")
    extras: dict[str, JSON] = {k: v for k, v in obj.items() if k not in _OPENAI_EMBED_FIELDS}
    if "encoding_format" in obj:
        extras["encoding_format"] = encoding
    request = EmbedRequest(
        model=model,
        inputs=_embed_inputs(obj["input"]),
        dimensions=positive_int(obj.get("dimensions"), "dimensions"),
        dialect="openai_embed",
        extras=extras,
    )
    return OpenAIEmbedCall(request, encoding)


def encode_base64_vector(vec: Sequence[float]) -> str:
    """A vector as OpenAI's base64: little-endian float32, base64 (standard alphabet)."""
    return base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode("ascii")


def decode_base64_vector(text: str, provider: str, index: int) -> list[float]:
    """The inverse of :func:`encode_base64_vector`; a malformed one is the upstream's fault."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raw = b"\0"  # fails the length check below
    if len(raw) % 4:
        raise ChatError("bad_upstream_response",
                        f"upstream embedding {index} is not base64 float32 data",
                        provider=provider)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def render_embeddings(
    resp: EmbedResponse, *, model: str, encoding_format: str = "float"
) -> bytes:
    """The ``/v1/embeddings`` answer, vectors as floats or base64 as the client asked."""
    b64 = encoding_format == "base64"
    data: list[dict[str, Any]] = [
        {"object": "embedding", "index": i,
         "embedding": encode_base64_vector(v) if b64 else v}
        for i, v in enumerate(resp.vectors)
    ]
    tokens = resp.prompt_tokens or 0
    return dumps({"object": "list", "data": data, "model": model,
                  "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


# --- POST /embeddings: the upstream call -----------------------------------------------------

class OpenAIEmbedCodec:
    """``POST {base}/embeddings`` for the OpenAI family."""

    api = "openai_embed"

    def build_request(
        self, request: EmbedRequest, route: Route, provider: Provider
    ) -> HTTPRequest:
        body: dict[str, JSON] = {}
        if request.dialect == self.api:
            body.update(request.extras)
        body["model"] = route.upstream_model
        inputs = request.inputs
        body["input"] = (
            inputs[0] if len(inputs) == 1 and isinstance(inputs[0], str)
            else [list(i) if isinstance(i, tuple) else i for i in inputs]
        )
        if request.dimensions is not None:
            body["dimensions"] = request.dimensions
        headers = request_headers(
            provider, (("Content-Type", "application/json"), ("Accept", "application/json")))
        return HTTPRequest(method="POST", url=provider.base_url.rstrip("/") + "/embeddings",
                           headers=headers, body=encode_body(body, provider.name))

    def parse_response(self, provider: str, body: bytes, count: int) -> EmbedResponse:
        obj = loads(body, provider)
        data = obj.get("data") if isinstance(obj, dict) else None
        if not isinstance(obj, dict) or not isinstance(data, list) or len(data) != count:
            raise ChatError(
                "bad_upstream_response",
                f"upstream embeddings answer has no \"data\" array of {count} embeddings",
                provider=provider,
            )
        vectors: list[Sequence[float] | None] = [None] * count
        for i, item in enumerate(data):
            index = item.get("index", i) if isinstance(item, dict) else None
            if not isinstance(index, int) or not 0 <= index < count \
                    or vectors[index] is not None:
                raise ChatError("bad_upstream_response",
                                f"upstream embedding {i} has no valid index", provider=provider)
            raw = item.get("embedding") if isinstance(item, dict) else None
            vectors[index] = (decode_base64_vector(raw, provider, i) if isinstance(raw, str)
                              else embed_vector(raw, provider, i))
        usage = obj.get("usage")
        tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        return EmbedResponse(
            vectors=tuple(v for v in vectors if v is not None),
            prompt_tokens=tokens if isinstance(tokens, int) and not isinstance(tokens, bool)
            and tokens >= 0 else None,
        )

    def parse_error(
        self, provider: str, status: int, headers: Headers, body: bytes, *, now: float
    ) -> ChatError:
        return codec.parse_error(provider, status, headers, body, now=now)


embed_codec = OpenAIEmbedCodec()
