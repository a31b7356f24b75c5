"""The native door (SPEC §3): the whole answer, the NDJSON stream lines, the error shapes.

Table-driven and byte-exact: each stream line must be what encoding SPEC §3's object
gives, whatever shortcut the renderer takes on the per-chunk path.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from chatproto import (
    Answer,
    CallContext,
    ChatError,
    ChatRequest,
    ChatResponse,
    DoorCall,
    Event,
    Message,
    Route,
    Served,
    StreamEnded,
    TextDelta,
    ThinkingDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from chatproto.dialects.native import door

ROUTE = Route(provider="kimi", upstream_model="kimi-k2")
CTX = CallContext(id="ab" * 16, created=1_700_000_000)
CALL = DoorCall(chat=ChatRequest(model="smart", messages=(Message(role="user", content="hi"),)))

LINES: list[tuple[Event, dict[str, Any]]] = [
    (TextDelta(text="Hel\"lo\n"), {"content": "Hel\"lo\n"}),
    (TextDelta(text="é \u2028 😀"), {"content": "é \u2028 😀"}),
    (ThinkingDelta(text="hmm"), {"thinking": "hmm"}),
    (ToolCallDelta(index=1, id="c1", name="f", arguments='{"a"'),
     {"tool_calls": [{"index": 1, "id": "c1", "name": "f", "arguments": '{"a"'}]}),
    (StreamEnded(finish_reason="length", usage=Usage(prompt_tokens=3, completion_tokens=4)),
     {"done": True, "finish_reason": "length",
      "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
      "latency_ms": 12.5, "provider": "kimi", "upstream_model": "kimi-k2"}),
    (StreamEnded(finish_reason="stop"),
     {"done": True, "finish_reason": "stop",
      "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
      "latency_ms": 12.5, "provider": "kimi", "upstream_model": "kimi-k2"}),
]


@pytest.mark.parametrize(("event", "line"), LINES)
def test_stream_line(event: Event, line: dict[str, Any]) -> None:
    served = Served(route=ROUTE, latency_ms=12.5)
    assert door.stream(CALL, CTX).events([event], served) == orjson.dumps(line) + b"\n"


def test_a_batch_is_its_lines_in_order() -> None:
    stream = door.stream(CALL, CTX)
    served = Served(route=ROUTE, latency_ms=12.5)
    batch = [event for event, _ in LINES[:4]]
    assert stream.start() == b""
    assert stream.events(batch, served) == b"".join(
        orjson.dumps(line) + b"\n" for _, line in LINES[:4])


def test_mid_stream_error_is_a_last_done_line() -> None:
    exc = ChatError("upstream_error", "boom", provider="kimi", upstream_status=500)
    line = orjson.loads(door.stream(CALL, CTX).error(exc))
    assert line == {"done": True, "error": {"type": "upstream_error", "message": "boom",
                                            "provider": "kimi", "upstream_status": 500}}


def test_render_error_is_spec_4s_shape() -> None:
    exc = ChatError("rate_limited", "slow", provider="kimi")
    assert orjson.loads(door.render_error(exc)) == {
        "error": {"type": "rate_limited", "message": "slow", "provider": "kimi"}}


@pytest.mark.parametrize(("calls", "extra"), [
    ((), {}),
    ((ToolCall(id="c1", name="f", arguments="{}"),),
     {"tool_calls": [{"id": "c1", "name": "f", "arguments": "{}"}]}),
])
def test_whole_answer(calls: tuple[ToolCall, ...], extra: dict[str, Any]) -> None:
    response = ChatResponse(content="Hi", finish_reason="stop", thinking="t",
                            usage=Usage(prompt_tokens=1, completion_tokens=2), tool_calls=calls)
    answer = Answer(response=response, route=ROUTE, latency_ms=41.7)
    assert orjson.loads(door.render(CALL, answer, CTX)) == {
        "id": "chat-" + "ab" * 16, "model": "smart", "provider": "kimi",
        "upstream_model": "kimi-k2", "content": "Hi", "thinking": "t", "finish_reason": "stop",
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
        "latency_ms": 41.7, **extra,
    }


def test_parse_is_the_native_request() -> None:
    body = orjson.dumps({"model": "smart", "messages": [{"role": "user", "content": "hi"}]})
    call = door.parse(body, [])
    assert call.chat == CALL.chat and door.api is None and call.chat.dialect is None
