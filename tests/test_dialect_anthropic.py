"""Anthropic Messages, both ends: the door's parsing and rendering, the codec's requests,
answers, streams and errors, and the two ends read against each other."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from hashlib import sha256
from pathlib import Path
from typing import Any

import canned
import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message as SDKMessage
from anthropic.types import RawMessageStreamEvent
from canned import lab, whole
from helpers import bytewise, cut_at, cuts, every_split, feed, outcome
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from chatproto import (
    PROFILES,
    Answer,
    CallContext,
    ChatError,
    ChatRequest,
    ChatResponse,
    Event,
    ImagePart,
    Message,
    Part,
    Provider,
    RawEvent,
    Route,
    Secret,
    SSEDecoder,
    StreamEnded,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    ToolCall,
    ToolCallDelta,
    Usage,
    codec_for,
)
from chatproto.dialects.anthropic_messages import (
    API,
    MAX_HELD_BYTES,
    MAX_HELD_CALLS,
    MessagesStream,
    MessagesView,
    codec,
    door,
    estimate_tokens,
    messages_url,
)

FIXTURES = Path(__file__).parent / "fixtures"
KEY = "sk-ant-test-0123456789"
OPENCODE = replace(PROFILES[3], key=Secret(KEY))  # the built-in row: claude-* on /messages
KIMI = Provider(name="kimi", api=API, base_url="https://api.kimi.com/coding", key=Secret(KEY))
ANTHROPIC = Provider(name="anthropic", api=API, base_url="https://api.anthropic.com/",
                     key=Secret(KEY), key_header="x-api-key")
ROUTE = Route(provider="opencode", upstream_model="claude-sonnet-4-6")
CTX = CallContext(id="0123abcd", created=1_753_000_000)
PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAA"
       "AABJRU5ErkJggg==")
JPEG = "/9j/4AAQSkZJRgABAQAAAQABAAD"


def body(**fields: Any) -> bytes:
    fields.setdefault("model", "opencode/claude-sonnet-4-6")
    fields.setdefault("max_tokens", 1024)
    fields.setdefault("messages", [{"role": "user", "content": "hi"}])
    return json.dumps(fields).encode()


def chat_of(headers: tuple[tuple[str, str], ...] = (), **fields: Any) -> ChatRequest:
    return door.parse(body(**fields), headers).chat


def sent(chat: ChatRequest, provider: Provider = OPENCODE) -> Any:
    return orjson.loads(codec.build_request(chat, ROUTE, provider).body)


def test_registered_under_its_api() -> None:
    assert codec_for(API) is codec
    assert (codec.api, door.api, door.name) == (API, API, "anthropic")


# --- the door: what a client sends ----------------------------------------------------

TOOL_USE = {"type": "tool_use", "id": "toolu_1", "name": "Bash",
            "input": {"command": "echo hi"}}

PARSE_CASES: list[tuple[str, dict[str, Any], list[Message]]] = [
    ("system as a string", {"system": "Be brief.", "messages": [{"role": "user", "content": "hi"}]},
     [Message(role="system", content="Be brief."), Message(role="user", content="hi")]),
    ("system as blocks, each a part; cache_control ignored",
     {"system": [{"type": "text", "text": "A."},
                 {"type": "text", "text": "B.", "cache_control": {"type": "ephemeral"}}],
      "messages": [{"role": "user", "content": [{"type": "text", "text": "hi",
                                                 "cache_control": {"type": "ephemeral"}}]}]},
     [Message(role="system", parts=(TextPart(text="A."), TextPart(text="B."))),
      Message(role="user", content="hi")]),
    ("an empty system is no message", {"system": ""},
     [Message(role="user", content="hi")]),
    ("a role system message stays where it is (Claude Code)",
     {"messages": [{"role": "user", "content": "hi"},
                   {"role": "system", "content": [{"type": "text", "text": "# Env"}]}]},
     [Message(role="user", content="hi"), Message(role="system", content="# Env")]),
    ("images: base64 with media type, and a URL",
     {"messages": [{"role": "user", "content": [
         {"type": "text", "text": "what is it?"},
         {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
         {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}}]}]},
     [Message(role="user", parts=(TextPart(text="what is it?"),
                                  ImagePart(data=PNG, media_type="image/png"),
                                  ImagePart(url="https://example.com/a.jpg")))]),
    ("a text document is its text; a PDF and a file image have no counterpart",
     {"messages": [{"role": "user", "content": [
         {"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                         "data": "the doc"}},
         {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                         "data": "JVBERi0="}},
         {"type": "image", "source": {"type": "file", "file_id": "file_1"}},
         {"type": "text", "text": "summarise"}]}]},
     [Message(role="user", parts=(TextPart(text="the doc"), TextPart(text="summarise")))]),
    ("a tool round trip: tool_use, then tool_result with is_error and text after it",
     {"messages": [
         {"role": "user", "content": "run it"},
         {"role": "assistant", "content": [{"type": "text", "text": "Running."}, TOOL_USE]},
         {"role": "user", "content": [
             {"type": "tool_result", "tool_use_id": "toolu_1", "content": "hi",
              "is_error": False, "cache_control": {"type": "ephemeral"}},
             {"type": "text", "text": "<system-reminder>go on</system-reminder>"}]}]},
     [Message(role="user", content="run it"),
      Message(role="assistant", parts=(TextPart(text="Running."), ToolCall(
          id="toolu_1", name="Bash", arguments='{"command":"echo hi"}'))),
      Message(role="tool", content="hi", tool_call_id="toolu_1", name="Bash"),
      Message(role="user", content="<system-reminder>go on</system-reminder>")]),
    ("tool_result content as blocks with an image, and is_error",
     {"messages": [
         {"role": "assistant", "content": [TOOL_USE]},
         {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                       "is_error": True, "content": [
             {"type": "text", "text": "failed"},
             {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg",
                                          "data": JPEG}}]}]}]},
     [Message(role="assistant", parts=(ToolCall(id="toolu_1", name="Bash",
                                                arguments='{"command":"echo hi"}'),)),
      Message(role="tool", parts=(TextPart(text="failed"),
                                  ImagePart(data=JPEG, media_type="image/jpeg")),
              tool_call_id="toolu_1", name="Bash", is_error=True)]),
    ("a tool_result with no content, for a call from another turn",
     {"messages": [{"role": "user", "content": [{"type": "tool_result",
                                                 "tool_use_id": "toolu_9"}]}]},
     [Message(role="tool", parts=(), tool_call_id="toolu_9")]),
    ("thinking keeps its signature; redacted thinking is encrypted thinking",
     {"messages": [{"role": "user", "content": "q"},
                   {"role": "assistant", "content": [
                       {"type": "thinking", "thinking": "Let me think.", "signature": "sig=="},
                       {"type": "redacted_thinking", "data": "EmwKAhgB"},
                       {"type": "thinking", "thinking": "unsigned", "signature": ""},
                       {"type": "text", "text": "A."}]}]},
     [Message(role="user", content="q"),
      Message(role="assistant", parts=(
          ThinkingPart(text="Let me think.", signature="sig=="),
          ThinkingPart(encrypted="EmwKAhgB"), ThinkingPart(text="unsigned"),
          TextPart(text="A.")))]),
    ("server-tool blocks have no counterpart",
     {"messages": [{"role": "assistant", "content": [
         {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search",
          "input": {"query": "x"}},
         {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
         {"type": "text", "text": "Found."}]}]},
     [Message(role="assistant", content="Found.")]),
]


@pytest.mark.parametrize(("fields", "expected"), [c[1:] for c in PARSE_CASES],
                         ids=[c[0] for c in PARSE_CASES])
def test_parse_messages(fields: dict[str, Any], expected: list[Message]) -> None:
    assert list(chat_of(**fields).messages) == expected


def test_parse_fields_and_options() -> None:
    call = door.parse(body(
        stream=True, max_tokens=300, temperature=0.5, top_p=0.9, top_k=40,
        stop_sequences=["\n\nHuman:"], metadata={"user_id": "u-1"},
        context_management={"edits": [{"type": "clear_thinking_20251015"}]},
        service_tier="auto"),
        [("Anthropic-Version", "2023-06-01"), ("anthropic-beta", "a-1,b-2"),
         ("x-api-key", "secret"), ("user-agent", "claude-cli/2.1.332")])
    chat = call.chat
    assert (chat.stream, chat.max_tokens, chat.temperature, chat.top_p, chat.stop) == (
        True, 300, 0.5, 0.9, ("\n\nHuman:",))
    assert chat.options == {"top_k": 40, "user": "u-1"}
    assert chat.extras == {"context_management": {"edits": [
        {"type": "clear_thinking_20251015"}]}, "service_tier": "auto"}
    # Only what may go upstream; never the client's key.
    assert chat.headers == (("anthropic-version", "2023-06-01"), ("anthropic-beta", "a-1,b-2"),
                            ("user-agent", "claude-cli/2.1.332"))
    assert chat.dialect == API
    assert chat.raw == orjson.loads(body(
        stream=True, max_tokens=300, temperature=0.5, top_p=0.9, top_k=40,
        stop_sequences=["\n\nHuman:"], metadata={"user_id": "u-1"},
        context_management={"edits": [{"type": "clear_thinking_20251015"}]},
        service_tier="auto"))
    assert call.view == MessagesView(model="opencode/claude-sonnet-4-6")


def test_parse_tools_and_tool_choice() -> None:
    chat = chat_of(tools=[
        {"name": "Bash", "description": "Run a command", "input_schema": {
            "type": "object", "properties": {"command": {"type": "string"}}},
         "cache_control": {"type": "ephemeral"}},
        {"name": "DeferredToolPlaceholder", "description": "never call this",
         "input_schema": {"type": "object", "properties": {}}, "defer_loading": True},
        {"name": "Empty", "input_schema": {}},
        {"name": "Untyped", "type": "custom", "input_schema": {"properties": {"a": {}}}},
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
    ], tool_choice={"type": "any", "disable_parallel_tool_use": True})
    assert chat.tools == (
        {"type": "function", "function": {"name": "Bash", "description": "Run a command",
                                          "parameters": {"type": "object", "properties": {
                                              "command": {"type": "string"}}}}},
        {"type": "function", "function": {"name": "DeferredToolPlaceholder",
                                          "description": "never call this",
                                          "parameters": {"type": "object", "properties": {}}}},
        {"type": "function", "function": {"name": "Empty", "parameters": {
            "type": "object", "properties": {}}}},
        {"type": "function", "function": {"name": "Untyped", "parameters": {
            "type": "object", "properties": {"a": {}}}}},
    )
    assert chat.tool_choice == "required"
    assert chat.options["parallel_tool_calls"] is False


@pytest.mark.parametrize(("choice", "expected"), [
    ({"type": "auto"}, "auto"),
    ({"type": "any"}, "required"),
    ({"type": "none"}, "none"),
    ({"type": "tool", "name": "Bash"}, {"type": "function", "function": {"name": "Bash"}}),
])
def test_parse_tool_choice(choice: dict[str, Any], expected: Any) -> None:
    chat = chat_of(tool_choice=choice)
    assert chat.tool_choice == expected
    assert "parallel_tool_calls" not in chat.options


@pytest.mark.parametrize(("thinking", "effort", "think"), [
    (None, None, None),
    ({"type": "enabled", "budget_tokens": 31999}, None, True),
    ({"type": "enabled", "budget_tokens": 2048}, "low", True),
    ({"type": "disabled"}, "high", False),
    ({"type": "adaptive", "display": "updates"}, "high", "high"),  # Claude Code's pair
    ({"type": "adaptive"}, None, None),
    (None, "medium", "medium"),
    (None, "xhigh", "high"),
    (None, "max", "max"),
])
def test_parse_thinking(thinking: Any, effort: str | None, think: Any) -> None:
    fields: dict[str, Any] = {}
    if thinking is not None:
        fields["thinking"] = thinking
    if effort is not None:
        fields["output_config"] = {"effort": effort}
    assert chat_of(**fields).think == think


def test_parse_output_format_is_the_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    chat = chat_of(output_config={"format": {"type": "json_schema", "schema": schema}})
    assert chat.format == schema


def test_parse_claude_code_captures() -> None:
    """What Claude Code 2.1.332 really sent parses (tests/fixtures/claude_code_*.json: the
    condensed captures of research/agents, long strings shortened, keys redacted)."""
    for name in ("claude_code_tool.json", "claude_code_thinking_tool.json"):
        for exchange in json.loads((FIXTURES / name).read_text()):
            headers = [(k, v) for k, v in exchange["headers"]]
            call = door.parse(json.dumps(exchange["body"]).encode(), headers)
            chat = call.chat
            assert chat.stream and chat.max_tokens == 32000 and chat.think == "high"
            assert [m.role for m in chat.messages][:3] == ["system", "user", "system"]
            assert len(chat.tools) == 12  # the deferred placeholder with its empty schema too
            assert {k for k, _ in chat.headers} == {"anthropic-version", "anthropic-beta",
                                                    "user-agent"}
            assert "context_management" in chat.extras
            if len(exchange["body"]["messages"]) > 2:
                tool = chat.messages[-1]
                assert (tool.role, tool.content, tool.name) == ("tool", "hi", "Bash")
                calls = chat.messages[-2].tool_calls
                assert [c.id for c in calls] == [tool.tool_call_id]


INVALID: list[tuple[dict[str, Any], str]] = [
    ({"max_tokens": None}, "max_tokens is required"),
    ({"max_tokens": 0}, "max_tokens must be a positive integer"),
    ({"model": 3}, "model must be a string"),
    ({"messages": []}, "messages must not be empty"),
    ({"messages": "hi"}, "messages must be an array"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user"}]}, "messages[0].content must be a string or an array"),
    ({"messages": [{"role": "user", "content": [{"text": "x"}]}]},
     "messages[0].content[0].type must be a string"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]},
     "messages[0].content[0].text must be a string"),
    ({"messages": [{"role": "user", "content": [TOOL_USE]}]},
     "messages[0].content[0]: tool_use blocks belong in assistant messages"),
    ({"messages": [{"role": "assistant", "content": [
        {"type": "tool_result", "tool_use_id": "t"}]}]}, "belong in user messages"),
    ({"messages": [{"role": "user", "content": [{"type": "tool_result"}]}]},
     "tool_use_id must be a non-empty string"),
    ({"messages": [{"role": "assistant", "content": [
        {"type": "tool_use", "id": "t", "name": "x", "input": []}]}]}, "input must be an object"),
    ({"messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "data": ""}}]}]}, "source.data"),
    ({"messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "ftp"}}]}]}, "source.type"),
    ({"system": [{"type": "image"}]}, 'system[0].type must be "text"'),
    ({"system": 5}, "system must be a string or an array"),
    ({"tools": {}}, "tools must be an array"),
    ({"tools": [{"input_schema": {}}]}, "tools[0].name"),
    ({"tools": [{"name": "x", "input_schema": []}]}, "tools[0].input_schema must be an object"),
    ({"tool_choice": "auto"}, "tool_choice must be an object"),
    ({"tool_choice": {"type": "tool"}}, "tool_choice.name"),
    ({"tool_choice": {"type": "some"}}, "tool_choice.type"),
    ({"thinking": {"type": "on"}}, "thinking.type"),
    ({"thinking": {"type": "enabled", "budget_tokens": "big"}}, "thinking.budget_tokens"),
    ({"output_config": {"effort": "extreme"}}, "output_config.effort"),
    ({"output_config": {"format": {"type": "json"}}}, "output_config.format"),
    ({"metadata": {"user_id": 1}}, "metadata.user_id"),
    ({"stop_sequences": [1]}, "stop_sequences[0]"),
    ({"temperature": "hot"}, "temperature must be a number"),
    ({"stream": "yes"}, "stream must be true or false"),
]


@pytest.mark.parametrize(("fields", "message"), INVALID, ids=[m for _, m in INVALID])
def test_parse_refuses_with_the_field_named(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ChatError) as err:
        door.parse(body(**fields), [])
    assert err.value.type == "invalid_request" and err.value.status == 400
    assert message in err.value.message


@pytest.mark.parametrize("raw", [b"", b"[1]", b"{", "{\"model\": \"\u00e9\"".encode()])
def test_parse_refuses_bodies_that_are_not_objects(raw: bytes) -> None:
    with pytest.raises(ChatError) as err:
        door.parse(raw, [])
    assert err.value.status == 400


def test_count_body_needs_no_max_tokens() -> None:
    call = door.parse_count(json.dumps({"model": "m", "messages": [
        {"role": "user", "content": "hello world, how are you today"}]}).encode(), [])
    assert call.chat.max_tokens is None and not call.chat.stream
    assert estimate_tokens(call.chat) == (len("user") + 30) // 4


# --- the codec: the upstream request --------------------------------------------------

def native(*messages: Message, **kw: Any) -> ChatRequest:
    """A request as another door (OpenAI, Ollama, native) builds it."""
    return ChatRequest(model="opencode/claude-sonnet-4-6", messages=messages,
                       dialect=kw.pop("dialect", "openai_chat"), **kw)


def test_urls_and_auth_per_provider() -> None:
    chat = native(Message(role="user", content="hi"))
    zen = codec.build_request(chat, ROUTE, OPENCODE)
    assert zen.url == "https://opencode.ai/zen/v1/messages"
    assert ("Authorization", f"Bearer {KEY}") in zen.headers
    assert OPENCODE.name == "opencode"
    kimi = codec.build_request(chat, ROUTE, KIMI)
    assert kimi.url == "https://api.kimi.com/coding/v1/messages"
    assert ("Authorization", f"Bearer {KEY}") in kimi.headers
    anthropic = codec.build_request(chat, ROUTE, ANTHROPIC)
    assert anthropic.url == messages_url(ANTHROPIC) == "https://api.anthropic.com/v1/messages"
    assert ("x-api-key", KEY) in anthropic.headers
    assert not any(k == "Authorization" for k, _ in anthropic.headers)
    for http in (zen, kimi, anthropic):
        assert ("anthropic-version", "2023-06-01") in http.headers
        assert ("Accept", "application/json") in http.headers
        assert KEY not in repr(http)
    configured = Provider(name="kimi", api=API, base_url="https://k/coding", key=Secret(KEY),
                          headers=(("User-Agent", "KimiCLI/1.51.0"),
                                   ("anthropic-version", "2024-01-01")))
    headers = codec.build_request(chat_of((("user-agent", "claude-cli/2"),)), ROUTE,
                                  configured).headers
    assert [v for k, v in headers if k.lower() == "anthropic-version"] == ["2024-01-01"]
    assert ("User-Agent", "KimiCLI/1.51.0") in headers


def test_betas_and_version_only_on_the_same_dialect() -> None:
    client = (("anthropic-version", "2023-06-01"), ("anthropic-beta", "a-1,b-2"),
              ("anthropic-beta", "c-3"))
    same = chat_of(client, stream=True)
    http = codec.build_request(same, ROUTE, OPENCODE)
    assert ("anthropic-beta", "a-1,b-2,c-3") in http.headers
    assert ("Accept", "text/event-stream") in http.headers and http.stream
    other = native(Message(role="user", content="hi"), headers=client)
    assert not any(k == "anthropic-beta" for k, _ in codec.build_request(
        other, ROUTE, OPENCODE).headers)


def test_same_dialect_sends_the_client_body_with_the_model_rewritten() -> None:
    """Every field, cache_control on any block, server-tool blocks, unknown fields: as
    the client sent them; only model and stream change, plus the two rewrites."""
    fields: dict[str, Any] = {
        "model": "smart", "max_tokens": 32000, "stream": True,
        "system": [{"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "system", "content": [{"type": "text", "text": "# Env",
                                            "cache_control": {"type": "ephemeral"}}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "from elsewhere", "signature": ""},
                {"type": "thinking", "thinking": "signed", "signature": "sig"},
                {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search",
                 "input": {"query": "q"}},
                {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1",
                 "content": [{"type": "web_search_result", "url": "u", "title": "t",
                              "encrypted_content": "E"}]},
                TOOL_USE]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                          "content": "hi", "cache_control": {
                                              "type": "ephemeral"}}]},
            {"role": "system", "content": "again"}],
        "tools": [{"type": "web_search_20250305", "name": "web_search"},
                  {"name": "Bash", "input_schema": {"type": "object"}, "defer_loading": True}],
        "thinking": {"type": "adaptive"}, "output_config": {"effort": "high"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015"}]},
        "metadata": {"user_id": "u"}, "mcp_servers": [{"type": "url", "url": "x"}],
    }
    out = sent(chat_of(**fields))
    expected = json.loads(json.dumps(fields))
    expected["model"] = "claude-sonnet-4-6"
    messages = expected["messages"]
    messages[1] = {"role": "user", "content": [{
        "type": "text", "text": "<system-reminder>\n# Env\n</system-reminder>",
        "cache_control": {"type": "ephemeral"}}]}
    del messages[2]["content"][0]
    messages[4] = {"role": "user", "content": [{
        "type": "text", "text": "<system-reminder>\nagain\n</system-reminder>"}]}
    assert out == expected
    assert sent(chat_of(**{**fields, "stream": False}))["stream"] is False


def test_canonical_request_becomes_a_messages_body() -> None:
    """A request from another door: system hoisted, a later system a reminder, tool
    results merged into one user turn (results first), ids kept, images with their
    media type, unsigned thinking left out, options mapped."""
    chat = native(
        Message(role="system", content="Be brief."),
        Message(role="user", parts=(TextPart(text="look"), ImagePart(data=PNG),
                                    ImagePart(data=JPEG, media_type="image/jpeg"),
                                    ImagePart(url="https://x/y.png"),
                                    ImagePart(url="data:image/gif;base64,R0lGODlh"))),
        Message(role="assistant", parts=(
            ThinkingPart(text="plain reasoning"),
            ThinkingPart(text="signed", signature="sig"), ThinkingPart(encrypted="ENC"),
            TextPart(text="Calling."),
            ToolCall(id="call_a", name="get_weather", arguments='{"city": "Oslo"}'),
            ToolCall(id="call_b", name="get_time", arguments=""))),
        Message(role="tool", content="12°C", tool_call_id="call_a"),
        Message(role="system", content="mid-way note"),
        Message(role="tool", content="noon", tool_call_id="call_b", is_error=True),
        Message(role="user", content="thanks"),
        max_tokens=200, temperature=0.3, top_p=0.8, stop=("END",), seed=7,
        tools=({"type": "function", "function": {"name": "get_weather", "description": "W",
                                                  "parameters": {"type": "object"}}},
               {"type": "function", "function": {"name": "get_time"}}),
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        options={"top_k": 5, "user": "u-9", "parallel_tool_calls": False,
                 "presence_penalty": 1.0},
        extras={"logprobs": True},
    )
    assert sent(chat) == {
        "model": "claude-sonnet-4-6",
        "max_tokens": 200,
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "look"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": PNG}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg",
                                             "data": JPEG}},
                {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/gif",
                                             "data": "R0lGODlh"}}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "signed", "signature": "sig"},
                {"type": "redacted_thinking", "data": "ENC"},
                {"type": "text", "text": "Calling."},
                {"type": "tool_use", "id": "call_a", "name": "get_weather",
                 "input": {"city": "Oslo"}},
                {"type": "tool_use", "id": "call_b", "name": "get_time", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_a", "content": "12°C"},
                {"type": "tool_result", "tool_use_id": "call_b", "content": "noon",
                 "is_error": True},
                {"type": "text", "text": "<system-reminder>\nmid-way note\n</system-reminder>"},
                {"type": "text", "text": "thanks"}]}],
        "temperature": 0.3, "top_p": 0.8, "top_k": 5, "stop_sequences": ["END"],
        "tools": [{"name": "get_weather", "description": "W",
                   "input_schema": {"type": "object"}},
                  {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}],
        "tool_choice": {"type": "tool", "name": "get_weather",
                        "disable_parallel_tool_use": True},
        "metadata": {"user_id": "u-9"},
    }


def test_ollama_style_tool_calls_get_ids_their_results_name() -> None:
    chat = native(Message(role="user", content="go"),
                  Message(role="assistant", tool_calls=(
                      ToolCall(id=None, name="a", arguments='{"x": 1}'),
                      ToolCall(id=None, name="b", arguments="{}"))),
                  Message(role="tool", content="B", name="b"),
                  Message(role="tool", content="A"),
                  dialect="ollama_chat")
    turns = sent(chat)["messages"]
    ids = [b["id"] for b in turns[1]["content"]]
    assert ids == ["toolu_1_0", "toolu_1_1"]
    assert [(b["tool_use_id"], b["content"]) for b in turns[2]["content"]] == [
        ("toolu_1_1", "B"), ("toolu_1_0", "A")]


@pytest.mark.parametrize(("think", "max_tokens", "thinking", "sent_max"), [
    (None, None, None, 4096),
    (False, None, {"type": "disabled"}, 4096),
    (True, None, {"type": "enabled", "budget_tokens": 8192}, 8192 + 4096),
    ("low", 10000, {"type": "enabled", "budget_tokens": 2048}, 10000),
    ("max", 20000, {"type": "enabled", "budget_tokens": 19999}, 20000),
    ("high", 1024, None, 1024),  # no room for Anthropic's minimum budget: thinking off
])
def test_think_becomes_a_thinking_budget(think: Any, max_tokens: int | None,
                                         thinking: Any, sent_max: int) -> None:
    out = sent(native(Message(role="user", content="q"), think=think, max_tokens=max_tokens))
    assert out.get("thinking") == thinking
    assert out["max_tokens"] == sent_max


@pytest.mark.parametrize(("chat", "message"), [
    (native(Message(role="user", content="q"), format="json"), "format (JSON mode)"),
    (native(Message(role="system", content="only a system prompt")), "at least one user"),
])
def test_canonical_requests_without_a_counterpart_are_refused(chat: ChatRequest,
                                                              message: str) -> None:
    with pytest.raises(ChatError) as err:
        codec.build_request(chat, ROUTE, OPENCODE)
    assert err.value.status == 400 and message in err.value.message


def test_count_request() -> None:
    chat = door.parse_count(json.dumps({"model": "m", "system": "S", "messages": [
        {"role": "user", "content": "hi"}], "tools": [], "thinking": {"type": "disabled"},
        "max_tokens": 5, "stream": True}).encode(), [("anthropic-beta", "x")]).chat
    http = codec.build_count_request(chat, ROUTE, KIMI)
    assert http.url == "https://api.kimi.com/coding/v1/messages/count_tokens"
    assert orjson.loads(http.body) == {"model": "claude-sonnet-4-6", "system": "S",
                                       "messages": [{"role": "user", "content": "hi"}],
                                       "tools": [], "thinking": {"type": "disabled"}}
    assert ("anthropic-beta", "x") in http.headers
    other = codec.build_count_request(native(Message(role="user", content="q")), ROUTE, KIMI)
    assert orjson.loads(other.body) == {"model": "claude-sonnet-4-6", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "q"}]}]}
    assert codec.parse_count_response("kimi", b'{"input_tokens": 42}') == 42
    with pytest.raises(ChatError) as err:
        codec.parse_count_response("kimi", b'{"tokens": 42}')
    assert err.value.type == "bad_upstream_response"


# --- the codec: whole answers ---------------------------------------------------------

ANSWER = {
    "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6",
    "content": [
        {"type": "thinking", "thinking": "Hmm.", "signature": "sig-1"},
        {"type": "redacted_thinking", "data": "ENC"},
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
        {"type": "text", "text": "Checking ", "citations": None},
        {"type": "text", "text": "now."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
         "input": {"city": "Tōkyō"}}],
    "stop_reason": "tool_use", "stop_sequence": None,
    "usage": {"input_tokens": 10, "output_tokens": 20, "cache_read_input_tokens": 100,
              "cache_creation_input_tokens": 5, "service_tier": "standard"},
}


def test_parse_a_whole_answer() -> None:
    resp = codec.parse_response("opencode", json.dumps(ANSWER).encode())
    assert resp == ChatResponse(
        content="Checking now.", finish_reason="tool_calls",
        usage=Usage(prompt_tokens=115, completion_tokens=20, cached_tokens=100,
                    cache_creation_tokens=5),
        thinking="Hmm.",
        tool_calls=(ToolCall(id="toolu_1", name="get_weather", arguments='{"city":"Tōkyō"}'),),
        thinking_parts=(ThinkingPart(text="Hmm.", signature="sig-1"),
                        ThinkingPart(encrypted="ENC")),
    )
    kept = codec.parse_response("opencode", json.dumps(ANSWER).encode(), passthrough=True)
    assert (kept.raw, kept.dialect) == (ANSWER, API)


@pytest.mark.parametrize(("stop_reason", "stop_sequence", "finish"), [
    ("end_turn", None, "stop"), ("max_tokens", None, "length"),
    ("stop_sequence", "END", "stop"), ("tool_use", None, "tool_calls"),
    ("pause_turn", None, "stop"), ("refusal", None, "content_filter"),
    ("model_context_window_exceeded", None, "length"), (None, None, "stop"),
    ("something_new", None, "stop"),
])
def test_stop_reasons(stop_reason: str | None, stop_sequence: str | None, finish: str) -> None:
    answer = {**ANSWER, "content": [{"type": "text", "text": "x"}],
              "stop_reason": stop_reason, "stop_sequence": stop_sequence}
    resp = codec.parse_response("kimi", json.dumps(answer).encode())
    assert (resp.finish_reason, resp.stop_sequence) == (finish, stop_sequence)


@pytest.mark.parametrize(("answer", "kind"), [
    (b"not json", "bad_upstream_response"),
    (b"[]", "bad_upstream_response"),
    (b'{"type": "message"}', "bad_upstream_response"),
    (b'{"content": [1]}', "bad_upstream_response"),
    (b'{"content": [{"type": "tool_use", "input": {}}]}', "bad_upstream_response"),
    (b'{"content": [{"type": "tool_use", "name": "f", "input": "x"}]}', "bad_upstream_response"),
    (b'{"content": [{"type": "text"}]}', "bad_upstream_response"),
    (b'{"content": [], "stop_reason": 3}', "bad_upstream_response"),
    (b'{"content": [], "usage": []}', "bad_upstream_response"),
    (b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}',
     "upstream_overloaded"),
    (b'{"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}}',
     "rate_limited"),
    (b'{"type": "error", "error": {"type": "invalid_request_error", "message": "no"}}',
     "upstream_rejected"),
    (b'{"type": "error"}', "upstream_error"),
])
def test_whole_answers_that_are_errors(answer: bytes, kind: str) -> None:
    with pytest.raises(ChatError) as err:
        codec.parse_response("opencode", answer)
    assert err.value.type == kind and err.value.provider == "opencode"


# --- the codec: errors ----------------------------------------------------------------

def anthropic_error(kind: str, message: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": kind, "message": message},
                       "request_id": "req_1"}).encode()


@pytest.mark.parametrize(("status", "payload", "headers", "kind", "retry", "message"), [
    (529, anthropic_error("overloaded_error", "Overloaded"), [], "upstream_overloaded", None,
     "Overloaded"),
    (529, anthropic_error("overloaded_error", "Overloaded"), [("retry-after", "7")],
     "upstream_overloaded", 7.0, "Overloaded"),
    (429, anthropic_error("rate_limit_error", "Number of requests exceeded"),
     [("retry-after", "30")], "rate_limited", 30.0, "Number of requests exceeded"),
    (400, anthropic_error("invalid_request_error", "max_tokens: too big"), [],
     "upstream_rejected", None, "max_tokens: too big"),
    (404, anthropic_error("not_found_error", "model: nope"), [], "upstream_error", None,
     "model: nope"),
    (401, json.dumps({"type": "error", "error": {"type": "ModelError",
                                                 "message": "Model x not supported"}}).encode(),
     [], "upstream_error", None, "ModelError: Model x not supported"),  # OpenCode Zen
    (500, b"<html><title>Bad</title></html>", [], "upstream_error", None, "<html>"),
    (503, b"", [("retry-after", "2")], "upstream_overloaded", 2.0, "upstream answered HTTP 503"),
])
def test_parse_error(status: int, payload: bytes, headers: list[tuple[str, str]], kind: str,
                     retry: float | None, message: str) -> None:
    err = codec.parse_error("opencode", status, headers, payload, now=0.0)
    assert (err.type, err.upstream_status, err.retry_after) == (kind, status, retry)
    assert message in err.message


# --- the codec: streams ---------------------------------------------------------------

def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


THINKING_TOOL_EVENTS: list[Event] = [
    ThinkingDelta(text="The user wants "),
    ThinkingDelta(text="the weather in 東京."),
    ThinkingDelta(signature="EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"),
    TextDelta(text="Let me check "),
    TextDelta(text="the weather — grüß Gott 🙂."),
    ToolCallDelta(index=0, id="toolu_01T1x1fJ34qAmk2tNTrN7Up6", name="get_weather"),
    ToolCallDelta(index=0, arguments='{"city": "Tō'),
    ToolCallDelta(index=0, arguments='kyō", "days": 3}'),
    StreamEnded(finish_reason="tool_calls",
                usage=Usage(prompt_tokens=472 + 1024 + 2048, completion_tokens=89,
                            cached_tokens=2048, cache_creation_tokens=1024)),
]


def canonical(events: list[Event]) -> list[Event]:
    return [e for e in events if type(e) is not RawEvent]


def test_stream_at_every_split() -> None:
    data = fixture("anthropic_thinking_tool.sse")
    for label, chunks in every_split(data):
        assert feed(codec.stream_parser("opencode"), chunks) == THINKING_TOOL_EVENTS, label


@settings(max_examples=200, deadline=None)
@given(points=cuts())
def test_stream_at_random_cuts(points: list[int]) -> None:
    data = fixture("anthropic_server_tools.sse")
    events = feed(codec.stream_parser("opencode"), cut_at(data, points))
    assert events == [TextDelta(text="It is sunny."),
                      StreamEnded(finish_reason="stop",
                                  usage=Usage(prompt_tokens=20, completion_tokens=12))]


def test_passthrough_keeps_every_upstream_event_before_its_own() -> None:
    data = fixture("anthropic_server_tools.sse")
    decoded = [(e.event, orjson.loads(e.data)) for e in SSEDecoder().feed(data)
               + SSEDecoder().feed(b"")]
    for label, chunks in [("whole", [data]), ("bytewise", bytewise(data))]:
        events = feed(codec.stream_parser("opencode", passthrough=True), chunks)
        raws = [(e.name, e.data) for e in events if isinstance(e, RawEvent)]
        assert raws == decoded, label
        assert all(e.dialect == API for e in events if isinstance(e, RawEvent))
        # Each canonical event follows the raw event it came from.
        text = events.index(TextDelta(text="It is sunny."))
        assert isinstance(events[text - 1], RawEvent)
        assert events[text - 1].data["delta"]["type"] == "text_delta"  # type: ignore[attr-defined]
        assert canonical(events) == feed(codec.stream_parser("opencode"), [data])


def test_an_error_after_events_comes_after_them_at_every_split() -> None:
    data = fixture("anthropic_error_midstream.sse")
    for label, chunks in every_split(data):
        events, err = outcome(codec.stream_parser("opencode"), chunks)
        assert events == [TextDelta(text="Hallo "), TextDelta(text="Wélt")], label
        assert err is not None and err.type == "upstream_overloaded", label
        assert err.upstream_status == 529


def test_a_failed_stream_stays_failed() -> None:
    parser = codec.stream_parser("opencode")
    data = fixture("anthropic_error_midstream.sse")
    assert parser.feed(data) == [TextDelta(text="Hallo "), TextDelta(text="Wélt")]
    for _ in range(2):
        with pytest.raises(ChatError) as err:
            parser.feed(b"more")
        assert err.value.type == "upstream_overloaded"


def events_of(*lines: tuple[str, dict[str, Any]]) -> bytes:
    return b"".join(f"event: {n}\ndata: {json.dumps(o)}\n\n".encode() for n, o in lines)


START = ("message_start", {"type": "message_start", "message": {
    "id": "m", "type": "message", "role": "assistant", "content": [], "model": "c",
    "usage": {"input_tokens": 3, "output_tokens": 1}}})
TEXT_START = ("content_block_start", {"type": "content_block_start", "index": 0,
                                      "content_block": {"type": "text", "text": ""}})
DELTA = ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": "hi"}})
MESSAGE_DELTA = ("message_delta", {"type": "message_delta", "delta": {
    "stop_reason": "max_tokens", "stop_sequence": None}, "usage": {"output_tokens": 4}})


@pytest.mark.parametrize(("data", "events", "kind"), [
    (events_of(START, TEXT_START, DELTA), [TextDelta(text="hi")], "bad_upstream_response"),
    (events_of(START, TEXT_START, DELTA, MESSAGE_DELTA),
     [TextDelta(text="hi"), StreamEnded(finish_reason="length", usage=Usage(
         prompt_tokens=3, completion_tokens=4))], None),
    (events_of(START, ("message_stop", {"type": "message_stop"})),
     [StreamEnded(finish_reason="stop", usage=Usage(prompt_tokens=3, completion_tokens=1))],
     None),
    (b"event: message_start\ndata: {nope\n\n", [], "bad_upstream_response"),
    (events_of(START, ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                               "delta": {"type": "text_delta", "text": 5}})),
     [], "bad_upstream_response"),
    (events_of(START, ("content_block_delta", {"type": "content_block_delta", "index": 0})),
     [], "bad_upstream_response"),
    (events_of(START, ("content_block_start", {"type": "content_block_start", "index": 0,
                                               "content_block": {"type": "tool_use"}})),
     [], "bad_upstream_response"),
    (events_of(START, TEXT_START, DELTA, ("error", {"type": "error", "error": {
        "type": "rate_limit_error", "message": "slow down"}})),
     [TextDelta(text="hi")], "rate_limited"),
    (events_of(("error", {"type": "error", "error": {"type": "api_error",
                                                     "message": "Internal"}})),
     [], "upstream_error"),
    (b'data: {"type": "message_start", "message": {}}\n\ndata: {"type": "message_stop"}\n\n',
     [StreamEnded(finish_reason="stop", usage=None)], None),
    (b"", [], "bad_upstream_response"),
])
def test_stream_edges(data: bytes, events: list[Event], kind: str | None) -> None:
    for label, chunks in every_split(data, stride=7):
        got, err = outcome(codec.stream_parser("kimi"), chunks)
        assert got == events, label
        assert (err.type if err else None) == kind, label


def test_stream_feed_after_the_end_is_a_bug() -> None:
    parser = codec.stream_parser("kimi")
    feed(parser, [fixture("anthropic_thinking_tool.sse")])
    with pytest.raises(RuntimeError):
        parser.feed(b"")


# --- the door: answers ------------------------------------------------------------------

CALL = door.parse(body(model="smart"), [])


def answer(resp: ChatResponse) -> Answer:
    return Answer(response=resp, route=ROUTE, latency_ms=1.0)


def test_render_a_whole_answer() -> None:
    resp = ChatResponse(
        content="Here.", finish_reason="tool_calls",
        usage=Usage(prompt_tokens=120, completion_tokens=9, cached_tokens=100,
                    cache_creation_tokens=15),
        thinking="Hmm.",
        tool_calls=(ToolCall(id=None, name="get_weather", arguments='{"city":"Oslo"}'),
                    ToolCall(id="call_2", name="noop", arguments="")),
        thinking_parts=(ThinkingPart(text="Hmm.", signature="sig"), ThinkingPart(encrypted="E")),
    )
    out = orjson.loads(door.render(CALL, answer(resp), CTX))
    assert out == {
        "id": "msg_0123abcd", "type": "message", "role": "assistant", "model": "smart",
        "content": [
            {"type": "thinking", "thinking": "Hmm.", "signature": "sig"},
            {"type": "redacted_thinking", "data": "E"},
            {"type": "text", "text": "Here."},
            {"type": "tool_use", "id": "toolu_0123abcd_0", "name": "get_weather",
             "input": {"city": "Oslo"}},
            {"type": "tool_use", "id": "call_2", "name": "noop", "input": {}}],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 5, "output_tokens": 9, "cache_creation_input_tokens": 15,
                  "cache_read_input_tokens": 100},
    }
    SDKMessage.model_validate(out)  # the SDK's own type reads it


@pytest.mark.parametrize(("finish", "stop_sequence", "stop_reason"), [
    ("stop", None, "end_turn"), ("stop", "END", "stop_sequence"), ("length", None, "max_tokens"),
    ("tool_calls", None, "tool_use"), ("content_filter", None, "refusal"),
])
def test_render_stop_reasons(finish: str, stop_sequence: str | None, stop_reason: str) -> None:
    resp = ChatResponse(content="x", finish_reason=finish, stop_sequence=stop_sequence,
                        thinking="plain")
    out = orjson.loads(door.render(CALL, answer(resp), CTX))
    assert (out["stop_reason"], out["stop_sequence"]) == (stop_reason, stop_sequence)
    # Thinking from an upstream without signatures (Ollama, OpenAI-family reasoning).
    assert out["content"][0] == {"type": "thinking", "thinking": "plain", "signature": ""}
    assert out["usage"] == {"input_tokens": 0, "output_tokens": 0}


@pytest.mark.parametrize(("usage", "expected"), [
    # OpenRouter: cache reads and writes in prompt_tokens_details (providers.md §4.2).
    ({"prompt_tokens": 150, "completion_tokens": 9,
      "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 20}},
     {"input_tokens": 30, "output_tokens": 9, "cache_creation_input_tokens": 20,
      "cache_read_input_tokens": 100}),
    # Kimi: a top-level cached_tokens (providers.md §6.1).
    ({"prompt_tokens": 40, "completion_tokens": 2, "cached_tokens": 32},
     {"input_tokens": 8, "output_tokens": 2, "cache_read_input_tokens": 32}),
    ({"prompt_tokens": 5, "completion_tokens": 1}, {"input_tokens": 5, "output_tokens": 1}),
])
def test_cache_counts_of_an_openai_family_upstream(usage: dict[str, Any],
                                                   expected: dict[str, int]) -> None:
    body = {"id": "c", "object": "chat.completion", "model": "m", "usage": usage,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "ok"}}]}
    resp = codec_for("openai_chat").parse_response("openrouter", orjson.dumps(body))
    assert orjson.loads(door.render(CALL, answer(resp), CTX))["usage"] == expected


def test_render_a_same_dialect_answer_as_it_came() -> None:
    resp = codec.parse_response("opencode", json.dumps(ANSWER).encode(), passthrough=True)
    assert orjson.loads(door.render(CALL, answer(resp), CTX)) == {**ANSWER, "model": "smart"}


def test_render_refuses_tool_arguments_that_are_not_an_object() -> None:
    resp = ChatResponse(content="", finish_reason="tool_calls",
                        tool_calls=(ToolCall(id="c", name="f", arguments="{broken"),))
    with pytest.raises(ChatError) as err:
        door.render(CALL, answer(resp), CTX)
    assert err.value.type == "bad_upstream_response"


@pytest.mark.parametrize(("kind", "status", "anthropic"), [
    ("invalid_request", 400, "invalid_request_error"),
    ("upstream_rejected", 400, "invalid_request_error"),
    ("unauthorized", 401, "authentication_error"),
    ("provider_not_registered", 404, "not_found_error"),
    ("not_found", 404, "not_found_error"),
    ("method_not_allowed", 405, "invalid_request_error"),
    ("request_too_large", 413, "request_too_large"),
    ("rate_limited", 429, "rate_limit_error"),
    ("upstream_error", 502, "api_error"),
    ("bad_upstream_response", 502, "api_error"),
    ("upstream_overloaded", 503, "overloaded_error"),
    ("upstream_timeout", 504, "api_error"),
    ("request_timeout", 408, "invalid_request_error"),
    ("overloaded", 503, "overloaded_error"),
    ("shutting_down", 503, "overloaded_error"),
    ("internal_error", 500, "api_error"),
])
def test_render_errors(kind: str, status: int, anthropic: str) -> None:
    exc = ChatError(kind, "went wrong", provider="kimi", upstream_status=418)
    assert exc.status == status
    assert orjson.loads(door.render_error(exc)) == {"type": "error", "error": {
        "type": anthropic, "message": "went wrong", "code": kind, "provider": "kimi",
        "upstream_status": 418}}


# --- the door: streams ----------------------------------------------------------------

_SDK_EVENT: TypeAdapter[RawMessageStreamEvent] = TypeAdapter(RawMessageStreamEvent)


def sse(data: bytes) -> list[tuple[str, Any]]:
    decoder = SSEDecoder()
    return [(e.event, orjson.loads(e.data)) for e in decoder.feed(data) + decoder.feed(b"")]


def render(events: list[Event], *, split: bool = False) -> bytes:
    stream = door.stream(CALL, CTX)
    served = None
    if split:  # one batch per event, as a slow upstream gives them
        return stream.start() + b"".join(stream.events([e], served) for e in events)
    return stream.start() + stream.events(events, served)


def check_order(events: list[tuple[str, Any]]) -> None:
    """Claude Code's rules: every event named as its type, message_start first, ping,
    blocks started and stopped in turn with contiguous indices from 0, then
    message_delta and message_stop last."""
    names = [n for n, _ in events]
    assert all(n == d["type"] for n, d in events)
    assert names[:2] == ["message_start", "ping"] and names[-2:] == ["message_delta",
                                                                      "message_stop"]
    open_index = None
    next_index = 0
    for name, data in events[2:-2]:
        if name == "content_block_start":
            assert open_index is None and data["index"] == next_index
            open_index = next_index
            next_index += 1
        elif name == "content_block_delta":
            assert data["index"] == open_index
        else:
            assert name == "content_block_stop" and data["index"] == open_index
            open_index = None
    assert open_index is None


def sdk_message(events: list[tuple[str, Any]]) -> Any:
    """The message the SDK's own accumulator builds from the events (its stream skips
    pings, anthropic ``_streaming.py``)."""
    snapshot = None
    buffers: dict[int, bytes] = {}
    for name, data in events:
        if name != "ping":
            snapshot = accumulate_event(event=_SDK_EVENT.validate_python(data),
                                        current_snapshot=snapshot, json_bufs=buffers)
    return snapshot


def test_stream_renders_what_claude_code_needs() -> None:
    events = [TextDelta(text="Running it."), ToolCallDelta(index=0, id="call_1", name="Bash"),
              ToolCallDelta(index=0, arguments='{"command": '),
              ToolCallDelta(index=0, arguments='"echo hi"}'),
              StreamEnded(finish_reason="tool_calls",
                          usage=Usage(prompt_tokens=30, completion_tokens=7))]
    for split in (False, True):
        out = sse(render(events, split=split))
        check_order(out)
        message = sdk_message(out)
        assert message.model == "smart" and message.id == "msg_0123abcd"
        assert [b.type for b in message.content] == ["text", "tool_use"]
        assert message.content[0].text == "Running it."
        assert (message.content[1].id, message.content[1].name, message.content[1].input) == (
            "call_1", "Bash", {"command": "echo hi"})
        assert message.stop_reason == "tool_use"
        assert (message.usage.input_tokens, message.usage.output_tokens) == (30, 7)


def test_stream_thinking_signatures_and_redacted_blocks() -> None:
    events = [ThinkingDelta(text="First "), ThinkingDelta(text="thought."),
              ThinkingDelta(signature="sig-1"), ThinkingDelta(text="Second."),
              ThinkingDelta(encrypted="ENC"), ThinkingDelta(signature="sig-lone"),
              TextDelta(text=""), TextDelta(text="Answer."),
              ToolCallDelta(index=0, name="f"), ToolCallDelta(index=1, id="c2", name="g"),
              StreamEnded(finish_reason="stop", stop_sequence="END")]
    out = sse(render(events))
    check_order(out)
    message = sdk_message(out)
    blocks = [(b.type, getattr(b, "thinking", None) or getattr(b, "text", None)
               or getattr(b, "data", None) or getattr(b, "name", None),
               getattr(b, "signature", None)) for b in message.content]
    assert blocks == [("thinking", "First thought.", "sig-1"), ("thinking", "Second.", ""),
                      ("redacted_thinking", "ENC", None), ("thinking", None, "sig-lone"),
                      ("text", "Answer.", None), ("tool_use", "f", None),
                      ("tool_use", "g", None)]
    assert message.content[5].id == "toolu_0123abcd_0"
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "END")


def test_stream_with_nothing_but_the_end() -> None:
    out = sse(render([StreamEnded(finish_reason="length")]))
    assert [n for n, _ in out] == ["message_start", "ping", "message_delta", "message_stop"]
    assert out[2][1]["usage"] == {"input_tokens": 0, "output_tokens": 0}


def _call(index: int, *arguments: str, name: str | None = None) -> list[ToolCallDelta]:
    """A call's first delta (its id and name) and its argument fragments."""
    return [ToolCallDelta(index=index, id=f"call_{index}", name=name or f"f{index}"),
            *(ToolCallDelta(index=index, arguments=a) for a in arguments)]


