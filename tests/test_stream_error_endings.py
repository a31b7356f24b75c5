"""What a failing stream's last events say: OpenCode Zen's trailing cost event is not
the error's message, and OpenRouter's error chunk keeps the usage it carries.

- OpenCode Zen relays the upstream's bytes verbatim and appends its cost event after the
  upstream's end (providers.md §5.3; OC console ``zen/util/handler.ts``, ``c.enqueue(value)``
  then ``buildCostChunk``): ``data: {"choices":[],"cost":…}`` for Chat Completions,
  ``event: ping`` with ``{"type":"ping","cost"}`` for Anthropic. An upstream whose last
  event has no blank line then reaches chatd joined to the cost event, one SSE event of
  two ``data:`` lines.
- OpenRouter sends full usage "in the last SSE message" (providers.md §4.2): an answer may
  end with ``finish_reason: "length"`` and then an error chunk that carries the usage.

Every stream is fed whole, byte by byte and cut in two at every point (tests/helpers.py).
"""

from __future__ import annotations

import json

import orjson
import pytest
from helpers import every_split, outcome

from chatproto import ChatError, StreamEnded, TextDelta, Usage
from chatproto.dialects import anthropic_messages, native, openai_chat

COST = b'"cost":"0.00042"'


def sse(obj: object, *, name: str | None = None, end: bytes = b"\n\n") -> bytes:
    head = b"event: " + name.encode() + b"\n" if name else b""
    return head + b"data: " + json.dumps(obj).encode() + end


def chunk(delta: dict[str, object], finish: str | None = None,
          **extra: object) -> dict[str, object]:
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


ZEN_COST = b'data: {"choices":[],' + COST + b"}\n\n"

ZEN_CHAT_STREAMS = [
    pytest.param(
        sse(chunk({"content": "Hi"})) + b"event: error\n"
        + sse({"error": {"message": "Provider overloaded", "type": "server_error"}}, end=b"\n")
        + ZEN_COST, "Provider overloaded", id="error-event-then-cost"),
    pytest.param(
        sse(chunk({"content": "Hi"}))
        + sse({"error": {"message": "Error from provider (x): context too long",
                         "code": 400}}, end=b"\n") + ZEN_COST,
        "Error from provider (x): context too long", id="error-chunk-then-cost"),
]


@pytest.mark.parametrize(("body", "message"), ZEN_CHAT_STREAMS)
def test_opencode_zens_cost_event_is_not_in_the_streamed_errors_message(
        body: bytes, message: str) -> None:
    for label, pieces in every_split(body):
        events, error = outcome(openai_chat.codec.stream_parser("opencode"), pieces)
        assert events == [TextDelta(text="Hi")], label
        assert error is not None, label
        assert error.message == message, label
        assert "cost" not in error.message and "0.00042" not in error.message, label


def test_opencode_zens_ping_after_an_anthropic_error_is_not_the_error() -> None:
    """The Anthropic flavour of the same: the upstream's ``event: error`` without its
    blank line, then Zen's ``event: ping`` with the cost."""
    body = (sse({"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": [],
        "usage": {"input_tokens": 3, "output_tokens": 0}}}, name="message_start")
        + sse({"type": "error", "error": {"type": "overloaded_error",
                                          "message": "Overloaded"}}, name="error", end=b"\n")
        + b'event: ping\ndata: {"type":"ping",' + COST + b"}\n\n")
    for label, pieces in every_split(body):
        _, error = outcome(anthropic_messages.codec.stream_parser("opencode"), pieces)
        assert error is not None, label
        assert error.message == "Overloaded", label
        assert error.status in (502, 503, 529) or error.type == "upstream_overloaded", label


USAGE = {"prompt_tokens": 12, "completion_tokens": 64, "total_tokens": 76, "cost": 0.0009}

OPENROUTER_LENGTH_THEN_ERROR = (
    b": OPENROUTER PROCESSING\n\n"
    + sse(chunk({"role": "assistant", "content": "A long"}))
    + sse(chunk({"content": " answer"}, "length"))
    + sse(chunk({"content": ""}, "error", usage=USAGE,
                error={"code": "server_error", "message": "Stream interrupted"})))


def test_openrouters_error_chunk_after_length_keeps_its_usage() -> None:
    for label, pieces in every_split(OPENROUTER_LENGTH_THEN_ERROR):
        events, error = outcome(openai_chat.codec.stream_parser("openrouter"), pieces)
        assert events == [TextDelta(text="A long"), TextDelta(text=" answer")], label
        assert error is not None and error.message == "Stream interrupted", label
        assert error.usage == Usage(prompt_tokens=12, completion_tokens=64), label


def failed_with_usage() -> ChatError:
    _, error = outcome(openai_chat.codec.stream_parser("openrouter"),
                       [OPENROUTER_LENGTH_THEN_ERROR])
    assert error is not None
    return error


def test_an_openai_client_sees_the_usage_and_then_the_error() -> None:
    stream = openai_chat.CompletionStream(id="c", model="m", created=1, include_usage=True)
    stream.start()
    stream.event(TextDelta(text="A long"))
    data = [line[6:] for line in stream.error(failed_with_usage()).split(b"\n\n") if line]
    usage, error, done = orjson.loads(data[0]), orjson.loads(data[1]), data[2]
    assert (usage["choices"], usage["usage"]["prompt_tokens"],
            usage["usage"]["completion_tokens"]) == ([], 12, 64)
    assert error["error"]["message"] == "Stream interrupted"
    assert done == b"[DONE]"


def test_without_include_usage_the_error_is_alone() -> None:
    stream = openai_chat.CompletionStream(id="c", model="m", created=1, include_usage=False)
    stream.start()
    out = stream.error(failed_with_usage())
    assert out.startswith(b'data: {"error"') and b"prompt_tokens" not in out


def test_a_native_client_sees_the_usage_with_the_error() -> None:
    line = orjson.loads(native.NativeStream().error(failed_with_usage()))
    assert line["done"] is True and line["error"]["message"] == "Stream interrupted"
    assert line["usage"]["completion_tokens"] == 64


def test_a_normal_end_is_unchanged() -> None:
    body = sse(chunk({"content": "ok"})) + sse(chunk({}, "stop", usage=USAGE)) \
        + b"data: [DONE]\n\n" + ZEN_COST
    for label, pieces in every_split(body):
        events, error = outcome(openai_chat.codec.stream_parser("opencode"), pieces)
        assert error is None, label
        assert events[-1] == StreamEnded(finish_reason="stop",
                                         usage=Usage(prompt_tokens=12, completion_tokens=64))
