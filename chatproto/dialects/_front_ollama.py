"""chatd's Ollama-compatible front door: ``/api/chat``, ``/api/generate``, ``/api/tags``,
``/api/version`` translated to and from chatd's own types.

Strategy: a pure translation layer, no I/O and no clock (``created_at`` strings and
durations are arguments), so an Ollama client (the ``ollama`` Python package, the Ollama
CLI, anything speaking Ollama's native API) pointed at chatd's port reaches every routed
provider. Requests become the same :class:`~chatproto.ChatRequest` the native route builds,
validated by the shared validators of :mod:`chatproto._request`, so a model name is routed
by the SPEC §1 rules like any other (``qwen3:4b`` → local, ``kimi-k2.6:cloud`` → Ollama
Cloud, ``openrouter/v/m`` → OpenRouter). Answers and stream events are rendered in Ollama's
exact shapes (providers.md OL §1.4, §1.5, §1.7, §1.8). Stream renderers pre-encode the bytes
that are the same on every line of a stream, so a relayed chunk costs one ``orjson.dumps``
of its text and a concatenation.

Decisions, each with its reason:

- ``stream`` defaults to true: "``stream``: ``*bool``, omitted ⇒ streaming ON"
  (providers.md OL §1.2). The ``ollama`` Python client always sends it explicitly.
- ``think`` omitted stays None, i.e. chatd's default (SPEC §2: false for Ollama upstreams),
  not Ollama's "thinking on for capable models" (OL §1.3): SPEC §2's reason (a small
  ``num_predict`` must still give content) holds for every front door. A client that wants
  thinking sends ``think``, as the Ollama CLI does.
- ``options``: ``num_predict`` → ``max_tokens``, where zero or negative means unlimited
  (None): "``num_predict`` -1 (infinite)" (OL ``docs/modelfile.mdx``), and Ollama's runner
  enforces the limit only ``if seq.numPredict > 0`` (OL ``runner``), so 0 and -2 are
  unlimited too. ``temperature``, ``top_p``, ``stop``, ``seed`` map to chatd's fields. Every
  other option (``top_k``, ``num_ctx``, ``repeat_penalty``, ...) is ignored: chatd's request
  has no field for it and most routed providers have no equivalent; refusing them would
  break clients that always send a few.
- ``keep_alive``, ``logprobs``, ``top_logprobs``, ``truncate``, ``shift`` and the
  image-generation fields are ignored: chatd does not manage model residency and returns
  no log probabilities.
- ``format: ""`` means no format: the ``ollama`` client types allow ``Literal['', 'json']``.
- A message without ``content`` has empty content, as in Ollama (its Go ``Message.Content``
  is a plain string).
- Empty ``messages`` (chat) or an empty ``prompt`` (generate) is Ollama's "load the model"
  call, answered ``done_reason: "load"`` (OL §1.4; OL ``server/routes.go``: ``if
  len(req.Messages) == 0`` / ``if req.Prompt == ""``). chatd answers it at once without
  calling an upstream (:func:`is_load`, :func:`render_load`): loading is the upstream's
  business, and a cloud provider has nothing to load. ``keep_alive: 0`` (Ollama's
  "unload") gets the same answer, since chatd keeps nothing loaded.
- ``/api/generate``: ``system`` becomes a system message and ``images`` go on the user
  message. ``raw: true``, a ``template``, a non-empty ``context`` and a ``suffix`` are
  refused (400), because chatd cannot honour them: every upstream applies its own chat
  template (``raw``/``template``), token ids are model-specific and chatd returns none
  (``context``), and fill-in-the-middle has no chat-API equivalent (``suffix``). Dropping
  them silently would answer a different question than the one asked.
- ``done_reason``: ``stop`` and ``length`` map directly; ``tool_calls`` becomes ``stop``,
  which is what Ollama reports with tool calls present (its own OpenAI layer rewrites
  ``stop`` to ``tool_calls`` when calls are present, OL ``openai.go``); anything else
  (``content_filter``) is passed on as is: the field is free text in Ollama's clients
  (``done_reason: Optional[str]``), and "stop" would hide that the answer was filtered.
- Durations are nanoseconds (OL §1.4). chatd measures only the whole call, so
  ``total_duration`` is that and ``load_duration`` is 0; ``prompt_eval_duration`` and
  ``eval_duration`` are omitted, as Ollama omits metrics it does not have ("All metric
  fields are ``omitempty``", OL §1.4).
- Tool-call ``arguments`` are a JSON *object* on Ollama's wire (OL §1.4) and JSON text in
  chatd. Ollama clients need whole calls ("Tool calls arrive as a complete ``tool_calls``
  array inside a ``done:false`` chunk", OL §1.5), so streamed fragments are buffered by
  index (bounded) and emitted in one chunk just before the final line. Buffering to the
  end costs no latency in practice (tool calls end a turn) and is immune to providers
  interleaving fragments of parallel calls. Arguments that are not a JSON object cannot be
  expressed on Ollama's wire and fail as ``bad_upstream_response``.
- Errors are ``{"error": "<message>"}`` (OL §1.7), also mid-stream as a last line (OL
  §1.5). Ollama's clients read only ``error``, so chatd's ``type``, ``provider`` and
  ``upstream_status`` ride along beside it for callers that know chatd.
- ``created_at`` is one string per stream, taken by the caller at the start: a clock read
  per chunk costs more than it tells anyone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

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
    ToolCallDelta,
    Usage,
)
from chatproto._decoders import dumps as _dumps
from chatproto._errors import Headers
from chatproto._request import (
    boolean,
    decode_body,
    integer,
    invalid,
    json_type,
    number,
    parse_format,
    parse_message,
    parse_model,
    parse_stop,
    parse_think,
    parse_tools,
    string,
)

__all__ = [
    "CHAT",
    "ENDPOINTS",
    "GENERATE",
    "JSON_CONTENT_TYPE",
    "MAX_TOOL_CALLS",
    "MAX_TOOL_CALL_BYTES",
    "NDJSON_CONTENT_TYPE",
    "OLLAMA_VERSION",
    "ZERO_TIME",
    "ChatStreamRenderer",
    "Endpoint",
    "GenerateStreamRenderer",
    "OllamaDoor",
    "StreamRenderer",
    "chat_door",
    "format_time",
    "generate_door",
    "is_load",
    "parse_chat",
    "parse_generate",
    "parse_tags",
    "render_chat",
    "render_error",
    "render_generate",
    "render_load",
    "render_tags",
    "render_version",
]

#: Content types Ollama answers with (OL ``routes.go``): whole bodies and NDJSON streams.
JSON_CONTENT_TYPE = b"application/json; charset=utf-8"
NDJSON_CONTENT_TYPE = b"application/x-ndjson"

#: The Ollama version ``GET /api/version`` reports. Clients gate features on it (tools,
#: structured outputs, thinking levels), and chatd's front door follows the API of the
#: Ollama snapshot providers.md was written from (OL: tag ``v0.33.0-rc2``), so it claims
#: that release, without the pre-release suffix that naive version parsers trip on.
OLLAMA_VERSION = "0.33.0"

#: Go's zero ``time.Time``: what chatd's own tier entries report as ``modified_at``. They
#: were never "modified"; the value parses in Go clients and in the Python client's models.
ZERO_TIME = "0001-01-01T00:00:00Z"

#: Bounds on the tool calls one stream may buffer (SPEC: bounded buffers). A real answer
#: has a handful of calls of a few kilobytes each.
MAX_TOOL_CALLS = 128
MAX_TOOL_CALL_BYTES = 1 << 20

_loads = orjson.loads


def format_time(epoch_seconds: float) -> str:
    """``created_at`` as Ollama writes it (Go RFC 3339, UTC): ``2025-07-07T20:32:53.844124Z``.

    Pure: the caller reads the clock (``time.time()``) and passes it in.
    """
    when = datetime.fromtimestamp(epoch_seconds, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- requests ----------------------------------------------------------------------------


def _messages(value: object) -> tuple[Message, ...]:
    """Ollama ``messages``: absent or empty is the load call; content defaults to ""."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise invalid(f"messages must be an array of messages, not {json_type(value)}")
    out: list[Message] = []
    for i, item in enumerate(value):
        if isinstance(item, dict) and item.get("content") is None:
            item = {**item, "content": ""}
        out.append(parse_message(item, f"messages[{i}]"))
    return tuple(out)


