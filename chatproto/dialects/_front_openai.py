"""The OpenAI-compatible front door (``POST /v1/chat/completions``, ``GET /v1/models``).

Strategy: a pure translation layer, no I/O and no clock. An OpenAI Chat Completions body
becomes the same :class:`~chatproto.ChatRequest` the native door builds (the field
validators of :mod:`chatproto._request` are reused, so both doors agree on what is valid),
and chatd's answers, events and errors are rendered back as OpenAI bytes. Ids and
``created`` timestamps are arguments: the route handler owns randomness and the clock.

The stream renderer runs once per relayed chunk, so :class:`CompletionStream` encodes the
constant parts of a chunk (id, created, model, the ``choices`` wrapper) once per stream and
splices each JSON-encoded delta between them; a chunk costs one ``orjson.dumps`` of the
delta's text and two byte concatenations.

Decisions (each is a choice where OpenAI's contract leaves room; the source is beside it):

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
  and chatd has no backend fingerprint to vouch for). ``finish_reason`` is chatd's own
  (SPEC §3), which is OpenAI's set.
- A stream that ended without upstream usage gets no usage chunk even with
  ``include_usage``: OpenAI says it "may be missing" (providers.md §3.3) and a zero count
  would be a false number (anchors.md takeaway 3: usage is never estimated).
- Errors keep SPEC §4's status; the body is OpenAI's shape with chatd's type as ``code``
  and ``provider`` / ``upstream_status`` as extra fields (the SDK keeps extra fields in
  ``APIError.body``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from chatproto import (
    Answer,
    CallContext,
    ChatError,
    ChatRequest,
    ChatResponse,
    DoorCall,
    Event,
    Message,
    RawEvent,
    Served,
    StreamEnded,
    TextDelta,
    ThinkingDelta,
    ToolCall,
    ToolCallDelta,
)
from chatproto._decoders import dumps
from chatproto._errors import Headers
from chatproto._request import (
    boolean,
    decode_body,
    integer,
    invalid,
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
from chatproto._routing import PROVIDER_APIS, resolve

__all__ = [
    "SSE_CONTENT_TYPE",
    "CompletionStream",
    "OpenAIChatDoor",
    "OpenAIRequest",
    "parse_request",
    "render_completion",
    "render_error",
    "render_models",
]

API = "openai_chat"
JSON_CONTENT_TYPE = b"application/json"

SSE_CONTENT_TYPE = b"text/event-stream"


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


# --------------------------------------------------------------------------------------
# Request


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenAIRequest:
    """A validated ``/v1/chat/completions`` body.

    ``include_usage`` is ``stream_options.include_usage``: it changes only how the stream is
    rendered, so it lives beside the request rather than in it.
    """

    chat: ChatRequest
    include_usage: bool = False


def parse_request(body: bytes) -> OpenAIRequest:
    """Parse and validate a Chat Completions body (providers.md §3.1).

    Unknown fields (``user``, ``logprobs``, ``parallel_tool_calls``, penalties...) are
    ignored, as on the native door. ``null`` means "not given" everywhere.

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
        if not isinstance(options, dict):
            raise invalid(f"stream_options must be an object, not {json_type(options)}")
        include_usage = bool(
            boolean(options.get("include_usage"), "stream_options.include_usage")
        )
    chat = ChatRequest(
        model=model,
        messages=_messages(obj.get("messages")),
        max_tokens=newer if newer is not None else max_tokens,
        temperature=number(obj.get("temperature"), "temperature"),
        top_p=number(obj.get("top_p"), "top_p"),
        stop=parse_stop(obj.get("stop")),
        seed=integer(obj.get("seed"), "seed"),
        format=_response_format(obj.get("response_format")),
        think=_think(obj.get("reasoning_effort"), obj.get("reasoning")),
        stream=stream,
        tools=parse_tools(obj.get("tools")),
        tool_choice=parse_tool_choice(obj.get("tool_choice")),
        dialect=API,
    )
    return OpenAIRequest(chat=chat, include_usage=include_usage)


def _messages(value: object) -> tuple[Message, ...]:
    if value is None:
        raise invalid("messages is required")
    if not isinstance(value, list):
        raise invalid(f"messages must be an array of messages, not {json_type(value)}")
    if not value:
        raise invalid("messages must not be empty")
    return tuple(_message(item, f"messages[{i}]") for i, item in enumerate(value))


def _message(value: object, field: str) -> Message:
    """One OpenAI message, normalised to the native shape and checked by ``parse_message``.

    Only OpenAI's fields are carried over (Ollama's ``images`` / ``thinking`` spellings
    are the native door's). An assistant's ``reasoning_content`` (or ``reasoning``) is its
    earlier thinking: Kimi wants it back on tool-call turns (providers.md §6.1).
    """
    if not isinstance(value, dict):
        raise invalid(f"{field} must be an object, not {json_type(value)}")
    role = value.get("role")
    if role not in _ROLES:
        shown = "missing" if role is None else repr(role)
        raise invalid(f"{field}.role must be one of {', '.join(_ROLES)}; got {shown}")
    assert isinstance(role, str)
    content = value.get("content")
    images: tuple[str, ...] = ()
    if isinstance(content, list):
        content, images = _parts(content, f"{field}.content", role)
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
    return parse_message(native, field)


