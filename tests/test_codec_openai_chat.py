"""The ``openai_chat`` codec (openrouter, opencode, kimi): requests, responses, streams, errors."""

from __future__ import annotations

import calendar
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from canned import lab, whole
from helpers import WEATHER_TOOL, bytewise, cut_at, cuts, json_values, outcome, steps
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from chatproto import (
    ChatError,
    ChatRequest,
    ChatResponse,
    Event,
    ImagePart,
    Message,
    Provider,
    Route,
    Secret,
    SSEDecoder,
    StreamEnded,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
    codec_for,
    profile,
)
from chatproto.dialects.openai_chat import codec

FIXTURES = Path(__file__).parent / "fixtures"
NAMES = ("openrouter", "opencode", "kimi")
BASE_URLS = {
    "openrouter": "https://openrouter.ai/api/v1",
    "opencode": "https://opencode.ai/zen/v1",
    "kimi": "https://api.kimi.com/coding/v1",
}
KEY = "sk-test-0123456789"
# The built-in rows, keyed: the codec reads their quirk flags, never their names.
def _row(name: str) -> Provider:
    row = profile(name)
    assert row is not None, name
    return row


PROVIDERS = {
    name: replace(_row(name), base_url=url, key=Secret(KEY)) for name, url in BASE_URLS.items()
}
ROUTES = {
    "openrouter": Route(provider="openrouter", upstream_model="moonshotai/kimi-k2"),
    "opencode": Route(provider="opencode", upstream_model="glm-5.1"),
    "kimi": Route(provider="kimi", upstream_model="kimi-for-coding"),
}
USER = Message(role="user", content="hi")


def request(**kw: Any) -> ChatRequest:
    kw.setdefault("messages", (USER,))
    return ChatRequest(model="openrouter/moonshotai/kimi-k2", **kw)


def body_of(chat: ChatRequest, name: str = "openrouter") -> Any:
    return orjson.loads(codec.build_request(chat, ROUTES[name], PROVIDERS[name]).body)


def test_codec_is_registered() -> None:
    assert codec_for("openai_chat") is codec
    assert codec.api == "openai_chat"


# --- building the request ----------------------------------------------------------------

CONVERSATION = (
    Message(role="system", content="Be brief."),
    Message(role="user", content="Weather in Paris?", name="ana"),
    Message(
        role="assistant",
        thinking="I should call the tool.",
        tool_calls=(ToolCall(id="call_1", name="get_weather", arguments='{"city":"Paris"}'),),
    ),
    Message(role="tool", content='{"temp":21}', tool_call_id="call_1", name="get_weather"),
)
FULL = ChatRequest(
    model="any",
    messages=CONVERSATION,
    max_tokens=64,
    temperature=0.2,
    top_p=0.9,
    stop=("\n\n", "END"),
    seed=7,
    tools=(WEATHER_TOOL,),
    tool_choice="auto",
    think=True,
    stream=True,
)


def full_body(name: str, model: str, think: dict[str, Any], reasoning: bool) -> dict[str, Any]:
    """The body FULL must give: one literal per provider, the differences spelled out."""
    assistant: dict[str, Any] = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "call_1", "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}],
    }
    if reasoning:
        assistant["reasoning_content"] = "I should call the tool."
    return {
        "model": model,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris?", "name": "ana"},
            assistant,
            {"role": "tool", "content": '{"temp":21}', "tool_call_id": "call_1",
             "name": "get_weather"},
        ],
        "max_tokens": 64,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["\n\n", "END"],
        "seed": 7,
        "tools": [WEATHER_TOOL],
        "tool_choice": "auto",
        **think,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


@pytest.mark.parametrize(
    ("name", "route", "expected"),
    [
        pytest.param("openrouter",
                     Route(provider="openrouter", upstream_model="moonshotai/kimi-k2"),
                     full_body("openrouter", "moonshotai/kimi-k2",
                               {"reasoning": {"enabled": True}}, False), id="openrouter"),
        pytest.param("openrouter", Route(provider="openrouter", upstream_model="openrouter/auto"),
                     full_body("openrouter", "openrouter/auto",
                               {"reasoning": {"enabled": True}}, False), id="openrouter-auto"),
        pytest.param("opencode", Route(provider="opencode", upstream_model="kimi-k2.5"),
                     full_body("opencode", "kimi-k2.5", {}, False), id="opencode"),
        pytest.param("kimi", Route(provider="kimi", upstream_model="kimi-for-coding"),
                     full_body("kimi", "kimi-for-coding",
                               {"thinking": {"type": "enabled"}}, True), id="kimi"),
    ],
)
def test_full_request_body_is_exact(name: str, route: Route, expected: dict[str, Any]) -> None:
    http = codec.build_request(FULL, route, PROVIDERS[name])
    assert orjson.loads(http.body) == expected
    assert list(orjson.loads(http.body)) == list(expected)  # field order too
    assert http.method == "POST"
    assert http.url == BASE_URLS[name] + "/chat/completions"
    assert http.stream is True
    assert http.headers == (
        ("Content-Type", "application/json"),
        ("Accept", "text/event-stream"),
        ("Authorization", f"Bearer {KEY}"),
    )


@pytest.mark.parametrize("name", NAMES)
def test_minimal_request_omits_every_absent_field(name: str) -> None:
    http = codec.build_request(request(), ROUTES[name], PROVIDERS[name])
    assert orjson.loads(http.body) == {
        "model": ROUTES[name].upstream_model,
        "messages": [{"role": "user", "content": "hi"}],
    }
    assert http.stream is False
    assert ("Accept", "application/json") in http.headers


@pytest.mark.parametrize(
    ("provider", "url", "headers"),
    [
        pytest.param(
            Provider(name="opencode", api="openai_chat", base_url="https://opencode.ai/zen/v1/"),
            "https://opencode.ai/zen/v1/chat/completions",
            (("Content-Type", "application/json"), ("Accept", "application/json")),
            id="no-key-trailing-slash",
        ),
        pytest.param(
            Provider(name="openrouter", api="openai_chat", base_url="https://openrouter.ai/api/v1",
                     key=Secret("k1"),
                     headers=(("HTTP-Referer", "https://example.org"),
                              ("X-OpenRouter-Title", "chatd"))),
            "https://openrouter.ai/api/v1/chat/completions",
            (("Content-Type", "application/json"), ("Accept", "application/json"),
             ("Authorization", "Bearer k1"), ("HTTP-Referer", "https://example.org"),
             ("X-OpenRouter-Title", "chatd")),
            id="attribution-headers-appended",
        ),
        pytest.param(
            Provider(name="kimi", api="openai_chat", base_url="https://api.kimi.com/coding/v1",
                     key=Secret("k2"),
                     headers=(("User-Agent", "KimiCLI/1.30.0"), ("accept", "*/*"))),
            "https://api.kimi.com/coding/v1/chat/completions",
            (("Content-Type", "application/json"), ("Authorization", "Bearer k2"),
             ("User-Agent", "KimiCLI/1.30.0"), ("accept", "*/*")),
            id="configured-header-replaces-default",
        ),
    ],
)
def test_url_and_headers(
    provider: Provider, url: str, headers: tuple[tuple[str, str], ...]
) -> None:
    http = codec.build_request(request(), ROUTES[provider.name], provider)
    assert http.url == url
    assert http.headers == headers