def _format(value: object) -> Any:
    return None if value == "" else parse_format(value)


@dataclass(frozen=True, slots=True)
class _Options:
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None


def _options(value: object) -> _Options:
    """The ``options`` chatd honours; see the module docstring for the rest."""
    if value is None:
        return _Options()
    if not isinstance(value, dict):
        raise invalid(f"options must be an object, not {json_type(value)}")
    num_predict = integer(value.get("num_predict"), "options.num_predict")
    return _Options(
        # "num_predict -1 (infinite)" (OL modelfile.mdx); the runner limits only when > 0.
        max_tokens=num_predict if num_predict is not None and num_predict > 0 else None,
        temperature=number(value.get("temperature"), "options.temperature"),
        top_p=number(value.get("top_p"), "options.top_p"),
        stop=parse_stop(value.get("stop"), "options.stop"),
        seed=integer(value.get("seed"), "options.seed"),
    )


def _stream(value: object) -> bool:
    # "stream: *bool, omitted ⇒ streaming ON" (providers.md OL §1.2).
    flag = boolean(value, "stream")
    return True if flag is None else flag


def _request(
    obj: Mapping[str, object], model: str, messages: tuple[Message, ...], **extra: Any
) -> ChatRequest:
    opts = _options(obj.get("options"))
    return ChatRequest(
        model=model,
        messages=messages,
        max_tokens=opts.max_tokens,
        temperature=opts.temperature,
        top_p=opts.top_p,
        stop=opts.stop,
        seed=opts.seed,
        format=_format(obj.get("format")),
        think=parse_think(obj.get("think")),
        stream=_stream(obj.get("stream")),
        **extra,
    )