def _interleaved(*calls: list[ToolCallDelta]) -> list[ToolCallDelta]:
    """The calls' deltas taken in turn, one of each at a time."""
    out: list[ToolCallDelta] = []
    for i in range(max(len(c) for c in calls)):
        out.extend(c[i] for c in calls if i < len(c))
    return out


@pytest.mark.parametrize(("events", "blocks"), [
    pytest.param(_interleaved(_call(0, '{"x":', "1}"), _call(1, '{"y":', "2}")),
                 ["text", "tool_use", "tool_use"], id="two-interleaved"),
    pytest.param(_interleaved(_call(0, "", '{"a":', '"b"}'), _call(1, '{"c":1', "}"),
                              _call(2, "{}")),
                 ["text", "tool_use", "tool_use", "tool_use"], id="three-interleaved"),
    pytest.param([*_call(0, '{"x":1}'), *_call(1, '{"y":', "2}")],
                 ["text", "tool_use", "tool_use"], id="one-after-another"),
    pytest.param([*_call(0, '{"x":'), *_call(1, '{"y":2}'), ToolCallDelta(index=0, arguments="1}"),
                  ToolCallDelta(index=2, id="call_2", name="f2", arguments="{}")],
                 ["text", "tool_use", "tool_use", "tool_use"], id="a-held-call-goes-live"),
])
def test_stream_renders_interleaved_tool_calls_as_whole_blocks(
        events: list[Event], blocks: list[str]) -> None:
    """Chat Completions may interleave parallel calls' argument fragments (by ``index``);
    Anthropic blocks do not reopen. Each call is one ``tool_use`` block with its whole
    input, in the order the calls began, however the events are batched."""
    events = [TextDelta(text="Let me check."), *events, TextDelta(text="Done."),
              StreamEnded(finish_reason="tool_calls")]
    calls = sorted({e.index for e in events if isinstance(e, ToolCallDelta)})
    expected = {f"call_{i}": json.loads("".join(
        e.arguments for e in events if isinstance(e, ToolCallDelta) and e.index == i))
        for i in calls}
    for split in (False, True):
        out = sse(render(events, split=split))
        check_order(out)
        message = sdk_message(out)
        assert [b.type for b in message.content] == [*blocks, "text"]
        uses = [b for b in message.content if b.type == "tool_use"]
        assert [u.id for u in uses] == [f"call_{i}" for i in calls]
        assert [u.name for u in uses] == [f"f{i}" for i in calls]
        assert {u.id: u.input for u in uses} == expected


