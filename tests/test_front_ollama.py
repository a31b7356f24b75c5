"""The Ollama-compatible front door (the server end of chatproto/dialects/ollama.py):
requests in Ollama's shape to ChatRequest, answers and streams back in Ollama's shape,
checked against the official ``ollama`` client's own models and, end to end, against the
client itself over an in-process httpx transport; streams are also read back by chatd's own
Ollama codecs."""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import httpx
import ollama
import orjson
import pytest
from helpers import WEATHER_TOOL, Feedable, feed, json_values, steps
from hypothesis import given
from hypothesis import strategies as st
from ollama import _types as ot

from chatproto import (
    Accumulator,
    ChatError,
    ChatRequest,
    ChatResponse,
    Event,
    Message,
    StreamEnded,
    TextDelta,
    ThinkingDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
    catalog,
    codec_for,
    profile,
    resolve,
)
from chatproto.dialects import ollama as fo
from chatproto.dialects.ollama import parse_tags

#: The id chatd derives for the Paris call below: turn 2, the turn's first call.
PARIS_ID = fo._derived_id(2, 0, ToolCall(id=None, name="get_weather",
                                         arguments='{"city":"Paris"}'))

IMAGE = base64.b64encode(b"\x89PNG fake").decode()
USER_HI = {"role": "user", "content": "hi"}


def body(**fields: Any) -> bytes:
    return orjson.dumps(fields)


def chat_body(**fields: Any) -> bytes:
    fields.setdefault("model", "qwen3:4b")
    fields.setdefault("messages", [USER_HI])
    return body(**fields)


def gen_body(**fields: Any) -> bytes:
    fields.setdefault("model", "qwen3:4b")
    fields.setdefault("prompt", "hi")
    return body(**fields)


def subset(req: ChatRequest, expected: dict[str, Any]) -> None:
    got = {key: getattr(req, key) for key in expected}
    assert got == expected


# --- /api/chat requests -------------------------------------------------------------------

