"""The OpenAI Chat Completions codec: openrouter, opencode (OpenCode Zen) and kimi.

Strategy: one stateless codec speaks the OpenAI family (providers.md §3). The three
providers differ in a handful of documented quirks, and each is handled here, keyed on
``provider.name`` with its providers.md tag beside it, rather than in three near-copies:

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
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from .._decoders import SSEDecoder, dumps, loads
from .._errors import ChatError, Headers, error_from_upstream
from .._events import Event, RawEvent, StreamEnded, TextDelta, ThinkingDelta, ToolCallDelta
from .._lifecycle import StreamLifecycle
from .._types import (
    JSON,
    ChatRequest,
    ChatResponse,
    HTTPRequest,
    Message,
    Provider,
    Route,
    ToolCall,
    Usage,
)

__all__ = ["OpenAIChatCodec", "OpenAIChatStreamParser", "codec"]

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

#: Longest upstream error text passed on; bodies can be whole HTML pages.
_MAX_MESSAGE = 500


def _bad(provider: str | None, what: str) -> ChatError:
    return ChatError("bad_upstream_response", what, provider=provider)


# --------------------------------------------------------------------------------------
# Request


def _think_fields(control: str, think: bool | str | None) -> dict[str, JSON]:
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
    - ``""`` (OpenCode Zen, configured providers): nothing. Zen forwards the body to
      varying upstreams and documents no reasoning control (providers.md §5.3, §8
      "upstream's (undocumented)").
    """
    if think is None:
        return {}
    if control == "reasoning":
        if isinstance(think, bool):
            return {"reasoning": {"enabled": think}}
        return {"reasoning": {"effort": _OPENROUTER_EFFORT.get(think, think)}}
    if control == "thinking":
        return {"thinking": {"type": "enabled" if think else "disabled"}}
    return {}


def _response_format(fmt: JSON) -> JSON:
    """``ChatRequest.format`` -> OpenAI ``response_format`` (SPEC §2; providers.md §3.1).

    ``"json"`` is JSON mode, ``{"type": "json_object"}``. A schema object is wrapped as
    ``{"type": "json_schema", "json_schema": {"name": "response", "schema": ...}}``.
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
        return {"type": "json_schema", "json_schema": {"name": "response", "schema": fmt}}
    raise ChatError("invalid_request", 'format must be "json" or a JSON schema object')


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


def _message(msg: Message, echo_reasoning: bool) -> dict[str, JSON]:
    """One chatd message in OpenAI shape (providers.md §3.1; OAI ``completion_create_params``).

    An assistant message with tool calls and no text gets ``content: null``, as OpenAI
    documents ("required unless tool_calls"): an empty string becomes an empty text block
    on some upstreams behind OpenRouter, which refuse it. Tool calls carry ``arguments``
    as JSON text. A tool result carries ``tool_call_id``; ``name`` is sent when set
    (OpenRouter's and Moonshot's tool messages accept it; OpenAI's other roles take it
    as the participant name).
    """
    out: dict[str, JSON] = {"role": msg.role}
    if msg.images:
        parts: list[JSON] = [{"type": "text", "text": msg.content}] if msg.content else []
        parts.extend({"type": "image_url", "image_url": {"url": _image_url(i)}}
                     for i in msg.images)
        out["content"] = parts
    elif msg.content or not msg.tool_calls:
        out["content"] = msg.content
    else:
        out["content"] = None
    if msg.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function",
             "function": {"name": c.name, "arguments": c.arguments}}
            if c.id is not None else
            {"type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in msg.tool_calls
        ]
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
# Response pieces shared by the whole-body and stream paths


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


def _usage(value: Any, provider: str) -> Usage:
    """OpenAI ``usage`` -> Usage; missing counts are 0 (extra fields ignored: cost...)."""
    if not isinstance(value, dict):
        raise _bad(provider, "upstream sent usage that is not an object")
    prompt = value.get("prompt_tokens")
    completion = value.get("completion_tokens")
    return Usage(
        prompt_tokens=prompt if type(prompt) is int and prompt >= 0 else 0,
        completion_tokens=completion if type(completion) is int and completion >= 0 else 0,
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
    message = _clip(message) or "upstream reported an error"
    if type(code) is int and 400 <= code <= 599:
        return error_from_upstream(provider, code, message)
    return ChatError("upstream_error", message, provider=provider)


def _finish_error(provider: str, chunk: dict[str, Any], choice: dict[str, Any]) -> ChatError:
    """``finish_reason: "error"`` (OpenRouter, providers.md §4.2-4.3): the run failed.

    The error may sit at top level (streams) or in the choice (a body where "some tokens
    were sent", OR mirror 180); without either, a plain upstream_error.
    """
    error = chunk.get("error") or choice.get("error")
    if error:
        return _embedded_error(provider, error)
    return ChatError("upstream_error", "upstream ended the answer with an error",
                     provider=provider)


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


# --------------------------------------------------------------------------------------
# Stream


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
        for event, payload, _ in self._sse.feed(data):
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
                raise _bad(provider, f"upstream sent malformed JSON: {exc}") from None
            if type(chunk) is not dict:
                raise _bad(provider, "upstream sent a stream chunk that is not an object")
            error = chunk.get("error")
            if error is not None:
                raise _embedded_error(provider, error)
            if raw:
                out.append(RawEvent(dialect="openai_chat", data=chunk))
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
            return ChatError("upstream_error", _clip(payload.decode("utf-8", "replace"))
                             or "upstream reported an error", provider=self._provider)
        error = body.get("error", body) if isinstance(body, dict) else body
        return _embedded_error(self._provider, error)


# --------------------------------------------------------------------------------------
# Errors


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
            return _clip(error)
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
                return _clip(message)
        message = obj.get("message")
        if isinstance(message, str) and message:
            return _clip(message)
    title = _TITLE.search(body)
    if title is not None:
        return _clip(title.group(1).decode("utf-8", "replace"))
    return _clip(body.decode("utf-8", "replace"))


# --------------------------------------------------------------------------------------
# The codec


class OpenAIChatCodec:
    """The ``openai_chat`` codec (see the module docstring)."""

    api = "openai_chat"

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
            "messages": [_message(m, provider.echo_reasoning) for m in request.messages],
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
        if request.format is not None:
            body["response_format"] = _response_format(request.format)
        if request.tools:
            body["tools"] = list(request.tools)
        if request.tool_choice is not None:
            body["tool_choice"] = request.tool_choice
        body.update(_think_fields(provider.reasoning_control, request.think))
        if request.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}

        headers = [
            ("Content-Type", "application/json"),
            ("Accept", "text/event-stream" if request.stream else "application/json"),
        ]
        if provider.key is not None:
            headers.append(("Authorization", f"Bearer {provider.key.reveal()}"))
        if provider.headers:
            configured = {k.lower() for k, _ in provider.headers}
            headers = [h for h in headers if h[0].lower() not in configured]
            headers.extend(provider.headers)
        try:
            encoded = dumps(body)
        except TypeError as exc:  # a tool or schema holding a non-JSON value
            raise ChatError("invalid_request", f"request cannot be encoded as JSON: {exc}",
                            provider=name) from None
        return HTTPRequest(
            method="POST",
            url=provider.base_url.rstrip("/") + provider.path("openai_chat", "/chat/completions"),
            headers=tuple(headers),
            body=encoded,
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
            dialect="openai_chat" if passthrough else None,
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
