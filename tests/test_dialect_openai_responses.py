"""OpenAI Responses at both ends (chatproto/dialects/openai_responses.py).

The door: every request field's mapping and every bad input's 400; whole answers and
streams checked against the official openai SDK's own models and read back by the SDK
itself through an in-memory transport (its ``responses.stream`` helper assembles the
answer from the events and refuses inconsistent ones); errors as the SDK's exceptions.
The codec: request bodies, whole answers and streams as api.openai.com sends them
(:func:`fake_responses.answer`), fed whole, byte by byte and at every split, including
what comes before a failure; the same dialect relayed losslessly. And the round trip:
what the door renders, the codec reads back as the same events.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import canned
import httpx2
import openai
import orjson
import pytest
from fake_ollama import words
from fake_responses import REPLY, THINKING, answer, sse
from helpers import cut_at, cuts, every_split, feed, json_values, outcome
from hypothesis import given
from hypothesis import strategies as st
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from chatproto import (
    ERROR_STATUS,
    Accumulator,
    Answer,
    CallContext,
    ChatError,
    ChatRequest,
    ChatResponse,
    Event,
    ImagePart,
    Message,
    Provider,
    RawEvent,
    Route,
    Secret,
    Served,
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
from chatproto.dialects.openai_responses import (
    API,
    ResponsesView,
    codec,
    door,
    render_error,
)

EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
CTX = CallContext(id="c0ffee", created=1_700_000_000)
ROUTE = Route(provider="zen", upstream_model="gpt-5.1")
PROVIDER = Provider(name="zen", api=API, base_url="https://zen.test/v1/",
                    key=Secret("sk-zen"))
PNG = "iVBORw0KGgoAAAANSUhEUg=="


def body(**fields: object) -> bytes:
    obj: dict[str, object] = {"model": "smart", "input": "hi"}
    obj.update(fields)
    return json.dumps(obj).encode()


def items(*entries: object) -> bytes:
    return body(input=list(entries))


def chat(raw: bytes) -> ChatRequest:
    """The parsed request without the kept client body (checked on its own)."""
    return replace(door.parse(raw, ()).chat, raw=None)


BASE = ChatRequest(model="smart", messages=(Message(role="user", content="hi"),),
                   dialect=API)


def with_messages(*messages: Message) -> ChatRequest:
    return replace(BASE, messages=messages)


def user(text: str) -> dict[str, object]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text",
                                                             "text": text}]}


# ======================================================================================
# Door: requests

FN = {"type": "function", "name": "exec_command", "description": "Run a command",
      "strict": False, "parameters": {"type": "object",
                                      "properties": {"cmd": {"type": "string"}}}}
FN_CHAT = {"type": "function", "function": {
    "name": "exec_command", "description": "Run a command",
    "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}},
    "strict": False}}
NAMESPACE = {"type": "namespace", "name": "agents", "description": "Sub-agents",
             "tools": [{"type": "function", "name": "spawn", "parameters": None}]}
SPAWN_CHAT = {"type": "function", "function": {
    "name": "agents__spawn", "parameters": {"type": "object", "properties": {}}}}
SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}

GOOD: list[tuple[bytes, ChatRequest]] = [
    (body(), BASE),
    (body(instructions="Be brief."),
     with_messages(Message(role="system", content="Be brief."),
                   Message(role="user", content="hi"))),
    (body(instructions=""), BASE),
    (body(input=[], instructions="Only this."),
     with_messages(Message(role="system", content="Only this."))),
    # messages: Codex's developer message with two parts, and the type-less form
    (items({"type": "message", "id": "msg_1", "role": "developer", "content": [
        {"type": "input_text", "text": "<skills>"}, {"type": "input_text", "text": "<perms>"}]},
        {"role": "user", "content": "hi"}),
     with_messages(Message(role="system", content="<skills>\n<perms>"),
                   Message(role="user", content="hi"))),
    (items({"role": "system", "content": "s"}, user("u")),
     with_messages(Message(role="system", content="s"), Message(role="user", content="u"))),
    (items({"role": "user", "content": [
        {"type": "input_text", "text": "what are"}, {"type": "input_text", "text": "these?"},
        {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}", "detail": "low"},
        {"type": "input_image", "image_url": "https://img.test/a.jpg", "detail": "auto"}]}),
     with_messages(Message(role="user", parts=(
         TextPart(text="what are\nthese?"), ImagePart(data=PNG, media_type="image/png"),
         ImagePart(url="https://img.test/a.jpg"))))),
    (items({"role": "user", "content": ""}), with_messages(Message(role="user", parts=()))),
    # a whole tool turn as Codex sends it back (research/agents/codex-reasoning-tool.json)
    (items(user("run ls"),
           {"type": "reasoning", "id": "rs_1", "summary": [
               {"type": "summary_text", "text": "First."},
               {"type": "summary_text", "text": "Then."}], "encrypted_content": "gAAA"},
           {"type": "message", "role": "assistant", "id": "msg_2", "status": "completed",
            "content": [{"type": "output_text", "text": "Let me look.", "annotations": []}]},
           {"type": "function_call", "status": "completed", "id": "fc_1",
            "name": "exec_command", "arguments": '{"cmd": "ls"}', "call_id": "call_1"},
           {"type": "function_call_output", "id": "fco_1", "call_id": "call_1",
            "output": "a.txt\n"}),
     with_messages(
         Message(role="user", content="run ls"),
         Message(role="assistant", parts=(
             ThinkingPart(text="First.\n\nThen.", encrypted="openai_responses:rs_1:gAAA"),
             TextPart(text="Let me look."),
             ToolCall(id="call_1", name="exec_command", arguments='{"cmd": "ls"}'))),
         Message(role="tool", tool_call_id="call_1", content="a.txt\n"))),
    # Codex's reasoning item with no encrypted content; two calls then two outputs
    (items(user("go"),
           {"type": "reasoning", "id": "rs_5", "summary": [
               {"type": "summary_text", "text": "Thinking about it."}], "content": None,
            "encrypted_content": None},
           {"type": "function_call", "name": "a", "arguments": "{}", "call_id": "c1"},
           {"type": "function_call", "name": "b", "arguments": {"x": 1}, "call_id": "c2"},
           {"type": "function_call_output", "call_id": "c1", "output": "one"},
           {"type": "function_call_output", "call_id": "c2", "output": [
               {"type": "input_text", "text": "two"},
               {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"}]}),
     with_messages(
         Message(role="user", content="go"),
         Message(role="assistant", parts=(
             ThinkingPart(text="Thinking about it."),
             ToolCall(id="c1", name="a", arguments="{}"),
             ToolCall(id="c2", name="b", arguments='{"x":1}'))),
         Message(role="tool", tool_call_id="c1", content="one"),
         Message(role="tool", tool_call_id="c2", parts=(
             TextPart(text="two"), ImagePart(data=PNG, media_type="image/png"))))),
    # a namespaced call in history is flattened like its tool
    (items(user("x"), {"type": "function_call", "name": "spawn", "namespace": "agents",
                       "arguments": "{}", "call_id": "c9"}),
     with_messages(Message(role="user", content="x"), Message(role="assistant", parts=(
         ToolCall(id="c9", name="agents__spawn", arguments="{}"),)))),
    # reasoning that says nothing is no part; other dialects' opaque reasoning comes back
    (items(user("x"), {"type": "reasoning", "id": "rs_0", "summary": []}),
     with_messages(Message(role="user", content="x"))),
    (items({"type": "reasoning", "id": "rs_a", "summary": [{"type": "summary_text",
                                                             "text": "t"}],
            "encrypted_content": "chatd-signature:EqQBCkgI"}),
     with_messages(Message(role="assistant", parts=(
         ThinkingPart(text="t", signature="EqQBCkgI"),)))),
    (items({"type": "reasoning", "id": "rs_b", "summary": [],
            "encrypted_content": "chatd-encrypted:opaque=="}),
     with_messages(Message(role="assistant", parts=(ThinkingPart(encrypted="opaque=="),)))),
    (items({"type": "reasoning", "id": "rs_c", "summary": [], "content": [
        {"type": "reasoning_text", "text": "raw thought"}]}),
     with_messages(Message(role="assistant", parts=(ThinkingPart(text="raw thought"),)))),
    (items({"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]}),
     with_messages(Message(role="assistant", content="No."))),
    # tools
    (body(tools=[FN, NAMESPACE, {"type": "web_search", "external_web_access": True}]),
     replace(BASE, tools=(FN_CHAT, SPAWN_CHAT))),
    (body(tools=[{"type": "function", "name": "f"}]),
     replace(BASE, tools=({"type": "function", "function": {
         "name": "f", "parameters": {"type": "object", "properties": {}}}},))),
    (body(tool_choice="required"), replace(BASE, tool_choice="required")),
    (body(tool_choice={"type": "function", "name": "exec_command"}),
     replace(BASE, tool_choice={"type": "function", "function": {"name": "exec_command"}})),
    (body(tool_choice={"type": "function", "name": "spawn", "namespace": "agents"}),
     replace(BASE, tool_choice={"type": "function", "function": {"name": "agents__spawn"}})),
    (body(tool_choice={"type": "allowed_tools", "mode": "required", "tools": []}),
     replace(BASE, tool_choice="required")),
    (body(tool_choice={"type": "web_search"}), BASE),
    # reasoning
    (body(reasoning={"effort": "none"}), replace(BASE, think=False)),
    (body(reasoning={"effort": "minimal"}), replace(BASE, think=False)),
    (body(reasoning={"effort": "high", "summary": "auto"}),
     replace(BASE, think="high", options={"reasoning_summary": "auto"})),
    (body(reasoning={"effort": "xhigh"}), replace(BASE, think="max")),
    (body(reasoning={"summary": "detailed"}),
     replace(BASE, options={"reasoning_summary": "detailed"})),
    (body(reasoning={"generate_summary": "concise"}),
     replace(BASE, options={"reasoning_summary": "concise"})),
    # text.format
    (body(text={"format": {"type": "text"}}), BASE),
    (body(text={"format": {"type": "json_object"}}), replace(BASE, format="json")),
    (body(text={"format": {"type": "json_schema", "name": "r", "strict": True,
                           "schema": SCHEMA}, "verbosity": "low"}),
     replace(BASE, format=SCHEMA, options={"format_name": "r", "format_strict": True,
                                           "verbosity": "low"})),
    (body(text={"format": {"type": "json_schema", "name": "r"}}), replace(BASE, format="json")),
    # scalars and options
    (body(max_output_tokens=64, temperature=0.2, top_p=1, stream=True),
     replace(BASE, max_tokens=64, temperature=0.2, top_p=1.0, stream=True)),
    (body(parallel_tool_calls=False, prompt_cache_key="k1", user="u1", top_logprobs=2),
     replace(BASE, options={"parallel_tool_calls": False, "prompt_cache_key": "k1",
                            "user": "u1", "top_logprobs": 2})),
    # accepted, not honoured (store) or not interpreted (extras, the same dialect's)
    (body(store=True, include=["reasoning.encrypted_content"], metadata={"a": "b"},
          previous_response_id=None, background=False),
     BASE),
    (body(client_metadata={"turn_id": "t1"}, truncation="auto", service_tier="flex"),
     replace(BASE, extras={"client_metadata": {"turn_id": "t1"}, "truncation": "auto",
                           "service_tier": "flex"})),
]


@pytest.mark.parametrize(("raw", "expected"), GOOD)
def test_request_mapping(raw: bytes, expected: ChatRequest) -> None:
    assert chat(raw) == expected


def test_request_keeps_the_client_body_and_names_what_it_dropped() -> None:
    raw = body(tools=[FN, {"type": "web_search"}, {"type": "namespace", "name": "ns",
                                                    "description": "d", "tools": [
        {"type": "custom", "name": "apply_patch"}, {"type": "function", "name": "f"}]}],
        tool_choice={"type": "file_search"})
    call = door.parse(raw, ())
    assert call.chat.raw == json.loads(raw)
    assert call.chat.dialect == API
    assert call.dropped == ("tools[1] type 'web_search'", "tools[2].tools[0] type 'custom'",
                            "tool_choice type 'file_search'")
    assert isinstance(call.view, ResponsesView)
    assert dict(call.view.names) == {"ns__f": ("ns", "f")}
    assert call.view.model == "smart"


def test_a_dropped_note_cannot_write_a_raw_line() -> None:
    call = door.parse(body(tools=[{"type": "evil\nINFO forged line" + "x" * 80}]), ())
    [note] = call.dropped
    assert "\n" not in note and len(note) < 80


BAD: list[tuple[bytes, str]] = [
    (b"not json", "not valid JSON"),
    (b"[]", "JSON object"),
    (json.dumps({"input": "hi"}).encode(), "model is required"),
    (body(previous_response_id="resp_1"), "previous_response_id is not supported"),
    (body(conversation="conv_1"), "conversation is not supported"),
    (body(background=True), "background is not supported"),
    (body(background="yes"), "background must be true or false"),
    (json.dumps({"model": "m"}).encode(), "input is required"),
    (body(input=[]), "input is required"),
    (body(input=5), "input must be a string or an array"),
    (body(input=[1]), "input[0] must be an object"),
    (items({"type": "item_reference", "id": "msg_1"}), "input[0]: item_reference"),
    (items({"type": "web_search_call", "id": "ws_1"}), "input[0].type 'web_search_call'"),
    (items({"type": "message", "role": "tool", "content": "x"}), "input[0].role"),
    (items({"type": "message", "content": "x"}), "input[0].role must be one of"),
    (items({"role": "user"}), "input[0].content is required"),
    (items({"role": "user", "content": 5}), "input[0].content must be a string or an array"),
    (items({"role": "user", "content": [5]}), "input[0].content[0] must be an object"),
    (items({"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}),
     "input[0].content[0].type 'input_file' is not supported"),
    (items({"role": "user", "content": [{"type": "input_text", "text": 5}]}),
     "input[0].content[0].text must be a string"),
    (items({"role": "assistant", "content": [{"type": "input_image", "image_url": "x"}]}),
     "input[0].content[0].type 'input_image' is not supported"),
    (items({"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}),
     "file_id names an uploaded file"),
    (items({"role": "user", "content": [{"type": "input_image", "image_url": "ftp://x"}]}),
     "image_url must be a data: or http(s) URL"),
    (items({"role": "user", "content": [{"type": "input_image",
                                         "image_url": "data:text/plain;base64,eA=="}]}),
     "must be a data:image/<type>;base64,<data> URL"),
    (items({"role": "user", "content": [{"type": "input_image",
                                         "image_url": "data:image/png;base64,"}]}),
     "must be a data:image/<type>;base64,<data> URL"),
    (items({"type": "function_call", "name": "f", "arguments": "{}"}), "input[0].call_id"),
    (items({"type": "function_call", "call_id": "c", "arguments": "{}"}), "input[0].name"),
    (items({"type": "function_call", "call_id": "c", "name": "f", "arguments": 5}),
     "input[0].arguments must be a JSON string"),
    (items({"type": "function_call_output", "output": "x"}), "input[0].call_id"),
    (items({"type": "function_call_output", "call_id": "c", "output": 5}),
     "input[0].output must be a string or an array of parts"),
    (items({"type": "reasoning", "id": "r", "summary": "x"}),
     "input[0].summary must be an array"),
    (items({"type": "reasoning", "id": "r", "summary": [{"type": "summary_text"}]}),
     "input[0].summary[0] must be a summary_text part"),
    (items({"type": "reasoning", "id": 5, "summary": []}), "input[0].id must be a string"),
    (body(instructions=["x"]), "instructions must be a string"),
    (body(tools={"type": "function"}), "tools must be an array"),
    (body(tools=[5]), "tools[0] must be an object"),
    (body(tools=[{"type": "function"}]), "tools[0].name must be a non-empty string"),
    (body(tools=[{"type": "function", "name": "f", "parameters": []}]),
     "tools[0].parameters must be an object"),
    (body(tools=[FN, FN]), "a tool named 'exec_command' is already defined"),
    (body(tools=[{"type": "function", "name": "ns__f"},
                 {"type": "namespace", "name": "ns", "tools": [
                     {"type": "function", "name": "f"}]}]), "already defined"),
    (body(tools=[{"type": "namespace", "name": "ns", "tools": {}}]),
     "tools[0].tools must be an array"),
    (body(tools=[{"type": "namespace", "tools": []}]), "tools[0].name"),
    (body(tools=[{"type": "function", "name": "f", "strict": "yes"}]),
     "tools[0].strict must be true or false"),
    (body(tool_choice="sometimes"), "tool_choice must be"),
    (body(tool_choice=5), "tool_choice must be a string or an object"),
    (body(tool_choice={"type": "function"}), "tool_choice.name"),
    (body(tool_choice={"type": "allowed_tools", "mode": "x"}), "tool_choice.mode"),
    (body(reasoning="high"), "reasoning must be an object"),
    (body(reasoning={"effort": "huge"}), "reasoning.effort must be one of"),
    (body(reasoning={"summary": "long"}), "reasoning.summary must be"),
    (body(text="json"), "text must be an object"),
    (body(text={"format": "json"}), "text.format must be an object"),
    (body(text={"format": {"type": "xml"}}), "text.format.type must be"),
    (body(text={"format": {"type": "json_schema", "schema": 5}}),
     "text.format.schema must be an object"),
    (body(text={"verbosity": 1}), "text.verbosity must be a string"),
    (body(max_output_tokens=0), "max_output_tokens must be a positive integer"),
    (body(temperature="hot"), "temperature must be a number"),
    (body(stream="yes"), "stream must be true or false"),
    (body(store="no"), "store must be true or false"),
    (body(include="x"), "include must be an array of strings"),
    (body(include=[1]), "include[0] must be a string"),
    (body(metadata=[]), "metadata must be an object"),
    (body(parallel_tool_calls=1), "parallel_tool_calls must be true or false"),
    (body(prompt_cache_key=1), "prompt_cache_key must be a string"),
]


@pytest.mark.parametrize(("raw", "fragment"), BAD)
def test_bad_request_is_400_naming_the_field(raw: bytes, fragment: str) -> None:
    with pytest.raises(ChatError) as info:
        door.parse(raw, ())
    assert (info.value.status, info.value.type) == (400, "invalid_request")
    assert fragment in info.value.message


KEYS = ["model", "input", "type", "role", "content", "text", "call_id", "name", "output",
        "arguments", "summary", "tools", "tool_choice", "reasoning", "effort", "format",
        "instructions", "image_url", "namespace", "encrypted_content", "id", "schema"]


@given(json_values(KEYS, max_leaves=12))
def test_any_json_body_is_a_request_or_a_400(obj: Any) -> None:
    if isinstance(obj, dict):
        obj.setdefault("model", "m")
    try:
        call = door.parse(json.dumps(obj).encode(), ())
    except ChatError as exc:
        assert exc.status == 400
    else:
        assert isinstance(call.chat, ChatRequest)
        # Whatever was accepted can be sent to any upstream dialect.
        for api in ("openai_responses", "openai_chat", "ollama_chat"):
            upstream = Provider(name="p", api=api, base_url="http://u.test")
            try:
                codec_for(api).build_request(call.chat, ROUTE, upstream)
            except ChatError as exc:
                assert exc.status == 400


# ======================================================================================
# Door: whole answers

USAGE = Usage(prompt_tokens=21, completion_tokens=9, cached_tokens=8, reasoning_tokens=4)


def parsed(**fields: object) -> Any:
    return door.parse(body(**fields), ())


def whole(resp: ChatResponse, call: Any = None) -> bytes:
    call = call or parsed(tools=[FN, NAMESPACE])
    return door.render(call, Answer(response=resp, route=ROUTE, latency_ms=3.0), CTX)


def test_whole_answer_is_an_sdk_response() -> None:
    resp = ChatResponse(
        content="Here.", finish_reason="tool_calls", usage=USAGE, thinking="Hmm.",
        tool_calls=(ToolCall(id="call_a", name="exec_command", arguments='{"cmd":"ls"}'),
                    ToolCall(id=None, name="agents__spawn", arguments="{}")),
        thinking_parts=(ThinkingPart(text="Hmm.", signature="sig=="),))
    raw = whole(resp)
    got = Response.model_validate_json(raw)
    assert (got.id, got.object, got.created_at, got.status, got.model) == (
        "resp_c0ffee", "response", 1_700_000_000, "completed", "smart")
    assert got.output_text == "Here."
    kinds = [item.type for item in got.output]
    assert kinds == ["reasoning", "message", "function_call", "function_call"]
    reasoning, _, first, second = got.output
    assert reasoning.type == "reasoning"
    assert [s.text for s in reasoning.summary] == ["Hmm."]
    assert reasoning.encrypted_content == "chatd-signature:sig=="
    assert first.type == "function_call" and second.type == "function_call"
    assert (first.call_id, first.name, first.namespace, first.arguments) == (
        "call_a", "exec_command", None, '{"cmd":"ls"}')
    assert (second.call_id, second.name, second.namespace) == (
        "call_c0ffee_1", "spawn", "agents")
    assert first.id is not None and first.id.startswith("fc_")
    assert got.usage is not None
    assert (got.usage.input_tokens, got.usage.output_tokens, got.usage.total_tokens,
            got.usage.input_tokens_details.cached_tokens,
            got.usage.output_tokens_details.reasoning_tokens) == (21, 9, 30, 8, 4)
    assert [t.type for t in got.tools] == ["function", "namespace"]
    # and the SDK's client reads it
    sdk = answering(200, raw)
    assert sdk.responses.create(model="smart", input="hi") == got


@pytest.mark.parametrize(("finish", "status", "reason"), [
    ("stop", "completed", None), ("length", "incomplete", "max_output_tokens"),
    ("content_filter", "incomplete", "content_filter")])
def test_whole_answer_status(finish: str, status: str, reason: str | None) -> None:
    got = Response.model_validate_json(whole(ChatResponse(content="x", finish_reason=finish)))
    assert got.status == status
    assert (got.incomplete_details.reason if got.incomplete_details else None) == reason
    assert got.output[0].type == "message" and got.output[0].status == status


def test_whole_answer_echoes_the_request() -> None:
    call = parsed(instructions="Be brief.", max_output_tokens=50, temperature=0.5,
                  text={"format": {"type": "json_schema", "name": "r", "schema": SCHEMA}},
                  reasoning={"effort": "low", "summary": "auto"}, metadata={"k": "v"},
                  tool_choice="required", parallel_tool_calls=False, store=True)
    got = Response.model_validate_json(whole(ChatResponse(content="{}", finish_reason="stop"),
                                             call))
    assert (got.instructions, got.max_output_tokens, got.temperature, got.tool_choice,
            got.parallel_tool_calls, got.metadata,
            got.store) == (  # type: ignore[attr-defined]  # the SDK's model lags the wire
        "Be brief.", 50, 0.5, "required", False, {"k": "v"}, False)
    assert got.reasoning is not None and got.reasoning.effort == "low"
    assert got.text is not None and got.text.format is not None
    assert got.text.format.type == "json_schema"


def test_same_dialect_whole_answer_is_the_upstreams_with_the_model_rewritten() -> None:
    _, upstream = answer(model="gpt-5.1", reasoning=THINKING, encrypted="gAAAA")
    upstream["x_unknown_top_level"] = {"kept": True}
    resp = codec.parse_response("zen", json.dumps(upstream).encode(), passthrough=True)
    out = json.loads(whole(resp))
    assert out == {**upstream, "model": "smart"}


# ======================================================================================
# Door: streams

U = Usage(prompt_tokens=9, completion_tokens=4, cached_tokens=2, reasoning_tokens=1)
SCRIPTS: list[tuple[list[Event], str]] = [
    ([TextDelta(text="Hel"), TextDelta(text='lo "wörld"\n'),
      StreamEnded(finish_reason="stop", usage=U)], "text"),
    ([ThinkingDelta(text="Let me "), ThinkingDelta(text="think."),
      ThinkingDelta(encrypted="openai_responses:rs_up:gAAAA"), TextDelta(text="42"),
      StreamEnded(finish_reason="length", usage=U)], "reasoning-then-truncated-text"),
    ([ThinkingDelta(text="Claude thinks"), ThinkingDelta(signature="EqQBCkgI"),
      TextDelta(text="Checking."),
      ToolCallDelta(index=0, id="call_a", name="exec_command", arguments=""),
      ToolCallDelta(index=0, arguments='{"cmd":'),
      ToolCallDelta(index=1, id=None, name="agents__spawn", arguments='{"k":'),
      ToolCallDelta(index=0, arguments='"ls"}'),
      ToolCallDelta(index=1, arguments="1}"),
      StreamEnded(finish_reason="tool_calls", usage=U)], "signed-thinking-interleaved-calls"),
    ([ToolCallDelta(index=0, id="call_z", name="exec_command", arguments="{}"),
      StreamEnded(finish_reason="tool_calls", usage=None)], "one-call-no-usage"),
    ([StreamEnded(finish_reason="stop", usage=Usage())], "nothing-but-the-end"),
]
SERVED = Served(route=ROUTE)


def render(events: list[Event], *, batch: int = 2, call: Any = None) -> bytes:
    stream = door.stream(call or parsed(tools=[FN, NAMESPACE]), CTX)
    out = stream.start()
    for i in range(0, len(events), batch):
        out += stream.events(events[i:i + batch], SERVED)
    return out


def decoded(raw: bytes) -> list[dict[str, Any]]:
    """The events, each checked against the SDK's event union and its event: line."""
    from chatproto import SSEDecoder

    decoder = SSEDecoder()
    out = []
    for ev in decoder.feed(raw) + decoder.feed(b""):
        obj = orjson.loads(ev.data)
        assert ev.event == obj["type"]
        EVENTS.validate_python(obj)
        out.append(obj)
    return out


