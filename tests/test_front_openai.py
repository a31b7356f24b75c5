"""The OpenAI-compatible front door's translation layer (SPEC §3, §4; providers.md §3).

Requests: every field's mapping and every bad input's 400. Answers, streams, errors and
the model list: checked against the official openai SDK's own models, against the SDK
itself reading the bytes through an in-memory HTTP transport (status -> exception class,
stream -> chunks, mid-stream error -> APIError), and against chatd's own openai_chat
codec, which must read back exactly the events that were rendered.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx2
import openai
import orjson
import pytest
from helpers import every_split, feed, json_values
from hypothesis import given
from hypothesis import strategies as st
from openai.types import Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessageParam
from openai.types.chat import ChatCompletionMessageFunctionToolCall as FunctionToolCall

from chatproto import (
    ERROR_STATUS,
    ChatError,
    ChatRequest,
    ChatResponse,
    Event,
    Message,
    SSEDecoder,
    StreamEnded,
    TextDelta,
    ThinkingDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
    catalog,
    codec_for,
    profile,
)
from chatproto.dialects.openai_chat import (
    CompletionStream,
    parse_request,
    render_completion,
    render_error,
    render_model,
    render_models,
)

USER = {"role": "user", "content": "hi"}
SDK_MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
BASE = ChatRequest(
    model="gpt-x", messages=(Message(role="user", content="hi"),), dialect="openai_chat"
)
PNG = "iVBORw0KGgoAAAANSUhEUg=="
JPEG = "/9j/4AAQSkZJRg=="


def body(**fields: object) -> bytes:
    obj: dict[str, object] = {"model": "gpt-x", "messages": [USER]}
    obj.update(fields)
    return json.dumps(obj).encode()


def msgs(*messages: object) -> bytes:
    return body(messages=list(messages))


def effort(think: bool | str, sent: str) -> ChatRequest:
    """``reasoning_effort`` read as ``think``, the client's own value kept beside it for an
    upstream that takes it back (OpenCode Zen's ``reasoning_effort``)."""
    return replace(BASE, think=think, options={"reasoning_effort": sent})


def with_messages(*messages: Message) -> ChatRequest:
    return replace(BASE, messages=messages)


# --------------------------------------------------------------------------------------
# Requests

CALL = {"id": "call_1", "type": "function",
        "function": {"name": "get", "arguments": '{"city":"Paris"}'}}
TOOL = {"type": "function", "function": {"name": "get", "parameters": {"type": "object"}}}
SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}}

