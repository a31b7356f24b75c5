"""The ``ollama_chat`` codec: request building, response parsing, stream parsing, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import WEATHER_TOOL, cut_at, cuts, every_split, feed, json_values, outcome
from hypothesis import given, settings
from hypothesis import strategies as st
from ollama import _types as ollama_types

from chatproto import (
    ChatError,
    ChatRequest,
    ChatResponse,
    Codec,
    EmbedCodec,
    Event,
    Message,
    Provider,
    Route,
    Secret,
    StreamEnded,
    TextDelta,
    ThinkingDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
    codec_for,
)
from chatproto.dialects.ollama import chat_codec as codec
from chatproto.dialects.ollama import embed_codec, generate_codec

FIXTURES = Path(__file__).parent / "fixtures"
LOCAL = Provider(name="ollama", api="ollama_chat", base_url="http://127.0.0.1:11434")
ROUTE = Route(provider="ollama", upstream_model="qwen3:4b")
USER = Message(role="user", content="hi")


def request(**kw: Any) -> ChatRequest:
    kw.setdefault("messages", (USER,))
    return ChatRequest(model="ollama/qwen3:4b", **kw)


def body_of(chat: ChatRequest, provider: Provider = LOCAL) -> Any:
    return orjson.loads(codec.build_request(chat, ROUTE, provider).body)


def test_codec_is_registered() -> None:
    assert codec_for("ollama_chat") is codec
    assert codec.api == "ollama_chat"


# --- building the request ----------------------------------------------------------------

BASE_HEADERS = (("Content-Type", "application/json"), ("Accept", "application/json"))


@pytest.mark.parametrize(
    ("provider", "stream", "url", "headers"),
    [
        pytest.param(LOCAL, False, "http://127.0.0.1:11434/api/chat", BASE_HEADERS, id="local"),
        pytest.param(
            Provider(name="ollama", api="ollama_chat", base_url="http://h:11434/"),
            False,
            "http://h:11434/api/chat",
            BASE_HEADERS,
            id="trailing-slash",
        ),
        pytest.param(
            LOCAL,
            True,
            "http://127.0.0.1:11434/api/chat",
            (("Content-Type", "application/json"), ("Accept", "application/x-ndjson")),
            id="stream-accept",
        ),
        pytest.param(
            Provider(
                name="ollama",
                api="ollama_chat",
                base_url="http://h:11434",
                key=Secret("sk-1"),
                headers=(("User-Agent", "chatd/0.1"),),
            ),
            False,
            "http://h:11434/api/chat",
            (*BASE_HEADERS, ("User-Agent", "chatd/0.1"), ("Authorization", "Bearer sk-1")),
            id="key-and-extra-headers",
        ),
    ],
)
def test_request_line_and_headers(
    provider: Provider, stream: bool, url: str, headers: tuple[tuple[str, str], ...]
) -> None:
    http = codec.build_request(request(stream=stream), ROUTE, provider)
    assert (http.method, http.url, http.headers, http.stream) == ("POST", url, headers, stream)


def test_no_authorization_without_key() -> None:
    http = codec.build_request(request(), ROUTE, LOCAL)
    assert all(name.lower() != "authorization" for name, _ in http.headers)


def test_repr_never_shows_the_key() -> None:
    keyed = Provider(name="ollama", api="ollama_chat", base_url="http://h", key=Secret("sk-XYZ"))
    http = codec.build_request(request(), ROUTE, keyed)
    assert ("Authorization", "Bearer sk-XYZ") in http.headers
    assert "sk-XYZ" not in repr(http)
    assert "Authorization" in repr(http)


MINIMAL = {
    "model": "qwen3:4b",
    "messages": [{"role": "user", "content": "hi"}],
    "stream": False,
    "think": False,
}
SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


@pytest.mark.parametrize(
    ("chat", "expected"),
    [
        pytest.param(request(), MINIMAL, id="minimal-stream-and-think-explicit"),
        pytest.param(request(stream=True), {**MINIMAL, "stream": True}, id="stream"),
        pytest.param(request(think=True), {**MINIMAL, "think": True}, id="think-true"),
        pytest.param(request(think=False), MINIMAL, id="think-false"),
        pytest.param(request(think="high"), {**MINIMAL, "think": "high"}, id="think-level"),
        pytest.param(request(format="json"), {**MINIMAL, "format": "json"}, id="format-json"),
        pytest.param(request(format=SCHEMA), {**MINIMAL, "format": SCHEMA}, id="format-schema"),
        pytest.param(
            request(max_tokens=10, temperature=0.2, top_p=0.9, stop=("\n", "END"), seed=1),
            {
                **MINIMAL,
                "options": {
                    "num_predict": 10,
                    "temperature": 0.2,
                    "top_p": 0.9,
                    "stop": ["\n", "END"],
                    "seed": 1,
                },
            },
            id="options-all",
        ),
        pytest.param(
            request(max_tokens=0, temperature=0.0, seed=0),
            {**MINIMAL, "options": {"num_predict": 0, "temperature": 0.0, "seed": 0}},
            id="options-zero-values-kept",
        ),
        pytest.param(
            request(tools=(WEATHER_TOOL,), tool_choice="auto"),
            {**MINIMAL, "tools": [WEATHER_TOOL]},
            id="tools-passed-tool-choice-dropped",
        ),
        pytest.param(
            request(
                messages=(
                    Message(role="system", content="be brief"),
                    Message(role="user", content="look", images=("aGVsbG8=",)),
                    Message(
                        role="assistant",
                        content="",
                        thinking="need weather",
                        tool_calls=(
                            ToolCall(id="c1", name="get_weather", arguments='{"city":"Tokyo"}'),
                            ToolCall(id=None, name="now", arguments=""),
                        ),
                    ),
                    Message(role="tool", content="22C", name="get_weather", tool_call_id="c1"),
                )
            ),
            {
                **MINIMAL,
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "look", "images": ["aGVsbG8="]},
                    {
                        "role": "assistant",
                        "content": "",
                        "thinking": "need weather",
                        "tool_calls": [
                            {
                                "id": "c1",
                                "function": {"name": "get_weather", "arguments": {"city": "Tokyo"}},
                            },
                            {"function": {"name": "now", "arguments": {}}},
                        ],
                    },
                    {
                        "role": "tool",
                        "content": "22C",
                        "tool_name": "get_weather",
                        "tool_call_id": "c1",
                    },
                ],
            },
            id="messages-all-fields",
        ),
    ],
)
def test_request_body(chat: ChatRequest, expected: Any) -> None:
    assert body_of(chat) == expected


@pytest.mark.parametrize(
    ("tool_message", "expected"),
    [
        pytest.param(
            Message(role="tool", content="22C", tool_call_id="c2"),
            {"role": "tool", "content": "22C", "tool_name": "get_time", "tool_call_id": "c2"},
            id="name-from-its-call",
        ),
        pytest.param(
            Message(role="tool", content="22C", name="given", tool_call_id="c2"),
            {"role": "tool", "content": "22C", "tool_name": "given", "tool_call_id": "c2"},
            id="given-name-wins",
        ),
        pytest.param(
            Message(role="tool", content="22C", tool_call_id="unknown"),
            {"role": "tool", "content": "22C", "tool_call_id": "unknown"},
            id="unmatched-id",
        ),
        pytest.param(
            Message(role="tool", content="22C"),
            {"role": "tool", "content": "22C"},
            id="no-id-no-name",
        ),
    ],
)
def test_tool_result_named_after_its_call(tool_message: Message, expected: Any) -> None:
    """OpenAI clients answer by tool_call_id only; Ollama matches results by tool_name."""
    calls = (
        ToolCall(id="c1", name="get_weather", arguments="{}"),
        ToolCall(id="c2", name="get_time", arguments="{}"),
    )
    messages = (USER, Message(role="assistant", tool_calls=calls), tool_message)
    assert body_of(request(messages=messages))["messages"][2] == expected


@pytest.mark.parametrize(
    "chat",
    [
        pytest.param(request(), id="minimal"),
        pytest.param(
            request(
                think="high",
                format=SCHEMA,
                max_tokens=5,
                stop=("x",),
                tools=(WEATHER_TOOL,),
                messages=(
                    Message(role="user", content="q", images=("aGVsbG8=",)),
                    Message(
                        role="assistant",
                        tool_calls=(ToolCall(id=None, name="f", arguments='{"a": [1]}'),),
                    ),
                    Message(role="tool", content="r", name="f"),
                ),
            ),
            id="everything",
        ),
    ],
)
def test_body_fits_the_official_client_model(chat: ChatRequest) -> None:
    """Every field we send exists, with a valid type, in ollama-python's ChatRequest."""
    body = body_of(chat)
    assert set(body) <= set(ollama_types.ChatRequest.model_fields)
    for message in body["messages"]:
        assert set(message) <= set(ollama_types.Message.model_fields)
    parsed = ollama_types.ChatRequest.model_validate(body)
    assert parsed.model_dump(exclude_none=True, mode="json")["messages"] == body["messages"]