def test_stream_refuses_a_tool_call_that_comes_back_after_its_block_closed() -> None:
    """Once another kind of block has begun, a call's block cannot take more."""
    stream = door.stream(CALL, CTX)
    stream.events([*_call(0, "{}"), TextDelta(text="t")], None)
    with pytest.raises(ChatError) as err:
        stream.events([ToolCallDelta(index=0, arguments="{}")], None)
    assert err.value.type == "bad_upstream_response"


def test_stream_holds_back_a_bounded_amount_of_interleaved_calls() -> None:
    stream = door.stream(CALL, CTX)
    stream.events(_call(0, '{"x":'), None)
    big = "a" * (MAX_HELD_BYTES // 2 - 10)
    stream.events([*_call(1, '{"y":"' + big), ToolCallDelta(index=1, arguments=big)], None)
    with pytest.raises(ChatError) as err:
        stream.events([ToolCallDelta(index=1, arguments=big)], None)
    assert err.value.type == "bad_upstream_response"
    calls = door.stream(CALL, CTX)
    calls.events(_call(0, '{"x":'), None)
    calls.events([d for i in range(1, MAX_HELD_CALLS + 1) for d in _call(i)], None)
    with pytest.raises(ChatError):
        calls.events(_call(MAX_HELD_CALLS + 1), None)


def test_stream_error_and_the_end_are_final() -> None:
    stream = door.stream(CALL, CTX)
    stream.events([TextDelta(text="a")], None)
    tail = stream.error(ChatError("upstream_overloaded", "Overloaded", provider="kimi"))
    assert sse(tail) == [("error", {"type": "error", "error": {
        "type": "overloaded_error", "message": "Overloaded", "code": "upstream_overloaded",
        "provider": "kimi"}})]
    with pytest.raises(RuntimeError):
        stream.events([TextDelta(text="b")], None)
    ended = door.stream(CALL, CTX)
    ended.events([StreamEnded(finish_reason="stop")], None)
    with pytest.raises(RuntimeError):
        ended.error(ChatError("upstream_error", "late"))


def test_same_dialect_stream_is_relayed_as_it_came() -> None:
    """Upstream SSE -> parser (passthrough) -> renderer: the client gets every upstream
    event unchanged but for the model name, server-tool blocks and citations included."""
    data = fixture("anthropic_server_tools.sse")
    for label, chunks in [("whole", [data]), ("bytewise", bytewise(data))]:
        parser = codec.stream_parser("opencode", passthrough=True)
        stream = door.stream(CALL, CTX)
        out = stream.start()
        for chunk in [*chunks, b""]:
            batch = parser.feed(chunk)
            if batch:
                out += stream.events(batch, None)
            if any(type(e) is StreamEnded for e in batch):
                break
        upstream = sse(data)
        upstream[0][1]["message"]["model"] = "smart"
        assert sse(out) == upstream, label


# --- both ends against each other -----------------------------------------------------

@st.composite
def event_runs(draw: st.DrawFn) -> list[Event]:
    """Canonical event sequences as upstreams produce them: text, thinking (each run
    closed by a signature), tool calls one after another, then the end."""
    events: list[Event] = []
    tools = 0
    text = st.text(min_size=1, max_size=12)
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["text", "thinking", "tool"]))
        if kind == "text":
            events.extend(TextDelta(text=t) for t in draw(st.lists(text, min_size=1,
                                                                     max_size=3)))
        elif kind == "thinking":
            events.extend(ThinkingDelta(text=t) for t in draw(st.lists(text, min_size=1,
                                                                         max_size=3)))
            events.append(ThinkingDelta(signature=draw(text)))
        else:
            events.append(ToolCallDelta(index=tools, id=f"toolu_{tools}", name=draw(text)))
            events.extend(ToolCallDelta(index=tools, arguments=a)
                          for a in draw(st.lists(text, max_size=3)))
            tools += 1
    finish = "tool_calls" if tools else draw(st.sampled_from(["stop", "length"]))
    usage = Usage(prompt_tokens=draw(st.integers(0, 99)),
                  completion_tokens=draw(st.integers(0, 99)))
    events.append(StreamEnded(finish_reason=finish, usage=usage))
    return events