CHAT_GOOD: list[tuple[bytes, dict[str, Any], str]] = [
    (chat_body(), {"model": "qwen3:4b", "stream": True, "max_tokens": None, "think": None,
                   "format": None, "tools": (), "stop": (), "seed": None,
                   "messages": (Message(role="user", content="hi"),)}, "minimal-streams"),
    (chat_body(stream=False), {"stream": False}, "stream-false"),
    (chat_body(stream=True), {"stream": True}, "stream-true"),
    (chat_body(stream=None), {"stream": True}, "stream-null-is-default"),
    (chat_body(options={"num_predict": 10}), {"max_tokens": 10}, "num-predict"),
    (chat_body(options={"num_predict": -1}), {"max_tokens": None}, "num-predict-infinite"),
    (chat_body(options={"num_predict": -2}), {"max_tokens": None}, "num-predict-fill-ctx"),
    (chat_body(options={"num_predict": 0}), {"max_tokens": None}, "num-predict-zero"),
    (chat_body(options={"temperature": 0.2, "top_p": 1, "seed": 7}),
     {"temperature": 0.2, "top_p": 1.0, "seed": 7}, "sampling-options"),
    (chat_body(options={"stop": ["\n", "END"]}), {"stop": ("\n", "END")}, "stop-list"),
    (chat_body(options={"stop": "END"}), {"stop": ("END",)}, "stop-string"),
    (chat_body(options={"top_k": 5, "num_ctx": 8192.0, "repeat_penalty": 1.1, "mirostat": [],
                        "use_mmap": False}),
     {"max_tokens": None, "temperature": None,
      "options": {"top_k": 5, "num_ctx": 8192, "repeat_penalty": 1.1, "use_mmap": False}},
     "other-options-kept-by-name-undocumented-left-out"),
    (chat_body(options=None), {"max_tokens": None}, "options-null"),
    (chat_body(format="json"), {"format": "json"}, "format-json"),
    (chat_body(format={"type": "object"}), {"format": {"type": "object"}}, "format-schema"),
    (chat_body(format=""), {"format": None}, "format-empty-is-none"),
    (chat_body(think=True), {"think": True}, "think-true"),
    (chat_body(think=False), {"think": False}, "think-false"),
    (chat_body(think="high"), {"think": "high"}, "think-level"),
    (chat_body(tools=[WEATHER_TOOL]), {"tools": (WEATHER_TOOL,)}, "tools"),
    (chat_body(tools=[]), {"tools": ()}, "tools-empty"),
    (chat_body(keep_alive="5m", logprobs=True, top_logprobs=3, truncate=True),
     {"stream": True, "options": {"keep_alive": "5m", "logprobs": True, "top_logprobs": 3},
      "extras": {"truncate": True}}, "top-level-options-and-extras"),
    (chat_body(model="kimi-k2.6:cloud"), {"model": "kimi-k2.6:cloud"}, "cloud-model-kept"),
    (chat_body(messages=[{"role": "user", "content": "look", "images": [IMAGE]}]),
     {"messages": (Message(role="user", content="look", images=(IMAGE,)),)}, "images"),
    (chat_body(messages=[{"role": "user", "images": [IMAGE]}]),
     {"messages": (Message(role="user", content="", images=(IMAGE,)),)}, "no-content-is-empty"),
    (chat_body(messages=[
        {"role": "system", "content": "be brief"},
        USER_HI,
        {"role": "assistant", "thinking": "hmm",
         "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
    ]), {"messages": (
        Message(role="system", content="be brief"),
        Message(role="user", content="hi"),
        Message(role="assistant", content="", thinking="hmm", tool_calls=(
            ToolCall(id=PARIS_ID, name="get_weather", arguments='{"city":"Paris"}'),)),
        Message(role="tool", content="sunny", name="get_weather", tool_call_id=PARIS_ID),
    )}, "tool-round-trip-arguments-object"),
    (chat_body(messages=[{"role": "assistant", "tool_calls": [
        {"id": "c1", "function": {"index": 0, "name": "f", "arguments": {}}}]}]),
     {"messages": (Message(role="assistant", tool_calls=(
         ToolCall(id="c1", name="f", arguments="{}"),)),)}, "tool-call-id-and-index"),
    (chat_body(messages=[]), {"messages": ()}, "empty-messages-is-load"),
    (body(model="qwen3:4b"), {"messages": ()}, "missing-messages-is-load"),
]


@pytest.mark.parametrize(("raw", "expected"), [c[:2] for c in CHAT_GOOD],
                         ids=[c[2] for c in CHAT_GOOD])
def test_parse_chat(raw: bytes, expected: dict[str, Any]) -> None:
    subset(fo.parse_chat(raw), expected)


@pytest.mark.parametrize(
    ("model", "provider", "upstream"),
    [
        pytest.param("qwen3:4b", "ollama", "qwen3:4b", id="bare-local"),
        pytest.param("kimi-k2.6:cloud", "ollama_cloud", "kimi-k2.6", id="cloud-suffix"),
        pytest.param("openrouter/moonshotai/kimi-k2", "openrouter", "moonshotai/kimi-k2",
                     id="openrouter"),
        pytest.param("ollama/llama3.2", "ollama", "llama3.2", id="ollama-prefix"),
    ],
)
def test_parsed_model_routes_by_spec(model: str, provider: str, upstream: str) -> None:
    """The front door passes the name on untouched, so SPEC §1 routes it like any other."""
    req = fo.parse_chat(chat_body(model=model))
    (route,) = resolve(req.model, ["ollama", "ollama_cloud", "openrouter"])
    assert (route.provider, route.upstream_model) == (provider, upstream)


CHAT_BAD: list[tuple[bytes, str, str]] = [
    (b"", "request body is empty", "empty-body"),
    (b"{", "not valid JSON", "bad-json"),
    (b"[]", "must be a JSON object", "not-object"),
    (body(messages=[USER_HI]), "model is required", "no-model"),
    (chat_body(model=3), "model must be a string", "model-number"),
    (chat_body(messages={"role": "user"}), "messages must be an array", "messages-object"),
    (chat_body(messages=["hi"]), "messages[0] must be an object", "message-string"),
    (chat_body(messages=[{"role": "robot", "content": "x"}]), "messages[0].role",
     "bad-role"),
    (chat_body(messages=[{"role": "user", "content": 5}]), "messages[0].content",
     "content-number"),
    (chat_body(messages=[{"role": "user", "content": "x", "images": "abc"}]),
     "messages[0].images", "images-string"),
    (chat_body(messages=[{"role": "assistant", "tool_calls": [
        {"function": {"name": "f", "arguments": [1]}}]}]),
     "messages[0].tool_calls[0].function.arguments", "tool-arguments-array"),
    (chat_body(messages=[{"role": "assistant", "tool_calls": [{"function": {}}]}]),
     "messages[0].tool_calls[0].function.name", "tool-call-no-name"),
    (chat_body(messages=[{"role": "user", "content": "x", "thinking": 1}]),
     "messages[0].thinking", "thinking-number"),
    (chat_body(stream="yes"), "stream must be true or false", "stream-string"),
    (chat_body(think="extreme"), "think must be", "think-bad-level"),
    (chat_body(format="xml"), "format must be", "format-xml"),
    (chat_body(tools={"a": 1}), "tools must be an array", "tools-object"),
    (chat_body(tools=[1]), "tools[0] must be an object", "tool-number"),
    (chat_body(options=[1]), "options must be an object", "options-array"),
    (chat_body(options={"num_predict": 1.5}), "options.num_predict", "num-predict-float"),
    (chat_body(options={"num_predict": True}), "options.num_predict", "num-predict-bool"),
    (chat_body(options={"temperature": "hot"}), "options.temperature", "temperature-string"),
    (chat_body(options={"top_p": None, "seed": "1"}), "options.seed", "seed-string"),
    (chat_body(options={"stop": [1]}), "options.stop[0]", "stop-number"),
]


@pytest.mark.parametrize(("raw", "fragment"), [c[:2] for c in CHAT_BAD],
                         ids=[c[2] for c in CHAT_BAD])
def test_parse_chat_refuses(raw: bytes, fragment: str) -> None:
    with pytest.raises(ChatError) as info:
        fo.parse_chat(raw)
    assert info.value.type == "invalid_request" and info.value.status == 400
    assert fragment in info.value.message


# --- /api/generate requests ---------------------------------------------------------------

GEN_GOOD: list[tuple[bytes, dict[str, Any], str]] = [
    (gen_body(), {"stream": True, "tools": (),
                  "messages": (Message(role="user", content="hi"),)}, "minimal-streams"),
    (gen_body(system="be brief"), {"messages": (
        Message(role="system", content="be brief"), Message(role="user", content="hi"))},
     "system-message-first"),
    (gen_body(system=""), {"messages": (Message(role="user", content="hi"),)},
     "empty-system-dropped"),
    (gen_body(images=[IMAGE]), {"messages": (
        Message(role="user", content="hi", images=(IMAGE,)),)}, "images-on-user"),
    (gen_body(stream=False, think="low", format="json",
              options={"num_predict": 5, "temperature": 0, "stop": ["x"], "seed": 1}),
     {"stream": False, "think": "low", "format": "json", "max_tokens": 5,
      "temperature": 0.0, "stop": ("x",), "seed": 1}, "knobs"),
    (gen_body(options={"num_predict": -1}), {"max_tokens": None}, "num-predict-infinite"),
    (gen_body(raw=False, template="", context=[], suffix="", keep_alive=0),
     {"messages": (Message(role="user", content="hi"),)}, "harmless-defaults"),
    (gen_body(prompt=""), {"messages": ()}, "empty-prompt-is-load"),
    (body(model="qwen3:4b"), {"messages": ()}, "missing-prompt-is-load"),
    (gen_body(prompt="", system="s", images=[IMAGE]), {"messages": ()},
     "load-whatever-else-is-set"),
]


@pytest.mark.parametrize(("raw", "expected"), [c[:2] for c in GEN_GOOD],
                         ids=[c[2] for c in GEN_GOOD])
def test_parse_generate(raw: bytes, expected: dict[str, Any]) -> None:
    subset(fo.parse_generate(raw), expected)


GEN_BAD: list[tuple[bytes, str, str]] = [
    (b"null", "must be a JSON object", "null-body"),
    (body(prompt="hi"), "model is required", "no-model"),
    (gen_body(prompt=1), "prompt must be a string", "prompt-number"),
    (gen_body(system=["x"]), "system must be a string", "system-array"),
    (gen_body(images="abc"), "images must be an array", "images-string"),
    (gen_body(images=[1]), "images must be an array", "images-number"),
    (gen_body(raw=True), "raw is not supported", "raw"),
    (gen_body(raw="yes"), "raw must be true or false", "raw-string"),
    (gen_body(template="{{ .Prompt }}"), "template is not supported", "template"),
    (gen_body(context=[1, 2]), "context is not supported", "context"),
    (gen_body(context="x"), "context must be an array", "context-string"),
    (gen_body(suffix="return x"), "suffix is not supported", "suffix"),
    (gen_body(stream=1), "stream must be true or false", "stream-number"),
    (gen_body(options={"num_predict": "10"}), "options.num_predict", "num-predict-string"),
    (gen_body(format=["json"]), "format must be", "format-array"),
]


@pytest.mark.parametrize(("raw", "fragment"), [c[:2] for c in GEN_BAD],
                         ids=[c[2] for c in GEN_BAD])
def test_parse_generate_refuses(raw: bytes, fragment: str) -> None:
    with pytest.raises(ChatError) as info:
        fo.parse_generate(raw)
    assert info.value.type == "invalid_request" and info.value.status == 400
    assert fragment in info.value.message


JSON_VALUES = json_values(
    ["role", "content", "tool_calls", "function", "name", "arguments", "images",
     "num_predict", "stop", "seed", "temperature"],
    leaves=st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=6)
    | st.sampled_from(["json", "user", "assistant", "tool", "high", ""]),
    max_leaves=12,
    max_size=4,
)
FIELDS = ["model", "messages", "prompt", "system", "images", "options", "format", "think",
          "stream", "tools", "raw", "template", "context", "suffix", "keep_alive"]