def parse_chat(body: bytes) -> ChatRequest:
    """A ``POST /api/chat`` body (OL ``api/types.go`` ``ChatRequest``) as a ChatRequest.

    Empty ``messages`` gives a request with no messages: the load call (:func:`is_load`).

    Raises:
        ChatError: ``invalid_request`` (400), its message naming the offending field.
    """
    obj = decode_body(body)
    model = parse_model(obj)
    messages = _messages(obj.get("messages"))
    return _request(
        obj, model, messages, tools=parse_tools(obj.get("tools")), dialect="ollama_chat"
    )


def _refuse_generate_fields(obj: Mapping[str, object]) -> None:
    """Fields of ``/api/generate`` chatd cannot honour (module docstring): 400, not ignored."""
    if boolean(obj.get("raw"), "raw"):
        raise invalid(
            "raw is not supported: chatd's upstreams always apply their own chat template"
        )
    if string(obj.get("template"), "template"):
        raise invalid(
            "template is not supported: chatd's upstreams always apply their own chat template"
        )
    context = obj.get("context")
    if context is not None:
        if not isinstance(context, list):
            raise invalid(f"context must be an array of integers, not {json_type(context)}")
        if context:
            raise invalid(
                "context is not supported: send the conversation as messages to /api/chat"
            )
    if string(obj.get("suffix"), "suffix"):
        raise invalid("suffix is not supported: chatd has no fill-in-the-middle upstream")


def parse_generate(body: bytes) -> ChatRequest:
    """A ``POST /api/generate`` body (OL ``GenerateRequest``) as a ChatRequest.

    ``system`` becomes a system message, ``prompt`` (with ``images``) the user message. An
    empty ``prompt`` gives a request with no messages: the load call (:func:`is_load`).

    Raises:
        ChatError: ``invalid_request`` (400), its message naming the offending field.
    """
    obj = decode_body(body)
    model = parse_model(obj)
    _refuse_generate_fields(obj)
    prompt = string(obj.get("prompt"), "prompt")
    system = string(obj.get("system"), "system")
    images_raw = obj.get("images")
    images: tuple[str, ...] = ()
    if images_raw is not None:
        if not isinstance(images_raw, list) or not all(isinstance(x, str) for x in images_raw):
            raise invalid("images must be an array of base64 strings")
        images = tuple(images_raw)
    messages: tuple[Message, ...] = ()
    if prompt:  # OL routes.go: `if req.Prompt == ""` → load, whatever else is set
        user = Message(role="user", content=prompt, images=images)
        messages = (Message(role="system", content=system), user) if system else (user,)
    return _request(obj, model, messages, dialect="ollama_generate")