GOOD: list[tuple[bytes, ChatRequest]] = [
    (body(), BASE),
    # messages
    (msgs({"role": "developer", "content": "be brief"}, USER),
     with_messages(Message(role="system", content="be brief"), BASE.messages[0])),
    (msgs({"role": "system", "content": "s"}, USER),
     with_messages(Message(role="system", content="s"), BASE.messages[0])),
    (msgs({"role": "user", "content": [{"type": "text", "text": "a"},
                                       {"type": "text", "text": "b"}]}),
     with_messages(Message(role="user", content="a\nb"))),
    (msgs({"role": "user", "content": []}), with_messages(Message(role="user", content=""))),
    (msgs({"role": "developer", "content": [{"type": "text", "text": "rules"}]}),
     with_messages(Message(role="system", content="rules"))),
    (msgs({"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{JPEG}",
                                            "detail": "low"}}]}),
     with_messages(Message(role="user", content="what is this?", images=(PNG, JPEG)))),
    (msgs({"role": "user", "content": [
        {"type": "image_url", "image_url": f"DATA:Image/PNG;charset=x;BASE64,{PNG}"}]}),
     with_messages(Message(role="user", content="", images=(PNG,)))),
    (msgs(USER, {"role": "assistant", "content": None, "tool_calls": [CALL]},
          {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}),
     with_messages(
         BASE.messages[0],
         Message(role="assistant", content="",
                 tool_calls=(ToolCall(id="call_1", name="get", arguments='{"city":"Paris"}'),)),
         Message(role="tool", content="sunny", tool_call_id="call_1"))),
    (msgs(USER, {"role": "assistant", "tool_calls": [CALL]},
          {"role": "tool", "tool_call_id": "call_1",
           "content": [{"type": "text", "text": "sun"}, {"type": "text", "text": "ny"}]}),
     with_messages(
         BASE.messages[0],
         Message(role="assistant", content="",
                 tool_calls=(ToolCall(id="call_1", name="get", arguments='{"city":"Paris"}'),)),
         Message(role="tool", content="sun\nny", tool_call_id="call_1"))),
    (msgs(USER, {"role": "assistant", "content": "x", "reasoning_content": "hmm"}),
     with_messages(BASE.messages[0], Message(role="assistant", content="x", thinking="hmm"))),
    (msgs(USER, {"role": "assistant", "content": "x", "reasoning": "hmm"}),
     with_messages(BASE.messages[0], Message(role="assistant", content="x", thinking="hmm"))),
    (msgs(USER, {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]}),
     with_messages(BASE.messages[0], Message(role="assistant", content="no"))),
    (msgs({"role": "user", "content": "hi", "name": "ann", "images": [PNG]}),
     with_messages(Message(role="user", content="hi", name="ann"))),
    # token limits
    (body(max_tokens=10), replace(BASE, max_tokens=10)),
    (body(max_completion_tokens=20), replace(BASE, max_tokens=20)),
    (body(max_tokens=10, max_completion_tokens=20), replace(BASE, max_tokens=20)),
    (body(max_tokens=10, max_completion_tokens=None), replace(BASE, max_tokens=10)),
    # sampling
    (body(temperature=0.2, top_p=1), replace(BASE, temperature=0.2, top_p=1.0)),
    (body(stop="\n"), replace(BASE, stop=("\n",))),
    (body(stop=["a", "b"]), replace(BASE, stop=("a", "b"))),
    (body(seed=7), replace(BASE, seed=7)),
    # response_format
    (body(response_format={"type": "text"}), BASE),
    (body(response_format={"type": "json_object"}), replace(BASE, format="json")),
    (body(response_format={"type": "json_schema",
                           "json_schema": {"name": "r", "strict": True, "schema": SCHEMA}}),
     replace(BASE, format=SCHEMA, options={"format_name": "r", "format_strict": True})),
    (body(response_format={"type": "json_schema", "json_schema": {"name": "r"}}),
     replace(BASE, format="json")),
    # reasoning_effort, each value (OAI reasoning_effort.py)
    (body(reasoning_effort="none"), effort(False, "none")),
    (body(reasoning_effort="minimal"), effort(False, "minimal")),
    (body(reasoning_effort="low"), effort("low", "low")),
    (body(reasoning_effort="medium"), effort("medium", "medium")),
    (body(reasoning_effort="high"), effort("high", "high")),
    (body(reasoning_effort="xhigh"), effort("max", "xhigh")),
    (body(reasoning_effort="max"), effort("max", "max")),
    (body(reasoning_effort=None), BASE),
    (body(reasoning={"effort": "medium"}), replace(BASE, think="medium")),
    (body(reasoning={"effort": "minimal"}), replace(BASE, think=False)),
    (body(reasoning={"enabled": False}), replace(BASE, think=False)),
    (body(reasoning={"enabled": True}), replace(BASE, think=True)),
    (body(reasoning={"enabled": True, "effort": "high"}), replace(BASE, think="high")),
    (body(reasoning={"max_tokens": 100}), BASE),
    (body(reasoning_effort="high", reasoning={"effort": "high"}), effort("high", "high")),
    (body(reasoning_effort="xhigh", reasoning={"effort": "max"}), effort("max", "xhigh")),
    # tools
    (body(tools=[TOOL], tool_choice="required"),
     replace(BASE, tools=(TOOL,), tool_choice="required")),
    (body(tools=[TOOL], tool_choice={"type": "function", "function": {"name": "get"}}),
     replace(BASE, tools=(TOOL,), tool_choice={"type": "function", "function": {"name": "get"}})),
    # stream, n, ignored fields
    (body(stream=True), replace(BASE, stream=True)),
    (body(n=1), BASE),
    (body(n=None, user="u", logprobs=True, parallel_tool_calls=False, presence_penalty=0.5,
          metadata={"a": "b"}, store=False, service_tier="auto"),
     replace(BASE, options={"user": "u", "logprobs": True, "parallel_tool_calls": False,
                            "presence_penalty": 0.5},
             extras={"metadata": {"a": "b"}, "store": False, "service_tier": "auto"})),
]
GOOD_IDS = [
    "minimal", "developer-is-system", "system", "text-parts-joined-by-newline",
    "empty-parts", "developer-parts", "data-url-images", "image-url-string-any-case",
    "tool-round-trip", "tool-content-parts", "assistant-reasoning-content",
    "assistant-reasoning", "assistant-refusal-part", "ollama-images-key-ignored",
    "max_tokens", "max_completion_tokens", "max_completion_tokens-wins", "null-newer-name",
    "temperature-top_p", "stop-string", "stop-list", "seed",
    "format-text", "format-json_object", "format-json_schema", "format-schema-missing",
    "effort-none", "effort-minimal", "effort-low", "effort-medium", "effort-high",
    "effort-xhigh", "effort-max", "effort-null",
    "reasoning.effort", "reasoning.effort-minimal", "reasoning.enabled-false",
    "reasoning.enabled-true", "reasoning.enabled-and-effort", "reasoning.max_tokens-only",
    "both-spellings-agree", "xhigh-and-max-agree",
    "tools-required", "tool_choice-object",
    "stream", "n-1", "options-and-extras",
]


