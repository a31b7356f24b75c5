"""SPEC §3/§4: the native request body -> ChatRequest, or a 400 naming the field."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatproto import ChatError, ChatRequest, Message, ToolCall
from chatproto._request import (
    parse_chat_request,
    parse_messages,
    parse_stop,
    parse_think,
)

USER = {"role": "user", "content": "hi"}


def body(**fields: object) -> bytes:
    obj: dict[str, object] = {"model": "llama3", "messages": [USER]}
    obj.update(fields)
    return json.dumps(obj).encode()


def without(key: str) -> bytes:
    obj: dict[str, object] = {"model": "llama3", "messages": [USER]}
    del obj[key]
    return json.dumps(obj).encode()


def msgs(*messages: object) -> bytes:
    return body(messages=list(messages))


def _nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = {"a": value}
    return value


BAD = [
    # the body itself
    (b"", "body is empty", "empty-body"),
    (b"  \n", "body is empty", "blank-body"),
    (b"{", "not valid JSON", "truncated-json"),
    (b"{'model': 'x'}", "not valid JSON", "single-quotes"),
    (b"\xff\xfe", "not valid JSON", "not-utf8"),
    (b"NaN", "not valid JSON", "nan"),
    (b"[1]", "must be a JSON object, not an array", "array-body"),
    (b'"x"', "must be a JSON object, not a string", "string-body"),
    (b"null", "must be a JSON object, not null", "null-body"),
    (b"3", "must be a JSON object, not a number", "number-body"),
    (b"\xef\xbb\xbf{}", "not valid JSON", "utf8-bom"),
    (b'{"model": "m", "messages": [{"role": "user", "content": ""}], "max_tokens": 1'
     + b"0" * 30 + b"}", "max_tokens must be an integer", "huge-int"),
    (b"[" * 5000 + b"]" * 5000, "not valid JSON", "deep-nesting"),
    # model
    (without("model"), "model is required", "model-missing"),
    (body(model=None), "model is required", "model-null"),
    (body(model=3), "model must be a string, not a number", "model-int"),
    (body(model=["x"]), "model must be a string, not an array", "model-list"),
    (body(model=False), "model must be a string, not a boolean", "model-bool"),
    # messages
    (without("messages"), "messages is required", "messages-missing"),
    (body(messages=None), "messages is required", "messages-null"),
    (body(messages={}), "messages must be an array", "messages-object"),
    (body(messages="hi"), "messages must be an array", "messages-string"),
    (body(messages=[]), "messages must not be empty", "messages-empty"),
    (msgs(USER, "hi"), "messages[1] must be an object", "message-string"),
    (msgs(USER, USER, {"role": "robot", "content": "x"}), "messages[2].role must be one of",
     "role-unknown"),
    (msgs({"content": "x"}), "messages[0].role must be one of", "role-missing"),
    (msgs({"role": "User", "content": "x"}), "messages[0].role must be one of", "role-case"),
    (msgs({"role": 1, "content": "x"}), "messages[0].role", "role-int"),
    (msgs({"role": "user"}), "messages[0].content is required", "content-missing"),
    (msgs({"role": "user", "content": None}), "messages[0].content is required", "content-null"),
    (msgs({"role": "assistant", "content": None}), "messages[0].content is required",
     "assistant-null-content-no-tools"),
    (msgs({"role": "user", "content": 3}), "messages[0].content must be a string",
     "content-int"),
    (msgs({"role": "user", "content": [{"type": "text", "text": "x"}]}),
     "messages[0].content must be a string", "content-parts"),
    (msgs({"role": "user", "content": "x", "images": "abc"}), "messages[0].images",
     "images-string"),
    (msgs({"role": "user", "content": "x", "images": [1]}), "messages[0].images",
     "images-int"),
    (msgs({"role": "tool", "content": "x", "tool_call_id": 5}), "messages[0].tool_call_id",
     "tool-call-id-int"),
    (msgs({"role": "tool", "content": "x", "name": 5}), "messages[0].name", "name-int"),
    (msgs({"role": "assistant", "content": "x", "thinking": 5}), "messages[0].thinking",
     "thinking-int"),
    # tool calls on messages
    (msgs({"role": "user", "content": "x",
           "tool_calls": [{"function": {"name": "f"}}]}),
     "messages[0].tool_calls is only allowed on assistant", "tool-calls-on-user"),
    (msgs({"role": "assistant", "tool_calls": {}}), "messages[0].tool_calls must be an array",
     "tool-calls-object"),
    (msgs({"role": "assistant", "tool_calls": ["f"]}), "messages[0].tool_calls[0] must be an",
     "tool-call-string"),
    (msgs({"role": "assistant", "tool_calls": [{"type": "function"}]}),
     "messages[0].tool_calls[0].function must be an object", "tool-call-no-function"),
    (msgs({"role": "assistant", "tool_calls": [{"type": "code", "function": {"name": "f"}}]}),
     "messages[0].tool_calls[0].type", "tool-call-bad-type"),
    (msgs({"role": "assistant", "tool_calls": [{"function": {"arguments": "{}"}}]}),
     "messages[0].tool_calls[0].function.name", "tool-call-no-name"),
    (msgs({"role": "assistant", "tool_calls": [{"function": {"name": ""}}]}),
     "messages[0].tool_calls[0].function.name", "tool-call-empty-name"),
    (msgs({"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": 1}}]}),
     "messages[0].tool_calls[0].function.arguments", "tool-call-args-int"),
    (msgs({"role": "assistant", "tool_calls": [{"id": 1, "function": {"name": "f"}}]}),
     "messages[0].tool_calls[0].id", "tool-call-id-int"),
    # options
    (body(max_tokens=0), "max_tokens must be a positive integer", "max-tokens-zero"),
    (body(max_tokens=-5), "max_tokens must be a positive integer", "max-tokens-negative"),
    (body(max_tokens=1.5), "max_tokens must be an integer", "max-tokens-float"),
    (body(max_tokens=10.0), "max_tokens must be an integer", "max-tokens-float-whole"),
    (body(max_tokens=True), "max_tokens must be an integer, not a boolean", "max-tokens-bool"),
    (body(max_tokens="10"), "max_tokens must be an integer", "max-tokens-string"),
    (body(temperature="0.2"), "temperature must be a number", "temperature-string"),
    (body(temperature=True), "temperature must be a number, not a boolean", "temperature-bool"),
    (body(top_p=[1]), "top_p must be a number", "top-p-list"),
    (body(top_p=False), "top_p must be a number", "top-p-bool"),
    (body(stop=3), "stop must be a string or an array of strings", "stop-int"),
    (body(stop=["a", 3]), "stop[1] must be a string", "stop-item-int"),
    (body(stop={"a": 1}), "stop must be a string or an array", "stop-object"),
    (body(seed=1.5), "seed must be an integer", "seed-float"),
    (body(seed=True), "seed must be an integer", "seed-bool"),
    (body(seed="1"), "seed must be an integer", "seed-string"),
    (body(format="xml"), 'format must be "json"', "format-string"),
    (body(format=["json"]), 'format must be "json"', "format-list"),
    (body(format=True), 'format must be "json"', "format-bool"),
    (body(think="extreme"), "think must be true, false or one of", "think-level"),
    (body(think="true"), "think must be true, false or one of", "think-string-true"),
    (body(think=1), "think must be true, false or one of", "think-int"),
    (body(stream="yes"), "stream must be true or false", "stream-string"),
    (body(stream=1), "stream must be true or false", "stream-int"),
    (body(tools={}), "tools must be an array", "tools-object"),
    (body(tools=["f"]), "tools[0] must be an object", "tools-item-string"),
    (body(tool_choice=1), "tool_choice must be a string or an object", "tool-choice-int"),
    (body(tool_choice=["auto"]), "tool_choice must be a string or an object", "tool-choice-list"),
    # orjson reads 1,024 levels but writes only 254: arguments re-encoded here must fail
    # as a 400, not a TypeError (that was a 500).
    (body(messages=[{"role": "assistant", "content": None, "tool_calls": [
        {"function": {"name": "f", "arguments": _nested(300)}}]}]),
     "messages[0].tool_calls[0].function.arguments nests too deeply", "tool-arguments-nested-300"),
]


@pytest.mark.parametrize(("raw", "fragment"), [c[:2] for c in BAD], ids=[c[2] for c in BAD])
def test_bad_bodies_are_400_naming_the_field(raw: bytes, fragment: str) -> None:
    with pytest.raises(ChatError) as info:
        parse_chat_request(raw)
    err = info.value
    assert (err.type, err.status) == ("invalid_request", 400)
    assert fragment in err.message
    assert err.to_dict() == {"type": "invalid_request", "message": err.message}


SPEC_EXAMPLE = b"""{"model": "ollama/qwen3:4b",
 "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
 "max_tokens": 10, "temperature": 0.2, "top_p": 0.9, "stop": ["\\n"], "seed": 1,
 "format": "json", "think": false, "stream": false}"""

GOOD = [
    (
        body(),
        ChatRequest(model="llama3", messages=(Message(role="user", content="hi"),)),
        "minimal",
    ),
    (
        SPEC_EXAMPLE,
        ChatRequest(
            model="ollama/qwen3:4b",
            messages=(
                Message(role="system", content="be brief"),
                Message(role="user", content="hi"),
            ),
            max_tokens=10, temperature=0.2, top_p=0.9, stop=("\n",), seed=1,
            format="json", think=False, stream=False,
        ),
        "spec-example",
    ),
    (
        # model emptiness is resolve()'s rule, not the parser's
        body(model=""),
        ChatRequest(model="", messages=(Message(role="user", content="hi"),)),
        "empty-model-left-to-resolve",
    ),
    (
        body(temperature=1, top_p=0, seed=-3, max_tokens=1, stop="END", stream=True,
             think="high", format={"type": "object"}),
        ChatRequest(
            model="llama3", messages=(Message(role="user", content="hi"),),
            temperature=1.0, top_p=0.0, seed=-3, max_tokens=1, stop=("END",), stream=True,
            think="high", format={"type": "object"},
        ),
        "int-numbers-string-stop-think-level-schema",
    ),
    (
        body(max_tokens=None, temperature=None, top_p=None, stop=None, seed=None,
             format=None, think=None, stream=None, tools=None, tool_choice=None),
        ChatRequest(model="llama3", messages=(Message(role="user", content="hi"),)),
        "nulls-mean-unset",
    ),
    (
        body(user="abc", n=1, keep_alive="5m", options={"num_ctx": 8}),
        ChatRequest(model="llama3", messages=(Message(role="user", content="hi"),)),
        "unknown-fields-ignored",
    ),
    (
        body(stop=[], think=True),
        ChatRequest(model="llama3", messages=(Message(role="user", content="hi"),), think=True),
        "empty-stop-list",
    ),
    (
        body(
            tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
            tool_choice={"type": "function", "function": {"name": "f"}},
        ),
        ChatRequest(
            model="llama3", messages=(Message(role="user", content="hi"),),
            tools=({"type": "function", "function": {"name": "f", "parameters": {}}},),
            tool_choice={"type": "function", "function": {"name": "f"}},
        ),
        "tools-passed-through",
    ),
    (
        msgs(
            USER,
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get", "arguments": "{\"city\": \"Oslo\"}"}},
                {"function": {"name": "now", "arguments": {"tz": "UTC", "n": [1, 2]}}},
                {"function": {"name": "noargs"}},
            ]},
            {"role": "tool", "content": "12C", "tool_call_id": "call_1", "name": "get"},
            {"role": "tool", "content": "noon", "tool_name": "now"},
            {"role": "assistant", "content": "ok", "thinking": "hmm"},
            {"role": "user", "content": "look", "images": ["aGk="]},
        ),
        ChatRequest(
            model="llama3",
            messages=(
                Message(role="user", content="hi"),
                Message(role="assistant", content="", tool_calls=(
                    ToolCall(id="call_1", name="get", arguments='{"city": "Oslo"}'),
                    ToolCall(id=None, name="now", arguments='{"tz":"UTC","n":[1,2]}'),
                    ToolCall(id=None, name="noargs", arguments="{}"),
                )),
                Message(role="tool", content="12C", tool_call_id="call_1", name="get"),
                Message(role="tool", content="noon", name="now"),
                Message(role="assistant", content="ok", thinking="hmm"),
                Message(role="user", content="look", images=("aGk=",)),
            ),
        ),
        "tool-round-trip-and-images",
    ),
    (
        msgs({"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]}),
        ChatRequest(
            model="llama3",
            messages=(Message(role="assistant", tool_calls=(
                ToolCall(id=None, name="f", arguments="{}"),)),),
        ),
        "assistant-content-absent-with-tool-calls",
    ),
    (
        msgs({"role": "user", "content": ""}),
        ChatRequest(model="llama3", messages=(Message(role="user", content=""),)),
        "empty-content-allowed",
    ),
    (
        b'{"model": "m", "messages": [{"role": "user", "content": "\\u00e9"}]}',
        ChatRequest(model="m", messages=(Message(role="user", content="\u00e9"),)),
        "unicode-escape",
    ),
]


@pytest.mark.parametrize(("raw", "expected"), [c[:2] for c in GOOD], ids=[c[2] for c in GOOD])
def test_good_bodies(raw: bytes, expected: ChatRequest) -> None:
    assert parse_chat_request(raw) == expected


def test_numbers_are_floats() -> None:
    req = parse_chat_request(body(temperature=1, top_p=1))
    assert type(req.temperature) is float
    assert type(req.top_p) is float


def test_tool_arguments_object_becomes_json_text() -> None:
    raw = msgs({"role": "assistant", "tool_calls": [
        {"function": {"name": "f", "arguments": {"a": "é", "b": None}}}]})
    (call,) = parse_chat_request(raw).messages[0].tool_calls
    assert json.loads(call.arguments) == {"a": "é", "b": None}


def test_parse_messages_uses_the_given_field_name() -> None:
    """Other front doors reuse the validator under their own field names."""
    with pytest.raises(ChatError) as info:
        parse_messages([{"role": "x", "content": ""}], field="input")
    assert info.value.message.startswith("input[0].role")


def test_reusable_validators() -> None:
    assert parse_stop(None) == ()
    assert parse_stop(["a", "b"], "x") == ("a", "b")
    assert parse_think("max") == "max"
    with pytest.raises(ChatError, match=r"^options\.stop must"):
        parse_stop(3, "options.stop")


# ---------------------------------------------------------------- properties

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False,
    allow_infinity=False) | st.text(max_size=8) | st.sampled_from(
        ["user", "assistant", "system", "tool", "json", "high", "function"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["role", "content", "tool_calls", "function", "name", "arguments",
                         "id", "type", "images", "x"]), children, max_size=5),
    max_leaves=20,
)
FIELDS = ["model", "messages", "max_tokens", "temperature", "top_p", "stop", "seed", "format",
          "think", "stream", "tools", "tool_choice"]


@given(st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=12))
def test_any_json_object_parses_or_is_invalid_request(obj: dict[str, object]) -> None:
    try:
        parsed = parse_chat_request(json.dumps(obj).encode())
    except ChatError as exc:
        assert exc.type == "invalid_request"
    else:
        assert isinstance(parsed, ChatRequest)


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_are_invalid_request(raw: bytes) -> None:
    try:
        parse_chat_request(raw)
    except ChatError as exc:
        assert exc.type == "invalid_request"