def is_load(request: ChatRequest) -> bool:
    """True for Ollama's "load the model" call: answer :func:`render_load`, call nothing."""
    return not request.messages


# --- whole answers -----------------------------------------------------------------------


def _done_reason(finish_reason: str) -> str:
    """chatd's finish reason as Ollama's ``done_reason`` (module docstring)."""
    return "stop" if finish_reason == "tool_calls" else finish_reason


def _arguments(name: str, text: str) -> Any:
    """JSON-text arguments as the object Ollama's wire carries (OL §1.4)."""
    if not text.strip():
        return {}
    try:
        value = _loads(text)
    except orjson.JSONDecodeError:
        value = None
    if type(value) is not dict or not _encodable(value):
        raise ChatError(
            "bad_upstream_response",
            f"upstream tool call {name!r} has arguments that are not a JSON object "
            "chatd can re-encode",
        )
    return value


def _encodable(value: object) -> bool:
    """Whether orjson can write ``value``: it reads 1,024 levels of nesting but writes
    only 254, and these values came from an upstream."""
    try:
        _dumps(value)
    except TypeError:
        return False
    return True


def _call_json(index: int, call_id: str | None, name: str, arguments: str) -> dict[str, Any]:
    """``{"id"?, "function": {"index", "name", "arguments": {...}}}`` (OL ``types.go``)."""
    function = {"index": index, "name": name, "arguments": _arguments(name, arguments)}
    if call_id is None:
        return {"function": function}
    return {"id": call_id, "function": function}


def _final(
    out: dict[str, Any], finish_reason: str, usage: Usage | None, total_duration_ns: int
) -> dict[str, Any]:
    usage = usage or Usage()
    out["done"] = True
    out["done_reason"] = _done_reason(finish_reason)
    out["total_duration"] = total_duration_ns
    out["load_duration"] = 0
    out["prompt_eval_count"] = usage.prompt_tokens
    out["eval_count"] = usage.completion_tokens
    return out


def render_chat(
    resp: ChatResponse, *, model: str, created_at: str, total_duration_ns: int
) -> bytes:
    """A whole ``/api/chat`` answer (OL §1.4); ``model`` is the name the caller sent.

    Raises:
        ChatError: ``bad_upstream_response`` when a tool call's arguments are not a JSON
            object (Ollama's wire cannot carry them).
    """
    message: dict[str, Any] = {"role": "assistant", "content": resp.content}
    if resp.thinking:
        message["thinking"] = resp.thinking
    if resp.tool_calls:
        message["tool_calls"] = [
            _call_json(i, c.id, c.name, c.arguments) for i, c in enumerate(resp.tool_calls)
        ]
    out = {"model": model, "created_at": created_at, "message": message}
    return _dumps(_final(out, resp.finish_reason, resp.usage, total_duration_ns))


def render_generate(
    resp: ChatResponse, *, model: str, created_at: str, total_duration_ns: int
) -> bytes:
    """A whole ``/api/generate`` answer: ``response`` and a top-level ``thinking`` (OL §1.3).

    Tool calls cannot occur (``parse_generate`` sends no tools) and have no field here.
    """
    out: dict[str, Any] = {"model": model, "created_at": created_at, "response": resp.content}
    if resp.thinking:
        out["thinking"] = resp.thinking
    return _dumps(_final(out, resp.finish_reason, resp.usage, total_duration_ns))


def render_load(*, model: str, created_at: str, generate: bool = False) -> bytes:
    """The answer to the load call, as Ollama gives it (OL ``routes.go``): done at once.

    Ollama answers it with one JSON object even when ``stream`` is true, and so may chatd.
    """
    out: dict[str, Any] = {"model": model, "created_at": created_at}
    if generate:
        out["response"] = ""
    else:
        out["message"] = {"role": "assistant", "content": ""}
    out["done"] = True
    out["done_reason"] = "load"
    return _dumps(out)