@pytest.mark.parametrize(("raw", "expected"), GOOD, ids=GOOD_IDS)
def test_request_mapping(raw: bytes, expected: ChatRequest) -> None:
    parsed = parse_request(raw)
    # The body is kept whole for an upstream of the same wire format (ChatRequest.raw).
    assert parsed.chat.raw == json.loads(raw)
    assert replace(parsed.chat, raw=None) == expected
    assert parsed.include_usage is False


@pytest.mark.parametrize(
    ("options", "include_usage"),
    [({"include_usage": True}, True), ({"include_usage": False}, False),
     ({}, False), (None, False), ({"include_usage": None, "include_obfuscation": False}, False)],
    ids=["true", "false", "empty", "null", "null-usage-extra-key"],
)
def test_stream_options(options: object, include_usage: bool) -> None:
    parsed = parse_request(body(stream=True, stream_options=options))
    assert parsed.chat.stream is True
    assert parsed.include_usage is include_usage


def image(url: object, role: str = "user") -> bytes:
    return msgs({"role": role, "content": [{"type": "image_url", "image_url": url}]})


BAD = [
    (b"{", "not valid JSON", "not-json"),
    (b"[]", "must be a JSON object", "array-body"),
    (json.dumps({"messages": [USER]}).encode(), "model is required", "model-missing"),
    (body(model=3), "model must be a string", "model-int"),
    (json.dumps({"model": "m"}).encode(), "messages is required", "messages-missing"),
    (body(messages=[]), "messages must not be empty", "messages-empty"),
    (body(messages={"role": "user"}), "messages must be an array", "messages-object"),
    (msgs("hi"), "messages[0] must be an object", "message-string"),
    (msgs({"role": "function", "content": "x", "name": "f"}), "messages[0].role", "role-function"),
    (msgs({"content": "x"}), "messages[0].role", "role-missing"),
    (msgs({"role": "user"}), "messages[0].content is required", "content-missing"),
    (msgs({"role": "user", "content": 3}), "messages[0].content must be a string",
     "content-number"),
    (msgs({"role": "user", "content": ["hi"]}), "messages[0].content[0] must be an object",
     "part-string"),
    (msgs({"role": "user", "content": [{"type": "text", "text": 1}]}),
     "messages[0].content[0].text must be a string", "text-part-number"),
    (msgs({"role": "assistant", "content": [{"type": "input_audio", "input_audio": {}}]}),
     "messages[0].content[0].type 'input_audio' is not supported", "audio-part-assistant"),
    (msgs({"role": "user", "content": [{"type": "file", "file": "a.pdf"}]}),
     "messages[0].content[0].file must be an object", "file-part-string"),
    (msgs({"role": "user", "content": [{"type": "refusal", "refusal": "no"}]}),
     "messages[0].content[0].type 'refusal'", "refusal-part-on-user"),
    (msgs({"role": "user", "content": [{"text": "x"}]}),
     "messages[0].content[0].type None", "part-type-missing"),
    (image({"url": "ftp://example.com/cat.png"}),
     "messages[0].content[0].image_url.url: expected an http(s) URL or a data:image",
     "ftp-image"),
    (image("cat.png"), "messages[0].content[0].image_url: expected an http(s) URL",
     "bare-name-image"),
    (image({"url": "data:text/plain;base64,aGk="}),
     "image_url.url must be a data:image/<type>;base64", "data-url-not-image"),
    (image({"url": f"data:image/png,{PNG}"}), "image_url.url must be a data:image",
     "data-url-not-base64"),
    (image({"url": "data:image/png;base64"}), "image_url.url must be a data:image",
     "data-url-no-comma"),
    (image({"url": "data:image/png;base64,"}), "image_url.url has no image data",
     "data-url-empty"),
    (image({"detail": "low"}), "image_url.url must be a string, not null", "url-missing"),
    (image({"url": f"data:image/png;base64,{PNG}"}, role="system"),
     "messages[0].content[0]: image parts are allowed only in user messages",
     "image-on-system"),
    (msgs({"role": "user", "content": "x", "tool_calls": [CALL]}),
     "messages[0].tool_calls is only allowed on assistant", "tool_calls-on-user"),
    (msgs({"role": "assistant", "content": None, "tool_calls": [{"function": {}}]}),
     "messages[0].tool_calls[0].function.name", "tool-call-no-name"),
    (msgs({"role": "assistant", "content": "x", "reasoning_content": 5}),
     "messages[0].reasoning_content must be a string", "reasoning_content-number"),
    (msgs({"role": "tool", "content": "x", "tool_call_id": 5}),
     "messages[0].tool_call_id must be a string", "tool_call_id-number"),
    (body(max_tokens=0), "max_tokens must be a positive integer", "max_tokens-zero"),
    (body(max_completion_tokens="10"), "max_completion_tokens must be an integer",
     "max_completion_tokens-string"),
    (body(max_completion_tokens=-1), "max_completion_tokens must be a positive",
     "max_completion_tokens-negative"),
    (body(temperature="hot"), "temperature must be a number", "temperature-string"),
    (body(top_p=True), "top_p must be a number", "top_p-bool"),
    (body(stop=[1]), "stop[0] must be a string", "stop-number"),
    (body(seed=1.5), "seed must be an integer", "seed-float"),
    (body(response_format="json"), "response_format must be an object", "format-string"),
    (body(response_format={"type": "yaml"}), "response_format.type must be", "format-type"),
    (body(response_format={}), "response_format.type must be", "format-type-missing"),
    (body(response_format={"type": "json_schema"}),
     "response_format.json_schema must be an object", "json_schema-missing"),
    (body(response_format={"type": "json_schema", "json_schema": {"schema": "x"}}),
     "response_format.json_schema.schema must be an object", "schema-string"),
    (body(reasoning_effort="ultra"), "reasoning_effort must be one of", "effort-ultra"),
    (body(reasoning_effort="HIGH"), "reasoning_effort must be one of", "effort-case"),
    (body(reasoning_effort=3), "reasoning_effort must be one of", "effort-number"),
    (body(reasoning_effort=["high"]), "reasoning_effort must be one of", "effort-list"),
    (body(reasoning="high"), "reasoning must be an object", "reasoning-string"),
    (body(reasoning={"effort": "lots"}), "reasoning.effort must be one of",
     "reasoning.effort-bad"),
    (body(reasoning={"enabled": "yes"}), "reasoning.enabled must be true or false",
     "reasoning.enabled-string"),
    (body(reasoning_effort="high", reasoning={"effort": "low"}),
     "reasoning_effort and reasoning disagree", "spellings-disagree"),
    (body(reasoning_effort="high", reasoning={"enabled": False}),
     "reasoning_effort and reasoning disagree", "effort-vs-disabled"),
    (body(n=2), "n must be 1", "n-2"),
    (body(n="1"), "n must be an integer", "n-string"),
    (body(stream="yes"), "stream must be true or false", "stream-string"),
    (body(stream_options=True), "stream_options must be an object", "stream_options-bool"),
    (body(stream_options={"include_usage": "true"}),
     "stream_options.include_usage must be true or false", "include_usage-string"),
    (body(tools={"type": "function"}), "tools must be an array", "tools-object"),
    (body(tools=["get"]), "tools[0] must be an object", "tools-string-item"),
    (body(tool_choice=3), "tool_choice must be a string or an object", "tool_choice-number"),
    (body(functions=[{"name": "f"}]), "functions and function_call are deprecated",
     "legacy-functions"),
    (body(function_call="auto"), "functions and function_call are deprecated",
     "legacy-function_call"),
]