def _parts(parts: list[object], field: str, role: str) -> tuple[str, tuple[str, ...]]:
    """Content parts -> (text, base64 images). OpenAI part types: ``text``, ``image_url``
    (user), ``refusal`` (assistant history); audio and file parts cannot be carried."""
    texts: list[str] = []
    images: list[str] = []
    for i, part in enumerate(parts):
        where = f"{field}[{i}]"
        if not isinstance(part, dict):
            raise invalid(f"{where} must be an object, not {json_type(part)}")
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
            images.append(_image(part.get("image_url"), f"{where}.image_url"))
        else:
            raise invalid(
                f"{where}.type {kind!r} is not supported; chatd takes text and image_url "
                "parts"
            )
    return "\n".join(texts), tuple(images)


def _image(value: object, field: str) -> str:
    """``image_url`` (``{"url", "detail"?}``, or the bare URL string some clients send) ->
    the base64 payload of a ``data:image/<type>;base64,<payload>`` URL (RFC 2397)."""
    url = value.get("url") if isinstance(value, dict) else value
    where = f"{field}.url" if isinstance(value, dict) else field
    if not isinstance(url, str):
        raise invalid(f"{where} must be a string, not {json_type(url)}")
    if url[:5].lower() != "data:":
        raise invalid(
            f"{where}: only inline data:image/...;base64,... URLs are supported (Ollama "
            "takes images as base64 and chatd does not fetch remote images)"
        )
    header, comma, payload = url[5:].partition(",")
    params = header.lower().split(";")
    if not comma or not params[0].startswith("image/") or "base64" not in params[1:]:
        raise invalid(f"{where} must be a data:image/<type>;base64,<data> URL")
    if not payload:
        raise invalid(f"{where} has no image data")
    return payload


def _response_format(value: object) -> object:
    """``response_format`` -> ``ChatRequest.format`` (the mapping of Ollama's own /v1,
    providers.md §1.9): ``json_object`` -> ``"json"``, ``json_schema`` -> its ``schema``,
    ``text`` -> None. A ``json_schema`` without a schema is JSON mode, the nearest honest
    reading. The schema's ``name`` and ``strict`` have no place in chatd's ``format``."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid(f"response_format must be an object, not {json_type(value)}")
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


def _effort(value: object, field: str) -> bool | str | None:
    if value is None:
        return None
    if isinstance(value, str) and value in _EFFORT:
        return _EFFORT[value]
    allowed = ", ".join(f'"{e}"' for e in _EFFORT)
    raise invalid(f"{field} must be one of {allowed}, not {value!r}")


def _think(effort: object, reasoning: object) -> bool | str | None:
    """``reasoning_effort`` (OpenAI) and ``reasoning: {effort?, enabled?}`` (OpenRouter,
    providers.md §4.2; also read by Ollama's /v1, §1.9) -> ``think``."""
    think = _effort(effort, "reasoning_effort")
    if reasoning is None:
        return think
    if not isinstance(reasoning, dict):
        raise invalid(f"reasoning must be an object, not {json_type(reasoning)}")
    enabled = boolean(reasoning.get("enabled"), "reasoning.enabled")
    other = _effort(reasoning.get("effort"), "reasoning.effort")
    if enabled is False:
        other = False
    elif other is None:
        other = enabled
    if think is not None and other is not None and think != other:
        raise invalid("reasoning_effort and reasoning disagree; send one of them")
    return other if think is None else think


# --------------------------------------------------------------------------------------
# Whole answers


def _call_id(completion_id: str, index: int) -> str:
    return f"call_{completion_id}_{index}"


def render_completion(resp: ChatResponse, *, id: str, model: str, created: int) -> bytes:
    """A ``chat.completion`` object (providers.md §3.2) for one answer.

    ``model`` is the name the client sent (a tier or prefixed name), as Ollama's /v1 and
    OpenRouter echo the requested model. ``content`` is null when the answer is only tool
    calls, as OpenAI sends it.
    """
    message: dict[str, object] = {
        "role": "assistant",
        "content": None if not resp.content and resp.tool_calls else resp.content,
    }
    if resp.thinking:
        message["reasoning_content"] = resp.thinking
        message["reasoning"] = resp.thinking
    if resp.tool_calls:
        message["tool_calls"] = [_tool_call(c, id, i) for i, c in enumerate(resp.tool_calls)]
    return dumps({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": resp.finish_reason,
        }],
        "usage": resp.usage.to_dict(),
    })