@pytest.mark.parametrize("events", [s for s, _ in SCRIPTS], ids=[i for _, i in SCRIPTS])
def test_stream_events_are_sdk_events(events: list[Event]) -> None:
    got = decoded(render(events))
    assert [e["sequence_number"] for e in got] == list(range(len(got)))
    assert [e["type"] for e in got[:2]] == ["response.created", "response.in_progress"]
    end = events[-1]
    assert isinstance(end, StreamEnded)
    final = got[-1]
    status = "incomplete" if end.finish_reason == "length" else "completed"
    assert final["type"] == f"response.{status}"
    assert final["response"]["status"] == status
    added = [e["item"]["id"] for e in got if e["type"] == "response.output_item.added"]
    done = [e["item"] for e in got if e["type"] == "response.output_item.done"]
    # Codex needs output_item.done for every item (research/agents.md).
    assert sorted(added) == sorted(i["id"] for i in done)
    assert final["response"]["output"] == sorted(done, key=lambda i: added.index(i["id"]))
    if end.usage is not None:
        assert final["response"]["usage"]["input_tokens"] == end.usage.prompt_tokens
        assert final["response"]["usage"]["output_tokens_details"]["reasoning_tokens"] == (
            end.usage.reasoning_tokens or 0)
    else:
        assert final["response"]["usage"] is None