@pytest.mark.parametrize(("raw", "fragment"), [(r, f) for r, f, _ in BAD],
                         ids=[i for *_, i in BAD])
def test_bad_request_is_400_naming_the_field(raw: bytes, fragment: str) -> None:
    with pytest.raises(ChatError) as info:
        parse_request(raw)
    assert info.value.type == "invalid_request"
    assert info.value.status == 400
    assert fragment in info.value.message


FIELDS = ["model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p",
          "stop", "seed", "response_format", "reasoning_effort", "reasoning", "tools",
          "tool_choice", "stream", "stream_options", "n", "functions"]
JSON_VALUES = json_values(
    ["role", "content", "type", "text", "image_url", "url", "effort", "enabled", "schema",
     "json_schema", "tool_calls", "include_usage"],
    leaves=st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=8) | st.sampled_from(["low", "none", "json_schema", "text", "user"]),
    max_leaves=12,
    max_size=4,
)


@given(st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=6))
def test_any_json_body_is_a_request_or_a_400(obj: dict[str, Any]) -> None:
    try:
        parsed = parse_request(json.dumps(obj).encode())
    except ChatError as exc:
        assert exc.status == 400
    else:
        assert isinstance(parsed.chat, ChatRequest)


# --------------------------------------------------------------------------------------
# The openai SDK over an in-memory transport


def sdk(respond: Callable[[httpx2.Request], httpx2.Response]) -> openai.OpenAI:
    """An OpenAI client whose HTTP goes to ``respond`` instead of the network."""
    return openai.OpenAI(
        api_key="test", base_url="http://chatd.test/v1", max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(respond)),
    )