@pytest.mark.parametrize(
    ("arguments", "sent"),
    [
        pytest.param("{not json", {"raw_arguments": "{not json"}, id="invalid-json"),
        pytest.param("[1, 2]", {"raw_arguments": "[1, 2]"}, id="array"),
        pytest.param('"s"', {"raw_arguments": '"s"'}, id="string"),
        pytest.param("", {}, id="empty"),
        pytest.param('{"a": 1}', {"a": 1}, id="object"),
    ],
)
def test_history_call_arguments_that_are_not_an_object_go_wrapped(
        arguments: str, sent: dict[str, Any]) -> None:
    """A history call whose arguments are not a JSON object (a call cut by ``max_tokens``)
    goes as ``{"raw_arguments": text}``: refusing it would make every later turn of the
    conversation a 400, since each carries the same history."""
    bad = Message(role="assistant", tool_calls=(ToolCall(id="1", name="f", arguments=arguments),))
    body = body_of(request(messages=(USER, bad)))
    [call] = body["messages"][1]["tool_calls"]
    assert call["function"]["arguments"] == sent


# --- parsing a whole response ------------------------------------------------------------


def answer(message: dict[str, Any], **top: Any) -> bytes:
    obj: dict[str, Any] = {"model": "qwen3:4b", "created_at": "2025-07-07T20:32:53Z",
                           "message": message}
    obj.update({"done": True, **top})
    return orjson.dumps(obj)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            answer(
                {"role": "assistant", "content": "Hello!"},
                done_reason="stop",
                total_duration=3244883583,
                prompt_eval_count=12,
                eval_count=9,
            ),
            ChatResponse(
                content="Hello!",
                finish_reason="stop",
                usage=Usage(prompt_tokens=12, completion_tokens=9,
                            total_duration_ns=3244883583),
            ),
            id="happy",
        ),
        pytest.param(
            answer({"role": "assistant", "content": "Hel"}, done_reason="length", eval_count=3),
            ChatResponse(content="Hel", finish_reason="length", usage=Usage(completion_tokens=3)),
            id="length-missing-prompt-count",
        ),
        pytest.param(
            answer({"role": "assistant", "content": "4", "thinking": "2+2"}),
            ChatResponse(content="4", finish_reason="stop", thinking="2+2"),
            id="thinking-no-done-reason-no-counts",
        ),
        pytest.param(
            answer({"role": "assistant", "content": "x", "thinking": ""}, done_reason="load"),
            ChatResponse(content="x", finish_reason="stop"),
            id="empty-thinking-is-none-load-is-stop",
        ),
        pytest.param(
            answer({"role": "assistant"}, done_reason="stop"),
            ChatResponse(content="", finish_reason="stop"),
            id="missing-content",
        ),
        pytest.param(
            answer(
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {"function": {"name": "get_weather", "arguments": {"city": "Tōkyō"}}},
                        {"id": "call_x", "function": {"index": 1, "name": "now"}},
                    ],
                },
                done_reason="stop",
                prompt_eval_count=169,
                eval_count=18,
            ),
            ChatResponse(
                content="",
                finish_reason="tool_calls",
                usage=Usage(prompt_tokens=169, completion_tokens=18),
                tool_calls=(
                    ToolCall(id=None, name="get_weather", arguments='{"city":"Tōkyō"}'),
                    ToolCall(id="call_x", name="now", arguments="{}"),
                ),
            ),
            id="tool-calls",
        ),
        pytest.param(
            answer(
                {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": {}}}]},
                done_reason="length",
            ),
            ChatResponse(
                content="",
                finish_reason="length",
                tool_calls=(ToolCall(id=None, name="f", arguments="{}"),),
            ),
            id="tool-calls-but-length",
        ),
    ],
)
def test_parse_response(body: bytes, expected: ChatResponse) -> None:
    assert codec.parse_response("ollama", body) == expected


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"{not json", id="malformed"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
        pytest.param(b"[]", id="array"),
        pytest.param(b'"text"', id="string"),
        pytest.param(b"null", id="null"),
        pytest.param(b'{"done": true}', id="no-message"),
        pytest.param(b'{"message": "hi"}', id="message-not-object"),
        pytest.param(answer({"content": 5}), id="content-not-string"),
        pytest.param(answer({"content": "", "thinking": ["x"]}), id="thinking-not-string"),
        pytest.param(answer({"content": "", "tool_calls": {"a": 1}}), id="tool-calls-not-list"),
        pytest.param(answer({"content": "", "tool_calls": [5]}), id="tool-call-not-object"),
        pytest.param(answer({"content": "", "tool_calls": [{}]}), id="tool-call-no-function"),
        pytest.param(
            answer({"content": "", "tool_calls": [{"function": {"arguments": {}}}]}),
            id="tool-call-no-name",
        ),
        pytest.param(
            answer({"content": "", "tool_calls": [{"function": {"name": "f", "arguments": "x"}}]}),
            id="tool-call-arguments-not-object",
        ),
        pytest.param(
            answer({"content": "", "tool_calls": [{"id": 7, "function": {"name": "f"}}]}),
            id="tool-call-id-not-string",
        ),
        pytest.param(answer({"content": ""}, eval_count="9"), id="count-not-int"),
        pytest.param(answer({"content": ""}, prompt_eval_count=-1), id="count-negative"),
        pytest.param(answer({"content": ""}, eval_count=True), id="count-bool"),
        pytest.param(answer({"content": ""}, done_reason=1), id="done-reason-not-string"),
        pytest.param(answer({"content": "The"}, done=False), id="done-false-fragment"),
    ],
)
def test_parse_response_rejects_wrong_shapes(body: bytes) -> None:
    with pytest.raises(ChatError) as info:
        codec.parse_response("ollama", body)
    assert (info.value.type, info.value.status) == ("bad_upstream_response", 502)
    assert info.value.provider == "ollama"