def test_request_repr_hides_the_key() -> None:
    http = codec.build_request(request(), ROUTES["kimi"], PROVIDERS["kimi"])
    assert KEY not in repr(http)


SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        pytest.param("json", {"type": "json_object"}, id="json"),
        pytest.param(SCHEMA, {"type": "json_schema",
                              "json_schema": {"name": "response", "schema": SCHEMA}}, id="schema"),
        pytest.param({"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA,
                                                             "strict": True}},
                     {"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA,
                                                             "strict": True}},
                     id="openai-response-format-passes-through"),
    ],
)
@pytest.mark.parametrize("name", NAMES)
def test_format_becomes_response_format(name: str, fmt: Any, expected: Any) -> None:
    assert body_of(request(format=fmt), name)["response_format"] == expected


@pytest.mark.parametrize("fmt", ["yaml", 3, ["json"]], ids=["other-string", "int", "list"])
def test_unknown_format_is_invalid_request(fmt: Any) -> None:
    with pytest.raises(ChatError) as info:
        codec.build_request(request(format=fmt), ROUTES["opencode"], PROVIDERS["opencode"])
    assert (info.value.type, info.value.status) == ("invalid_request", 400)


def test_unencodable_tool_is_invalid_request() -> None:
    chat = request(tools=({"type": "function", "function": {"name": "f", "x": object()}},))
    with pytest.raises(ChatError) as info:
        codec.build_request(chat, ROUTES["openrouter"], PROVIDERS["openrouter"])
    assert info.value.type == "invalid_request"


@pytest.mark.parametrize(
    ("name", "think", "expected"),
    [
        pytest.param("openrouter", None, {}, id="openrouter-none"),
        pytest.param("openrouter", False, {"reasoning": {"enabled": False}}, id="openrouter-false"),
        pytest.param("openrouter", True, {"reasoning": {"enabled": True}}, id="openrouter-true"),
        pytest.param("openrouter", "low", {"reasoning": {"effort": "low"}}, id="openrouter-low"),
        pytest.param("openrouter", "medium", {"reasoning": {"effort": "medium"}},
                     id="openrouter-medium"),
        pytest.param("openrouter", "high", {"reasoning": {"effort": "high"}}, id="openrouter-high"),
        pytest.param("openrouter", "max", {"reasoning": {"effort": "xhigh"}}, id="openrouter-max"),
        pytest.param("kimi", None, {}, id="kimi-none"),
        pytest.param("kimi", False, {"thinking": {"type": "disabled"}}, id="kimi-false"),
        pytest.param("kimi", True, {"thinking": {"type": "enabled"}}, id="kimi-true"),
        pytest.param("kimi", "high", {"thinking": {"type": "enabled"}}, id="kimi-level"),
        pytest.param("opencode", None, {}, id="opencode-none"),
        # Zen reads reasoning_effort "none" as "no reasoning" and forwards the level
        # (OC console zen/util/provider/provider.ts isNoReasoningRequest).
        pytest.param("opencode", False, {"reasoning_effort": "none"}, id="opencode-false"),
        pytest.param("opencode", True, {}, id="opencode-true"),
        pytest.param("opencode", "low", {"reasoning_effort": "low"}, id="opencode-low"),
        pytest.param("opencode", "max", {"reasoning_effort": "xhigh"}, id="opencode-level"),
    ],
)
def test_think_mapping(name: str, think: bool | str | None, expected: dict[str, Any]) -> None:
    body = body_of(request(think=think), name)
    assert {k: body[k] for k in ("reasoning", "thinking", "reasoning_effort") if k in body} == (
        expected
    )


PNG = "iVBORw0KGgoAAAANSUhEUgAAAAE="
JPEG = "/9j/4AAQSkZJRgABAQ=="


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        pytest.param(Message(role="assistant", content="Sure."),
                     {"role": "assistant", "content": "Sure."}, id="assistant-text"),
        pytest.param(Message(role="assistant", content="Calling.",
                             tool_calls=(ToolCall(id=None, name="f", arguments="{}"),)),
                     {"role": "assistant", "content": "Calling.",
                      "tool_calls": [{"type": "function",
                                      "function": {"name": "f", "arguments": "{}"}}]},
                     id="assistant-text-and-call-without-id"),
        pytest.param(Message(role="user", content="", images=(PNG, JPEG)),
                     {"role": "user", "content": [
                         {"type": "image_url",
                          "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                         {"type": "image_url",
                          "image_url": {"url": f"data:image/jpeg;base64,{JPEG}"}}]},
                     id="images-only"),
        pytest.param(Message(role="user", content="What is it?",
                             images=("https://x.org/a.webp", "data:image/gif;base64,R0lGOD")),
                     {"role": "user", "content": [
                         {"type": "text", "text": "What is it?"},
                         {"type": "image_url", "image_url": {"url": "https://x.org/a.webp"}},
                         {"type": "image_url",
                          "image_url": {"url": "data:image/gif;base64,R0lGOD"}}]},
                     id="text-and-image-urls"),
        pytest.param(Message(role="user", content=""), {"role": "user", "content": ""},
                     id="empty-user-content-stays-a-string"),
    ],
)
def test_message_shapes(message: Message, expected: dict[str, Any]) -> None:
    assert body_of(request(messages=(message,)), "opencode")["messages"] == [expected]


@pytest.mark.parametrize("name", NAMES)
def test_history_reasoning_only_goes_to_kimi(name: str) -> None:
    msg = Message(role="assistant", content="4", thinking="2+2")
    sent = body_of(request(messages=(USER, msg)), name)["messages"][1]
    assert ("reasoning_content" in sent) is (name == "kimi")


# --- parsing a whole response -----------------------------------------------------------