def answering(status: int, content: bytes, content_type: str = "application/json"
              ) -> openai.OpenAI:
    return sdk(lambda request: httpx2.Response(
        status, content=content, headers={"content-type": content_type}))


# --------------------------------------------------------------------------------------
# Whole answers

TEXT = ChatResponse(content="Paris.", finish_reason="stop",
                    usage=Usage(prompt_tokens=12, completion_tokens=3))
COMPLETIONS = [
    (TEXT, "text"),
    (replace(TEXT, thinking="The capital...", finish_reason="length"), "thinking-length"),
    (ChatResponse(content="", finish_reason="tool_calls",
                  tool_calls=(ToolCall(id="call_a", name="get", arguments='{"c":"P"}'),
                              ToolCall(id=None, name="put", arguments="{}"))),
     "tool-calls-only"),
    (ChatResponse(content="Let me look.", finish_reason="tool_calls",
                  tool_calls=(ToolCall(id="call_a", name="get", arguments="{}"),)),
     "text-and-tool-call"),
    (ChatResponse(content="", finish_reason="stop"), "empty"),
    (ChatResponse(content="", finish_reason="content_filter"), "content-filter"),
]


@pytest.mark.parametrize("resp", [r for r, _ in COMPLETIONS], ids=[i for _, i in COMPLETIONS])
def test_render_completion(resp: ChatResponse) -> None:
    raw = render_completion(resp, id="chatcmpl-7", model="fast", created=1_700_000_000)
    done = ChatCompletion.model_validate_json(raw)
    assert (done.id, done.object, done.created, done.model) == (
        "chatcmpl-7", "chat.completion", 1_700_000_000, "fast")
    (choice,) = done.choices
    assert choice.index == 0
    assert choice.finish_reason == resp.finish_reason
    assert choice.logprobs is None
    message = choice.message
    assert message.role == "assistant"
    if resp.tool_calls and not resp.content:
        assert message.content is None
    else:
        assert message.content == resp.content
    extra = message.model_extra or {}
    if resp.thinking:
        assert extra == {"reasoning_content": resp.thinking, "reasoning": resp.thinking}
    else:
        assert "reasoning_content" not in extra and "reasoning" not in extra
    calls = [c for c in message.tool_calls or [] if isinstance(c, FunctionToolCall)]
    assert len(calls) == len(message.tool_calls or [])
    assert [(c.type, c.function.name, c.function.arguments) for c in calls] == [
        ("function", c.name, c.arguments) for c in resp.tool_calls]
    assert [c.id for c in calls] == [
        c.id if c.id is not None else f"call_chatcmpl-7_{i}"
        for i, c in enumerate(resp.tool_calls)]
    assert done.usage is not None
    assert (done.usage.prompt_tokens, done.usage.completion_tokens, done.usage.total_tokens) == (
        resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens)
    # The SDK's own client reads it too.
    got = answering(200, raw).chat.completions.create(model="fast", messages=SDK_MESSAGES)
    assert got == done


# --------------------------------------------------------------------------------------
# Streams

U = Usage(prompt_tokens=9, completion_tokens=4)
SCRIPTS: list[tuple[list[Event], str]] = [
    ([TextDelta(text="Hel"), TextDelta(text='lo "wörld"\n'),
      StreamEnded(finish_reason="stop", usage=U)], "text"),
    ([ThinkingDelta(text="Let me think"), ThinkingDelta(text="..."), TextDelta(text="42"),
      StreamEnded(finish_reason="length", usage=U)], "thinking-then-text"),
    ([TextDelta(text="Checking."),
      ToolCallDelta(index=0, id="call_a", name="get", arguments=""),
      ToolCallDelta(index=0, arguments='{"city":'),
      ToolCallDelta(index=1, id="call_b", name="put", arguments='{"k":'),
      ToolCallDelta(index=0, arguments='"Paris"}'),
      ToolCallDelta(index=1, arguments="1}"),
      StreamEnded(finish_reason="tool_calls", usage=U)], "interleaved-tool-calls"),
    ([TextDelta(text="x"), StreamEnded(finish_reason="stop", usage=None)], "no-upstream-usage"),
    ([StreamEnded(finish_reason="stop", usage=Usage())], "nothing-but-the-end"),
]


def render(events: list[Event], *, include_usage: bool, id: str = "chatcmpl-s",
           model: str = "smart") -> bytes:
    stream = CompletionStream(id=id, model=model, created=1_700_000_001,
                              include_usage=include_usage)
    return stream.start() + b"".join(stream.event(e) for e in events)