def merged(events: list[Event]) -> list[Event]:
    """Adjacent text (and thinking text) deltas joined: what the render keeps."""
    out: list[Event] = []
    for e in events:
        last = out[-1] if out else None
        if type(e) is TextDelta and type(last) is TextDelta:
            out[-1] = TextDelta(text=last.text + e.text)
        elif (type(e) is ThinkingDelta and type(last) is ThinkingDelta and e.text
              and last.text and last.signature is None and e.signature is None):
            out[-1] = ThinkingDelta(text=last.text + e.text)
        elif type(e) is ToolCallDelta and type(last) is ToolCallDelta and not e.id \
                and last.index == e.index:
            out[-1] = ToolCallDelta(index=e.index, id=last.id, name=last.name,
                                    arguments=last.arguments + e.arguments)
        else:
            out.append(e)
    return out


@settings(max_examples=150, deadline=None)
@given(events=event_runs(), points=cuts())
def test_what_the_door_renders_the_codec_reads_back(events: list[Event],
                                                    points: list[int]) -> None:
    rendered = render(events)
    check_order(sse(rendered))
    back = feed(codec.stream_parser("opencode"), cut_at(rendered, points))
    assert merged(back) == merged(events)


def test_renderer_is_the_door_stream() -> None:
    assert isinstance(door.stream(CALL, CTX), MessagesStream)