OPENAI_TOOL_BODY = {
    "id": "chatcmpl-BwmXV", "object": "chat.completion", "created": 1753343279,
    "model": "gpt-4.1-2025-04-14",
    "choices": [{"index": 0, "message": {
        "role": "assistant", "content": None,
        "tool_calls": [{"id": "call_KjzAbhiZC6nk", "type": "function",
                        "function": {"name": "read_file", "arguments": '{"path":"README.md"}'}}],
        "refusal": None, "annotations": []}, "logprobs": None, "finish_reason": "tool_calls"}],
    "usage": {"prompt_tokens": 60, "completion_tokens": 15, "total_tokens": 75,
              "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
              "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                            "accepted_prediction_tokens": 0,
                                            "rejected_prediction_tokens": 0}},
    "service_tier": "default", "system_fingerprint": "fp_b3f1157249",
}
OPENROUTER_BODY = {
    "id": "gen-1753343279-x", "provider": "Moonshot AI", "model": "moonshotai/kimi-k2",
    "object": "chat.completion", "created": 1753343279,
    "choices": [{"logprobs": None, "finish_reason": "stop", "native_finish_reason": "stop",
                 "index": 0, "message": {"role": "assistant", "content": "4", "refusal": None,
                                         "reasoning": "2+2 is 4.",
                                         "reasoning_details": [{"type": "reasoning.text",
                                                                "text": "2+2 is 4."}]}}],
    "usage": {"prompt_tokens": 14, "completion_tokens": 9, "total_tokens": 23, "cost": 2.1e-05},
}
KIMI_BODY = {
    "id": "chatcmpl-K", "object": "chat.completion", "created": 1753343279,
    "model": "kimi-for-coding",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "你好",
                                         "reasoning_content": "The user greets me."},
                 "finish_reason": "stop",
                 "usage": {"prompt_tokens": 19, "completion_tokens": 13, "total_tokens": 32,
                           "cached_tokens": 0}}],
}
OPENCODE_BODY = {
    "id": "chatcmpl-Z", "object": "chat.completion", "created": 1753343279, "model": "glm-5.1",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"},
                 "finish_reason": "length"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
    "cost": "0.00001234",
}