def _tool_call(call: ToolCall, completion_id: str, index: int) -> dict[str, object]:
    return {
        "id": call.id if call.id is not None else _call_id(completion_id, index),
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


# --------------------------------------------------------------------------------------
# Streams


class CompletionStream:
    """Renders one stream as OpenAI SSE chunks (providers.md §3.3).

    Call :meth:`start` once, then :meth:`event` for each core event; the
    :class:`~chatproto.StreamEnded` event renders the finish chunk, the usage chunk (when
    ``include_usage`` and the upstream reported usage) and ``data: [DONE]``. A failure
    after the first byte is :meth:`error`: one ``data: {"error": ...}`` event and no
    ``[DONE]``, which the openai SDK raises as ``APIError`` (OAI ``_streaming.py``). Every
    returned value is a whole number of SSE events, ready to send. Using the stream after
    its end or its error is a caller bug (RuntimeError).
    """

    __slots__ = ("_closed", "_content", "_envelope", "_head", "_id", "_include_usage",
                 "_reasoning", "_seen_tools", "_tail", "_tool_head")

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
        self._tail = b'},"logprobs":null,"finish_reason":null}]' + usage + b"}\n\n"
        self._content = head + b'{"content":'
        self._reasoning = head + b'{"reasoning_content":'
        self._tool_head = head + b'{"tool_calls":['
        self._seen_tools: set[int] = set()
        self._closed = False

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
            return self._content + dumps(ev.text) + self._tail
        if type(ev) is ThinkingDelta:
            text = dumps(ev.text)
            return self._reasoning + text + b',"reasoning":' + text + self._tail
        if type(ev) is ToolCallDelta:
            return self._tool(ev)
        if type(ev) is StreamEnded:
            return self._end(ev)
        if type(ev) is RawEvent:
            # The upstream's own event (same-dialect passthrough); rendered from the
            # canonical events that follow it.
            return b""
        raise TypeError(f"not a stream event: {ev!r}")

    def events(self, batch: Sequence[Event], served: Served) -> bytes:
        """The SSE bytes for one batch of events (:class:`~chatproto.DoorStream`)."""
        return b"".join([self.event(ev) for ev in batch])

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
        return self._tool_head + dumps(call) + b"]" + self._tail

    def _end(self, ev: StreamEnded) -> bytes:
        self._closed = True
        usage = b',"usage":null' if self._include_usage else b""
        out = (self._head + b'{},"logprobs":null,"finish_reason":' + dumps(ev.finish_reason)
               + b"}]" + usage + b"}\n\n")
        if self._include_usage and ev.usage is not None:
            out += (self._envelope + b',"choices":[],"usage":' + dumps(ev.usage.to_dict())
                    + b"}\n\n")
        return out + b"data: [DONE]\n\n"

    def error(self, exc: ChatError) -> bytes:
        """A mid-stream failure: ``data: {"error": {...}}`` (providers.md §3.3), no [DONE]."""
        if self._closed:
            raise RuntimeError("error() after the stream ended")
        self._closed = True
        return b"data: " + render_error(exc) + b"\n\n"


# --------------------------------------------------------------------------------------
# The door


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


# --------------------------------------------------------------------------------------
# Errors and the model list


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


def render_models(
    tiers: Mapping[str, tuple[str, ...]], providers: Sequence[str], *, created: int
) -> bytes:
    """``GET /v1/models``: ``{"object": "list", "data": [{"id", "object", "created",
    "owned_by"}]}``, listing only names chatd can route now (``providers`` = registered).

    In order: each tier with at least one registered target (``owned_by: "chatd"``); each
    such target, a concrete model id (``owned_by`` its provider); then one ``"<provider>/"``
    entry per registered provider. That last entry is a prefix, not a model: chatd cannot
    list upstream catalogues without I/O, so it says "append a model name here"; sending
    it bare gets a 400 that explains the rule (SPEC §1).

    The same body is also Anthropic's model list (SPEC §3: Claude Code's gateway model
    discovery and the anthropic SDK's ``models.list`` read it): each entry carries
    ``type: "model"``, ``display_name`` and ``created_at`` (RFC 3339) besides OpenAI's
    fields, and the page ``has_more``, ``first_id`` and ``last_id``. Each client ignores
    the other's fields.
    """
    data: list[dict[str, object]] = []
    seen: set[str] = set()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created))

    def add(model_id: str, owner: str) -> None:
        if model_id not in seen:
            seen.add(model_id)
            data.append({"id": model_id, "object": "model", "created": created,
                         "owned_by": owner, "type": "model", "display_name": model_id,
                         "created_at": stamp})

    targets: list[tuple[str, str]] = []
    for tier, names in tiers.items():
        usable = []
        for name in names:
            try:
                (route,) = resolve(name, providers)
            except ChatError:
                continue
            usable.append((name.strip(), route.provider))
        if usable:
            add(tier, "chatd")
            targets.extend(usable)
    for name, provider in targets:
        add(name, provider)
    for provider in providers:
        if provider in PROVIDER_APIS:
            add(f"{provider}/", provider)
    return dumps({"object": "list", "data": data, "has_more": False,
                  "first_id": data[0]["id"] if data else None,
                  "last_id": data[-1]["id"] if data else None})
