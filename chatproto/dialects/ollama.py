"""What Ollama's two native endpoints, ``/api/chat`` and ``/api/generate``, share.

Strategy: the two codecs differ only in where the conversation goes (``messages`` vs
``system`` + ``prompt``) and where the answer comes back (``message.content`` vs
``response``). Everything else, the request knobs (``stream``, ``think``, ``format``,
``options``), the headers, the final ``done`` object, the ``{"error": "..."}`` bodies, is
the same wire format (providers.md OL §1.2, §1.4, §1.7; ollama.com "acts as a remote Ollama
host", OL ``cloud.mdx``) and lives here once, and so does the NDJSON stream loop
(:class:`NDJSONStream`: decode a line, its error, its ``done``); each codec's parser only
reads its own delta fields, in one method call per line (bench/core.py: within noise).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import orjson

from .._decoders import LineDecoder, dumps, loads
from .._errors import ChatError, Headers, error_from_upstream
from .._events import Event, RawEvent, StreamEnded
from .._lifecycle import StreamLifecycle
from .._types import ChatRequest, HTTPRequest, Provider, Usage

__all__ = [
    "MAX_ERROR_MESSAGE",
    "NDJSONStream",
    "answer_object",
    "bad_response",
    "body_error",
    "eof_before_done",
    "finish_reason",
    "headers",
    "http_request",
    "malformed_line",
    "parse_error",
    "request_fields",
    "stream_ended",
    "text_field",
    "upstream_error_in_body",
    "url",
    "usage",
]

#: Longest upstream error text passed on. Ollama's messages are one line; a proxy in front
#: of it may answer with a whole HTML page, which helps nobody at full length.
MAX_ERROR_MESSAGE = 1000


def url(provider: Provider, path: str) -> str:
    """``base_url`` + ``path``; a configured trailing slash must not double up."""
    return provider.base_url.rstrip("/") + path


def headers(provider: Provider, stream: bool) -> tuple[tuple[str, str], ...]:
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


def request_fields(request: ChatRequest, body: dict[str, Any]) -> dict[str, Any]:
    """Add the knobs both endpoints take (OL ``api/types.go``) to ``body`` and return it.

    - ``stream`` is always sent: it is a ``*bool`` in Ollama and "omitted ⇒ streaming ON"
      (providers.md OL §1.2), so leaving it out would stream at a caller who did not ask.
    - ``think`` defaults to ``false`` (SPEC §2): thinking models otherwise think by default
      (OL ``thinking.mdx``) and a small ``max_tokens`` is spent before any content. A bool or
      a level string (``low``/``medium``/``high``/``max``) is passed through as given.
    - ``format`` is ``"json"`` or a JSON-schema object, passed through (OL §1.2).
    - ``max_tokens`` → ``options.num_predict``, and ``temperature``, ``top_p``, ``stop``,
      ``seed`` under ``options`` (OL ``docs/modelfile.mdx``); ``options`` is omitted when
      empty so the model's Modelfile defaults apply.
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
    if options:
        body["options"] = options
    return body


# --- errors ------------------------------------------------------------------------------


def bad_response(provider: str, what: str) -> ChatError:
    """A 2xx body or stream line that is not the shape Ollama documents (SPEC §4: 502)."""
    return ChatError("bad_upstream_response", f"upstream sent {what}", provider=provider)


def answer_object(body: bytes, provider: str) -> dict[str, Any]:
    """A non-streamed 2xx body as its JSON object, after the checks both APIs share.

    An ``{"error": …}`` body is the upstream's error even under a 2xx. A whole answer ends
    with ``done: true`` (providers.md OL §1.4); one that says ``done: false`` is a fragment
    (a streamed line where a whole answer was asked for), not a finished answer; ``done``
    left out is tolerated.
    """
    obj = loads(body, provider)
    if type(obj) is not dict:
        raise bad_response(provider, "a body that is not a JSON object")
    error = obj.get("error")
    if error:
        raise upstream_error_in_body(provider, error)
    if obj.get("done") is False:
        raise bad_response(provider, "an answer marked done: false (a fragment)")
    return obj


def http_request(provider: Provider, path: str, body: dict[str, Any], stream: bool
                 ) -> HTTPRequest:
    """The POST both APIs make: ``path`` under the provider's base URL, JSON body."""
    try:
        encoded = dumps(body)
    except TypeError as exc:  # a schema or tool nested past the 254 levels orjson writes
        raise ChatError("invalid_request", f"request cannot be encoded as JSON: {exc}",
                        provider=provider.name) from None
    return HTTPRequest(
        method="POST",
        url=url(provider, path),
        headers=headers(provider, stream),
        body=encoded,
        stream=stream,
    )


def malformed_line(provider: str, exc: orjson.JSONDecodeError) -> ChatError:
    return bad_response(provider, f"a malformed JSON line in its stream: {exc}")