def one_choice(message: dict[str, Any], finish: Any = "stop", **extra: Any) -> dict[str, Any]:
    return {"id": "c", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", **message},
                         "finish_reason": finish}], **extra}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(OPENAI_TOOL_BODY, ChatResponse(
            content="", finish_reason="tool_calls", usage=Usage(
                prompt_tokens=60, completion_tokens=15, cached_tokens=0, reasoning_tokens=0),
            tool_calls=(ToolCall(id="call_KjzAbhiZC6nk", name="read_file",
                                 arguments='{"path":"README.md"}'),)), id="openai-tool-calls"),
        pytest.param(OPENROUTER_BODY, ChatResponse(
            content="4", finish_reason="stop", thinking="2+2 is 4.",
            usage=Usage(prompt_tokens=14, completion_tokens=9)), id="openrouter-reasoning"),
        pytest.param(KIMI_BODY, ChatResponse(
            content="你好", finish_reason="stop", thinking="The user greets me.",
            usage=Usage(prompt_tokens=19, completion_tokens=13, cached_tokens=0)),
            id="kimi-reasoning-content-and-nested-usage"),
        pytest.param(OPENCODE_BODY, ChatResponse(
            content="Hi", finish_reason="length", usage=Usage(prompt_tokens=5,
                                                              completion_tokens=1)),
            id="opencode-cost-field"),
        pytest.param(one_choice({"content": None}, None), ChatResponse(
            content="", finish_reason="stop"), id="null-content-null-finish-no-usage"),
        pytest.param(one_choice({"content": "x", "reasoning": ""}, "eos"), ChatResponse(
            content="x", finish_reason="stop"), id="unknown-finish-is-stop-empty-reasoning-none"),
        pytest.param(one_choice({"content": "x"}, "content_filter"), ChatResponse(
            content="x", finish_reason="content_filter"), id="content-filter"),
        pytest.param(one_choice({"content": "x"}, "max_tokens"), ChatResponse(
            content="x", finish_reason="length"), id="raw-max-tokens-is-length"),
        pytest.param(one_choice({"content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            "function_call"), ChatResponse(content="", finish_reason="tool_calls",
                                           tool_calls=(ToolCall(id="c1", name="f",
                                                                arguments="{}"),)),
            id="function-call-is-tool-calls"),
        pytest.param(one_choice({"content": "", "tool_calls": [
            {"type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]}, "stop"),
            ChatResponse(content="", finish_reason="tool_calls",
                         tool_calls=(ToolCall(id=None, name="f", arguments='{"a":1}'),)),
            id="stop-with-tool-calls-object-arguments"),
        pytest.param(one_choice({"content": [{"type": "text", "text": "a"},
                                             {"type": "image_url", "image_url": {}},
                                             {"type": "text", "text": "b"}]}),
                     ChatResponse(content="ab", finish_reason="stop"), id="content-parts"),
        pytest.param(one_choice({"content": "x"}, usage={"prompt_tokens": 3}),
                     ChatResponse(content="x", finish_reason="stop",
                                  usage=Usage(prompt_tokens=3)), id="partial-usage"),
    ],
)
@pytest.mark.parametrize("name", NAMES)
def test_parse_response(name: str, body: dict[str, Any], expected: ChatResponse) -> None:
    assert codec.parse_response(name, orjson.dumps(body)) == expected


@pytest.mark.parametrize("body", [OPENAI_TOOL_BODY, OPENROUTER_BODY, KIMI_BODY, OPENCODE_BODY],
                         ids=["openai", "openrouter", "kimi", "opencode"])
def test_response_fixtures_are_valid_openai_bodies(body: dict[str, Any]) -> None:
    # The fixtures above must be bodies the official SDK accepts, not invented shapes.
    ChatCompletion.model_validate(body)


@pytest.mark.parametrize(
    ("body", "type_", "status", "upstream_status", "message"),
    [
        pytest.param(orjson.dumps({**OPENCODE_BODY, "choices": []}), "bad_upstream_response", 502,
                     None, "upstream answered with no choices", id="zero-choices"),
        pytest.param(b'{"id":"x","object":"chat.completion"}', "bad_upstream_response", 502,
                     None, "upstream answered with no choices", id="no-choices-key"),
        pytest.param(b'{"choices": [', "bad_upstream_response", 502, None, None,
                     id="malformed-json"),
        pytest.param(b"", "bad_upstream_response", 502, None, None, id="empty-body"),
        pytest.param(b"<html>oops</html>", "bad_upstream_response", 502, None, None, id="html"),
        pytest.param(b"[1, 2]", "bad_upstream_response", 502, None,
                     "upstream answered with JSON that is not an object", id="not-an-object"),
        pytest.param(b'{"choices": "abc"}', "bad_upstream_response", 502, None, None,
                     id="choices-not-a-list"),
        pytest.param(b'{"choices": [1]}', "bad_upstream_response", 502, None, None,
                     id="choice-not-an-object"),
        pytest.param(b'{"choices": [{"finish_reason": "stop"}]}', "bad_upstream_response", 502,
                     None, None, id="no-message"),
        pytest.param(orjson.dumps(one_choice({"content": 5})), "bad_upstream_response", 502,
                     None, None, id="content-not-a-string"),
        pytest.param(orjson.dumps(one_choice({"content": "", "reasoning": 5})),
                     "bad_upstream_response", 502, None, None, id="reasoning-not-a-string"),
        pytest.param(orjson.dumps(one_choice({"tool_calls": [{"function": {"arguments": "{}"}}]})),
                     "bad_upstream_response", 502, None, None, id="tool-call-without-name"),
        pytest.param(orjson.dumps(one_choice({"tool_calls": {"a": 1}})),
                     "bad_upstream_response", 502, None, None, id="tool-calls-not-a-list"),
        pytest.param(orjson.dumps(one_choice({"tool_calls": [{"id": 5, "function": {
            "name": "f"}}]})), "bad_upstream_response", 502, None, None, id="tool-call-id-int"),
        pytest.param(orjson.dumps(one_choice({"content": "x"}, 5)), "bad_upstream_response", 502,
                     None, None, id="finish-reason-not-a-string"),
        pytest.param(orjson.dumps(one_choice({"content": "x"}, usage=[1])),
                     "bad_upstream_response", 502, None, None, id="usage-not-an-object"),
        pytest.param(b'{"error":{"message":"The server had an error","type":"server_error"}}',
                     "upstream_error", 502, None, "The server had an error",
                     id="openai-error-in-200"),
        pytest.param(b'{"error":{"code":429,"message":"Rate limit exceeded"},"user_id":"u"}',
                     "rate_limited", 429, 429, "Rate limit exceeded",
                     id="openrouter-error-in-200-int-code"),
        pytest.param(b'{"error":{"code":"server_error","message":"Provider disconnected"}}',
                     "upstream_error", 502, None, "Provider disconnected",
                     id="openrouter-error-in-200-string-code"),
        pytest.param(orjson.dumps(one_choice({"content": "Once upon"}, "error") | {
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Once upon"},
                         "finish_reason": "error",
                         "error": {"code": 502, "message": "Provider disconnected"}}]}),
                     "upstream_error", 502, 502, "Provider disconnected",
                     id="openrouter-error-embedded-in-choice"),
        pytest.param(orjson.dumps(one_choice({"content": "Once"}, "error")), "upstream_error",
                     502, None, "upstream ended the answer with an error",
                     id="finish-error-without-detail"),
    ],
)
@pytest.mark.parametrize("name", NAMES)
def test_parse_response_failures(
    name: str, body: bytes, type_: str, status: int, upstream_status: int | None,
    message: str | None,
) -> None:
    with pytest.raises(ChatError) as info:
        codec.parse_response(name, body)
    err = info.value
    assert (err.type, err.status, err.upstream_status, err.provider) == (
        type_, status, upstream_status, name)
    if message is not None:
        assert err.message == message


# --- parsing errors ----------------------------------------------------------------------

DATE = "Wed, 21 Oct 2026 07:28:00 GMT"
DATE_EPOCH = calendar.timegm((2026, 10, 21, 7, 28, 0, 0, 0, 0))
NOW = DATE_EPOCH - 90.0  # a date 90 s ahead: under the one-day cap on waits
OPENAI_429 = (b'{"error":{"message":"Rate limit reached for gpt-4.1 on tokens per min (TPM)",'
              b'"type":"tokens","param":null,"code":"rate_limit_exceeded"}}')
OPENROUTER_400 = (b'{"error":{"message":"claude-sonnet-4-6 is not a valid model ID","code":400},'
                  b'"user_id":"user_2abc"}')
OPENROUTER_402 = (b'{"error":{"message":"This request requires more credits, or fewer max_tokens.'
                  b' You requested up to 32000 tokens, but can only afford 27342.","code":402,'
                  b'"metadata":{"provider_name":null}},"user_id":"user_2abc"}')
OPENROUTER_PROVIDER_ERR = (b'{"error":{"message":"Provider returned error","code":503,"metadata":'
                           b'{"provider_name":"Chutes","raw":"model is overloaded"}},'
                           b'"user_id":"user_2abc"}')
OPENROUTER_RAW_OBJECT = (b'{"error":{"message":"Provider returned error","code":500,"metadata":'
                         b'{"provider_name":"Chutes","raw":{"detail":"boom"}}}}')
OPENCODE_401 = (b'{"type":"error","error":{"type":"ModelError",'
                b'"message":"Model glm-9 not supported"}}')
OPENCODE_429 = (b'{"type":"error","error":{"type":"GoUsageLimitError","message":"5 hour limit '
                b'reached"},"metadata":{"workspace":"w","limitName":"5 hour"}}')
KIMI_403 = (b'{"error":{"message":"Kimi For Coding is currently only available for Coding Agents '
            b'such as Kimi CLI, Claude Code, Roo Code, Kilo Code, etc.",'
            b'"type":"access_terminated_error"}}')
OPENAI_404 = (b'{"error":{"message":"The model `gpt-4o` does not exist or you do not have access '
              b'to it.","type":"invalid_request_error","param":null,"code":"model_not_found"}}')
CONTEXT_400 = (b'{"error":{"message":"This model\'s maximum context length is 128000 tokens.",'
               b'"type":"invalid_request_error","param":"messages",'
               b'"code":"context_length_exceeded"}}')
HTML_404 = (b"<!DOCTYPE html>\n<html><head><title>404: This page could not be found</title>"
            b"</head><body>" + b"x" * 5000 + b"</body></html>")


@pytest.mark.parametrize(
    ("name", "status", "headers", "body", "type_", "status_out", "retry_after", "message"),
    [
        pytest.param("openrouter", 429, [("Retry-After", "7")], OPENAI_429, "rate_limited", 429,
                     7.0, "Rate limit reached for gpt-4.1 on tokens per min (TPM)",
                     id="429-retry-after-seconds"),
        pytest.param("kimi", 429, [("retry-after", DATE)], OPENAI_429, "rate_limited", 429,
                     DATE_EPOCH - NOW, None, id="429-retry-after-http-date"),
        pytest.param("openrouter", 429, [("retry-after-ms", "1500"), ("Retry-After", "9")],
                     OPENAI_429, "rate_limited", 429, 1.5, None, id="429-retry-after-ms-wins"),
        pytest.param("opencode", 429, [("retry-after", "3600")], OPENCODE_429, "rate_limited", 429,
                     3600.0, "GoUsageLimitError: 5 hour limit reached", id="opencode-429-go-limit"),
        pytest.param("openrouter", 429, [], OPENAI_429, "rate_limited", 429, None, None,
                     id="429-without-retry-after"),
        pytest.param("openrouter", 503, [("Retry-After", "30")], OPENROUTER_PROVIDER_ERR,
                     "upstream_overloaded", 503, 30.0,
                     "Provider returned error (Chutes: model is overloaded)",
                     id="503-retry-after-and-provider-metadata"),
        pytest.param("openrouter", 500, [("Retry-After", "30")], OPENROUTER_RAW_OBJECT,
                     "upstream_error", 502, None,
                     'Provider returned error (Chutes: {"detail":"boom"})',
                     id="500-is-502-no-retry-after"),
        pytest.param("opencode", 500, [],
                     b'{"type":"error","error":{"type":"error","message":"Internal server error"}}',
                     "upstream_error", 502, None, "error: Internal server error",
                     id="opencode-500"),
        pytest.param("openrouter", 401, [], b'{"error":{"message":"No auth credentials found",'
                     b'"code":401}}', "upstream_error", 502, None, "No auth credentials found",
                     id="401"),
        pytest.param("openrouter", 402, [], OPENROUTER_402, "upstream_error", 502, None,
                     "This request requires more credits, or fewer max_tokens. You requested up "
                     "to 32000 tokens, but can only afford 27342.", id="openrouter-402"),
        pytest.param("kimi", 403, [], KIMI_403, "upstream_error", 502, None,
                     "Kimi For Coding is currently only available for Coding Agents such as Kimi "
                     "CLI, Claude Code, Roo Code, Kilo Code, etc.", id="kimi-403-agent-gate"),
        pytest.param("openrouter", 404, [], OPENAI_404, "upstream_error", 502, None,
                     "The model `gpt-4o` does not exist or you do not have access to it.",
                     id="404"),
        pytest.param("opencode", 401, [], OPENCODE_401, "upstream_error", 502, None,
                     "ModelError: Model glm-9 not supported", id="opencode-401-model-error"),
        pytest.param("openrouter", 400, [], OPENROUTER_400, "upstream_rejected", 400, None,
                     "claude-sonnet-4-6 is not a valid model ID", id="openrouter-400-bad-model"),
        pytest.param("kimi", 400, [], CONTEXT_400, "upstream_rejected", 400, None,
                     "This model's maximum context length is 128000 tokens.", id="400-context"),
        pytest.param("opencode", 413, [], b'{"error":"payload too large"}', "upstream_rejected",
                     400, None, "payload too large", id="413-string-error"),
        pytest.param("openrouter", 422, [], b'{"message":"unprocessable"}', "upstream_rejected",
                     400, None, "unprocessable", id="422-top-level-message"),
        pytest.param("opencode", 404, [], HTML_404, "upstream_error", 502, None,
                     "404: This page could not be found", id="html-page-title"),
        pytest.param("kimi", 502, [], b"Bad Gateway\n\n  upstream   closed", "upstream_error", 502,
                     None, "Bad Gateway upstream closed", id="plain-text"),
        pytest.param("kimi", 504, [], b"", "upstream_error", 502, None,
                     "upstream answered HTTP 504", id="empty-body"),
        pytest.param("openrouter", 500, [], b'{"error":{"code":500}}', "upstream_error", 502, None,
                     "upstream error code 500", id="error-without-message"),
        pytest.param("kimi", 500, [], b"\xff\xfe not utf-8", "upstream_error", 502, None,
                     "\ufffd\ufffd not utf-8", id="invalid-utf8"),
    ],
)
def test_parse_error(
    name: str, status: int, headers: list[tuple[str, str]], body: bytes, type_: str,
    status_out: int, retry_after: float | None, message: str | None,
) -> None:
    err = codec.parse_error(name, status, headers, body, now=NOW)
    assert (err.type, err.status, err.upstream_status, err.provider, err.retry_after) == (
        type_, status_out, status, name, retry_after)
    if message is not None:
        assert err.message == message


def test_long_error_messages_are_clipped() -> None:
    body = orjson.dumps({"error": {"message": "y" * 5000}})
    err = codec.parse_error("openrouter", 400, [], body, now=NOW)
    assert len(err.message) == 500
    assert err.message.endswith("…")
    assert len(codec.parse_error("kimi", 500, [], b"z" * 5000, now=NOW).message) == 500


# --- parsing streams ---------------------------------------------------------------------

Outcome = tuple[list[Event], tuple[str, int, int | None, str] | None]


def run(chunks: list[bytes], name: str = "openrouter") -> Outcome:
    """Feed ``chunks`` then the end; the events, and the error (type, status, upstream, msg)."""
    events, err = outcome(codec.stream_parser(name), chunks)
    if err is None:
        return events, None
    assert err.provider == name
    return events, (err.type, err.status, err.upstream_status, err.message)


def tool(index: int, id: str | None = None, name: str | None = None, arguments: str = "") -> Event:
    return ToolCallDelta(index=index, id=id, name=name, arguments=arguments)


STREAMS: list[Any] = [
    pytest.param("openai_text.sse", [
        TextDelta(text="Hello"), TextDelta(text=", wörld 🌍"),
        StreamEnded(finish_reason="length", usage=Usage(
            prompt_tokens=12, completion_tokens=3, cached_tokens=0, reasoning_tokens=0)),
    ], None, id="openai-text-usage-chunk-with-no-choices"),
    pytest.param("openai_tool_calls.sse", [
        tool(0, "call_abc", "read_file"), tool(0, arguments='{"'),
        tool(0, arguments='path":"README.md"}'), tool(1, "call_def", "list_dir", "{}"),
        StreamEnded(finish_reason="tool_calls",
                    usage=Usage(prompt_tokens=60, completion_tokens=15)),
    ], None, id="openai-tool-call-fragments"),
    pytest.param("openai_openrouter_reasoning.sse", [
        ThinkingDelta(text="Let me think"), ThinkingDelta(text="."), TextDelta(text="4"),
        StreamEnded(finish_reason="stop", usage=Usage(
            prompt_tokens=14, completion_tokens=9, cached_tokens=0, reasoning_tokens=7)),
    ], None, id="openrouter-reasoning-and-comments"),
    pytest.param("openai_kimi_nested_usage.sse", [
        ThinkingDelta(text="The user"), ThinkingDelta(text=" greets me."), TextDelta(text="你好"),
        StreamEnded(finish_reason="stop", usage=Usage(
            prompt_tokens=19, completion_tokens=13, cached_tokens=0)),
    ], None, id="kimi-reasoning-content-nested-usage"),
    pytest.param("openai_opencode_cost_after_done.sse", [
        TextDelta(text="Hi"),
        StreamEnded(finish_reason="stop", usage=Usage(prompt_tokens=5, completion_tokens=1)),
    ], None, id="opencode-cost-chunk-after-done"),
    pytest.param("openai_events_and_fields.sse", [
        TextDelta(text="multi"), TextDelta(text="line"),
        StreamEnded(finish_reason="content_filter", usage=None),
    ], None, id="ping-event-multiline-data-comment"),
    pytest.param("openai_eof_after_finish.sse", [
        TextDelta(text="Done"), StreamEnded(finish_reason="stop", usage=None),
    ], None, id="eof-after-finish-without-done"),
    pytest.param("openai_error_midstream.sse", [TextDelta(text="Par")], (
        "upstream_error", 502, None,
        "The server had an error while processing your request. Sorry about that!",
    ), id="openai-midstream-error"),
    pytest.param("openai_openrouter_error_midstream.sse", [TextDelta(text="Once")], (
        "upstream_error", 502, None, "Provider disconnected",
    ), id="openrouter-midstream-error-finish-error"),
    pytest.param("openai_openrouter_rate_limited_midstream.sse", [], (
        "rate_limited", 429, 429, "Provider returned error",
    ), id="openrouter-midstream-429-code"),
    pytest.param("openai_eof_before_done.sse", [TextDelta(text="Half an ans")], (
        "bad_upstream_response", 502, None, "stream ended before completion",
    ), id="eof-before-done"),
]


def fixture(filename: str, newline: bytes = b"\n") -> bytes:
    data = (FIXTURES / filename).read_bytes()
    return data.replace(b"\n", newline)


def check(outcome: Outcome, events: list[Event], error: Any) -> None:
    """Split-independent outcome: on success all events; on failure the same error, after
    all the events that came before it (chatproto/_lifecycle.py)."""
    got, got_error = outcome
    assert got_error == error
    assert got == events


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
@pytest.mark.parametrize(("filename", "events", "error"), STREAMS)
def test_stream_whole_and_byte_by_byte(
    filename: str, events: list[Event], error: Any, newline: bytes
) -> None:
    data = fixture(filename, newline)
    whole = run([data])
    assert whole[0] == (events if error is None else whole[0])
    check(whole, events, error)
    check(run(bytewise(data)), events, error)


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"], ids=["lf", "crlf"])
@pytest.mark.parametrize(("filename", "events", "error"), STREAMS)
def test_stream_every_split_point(
    filename: str, events: list[Event], error: Any, newline: bytes
) -> None:
    data = fixture(filename, newline)
    for i in range(len(data) + 1):
        check(run([data[:i], data[i:]]), events, error)


@pytest.mark.parametrize(("filename", "events", "error"), STREAMS)
@settings(max_examples=40, deadline=None)
@given(points=cuts())
def test_stream_random_splits(
    filename: str, events: list[Event], error: Any, points: list[int]
) -> None:
    check(run(cut_at(fixture(filename), points)), events, error)


@pytest.mark.parametrize(("filename", "events", "error"), STREAMS)
def test_stream_fixtures_are_valid_openai_chunks(filename: str, events: Any, error: Any) -> None:
    # Every JSON data line of a fixture (error chunks aside) is a chunk the official SDK
    # accepts: the fixtures are real shapes, not ones made to fit the parser.
    checked = 0
    for event in SSEDecoder().feed(fixture(filename)):
        if event.data.startswith(b"{") and b'"object"' in event.data:
            chunk = orjson.loads(event.data)
            if "error" not in chunk:
                ChatCompletionChunk.model_validate(chunk)
                checked += 1
    assert checked or filename == "openai_openrouter_rate_limited_midstream.sse"


@pytest.mark.parametrize("name", NAMES)
def test_stream_errors_name_the_provider(name: str) -> None:
    _, error = run([fixture("openai_eof_before_done.sse")], name)
    assert error is not None and error[0] == "bad_upstream_response"


def sse(*objs: Any) -> bytes:
    return b"".join(b"data: " + (o if isinstance(o, bytes) else orjson.dumps(o)) + b"\n\n"
                    for o in objs)


def delta_chunk(delta: Any, finish: Any = None, **extra: Any) -> dict[str, Any]:
    return {"id": "x", "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


STOP = delta_chunk({}, "stop")
DONE = b"[DONE]"


@pytest.mark.parametrize(
    ("body", "events", "error"),
    [
        pytest.param(sse(delta_chunk({"content": "a", "reasoning": "r",
                                      "reasoning_content": "r"}), STOP, DONE),
                     [ThinkingDelta(text="r"), TextDelta(text="a"),
                      StreamEnded(finish_reason="stop")], None,
                     id="both-reasoning-fields-count-once-thinking-first"),
        pytest.param(sse(delta_chunk({"reasoning": "", "reasoning_content": "k"}), STOP, DONE),
                     [ThinkingDelta(text="k"), StreamEnded(finish_reason="stop")], None,
                     id="empty-reasoning-falls-to-reasoning-content"),
        pytest.param(sse(delta_chunk({"content": "", "reasoning": ""}), STOP, DONE),
                     [StreamEnded(finish_reason="stop")], None, id="empty-strings-no-events"),
        pytest.param(sse(delta_chunk({"content": [{"type": "text", "text": "p"}]}), STOP, DONE),
                     [TextDelta(text="p"), StreamEnded(finish_reason="stop")], None,
                     id="content-parts"),
        pytest.param(sse(DONE), [StreamEnded(finish_reason="stop")], None,
                     id="done-without-finish-reason-is-stop"),
        pytest.param(sse(delta_chunk({}, "function_call"), DONE),
                     [StreamEnded(finish_reason="tool_calls")], None, id="function-call"),
        pytest.param(sse(delta_chunk({}, "weird"), DONE), [StreamEnded(finish_reason="stop")],
                     None, id="unknown-finish"),
        pytest.param(sse(delta_chunk({"tool_calls": [{"index": 0, "id": "c", "function": {
            "name": "f", "arguments": "{}"}}]}), STOP, DONE),
            [tool(0, "c", "f", "{}"), StreamEnded(finish_reason="tool_calls")], None,
            id="stop-after-tool-calls-is-tool-calls"),
        pytest.param(sse(delta_chunk({"tool_calls": [
            {"id": "a", "function": {"name": "f", "arguments": {"x": 1}}},
            {"id": "b", "function": {"name": "g", "arguments": "{"}}]}),
            delta_chunk({"tool_calls": [{"function": {"arguments": "}"}}]}),
            delta_chunk({"tool_calls": [{"id": "", "function": {"name": "", "arguments": ""}}]}),
            delta_chunk({}, "tool_calls"), DONE),
            [tool(0, "a", "f", '{"x":1}'), tool(1, "b", "g", "{"), tool(1, arguments="}"),
             StreamEnded(finish_reason="tool_calls")], None,
            id="tool-calls-without-index-and-empty-fragment"),
        pytest.param(sse(delta_chunk({"content": "x"}), {"choices": [], "usage": {
            "prompt_tokens": 1, "completion_tokens": 2}}, delta_chunk({}, "stop"), DONE),
            [TextDelta(text="x"), StreamEnded(finish_reason="stop", usage=Usage(
                prompt_tokens=1, completion_tokens=2))], None, id="usage-before-finish"),
        pytest.param(sse(delta_chunk({"content": "x"}), STOP) + b"event: error\ndata: "
                     b'{"error":{"message":"overloaded","code":503}}\n\n',
                     [TextDelta(text="x")], ("upstream_overloaded", 503, 503, "overloaded"),
                     id="error-event-name"),
        pytest.param(b"event: error\ndata: not json\n\n", [],
                     ("upstream_error", 502, None, "not json"), id="error-event-not-json"),
        pytest.param(sse({"error": "plain"}), [], ("upstream_error", 502, None, "plain"),
                     id="error-string"),
        pytest.param(sse({"error": {"type": "server_error"}}), [],
                     ("upstream_error", 502, None, "upstream reported an error (server_error)"),
                     id="error-without-message"),
        pytest.param(sse(delta_chunk({}, "error")), [],
                     ("upstream_error", 502, None, "upstream ended the answer with an error"),
                     id="finish-error-without-error-object"),
        pytest.param(sse(b"{not json"), [], ("bad_upstream_response", 502, None, None),
                     id="malformed-json"),
        pytest.param(sse(b"[1]"), [], ("bad_upstream_response", 502, None,
                                       "upstream sent a stream chunk that is not an object"),
                     id="chunk-not-an-object"),
        pytest.param(sse({"choices": "ab"}), [], ("bad_upstream_response", 502, None, None),
                     id="choices-a-string"),
        pytest.param(sse({"choices": [{"delta": []}]}), [],
                     ("bad_upstream_response", 502, None, None), id="delta-a-list"),
        pytest.param(sse(delta_chunk({"content": 5})), [],
                     ("bad_upstream_response", 502, None, None), id="content-an-int"),
        pytest.param(sse(delta_chunk({"reasoning": ["x"]})), [],
                     ("bad_upstream_response", 502, None, None), id="reasoning-a-list"),
        pytest.param(sse(delta_chunk({}, ["stop"])), [],
                     ("bad_upstream_response", 502, None, None), id="finish-a-list"),
        pytest.param(sse(delta_chunk({"tool_calls": [{"index": -1}]})), [],
                     ("bad_upstream_response", 502, None, None), id="negative-index"),
        pytest.param(sse(delta_chunk({"tool_calls": [{"index": True, "id": "c"}]})), [],
                     ("bad_upstream_response", 502, None, None), id="bool-index"),
        pytest.param(sse(delta_chunk({"tool_calls": [{"index": 0, "function": "f"}]})), [],
                     ("bad_upstream_response", 502, None, None), id="function-a-string"),
        pytest.param(sse(delta_chunk({"tool_calls": [{"index": 0, "function": {"name": 1}}]})),
                     [], ("bad_upstream_response", 502, None, None), id="name-an-int"),
        pytest.param(sse(delta_chunk({"tool_calls": {"index": 0}})), [],
                     ("bad_upstream_response", 502, None, None), id="tool-calls-an-object"),
        pytest.param(sse({"choices": [], "usage": 3}), [],
                     ("bad_upstream_response", 502, None, None), id="usage-an-int"),
        pytest.param(b"", [], ("bad_upstream_response", 502, None,
                               "stream ended before completion"), id="empty-body"),
        pytest.param(b": OPENROUTER PROCESSING\n\n" * 3, [], (
            "bad_upstream_response", 502, None, "stream ended before completion"),
            id="only-keepalives"),
    ],
)
def test_stream_cases(body: bytes, events: list[Event], error: Any) -> None:
    whole = run([body])
    by_byte = run(bytewise(body))
    for _, got_error in (whole, by_byte):
        if error is None:
            assert got_error is None
        else:
            assert got_error is not None
            assert got_error[:3] == error[:3]
            if error[3] is not None:
                assert got_error[3] == error[3]
    check(by_byte, events, None if error is None else by_byte[1])
    if error is None:
        assert whole[0] == events


def test_bytes_after_done_are_dropped_unparsed() -> None:
    # More than the decoder's 1 MiB bound and no newline: after [DONE] nothing is decoded.
    parser = codec.stream_parser("opencode")
    assert parser.feed(sse(STOP, DONE)) == [StreamEnded(finish_reason="stop")]
    assert parser.feed(b"x" * (2 << 20)) == []
    assert parser.feed(b"") == []
    with pytest.raises(RuntimeError):
        parser.feed(b"more")


def test_done_in_the_final_flush() -> None:
    parser = codec.stream_parser("kimi")
    assert parser.feed(b"data: [DONE]") == []
    assert parser.feed(b"") == [StreamEnded(finish_reason="stop")]
    with pytest.raises(RuntimeError):
        parser.feed(b"")


def test_failure_is_sticky() -> None:
    parser = codec.stream_parser("openrouter")
    with pytest.raises(ChatError) as first:
        parser.feed(sse(b"{bad"))
    with pytest.raises(ChatError) as again:
        parser.feed(sse(STOP, DONE))
    assert again.value is first.value
    with pytest.raises(ChatError):
        parser.feed(b"")


def test_feed_after_end_is_a_caller_bug() -> None:
    parser = codec.stream_parser("openrouter")
    parser.feed(sse(STOP))
    assert parser.feed(b"") == [StreamEnded(finish_reason="stop")]
    with pytest.raises(RuntimeError):
        parser.feed(b"data: x\n\n")


# --- fuzzing: any bytes give events or a ChatError, never another exception --------------

EVENT_TYPES = (TextDelta, ThinkingDelta, ToolCallDelta, StreamEnded)


def well_typed(events: list[Event]) -> None:
    """Whatever the input, events carry the types their fields promise."""
    for i, event in enumerate(events):
        assert isinstance(event, EVENT_TYPES)
        if isinstance(event, TextDelta | ThinkingDelta):
            assert isinstance(event.text, str) and event.text
        elif isinstance(event, ToolCallDelta):
            assert type(event.index) is int and event.index >= 0
            assert event.id is None or isinstance(event.id, str)
            assert event.name is None or isinstance(event.name, str)
            assert isinstance(event.arguments, str)
        else:
            assert i == len(events) - 1
            assert event.finish_reason in {"stop", "length", "tool_calls", "content_filter"}
            assert event.usage is None or isinstance(event.usage, Usage)


def feed_all(pieces: list[bytes]) -> None:
    events, err = outcome(codec.stream_parser("openrouter"), pieces)
    if err is not None:
        assert err.status in (400, 429, 502, 503)
    well_typed(events)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=12))
