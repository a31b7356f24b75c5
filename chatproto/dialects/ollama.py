"""Ollama's native API, both ends: the ``ollama_chat`` and ``ollama_generate`` codecs
(``POST /api/chat`` for the local Ollama, ``/api/generate`` for Ollama Cloud) and the doors
that speak it to Ollama clients (``/api/chat``, ``/api/generate``, ``/api/tags``,
``/api/version``); and the rest of the API clients call, both ends too (the end of the
module): an upstream's model list, ``/api/show``, ``/api/ps``, ``/api/embed`` and the
legacy ``/api/embeddings``.

Strategy: one module owns every byte of the format, so the two directions of each mapping
sit side by side (the "both ends" section): tool-call ``arguments`` as an object on the
wire and JSON text in chatd, ``done_reason`` <-> finish reason, the ``{"error"}`` body,
the counts of the final object. Nothing here does I/O or reads a clock: ``created_at``
strings and durations are arguments.

The two endpoints differ only in where the conversation goes (``messages`` vs ``system`` +
``prompt``) and where the answer comes back (``message.content`` vs ``response``).
Everything else, the request knobs (``stream``, ``think``, ``format``, ``options``), the
headers, the final ``done`` object, the ``{"error": "..."}`` bodies, is the same wire
format (providers.md OL §1.2, §1.4, §1.7; ollama.com "acts as a remote Ollama host", OL
``cloud.mdx``) and is written once, and so is the NDJSON stream loop
(:class:`_NDJSONStream`: decode a line, its error, its ``done``); each codec's parser only
reads its own delta fields, in one method call per line (bench/core.py: within noise).

Client end, ``/api/chat``: requests map field for field onto Ollama's ``ChatRequest`` (OL
``api/types.go``). Answers are a JSON object, or NDJSON lines of the same shape ending with
a ``done: true`` object (providers.md OL §1.4, §1.5). The stream parser decodes each line
once with orjson and reads the few fields it needs inline; everything unusual (errors, tool
calls, the final object) leaves the hot path through a helper. Decisions:

- Tool-call ``arguments`` are a JSON *object* on Ollama's wire, JSON *text* in chatd (OL
  §1.4: "a JSON object, not a string (unlike OpenAI)"). Going out, the text is parsed and
  must be an object (an empty string, as OpenAI clients send for no-argument calls, is
  ``{}``); coming back, the object is serialised to compact JSON text.
- Ollama's tool calls usually carry no ``id`` (OL ``types.go``: optional), and the codec
  leaves it None rather than invent one: ``call_<index>`` would repeat on every turn of a
  conversation. Each door derives its own where a client needs one (the Ollama door from
  the history, :func:`_derived_id`; the others from their answer's id), unique across
  turns.
- A tool result without a name is sent with the ``tool_name`` of the call its
  ``tool_call_id`` answers: OpenAI clients name results by id only, Ollama by ``tool_name``
  (OL §1.2).
- ``tool_choice`` is not sent: Ollama has no such field ("NOT supported: tool_choice", OL
  ``openai-compatibility.mdx``; LiteLLM drops it because it "causes ollama requests to
  hang", LL ``ollama/chat/transformation.py``).
- After the ``done: true`` line the parser returns no more events and ignores what
  follows: Ollama writes nothing after it (OL §1.5), and a complete answer is not thrown
  away over trailing bytes a proxy may add (the loop shared with ``/api/generate``,
  :class:`_NDJSONStream`).

Client end, ``/api/generate``: SPEC §2 sends Ollama Cloud requests to ``/api/generate``
with the conversation flattened into ``system`` + ``prompt`` by :func:`flatten_messages`, a
pure function tested on its own. Answers carry ``response`` and a top-level ``thinking``
instead of a ``message`` (OL §1.3, §1.4); the stream is the same NDJSON (OL §1.5).
Decisions:

- Tools are refused (``invalid_request``): ``/api/generate`` has no ``tools`` field (OL
  §1.2), and dropping them silently would answer a tool-using caller with prose.
- ``format`` is passed through although "Ollama's Cloud currently does not support
  structured outputs" (providers.md OL §2.1, ``structured-outputs.mdx``). Dropping it would
  hand a caller who asked for JSON free text as if it were JSON; refusing it here would
  outlive the day ollama.com adds support. Passed on, the upstream decides, and a refusal
  comes back as its 400 → ``upstream_rejected`` with its own message.
- An empty prompt is refused (``invalid_request``): Ollama treats one as "load the model"
  and answers ``done_reason: "load"`` with no text (OL §1.4), which would look like a
  successful empty answer.
- Images of every message go to the top-level ``images`` in order: the endpoint has no
  per-turn images (OL §1.2).
- After the ``done: true`` line the parser ignores what follows, as the chat codec does:
  both run the loop of :class:`_NDJSONStream`.

Server end: requests become the same :class:`~chatproto.ChatRequest` the native route
builds, validated by the shared validators of :mod:`chatproto._request`, so a model name is
routed by the SPEC §1 rules like any other (``qwen3:4b`` → local, ``kimi-k2.6:cloud`` →
Ollama Cloud, ``openrouter/v/m`` → OpenRouter), and any Ollama client (the ``ollama``
Python package, the Ollama CLI) pointed at chatd reaches every routed provider. Answers and
stream events are rendered in Ollama's exact shapes (providers.md OL §1.4, §1.5, §1.7,
§1.8). Stream renderers pre-encode the bytes that are the same on every line of a stream,
so a relayed chunk costs one ``orjson.dumps`` of its text and a concatenation. Decisions:

- ``stream`` defaults to true: "``stream``: ``*bool``, omitted ⇒ streaming ON"
  (providers.md OL §1.2). The ``ollama`` Python client always sends it explicitly.
- ``think`` omitted stays None, i.e. chatd's default (SPEC §2: false for Ollama upstreams),
  not Ollama's "thinking on for capable models" (OL §1.3): SPEC §2's reason (a small
  ``num_predict`` must still give content) holds for every front door. A client that wants
  thinking sends ``think``, as the Ollama CLI does.
- ``options``: ``num_predict`` → ``max_tokens``, where zero or negative means unlimited
  (None): "``num_predict`` -1 (infinite)" (OL ``docs/modelfile.mdx``), and Ollama's runner
  enforces the limit only ``if seq.numPredict > 0`` (OL ``runner``), so 0 and -2 are
  unlimited too. ``temperature``, ``top_p``, ``stop``, ``seed`` map to chatd's fields; the
  other documented options (``top_k``, ``num_ctx``, ``repeat_penalty``, the penalties...,
  :data:`~chatproto._options.OLLAMA_OPTIONS`) and the top-level ``keep_alive``,
  ``logprobs``, ``top_logprobs`` go to ``ChatRequest.options`` under their own names, so
  an Ollama upstream gets them all and another upstream the ones it has a counterpart
  for (SPEC §2: nothing the client set is silently dropped). An undocumented option key is
  left out, as Ollama itself ignores one.
- Every other top-level field (``truncate``, ``shift``, the image-generation fields) is
  ``ChatRequest.extras``: sent unchanged to an upstream of the same endpoint, dropped
  elsewhere.
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
- Durations are nanoseconds (OL §1.4). An Ollama upstream's own (``total_duration``,
  ``load_duration``, ``prompt_eval_duration``, ``eval_duration``, carried in
  :class:`~chatproto.Usage`) are passed on as it reported them: clients compute tokens per
  second from ``eval_count / eval_duration``. From any other upstream chatd knows only the
  whole call, so ``total_duration`` is that, ``load_duration`` is 0, and
  ``prompt_eval_duration`` and ``eval_duration`` are omitted, as Ollama omits metrics it
  does not have ("All metric fields are ``omitempty``", OL §1.4).
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

from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import sha1
from typing import Any

import orjson

from .._accumulate import Accumulator
from .._codec import Codec, history_arguments
from .._decoders import LineDecoder, dumps, encode_body, loads
from .._door import Answer, CallContext, DoorCall, Served, keep_rendered, render_each
from .._embed import MAX_INPUTS, EmbedRequest, EmbedResponse, embed_vector
from .._errors import ChatError, Headers, error_from_upstream
from .._events import Event, RawEvent, StreamEnded, TextDelta, ThinkingDelta, ToolCallDelta
from .._lifecycle import StreamLifecycle
from .._models import CatalogEntry, ListedModel, list_entries, usable_id
from .._options import OLLAMA_OPTIONS, read_options
from .._request import (
    boolean,
    decode_body,
    integer,
    invalid,
    json_object,
    json_type,
    number,
    parse_format,
    parse_message,
    parse_model,
    parse_stop,
    parse_think,
    parse_tools,
    positive_int,
    string,
)
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

__all__ = [
    "CHAT",
    "ENDPOINTS",
    "GENERATE",
    "JSON_CONTENT_TYPE",
    "MAX_ERROR_MESSAGE",
    "MAX_TOOL_CALLS",
    "MAX_TOOL_CALL_BYTES",
    "NDJSON_CONTENT_TYPE",
    "OLLAMA_VERSION",
    "ZERO_TIME",
    "ChatStreamRenderer",
    "Endpoint",
    "GenerateStreamRenderer",
    "OllamaChatCodec",
    "OllamaDoor",
    "OllamaEmbedCodec",
    "OllamaGenerateCodec",
    "StreamRenderer",
    "capabilities",
    "chat_codec",
    "chat_door",
    "embed_codec",
    "flatten_messages",
    "format_time",
    "generate_codec",
    "generate_door",
    "is_load",
    "parse_chat",
    "parse_embed",
    "parse_embeddings",
    "parse_generate",
    "parse_ps",
    "parse_show",
    "parse_tags",
    "ps_request",
    "render_chat",
    "render_embed",
    "render_embeddings",
    "render_error",
    "render_generate",
    "render_load",
    "render_ps",
    "render_show",
    "render_tags",
    "render_version",
    "show_request",
    "tag_entry",
]

#: Longest upstream error text passed on. Ollama's messages are one line; a proxy in front
#: of it may answer with a whole HTML page, which helps nobody at full length.
MAX_ERROR_MESSAGE = 1000

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
_JSONDecodeError = orjson.JSONDecodeError


# --- both ends: what one end writes and the other reads ----------------------------------


def _arguments_object(text: str) -> dict[str, Any] | str:
    """JSON-text tool-call arguments as the object Ollama's wire carries (OL §1.4: "a JSON
    object, not a string (unlike OpenAI)"), or why they cannot be one. An empty string
    (OpenAI clients send it for a call without arguments) is ``{}``. The codec sends
    history through it, the door answers; each raises its own error."""
    if not text.strip():
        return {}
    try:
        value = _loads(text)
    except _JSONDecodeError:
        return "are not valid JSON"
    if type(value) is not dict:
        return "must be a JSON object"
    return value


def _call_object(
    call_id: str | None, name: str, arguments: dict[str, Any], index: int | None = None
) -> dict[str, Any]:
    """One ``tool_calls[]`` entry: ``{"id"?, "function": {"index"?, "name", "arguments":
    {...}}}`` (OL ``types.go``): what the codec sends in history and the door answers."""
    function: dict[str, Any] = {"name": name, "arguments": arguments}
    if index is not None:
        function = {"index": index, **function}
    if call_id is None:
        return {"function": function}
    return {"id": call_id, "function": function}


def _error_text(value: object) -> str:
    if isinstance(value, str):
        return value[:MAX_ERROR_MESSAGE]
    try:
        return orjson.dumps(value).decode()[:MAX_ERROR_MESSAGE]
    except TypeError:  # orjson writes 254 levels of nesting; it read up to 1,024
        return "(an error object nested too deeply to show)"


def _upstream_error_in_body(provider: str, error: object) -> ChatError:
    """An ``{"error": "..."}`` object inside a 200 answer, as an ``upstream_error`` (502).

    Ollama writes this line mid-stream once headers are out ("HTTP status stays 200 because
    headers were already sent", providers.md OL §1.5). The status was 200, so that is the
    ``upstream_status`` reported: it is what the upstream said, and it tells an operator
    the failure came inside a successful-looking answer rather than as an HTTP error.
    """
    return ChatError("upstream_error", _error_text(error), provider=provider, upstream_status=200)


def _body_error(body: bytes) -> str:
    """The message of a non-2xx body: ``{"error": "msg"}``, else the body text, else ""."""
    try:
        obj = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        obj = None
    if isinstance(obj, dict):
        error = obj.get("error")
        if error:
            return _error_text(error)
    return body.decode("utf-8", "replace").strip()[:MAX_ERROR_MESSAGE]


def render_error(exc: ChatError) -> bytes:
    """Ollama's error body ``{"error": "<message>"}`` (OL §1.7), chatd's facts beside it.

    Send it with status ``exc.status`` (and Retry-After as the native routes do).
    """
    out: dict[str, Any] = {"error": exc.message, "type": exc.type}
    if exc.provider is not None:
        out["provider"] = exc.provider
    if exc.upstream_status is not None:
        out["upstream_status"] = exc.upstream_status
    return dumps(out)


def _count(obj: dict[str, Any], key: str, provider: str) -> int:
    # "All metric fields are omitempty → absent when zero" (providers.md OL §1.4).
    value = obj.get(key, 0)
    if type(value) is not int or value < 0:
        raise _bad_response(provider, f"an invalid {key!r}")
    return value


def _duration(obj: dict[str, Any], key: str) -> int | None:
    """A duration in nanoseconds, or None: one of the wrong type is left out rather than
    failing an answer whose counts and text are fine."""
    value = obj.get(key)
    return value if type(value) is int and value >= 0 else None


def _usage(obj: dict[str, Any], provider: str) -> Usage:
    """``prompt_eval_count`` = input tokens, ``eval_count`` = output (OL ``usage.mdx``);
    the four durations, in nanoseconds, as reported (OL §1.4)."""
    return Usage(
        prompt_tokens=_count(obj, "prompt_eval_count", provider),
        completion_tokens=_count(obj, "eval_count", provider),
        total_duration_ns=_duration(obj, "total_duration"),
        load_duration_ns=_duration(obj, "load_duration"),
        prompt_eval_duration_ns=_duration(obj, "prompt_eval_duration"),
        eval_duration_ns=_duration(obj, "eval_duration"),
    )


def _finish_reason(obj: dict[str, Any], provider: str, tool_calls: bool) -> str:
    """SPEC §3's finish reason from ``done_reason``.

    ``done_reason`` is ``stop``, ``length``, ``load``/``unload`` or absent (OL §1.4: "treat
    it as optional"); only ``length`` means something to a caller, all else is ``stop``.
    Ollama says ``stop`` when the model ended with tool calls; its own OpenAI layer rewrites
    that to ``tool_calls`` (OL ``openai.go``), and so does chatd.
    """
    reason = obj.get("done_reason")
    if reason is not None and type(reason) is not str:
        raise _bad_response(provider, "a non-string 'done_reason'")
    if reason == "length":
        return "length"
    return "tool_calls" if tool_calls else "stop"


def _done_reason(finish_reason: str) -> str:
    """chatd's finish reason as Ollama's ``done_reason`` (module docstring)."""
    return "stop" if finish_reason == "tool_calls" else finish_reason


def _stream_ended(obj: dict[str, Any], provider: str, tool_calls: bool) -> StreamEnded:
    """The event for the ``done: true`` line, which alone carries usage (OL ``usage.mdx``)."""
    return StreamEnded(
        finish_reason=_finish_reason(obj, provider, tool_calls), usage=_usage(obj, provider)
    )


# --- client end: what both endpoints send and read ---------------------------------------


def _url(provider: Provider, path: str) -> str:
    """``base_url`` + ``path``; a configured trailing slash must not double up."""
    return provider.base_url.rstrip("/") + path


def _request_headers(provider: Provider, stream: bool) -> tuple[tuple[str, str], ...]:
    """Request headers: JSON in, NDJSON or JSON out, configured extras, then auth.

    Local Ollama has no auth (OL ``authentication.mdx``); ollama.com wants
    ``Authorization: Bearer $OLLAMA_API_KEY`` (OL ``authentication.mdx``). So the header is
    sent exactly when the provider has a key, and this is the one place it is revealed.
    """
    accept = "application/x-ndjson" if stream else "application/json"
    out = (("Content-Type", "application/json"), ("Accept", accept), *provider.headers)
    if provider.key is not None:
        out += (("Authorization", "Bearer " + provider.key.reveal()),)
    return out


def _request_fields(request: ChatRequest, body: dict[str, Any]) -> dict[str, Any]:
    """Add the knobs both endpoints take (OL ``api/types.go``) to ``body`` and return it.

    - ``stream`` is always sent: it is a ``*bool`` in Ollama and "omitted ⇒ streaming ON"
      (providers.md OL §1.2), so leaving it out would stream at a caller who did not ask.
    - ``think`` defaults to ``false`` (SPEC §2): thinking models otherwise think by default
      (OL ``thinking.mdx``) and a small ``max_tokens`` is spent before any content. A bool or
      a level string (``low``/``medium``/``high``/``max``) is passed through as given.
    - ``format`` is ``"json"`` or a JSON-schema object, passed through (OL §1.2).
    - ``max_tokens`` → ``options.num_predict``, and ``temperature``, ``top_p``, ``stop``,
      ``seed`` under ``options`` (OL ``docs/modelfile.mdx``), with every one of
      :data:`~chatproto._options.OLLAMA_OPTIONS` the request's ``options`` hold
      (``top_k``, ``num_ctx``, ``repeat_penalty``, the penalties...); ``options`` is
      omitted when empty so the model's Modelfile defaults apply. ``keep_alive``,
      ``logprobs`` and ``top_logprobs`` go at the top level, where Ollama has them.
    """
    body["stream"] = request.stream
    body["think"] = False if request.think is None else request.think
    if request.format is not None:
        body["format"] = request.format
    options: dict[str, Any] = {}
    if request.max_tokens is not None:
        options["num_predict"] = request.max_tokens
    if request.temperature is not None:
        options["temperature"] = request.temperature
    if request.top_p is not None:
        options["top_p"] = request.top_p
    if request.stop:
        options["stop"] = request.stop
    if request.seed is not None:
        options["seed"] = request.seed
    extra = request.options
    if extra:
        for name in OLLAMA_OPTIONS:
            if name in extra:
                options[name] = extra[name]
        for name in _TOP_LEVEL_OPTIONS:
            if name in extra:
                body[name] = extra[name]
    if options:
        body["options"] = options
    return body


#: ``ChatRequest.options`` Ollama takes at the top level of a request rather than in its
#: ``options`` (providers.md §1.2: ``keep_alive``, ``logprobs``, ``top_logprobs``).
_TOP_LEVEL_OPTIONS = ("keep_alive", "logprobs", "top_logprobs")


def _with_extras(request: ChatRequest, api: str, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` after the client's uninterpreted fields, when the client spoke ``api``
    itself (SPEC §2: the same dialect loses nothing); chatd's own fields win."""
    if request.dialect == api and request.extras:
        return {**request.extras, **body}
    return body


def _bad_response(provider: str, what: str) -> ChatError:
    """A 2xx body or stream line that is not the shape Ollama documents (SPEC §4: 502)."""
    return ChatError("bad_upstream_response", f"upstream sent {what}", provider=provider)


def _answer_object(body: bytes, provider: str) -> dict[str, Any]:
    """A non-streamed 2xx body as its JSON object, after the checks both APIs share.

    An ``{"error": …}`` body is the upstream's error even under a 2xx. A whole answer ends
    with ``done: true`` (providers.md OL §1.4); one that says ``done: false`` is a fragment
    (a streamed line where a whole answer was asked for), not a finished answer; ``done``
    left out is tolerated.
    """
    obj = loads(body, provider)
    if type(obj) is not dict:
        raise _bad_response(provider, "a body that is not a JSON object")
    error = obj.get("error")
    if error:
        raise _upstream_error_in_body(provider, error)
    if obj.get("done") is False:
        raise _bad_response(provider, "an answer marked done: false (a fragment)")
    return obj


def _http_request(provider: Provider, path: str, body: dict[str, Any], stream: bool
                 ) -> HTTPRequest:
    """The POST both APIs make: ``path`` under the provider's base URL, JSON body."""
    return HTTPRequest(
        method="POST",
        url=_url(provider, path),
        headers=_request_headers(provider, stream),
        body=encode_body(body, provider.name),
        stream=stream,
    )


def _malformed_line(provider: str, exc: orjson.JSONDecodeError) -> ChatError:
    return _bad_response(provider, f"a malformed JSON line in its stream: {exc}")


def _eof_before_done(provider: str) -> ChatError:
    """The body ended without the ``done: true`` object, Ollama's only end marker.

    "no terminator line — the last object has ``done: true``" (providers.md OL §1.5): without
    it the answer may be cut anywhere, so it is not passed off as complete.
    """
    return _bad_response(provider, "a stream that ended before done")


def _parse_error(
    provider: str, status: int, headers: Headers, body: bytes, *, now: float
) -> ChatError:
    """A non-2xx answer → SPEC §4 error, by status alone, with Ollama's message.

    "Body is always ``{"error":"<message>"}``" (providers.md OL §1.7), but a proxy in front
    may send text or nothing; the text is then passed on as is (or a generic message).
    Ollama never sends ``Retry-After`` (OL §1.7) but a proxy may, so it is still read.
    """
    return error_from_upstream(provider, status, _body_error(body), headers, now=now)


class _OllamaCodec:
    """What the chat, generate and embed codecs share: Ollama's error bodies."""

    __slots__ = ()

    def parse_error(
        self, provider: str, status: int, headers: Headers, body: bytes, *, now: float
    ) -> ChatError:
        return _parse_error(provider, status, headers, body, now=now)


def _text_field(obj: dict[str, Any], key: str, provider: str) -> str:
    """An optional string field: missing or null is "", anything but a string is an error."""
    value = obj.get(key)
    if value is None:
        return ""
    if type(value) is not str:
        raise _bad_response(provider, f"a non-string {key!r}")
    return value


class _NDJSONStream(StreamLifecycle):
    """The NDJSON loop of both endpoints; the lifecycle is
    :class:`~chatproto._lifecycle.StreamLifecycle`'s.

    Each line is decoded once with orjson; an ``error`` line raises, a ``done: true`` line
    is the terminator (it ends the stream with usage), and everything between is the
    subclass's :meth:`_deltas`. What follows the ``done: true`` line is dropped: Ollama
    writes nothing after it (OL §1.5), and a complete answer is not thrown away over
    trailing bytes a proxy may add.

    With ``passthrough``, each decoded line (error lines aside) is emitted as a
    :class:`RawEvent` of the codec's :attr:`api` before its canonical events.
    """

    __slots__ = ("_lines", "_raw")

    #: The dialect named by the RawEvents (the codec's ``api``).
    api = ""

    def __init__(self, provider: str, *, passthrough: bool = False) -> None:
        super().__init__(provider)
        self._lines = LineDecoder(provider=provider)
        self._raw = passthrough

    @abstractmethod
    def _deltas(self, obj: dict[str, Any], out: list[Event]) -> None:
        """Append the events of one stream object (not an error line) to ``out``."""

    def _ended(self, obj: dict[str, Any]) -> StreamEnded:
        """The event for the ``done: true`` line; finish is ``tool_calls`` only if the
        subclass says it saw some."""
        return _stream_ended(obj, self._provider, False)

    def _parse(self, data: bytes, out: list[Event]) -> None:
        raw = self._raw
        for line in self._lines.feed(data):
            try:
                obj = _loads(line)
            except _JSONDecodeError as exc:
                raise _malformed_line(self._provider, exc) from None
            if type(obj) is not dict:
                raise _bad_response(self._provider, "a stream line that is not an object")
            error = obj.get("error")
            if error:
                # "a line {"error": "..."}; HTTP status stays 200" (providers.md OL §1.5).
                raise _upstream_error_in_body(self._provider, error)
            if raw:
                out.append(RawEvent(dialect=self.api, data=obj))
            self._deltas(obj, out)
            if obj.get("done") is True:
                self._terminate(out, self._ended(obj))
                return
        if not data:
            raise _eof_before_done(self._provider)


# --- client end: /api/chat ---------------------------------------------------------------


def _history_call(call: ToolCall) -> dict[str, Any]:
    """A tool call of an assistant turn in history, its arguments the object Ollama wants
    (OL §1.4); arguments that are not a JSON object go wrapped
    (:func:`~chatproto._codec.history_arguments`) so one broken call does not make every
    later turn a 400."""
    return _call_object(call.id, call.name, history_arguments(call.arguments))


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
        out["tool_calls"] = [_history_call(call) for call in message.tool_calls]
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


def _tool_call(raw: object, index: int, provider: str) -> tuple[str | None, str, str]:
    """``(id or None, name, arguments JSON text)`` of one returned tool call.

    Shape: ``{"id"?, "function": {"index"?, "name", "arguments": {...}}}`` (OL ``types.go``).
    """
    if type(raw) is not dict:
        raise _bad_response(provider, "a tool call that is not an object")
    function = raw.get("function")
    if type(function) is not dict:
        raise _bad_response(provider, "a tool call without a function object")
    name = function.get("name")
    if type(name) is not str or not name:
        raise _bad_response(provider, "a tool call without a name")
    arguments = function.get("arguments")
    if arguments is None:
        text = "{}"
    elif type(arguments) is dict:
        try:
            text = dumps(arguments).decode()
        except TypeError:  # orjson writes 254 levels of nesting; it read up to 1,024
            raise _bad_response(provider, "tool call arguments nested too deeply") \
                from None
    else:
        raise _bad_response(provider, "tool call arguments that are not an object")
    call_id = raw.get("id")
    if not call_id:
        call_id = None  # none given: the door derives one (module docstring)
    elif type(call_id) is not str:
        raise _bad_response(provider, "a non-string tool call id")
    return call_id, name, text


def _tool_calls(
    message: dict[str, Any], provider: str, start: int
) -> list[tuple[str | None, str, str]]:
    raw = message.get("tool_calls")
    if not raw:
        return []
    if type(raw) is not list:
        raise _bad_response(provider, "'tool_calls' that is not a list")
    return [_tool_call(call, start + i, provider) for i, call in enumerate(raw)]


class _ChatStream(_NDJSONStream):
    """Parses ``/api/chat`` NDJSON into events: ``message.thinking``, ``message.content``,
    ``message.tool_calls`` (OL §1.4); the loop is :class:`_NDJSONStream`."""

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
            raise _bad_response(self._provider, "a non-object 'message'")
        thinking = message.get("thinking")
        if thinking is not None:
            if type(thinking) is not str:
                raise _bad_response(self._provider, "a non-string 'thinking'")
            if thinking:
                out.append(ThinkingDelta(text=thinking))
        text = message.get("content")
        if text is not None:
            if type(text) is not str:
                raise _bad_response(self._provider, "a non-string 'content'")
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
        return _stream_ended(obj, self._provider, self._tools > 0)


class OllamaChatCodec(_OllamaCodec):
    """Ollama ``/api/chat``; see the module docstring for the decisions it makes."""

    __slots__ = ()

    api = "ollama_chat"

    def build_request(self, request: ChatRequest, route: Route, provider: Provider) -> HTTPRequest:
        names: dict[str, str] = {}
        body: dict[str, Any] = {
            "model": route.upstream_model,
            "messages": [_message_json(m, names) for m in request.messages],
        }
        _request_fields(request, body)
        if request.tools:
            # Ollama takes OpenAI's {type:"function", function:{name, description,
            # parameters}} shape as is (providers.md OL §1.2).
            body["tools"] = request.tools
        return _http_request(provider, "/api/chat", _with_extras(request, self.api, body),
                             request.stream)

    def parse_response(
        self, provider: str, body: bytes, *, passthrough: bool = False
    ) -> ChatResponse:
        obj = _answer_object(body, provider)
        message = obj.get("message")
        if type(message) is not dict:
            raise _bad_response(provider, "a body without a 'message' object")
        calls = _tool_calls(message, provider, 0)
        return ChatResponse(
            content=_text_field(message, "content", provider),
            finish_reason=_finish_reason(obj, provider, bool(calls)),
            usage=_usage(obj, provider),
            thinking=_text_field(message, "thinking", provider) or None,
            tool_calls=tuple([ToolCall(id=i, name=n, arguments=a) for i, n, a in calls])
            if calls
            else (),
            raw=obj if passthrough else None,
            dialect=self.api if passthrough else None,
        )

    def stream_parser(self, provider: str, *, passthrough: bool = False) -> _ChatStream:
        return _ChatStream(provider, passthrough=passthrough)


chat_codec: Codec = OllamaChatCodec()


# --- client end: /api/generate -----------------------------------------------------------


_LABELS = {"user": "User", "assistant": "Assistant", "tool": "Tool result"}


def _turn(message: Message, names: dict[str, str]) -> str:
    role = message.role
    label = _LABELS.get(role) or role.capitalize()
    text = message.content
    if message.tool_calls:
        calls = [f"[tool call: {call.name} {call.arguments}]" for call in message.tool_calls]
        text = "\n".join([text, *calls] if text else calls)
        names.update((call.id, call.name) for call in message.tool_calls if call.id is not None)
    elif role == "tool":
        name = message.name
        if name is None and message.tool_call_id is not None:
            name = names.get(message.tool_call_id)
        if name:
            label = f"{label} ({name})"
    return f"{label}: {text}" if text else f"{label}:"


def flatten_messages(messages: Sequence[Message]) -> tuple[str, str]:
    """A conversation as ``(system, prompt)`` for ``/api/generate``.

    ``system`` is every non-empty system message, in order, joined by a blank line: it
    goes to the ``system`` field, which the model's template places where a chat's system
    message would go.

    ``prompt`` is what the model continues. The template wraps it as one user turn, so:

    - a lone user message (the common case) is sent as is, exactly what ``/api/chat``
      would give the model, with no labels to confuse it;
    - otherwise each turn is rendered ``User: …``, ``Assistant: …``, ``Tool result
      (<name>): …`` (assistant tool calls as ``[tool call: <name> <arguments>]`` lines; a
      result without a name takes its call's, found by ``tool_call_id``),
      turns separated by a blank line, the transcript convention models follow best; it
      ends with ``Assistant:`` so the model answers as the assistant, unless the last turn
      already is the assistant's, which the model then continues (the prefill ``/api/chat``
      also honours). Earlier ``thinking`` is left out, as chat templates leave it out.

    No messages besides system ones give an empty prompt.
    """
    system = "\n\n".join(m.content for m in messages if m.role == "system" and m.content)
    turns = [m for m in messages if m.role != "system"]
    if not turns:
        return system, ""
    if len(turns) == 1 and turns[0].role == "user" and not turns[0].tool_calls:
        return system, turns[0].content
    names: dict[str, str] = {}  # tool call id -> function name, to label the results
    parts = [_turn(m, names) for m in turns]
    if turns[-1].role != "assistant":
        parts.append("Assistant:")
    return system, "\n\n".join(parts)


class _GenerateStream(_NDJSONStream):
    """Parses ``/api/generate`` NDJSON into events: top-level ``thinking`` and
    ``response`` (OL §1.3, §1.4); the loop is :class:`_NDJSONStream`."""

    __slots__ = ()

    api = "ollama_generate"

    def _deltas(self, obj: dict[str, Any], out: list[Event]) -> None:
        thinking = obj.get("thinking")
        if thinking is not None:
            if type(thinking) is not str:
                raise _bad_response(self._provider, "a non-string 'thinking'")
            if thinking:
                out.append(ThinkingDelta(text=thinking))
        text = obj.get("response")
        if text is not None:
            if type(text) is not str:
                raise _bad_response(self._provider, "a non-string 'response'")
            if text:
                out.append(TextDelta(text=text))


class OllamaGenerateCodec(_OllamaCodec):
    """Ollama ``/api/generate``; see the module docstring for the decisions it makes."""

    __slots__ = ()

    api = "ollama_generate"

    def build_request(self, request: ChatRequest, route: Route, provider: Provider) -> HTTPRequest:
        # route.upstream_model already has ":cloud"/"-cloud" removed: routing owns that
        # (SPEC §1 rules 4 and 8).
        if request.tools:
            raise ChatError(
                "invalid_request",
                f"provider {provider.name!r} calls Ollama's /api/generate, which takes no "
                "tools; send tool requests to a chat provider",
            )
        system, prompt = flatten_messages(request.messages)
        if not prompt:
            raise ChatError(
                "invalid_request",
                f"provider {provider.name!r} needs a non-empty user or assistant message: "
                "Ollama's /api/generate treats an empty prompt as a request to load the model",
            )
        body: dict[str, Any] = {"model": route.upstream_model, "prompt": prompt}
        if system:
            body["system"] = system
        images = [image for m in request.messages for image in m.images]
        if images:
            body["images"] = images
        _request_fields(request, body)
        return _http_request(provider, "/api/generate", _with_extras(request, self.api, body),
                             request.stream)

    def parse_response(
        self, provider: str, body: bytes, *, passthrough: bool = False
    ) -> ChatResponse:
        obj = _answer_object(body, provider)
        if type(obj.get("response")) is not str:
            raise _bad_response(provider, "a body without a 'response' string")
        return ChatResponse(
            content=obj["response"],
            finish_reason=_finish_reason(obj, provider, False),
            usage=_usage(obj, provider),
            thinking=_text_field(obj, "thinking", provider) or None,
            raw=obj if passthrough else None,
            dialect=self.api if passthrough else None,
        )

    def stream_parser(self, provider: str, *, passthrough: bool = False) -> _GenerateStream:
        return _GenerateStream(provider, passthrough=passthrough)


generate_codec: Codec = OllamaGenerateCodec()


# --- server end: requests ----------------------------------------------------------------


def format_time(epoch_seconds: float) -> str:
    """``created_at`` as Ollama writes it (Go RFC 3339, UTC): ``2025-07-07T20:32:53.844124Z``.

    Pure: the caller reads the clock (``time.time()``) and passes it in.
    """
    when = datetime.fromtimestamp(epoch_seconds, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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
    return _with_tool_ids(out)


def _derived_id(turn: int, index: int, call: ToolCall) -> str:
    """A call id from where the call sits in the history (``turn``: the assistant
    message's position in ``messages``; ``index``: the call's among its tool calls) and
    what it is: the same history resent on the next turn gets the same ids, and no two
    calls share one, on any turn. The door answers an upstream call that has no id with
    the id this gives for the place the answer takes in the client's next request, so a
    client that echoes the id and one that drops it name the same call."""
    digest = sha1(f"{turn}:{index}:{call.name}:{call.arguments}".encode(), usedforsecurity=False)
    return f"call_{digest.hexdigest()[:24]}"


def _with_tool_ids(messages: list[Message]) -> tuple[Message, ...]:
    """SPEC §2: "Tool calls keep their ids across dialects. Where a client omits them
    (Ollama clients do), chatd derives stable ids so a tool result still names the call
    it answers." An OpenAI-family upstream refuses an assistant ``tool_calls`` entry
    without ``id`` and a tool message without ``tool_call_id`` (OAI API reference).

    A result without an id answers the unanswered call of the latest assistant turn with
    its ``tool_name``, else the first unanswered one (Ollama's own order).
    """
    out: list[Message] = []
    unanswered: list[ToolCall] = []
    for turn, message in enumerate(messages):
        if message.role == "assistant" and message.tool_calls:
            parts: list[Any] = []
            calls: list[ToolCall] = []
            for part in message.parts:
                if type(part) is ToolCall:
                    if not part.id:
                        part = ToolCall(id=_derived_id(turn, len(calls), part),
                                        name=part.name, arguments=part.arguments)
                    calls.append(part)
                parts.append(part)
            message = Message(role=message.role, parts=tuple(parts),
                              tool_call_id=message.tool_call_id, name=message.name,
                              is_error=message.is_error)
            unanswered = calls
        elif message.role == "tool":
            if message.tool_call_id is None and unanswered:
                k = next((k for k, c in enumerate(unanswered) if c.name == message.name), 0)
                call = unanswered.pop(k)
                message = Message(role="tool", parts=message.parts, tool_call_id=call.id,
                                  name=message.name or call.name, is_error=message.is_error)
            else:
                unanswered = [c for c in unanswered if c.id != message.tool_call_id]
        out.append(message)
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
    rest: Mapping[str, JSON] | None = None
    """The other documented options, by name (``ChatRequest.options``)."""


def _options(value: object) -> _Options:
    """The ``options`` object: five map to chatd's fields, the documented rest
    (:data:`~chatproto._options.OLLAMA_OPTIONS`) to ``ChatRequest.options``; see the
    module docstring."""
    if value is None:
        return _Options()
    value = json_object(value, "options")
    num_predict = integer(value.get("num_predict"), "options.num_predict")
    return _Options(
        # "num_predict -1 (infinite)" (OL modelfile.mdx); the runner limits only when > 0.
        max_tokens=num_predict if num_predict is not None and num_predict > 0 else None,
        temperature=number(value.get("temperature"), "options.temperature"),
        top_p=number(value.get("top_p"), "options.top_p"),
        stop=parse_stop(value.get("stop"), "options.stop"),
        seed=integer(value.get("seed"), "options.seed"),
        rest=read_options(value, OLLAMA_OPTIONS, {}, prefix="options."),
    )


#: Top-level fields of both endpoints that the door reads (OL ``api/types.go``); the
#: client's other fields (``truncate``, ``shift``...) are ``ChatRequest.extras``.
_READ = frozenset({
    "model", "messages", "tools", "format", "think", "stream", "options", "keep_alive",
    "logprobs", "top_logprobs", "prompt", "system", "images", "raw", "template", "context",
    "suffix",
})


def _stream(value: object) -> bool:
    # "stream: *bool, omitted ⇒ streaming ON" (providers.md OL §1.2).
    flag = boolean(value, "stream")
    return True if flag is None else flag


def _request(
    obj: Mapping[str, object], model: str, messages: tuple[Message, ...], **extra: Any
) -> ChatRequest:
    opts = _options(obj.get("options"))
    options = read_options(obj, ("keep_alive", "logprobs", "top_logprobs"),
                           dict(opts.rest or {}))
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
        options=options,
        extras={k: v for k, v in obj.items() if k not in _READ},
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


# --- server end: whole answers -----------------------------------------------------------


def _encodable(value: object) -> bool:
    """Whether orjson can write ``value``: it reads 1,024 levels of nesting but writes
    only 254, and these values came from an upstream."""
    try:
        dumps(value)
    except TypeError:
        return False
    return True


def _answer_call(
    index: int, call_id: str | None, name: str, arguments: str, turn: int
) -> dict[str, Any]:
    """A tool call of an answer, numbered by its position (OL ``types.go``); one without
    an id gets :func:`_derived_id`'s for ``turn``, the answer's place in the history.

    Raises:
        ChatError: ``bad_upstream_response`` when the upstream's arguments are not a JSON
            object (Ollama's wire cannot carry them) or nest deeper than orjson writes.
    """
    value = _arguments_object(arguments)
    if isinstance(value, str) or not _encodable(value):
        raise ChatError(
            "bad_upstream_response",
            f"upstream tool call {name!r} has arguments that are not a JSON object "
            "chatd can re-encode",
        )
    if call_id is None:
        call_id = _derived_id(turn, index, ToolCall(id=None, name=name, arguments=arguments))
    return _call_object(call_id, name, value, index)


def _final(
    out: dict[str, Any], finish_reason: str, usage: Usage | None, total_duration_ns: int
) -> dict[str, Any]:
    usage = usage or _NO_USAGE
    out["done"] = True
    out["done_reason"] = _done_reason(finish_reason)
    reported = usage.total_duration_ns
    out["total_duration"] = total_duration_ns if reported is None else reported
    out["load_duration"] = usage.load_duration_ns or 0
    out["prompt_eval_count"] = usage.prompt_tokens
    if usage.prompt_eval_duration_ns is not None:
        out["prompt_eval_duration"] = usage.prompt_eval_duration_ns
    out["eval_count"] = usage.completion_tokens
    if usage.eval_duration_ns is not None:
        out["eval_duration"] = usage.eval_duration_ns
    return out


_NO_USAGE = Usage()


def render_chat(
    resp: ChatResponse, *, model: str, created_at: str, total_duration_ns: int, turn: int = 0
) -> bytes:
    """A whole ``/api/chat`` answer (OL §1.4); ``model`` is the name the caller sent,
    ``turn`` the number of messages the request held (where the answer goes next).

    Raises:
        ChatError: ``bad_upstream_response`` when a tool call's arguments are not a JSON
            object (Ollama's wire cannot carry them).
    """
    message: dict[str, Any] = {"role": "assistant", "content": resp.content}
    if resp.thinking:
        message["thinking"] = resp.thinking
    if resp.tool_calls:
        message["tool_calls"] = [
            _answer_call(i, c.id, c.name, c.arguments, turn)
            for i, c in enumerate(resp.tool_calls)
        ]
    out = {"model": model, "created_at": created_at, "message": message}
    return dumps(_final(out, resp.finish_reason, resp.usage, total_duration_ns))


def render_generate(
    resp: ChatResponse, *, model: str, created_at: str, total_duration_ns: int, turn: int = 0
) -> bytes:
    """A whole ``/api/generate`` answer: ``response`` and a top-level ``thinking`` (OL §1.3).

    Tool calls cannot occur (``parse_generate`` sends no tools) and have no field here.
    """
    out: dict[str, Any] = {"model": model, "created_at": created_at, "response": resp.content}
    if resp.thinking:
        out["thinking"] = resp.thinking
    return dumps(_final(out, resp.finish_reason, resp.usage, total_duration_ns))


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
    return dumps(out)


# --- server end: streams -----------------------------------------------------------------


class StreamRenderer:
    """Renders one stream's events as Ollama NDJSON lines (OL §1.5); subclasses pick the
    endpoint's field names.

    Usage per stream: :meth:`event` for each delta (b"" when there is nothing to send yet),
    then :meth:`end` with the :class:`StreamEnded` and the measured duration; on a
    :class:`ChatError` at any point (from the upstream or from :meth:`event`/:meth:`end`),
    :meth:`error` gives the last line.
    """

    __slots__ = ("_calls", "_head", "_text", "_text_end", "_think", "_think_end", "_turn")

    def __init__(self, *, model: str, created_at: str, turn: int = 0) -> None:
        self._turn = turn
        """The request's message count: where the answer goes in the next request."""
        # The bytes every line of this stream starts with, encoded once.
        self._head = b'{"model":' + dumps(model) + b',"created_at":' + dumps(created_at)
        self._text, self._text_end, self._think, self._think_end = self._prefixes(self._head)
        self._calls = Accumulator(
            max_tool_calls=MAX_TOOL_CALLS, max_tool_call_bytes=MAX_TOOL_CALL_BYTES
        )

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
            data = render_each(self.event, batch[:-1])
            try:
                return data + self.end(last, total_duration_ns=served.elapsed_ns or 0)
            except Exception as exc:
                keep_rendered(exc, (data,))  # the lines before the failure go first
                raise
        return render_each(self.event, batch)

    def event(self, ev: Event) -> bytes:
        """The NDJSON line(s) for one delta event; b"" when nothing is due yet.

        Raises:
            ChatError: ``bad_upstream_response`` when buffered tool calls exceed
                :data:`MAX_TOOL_CALLS` / :data:`MAX_TOOL_CALL_BYTES`.
            TypeError: for :class:`StreamEnded` (use :meth:`end`) or a non-event.
        """
        if isinstance(ev, TextDelta):
            text = ev.text
            return self._text + dumps(text) + self._text_end if text else b""
        if isinstance(ev, ThinkingDelta):
            text = ev.text
            return self._think + dumps(text) + self._think_end if text else b""
        if isinstance(ev, ToolCallDelta):
            self._buffer(ev)
            return b""
        if isinstance(ev, RawEvent):
            # The upstream's own line (same-dialect passthrough); rendered from the
            # canonical events that follow it.
            return b""
        raise TypeError(f"event() takes delta events; got {ev!r} (StreamEnded goes to end())")

    def _buffer(self, ev: ToolCallDelta) -> None:
        self._calls.feed(ev)

    def _tool_calls(self) -> list[dict[str, Any]]:
        return [_answer_call(position, call.id, call.name, call.arguments, self._turn)
                for position, call in enumerate(self._calls.tool_calls())]

    def end(self, ev: StreamEnded, *, total_duration_ns: int) -> bytes:
        """The last line(s): buffered tool calls in one ``done: false`` chunk (as Ollama
        sends them, OL §1.5), then the ``done: true`` line with counts and durations.

        Raises:
            ChatError: ``bad_upstream_response`` when a buffered tool call has no name or
                its arguments are not a JSON object.
        """
        lines = b""
        if self._calls.has_tool_calls:
            lines = self._calls_line(self._tool_calls())
        final = _final(self._final_fields(), ev.finish_reason, ev.usage, total_duration_ns)
        return lines + self._head + b"," + dumps(final)[1:] + b"\n"

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
        return self._head + b',"message":' + dumps(message) + b',"done":false}\n'

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


# --- server end: the doors ---------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """What one route needs, so ``/api/chat`` and ``/api/generate`` share one handler."""

    parse: Callable[[bytes], ChatRequest]
    render: Callable[..., bytes]
    """``render(resp, *, model, created_at, total_duration_ns, turn) -> bytes``."""
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
            total_duration_ns=answer.elapsed_ns, turn=len(call.chat.messages),
        )

    def stream(self, call: DoorCall, ctx: CallContext) -> StreamRenderer:
        return self._endpoint.stream(model=call.chat.model, created_at=_created_at(ctx),
                                     turn=len(call.chat.messages))

    def render_error(self, exc: ChatError) -> bytes:
        return render_error(exc)


chat_door = OllamaDoor(CHAT, "ollama_chat")
generate_door = OllamaDoor(GENERATE, "ollama_generate")


# --- server end: model list and version --------------------------------------------------


def render_tags(entries: Sequence[CatalogEntry]) -> bytes:
    """``GET /api/tags``: one entry per usable name (:func:`chatproto._models.catalog`,
    SPEC §3), with both ``name`` and ``model`` (OL §1.8; Open WebUI merges by ``model``).

    A model an upstream Ollama listed keeps its own entry (size, digest, details) under the
    name chatd routes to it; a tier is listed also as ``<tier>:latest``, the name Ollama
    clients such as Open WebUI make of a name without a tag, and which langchain-ollama's
    model check (``m.startswith(name + ":")``) then finds for the bare tier too.
    """
    models: list[object] = []
    for entry in entries:
        models.append(tag_entry(entry.name, entry.listed))
        models.extend(tag_entry(alias) for alias in entry.aliases)
    return dumps({"models": models})


def render_version(version: str = OLLAMA_VERSION) -> bytes:
    """``GET /api/version``: ``{"version": ...}`` (OL §1.8); see :data:`OLLAMA_VERSION`."""
    return dumps({"version": version})


# =========================================================================================
# The rest of Ollama's API, both ends: /api/tags (the list an upstream Ollama gives),
# /api/show, /api/ps, /api/embed and the legacy /api/embeddings (OL ``docs/api.md``,
# ``api/types.go``; providers.md §1.8, demand.md "Ollama api/types.go").
#
# - /api/tags entries carry both ``name`` and ``model`` (Open WebUI merges by ``model``,
#   older clients read ``name``); an upstream's entry is re-rendered from its documented
#   fields only, so nothing deeper than them is ever re-encoded.
# - /api/show for a model chatd routes elsewhere has no Modelfile to show: the answer is
#   synthesized from what chatd knows (``capabilities``: ``completion``, and ``tools``
#   where the wire format carries tools; ``details.family`` names the provider), so
#   Continue and litellm, which call it before chatting, go on to chat.
# - /api/embed ``{"model", "input": str | [str], "truncate", "options", "keep_alive",
#   "dimensions"}`` -> ``{"model", "embeddings": [[...]], "total_duration",
#   "load_duration", "prompt_eval_count"}``; /api/embeddings ``{"model", "prompt"}`` ->
#   ``{"embedding": [...]}``.
# =========================================================================================


_ENTRY_STR_DETAILS = ("parent_model", "format", "family", "parameter_size", "quantization_level")


def _entry_details(value: object) -> dict[str, Any]:
    """An entry's ``details`` with only the documented fields, each of its type (an
    upstream's entry is re-encoded, so nothing deeper than these strings is kept)."""
    src = value if isinstance(value, dict) else {}
    out: dict[str, Any] = {k: src[k] if isinstance(src.get(k), str) else ""
                           for k in _ENTRY_STR_DETAILS}
    families = src.get("families")
    out["families"] = (
        [f for f in families if isinstance(f, str)] if isinstance(families, list) else None
    )
    return out


def _model_entry(name: str, src: Mapping[str, object], extra: Sequence[str] = ()) -> dict[str, Any]:
    """One model entry of a list: the documented fields of ``src``, named ``name``."""
    size = src.get("size")
    entry: dict[str, Any] = {
        "name": name,
        "model": name,
        "modified_at": src["modified_at"] if isinstance(src.get("modified_at"), str)
        else ZERO_TIME,
        "size": size if isinstance(size, int) and not isinstance(size, bool) else 0,
        "digest": src["digest"] if isinstance(src.get("digest"), str) else "",
        "details": _entry_details(src.get("details")),
    }
    for key in extra:
        value = src.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool):
            entry[key] = value
    return entry


def tag_entry(name: str, listed: ListedModel | None = None) -> dict[str, Any]:
    """``name`` as an ``/api/tags`` entry: the upstream's own entry when it listed one
    (an Ollama's ``details``, ``size``), else the same shape with zero values, so
    ``ollama.list()`` validates it."""
    src = listed.entry if listed is not None and listed.entry is not None else {}
    return _model_entry(name, src)


# --- /api/tags -----------------------------------------------------------------------------

def _listed_models(provider: str, body: bytes, limit: int, extra: Sequence[str] = ()
                   ) -> tuple[ListedModel, ...]:
    """The entries of an upstream's ``{"models": [...]}``, each by its ``model`` (else
    ``name``), at most ``limit`` of them; an entry without a usable name is skipped."""
    out: list[ListedModel] = []
    for item in list_entries(provider, body, "models"):
        if len(out) >= limit:
            break
        name = usable_id(item.get("model")) or usable_id(item.get("name"))
        if name is not None:
            out.append(ListedModel(id=name, entry=_model_entry(name, item, extra)))
    return tuple(out)


def parse_tags(provider: str, body: bytes, *, limit: int) -> tuple[ListedModel, ...]:
    """An upstream Ollama's ``/api/tags``: each entry's ``model`` (else ``name``), at most
    ``limit`` of them; an entry without a usable name is skipped."""
    return _listed_models(provider, body, limit)


# --- /api/show -----------------------------------------------------------------------------

def parse_show(body: bytes) -> tuple[str, bool]:
    """A client's ``/api/show`` body: ``(model, verbose)``. ``model`` wins over the older
    ``name`` (OL ``api/types.go`` ``ShowRequest``: ``Name`` is deprecated)."""
    obj = decode_body(body)
    if obj.get("model") is None and obj.get("name") is not None:
        obj = {**obj, "model": obj["name"]}
    return parse_model(obj), bool(boolean(obj.get("verbose"), "verbose"))


def show_request(provider: Provider, route: Route, *, verbose: bool) -> HTTPRequest:
    """``POST {base}/api/show`` for the routed model."""
    body: dict[str, JSON] = {"model": route.upstream_model}
    if verbose:
        body["verbose"] = True
    return HTTPRequest(method="POST", url=_url(provider, "/api/show"),
                       headers=_request_headers(provider, False), body=dumps(body))


def capabilities(provider: Provider, upstream_model: str) -> list[str]:
    """What chatd can say a routed model does, from its wire format alone: it completes
    text, and it takes tools unless its only API has none (Ollama's ``/api/generate``)."""
    api = provider.api_for(upstream_model, tools=True)
    caps = ["completion"]
    if api != "ollama_generate":
        caps.append("tools")
    return caps


def render_show(*, provider: Provider, route: Route) -> bytes:
    """The synthesized ``/api/show`` answer for a model served by ``provider``."""
    return dumps({
        "license": "",
        "modelfile": "",
        "parameters": "",
        "template": "",
        "details": {"parent_model": "", "format": "", "family": provider.name,
                    "families": [provider.name], "parameter_size": "",
                    "quantization_level": ""},
        "model_info": {"general.architecture": provider.name,
                       "general.basename": route.upstream_model},
        "capabilities": capabilities(provider, route.upstream_model),
        "remote_model": route.upstream_model,
        "modified_at": ZERO_TIME,
    })


# --- /api/ps ------------------------------------------------------------------------------

def ps_request(provider: Provider) -> HTTPRequest:
    """``GET {base}/api/ps``: the models the local Ollama has loaded."""
    return HTTPRequest(method="GET", url=provider.base_url.rstrip("/") + "/api/ps",
                       headers=(("Accept", "application/json"), *provider.headers), body=b"")


def parse_ps(provider: str, body: bytes, *, limit: int) -> tuple[ListedModel, ...]:
    """An upstream's ``/api/ps`` entries (``expires_at`` and ``size_vram`` kept)."""
    return _listed_models(provider, body, limit, ("expires_at", "size_vram"))


def render_ps(entries: Sequence[tuple[str, ListedModel]]) -> bytes:
    """``{"models": [...]}``, each loaded model under the name a client uses for it."""
    models = []
    for name, model in entries:
        src = model.entry or {}
        models.append(_model_entry(name, src, ("expires_at", "size_vram")))
    return dumps({"models": models})


# --- /api/embed and /api/embeddings: the door ---------------------------------------------

def _embed_options(value: object) -> Mapping[str, JSON]:
    if value is None:
        return {}
    value = json_object(value, "options")
    return value


def _embed_texts(value: object, field: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list):
        raise invalid(f"{field} must be a string or an array of strings, not "
                      f"{json_type(value)}")
    if not value:
        raise invalid(f"{field} must not be empty")
    if len(value) > MAX_INPUTS:
        raise invalid(f"{field} has {len(value)} items; at most {MAX_INPUTS} are taken")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise invalid(f"{field}[{i}] must be a string, not {json_type(item)}")
    return tuple(value)


_OLLAMA_EMBED_FIELDS = frozenset({"model", "input", "truncate", "options", "keep_alive",
                           "dimensions"})


def parse_embed(body: bytes) -> EmbedRequest:
    """A client's ``POST /api/embed`` body."""
    obj = decode_body(body)
    model = parse_model(obj)
    if obj.get("input") is None:
        raise invalid("input is required")
    return EmbedRequest(
        model=model,
        inputs=_embed_texts(obj["input"], "input"),
        dimensions=positive_int(obj.get("dimensions"), "dimensions"),
        truncate=boolean(obj.get("truncate"), "truncate"),
        keep_alive=obj.get("keep_alive"),
        options=_embed_options(obj.get("options")),
        dialect="ollama_embed",
        extras={k: v for k, v in obj.items() if k not in _OLLAMA_EMBED_FIELDS},
    )


def parse_embeddings(body: bytes) -> EmbedRequest:
    """A client's legacy ``POST /api/embeddings`` body: one ``prompt``."""
    obj = decode_body(body)
    model = parse_model(obj)
    prompt = obj.get("prompt")
    if not isinstance(prompt, str):
        raise invalid(f"prompt must be a string, not {json_type(prompt)}")
    return EmbedRequest(
        model=model, inputs=(prompt,), keep_alive=obj.get("keep_alive"),
        options=_embed_options(obj.get("options")), dialect="ollama_embed",
    )


def render_embed(resp: EmbedResponse, *, model: str, total_duration_ns: int) -> bytes:
    """``/api/embed``'s answer."""
    out: dict[str, Any] = {"model": model, "embeddings": list(resp.vectors),
                           "total_duration": total_duration_ns}
    if resp.load_duration_ns is not None:
        out["load_duration"] = resp.load_duration_ns
    if resp.prompt_tokens is not None:
        out["prompt_eval_count"] = resp.prompt_tokens
    return dumps(out)


def render_embeddings(resp: EmbedResponse) -> bytes:
    """The legacy ``/api/embeddings`` answer: the one vector."""
    return dumps({"embedding": resp.vectors[0] if resp.vectors else []})


# --- /api/embed: the upstream call ----------------------------------------------------------

def _embed_count(obj: Mapping[str, object], key: str) -> int | None:
    value = obj.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 \
        else None


class OllamaEmbedCodec(_OllamaCodec):
    """``POST {base}/api/embed`` (OL ``docs/api.md``), for local Ollama and Ollama Cloud."""

    api = "ollama_embed"

    def build_request(
        self, request: EmbedRequest, route: Route, provider: Provider
    ) -> HTTPRequest:
        body: dict[str, JSON] = {}
        if request.dialect == self.api:
            body.update(request.extras)
        body["model"] = route.upstream_model
        body["input"] = list(request.inputs)
        if request.truncate is not None:
            body["truncate"] = request.truncate
        if request.dimensions is not None:
            body["dimensions"] = request.dimensions
        if request.options:
            body["options"] = dict(request.options)
        if request.keep_alive is not None:
            body["keep_alive"] = request.keep_alive
        return HTTPRequest(method="POST", url=_url(provider, "/api/embed"),
                           headers=_request_headers(provider, False),
                           body=encode_body(body, provider.name))

    def parse_response(self, provider: str, body: bytes, count: int) -> EmbedResponse:
        obj = loads(body, provider)
        if not isinstance(obj, dict):
            raise ChatError("bad_upstream_response", "upstream embed answer is not an object",
                            provider=provider)
        if obj.get("error"):
            raise _upstream_error_in_body(provider, obj["error"])
        embeddings = obj.get("embeddings")
        if not isinstance(embeddings, list) or len(embeddings) != count:
            raise ChatError(
                "bad_upstream_response",
                f"upstream embed answer has no \"embeddings\" array of {count} vectors",
                provider=provider,
            )
        return EmbedResponse(
            vectors=tuple(embed_vector(v, provider, i) for i, v in enumerate(embeddings)),
            prompt_tokens=_embed_count(obj, "prompt_eval_count"),
            load_duration_ns=_embed_count(obj, "load_duration"),
        )


embed_codec = OllamaEmbedCodec()