@pytest.mark.parametrize("events", [s for s, _ in SCRIPTS], ids=[i for _, i in SCRIPTS])
def test_stream_through_the_openai_sdk(events: list[Event]) -> None:
    """The SDK's stream helper assembles the answer from the events (and raises on any
    delta for an item it was not told about), the same as the events say."""
    client = answering(200, render(events), "text/event-stream")
    with client.responses.stream(model="smart", input="hi") as helper:
        seen = list(helper)
        last = seen[-1]
        # get_final_response() insists on response.completed; a truncated answer ends
        # with response.incomplete, whose response is the whole answer too.
        if last.type == "response.incomplete":
            final = last.response
        else:
            assert last.type == "response.completed"
            final = helper.get_final_response()
    assert final.output_text == "".join(e.text for e in events if isinstance(e, TextDelta))
    folded = Accumulator()
    folded.feed_all(events)
    expected = folded.response()
    calls = [(i.call_id, i.name, i.namespace, i.arguments) for i in final.output
             if i.type == "function_call"]
    assert calls == [
        (c.id or f"call_c0ffee_{n}", c.name.removeprefix("agents__"),
         "agents" if c.name.startswith("agents__") else None, c.arguments)
        for n, c in enumerate(expected.tool_calls)]
    summaries = ["".join(s.text for s in i.summary) for i in final.output
                 if i.type == "reasoning"]
    assert "".join(summaries) == (expected.thinking or "")