def test_random_bytes_give_events_or_chat_error(pieces: list[bytes]) -> None:
    feed_all(pieces)


JSON_LEAF = st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=4)
JSON = json_values(
    ["content", "reasoning", "reasoning_content", "tool_calls", "index", "id", "function",
     "name", "arguments", "message", "code", "x"],
    leaves=JSON_LEAF,
    max_leaves=12,
    max_size=4,
)
DELTA = st.dictionaries(
    st.sampled_from(["content", "reasoning", "reasoning_content", "tool_calls", "role"]),
    JSON, max_size=4)
CHUNK = st.fixed_dictionaries(
    {},
    optional={
        "choices": st.lists(st.fixed_dictionaries({}, optional={
            "delta": DELTA | JSON,
            "finish_reason": st.sampled_from([None, "stop", "length", "tool_calls", "error",
                                              "function_call"]) | JSON,
            "usage": JSON,
            "error": JSON,
        }), max_size=2) | JSON,
        "usage": st.fixed_dictionaries({}, optional={"prompt_tokens": JSON,
                                                    "completion_tokens": JSON}) | JSON,
        "error": JSON,
    },
)


@settings(max_examples=300, deadline=None)
@given(st.lists(CHUNK, max_size=5), st.booleans(), st.integers(1, 40))
def test_random_chunks_give_well_typed_events_or_chat_error(
    chunks: list[Any], done: bool, size: int
) -> None:
    body = sse(*chunks, *([DONE] if done else []))
    feed_all(steps(body, size))