@pytest.mark.parametrize("parse", [fo.parse_chat, fo.parse_generate], ids=["chat", "generate"])
@given(obj=st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=10))
def test_any_body_is_a_request_or_a_400(parse: Any, obj: dict[str, Any]) -> None:
    try:
        req = parse(orjson.dumps(obj))
    except ChatError as exc:
        assert exc.status == 400
    else:
        assert isinstance(req, ChatRequest)


@pytest.mark.parametrize(
    ("parse", "raw", "load"),
    [
        pytest.param(fo.parse_chat, chat_body(), False, id="chat"),
        pytest.param(fo.parse_chat, chat_body(messages=[]), True, id="chat-load"),
        pytest.param(fo.parse_generate, gen_body(), False, id="generate"),
        pytest.param(fo.parse_generate, gen_body(prompt=""), True, id="generate-load"),
    ],
)
def test_is_load(parse: Any, raw: bytes, load: bool) -> None:
    assert fo.is_load(parse(raw)) is load


@pytest.mark.parametrize(
    ("endpoint", "model_cls", "field"),
    [
        pytest.param(fo.CHAT, ot.ChatResponse, "message", id="chat"),
        pytest.param(fo.GENERATE, ot.GenerateResponse, "response", id="generate"),
    ],
)
def test_render_load(endpoint: fo.Endpoint, model_cls: Any, field: str) -> None:
    raw = endpoint.render_load(model="qwen3:4b", created_at="2025-01-01T00:00:00Z")
    parsed = model_cls.model_validate_json(raw)
    assert (parsed.done, parsed.done_reason, parsed.model) == (True, "load", "qwen3:4b")
    assert field in orjson.loads(raw)


# --- whole answers ------------------------------------------------------------------------

CREATED = "2025-07-07T20:32:53.844124Z"
USAGE = Usage(prompt_tokens=12, completion_tokens=9)