@pytest.mark.parametrize("events", [s for s, _ in SCRIPTS], ids=[i for _, i in SCRIPTS])
def test_stream_round_trips_through_chatds_responses_codec(events: list[Event]) -> None:
    """What the door renders, the codec reads back as the same answer, at every split."""
    raw = render(events)
    folded = Accumulator()
    folded.feed_all(events)
    expected = folded.response()
    # The wire's detail counts are required numbers: an unknown one goes out as 0.
    usage = expected.usage
    end = events[-1]
    if isinstance(end, StreamEnded) and end.usage is not None:
        expected = replace(expected, usage=replace(
            usage, cached_tokens=usage.cached_tokens or 0,
            cache_creation_tokens=usage.cache_creation_tokens or 0,
            reasoning_tokens=usage.reasoning_tokens or 0))
    names = {"agents__spawn"}
    for how, pieces in every_split(raw, stride=29):
        got_events = feed(codec.stream_parser("chatd"), pieces)
        back = Accumulator()
        back.feed_all(got_events)
        got = back.response()
        assert (got.content, got.finish_reason, got.usage, got.thinking) == (
            expected.content, expected.finish_reason, expected.usage, expected.thinking), how
        assert [(c.name, c.arguments) for c in got.tool_calls] == [
            (c.name, c.arguments) for c in expected.tool_calls], how
        assert {c.name for c in got.tool_calls} & names == {
            c.name for c in expected.tool_calls} & names