OPENAI_COMPLETION = {
    "id": "gen-1", "object": "chat.completion", "created": 1, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}


@pytest.mark.anyio
async def test_image_in_a_tool_result_is_not_sent_inside_an_openai_tool_message(
        tmp_path: Path) -> None:
    """Claude Code's Read tool answers with an image inside ``tool_result``. Chat
    Completions' tool message takes text parts only (openai-python
    ``ChatCompletionToolMessageParam.content: str | Iterable[...ContentPartTextParam]``);
    an ``image_url`` part there is a 400 from OpenAI-family upstreams. The image has to
    travel in a user message after the tool results."""
    async with lab(tmp_path) as s, s.http() as client:
        s.up.answers["m"] = whole(OPENAI_COMPLETION)
        r = await client.post("/v1/messages", json={
            "model": "oai/m", "max_tokens": 50,
            "tools": [{"name": "Read", "input_schema": {"type": "object"}}],
            "messages": [
                {"role": "user", "content": "read a.png"},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "Read",
                     "input": {"file_path": "a.png"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                              "content": [
                    {"type": "text", "text": "the image:"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                 "data": "iVBORw0KGgo="}}]}]}]})
        sent = s.up.last()
    assert r.status_code == 200, r.text
    [tool] = [m for m in sent["messages"] if m["role"] == "tool"]
    parts = tool["content"] if isinstance(tool["content"], list) else []
    assert all(p.get("type") == "text" for p in parts), tool
    later = sent["messages"][sent["messages"].index(tool) + 1:]
    assert any(isinstance(m.get("content"), list) and any(
        p.get("type") == "image_url" for p in m["content"]) for m in later
        if m["role"] == "user"), sent["messages"]