RENDER_CHAT: list[tuple[ChatResponse, dict[str, Any], str]] = [
    (ChatResponse(content="Hello", finish_reason="stop", usage=USAGE),
     {"role": "assistant", "content": "Hello"}, "text"),
    (ChatResponse(content="", finish_reason="length", usage=USAGE, thinking="I think"),
     {"role": "assistant", "content": "", "thinking": "I think"}, "thinking"),
    (ChatResponse(content="", finish_reason="tool_calls", usage=USAGE, tool_calls=(
        ToolCall(id="call_0", name="get_weather", arguments='{"city": "Tokyo"}'),
        ToolCall(id=None, name="now", arguments=""))),
     {"role": "assistant", "content": "", "tool_calls": [
         {"id": "call_0", "function": {"index": 0, "name": "get_weather",
                                       "arguments": {"city": "Tokyo"}}},
         # No id from the upstream: the one derived for the answer's turn (0 here).
         {"id": fo._derived_id(0, 1, ToolCall(id=None, name="now", arguments="")),
          "function": {"index": 1, "name": "now", "arguments": {}}}]}, "tool-calls"),
]


@pytest.mark.parametrize(("resp", "message"), [c[:2] for c in RENDER_CHAT],
                         ids=[c[2] for c in RENDER_CHAT])
def test_render_chat(resp: ChatResponse, message: dict[str, Any]) -> None:
    raw = fo.render_chat(resp, model="kimi-k2.6:cloud", created_at=CREATED,
                         total_duration_ns=41_700_000)
    parsed = ot.ChatResponse.model_validate_json(raw)
    assert parsed.done is True and parsed.model == "kimi-k2.6:cloud"
    assert parsed.created_at == CREATED
    assert (parsed.prompt_eval_count, parsed.eval_count) == (12, 9)
    assert (parsed.total_duration, parsed.load_duration) == (41_700_000, 0)
    assert orjson.loads(raw)["message"] == message


@pytest.mark.parametrize(
    ("finish", "done_reason"),
    [
        pytest.param("stop", "stop", id="stop"),
        pytest.param("length", "length", id="length"),
        pytest.param("tool_calls", "stop", id="tool-calls-is-stop"),
        pytest.param("content_filter", "content_filter", id="content-filter-passed-on"),
    ],
)
@pytest.mark.parametrize("render", [fo.render_chat, fo.render_generate],
                         ids=["chat", "generate"])
def test_done_reason(render: Any, finish: str, done_reason: str) -> None:
    raw = render(ChatResponse(content="x", finish_reason=finish), model="m", created_at="t",
                 total_duration_ns=1)
    assert orjson.loads(raw)["done_reason"] == done_reason


@pytest.mark.parametrize(
    ("resp", "expected"),
    [
        pytest.param(ChatResponse(content="Hi", finish_reason="stop", usage=USAGE),
                     {"response": "Hi"}, id="text"),
        pytest.param(ChatResponse(content="Hi", finish_reason="stop", thinking="hm"),
                     {"response": "Hi", "thinking": "hm"}, id="thinking-top-level"),
    ],
)
def test_render_generate(resp: ChatResponse, expected: dict[str, Any]) -> None:
    raw = fo.render_generate(resp, model="m", created_at=CREATED, total_duration_ns=3)
    parsed = ot.GenerateResponse.model_validate_json(raw)
    assert parsed.done is True and parsed.total_duration == 3
    obj = orjson.loads(raw)
    assert {k: obj.get(k) for k in expected} == expected
    assert "message" not in obj


@pytest.mark.parametrize(
    "arguments",
    [pytest.param("[1]", id="array"), pytest.param("{", id="not-json"),
     pytest.param('"text"', id="string")],
)
def test_render_chat_refuses_non_object_arguments(arguments: str) -> None:
    resp = ChatResponse(content="", finish_reason="tool_calls",
                        tool_calls=(ToolCall(id=None, name="f", arguments=arguments),))
    with pytest.raises(ChatError) as info:
        fo.render_chat(resp, model="m", created_at="t", total_duration_ns=0)
    assert info.value.type == "bad_upstream_response" and info.value.status == 502


# --- streams ------------------------------------------------------------------------------

END = StreamEnded(finish_reason="stop", usage=USAGE)

STREAMS: list[tuple[list[Event], str]] = [
    ([TextDelta(text="Hel"), TextDelta(text="lo \"x\"\n"), END], "text"),
    ([ThinkingDelta(text="hmm"), ThinkingDelta(text="…"), TextDelta(text="ok"),
      StreamEnded(finish_reason="length", usage=USAGE)], "thinking-then-text"),
    ([ToolCallDelta(index=0, id="call_a", name="get_weather", arguments='{"ci'),
      ToolCallDelta(index=0, arguments='ty": "Tokyo"}'),
      ToolCallDelta(index=1, id="call_b", name="now"),
      StreamEnded(finish_reason="tool_calls", usage=USAGE)], "tool-call-fragments"),
    ([ToolCallDelta(index=0, id="a", name="f", arguments='{"x":'),
      ToolCallDelta(index=1, id="b", name="g", arguments='{"y":'),
      ToolCallDelta(index=0, arguments="1}"), ToolCallDelta(index=1, arguments="2}"),
      StreamEnded(finish_reason="tool_calls", usage=None)], "interleaved-parallel-calls"),
    ([TextDelta(text="Let me check."), ToolCallDelta(index=0, name="f"),
      StreamEnded(finish_reason="tool_calls", usage=USAGE)], "text-then-tool-no-id"),
    ([TextDelta(text=""), TextDelta(text="x"), END], "empty-delta-skipped"),
    ([END], "end-only"),
]