def test_error_object_in_a_200_body_is_upstream_error() -> None:
    with pytest.raises(ChatError) as info:
        codec.parse_response("ollama", b'{"error": "model runner has unexpectedly stopped"}')
    err = info.value
    assert (err.type, err.status, err.upstream_status) == ("upstream_error", 502, 200)
    assert err.message == "model runner has unexpectedly stopped"


# --- error answers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers", "body", "expected"),
    [
        pytest.param(
            429,
            [("Retry-After", "7")],
            b'{"error": "you\'ve reached your hourly usage limit"}',
            (429, "rate_limited", "you've reached your hourly usage limit", 7.0),
            id="429-retry-after-passed-on",
        ),
        pytest.param(
            429,
            [],
            b'{"error": "limit"}',
            (429, "rate_limited", "limit", None),
            id="429-no-retry-after-as-ollama-sends",
        ),
        pytest.param(
            500,
            [("Retry-After", "7")],
            b'{"error": "rate limit exceeded"}',
            (502, "upstream_error", "rate limit exceeded", None),
            id="500-by-status-not-body-text",
        ),
        pytest.param(
            503,
            [("retry-after", "3")],
            b'{"error": "server busy, please try again.  maximum pending requests exceeded"}',
            (
                503,
                "upstream_overloaded",
                "server busy, please try again.  maximum pending requests exceeded",
                3.0,
            ),
            id="503",
        ),
        pytest.param(
            400,
            [],
            b'{"error": "\\"qwen3:4b\\" does not support tools"}',
            (400, "upstream_rejected", '"qwen3:4b" does not support tools', None),
            id="400",
        ),
        pytest.param(
            422, [], b'{"error": "bad"}', (400, "upstream_rejected", "bad", None), id="422"
        ),
        pytest.param(
            404,
            [],
            b'{"error": "model \'llama9\' not found"}',
            (502, "upstream_error", "model 'llama9' not found", None),
            id="404",
        ),
        pytest.param(
            401,
            [],
            b'{"error": "unauthorized"}',
            (502, "upstream_error", "unauthorized", None),
            id="401",
        ),
        pytest.param(
            502,
            [],
            b"Bad Gateway\n",
            (502, "upstream_error", "Bad Gateway", None),
            id="text-body",
        ),
        pytest.param(
            500,
            [],
            b"",
            (502, "upstream_error", "upstream answered HTTP 500", None),
            id="empty-body",
        ),
        pytest.param(
            500,
            [],
            b'{"error": {"message": "nested"}}',
            (502, "upstream_error", '{"message":"nested"}', None),
            id="non-string-error",
        ),
        pytest.param(
            500,
            [],
            b'{"detail": "x"}',
            (502, "upstream_error", '{"detail": "x"}', None),
            id="json-without-error",
        ),
        pytest.param(
            500,
            [],
            b"\xff oops",
            (502, "upstream_error", "\ufffd oops", None),
            id="not-utf8",
        ),
        # Ollama Cloud's answers (its /api/generate and /api/chat share them).
        pytest.param(
            429,
            [("Retry-After", "30")],
            b'{"error": "you (u) have reached your session usage limit"}',
            (429, "rate_limited", "you (u) have reached your session usage limit", 30.0),
            id="cloud-429-retry-after",
        ),
        pytest.param(
            400,
            [],
            b'{"error": "structured outputs are not supported"}',
            (400, "upstream_rejected", "structured outputs are not supported", None),
            id="cloud-400",
        ),
        pytest.param(
            404,
            [],
            b'{"error": "model \\"gpt-oss-120b\\" not found"}',
            (502, "upstream_error", 'model "gpt-oss-120b" not found', None),
            id="cloud-404",
        ),
        pytest.param(
            502,
            [],
            b"upstream connect error",
            (502, "upstream_error", "upstream connect error", None),
            id="cloud-text-body",
        ),
    ],
)
@pytest.mark.parametrize(
    ("error_codec", "provider"),
    [(codec, "ollama"), (generate_codec, "ollama_cloud"), (embed_codec, "ollama")],
    ids=["chat", "generate", "embed"],
)
def test_parse_error(
    status: int,
    headers: list[tuple[str, str]],
    body: bytes,
    expected: tuple[int, str, str, float | None],
    error_codec: Codec | EmbedCodec,
    provider: str,
) -> None:
    """The three Ollama codecs read an error answer the same way."""
    err = error_codec.parse_error(provider, status, headers, body, now=0.0)
    assert (err.status, err.type, err.message, err.retry_after) == expected
    assert (err.provider, err.upstream_status) == (provider, status)