# --- the codec: what an Anthropic upstream refuses, through chatd ---------------------

ANTHROPIC_MESSAGE = {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "c",
    "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
    "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 5}}
WEATHER = {"type": "function", "function": {"name": "get_weather",
                                            "parameters": {"type": "object"}}}


def redacted(sent: dict[str, Any]) -> list[str]:
    return [b["data"] for m in sent["messages"] if isinstance(m["content"], list)
            for b in m["content"] if b.get("type") == "redacted_thinking"]


@pytest.mark.anyio
async def test_whitespace_stop_sequences_are_not_sent_to_an_anthropic_upstream(
        tmp_path: Path) -> None:
    """SPEC §3's own native example sends ``"stop": ["\\n"]``. Anthropic refuses it: "400
    stop_sequences: each stop sequence must contain non-whitespace" (LiteLLM #3286, fixed
    by dropping them, #3436/#7484). Sent to a ``claude-*`` model as is, the SPEC's
    example request is a 400 ``upstream_rejected``."""
    async with lab(tmp_path) as s, s.http() as client:
        s.up.answers["c"] = whole(ANTHROPIC_MESSAGE)
        r = await client.post("/v1/chat", json={
            "model": "ant/c", "max_tokens": 10, "stop": ["\n", "END"],
            "messages": [{"role": "user", "content": "hi"}]})
        sent = s.up.last()
    assert r.status_code == 200, r.text
    assert all(stop.strip() for stop in sent.get("stop_sequences", [])), sent
    assert "END" in sent.get("stop_sequences", [])


@pytest.mark.anyio
async def test_thinking_for_an_anthropic_upstream_is_sent_without_a_temperature(
        tmp_path: Path) -> None:
    """An OpenAI client asks a Claude model for ``reasoning_effort: "low"`` with its usual
    ``temperature: 0.2``; chatd turns the effort into ``thinking`` and keeps the
    temperature, which Anthropic refuses: "``temperature`` may only be set to 1 when
    thinking is enabled" (Anthropic extended-thinking docs: "Thinking isn't compatible
    with temperature or top_k modifications as well as forced tool use"). The request
    must reach the upstream in a form it accepts."""
    async with lab(tmp_path) as s, s.http() as client:
        s.up.answers["c"] = whole(ANTHROPIC_MESSAGE)
        r = await client.post("/v1/chat/completions", json={
            "model": "ant/c", "reasoning_effort": "low", "temperature": 0.2,
            "messages": [{"role": "user", "content": "hi"}]})
        sent = s.up.last()
    assert r.status_code == 200, r.text
    if sent.get("thinking", {}).get("type") == "enabled":
        assert sent.get("temperature", 1) == 1, sent
        assert "top_k" not in sent, sent


@pytest.mark.anyio
async def test_thinking_for_an_anthropic_upstream_is_not_combined_with_forced_tool_use(
        tmp_path: Path) -> None:
    """Anthropic: "Thinking may not be enabled when tool_choice forces tool use" (a 400
    for ``tool_choice`` ``any`` or ``tool`` with ``thinking``). An OpenAI client sending
    ``tool_choice: "required"`` and a ``reasoning_effort`` gets both from chatd."""
    async with lab(tmp_path) as s, s.http() as client:
        s.up.answers["c"] = whole(ANTHROPIC_MESSAGE)
        r = await client.post("/v1/chat/completions", json={
            "model": "ant/c", "reasoning_effort": "low", "tool_choice": "required",
            "tools": [WEATHER], "messages": [{"role": "user", "content": "hi"}]})
        sent = s.up.last()
    assert r.status_code == 200, r.text
    forced = sent.get("tool_choice", {}).get("type") in ("any", "tool")
    assert not (forced and sent.get("thinking", {}).get("type") == "enabled"), sent


@pytest.mark.anyio
async def test_whitespace_only_text_is_not_sent_to_an_anthropic_upstream(
        tmp_path: Path) -> None:
    """Anthropic refuses "messages: text content blocks must contain non-whitespace text"
    (claude-code #575). An OpenAI-style history with an assistant turn of ``" "`` must not
    reach a Claude model as a whitespace-only text block."""
    async with lab(tmp_path) as s, s.http() as client:
        s.up.answers["c"] = whole(ANTHROPIC_MESSAGE)
        r = await client.post("/v1/chat/completions", json={
            "model": "ant/c", "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"},
                         {"role": "assistant", "content": " "},
                         {"role": "user", "content": "again\n"}]})
        sent = s.up.last()
    assert r.status_code == 200, r.text
    texts = [b["text"] for m in sent["messages"] if isinstance(m["content"], list)
             for b in m["content"] if b["type"] == "text"]
    assert all(t.strip() for t in texts), sent["messages"]