def datas(raw: bytes) -> list[bytes]:
    decoder = SSEDecoder()
    events = decoder.feed(raw) + decoder.feed(b"")
    assert all(e.event == "message" for e in events)
    return [e.data for e in events]


@pytest.mark.parametrize("include_usage", [True, False], ids=["usage", "no-usage"])
@pytest.mark.parametrize("events", [s for s, _ in SCRIPTS], ids=[i for _, i in SCRIPTS])
def test_stream_chunks_are_openai_chunks(events: list[Event], include_usage: bool) -> None:
    raw = render(events, include_usage=include_usage)
    payloads = datas(raw)
    assert payloads[-1] == b"[DONE]"
    assert raw.endswith(b"\n\ndata: [DONE]\n\n")
    end = events[-1]
    assert isinstance(end, StreamEnded)
    usage_chunk = include_usage and end.usage is not None
    # start + one chunk per delta event + the finish chunk (+ usage chunk) + [DONE]
    assert len(payloads) == 1 + (len(events) - 1) + 1 + usage_chunk + 1
    chunks = [ChatCompletionChunk.model_validate_json(p) for p in payloads[:-1]]
    for chunk, payload in zip(chunks, payloads, strict=False):
        assert (chunk.id, chunk.object, chunk.created, chunk.model) == (
            "chatcmpl-s", "chat.completion.chunk", 1_700_000_001, "smart")
        # OpenAI: with include_usage every chunk carries "usage" (null but the last);
        # without it, none does (providers.md §3.3).
        assert ("usage" in orjson.loads(payload)) is include_usage
    first = chunks[0].choices[0]
    assert (first.delta.role, first.delta.content, first.finish_reason) == ("assistant", "", None)
    finish = chunks[len(events)]
    assert finish.choices[0].finish_reason == end.finish_reason
    assert finish.choices[0].delta.model_dump(exclude_none=True) == {}
    assert orjson.loads(payloads[len(events)])["choices"][0]["delta"] == {}
    for chunk in chunks[1:len(events)]:
        assert chunk.choices[0].finish_reason is None
        assert chunk.usage is None
    if usage_chunk:
        assert end.usage is not None
        last = chunks[-1]
        assert last.choices == []
        assert last.usage is not None
        assert (last.usage.prompt_tokens, last.usage.completion_tokens,
                last.usage.total_tokens) == (end.usage.prompt_tokens,
                                             end.usage.completion_tokens,
                                             end.usage.total_tokens)
    else:
        assert chunks[-1].choices[0].finish_reason == end.finish_reason


@pytest.mark.parametrize("include_usage", [True, False], ids=["usage", "no-usage"])
@pytest.mark.parametrize("events", [s for s, _ in SCRIPTS], ids=[i for _, i in SCRIPTS])
def test_stream_round_trips_through_chatds_openai_codec(
    events: list[Event], include_usage: bool
) -> None:
    """What chatd renders, chatd's own client codec reads back as the same events."""
    raw = render(events, include_usage=include_usage)
    expected = list(events)
    end = expected[-1]
    assert isinstance(end, StreamEnded)
    if not include_usage:
        expected[-1] = replace(end, usage=None)
    for how, pieces in every_split(raw, stride=7):
        assert feed(codec_for("openai_chat").stream_parser("chatd"), pieces) == expected, how


