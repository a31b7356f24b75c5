"""The ``ollama_generate`` codec (Ollama Cloud): flattening, requests, responses, streams."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import cut_at, cuts, every_split, feed, json_values, outcome
from hypothesis import given, settings
from hypothesis import strategies as st
from ollama import _types as ollama_types

from chatproto import (
    ChatError,
    ChatRequest,
    ChatResponse,
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
from chatproto.dialects.ollama import flatten_messages
from chatproto.dialects.ollama import generate_codec as codec

FIXTURES = Path(__file__).parent / "fixtures"
CLOUD = Provider(
    name="ollama_cloud", api="ollama_generate", base_url="https://ollama.com", key=Secret("ok-1")
)
ROUTE = Route(provider="ollama_cloud", upstream_model="kimi-k2.6")
SYSTEM = Message(role="system", content="be brief")
USER = Message(role="user", content="hi")


def request(**kw: Any) -> ChatRequest:
    kw.setdefault("messages", (USER,))
    return ChatRequest(model="kimi-k2.6:cloud", **kw)


def body_of(chat: ChatRequest, provider: Provider = CLOUD) -> Any:
    return orjson.loads(codec.build_request(chat, ROUTE, provider).body)


def test_codec_is_registered() -> None:
    assert codec_for("ollama_generate") is codec
    assert codec.api == "ollama_generate"


# --- flattening --------------------------------------------------------------------------


def m(role: str, content: str = "", **kw: Any) -> Message:
    return Message(role=role, content=content, **kw)


@pytest.mark.parametrize(
    ("messages", "system", "prompt"),
    [
        pytest.param((), "", "", id="empty"),
        pytest.param((m("system", "rules"),), "rules", "", id="system-only"),
        pytest.param((m("user", "hi"),), "", "hi", id="single-user-as-is"),
        pytest.param(
            (m("user", "line 1\n\nUser: not a turn"),),
            "",
            "line 1\n\nUser: not a turn",
            id="single-user-verbatim",
        ),
        pytest.param(
            (m("system", "a"), m("user", "hi"), m("system", "b"), m("system", "")),
            "a\n\nb",
            "hi",
            id="systems-joined-empty-skipped",
        ),
        pytest.param(
            (m("system", "s"), m("user", "hi"), m("assistant", "hello"), m("user", "how?")),
            "s",
            "User: hi\n\nAssistant: hello\n\nUser: how?\n\nAssistant:",
            id="multi-turn",
        ),
        pytest.param(
            (m("user", "hi"), m("assistant", "Once upon")),
            "",
            "User: hi\n\nAssistant: Once upon",
            id="last-assistant-is-continued",
        ),
        pytest.param(
            (m("assistant", "Hello, I am"),),
            "",
            "Assistant: Hello, I am",
            id="lone-assistant",
        ),
        pytest.param(
            (
                m("user", "weather?"),
                m(
                    "assistant",
                    "checking",
                    thinking="hidden",
                    tool_calls=(ToolCall(id="c1", name="get_weather", arguments='{"city":"T"}'),),
                ),
                m("tool", "22C", name="get_weather", tool_call_id="c1"),
                m("tool", "no name"),
            ),
            "",
            "User: weather?\n\n"
            'Assistant: checking\n[tool call: get_weather {"city":"T"}]\n\n'
            "Tool result (get_weather): 22C\n\n"
            "Tool result: no name\n\n"
            "Assistant:",
            id="tool-messages-thinking-dropped",
        ),
        pytest.param(
            (
                m("user", "go"),
                m("assistant", tool_calls=(ToolCall(id=None, name="f", arguments="{}"),)),
            ),
            "",
            "User: go\n\nAssistant: [tool call: f {}]",
            id="assistant-only-tool-call",
        ),
        pytest.param(
            (
                m("user", "t?"),
                m("assistant", tool_calls=(ToolCall(id="c9", name="now", arguments="{}"),)),
                m("tool", "noon", tool_call_id="c9"),
                m("tool", "?", tool_call_id="c0"),
            ),
            "",
            "User: t?\n\nAssistant: [tool call: now {}]\n\n"
            "Tool result (now): noon\n\nTool result: ?\n\nAssistant:",
            id="tool-result-named-by-call-id",
        ),
        pytest.param(
            (m("user", "a"), m("user", "")),
            "",
            "User: a\n\nUser:\n\nAssistant:",
            id="empty-user-turn",
        ),
    ],
)
def test_flatten_messages(messages: tuple[Message, ...], system: str, prompt: str) -> None:
    assert flatten_messages(messages) == (system, prompt)


# --- building the request ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "stream", "url", "headers"),
    [
        pytest.param(
            CLOUD,
            False,
            "https://ollama.com/api/generate",
            (
                ("Content-Type", "application/json"),
                ("Accept", "application/json"),
                ("Authorization", "Bearer ok-1"),
            ),
            id="cloud-bearer",
        ),
        pytest.param(
            Provider(
                name="ollama_cloud",
                api="ollama_generate",
                base_url="https://ollama.com/",
                key=Secret("ok-2"),
                headers=(("User-Agent", "chatd/0.1"),),
            ),
            True,
            "https://ollama.com/api/generate",
            (
                ("Content-Type", "application/json"),
                ("Accept", "application/x-ndjson"),
                ("User-Agent", "chatd/0.1"),
                ("Authorization", "Bearer ok-2"),
            ),
            id="stream-extra-headers-trailing-slash",
        ),
        pytest.param(
            Provider(name="gen", api="ollama_generate", base_url="http://127.0.0.1:11434"),
            False,
            "http://127.0.0.1:11434/api/generate",
            (("Content-Type", "application/json"), ("Accept", "application/json")),
            id="no-key-no-authorization",
        ),
    ],
)
def test_request_line_and_headers(
    provider: Provider, stream: bool, url: str, headers: tuple[tuple[str, str], ...]
) -> None:
    http = codec.build_request(request(stream=stream), ROUTE, provider)
    assert (http.method, http.url, http.headers, http.stream) == ("POST", url, headers, stream)


def test_repr_never_shows_the_key() -> None:
    http = codec.build_request(request(), ROUTE, CLOUD)
    assert "ok-1" not in repr(http)
    assert "ok-1" not in str(http)


MINIMAL = {"model": "kimi-k2.6", "prompt": "hi", "stream": False, "think": False}
SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}}


@pytest.mark.parametrize(
    ("chat", "expected"),
    [
        pytest.param(request(), MINIMAL, id="minimal"),
        pytest.param(
            request(messages=(SYSTEM, USER)), {**MINIMAL, "system": "be brief"}, id="system"
        ),
        pytest.param(
            request(messages=(USER, m("assistant", "yo"), m("user", "again"))),
            {**MINIMAL, "prompt": "User: hi\n\nAssistant: yo\n\nUser: again\n\nAssistant:"},
            id="multi-turn-flattened",
        ),
        pytest.param(request(stream=True), {**MINIMAL, "stream": True}, id="stream"),
        pytest.param(request(think=True), {**MINIMAL, "think": True}, id="think-true"),
        pytest.param(request(think="high"), {**MINIMAL, "think": "high"}, id="think-level"),
        pytest.param(request(format="json"), {**MINIMAL, "format": "json"}, id="format-json"),
        pytest.param(
            request(format=SCHEMA), {**MINIMAL, "format": SCHEMA}, id="format-schema-passed-on"
        ),
        pytest.param(
            request(max_tokens=10, temperature=0.2, top_p=0.9, stop=("\n",), seed=1),
            {
                **MINIMAL,
                "options": {
                    "num_predict": 10,
                    "temperature": 0.2,
                    "top_p": 0.9,
                    "stop": ["\n"],
                    "seed": 1,
                },
            },
            id="options",
        ),
        pytest.param(
            request(
                messages=(
                    m("user", "a", images=("aW1nMQ==",)),
                    m("assistant", "b"),
                    m("user", "c", images=("aW1nMg==", "aW1nMw==")),
                )
            ),
            {
                **MINIMAL,
                "prompt": "User: a\n\nAssistant: b\n\nUser: c\n\nAssistant:",
                "images": ["aW1nMQ==", "aW1nMg==", "aW1nMw=="],
            },
            id="images-collected-in-order",
        ),
        pytest.param(request(tool_choice="none"), MINIMAL, id="tool-choice-without-tools"),
    ],
)
def test_request_body(chat: ChatRequest, expected: Any) -> None:
    assert body_of(chat) == expected


def test_body_fits_the_official_client_model() -> None:
    chat = request(
        # No images: the client model wants Image objects, not their base64 wire form.
        messages=(SYSTEM, m("user", "q"), m("assistant", "a"), USER),
        think="low",
        format="json",
        max_tokens=3,
        stop=("x",),
    )
    body = body_of(chat)
    assert set(body) <= set(ollama_types.GenerateRequest.model_fields)
    ollama_types.GenerateRequest.model_validate(body)


@pytest.mark.parametrize(
    ("chat", "message"),
    [
        pytest.param(
            request(tools=({"type": "function", "function": {"name": "f"}},)),
            "takes no tools",
            id="tools",
        ),
        pytest.param(request(messages=(SYSTEM,)), "empty prompt", id="system-only"),
        pytest.param(request(messages=(m("user", ""),)), "empty prompt", id="empty-user"),
    ],
)
def test_requests_refused(chat: ChatRequest, message: str) -> None:
    with pytest.raises(ChatError) as info:
        codec.build_request(chat, ROUTE, CLOUD)
    assert (info.value.type, info.value.status) == ("invalid_request", 400)
    assert message in info.value.message
    assert "ollama_cloud" in info.value.message


# --- parsing a whole response ------------------------------------------------------------


def answer(**fields: Any) -> bytes:
    return orjson.dumps({"model": "kimi-k2.6", "created_at": "2025-07-07T20:32:53Z", **fields})


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            answer(
                response="Hello!",
                done=True,
                done_reason="stop",
                context=[1, 2],
                prompt_eval_count=12,
                eval_count=9,
            ),
            ChatResponse(
                content="Hello!",
                finish_reason="stop",
                usage=Usage(prompt_tokens=12, completion_tokens=9),
            ),
            id="happy",
        ),
        pytest.param(
            answer(response="4", thinking="2+2", done=True, done_reason="length", eval_count=1),
            ChatResponse(
                content="4",
                finish_reason="length",
                thinking="2+2",
                usage=Usage(completion_tokens=1),
            ),
            id="thinking-length",
        ),
        pytest.param(
            answer(response="", thinking="", done=True),
            ChatResponse(content="", finish_reason="stop"),
            id="empty-no-reason-no-counts",
        ),
    ],
)
def test_parse_response(body: bytes, expected: ChatResponse) -> None:
    assert codec.parse_response("ollama_cloud", body) == expected


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"<html>", id="malformed"),
        pytest.param(b"[1]", id="array"),
        pytest.param(b"3", id="number"),
        pytest.param(answer(done=True), id="no-response"),
        pytest.param(answer(message={"content": "x"}, done=True), id="chat-shape"),
        pytest.param(answer(response=["x"], done=True), id="response-not-string"),
        pytest.param(answer(response="x", thinking=1), id="thinking-not-string"),
        pytest.param(answer(response="x", eval_count=1.5), id="count-float"),
        pytest.param(answer(response="x", done_reason=["stop"]), id="done-reason-list"),
        pytest.param(answer(response="The", done=False), id="done-false-fragment"),
    ],
)
def test_parse_response_rejects_wrong_shapes(body: bytes) -> None:
    with pytest.raises(ChatError) as info:
        codec.parse_response("ollama_cloud", body)
    assert (info.value.type, info.value.status) == ("bad_upstream_response", 502)
    assert info.value.provider == "ollama_cloud"


def test_error_object_in_a_200_body_is_upstream_error() -> None:
    with pytest.raises(ChatError) as info:
        codec.parse_response("ollama_cloud", b'{"error": "boom"}')
    err = info.value
    assert (err.type, err.status, err.upstream_status, err.message) == (
        "upstream_error",
        502,
        200,
        "boom",
    )


# --- streams -----------------------------------------------------------------------------


def feed_all(chunks: list[bytes]) -> list[Event]:
    return feed(codec.stream_parser("ollama_cloud"), chunks)


THINKING_EVENTS = [
    ThinkingDelta(text="The user"),
    ThinkingDelta(text=" wants 2+2."),
    TextDelta(text="4"),
    StreamEnded(finish_reason="length", usage=Usage(prompt_tokens=12, completion_tokens=10)),
]
#: The final line of the recorded text streams: its counts and Ollama's four durations
#: it has (nanoseconds), all of which reach the canonical usage.
FIXTURE_USAGE = Usage(prompt_tokens=26, completion_tokens=4, total_duration_ns=3244883583,
                      eval_duration_ns=133293625)


STREAMS = [
    pytest.param(
        (FIXTURES / "ollama_generate_text.ndjson").read_bytes(),
        [
            TextDelta(text="Un "),
            TextDelta(text="café ☕"),
            TextDelta(text=" 🙂"),
            StreamEnded(finish_reason="stop", usage=FIXTURE_USAGE),
        ],
        id="text-utf8-empty-deltas",
    ),
    pytest.param(
        (FIXTURES / "ollama_generate_thinking.ndjson").read_bytes(),
        THINKING_EVENTS,
        id="thinking-length",
    ),
    pytest.param(
        (FIXTURES / "ollama_generate_thinking.ndjson").read_bytes() + b'{"error":"late"}\n',
        THINKING_EVENTS,
        id="after-done-ignored",
    ),
    pytest.param(
        b'{"response":"a","done":false}\n{"response":"b","done":true}',
        [
            TextDelta(text="a"),
            TextDelta(text="b"),
            StreamEnded(finish_reason="stop", usage=Usage()),
        ],
        id="text-in-done-line-no-final-newline",
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


LINE = b'{"response":"Hi","done":false}\n'


@pytest.mark.parametrize(
    ("data", "error_type", "message"),
    [
        pytest.param(
            LINE + b'{"error":"an error was encountered while running the model"}\n',
            "upstream_error",
            "an error was encountered while running the model",
            id="mid-stream-error",
        ),
        pytest.param(LINE, "bad_upstream_response", "ended before done", id="eof-before-done"),
        pytest.param(LINE + b"nope\n", "bad_upstream_response", "malformed JSON", id="malformed"),
        pytest.param(b'"x"\n', "bad_upstream_response", "not an object", id="string-line"),
        pytest.param(b'{"response":1}\n', "bad_upstream_response", "'response'", id="response-int"),
        pytest.param(
            b'{"thinking":{"a":1}}\n', "bad_upstream_response", "'thinking'", id="thinking-object"
        ),
        pytest.param(
            b'{"done":true,"prompt_eval_count":null}\n',
            "bad_upstream_response",
            "'prompt_eval_count'",
            id="count-null",
        ),
    ],
)
def test_stream_failures(data: bytes, error_type: str, message: str) -> None:
    for _, chunks in every_split(data):
        with pytest.raises(ChatError) as info:
            feed_all(chunks)
        err = info.value
        assert (err.type, err.status, err.provider) == (error_type, 502, "ollama_cloud")
        assert message in err.message


def check_events_or_chat_error(chunks: list[bytes]) -> None:
    events, err = outcome(codec.stream_parser("ollama_cloud"), chunks)
    for event in events:
        assert isinstance(event, TextDelta | ThinkingDelta | ToolCallDelta | StreamEnded)
    if err is not None:
        assert err.status == 502


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=1), max_size=6))
def test_random_bytes_give_events_or_chat_error(chunks: list[bytes]) -> None:
    check_events_or_chat_error(chunks)


JSON_VALUES = json_values(st.text(max_size=3), max_leaves=6)
KEYS = ["response", "thinking", "done", "done_reason", "error", "eval_count", "prompt_eval_count"]


@settings(max_examples=120, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(KEYS), JSON_VALUES, max_size=4), max_size=5))
def test_random_ollama_like_lines_give_events_or_chat_error(objects: list[Any]) -> None:
    # The stdlib encoder: it writes integers of any size, which orjson refuses to encode.
    data = "".join(json.dumps(obj) + "\n" for obj in objects).encode()
    check_events_or_chat_error([data] if data else [])