def eof_before_done(provider: str) -> ChatError:
    """The body ended without the ``done: true`` object, Ollama's only end marker.

    "no terminator line — the last object has ``done: true``" (providers.md OL §1.5): without
    it the answer may be cut anywhere, so it is not passed off as complete.
    """
    return bad_response(provider, "a stream that ended before done")


def _error_text(value: object) -> str:
    if isinstance(value, str):
        return value[:MAX_ERROR_MESSAGE]
    try:
        return orjson.dumps(value).decode()[:MAX_ERROR_MESSAGE]
    except TypeError:  # orjson writes 254 levels of nesting; it read up to 1,024
        return "(an error object nested too deeply to show)"


def upstream_error_in_body(provider: str, error: object) -> ChatError:
    """An ``{"error": "..."}`` object inside a 200 answer, as an ``upstream_error`` (502).

    Ollama writes this line mid-stream once headers are out ("HTTP status stays 200 because
    headers were already sent", providers.md OL §1.5). The status was 200, so that is the
    ``upstream_status`` reported: it is what the upstream said, and it tells an operator
    the failure came inside a successful-looking answer rather than as an HTTP error.
    """
    return ChatError("upstream_error", _error_text(error), provider=provider, upstream_status=200)


def body_error(body: bytes) -> str:
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


def parse_error(
    provider: str, status: int, headers: Headers, body: bytes, *, now: float
) -> ChatError:
    """A non-2xx answer → SPEC §4 error, by status alone, with Ollama's message.

    "Body is always ``{"error":"<message>"}``" (providers.md OL §1.7), but a proxy in front
    may send text or nothing; the text is then passed on as is (or a generic message).
    Ollama never sends ``Retry-After`` (OL §1.7) but a proxy may, so it is still read.
    """
    return error_from_upstream(provider, status, body_error(body), headers, now=now)


# --- the final object --------------------------------------------------------------------


def text_field(obj: dict[str, Any], key: str, provider: str) -> str:
    """An optional string field: missing or null is "", anything but a string is an error."""
    value = obj.get(key)
    if value is None:
        return ""
    if type(value) is not str:
        raise bad_response(provider, f"a non-string {key!r}")
    return value


def _count(obj: dict[str, Any], key: str, provider: str) -> int:
    # "All metric fields are omitempty → absent when zero" (providers.md OL §1.4).
    value = obj.get(key, 0)
    if type(value) is not int or value < 0:
        raise bad_response(provider, f"an invalid {key!r}")
    return value


def usage(obj: dict[str, Any], provider: str) -> Usage:
    """``prompt_eval_count`` = input tokens, ``eval_count`` = output (OL ``usage.mdx``)."""
    return Usage(
        prompt_tokens=_count(obj, "prompt_eval_count", provider),
        completion_tokens=_count(obj, "eval_count", provider),
    )


def finish_reason(obj: dict[str, Any], provider: str, tool_calls: bool) -> str:
    """SPEC §3's finish reason from ``done_reason``.

    ``done_reason`` is ``stop``, ``length``, ``load``/``unload`` or absent (OL §1.4: "treat
    it as optional"); only ``length`` means something to a caller, all else is ``stop``.
    Ollama says ``stop`` when the model ended with tool calls; its own OpenAI layer rewrites
    that to ``tool_calls`` (OL ``openai.go``), and so does chatd.
    """
    reason = obj.get("done_reason")
    if reason is not None and type(reason) is not str:
        raise bad_response(provider, "a non-string 'done_reason'")
    if reason == "length":
        return "length"
    return "tool_calls" if tool_calls else "stop"


def stream_ended(obj: dict[str, Any], provider: str, tool_calls: bool) -> StreamEnded:
    """The event for the ``done: true`` line, which alone carries usage (OL ``usage.mdx``)."""
    return StreamEnded(
        finish_reason=finish_reason(obj, provider, tool_calls), usage=usage(obj, provider)
    )


# --- the stream --------------------------------------------------------------------------

_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError


class NDJSONStream(StreamLifecycle):
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
        return stream_ended(obj, self._provider, False)

    def _parse(self, data: bytes, out: list[Event]) -> None:
        raw = self._raw
        for line in self._lines.feed(data):
            try:
                obj = _loads(line)
            except _JSONDecodeError as exc:
                raise malformed_line(self._provider, exc) from None
            if type(obj) is not dict:
                raise bad_response(self._provider, "a stream line that is not an object")
            error = obj.get("error")
            if error:
                # "a line {"error": "..."}; HTTP status stays 200" (providers.md OL §1.5).
                raise upstream_error_in_body(self._provider, error)
            if raw:
                out.append(RawEvent(dialect=self.api, data=obj))
            self._deltas(obj, out)
            if obj.get("done") is True:
                self._terminate(out, self._ended(obj))
                return
        if not data:
            raise eof_before_done(self._provider)