def test_stream_opaque_reasoning_goes_out_and_comes_back() -> None:
    """Another dialect's signature rides in encrypted_content and returns as itself; this
    dialect's own encrypted reasoning goes out as the upstream gave it."""
    got = decoded(render(SCRIPTS[2][0]))
    reasoning = [e["item"] for e in got if e["type"] == "response.output_item.done"
                 and e["item"]["type"] == "reasoning"]
    assert [r["encrypted_content"] for r in reasoning] == ["chatd-signature:EqQBCkgI"]
    again = door.parse(items(user("x"), reasoning[0]), ()).chat
    assert again.messages[1].parts == (ThinkingPart(text="Claude thinks",
                                                    signature="EqQBCkgI"),)
    own = decoded(render(SCRIPTS[1][0]))
    [item] = [e["item"] for e in own if e["type"] == "response.output_item.done"
              and e["item"]["type"] == "reasoning"]
    assert item["encrypted_content"] == "gAAAA"


def test_stream_ids_and_model_are_json_escaped() -> None:
    call = door.parse(json.dumps({"model": 'sm"art\n', "input": "hi"}).encode(), ())
    stream = door.stream(call, CallContext(id='x"y', created=1))
    got = decoded(stream.events([TextDelta(text="a"), StreamEnded(finish_reason="stop")],
                                SERVED))
    assert got[-1]["response"]["model"] == 'sm"art\n'
    assert got[-1]["response"]["id"] == 'resp_x"y'


def test_stream_failure_is_response_failed_after_what_was_sent() -> None:
    stream = door.stream(parsed(), CTX)
    head = stream.events([TextDelta(text="par")], SERVED)
    tail = stream.error(ChatError("upstream_error", "backend died", provider="zen"))
    got = decoded(head + tail)
    assert got[-1]["type"] == "response.failed"
    assert got[-1]["sequence_number"] == len(got) - 1
    failed = got[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "server_error", "message": "backend died",
                               "type": "upstream_error", "provider": "zen"}
    # the open message is not claimed done
    assert failed["output"] == []
    with pytest.raises(RuntimeError):
        stream.error(ChatError("upstream_error", "again"))
    with pytest.raises(RuntimeError):
        stream.events([TextDelta(text="x")], SERVED)


@pytest.mark.parametrize(("retry_after", "said"), [(None, "2s"), (0.2, "1s"), (30.0, "30s")])
def test_mid_stream_rate_limit_names_its_wait(retry_after: float | None, said: str) -> None:
    """Codex reads the wait of a mid-stream rate limit from the message (codex-rs
    ``sse/responses.rs`` ``try_parse_retry_after``), never from a header."""
    stream = door.stream(parsed(), CTX)
    stream.events([TextDelta(text="a")], SERVED)
    got = decoded(stream.error(ChatError("rate_limited", "Slow down.", retry_after=retry_after)))
    error = got[-1]["response"]["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert error["message"] == f"Slow down. Please try again in {said}."


def test_stream_refuses_a_non_event() -> None:
    stream = door.stream(parsed(), CTX)
    with pytest.raises(TypeError):
        stream.events([object()], SERVED)  # type: ignore[list-item]


# ======================================================================================
# Door: errors


def sdk(respond: Callable[[httpx2.Request], httpx2.Response]) -> openai.OpenAI:
    return openai.OpenAI(
        api_key="test", base_url="http://chatd.test/v1", max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(respond)))


def answering(status: int, content: bytes, content_type: str = "application/json"
              ) -> openai.OpenAI:
    return sdk(lambda request: httpx2.Response(
        status, content=content, headers={"content-type": content_type}))


EXCEPTIONS = {400: openai.BadRequestError, 401: openai.AuthenticationError,
              404: openai.NotFoundError, 405: openai.APIStatusError,
              413: openai.APIStatusError, 429: openai.RateLimitError,
              502: openai.InternalServerError, 503: openai.InternalServerError,
              504: openai.InternalServerError, 408: openai.APIStatusError,
              500: openai.InternalServerError}


@pytest.mark.parametrize("kind", sorted(ERROR_STATUS))
def test_every_error_is_the_sdks_exception(kind: str) -> None:
    exc = ChatError(kind, f"something {kind}", provider="zen")
    client = answering(exc.status, render_error(exc))
    with pytest.raises(openai.APIStatusError) as info:
        client.responses.create(model="smart", input="hi")
    assert type(info.value) is EXCEPTIONS[exc.status]
    assert info.value.status_code == exc.status
    assert info.value.code == ("model_not_found" if kind == "provider_not_registered" else kind)
    assert isinstance(info.value.body, dict)
    assert info.value.body["message"] == f"something {kind}"


@pytest.mark.parametrize(("exc", "code"), [
    (ChatError("provider_not_registered", "no key", provider="kimi"), "model_not_found"),
    (ChatError("upstream_error", "model 'x' not found", provider="ollama",
               upstream_status=404), "model_not_found"),
    (ChatError("upstream_error", "boom", provider="ollama", upstream_status=500),
     "upstream_error"),
    (ChatError("not_found", "no route /v1/responses/x"), "not_found"),
])
def test_a_route_that_cannot_exist_is_model_not_found(exc: ChatError, code: str) -> None:
    """Codex retries a 404 five times unless ``code`` is ``model_not_found``."""
    error = json.loads(render_error(exc))["error"]
    assert error["code"] == code
    assert error["message"] == exc.message


# ======================================================================================
# Codec: requests


def built(request: ChatRequest) -> dict[str, Any]:
    http = codec.build_request(request, ROUTE, PROVIDER)
    assert (http.method, http.url) == ("POST", "https://zen.test/v1/responses")
    return dict(orjson.loads(http.body))


STATELESS = {"store": False, "include": ["reasoning.encrypted_content"]}
CANON = ChatRequest(model="opencode/gpt-5.1", messages=(Message(role="user", content="hi"),))