def render_stream(renderer: fo.StreamRenderer, events: Sequence[Event],
                  total_duration_ns: int = 5_000) -> bytes:
    out = []
    for ev in events:
        if isinstance(ev, StreamEnded):
            out.append(renderer.end(ev, total_duration_ns=total_duration_ns))
        else:
            out.append(renderer.event(ev))
    return b"".join(out)


def lines(raw: bytes) -> list[bytes]:
    assert raw.endswith(b"\n")
    return raw[:-1].split(b"\n")


def feed_split(parser: Feedable[Event], raw: bytes, step: int | None) -> list[Event]:
    return feed(parser, [raw] if step is None else steps(raw, step))


def folded(events: Sequence[Event]) -> ChatResponse:
    acc = Accumulator()
    acc.feed_all(events)
    return acc.response()


@pytest.mark.parametrize("events", [c[0] for c in STREAMS], ids=[c[1] for c in STREAMS])
def test_chat_stream_lines_validate_with_the_client(events: list[Event]) -> None:
    raw = render_stream(fo.ChatStreamRenderer(model="qwen3:4b", created_at=CREATED), events)
    chunks = [ot.ChatResponse.model_validate_json(line) for line in lines(raw)]
    *body, last = chunks
    assert all(c.done is False for c in body)
    assert last.done is True and last.total_duration == 5_000
    assert all(c.model == "qwen3:4b" and c.created_at == CREATED for c in chunks)
    want = folded(events)
    assert "".join(c.message.content or "" for c in chunks) == want.content
    assert "".join(c.message.thinking or "" for c in chunks) == (want.thinking or "")
    calls = [call for c in chunks for call in (c.message.tool_calls or ())]
    assert [(c.function.name, dict(c.function.arguments)) for c in calls] == [
        (c.name, orjson.loads(c.arguments or "{}")) for c in want.tool_calls]
    # Whole calls only: every tool call arrives in one chunk, before the final one.
    with_calls = [c for c in chunks if c.message.tool_calls]
    assert len(with_calls) == (1 if want.tool_calls else 0)
    assert not last.message.tool_calls
    assert last.done_reason == ("length" if want.finish_reason == "length" else "stop")
    assert (last.prompt_eval_count, last.eval_count) == (
        want.usage.prompt_tokens, want.usage.completion_tokens)


@pytest.mark.parametrize("step", [None, 1, 7], ids=["whole", "byte-by-byte", "split-7"])
@pytest.mark.parametrize("events", [c[0] for c in STREAMS], ids=[c[1] for c in STREAMS])
def test_chat_stream_round_trips_through_chatds_ollama_codec(
    events: list[Event], step: int | None
) -> None:
    """What chatd renders, chatd's own /api/chat parser reads back to the same answer."""
    raw = render_stream(fo.ChatStreamRenderer(model="m", created_at="t"), events)
    back = folded(feed_split(codec_for("ollama_chat").stream_parser("x"), raw, step))
    want = folded(events)
    assert (back.content, back.thinking, back.finish_reason) == (
        want.content, want.thinking, want.finish_reason)
    assert counts(back.usage) == counts(want.usage)
    assert [(c.name, orjson.loads(c.arguments)) for c in back.tool_calls] == [
        (c.name, orjson.loads(c.arguments or "{}")) for c in want.tool_calls]
    # An upstream id survives; a missing one is derived by the door, for the turn the
    # answer takes in the history (here 0), so the codec reads one back.
    assert [c.id for c in back.tool_calls] == [
        c.id or fo._derived_id(0, i, c) for i, c in enumerate(want.tool_calls)]


def counts(usage: Usage) -> Usage:
    """The token counts alone: what chatd renders as durations (its own measure, where
    the events carry none) reads back as the upstream's."""
    return replace(usage, total_duration_ns=None, load_duration_ns=None,
                   prompt_eval_duration_ns=None, eval_duration_ns=None)


GEN_STREAMS = [c for c in STREAMS if not any(isinstance(e, ToolCallDelta) for e in c[0])]