@pytest.mark.anyio
async def test_a_history_call_with_broken_arguments_does_not_stick_the_conversation(
        tmp_path: Path) -> None:
    """A model's call cut by ``max_tokens`` leaves arguments that are not JSON in the
    history (Chat Completions takes any string there); the agent answers the call with an
    error and goes on. Sent to a Claude (or Ollama) model, chatd refuses the whole request
    with a 400 "arguments are not valid JSON", and since every later turn carries the
    same history, the conversation can never continue on that model. The call must go
    upstream with an object ``input`` (the text kept where the dialect allows it)."""
    async with lab(tmp_path) as s, s.http() as client:
        s.up.answers["c"] = whole(ANTHROPIC_MESSAGE)
        r = await client.post("/v1/chat/completions", json={
            "model": "ant/c", "max_tokens": 50, "tools": [WEATHER],
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": '{"city": "Par'}}]},
                {"role": "tool", "tool_call_id": "call_1",
                 "content": "error: arguments were not valid JSON"}]})
        sent = s.up.last() if s.up.bodies else {}
    assert r.status_code == 200, r.text
    [use] = [b for m in sent["messages"] if isinstance(m["content"], list)
             for b in m["content"] if b["type"] == "tool_use"]
    assert isinstance(use["input"], dict)


@pytest.mark.anyio
async def test_kimi_style_tool_ids_reach_an_anthropic_upstream_in_its_id_pattern(
        tmp_path: Path) -> None:
    """Kimi K2 names its calls ``functions.<name>:<n>`` (Moonshot's tool-call id format);
    Anthropic refuses a ``tool_use.id`` / ``tool_use_id`` outside
    ``^[a-zA-Z0-9_-]+$``. A conversation that started on Kimi and goes on with a Claude
    model (a tier's fallback, a client switching model) must reach Anthropic with ids it
    takes, the call and its result still paired."""
    async with lab(tmp_path) as s, s.http() as client:
        s.up.answers["c"] = whole(ANTHROPIC_MESSAGE)
        r = await client.post("/v1/chat/completions", json={
            "model": "ant/c", "max_tokens": 50, "tools": [WEATHER],
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "functions.get_weather:0", "type": "function",
                     "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
                {"role": "tool", "tool_call_id": "functions.get_weather:0",
                 "content": "sunny"}]})
        sent = s.up.last()
    assert r.status_code == 200, r.text
    blocks = [b for m in sent["messages"] if isinstance(m["content"], list)
              for b in m["content"]]
    [use] = [b for b in blocks if b["type"] == "tool_use"]
    [result] = [b for b in blocks if b["type"] == "tool_result"]
    assert re.fullmatch(r"[a-zA-Z0-9_-]+", use["id"]), use
    assert result["tool_use_id"] == use["id"]