def test_parse_error_bounds_a_huge_body() -> None:
    err = codec.parse_error("ollama", 502, [], b"<html>" + b"x" * 100_000, now=0.0)
    assert err.message.startswith("<html>xxx")
    assert len(err.message) == 1000


# --- streams -----------------------------------------------------------------------------


def feed_all(chunks: list[bytes]) -> list[Event]:
    return feed(codec.stream_parser("ollama"), chunks)


THINKING_EVENTS = [
    ThinkingDelta(text="The user"),
    ThinkingDelta(text=" wants 2+2."),
    TextDelta(text="4"),
    StreamEnded(finish_reason="length", usage=Usage(prompt_tokens=12, completion_tokens=10)),
]
#: The final line of the recorded text streams: its counts and Ollama's four durations
#: (nanoseconds), all of which reach the canonical usage.
FIXTURE_USAGE = Usage(prompt_tokens=26, completion_tokens=4, total_duration_ns=3244883583,
                      load_duration_ns=2969184542, prompt_eval_duration_ns=141656333,
                      eval_duration_ns=133293625)


STREAMS = [
    pytest.param(
        (FIXTURES / "ollama_chat_text.ndjson").read_bytes(),
        [
            TextDelta(text="Un "),
            TextDelta(text="café ☕"),
            TextDelta(text=", s'il vous plaît 🙂"),
            StreamEnded(finish_reason="stop", usage=FIXTURE_USAGE),
        ],
        id="text-utf8-empty-deltas",
    ),
    pytest.param(
        (FIXTURES / "ollama_chat_thinking.ndjson").read_bytes(),
        THINKING_EVENTS,
        id="thinking-length",
    ),
    pytest.param(
        (FIXTURES / "ollama_chat_tools.ndjson").read_bytes(),
        [
            ToolCallDelta(index=0, id=None, name="get_weather", arguments='{"city":"Tōkyō"}'),
            ToolCallDelta(
                index=1, id="call_abc", name="get_time", arguments='{"zone":"JST","utc":false}'
            ),
            StreamEnded(
                finish_reason="tool_calls", usage=Usage(prompt_tokens=169, completion_tokens=18)
            ),
        ],
        id="tool-calls-then-separate-done",
    ),
    pytest.param(
        b'{"message":{"role":"assistant","content":"a","tool_calls":['
        b'{"function":{"name":"f","arguments":{}}},{"function":{"name":"g"}}]},"done":true,'
        b'"done_reason":"stop"}',
        [
            TextDelta(text="a"),
            ToolCallDelta(index=0, id=None, name="f", arguments="{}"),
            ToolCallDelta(index=1, id=None, name="g", arguments="{}"),
            StreamEnded(finish_reason="tool_calls", usage=Usage()),
        ],
        id="tools-in-done-line-no-final-newline",
    ),
    pytest.param(
        b'{"message":{"content":"x"},"done":false}\r\n\n\n{"done":true}\n',
        [TextDelta(text="x"), StreamEnded(finish_reason="stop", usage=Usage())],
        id="blank-lines-crlf-done-without-message",
    ),
    pytest.param(
        (FIXTURES / "ollama_chat_thinking.ndjson").read_bytes()
        + b'garbage\n{"error":"late"}\n{"message":{"content":"more"}}\n',
        THINKING_EVENTS,
        id="anything-after-done-ignored",
    ),
]