@pytest.mark.parametrize("step", [None, 1], ids=["whole", "byte-by-byte"])
@pytest.mark.parametrize("events", [c[0] for c in GEN_STREAMS], ids=[c[1] for c in GEN_STREAMS])
def test_generate_stream(events: list[Event], step: int | None) -> None:
    raw = render_stream(fo.GenerateStreamRenderer(model="m", created_at=CREATED), events)
    chunks = [ot.GenerateResponse.model_validate_json(line) for line in lines(raw)]
    assert [c.done for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert all("message" not in orjson.loads(line) for line in lines(raw))
    want = folded(events)
    assert "".join(c.response or "" for c in chunks) == want.content
    assert "".join(c.thinking or "" for c in chunks) == (want.thinking or "")
    back = folded(feed_split(codec_for("ollama_generate").stream_parser("x"), raw, step))
    assert (back.content, back.thinking, back.finish_reason, counts(back.usage)) == (
        want.content, want.thinking, want.finish_reason, counts(want.usage))


def test_generate_stream_drops_tool_calls() -> None:
    renderer = fo.GenerateStreamRenderer(model="m", created_at="t")
    assert renderer.event(ToolCallDelta(index=0, name="f", arguments="not json")) == b""
    (line,) = lines(renderer.end(END, total_duration_ns=1))
    assert ot.GenerateResponse.model_validate_json(line).done is True


def test_content_filter_stream_says_so() -> None:
    raw = render_stream(fo.ChatStreamRenderer(model="m", created_at="t"),
                        [TextDelta(text="x"), StreamEnded(finish_reason="content_filter")])
    assert ot.ChatResponse.model_validate_json(lines(raw)[-1]).done_reason == "content_filter"


def test_stream_line_bytes_are_exact() -> None:
    """The pre-encoded parts join into exactly the JSON Ollama writes (OL §1.5)."""
    r = fo.ChatStreamRenderer(model='q"1', created_at="t")
    assert r.event(TextDelta(text="a")) == (
        b'{"model":"q\\"1","created_at":"t","message":{"role":"assistant","content":"a"},'
        b'"done":false}\n')
    assert r.event(ThinkingDelta(text="b")) == (
        b'{"model":"q\\"1","created_at":"t","message":{"role":"assistant","content":"",'
        b'"thinking":"b"},"done":false}\n')
    g = fo.GenerateStreamRenderer(model="m", created_at="t")
    assert g.event(TextDelta(text="a")) == (
        b'{"model":"m","created_at":"t","response":"a","done":false}\n')
    assert g.end(StreamEnded(finish_reason="stop"), total_duration_ns=2) == (
        b'{"model":"m","created_at":"t","response":"","done":true,"done_reason":"stop",'
        b'"total_duration":2,"load_duration":0,"prompt_eval_count":0,"eval_count":0}\n')


STREAM_FAILURES: list[tuple[list[Event], str, str]] = [
    ([ToolCallDelta(index=0, arguments="{}")], "has no function name", "no-name"),
    ([ToolCallDelta(index=0, name="f", arguments="[1, 2]")], "not a JSON object",
     "arguments-array"),
    ([ToolCallDelta(index=0, name="f", arguments='{"a": ')], "not a JSON object",
     "arguments-cut"),
    ([ToolCallDelta(index=i, name="f") for i in range(fo.MAX_TOOL_CALLS + 1)],
     f"more than {fo.MAX_TOOL_CALLS} tool calls", "too-many-calls"),
    ([ToolCallDelta(index=0, name="f", arguments="x" * (fo.MAX_TOOL_CALL_BYTES // 2)),
      ToolCallDelta(index=0, arguments="x" * (fo.MAX_TOOL_CALL_BYTES // 2 + 1))],
     "exceed", "arguments-too-long"),
]


@pytest.mark.parametrize(("events", "fragment"), [c[:2] for c in STREAM_FAILURES],
                         ids=[c[2] for c in STREAM_FAILURES])
def test_stream_tool_call_failures_are_chat_errors(events: list[Event], fragment: str) -> None:
    renderer = fo.ChatStreamRenderer(model="m", created_at="t")
    with pytest.raises(ChatError) as info:
        render_stream(renderer, [*events, StreamEnded(finish_reason="tool_calls")])
    assert info.value.type == "bad_upstream_response" and fragment in info.value.message
    line = renderer.error(info.value)
    assert orjson.loads(line)["error"] == info.value.message


def test_event_refuses_stream_ended() -> None:
    with pytest.raises(TypeError, match="end"):
        fo.ChatStreamRenderer(model="m", created_at="t").event(END)


# --- errors -------------------------------------------------------------------------------

ERRORS = [
    (ChatError("invalid_request", "model is required"), 400,
     {"error": "model is required", "type": "invalid_request"}, "invalid"),
    (ChatError("provider_not_registered", "ollama_cloud is not registered"), 404,
     {"error": "ollama_cloud is not registered", "type": "provider_not_registered"},
     "not-registered"),
    (ChatError("rate_limited", "slow down", provider="openrouter", upstream_status=429,
               retry_after=3), 429,
     {"error": "slow down", "type": "rate_limited", "provider": "openrouter",
      "upstream_status": 429}, "rate-limited"),
    (ChatError("upstream_error", "model 'x' not found", provider="ollama",
               upstream_status=404), 502,
     {"error": "model 'x' not found", "type": "upstream_error", "provider": "ollama",
      "upstream_status": 404}, "upstream-404"),
]


@pytest.mark.parametrize(("exc", "status", "expected"), [c[:3] for c in ERRORS],
                         ids=[c[3] for c in ERRORS])
def test_render_error(exc: ChatError, status: int, expected: dict[str, Any]) -> None:
    raw = fo.render_error(exc)
    assert orjson.loads(raw) == expected and exc.status == status
    # How the official client reads an error body (ollama._types.ResponseError).
    client_error = ot.ResponseError(raw.decode(), exc.status)
    assert (client_error.error, client_error.status_code) == (exc.message, status)
    assert fo.ChatStreamRenderer(model="m", created_at="t").error(exc) == raw + b"\n"


@pytest.mark.parametrize("step", [None, 1], ids=["whole", "byte-by-byte"])
def test_mid_stream_error_line_fails_chatds_codec(step: int | None) -> None:
    renderer = fo.ChatStreamRenderer(model="m", created_at="t")
    raw = renderer.event(TextDelta(text="par")) + renderer.error(
        ChatError("upstream_timeout", "upstream did not answer in 120 s", provider="kimi"))
    with pytest.raises(ChatError) as info:
        feed_split(codec_for("ollama_chat").stream_parser("x"), raw, step)
    assert info.value.message == "upstream did not answer in 120 s"


# --- tags and version ---------------------------------------------------------------------

LOCAL_TAG = {
    "name": "qwen3:4b", "model": "qwen3:4b", "modified_at": "2025-05-01T10:00:00.1+02:00",
    "size": 2497293931, "digest": "e55aed6fe643",
    "details": {"parent_model": "", "format": "gguf", "family": "qwen3",
                "families": ["qwen3"], "parameter_size": "4.0B",
                "quantization_level": "Q4_K_M"},
}
TIERS = {"fast": ("ollama/qwen3:4b",), "smart": ("kimi-k2.6:cloud", "openrouter/m/k")}
_OLLAMA = profile("ollama")
assert _OLLAMA is not None
OLLAMA = _OLLAMA
assert OLLAMA is not None


@pytest.mark.parametrize(
    ("tiers", "local", "names"),
    [
        pytest.param(TIERS, [LOCAL_TAG], ["fast", "fast:latest", "ollama/qwen3:4b", "qwen3:4b"],
                     id="tiers-then-local"),
        pytest.param(TIERS, [], ["fast", "fast:latest", "ollama/qwen3:4b"], id="tiers-only"),
        pytest.param({}, [LOCAL_TAG], ["qwen3:4b"], id="local-only"),
        pytest.param({}, [], [], id="empty"),
        pytest.param({"qwen3:4b": ("ollama/llama3",)}, [LOCAL_TAG],
                     ["qwen3:4b", "qwen3:4b:latest", "ollama/llama3", "ollama/qwen3:4b"],
                     id="tier-shadows-local"),
    ],
)
def test_render_tags(tiers: dict[str, tuple[str, ...]], local: list[dict[str, Any]],
                     names: list[str]) -> None:
    """Only names that route where they claim (``smart`` needs Ollama Cloud or OpenRouter,
    neither registered here); a local model a tier shadows keeps its ``ollama/`` name."""
    listed = parse_tags("ollama", orjson.dumps({"models": local}), limit=100)
    entries = catalog(tiers=tiers, providers={"ollama": OLLAMA}, listed={"ollama": listed},
                      speaks=lambda api: True)
    raw = fo.render_tags(entries)
    got = ot.ListResponse.model_validate_json(raw)
    assert [m.model for m in got.models] == names
    from_local = {e.name for e in entries if e.listed is not None}
    for entry in orjson.loads(raw)["models"]:
        if entry["name"] in from_local:  # the local Ollama's own entry, under its name
            assert entry == {**LOCAL_TAG, "name": entry["name"], "model": entry["name"]}
        else:
            assert (entry["size"], entry["digest"]) == (0, "")


@pytest.mark.parametrize(
    ("args", "version"),
    [pytest.param((), fo.OLLAMA_VERSION, id="default"),
     pytest.param(("0.5.1",), "0.5.1", id="given")],
)
def test_render_version(args: tuple[str, ...], version: str) -> None:
    assert orjson.loads(fo.render_version(*args)) == {"version": version}


@pytest.mark.parametrize(
    ("epoch", "text"),
    [
        pytest.param(0.0, "1970-01-01T00:00:00.000000Z", id="epoch"),
        pytest.param(1751920373.844124, "2025-07-07T20:32:53.844124Z", id="micros"),
    ],
)
def test_format_time(epoch: float, text: str) -> None:
    assert fo.format_time(epoch) == text
    assert ot.ChatResponse.model_validate({"created_at": text, "message": {"role": "a"}})


# --- the official client, end to end over an in-process transport -------------------------


class FakeChatd:
    """A route handler built only from the Ollama door, answering from scripted events.

    It does what the real handlers must do (the module docstring of chatproto.dialects.ollama):
    parse, answer the load call, render whole answers, streams and errors. The "upstream"
    is a list of events, folded for non-streamed answers.
    """

    def __init__(self, events: list[Event], fail: ChatError | None = None,
                 fail_mid_stream: ChatError | None = None) -> None:
        self.events = events
        self.fail = fail
        self.fail_mid_stream = fail_mid_stream
        self.seen: list[ChatRequest] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        try:
            if path == "/api/tags":
                local = parse_tags("ollama", orjson.dumps({"models": [LOCAL_TAG]}), limit=9)
                return self.whole(200, fo.render_tags(catalog(
                    tiers=TIERS, providers={"ollama": OLLAMA}, listed={"ollama": local},
                    speaks=lambda api: True)))
            if path == "/api/version":
                return self.whole(200, fo.render_version())
            endpoint = fo.ENDPOINTS[path]
            chat = endpoint.parse(request.content)
            self.seen.append(chat)
            if fo.is_load(chat):
                return self.whole(200, endpoint.render_load(model=chat.model, created_at=CREATED))
            if self.fail is not None:
                raise self.fail
            if not chat.stream:
                resp = endpoint.render(folded(self.events), model=chat.model,
                                       created_at=CREATED, total_duration_ns=7)
                return self.whole(200, resp)
            out = endpoint.stream(model=chat.model, created_at=CREATED)
            return httpx.Response(200, headers={"content-type": "application/x-ndjson"},
                                  content=self.stream(out))
        except ChatError as exc:
            return self.whole(exc.status, fo.render_error(exc))

    def stream(self, out: fo.StreamRenderer) -> Iterator[bytes]:
        try:
            for ev in self.events:
                if isinstance(ev, StreamEnded):
                    if self.fail_mid_stream is not None:
                        raise self.fail_mid_stream
                    yield out.end(ev, total_duration_ns=7)
                else:
                    yield out.event(ev)
        except ChatError as exc:
            yield out.error(exc)

    @staticmethod
    def whole(status: int, data: bytes) -> httpx.Response:
        return httpx.Response(status, content=data,
                              headers={"content-type": fo.JSON_CONTENT_TYPE.decode()})


TOOL_EVENTS: list[Event] = [
    ThinkingDelta(text="need weather"),
    ToolCallDelta(index=0, id="call_1", name="get_weather", arguments='{"city":'),
    ToolCallDelta(index=0, arguments=' "Tokyo"}'),
    StreamEnded(finish_reason="tool_calls", usage=USAGE),
]
TEXT_EVENTS: list[Event] = [TextDelta(text="Hello"), TextDelta(text=" there"), END]


def client(fake: FakeChatd, monkeypatch: pytest.MonkeyPatch) -> ollama.Client:
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)
    return ollama.Client(host="http://chatd.test", transport=httpx.MockTransport(fake))


def test_client_chat_with_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeChatd(TOOL_EVENTS)
    c = client(fake, monkeypatch)
    resp = c.chat(model="kimi-k2.6:cloud", messages=[USER_HI], tools=[WEATHER_TOOL],
                  think=True, options={"num_predict": 64, "temperature": 0.1})
    assert resp.message.thinking == "need weather"
    (call,) = resp.message.tool_calls or ()
    assert (call.function.name, dict(call.function.arguments)) == ("get_weather",
                                                                  {"city": "Tokyo"})
    assert (resp.done_reason, resp.eval_count, resp.total_duration) == ("stop", 9, 7)
    # The client's own request came through: tool result turn included.
    follow = c.chat(model="kimi-k2.6:cloud", messages=[
        USER_HI, resp.message, {"role": "tool", "content": "sunny", "tool_name": "get_weather"}])
    assert follow.done
    first, second = fake.seen
    subset(first, {"model": "kimi-k2.6:cloud", "stream": False, "think": True,
                   "max_tokens": 64, "temperature": 0.1, "tools": (WEATHER_TOOL,)})
    # SPEC §2: the history came without ids; chatd derived one and paired the result.
    [derived] = second.messages[1].tool_calls
    assert (derived.name, derived.arguments) == ("get_weather", '{"city":"Tokyo"}')
    assert derived.id and derived.id.startswith("call_")
    assert second.messages[2] == Message(role="tool", content="sunny", name="get_weather",
                                         tool_call_id=derived.id)


@pytest.mark.parametrize(("events", "kind"), [(TOOL_EVENTS, "tools"), (TEXT_EVENTS, "text")],
                         ids=["tools", "text"])
def test_client_chat_stream(events: list[Event], kind: str,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    chunks = list(client(FakeChatd(events), monkeypatch).chat(
        model="qwen3:4b", messages=[USER_HI], stream=True))
    assert [c.done for c in chunks][-1] is True
    want = folded(events)
    assert "".join(c.message.content or "" for c in chunks) == want.content
    calls = [t for c in chunks for t in (c.message.tool_calls or ())]
    assert [t.function.name for t in calls] == [t.name for t in want.tool_calls]


def test_client_generate(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeChatd(TEXT_EVENTS)
    c = client(fake, monkeypatch)
    assert c.generate(model="qwen3:4b", prompt="hi", system="brief").response == "Hello there"
    streamed = list(c.generate(model="qwen3:4b", prompt="hi", stream=True))
    assert "".join(s.response or "" for s in streamed) == "Hello there"
    loaded = c.generate(model="qwen3:4b")
    assert (loaded.done, loaded.done_reason) == (True, "load")
    assert [len(r.messages) for r in fake.seen] == [2, 1, 0]


def test_client_chat_load(monkeypatch: pytest.MonkeyPatch) -> None:
    resp = client(FakeChatd(TEXT_EVENTS), monkeypatch).chat(model="qwen3:4b")
    assert (resp.done_reason, resp.message.role) == ("load", "assistant")


def test_client_list(monkeypatch: pytest.MonkeyPatch) -> None:
    listed = client(FakeChatd([]), monkeypatch).list()
    assert [m.model for m in listed.models] == [
        "fast", "fast:latest", "ollama/qwen3:4b", "qwen3:4b"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_client_sees_errors(stream: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeChatd(TEXT_EVENTS, fail=ChatError("provider_not_registered", "no cloud key"))
    with pytest.raises(ollama.ResponseError) as info:
        c = client(fake, monkeypatch)
        if stream:
            list(c.chat(model="x:cloud", messages=[USER_HI], stream=True))
        else:
            c.chat(model="x:cloud", messages=[USER_HI], stream=False)
    assert (info.value.error, info.value.status_code) == ("no cloud key", 404)


def test_client_sees_mid_stream_error(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeChatd(TEXT_EVENTS, fail_mid_stream=ChatError("upstream_timeout", "too slow"))
    got: list[str] = []
    with pytest.raises(ollama.ResponseError) as info:
        for chunk in client(fake, monkeypatch).chat(model="qwen3:4b", messages=[USER_HI],
                                                    stream=True):
            got.append(chunk.message.content or "")
    assert info.value.error == "too slow" and "".join(got) == "Hello there"


def test_client_bad_request(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ollama.ResponseError) as info:
        client(FakeChatd([]), monkeypatch).chat(model="qwen3:4b", messages=[USER_HI],
                                                 think="extreme")
    assert info.value.status_code == 400 and "think" in info.value.error