@pytest.mark.anyio
async def test_claude_code_history_from_a_responses_upstream_is_not_sent_to_anthropic(
        tmp_path: Path) -> None:
    """Claude Code on ``/v1/messages`` with an OpenAI Responses model gets that model's
    encrypted reasoning as ``redacted_thinking`` with ``data:
    "openai_responses:<id>:<enc>"`` (chatd's own packing, openai_responses.py ``_pack``).
    When the user switches to a Claude model, chatd passes that block to Anthropic, whose
    ``redacted_thinking.data`` is its own encrypted payload: a 400. Like a thinking block
    without a signature (README: "left out"), another upstream's opaque reasoning must
    not reach Anthropic."""
    async with lab(tmp_path) as s, s.http() as client:
        s.up.answers["c"] = whole(ANTHROPIC_MESSAGE)
        r = await client.post("/v1/messages", json={
            "model": "ant/c", "max_tokens": 50, "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [
                    {"type": "redacted_thinking",
                     "data": "openai_responses:rs_1:gAAAAB-openai-encrypted"},
                    {"type": "text", "text": "hello"}]},
                {"role": "user", "content": "again"}]})
        sent = s.up.last()
    assert r.status_code == 200, r.text
    assert not [d for d in redacted(sent) if d.startswith("openai_responses:")], sent


@pytest.mark.anyio
async def test_openai_reasoning_items_are_not_sent_to_anthropic_as_redacted_thinking(
        tmp_path: Path) -> None:
    """Codex on ``/v1/responses`` replays its reasoning items (``encrypted_content`` from
    OpenAI). Sent to a Claude model, chatd turns one into a ``redacted_thinking`` block
    whose ``data`` is OpenAI's ciphertext, which Anthropic cannot decrypt: a 400. A
    reasoning item from another provider has no Anthropic counterpart and is dropped."""
    async with lab(tmp_path) as s, s.http() as client:
        s.up.answers["c"] = whole(ANTHROPIC_MESSAGE)
        r = await client.post("/v1/responses", json={
            "model": "ant/c", "input": [
                {"role": "user", "content": "hi"},
                {"type": "reasoning", "id": "rs_1", "encrypted_content": "gAAAAB-openai",
                 "summary": [{"type": "summary_text", "text": "thought"}]},
                {"type": "message", "role": "assistant",
                 "content": [{"type": "output_text", "text": "hello"}]},
                {"role": "user", "content": "again"}]})
        sent = s.up.last()
    assert r.status_code == 200, r.text
    assert not [d for d in redacted(sent) if "gAAAAB-openai" in d], sent


@pytest.mark.anyio
async def test_an_assistant_turn_of_unsigned_thinking_does_not_reach_anthropic_empty(
        tmp_path: Path) -> None:
    """README: on ``/v1/messages`` to an Anthropic upstream "a thinking block without a
    signature (an answer another upstream gave) is left out". When that block was the
    whole turn (a thinking model cut off or interrupted before it wrote anything),
    chatd sends ``{"role": "assistant", "content": []}``, which Anthropic refuses: "all
    messages must have non-empty content except for the optional final assistant
    message". The emptied turn has to go too."""
    async with lab(tmp_path) as s, s.http() as client:
        s.up.answers["c"] = whole(ANTHROPIC_MESSAGE)
        r = await client.post("/v1/messages", json={
            "model": "ant/c", "max_tokens": 50, "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": ""}]},
                {"role": "user", "content": "again"}]})
        sent = s.up.last()
    assert r.status_code == 200, r.text
    assert all(m["content"] for m in sent["messages"]), sent["messages"]


@pytest.mark.parametrize(("stop", "stop_sequences"), [
    (("\n", "END"), ["END"]),
    ((" ", "\t\n", ""), None),
    (("a b", " x "), ["a b", " x "]),
])
def test_stop_sequences_without_non_whitespace_are_left_out(
        stop: tuple[str, ...], stop_sequences: list[str] | None) -> None:
    """Anthropic: "stop_sequences: each stop sequence must contain non-whitespace"."""
    out = sent(native(Message(role="user", content="q"), stop=stop))
    assert out.get("stop_sequences") == stop_sequences


@pytest.mark.parametrize(("kw", "expected"), [
    ({"think": "low", "temperature": 0.2, "top_p": 0.5, "options": {"top_k": 5}},
     {"thinking": {"type": "enabled", "budget_tokens": 2048}}),
    ({"think": "low", "temperature": 1.0, "top_p": 0.97},
     {"thinking": {"type": "enabled", "budget_tokens": 2048}, "temperature": 1,
      "top_p": 0.97}),
    ({"temperature": 0.2, "top_p": 0.5, "options": {"top_k": 5}},
     {"temperature": 0.2, "top_p": 0.5, "top_k": 5}),
    ({"think": False, "temperature": 0.2},
     {"thinking": {"type": "disabled"}, "temperature": 0.2}),
    ({"think": "low", "tool_choice": "required", "tools": (WEATHER,), "temperature": 0.2},
     {"tool_choice": {"type": "any"}, "temperature": 0.2}),
    ({"think": "low", "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
      "tools": (WEATHER,)},
     {"tool_choice": {"type": "tool", "name": "get_weather"}}),
    ({"think": "low", "tool_choice": "auto", "tools": (WEATHER,)},
     {"tool_choice": {"type": "auto"}, "thinking": {"type": "enabled", "budget_tokens": 2048}}),
])
def test_thinking_goes_without_what_anthropic_refuses_beside_it(
        kw: dict[str, Any], expected: dict[str, Any]) -> None:
    """Anthropic extended-thinking docs: "Thinking isn't compatible with temperature or
    top_k modifications as well as forced tool use" (top_p only 0.95 to 1). A forced
    tool choice stays (the client's code reads the call) and thinking goes."""
    out = sent(native(Message(role="user", content="q"), **kw))
    keys = ("thinking", "temperature", "top_p", "top_k", "tool_choice")
    assert {k: out[k] for k in keys if k in out} == expected


@pytest.mark.parametrize(("arguments", "sent_input"), [
    ('{"city": "Par', {"raw_arguments": '{"city": "Par'}),
    ("[1]", {"raw_arguments": "[1]"}),
    ("", {}),
    ('{"city": "Paris"}', {"city": "Paris"}),
])
def test_history_call_arguments_that_are_not_an_object_go_wrapped(
        arguments: str, sent_input: dict[str, Any]) -> None:
    """Refusing a history call whose arguments are not a JSON object would make every
    later turn a 400 (each carries the same history); the text goes wrapped."""
    out = sent(native(Message(role="user", content="q"), Message(
        role="assistant", tool_calls=(ToolCall(id="c", name="f", arguments=arguments),))))
    [use] = out["messages"][1]["content"]
    assert use["input"] == sent_input