def image_result(call: str, text: str) -> Message:
    return Message(role="tool", tool_call_id=call, parts=(
        *((TextPart(text=text),) if text else ()),
        ImagePart(data="iVBORw0KGgo=", media_type="image/png")))


def calls(*ids: str) -> Message:
    return Message(role="assistant", tool_calls=tuple(
        ToolCall(id=i, name="Read", arguments="{}") for i in ids))


def shown(call: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": f"The result of tool call {call} has this image:"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]


#: (messages, the role and content of each message sent): tool results keep their text;
#: their images follow the run of tool messages in one user message.
TOOL_IMAGES: list[tuple[tuple[Message, ...], list[tuple[str, Any]]]] = [
    ((USER, calls("a"), image_result("a", "the image:")),
     [("user", "hi"), ("assistant", None), ("tool", "the image:"), ("user", shown("a"))]),
    ((USER, calls("a", "b"), image_result("a", ""), Message(role="tool", tool_call_id="b",
                                                            content="ok"),
      image_result("b", "two"), Message(role="user", content="go on")),
     [("user", "hi"), ("assistant", None),
      ("tool", "The result is the image in the next message."), ("tool", "ok"),
      ("tool", "two"), ("user", shown("a") + shown("b")), ("user", "go on")]),
    ((USER, calls("a"), Message(role="tool", tool_call_id="a", content="text only")),
     [("user", "hi"), ("assistant", None), ("tool", "text only")]),
]


@pytest.mark.parametrize(("messages", "expected"), TOOL_IMAGES)
def test_tool_result_images_follow_the_tool_messages(
        messages: tuple[Message, ...], expected: list[tuple[str, Any]]) -> None:
    sent = body_of(request(messages=messages))["messages"]
    assert [(m["role"], m["content"]) for m in sent] == expected
