"""Folding a stream's events back into the ChatResponse a non-streamed call gives."""

from __future__ import annotations

import pytest

from chatproto import (
    Accumulator,
    ChatError,
    ChatResponse,
    Event,
    RawEvent,
    StreamEnded,
    TextDelta,
    ThinkingDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)

USAGE = Usage(prompt_tokens=5, completion_tokens=7)

CASES: list[tuple[list[Event], ChatResponse, str]] = [
    (
        [StreamEnded(finish_reason="stop")],
        ChatResponse(content="", finish_reason="stop"),
        "empty-answer",
    ),
    (
        [TextDelta(text="Hel"), TextDelta(text=""), TextDelta(text="lo"),
         StreamEnded(finish_reason="length", usage=USAGE)],
        ChatResponse(content="Hello", finish_reason="length", usage=USAGE),
        "text",
    ),
    (
        [ThinkingDelta(text="hm"), ThinkingDelta(text="m"), TextDelta(text="ok"),
         StreamEnded(finish_reason="stop")],
        ChatResponse(content="ok", finish_reason="stop", thinking="hmm"),
        "thinking",
    ),
    (
        [ThinkingDelta(text=""), StreamEnded(finish_reason="stop")],
        ChatResponse(content="", finish_reason="stop", thinking=None),
        "empty-thinking-is-none",
    ),
    (
        # OpenAI-style: id and name on the first piece, arguments in fragments,
        # two calls interleaved, the second announced first by index order.
        [
            ToolCallDelta(index=1, id="call_b", name="now", arguments=""),
            ToolCallDelta(index=0, id="call_a", name="get", arguments='{"ci'),
            ToolCallDelta(index=1, arguments='{"tz":"UTC"}'),
            ToolCallDelta(index=0, id=None, name=None, arguments='ty": "Oslo"}'),
            ToolCallDelta(index=0, id="call_other", name="other", arguments=""),
            StreamEnded(finish_reason="tool_calls", usage=USAGE),
        ],
        ChatResponse(
            content="", finish_reason="tool_calls", usage=USAGE,
            tool_calls=(
                ToolCall(id="call_a", name="get", arguments='{"city": "Oslo"}'),
                ToolCall(id="call_b", name="now", arguments='{"tz":"UTC"}'),
            ),
        ),
        "tool-calls-joined-by-index-first-id-name-kept",
    ),
    (
        [ToolCallDelta(index=0, name="f"), ToolCallDelta(index=0, id="late"),
         StreamEnded(finish_reason="tool_calls")],
        ChatResponse(content="", finish_reason="tool_calls",
                     tool_calls=(ToolCall(id="late", name="f", arguments="{}"),)),
        "id-on-later-piece-no-args",
    ),
    (
        # Ollama-style: one whole call per index, no ids.
        [TextDelta(text="x"), ToolCallDelta(index=0, name="a", arguments='{"k":1}'),
         ToolCallDelta(index=1, name="b", arguments="{}"),
         StreamEnded(finish_reason="stop")],
        ChatResponse(content="x", finish_reason="stop", tool_calls=(
            ToolCall(id=None, name="a", arguments='{"k":1}'),
            ToolCall(id=None, name="b", arguments="{}"),
        )),
        "whole-calls-without-ids",
    ),
]


@pytest.mark.parametrize(("events", "expected"), [c[:2] for c in CASES], ids=[c[2] for c in CASES])
def test_fold(events: list[Event], expected: ChatResponse) -> None:
    acc = Accumulator()
    acc.feed_all(events)
    assert acc.ended
    assert acc.response() == expected
    one_by_one = Accumulator()
    for event in events:
        one_by_one.feed(event)
    assert one_by_one.response() == expected


@pytest.mark.parametrize(
    "events",
    [[], [TextDelta(text="cut")], [ToolCallDelta(index=0, name="f", arguments="{")]],
    ids=["nothing", "text-then-cut", "tool-then-cut"],
)
def test_response_before_stream_ended_is_bad_upstream_response(events: list[Event]) -> None:
    acc = Accumulator("kimi")
    acc.feed_all(events)
    assert not acc.ended
    with pytest.raises(ChatError) as info:
        acc.response()
    err = info.value
    assert (err.type, err.status, err.provider) == ("bad_upstream_response", 502, "kimi")


def test_tool_call_without_a_name_is_bad_upstream_response() -> None:
    acc = Accumulator("openrouter")
    acc.feed_all([ToolCallDelta(index=0, id="c", arguments="{}"),
                  StreamEnded(finish_reason="tool_calls")])
    with pytest.raises(ChatError) as info:
        acc.response()
    assert info.value.type == "bad_upstream_response"


def test_event_after_end_is_a_bug() -> None:
    acc = Accumulator()
    acc.feed(StreamEnded(finish_reason="stop"))
    with pytest.raises(RuntimeError):
        acc.feed(TextDelta(text="late"))


def test_response_can_be_read_twice() -> None:
    acc = Accumulator()
    acc.feed_all([TextDelta(text="a"), StreamEnded(finish_reason="stop")])
    assert acc.response() == acc.response()


def test_passthrough_events_fold_to_nothing() -> None:
    acc = Accumulator()
    acc.feed_all([RawEvent(dialect="openai_chat", data={"x": 1}), TextDelta(text="hi"),
                  StreamEnded(finish_reason="stop")])
    assert acc.response() == ChatResponse(content="hi", finish_reason="stop")


@pytest.mark.parametrize(("deltas", "fragment"), [
    ([ToolCallDelta(index=i, name="f") for i in range(3)], "more than 2 tool calls"),
    ([ToolCallDelta(index=0, name="f", arguments="x" * 6),
      ToolCallDelta(index=1, name="g", arguments="y" * 5)], "exceed 10 bytes"),
])
def test_tool_calls_are_bounded(deltas: list[ToolCallDelta], fragment: str) -> None:
    """What a door buffers comes from an upstream: bounded, and a 502 past the bound."""
    acc = Accumulator("kimi", max_tool_calls=2, max_tool_call_bytes=10)
    with pytest.raises(ChatError) as caught:
        acc.feed_all(deltas)
    assert caught.value.type == "bad_upstream_response" and fragment in caught.value.message
    assert caught.value.provider == "kimi"


def test_tool_calls_within_the_bounds_fold_whole() -> None:
    acc = Accumulator(max_tool_calls=2, max_tool_call_bytes=10)
    acc.feed_all([ToolCallDelta(index=3, id="b", name="g"), ToolCallDelta(index=1, name="f"),
                  ToolCallDelta(index=1, arguments='{"a":'),
                  ToolCallDelta(index=1, arguments="1}")])
    assert acc.has_tool_calls
    assert acc.tool_calls() == (ToolCall(id=None, name="f", arguments='{"a":1}'),
                                ToolCall(id="b", name="g", arguments="{}"))