def render_error(exc: ChatError) -> bytes:
    """Ollama's error body ``{"error": "<message>"}`` (OL §1.7), chatd's facts beside it.

    Send it with status ``exc.status`` (and Retry-After as the native routes do).
    """
    out: dict[str, Any] = {"error": exc.message, "type": exc.type}
    if exc.provider is not None:
        out["provider"] = exc.provider
    if exc.upstream_status is not None:
        out["upstream_status"] = exc.upstream_status
    return _dumps(out)


# --- streams -----------------------------------------------------------------------------


class _PendingCall:
    __slots__ = ("arguments", "id", "name")

    def __init__(self) -> None:
        self.id: str | None = None
        self.name: str | None = None
        self.arguments: list[str] = []


class StreamRenderer:
    """Renders one stream's events as Ollama NDJSON lines (OL §1.5); subclasses pick the
    endpoint's field names.

    Usage per stream: :meth:`event` for each delta (b"" when there is nothing to send yet),
    then :meth:`end` with the :class:`StreamEnded` and the measured duration; on a
    :class:`ChatError` at any point (from the upstream or from :meth:`event`/:meth:`end`),
    :meth:`error` gives the last line.
    """

    __slots__ = ("_arg_bytes", "_calls", "_head", "_text", "_text_end", "_think", "_think_end")

    def __init__(self, *, model: str, created_at: str) -> None:
        # The bytes every line of this stream starts with, encoded once.
        self._head = b'{"model":' + _dumps(model) + b',"created_at":' + _dumps(created_at)
        self._text, self._text_end, self._think, self._think_end = self._prefixes(self._head)
        self._calls: dict[int, _PendingCall] = {}
        self._arg_bytes = 0

    @staticmethod
    def _prefixes(head: bytes) -> tuple[bytes, bytes, bytes, bytes]:
        raise NotImplementedError

    def start(self) -> bytes:
        """Nothing opens an Ollama stream (:class:`~chatproto.DoorStream`)."""
        return b""

    def events(self, batch: Sequence[Event], served: Served) -> bytes:
        """The lines for one batch (:class:`~chatproto.DoorStream`); a batch that ends the
        stream ends with :meth:`end`, timed by ``served.elapsed_ns``."""
        last = batch[-1]
        if type(last) is StreamEnded:
            data = b"".join([self.event(ev) for ev in batch[:-1]])
            return data + self.end(last, total_duration_ns=served.elapsed_ns or 0)
        return b"".join([self.event(ev) for ev in batch])

    def event(self, ev: Event) -> bytes:
        """The NDJSON line(s) for one delta event; b"" when nothing is due yet.

        Raises:
            ChatError: ``bad_upstream_response`` when buffered tool calls exceed
                :data:`MAX_TOOL_CALLS` / :data:`MAX_TOOL_CALL_BYTES`.
            TypeError: for :class:`StreamEnded` (use :meth:`end`) or a non-event.
        """
        if isinstance(ev, TextDelta):
            text = ev.text
            return self._text + _dumps(text) + self._text_end if text else b""
        if isinstance(ev, ThinkingDelta):
            text = ev.text
            return self._think + _dumps(text) + self._think_end if text else b""
        if isinstance(ev, ToolCallDelta):
            self._buffer(ev)
            return b""
        if isinstance(ev, RawEvent):
            # The upstream's own line (same-dialect passthrough); rendered from the
            # canonical events that follow it.
            return b""
        raise TypeError(f"event() takes delta events; got {ev!r} (StreamEnded goes to end())")

    def _buffer(self, ev: ToolCallDelta) -> None:
        call = self._calls.get(ev.index)
        if call is None:
            if len(self._calls) >= MAX_TOOL_CALLS:
                raise ChatError(
                    "bad_upstream_response",
                    f"upstream streamed more than {MAX_TOOL_CALLS} tool calls",
                )
            call = self._calls[ev.index] = _PendingCall()
        # The first piece carries id and name; later pieces repeat them or send None.
        if call.id is None:
            call.id = ev.id
        if call.name is None:
            call.name = ev.name
        if ev.arguments:
            self._arg_bytes += len(ev.arguments)
            if self._arg_bytes > MAX_TOOL_CALL_BYTES:
                raise ChatError(
                    "bad_upstream_response",
                    f"upstream tool call arguments exceed {MAX_TOOL_CALL_BYTES} bytes",
                )
            call.arguments.append(ev.arguments)

    def _tool_calls(self) -> list[dict[str, Any]]:
        out = []
        for position, index in enumerate(sorted(self._calls)):
            call = self._calls[index]
            if not call.name:
                raise ChatError(
                    "bad_upstream_response", f"upstream tool call {index} has no function name"
                )
            out.append(_call_json(position, call.id, call.name, "".join(call.arguments)))
        return out

    def end(self, ev: StreamEnded, *, total_duration_ns: int) -> bytes:
        """The last line(s): buffered tool calls in one ``done: false`` chunk (as Ollama
        sends them, OL §1.5), then the ``done: true`` line with counts and durations.

        Raises:
            ChatError: ``bad_upstream_response`` when a buffered tool call has no name or
                its arguments are not a JSON object.
        """
        lines = b""
        if self._calls:
            lines = self._calls_line(self._tool_calls())
        final = _final(self._final_fields(), ev.finish_reason, ev.usage, total_duration_ns)
        return lines + self._head + b"," + _dumps(final)[1:] + b"\n"

    def _calls_line(self, calls: list[dict[str, Any]]) -> bytes:
        raise NotImplementedError

    def _final_fields(self) -> dict[str, Any]:
        raise NotImplementedError

    def error(self, exc: ChatError) -> bytes:
        """Ollama's mid-stream error line ``{"error": "..."}`` (OL §1.5); send it last."""
        return render_error(exc) + b"\n"