@pytest.mark.parametrize(("data", "expected"), STREAMS)
def test_stream_at_every_split(data: bytes, expected: list[Event]) -> None:
    for how, chunks in every_split(data):
        assert feed_all(chunks) == expected, how


@pytest.mark.parametrize(("data", "expected"), STREAMS)
@settings(max_examples=50, deadline=None)
@given(points=cuts())
def test_stream_at_random_splits(data: bytes, expected: list[Event], points: list[int]) -> None:
    assert feed_all(cut_at(data, points)) == expected


LINE = b'{"message":{"role":"assistant","content":"Hi"},"done":false}\n'
MID_ERROR = b'{"error":"an error was encountered while running the model"}\n'


@pytest.mark.parametrize(
    ("data", "error_type", "message"),
    [
        pytest.param(
            LINE + MID_ERROR + b'{"done":true}\n',
            "upstream_error",
            "an error was encountered while running the model",
            id="mid-stream-error",
        ),
        pytest.param(
            LINE + b'{"error":{"code":1}}\n', "upstream_error", '{"code":1}', id="error-object"
        ),
        pytest.param(LINE, "bad_upstream_response", "ended before done", id="eof-before-done"),
        pytest.param(b"", "bad_upstream_response", "ended before done", id="empty-body"),
        pytest.param(
            LINE + b'{"done":false}\n',
            "bad_upstream_response",
            "ended before done",
            id="done-false-only",
        ),
        pytest.param(LINE + b"{nope\n", "bad_upstream_response", "malformed JSON", id="malformed"),
        pytest.param(b"[1]\n", "bad_upstream_response", "not an object", id="array-line"),
        pytest.param(b'{"message":[]}\n', "bad_upstream_response", "'message'", id="message-list"),
        pytest.param(
            b'{"message":{"content":5}}\n', "bad_upstream_response", "'content'", id="content-int"
        ),
        pytest.param(
            b'{"message":{"thinking":{}}}\n',
            "bad_upstream_response",
            "'thinking'",
            id="thinking-object",
        ),
        pytest.param(
            b'{"message":{"thinking":[1]}}\n',
            "bad_upstream_response",
            "'thinking'",
            id="thinking-list",
        ),
        pytest.param(
            b'{"message":{"tool_calls":[{"function":{}}]}}\n',
            "bad_upstream_response",
            "without a name",
            id="tool-call-no-name",
        ),
        pytest.param(
            b'{"done":true,"eval_count":"3"}\n',
            "bad_upstream_response",
            "'eval_count'",
            id="count-string",
        ),
        pytest.param(
            b'{"done":true,"done_reason":false}\n',
            "bad_upstream_response",
            "'done_reason'",
            id="done-reason-bool",
        ),
    ],
)
def test_stream_failures(data: bytes, error_type: str, message: str) -> None:
    for _, chunks in every_split(data):
        with pytest.raises(ChatError) as info:
            feed_all(chunks)
        err = info.value
        assert (err.type, err.status, err.provider) == (error_type, 502, "ollama")
        assert message in err.message
        if error_type == "upstream_error":
            assert err.upstream_status == 200