@pytest.mark.parametrize("events", [s for s, _ in SCRIPTS], ids=[i for _, i in SCRIPTS])
def test_stream_through_the_openai_sdk(events: list[Event]) -> None:
    """The SDK iterates the stream, and its stream helper assembles the same answer."""
    raw = render(events, include_usage=True)
    client = answering(200, raw, "text/event-stream")
    chunks = list(client.chat.completions.create(model="smart", messages=SDK_MESSAGES,
                                                 stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    thinking = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content", "")
                       for c in chunks if c.choices)
    assert text == "".join(e.text for e in events if isinstance(e, TextDelta))
    assert thinking == "".join(e.text for e in events if isinstance(e, ThinkingDelta))

    with client.chat.completions.stream(model="smart", messages=SDK_MESSAGES) as helper:
        helper.until_done()
        # The snapshot, not get_final_completion(): that one raises on finish "length".
        final = helper.current_completion_snapshot
    end = events[-1]
    assert isinstance(end, StreamEnded)
    assert final.choices[0].finish_reason == end.finish_reason
    calls: dict[int, list[str]] = {}
    for e in events:
        if isinstance(e, ToolCallDelta):
            entry = calls.setdefault(e.index, [e.id or "", e.name or "", ""])
            entry[2] += e.arguments
    got = [(c.id, c.function.name, c.function.arguments)
           for c in final.choices[0].message.tool_calls or []]
    assert got == [tuple(calls[i]) for i in sorted(calls)]


def test_tool_call_without_id_gets_one_and_the_same_as_in_a_whole_answer() -> None:
    """Ollama may omit tool-call ids; OpenAI clients need one to answer the call."""
    events: list[Event] = [
        ToolCallDelta(index=0, name="get", arguments='{"a":1}'),
        ToolCallDelta(index=1, name="put", arguments="{}"),
        ToolCallDelta(index=1, arguments=""),
        StreamEnded(finish_reason="tool_calls", usage=None),
    ]
    raw = render(events, include_usage=False, id="chatcmpl-9")
    chunks = [orjson.loads(p) for p in datas(raw)[:-1]]
    deltas = [c["choices"][0]["delta"].get("tool_calls") for c in chunks]
    assert deltas[1] == [{"index": 0, "id": "call_chatcmpl-9_0", "type": "function",
                          "function": {"name": "get", "arguments": '{"a":1}'}}]
    assert deltas[2] == [{"index": 1, "id": "call_chatcmpl-9_1", "type": "function",
                          "function": {"name": "put", "arguments": "{}"}}]
    assert deltas[3] == [{"index": 1, "function": {"arguments": ""}}]
    whole = ChatResponse(content="", finish_reason="tool_calls", tool_calls=(
        ToolCall(id=None, name="get", arguments='{"a":1}'),
        ToolCall(id=None, name="put", arguments="{}")))
    done = orjson.loads(render_completion(whole, id="chatcmpl-9", model="m", created=0))
    ids = [c["id"] for c in done["choices"][0]["message"]["tool_calls"]]
    assert ids == ["call_chatcmpl-9_0", "call_chatcmpl-9_1"]


def test_ids_and_model_are_json_escaped() -> None:
    model = 'ollama/we"ird\\name\u2028'
    raw = render([TextDelta(text="x"), StreamEnded(finish_reason="stop", usage=U)],
                 include_usage=True, id='id"1', model=model)
    for payload in datas(raw)[:-1]:
        chunk = orjson.loads(payload)
        assert (chunk["id"], chunk["model"]) == ('id"1', model)


def test_mid_stream_error() -> None:
    exc = ChatError("rate_limited", "slow down", provider="openrouter", upstream_status=429)
    stream = CompletionStream(id="chatcmpl-e", model="m", created=0, include_usage=True)
    raw = stream.start() + stream.event(TextDelta(text="par")) + stream.error(exc)
    assert datas(raw)[-1] == b"[DONE]"  # SPEC §4: an error chunk, then [DONE]
    last = orjson.loads(datas(raw)[-2])
    assert last == {"error": {"message": "slow down", "type": "rate_limit_error", "param": None,
                              "code": "rate_limited", "provider": "openrouter",
                              "upstream_status": 429}}
    # The openai SDK raises APIError on it (OAI _streaming.py) after the text before it.
    seen: list[str] = []
    with pytest.raises(openai.APIError) as info:
        for chunk in answering(200, raw, "text/event-stream").chat.completions.create(
                model="m", messages=SDK_MESSAGES, stream=True):
            seen.append(chunk.choices[0].delta.content or "")
    assert "".join(seen) == "par"
    assert info.value.message == "slow down"
    assert info.value.code == "rate_limited"
    # chatd's own codec reads it as an upstream failure carrying the message.
    # The text before the error comes first; the next feed raises the error.
    parser = codec_for("openai_chat").stream_parser("chatd")
    assert parser.feed(raw) == [TextDelta(text="par")]
    with pytest.raises(ChatError) as mine:
        parser.feed(b"")
    assert (mine.value.type, mine.value.message) == ("upstream_error", "slow down")


@pytest.mark.parametrize(
    "finish", [lambda s: s.event(StreamEnded(finish_reason="stop")),
               lambda s: s.error(ChatError("upstream_error", "x"))],
    ids=["after-end", "after-error"])
def test_stream_refuses_use_after_its_end(finish: Callable[[CompletionStream], bytes]) -> None:
    stream = CompletionStream(id="c", model="m", created=0, include_usage=False)
    finish(stream)
    with pytest.raises(RuntimeError):
        stream.event(TextDelta(text="late"))
    with pytest.raises(RuntimeError):
        stream.error(ChatError("upstream_error", "late"))


def test_stream_refuses_a_non_event() -> None:
    stream = CompletionStream(id="c", model="m", created=0, include_usage=False)
    with pytest.raises(TypeError):
        stream.event(Event())


# --------------------------------------------------------------------------------------
# Errors

#: SPEC §4 type -> (OpenAI error.type, the SDK's exception class for its status;
#: OAI _client.py _make_status_error).
ERRORS = {
    "invalid_request": ("invalid_request_error", openai.BadRequestError),
    "upstream_rejected": ("invalid_request_error", openai.BadRequestError),
    "unauthorized": ("authentication_error", openai.AuthenticationError),
    "provider_not_registered": ("not_found_error", openai.NotFoundError),
    "not_found": ("not_found_error", openai.NotFoundError),
    "method_not_allowed": ("invalid_request_error", openai.APIStatusError),
    "request_too_large": ("invalid_request_error", openai.APIStatusError),
    "rate_limited": ("rate_limit_error", openai.RateLimitError),
    "upstream_error": ("api_error", openai.InternalServerError),
    "upstream_unavailable": ("api_error", openai.InternalServerError),
    "bad_upstream_response": ("api_error", openai.InternalServerError),
    "upstream_overloaded": ("api_error", openai.InternalServerError),
    "upstream_timeout": ("api_error", openai.InternalServerError),
    "request_timeout": ("invalid_request_error", openai.APIStatusError),
    "overloaded": ("api_error", openai.InternalServerError),
    "shutting_down": ("api_error", openai.InternalServerError),
    "internal_error": ("api_error", openai.InternalServerError),
}


def test_every_spec_error_type_is_covered() -> None:
    assert set(ERRORS) == set(ERROR_STATUS)


@pytest.mark.parametrize("kind", list(ERRORS), ids=list(ERRORS))
@pytest.mark.parametrize("blame", [False, True], ids=["chatd", "upstream"])
def test_render_error(kind: str, blame: bool) -> None:
    category, sdk_class = ERRORS[kind]
    exc = ChatError(kind, f"what went wrong: {kind}",
                    provider="kimi" if blame else None,
                    upstream_status=418 if blame else None)
    raw = render_error(exc)
    expected: dict[str, object] = {"message": exc.message, "type": category, "param": None,
                                   "code": kind}
    if blame:
        expected.update(provider="kimi", upstream_status=418)
    assert orjson.loads(raw) == {"error": expected}
    with pytest.raises(openai.APIStatusError) as info:
        answering(exc.status, raw).chat.completions.create(model="m", messages=SDK_MESSAGES)
    assert type(info.value) is sdk_class
    assert info.value.status_code == exc.status
    assert (info.value.code, info.value.type) == (kind, category)
    assert info.value.body == expected


# --------------------------------------------------------------------------------------
# The model list

TIERS = {"fast": ("ollama/qwen3:4b",),
         "smart": ("kimi-k2.6:cloud", "openrouter/moonshotai/kimi-k2"),
         "cloudy": ("gpt-oss:120b:cloud",),
         "twin": ("ollama/qwen3:4b", " ollama/llama3 ")}
MODELS = [
    ({}, [], []),
    ({}, ["ollama"], []),
    (TIERS, ["ollama"],
     [("fast", "chatd"), ("twin", "chatd"), ("ollama/qwen3:4b", "ollama"),
      ("ollama/llama3", "ollama")]),
    (TIERS, ["ollama", "openrouter", "ollama_cloud"],
     [("fast", "chatd"), ("smart", "chatd"), ("cloudy", "chatd"), ("twin", "chatd"),
      ("ollama/qwen3:4b", "ollama"), ("kimi-k2.6:cloud", "ollama_cloud"),
      ("openrouter/moonshotai/kimi-k2", "openrouter"), ("gpt-oss:120b:cloud", "ollama_cloud"),
      ("ollama/llama3", "ollama")]),
    ({"odd": ("openrouter/bare", "")}, ["ollama", "openrouter", "custom"], []),
]


@pytest.mark.parametrize(("tiers", "providers", "expected"), MODELS,
                         ids=["nothing", "default-only", "local-only", "three-providers",
                              "malformed-targets-and-unknown-provider"])
def test_render_models(tiers: dict[str, tuple[str, ...]], providers: list[str],
                       expected: list[tuple[str, str]]) -> None:
    """Only names that route (no ``<provider>/`` prefix entries, which would be a 400)."""
    registered = {n: row for n in providers if (row := profile(n)) is not None}
    entries = catalog(tiers=tiers, providers=registered, listed={}, speaks=lambda api: True)
    raw = render_models(entries, created=1_700_000_002)
    obj = orjson.loads(raw)
    assert obj["object"] == "list"
    models = [Model.model_validate(m) for m in obj["data"]]
    assert [(m.id, m.owned_by) for m in models] == expected
    assert all(m.object == "model" and m.created == 1_700_000_002 for m in models)
    listed = answering(200, raw).models.list()
    assert [m.id for m in listed] == [i for i, _ in expected]
    for entry in entries:
        one = Model.model_validate_json(render_model(entry, created=5))
        assert (one.id, one.owned_by, one.created) == (entry.name, entry.provider or "chatd", 5)