class ChatStreamRenderer(StreamRenderer):
    """``/api/chat`` lines: ``message.content`` / ``message.thinking`` / ``message.tool_calls``."""

    __slots__ = ()

    @staticmethod
    def _prefixes(head: bytes) -> tuple[bytes, bytes, bytes, bytes]:
        message = head + b',"message":{"role":"assistant","content":'
        end = b'},"done":false}\n'
        return message, end, message + b'"","thinking":', end

    def _calls_line(self, calls: list[dict[str, Any]]) -> bytes:
        message = {"role": "assistant", "content": "", "tool_calls": calls}
        return self._head + b',"message":' + _dumps(message) + b',"done":false}\n'

    def _final_fields(self) -> dict[str, Any]:
        # The Python client's ChatResponse requires `message` on every line.
        return {"message": {"role": "assistant", "content": ""}}


class GenerateStreamRenderer(StreamRenderer):
    """``/api/generate`` lines: ``response`` and a top-level ``thinking`` (OL §1.3).

    Tool-call events cannot occur (``parse_generate`` sends no tools); any are dropped.
    """

    __slots__ = ()

    @staticmethod
    def _prefixes(head: bytes) -> tuple[bytes, bytes, bytes, bytes]:
        end = b',"done":false}\n'
        return head + b',"response":', end, head + b',"response":"","thinking":', end

    def _buffer(self, ev: ToolCallDelta) -> None:
        pass

    def _calls_line(self, calls: list[dict[str, Any]]) -> bytes:  # pragma: no cover
        return b""

    def _final_fields(self) -> dict[str, Any]:
        return {"response": ""}


# --- the endpoints, bundled for route wiring ---------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """What one route needs, so ``/api/chat`` and ``/api/generate`` share one handler."""

    parse: Callable[[bytes], ChatRequest]
    render: Callable[..., bytes]
    """``render(resp, *, model, created_at, total_duration_ns) -> bytes``."""
    stream: type[StreamRenderer]
    generate: bool
    """Passed to :func:`render_load`."""

    def render_load(self, *, model: str, created_at: str) -> bytes:
        return render_load(model=model, created_at=created_at, generate=self.generate)


CHAT = Endpoint(parse=parse_chat, render=render_chat, stream=ChatStreamRenderer, generate=False)
GENERATE = Endpoint(
    parse=parse_generate, render=render_generate, stream=GenerateStreamRenderer, generate=True
)
ENDPOINTS: Mapping[str, Endpoint] = {"/api/chat": CHAT, "/api/generate": GENERATE}