def test_events_before_a_mid_stream_error_are_delivered() -> None:
    parser = codec.stream_parser("ollama")
    assert parser.feed(LINE) == [TextDelta(text="Hi")]
    with pytest.raises(ChatError):
        parser.feed(MID_ERROR)


def test_overlong_line_is_bad_upstream_response() -> None:
    parser = codec.stream_parser("ollama")
    with pytest.raises(ChatError) as info:
        for _ in range(3):
            parser.feed(b'{"message":{"content":"' + b"x" * 600_000)
    assert info.value.type == "bad_upstream_response"


def check_events_or_chat_error(chunks: list[bytes]) -> None:
    events, err = outcome(codec.stream_parser("ollama"), chunks)
    for event in events:
        assert isinstance(event, TextDelta | ThinkingDelta | ToolCallDelta | StreamEnded)
    if err is not None:
        assert err.status in (400, 502)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=1), max_size=6))
def test_random_bytes_give_events_or_chat_error(chunks: list[bytes]) -> None:
    check_events_or_chat_error(chunks)


JSON_VALUES = json_values(["name", "arguments", "id", "function"])
KEYS = [
    "message",
    "content",
    "thinking",
    "tool_calls",
    "function",
    "name",
    "arguments",
    "done",
    "done_reason",
    "error",
    "eval_count",
    "prompt_eval_count",
    "id",
]
OBJECTS = st.recursive(
    st.dictionaries(st.sampled_from(KEYS), JSON_VALUES, max_size=4),
    lambda inner: st.dictionaries(st.sampled_from(KEYS), inner | JSON_VALUES, max_size=4),
    max_leaves=10,
)


@settings(max_examples=120, deadline=None)
@given(st.lists(OBJECTS, max_size=5))
def test_random_ollama_like_lines_give_events_or_chat_error(objects: list[Any]) -> None:
    # The stdlib encoder: it writes integers of any size, which orjson refuses to encode.
    data = "".join(json.dumps(obj) + "\n" for obj in objects).encode()
    check_events_or_chat_error([data] if data else [])