BODIES: list[tuple[ChatRequest, dict[str, Any]]] = [
    (CANON, {"model": "gpt-5.1", "input": [{"type": "message", "role": "user",
                                            "content": "hi"}], **STATELESS}),
    (replace(CANON, stream=True, max_tokens=7, temperature=0.1, top_p=0.9, stop=("x",),
             seed=3, format="json", think="max",
             options={"parallel_tool_calls": False, "prompt_cache_key": "k",
                      "top_k": 40, "verbosity": "low"}),
     {"model": "gpt-5.1", "input": [{"type": "message", "role": "user", "content": "hi"}],
      "max_output_tokens": 7, "temperature": 0.1, "top_p": 0.9,
      "parallel_tool_calls": False, "prompt_cache_key": "k",
      "reasoning": {"effort": "xhigh", "summary": "auto"},
      "text": {"format": {"type": "json_object"}, "verbosity": "low"}, **STATELESS,
      "stream": True}),
    (replace(CANON, think=False, format=SCHEMA),
     {"model": "gpt-5.1", "input": [{"type": "message", "role": "user", "content": "hi"}],
      "reasoning": {"effort": "none"},
      "text": {"format": {"type": "json_schema", "name": "response", "schema": SCHEMA}},
      **STATELESS}),
    (replace(CANON, format=SCHEMA, options={"format_name": "r", "format_strict": True}),
     {"model": "gpt-5.1", "input": [{"type": "message", "role": "user", "content": "hi"}],
      "text": {"format": {"type": "json_schema", "name": "r", "schema": SCHEMA,
                          "strict": True}},
      **STATELESS}),
    (replace(CANON, think=True, format={"type": "json_schema", "json_schema": {
        "name": "r", "schema": SCHEMA, "strict": True}}),
     {"model": "gpt-5.1", "input": [{"type": "message", "role": "user", "content": "hi"}],
      "reasoning": {"summary": "auto"},
      "text": {"format": {"type": "json_schema", "name": "r", "schema": SCHEMA,
                          "strict": True}}, **STATELESS}),
    # a whole tool conversation from another dialect, ids kept or derived
    (replace(CANON, messages=(
        Message(role="system", content="Be brief."),
        Message(role="user", parts=(TextPart(text="look"), ImagePart(data=PNG),
                                    ImagePart(url="https://img.test/x.jpg"))),
        Message(role="assistant", parts=(
            ThinkingPart(text="mine", encrypted="openai_responses:rs_9:gAAAA"),
            ThinkingPart(text="Claude's", signature="sig"),
            TextPart(text="Let me check."),
            ToolCall(id="call_1", name="get", arguments='{"c":"P"}'),
            ToolCall(id=None, name="put", arguments="{}"))),
        Message(role="tool", tool_call_id="call_1", content="sunny"),
        Message(role="tool", content="done"),
        Message(role="assistant", content="Both done."),
     ), tools=(FN_CHAT, {"type": "function", "function": {"name": "put"}}),
        tool_choice={"type": "function", "function": {"name": "get"}}),
     {"model": "gpt-5.1", "input": [
         {"type": "message", "role": "system", "content": "Be brief."},
         {"type": "message", "role": "user", "content": [
             {"type": "input_text", "text": "look"},
             {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}",
              "detail": "auto"},
             {"type": "input_image", "image_url": "https://img.test/x.jpg",
              "detail": "auto"}]},
         {"type": "reasoning", "id": "rs_9", "summary": [{"type": "summary_text",
                                                          "text": "mine"}],
          "encrypted_content": "gAAAA"},
         {"type": "message", "role": "assistant", "content": "Let me check."},
         {"type": "function_call", "call_id": "call_1", "name": "get",
          "arguments": '{"c":"P"}'},
         {"type": "function_call", "call_id": "call_2_4", "name": "put", "arguments": "{}"},
         {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
         {"type": "function_call_output", "call_id": "call_2_4", "output": "done"},
         {"type": "message", "role": "assistant", "content": "Both done."}],
      "tools": [{"type": "function", "name": "exec_command", "description": "Run a command",
                 "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}},
                 "strict": False},
                {"type": "function", "name": "put",
                 "parameters": {"type": "object", "properties": {}}, "strict": False}],
      "tool_choice": {"type": "function", "name": "get"}, **STATELESS}),
]


@pytest.mark.parametrize(("request_", "expected"), BODIES)
def test_request_body_from_canonical_fields(request_: ChatRequest,
                                            expected: dict[str, Any]) -> None:
    assert built(request_) == expected


def test_request_headers() -> None:
    http = codec.build_request(replace(CANON, stream=True), ROUTE, replace(
        PROVIDER, headers=(("User-Agent", "chatd-test"), ("accept", "*/*"))))
    assert http.stream
    assert dict(http.headers) == {"Content-Type": "application/json",
                                  "Authorization": "Bearer sk-zen",
                                  "User-Agent": "chatd-test", "accept": "*/*"}
    assert "sk-zen" not in repr(http)


def test_tool_result_naming_no_call_is_400() -> None:
    request = replace(CANON, messages=(Message(role="tool", content="x"),))
    with pytest.raises(ChatError) as info:
        built(request)
    assert info.value.status == 400