def test_tool_ids_outside_anthropics_pattern_are_rewritten_alike_and_apart() -> None:
    """Each id outside ``^[a-zA-Z0-9_-]+$`` gets one id that fits, the same for its call
    and its result, distinct from every other id; ids that fit, and the canonical
    request the client's answer is rendered from, are unchanged."""
    calls = (ToolCall(id="functions.f:0", name="f", arguments="{}"),
             ToolCall(id="functions.f:1", name="f", arguments="{}"),
             ToolCall(id="toolu_ok", name="f", arguments="{}"))
    chat = native(Message(role="user", content="q"), Message(role="assistant", tool_calls=calls),
                  *(Message(role="tool", tool_call_id=c.id, content="r") for c in calls))
    out = sent(chat)
    uses = [b["id"] for b in out["messages"][1]["content"]]
    results = [b["tool_use_id"] for b in out["messages"][2]["content"]]
    assert uses == results and len(set(uses)) == 3 and uses[2] == "toolu_ok"
    assert all(re.fullmatch(r"[a-zA-Z0-9_-]+", i) for i in uses)
    assert uses[0].startswith("functions_f_0_")
    assert sent(chat) == out  # deterministic: the next turn sends the same ids
    assert chat.messages[1].tool_calls == calls
    # The same-dialect body is rewritten alike.
    raw = chat_of(messages=[
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "functions.f:0", "name": "f", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "functions.f:0", "content": "r"}]}])
    same = sent(raw)["messages"]
    assert same[1]["content"][0]["id"] == same[2]["content"][0]["tool_use_id"] == uses[0]
    assert raw.raw["messages"][1]["content"][0]["id"] == "functions.f:0"


def test_tool_ids_rewritten_never_take_an_id_the_request_holds() -> None:
    """Injective even against an id built to collide: the hash prefix grows."""
    taken = "functions_f_0_" + sha256(b"functions.f:0").hexdigest()[:12]
    calls = (ToolCall(id=taken, name="f", arguments="{}"),
             ToolCall(id="functions.f:0", name="f", arguments="{}"))
    out = sent(native(Message(role="user", content="q"),
                      Message(role="assistant", tool_calls=calls)))
    ids = [b["id"] for b in out["messages"][1]["content"]]
    assert ids[0] == taken and ids[1] != taken and ids[1].startswith(taken)


def test_an_answer_keeps_the_ids_anthropic_gave() -> None:
    """The client's ids are rewritten only in the upstream body; an answer's calls carry
    Anthropic's ids (what the client names in its next turn)."""
    resp = codec.parse_response("p", json.dumps({**ANTHROPIC_MESSAGE, "content": [
        {"type": "tool_use", "id": "toolu_9", "name": "f", "input": {}}],
        "stop_reason": "tool_use"}).encode())
    assert [c.id for c in resp.tool_calls] == ["toolu_9"]


@pytest.mark.parametrize(("parts", "sent_content"), [
    ((TextPart(text=" "), TextPart(text="a")), [{"type": "text", "text": "a"}]),
    ((ThinkingPart(encrypted="openai_responses:rs_1:gAAA"), TextPart(text="a")),
     [{"type": "text", "text": "a"}]),
    ((ThinkingPart(encrypted="EmwKAhgB"), TextPart(text="a")),
     [{"type": "redacted_thinking", "data": "EmwKAhgB"}, {"type": "text", "text": "a"}]),
    ((ThinkingPart(text="t", signature="sig"),),
     [{"type": "thinking", "thinking": "t", "signature": "sig"}]),
    ((ThinkingPart(text="unsigned"), TextPart(text="\n")), None),
])
def test_assistant_parts_anthropic_refuses_are_left_out(
        parts: tuple[Part, ...], sent_content: list[dict[str, Any]] | None) -> None:
    """Whitespace-only text, thinking without an Anthropic signature and opaque reasoning
    another dialect packed are left out; a turn left empty goes, and the user turns
    around it are one."""
    out = sent(native(Message(role="user", content="q"), Message(role="assistant", parts=parts),
                      Message(role="user", content="again")))
    if sent_content is None:
        assert out["messages"] == [{"role": "user", "content": [
            {"type": "text", "text": "q"}, {"type": "text", "text": "again"}]}]
    else:
        assert out["messages"][1] == {"role": "assistant", "content": sent_content}


@pytest.mark.parametrize(("blocks", "kept"), [
    ([{"type": "thinking", "thinking": "t", "signature": ""}], None),
    ([{"type": "redacted_thinking", "data": "openai_responses:rs_1:gAAA"},
      {"type": "text", "text": "a"}], [{"type": "text", "text": "a"}]),
    ([{"type": "redacted_thinking", "data": "EmwKAhgB"}],
     [{"type": "redacted_thinking", "data": "EmwKAhgB"}]),
    ([{"type": "text", "text": " \n"}, {"type": "text", "text": "a",
                                       "cache_control": {"type": "ephemeral"}}],
     [{"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}}]),
])
def test_same_dialect_blocks_anthropic_refuses_are_left_out(
        blocks: list[dict[str, Any]], kept: list[dict[str, Any]] | None) -> None:
    """The same rules on the client's own body; a message they empty is left out."""
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": blocks},
                {"role": "user", "content": "again"}]
    out = sent(chat_of(messages=messages))["messages"]
    if kept is None:
        assert out == [messages[0], messages[2]]
    else:
        assert out == [messages[0], {"role": "assistant", "content": kept}, messages[2]]


INTERLEAVED_CALLS = [
    canned.chunk({"role": "assistant", "content": "Let me check."}),
    canned.chunk({"tool_calls": [{"index": 0, "id": "call_A", "type": "function",
                                  "function": {"name": "fa", "arguments": ""}}]}),
    canned.chunk({"tool_calls": [{"index": 1, "id": "call_B", "type": "function",
                                  "function": {"name": "fb", "arguments": '{"y":'}}]}),
    canned.chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"x":1}'}}]}),
    canned.chunk({"tool_calls": [{"index": 1, "function": {"arguments": "2}"}}]}),
    {**canned.chunk({}, "tool_calls"),
     "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}},
]


@pytest.mark.anyio
async def test_anthropic_door_streams_interleaved_parallel_tool_calls(
        tmp_path: Path) -> None:
    """Chat Completions streams parallel calls by ``index``, and their argument fragments
    may interleave (OpenAI's chunk format allows it; the Responses door and the native
    door relay it fine). Claude Code on ``/v1/messages`` must get both ``tool_use``
    blocks. Today the whole answer is one ``event: error`` — even the text parsed before
    it is lost, against SPEC §4: "Every event parsed before the failure reaches the
    client first"."""
    tools = [{"name": "fa", "input_schema": {"type": "object"}},
             {"name": "fb", "input_schema": {"type": "object"}}]
    async with lab(tmp_path) as s, s.http() as client:
        s.up.answers["m"] = canned.sse(INTERLEAVED_CALLS)
        r = await client.post("/v1/messages", json={
            "model": "oai/m", "max_tokens": 50, "stream": True, "tools": tools,
            "messages": [{"role": "user", "content": "hi"}]})
        events = canned.sse_events(r.text)
    names = [name for name, _ in events]
    assert "error" not in names, events
    blocks = [d["content_block"] for name, d in events if name == "content_block_start"]
    assert [b["type"] for b in blocks] == ["text", "tool_use", "tool_use"]
    inputs: dict[int, str] = {}
    for name, d in events:
        if name == "content_block_delta" and d["delta"]["type"] == "input_json_delta":
            inputs[d["index"]] = inputs.get(d["index"], "") + d["delta"]["partial_json"]
    assert [json.loads(v) for _, v in sorted(inputs.items())] == [{"x": 1}, {"y": 2}]


BILLING = "x-anthropic-billing-header: cc_version=2.1.332.f04; cc_entrypoint=sdk-cli;"
OPENAI_COMPLETION = {
    "id": "c", "object": "chat.completion", "created": 1, "model": "m",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "ok"}}]}


@pytest.mark.anyio
async def test_system_blocks_stay_apart_where_the_upstream_has_one_string(
        tmp_path: Path) -> None:
    """Claude Code's first ``system`` block is its billing header (research/agents/
    claude-tool.json); joined with nothing, the header ran into the prompt's first words
    (``...cc_entrypoint=sdk-cli;You are a Claude agent``) for an upstream whose system
    prompt is one string. Each block keeps its own line; to Anthropic each stays a
    block."""
    system = [{"type": "text", "text": BILLING},
              {"type": "text", "text": "You are a Claude agent.",
               "cache_control": {"type": "ephemeral"}}]
    ask = {"max_tokens": 50, "system": system, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "<system-reminder>r"
                                                              "</system-reminder>"},
                                     {"type": "text", "text": "hi"}]}]}
    async with lab(tmp_path) as s, s.http() as client:
        s.up.answers["m"] = whole(OPENAI_COMPLETION)
        r = await client.post("/v1/messages", json={"model": "oai/m", **ask})
        assert r.status_code == 200, r.text
        sent = s.up.last()
    assert sent["messages"][0] == {"role": "system",
                                   "content": f"{BILLING}\nYou are a Claude agent."}
    assert sent["messages"][1]["content"] in (
        "<system-reminder>r</system-reminder>\nhi",
        [{"type": "text", "text": "<system-reminder>r</system-reminder>"},
         {"type": "text", "text": "hi"}])


def test_a_canonical_system_prompt_of_several_parts_is_several_blocks() -> None:
    """From another door (a Responses client's ``instructions`` and developer parts),
    each system part is its own Anthropic ``system`` block."""
    out = sent(native(Message(role="system", parts=(TextPart(text=BILLING),
                                                    TextPart(text="Be brief."))),
                      Message(role="user", content="q")))
    assert out["system"] == [{"type": "text", "text": BILLING},
                             {"type": "text", "text": "Be brief."}]


def test_message_content_puts_each_text_part_on_its_own_line() -> None:
    message = Message(role="user", parts=(TextPart(text="a"), ImagePart(data=PNG),
                                          TextPart(text=""), TextPart(text="b")))
    assert message.content == "a\nb"
    assert Message(role="user", parts=(TextPart(text="only"),)).content == "only"
    assert Message(role="user", parts=()).content == ""