def _created_at(ctx: CallContext) -> str:
    return format_time(ctx.received if ctx.received is not None else ctx.created)


class OllamaDoor:
    """``POST /api/chat`` or ``/api/generate`` as a :class:`~chatproto.Door`.

    The load call (:func:`is_load`) is answered by the door itself
    (:attr:`~chatproto.DoorCall.reply`); ``created_at`` is the call's arrival time, and
    ``total_duration`` the server's measure of the whole call.
    """

    name = "ollama"
    content_type = JSON_CONTENT_TYPE
    stream_content_type = NDJSON_CONTENT_TYPE
    stream_headers = ()

    __slots__ = ("_endpoint", "api")

    def __init__(self, endpoint: Endpoint, api: str) -> None:
        self._endpoint = endpoint
        self.api = api

    def parse(self, body: bytes, headers: Headers) -> DoorCall:
        chat = self._endpoint.parse(body)
        if not is_load(chat):
            return DoorCall(chat=chat)
        endpoint, model = self._endpoint, chat.model

        def reply(ctx: CallContext) -> bytes:
            return endpoint.render_load(model=model, created_at=_created_at(ctx))

        return DoorCall(chat=chat, reply=reply)

    def render(self, call: DoorCall, answer: Answer, ctx: CallContext) -> bytes:
        return self._endpoint.render(
            answer.response, model=call.chat.model, created_at=_created_at(ctx),
            total_duration_ns=answer.elapsed_ns,
        )

    def stream(self, call: DoorCall, ctx: CallContext) -> StreamRenderer:
        return self._endpoint.stream(model=call.chat.model, created_at=_created_at(ctx))

    def render_error(self, exc: ChatError) -> bytes:
        return render_error(exc)


chat_door = OllamaDoor(CHAT, "ollama_chat")
generate_door = OllamaDoor(GENERATE, "ollama_generate")


# --- model list and version --------------------------------------------------------------


def parse_tags(body: bytes) -> tuple[dict[str, Any], ...]:
    """The model entries of an upstream Ollama's ``/api/tags`` body (OL §1.8), leniently.

    A listing is advisory: a malformed body or entry yields nothing rather than an error,
    so a broken local Ollama never hides chatd's own tiers.
    """
    try:
        obj = _loads(body)
    except orjson.JSONDecodeError:
        return ()
    models = obj.get("models") if isinstance(obj, dict) else None
    if not isinstance(models, list):
        return ()
    return tuple(m for m in models
                 if isinstance(m, dict) and isinstance(m.get("name"), str) and _encodable(m))


def _tier_entry(name: str, modified_at: str) -> dict[str, Any]:
    """One tier in Ollama's model-entry shape (OL §1.8), so ``ollama.list()`` validates."""
    return {
        "name": name,
        "model": name,
        "modified_at": modified_at,
        "size": 0,
        "digest": "",
        "details": {
            "parent_model": "",
            "format": "",
            "family": "",
            "families": None,
            "parameter_size": "",
            "quantization_level": "",
        },
    }


def render_tags(
    tiers: Mapping[str, tuple[str, ...]],
    local_models: Sequence[Mapping[str, object]] = (),
    *,
    modified_at: str = ZERO_TIME,
) -> bytes:
    """``GET /api/tags``: the local Ollama's own models, then one entry per chatd tier.

    Any model name routes (SPEC §1), so the list only advertises what a client may want to
    pick from a menu. A local model whose name is also a tier's is left out: the tier wins
    routing (SPEC §1 rule 2), so listing both would show a model the name does not reach.
    """
    models: list[object] = [dict(m) for m in local_models if m.get("name") not in tiers]
    models.extend(_tier_entry(name, modified_at) for name in tiers)
    return _dumps({"models": models})


def render_version(version: str = OLLAMA_VERSION) -> bytes:
    """``GET /api/version``: ``{"version": ...}`` (OL §1.8); see :data:`OLLAMA_VERSION`."""
    return _dumps({"version": version})