def test_same_dialect_request_is_the_clients_body_with_model_and_stream_rewritten() -> None:
    client: dict[str, Any] = {"model": "smart", "input": [
        {"type": "message", "id": "msg_1", "role": "developer", "content": [
            {"type": "input_text", "text": "rules"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAA"},
        {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "spawn",
         "namespace": "agents", "arguments": "{}", "status": "completed"},
        {"type": "function_call_output", "call_id": "c1", "output": "ok"}],
        "tools": [FN, NAMESPACE, {"type": "web_search", "external_web_access": True},
                  {"type": "custom", "name": "apply_patch", "format": {"type": "grammar"}}],
        "store": False, "include": ["reasoning.encrypted_content"],
        "client_metadata": {"turn_id": "t"}, "stream": True,
        "stream_options": {"include_obfuscation": False}}
    call = door.parse(json.dumps({**client, "tools": client["tools"][:3]}).encode(), ())
    assert built(call.chat) == {**client, "tools": client["tools"][:3], "model": "gpt-5.1"}
    whole_ = replace(call.chat, stream=False)
    expected = {**client, "tools": client["tools"][:3], "model": "gpt-5.1", "stream": False}
    del expected["stream_options"]
    assert built(whole_) == expected
    # Another upstream dialect gets the translation, never the raw body.
    other = codec_for("openai_chat").build_request(
        call.chat, ROUTE, Provider(name="p", api="openai_chat", base_url="http://u.test"))
    sent = orjson.loads(other.body)
    assert "input" not in sent and "client_metadata" not in sent
    assert [t["function"]["name"] for t in sent["tools"]] == ["exec_command", "agents__spawn"]


# ======================================================================================
# Codec: whole answers


def test_whole_answer_parsed() -> None:
    _, obj = answer(model="gpt-5.1", text="Hi there", reasoning=THINKING, encrypted="gAAAA",
                    call=("spawn", '{"n":1}', "agents"))
    resp = codec.parse_response("zen", json.dumps(obj).encode())
    assert resp == ChatResponse(
        content="Hi there", finish_reason="tool_calls",
        usage=Usage(prompt_tokens=21, completion_tokens=9, cached_tokens=8,
                    cache_creation_tokens=0, reasoning_tokens=4),
        thinking=THINKING,
        tool_calls=(ToolCall(id="call_fake1", name="agents__spawn", arguments='{"n":1}'),),
        thinking_parts=(ThinkingPart(text=THINKING,
                                     encrypted="openai_responses:rs_fake1:gAAAA"),))
    kept = codec.parse_response("zen", json.dumps(obj).encode(), passthrough=True)
    assert (kept.raw, kept.dialect) == (obj, API)


@pytest.mark.parametrize(("status", "details", "finish"), [
    ("incomplete", {"reason": "max_output_tokens"}, "length"),
    ("incomplete", {"reason": "content_filter"}, "content_filter"),
    ("completed", None, "stop")])
def test_whole_answer_status_parsed(status: str, details: object, finish: str) -> None:
    obj = {"id": "r", "status": status, "incomplete_details": details, "output": [
        {"type": "message", "content": [{"type": "refusal", "refusal": "no"}]}]}
    resp = codec.parse_response("zen", json.dumps(obj).encode())
    assert (resp.content, resp.finish_reason, resp.usage) == ("no", finish, Usage())


@pytest.mark.parametrize(("raw", "kind", "fragment"), [
    (b"{", "bad_upstream_response", "malformed JSON"),
    (b"[]", "bad_upstream_response", "not an object"),
    (b'{"status": "completed"}', "bad_upstream_response", "output list"),
    (b'{"output": [1]}', "bad_upstream_response", "not an object"),
    (b'{"output": [{"type": "function_call", "arguments": "{}"}]}', "bad_upstream_response",
     "without a name"),
    (b'{"output": [], "usage": 5}', "bad_upstream_response", "usage"),
    (b'{"status": "failed", "error": {"code": "rate_limit_exceeded", "message": "slow"}}',
     "rate_limited", "slow"),
    (b'{"status": "failed", "error": {"code": "invalid_prompt", "message": "bad"}}',
     "upstream_rejected", "bad"),
    (b'{"status": "failed", "error": null}', "upstream_error", "no code"),
])
def test_whole_answer_failures(raw: bytes, kind: str, fragment: str) -> None:
    with pytest.raises(ChatError) as info:
        codec.parse_response("zen", raw)
    assert (info.value.type, info.value.provider) == (kind, "zen")
    assert fragment in info.value.message


@pytest.mark.parametrize(("status", "body_", "kind", "message"), [
    (404, b'{"error": {"message": "The model `x` does not exist", "type": '
          b'"invalid_request_error", "code": "model_not_found"}}', "upstream_error",
     "The model `x` does not exist"),
    (429, b'{"error": {"message": "Rate limit reached", "code": "rate_limit_exceeded"}}',
     "rate_limited", "Rate limit reached"),
    (401, b'{"type": "error", "error": {"type": "ModelError", "message": "no such model"}}',
     "upstream_error", "ModelError: no such model"),
])
def test_errors_parsed(status: int, body_: bytes, kind: str, message: str) -> None:
    exc = codec.parse_error("zen", status, [("retry-after", "7")], body_, now=0.0)
    assert (exc.type, exc.message, exc.upstream_status) == (kind, message, status)
    assert exc.retry_after == (7.0 if status == 429 else None)


# ======================================================================================
# Codec: streams


def text_events(text: str) -> list[Event]:
    return [TextDelta(text=w) for w in words(text)]


def thinking_events(text: str) -> list[Event]:
    return [ThinkingDelta(text=w) for w in words(text)]


END = StreamEnded(finish_reason="stop", usage=Usage(
    prompt_tokens=21, completion_tokens=9, cached_tokens=8, cache_creation_tokens=0,
    reasoning_tokens=4))
CALL_ARGS = '{"cmd": "echo hi"}'

STREAMS: list[tuple[bytes, list[Event], str | None, str]] = [
    (sse(answer(model="m")[0]), [*text_events(REPLY), END], None, "text"),
    (sse(answer(model="m", text=None, reasoning=THINKING, encrypted="gAAAA",
                call=("spawn", CALL_ARGS, "agents"))[0]),
     [*thinking_events(THINKING), ThinkingDelta(encrypted="openai_responses:rs_fake1:gAAAA"),
      ToolCallDelta(index=0, id="call_fake1", name="agents__spawn", arguments=""),
      ToolCallDelta(index=0, arguments=CALL_ARGS[:6]),
      ToolCallDelta(index=0, arguments=CALL_ARGS[6:12]),
      ToolCallDelta(index=0, arguments=CALL_ARGS[12:]),
      replace(END, finish_reason="tool_calls")], None, "reasoning-and-namespaced-call"),
    (sse(answer(model="m", text="cut short", status="incomplete")[0]),
     [*text_events("cut short"), replace(END, finish_reason="length")], None, "incomplete"),
    (sse(answer(model="m", fail_after=2)[0]), text_events(REPLY)[:2], "upstream_error",
     "failed-after-events"),
    (sse(answer(model="m")[0][:6]), text_events(REPLY)[:2], "bad_upstream_response",
     "cut-before-completed"),
    (sse([*answer(model="m")[0][:5],
          {"type": "error", "code": "rate_limit_exceeded", "message": "Slow down",
           "param": None, "sequence_number": 5}]),
     text_events(REPLY)[:1], "rate_limited", "error-event-after-events"),
    (sse([*answer(model="m")[0][:5],
          {"type": "error", "error": {"type": "server_error", "message": "boom"}}]),
     text_events(REPLY)[:1], "upstream_error", "nested-error-event"),
    (sse(answer(model="m")[0][:5]) + b"data: {not json\n\n", text_events(REPLY)[:1],
     "bad_upstream_response", "bad-json-after-events"),
    (sse(answer(model="m")[0][:5]) + b"data: [1]\n\n", text_events(REPLY)[:1],
     "bad_upstream_response", "not-an-object"),
    (sse([*answer(model="m")[0][:3],
          {"type": "response.function_call_arguments.delta", "item_id": "nope",
           "output_index": 0, "delta": "{}"}]), [], "bad_upstream_response",
     "arguments-for-an-unopened-call"),
    (sse([*answer(model="m")[0][:4], {"type": "response.output_text.delta", "delta": 5}]),
     [],
     "bad_upstream_response", "delta-not-a-string"),
    # a server that sends whole items only (no deltas), and one without event: lines
    (sse([e for e in answer(model="m", reasoning="R", call=("f", "{}", None))[0]
          if not e["type"].endswith(".delta")]),
     [ThinkingDelta(text="R"), TextDelta(text=REPLY),
      ToolCallDelta(index=0, id="call_fake1", name="f", arguments=""),
      ToolCallDelta(index=0, arguments="{}"), replace(END, finish_reason="tool_calls")],
     None, "whole-items-only"),
    (b"".join(b"data: " + json.dumps(e).encode() + b"\n\n"
              for e in answer(model="m", text="a b")[0]),
     [*text_events("a b"), END], None, "no-event-lines"),
]


@pytest.mark.parametrize(("raw", "expected", "error"),
                         [s[:3] for s in STREAMS], ids=[s[3] for s in STREAMS])
def test_stream_parsed_at_every_split(raw: bytes, expected: list[Event],
                                      error: str | None) -> None:
    for how, pieces in every_split(raw, stride=3):
        got, exc = outcome(codec.stream_parser("zen"), pieces)
        assert got == expected, how
        assert (exc.type if exc else None) == error, how
        if exc is not None:
            assert exc.provider == "zen"


@given(cuts())
def test_stream_parsed_at_random_cuts(points: list[int]) -> None:
    raw, expected, _, _ = STREAMS[1]
    assert feed(codec.stream_parser("zen"), cut_at(raw, points)) == expected


def test_stream_failure_is_sticky_and_feeding_after_the_end_is_a_bug() -> None:
    parser = codec.stream_parser("zen")
    with pytest.raises(ChatError):
        parser.feed(b"data: {not json\n\n")
    with pytest.raises(ChatError):
        parser.feed(b"")
    done = codec.stream_parser("zen")
    feed(done, [sse(answer(model="m")[0])])
    with pytest.raises(RuntimeError):
        done.feed(b"x")


def test_what_follows_the_final_event_is_dropped_unread() -> None:
    raw = sse(answer(model="m", text="a")[0]) + b"data: {not json\n\ndata: [1]\n\n"
    assert feed(codec.stream_parser("zen"), [raw]) == [TextDelta(text="a"), END]


def test_passthrough_emits_each_upstream_event_before_its_own() -> None:
    events, _ = answer(model="gpt-5.1", text="a b", ping=True)
    got = feed(codec.stream_parser("zen", passthrough=True), [sse(events)])
    raws = [e for e in got if isinstance(e, RawEvent)]
    # every event but the ping after response.completed
    assert [r.data for r in raws] == events[:-1]
    assert all(r.dialect == API and r.name == r.data["type"] for r in raws)  # type: ignore[index]
    assert [e for e in got if not isinstance(e, RawEvent)] == [*text_events("a b"), END]
    index = got.index(TextDelta(text="a"))
    assert isinstance(got[index - 1], RawEvent)


# ======================================================================================
# The same dialect, end to end in the core


@pytest.mark.parametrize("fail", [False, True], ids=["completed", "failed"])
def test_same_dialect_stream_is_relayed_with_only_the_model_rewritten(fail: bool) -> None:
    events, _ = answer(model="gpt-5.1", reasoning=THINKING, encrypted="gAAAA",
                       fail_after=2 if fail else None)
    parser = codec.stream_parser("zen", passthrough=True)
    stream = door.stream(parsed(), CTX)
    out = stream.start()
    error: ChatError | None = None
    try:
        for chunk in (sse(events), b""):
            batch = parser.feed(chunk)
            if batch:
                out += stream.events(batch, SERVED)
    except ChatError as exc:
        error = exc
        out += stream.error(exc)
    relayed = decoded(out)
    upstream = [e for e in events if e["type"] != "ping"]
    for event in upstream:
        if "response" in event:
            event["response"] = {**event["response"], "model": "smart"}
    assert relayed == upstream
    assert (error is not None) is fail
    # message items keep the field chatd does not know
    assert any(e.get("item", {}).get("x_fake") == "kept" for e in relayed)


def test_same_dialect_failure_of_chatds_own_continues_the_sequence() -> None:
    events, _ = answer(model="gpt-5.1")
    stream = door.stream(parsed(), CTX)
    parser = codec.stream_parser("zen", passthrough=True)
    out = stream.events(parser.feed(sse(events[:5])), SERVED)
    out += stream.error(ChatError("upstream_timeout", "no event for 120 s"))
    relayed = decoded(out)
    assert [e["sequence_number"] for e in relayed] == list(range(6))
    assert relayed[-1]["type"] == "response.failed"


# ======================================================================================
# Registration


def test_codec_and_door_are_registered() -> None:
    assert codec_for(API) is codec
    assert (door.name, door.api, door.content_type, door.stream_content_type) == (
        "responses", API, b"application/json", b"text/event-stream")


@given(st.text(max_size=30))
def test_flattened_names_map_back(name: str) -> None:
    call = door.parse(body(tools=[{"type": "namespace", "name": "ns", "description": "d",
                                   "tools": [{"type": "function", "name": name or "x"}]}]),
                      ())
    got = decoded(door.stream(call, CTX).events([
        ToolCallDelta(index=0, id="c", name=f"ns__{name or 'x'}", arguments="{}"),
        StreamEnded(finish_reason="tool_calls")], SERVED))
    item = got[-1]["response"]["output"][0]
    assert (item["name"], item["namespace"]) == (name or "x", "ns")


#: Reasoning items of a Responses client's ``input``, and whether the same dialect sends
#: them on: the upstream's own go as they came; what chatd made from another dialect's
#: thinking does not (the upstream could neither decrypt nor resolve it).
MADE_HERE = [
    ({"type": "reasoning", "id": "rs_c", "summary": [],
      "encrypted_content": "chatd-signature:EqQBCgIYAhIM-anthropic"}, False),
    ({"type": "reasoning", "id": "rs_c", "summary": [],
      "encrypted_content": "chatd-encrypted:redacted"}, False),
    ({"type": "reasoning", "id": f"rs_{'a1' * 16}_0",
      "summary": [{"type": "summary_text", "text": "plain thinking"}]}, False),
    ({"type": "reasoning", "id": "rs_0a1b2c3d", "summary": [], "encrypted_content": "gAAA"},
     True),
    ({"type": "reasoning", "id": f"rs_{'a1' * 16}_0x", "summary": []}, True),
    ({"type": "message", "role": "assistant",
      "content": "chatd-signature:not reasoning"}, True),
]


@pytest.mark.parametrize(("item", "kept"), MADE_HERE)
def test_same_dialect_request_leaves_out_the_reasoning_chatd_made(
        item: dict[str, Any], kept: bool) -> None:
    client = {"model": "smart", "input": [
        {"role": "user", "content": "hi"}, item, {"role": "user", "content": "again"}]}
    call = door.parse(json.dumps(client).encode(), ())
    sent = built(call.chat)["input"]
    assert sent == ([client["input"][0], item, client["input"][2]] if kept
                    else [client["input"][0], client["input"][2]])


@pytest.mark.anyio
async def test_chatd_made_reasoning_items_are_not_sent_to_an_openai_responses_upstream(
        tmp_path: Path) -> None:
    """Codex on a Claude model gets reasoning items whose ``encrypted_content`` chatd made
    (``chatd-signature:<Anthropic signature>``, openai_responses.py ``_SIGNATURE``). When
    the session moves to an OpenAI Responses model, the Responses-to-Responses path sends
    the body as the client sent it, and OpenAI cannot decrypt chatd's blob: a 400. chatd
    must drop (or turn into plain text) the reasoning it encoded for another upstream."""
    response = {"id": "resp_1", "object": "response", "created_at": 1,
                "status": "completed", "model": "g", "output": [
                    {"id": "msg_1", "type": "message", "status": "completed",
                     "role": "assistant", "content": [
                         {"type": "output_text", "text": "ok", "annotations": []}]}],
                "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}}
    async with canned.lab(tmp_path) as s, s.http() as client:
        s.up.answers["g"] = canned.whole(response)
        r = await client.post("/v1/responses", json={
            "model": "rsp/g", "input": [
                {"role": "user", "content": "hi"},
                {"type": "reasoning", "id": "rs_c", "summary": [],
                 "encrypted_content": "chatd-signature:EqQBCgIYAhIM-anthropic"},
                {"type": "message", "role": "assistant",
                 "content": [{"type": "output_text", "text": "hello"}]},
                {"role": "user", "content": "again"}]})
        sent = s.up.last()
    assert r.status_code == 200, r.text
    blobs = [i.get("encrypted_content") or "" for i in sent["input"]
             if isinstance(i, dict) and i.get("type") == "reasoning"]
    assert not [b for b in blobs if b.startswith("chatd-")], sent["input"]
