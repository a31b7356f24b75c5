"""The fault matrix: every SPEC §4 upstream fault, from every upstream API, through every door,
streamed and not. Each case asserts the status, the error type and the door's shape
(:mod:`door_shapes`), and that nothing is a 500.

The doors come from the app's route table and the upstream APIs from the codecs a provider
can name, so a door or a wire format that lands later joins the matrix by itself (and a
door :mod:`door_shapes` cannot read, or an API without a :class:`Wire` here, fails the
coverage test). Upstreams are :class:`~transports.MockTransport` handlers writing each
API's own bytes; the fault is named by the upstream model, so one handler plays them all.
A stream fails either before its first event (then the client gets a status, as for a
whole answer) or after it (a 200 whose body ends in the door's error).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from door_shapes import door_api, door_paths, error_type, request_body, stream_error_type
from mock_stack import app_over, config
from test_server import call, running

from chatproto import PROVIDER_APIS, ChatError, HTTPRequest
from server.app import ChatdApp
from transports import MockResponse, MockTransport

pytestmark = pytest.mark.anyio

KEY = "sk-kimi-matrix-key"

# -- each upstream API's bytes --------------------------------------------------------------


def _sse(name: str | None, obj: Any) -> bytes:
    head = f"event: {name}\n".encode() if name else b""
    return head + b"data: " + orjson.dumps(obj) + b"\n\n"


@dataclass(frozen=True)
class Wire:
    """What one upstream API sends: an error body, a body of the wrong shape, and a stream's
    first event, its end, and an error event after the first."""

    stream_type: str
    answer: bytes
    error: Callable[[int, str], bytes]
    embedded_error: bytes
    """A 200 whose body is an error: a whole answer's "error after its first event"."""
    wrong_shape: bytes
    first: bytes
    end: bytes
    midstream_error: bytes


def _ollama_line(obj: dict[str, Any]) -> bytes:
    return orjson.dumps({"model": "m", "created_at": "2025-01-01T00:00:00Z", **obj}) + b"\n"


OLLAMA = Wire(  # providers.md OL §1.4, §1.5, §1.7
    stream_type="application/x-ndjson",
    answer=_ollama_line({"message": {"role": "assistant", "content": "first"}, "done": True,
                         "done_reason": "stop", "prompt_eval_count": 1, "eval_count": 1}),
    error=lambda status, message: orjson.dumps({"error": message}),
    embedded_error=orjson.dumps({"error": "the upstream fell over"}),
    wrong_shape=orjson.dumps({"model": "m", "message": "not an object", "done": True}),
    first=_ollama_line({"message": {"role": "assistant", "content": "first"}, "done": False}),
    end=_ollama_line({"message": {"role": "assistant", "content": ""}, "done": True,
                      "done_reason": "stop", "prompt_eval_count": 1, "eval_count": 1}),
    midstream_error=orjson.dumps({"error": "the upstream fell over"}) + b"\n",
)


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    return _sse(None, {"id": "c", "object": "chat.completion.chunk", "created": 1,
                       "model": "m", "choices": [{"index": 0, "delta": delta,
                                                  "finish_reason": finish}]})


OPENAI = Wire(  # providers.md §3.3, §3.4
    stream_type="text/event-stream",
    answer=orjson.dumps({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
                         "choices": [{"index": 0, "finish_reason": "stop", "message": {
                             "role": "assistant", "content": "first"}}],
                         "usage": {"prompt_tokens": 1, "completion_tokens": 1}}),
    error=lambda status, message: orjson.dumps(
        {"error": {"message": message, "type": "error", "code": status}}),
    embedded_error=orjson.dumps({"error": {"message": "the upstream fell over"}}),
    wrong_shape=orjson.dumps({"id": "c", "object": "chat.completion", "choices": []}),
    first=_chunk({"role": "assistant", "content": "first"}),
    end=_chunk({}, "stop") + b"data: [DONE]\n\n",
    midstream_error=_sse(None, {"error": {"message": "the upstream fell over"}}),
)

ANTHROPIC = Wire(  # providers.md §5
    stream_type="text/event-stream",
    answer=orjson.dumps({"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
                         "content": [{"type": "text", "text": "first"}],
                         "stop_reason": "end_turn", "stop_sequence": None,
                         "usage": {"input_tokens": 1, "output_tokens": 1}}),
    error=lambda status, message: orjson.dumps(
        {"type": "error", "error": {"type": "api_error", "message": message}}),
    embedded_error=orjson.dumps(
        {"type": "error", "error": {"type": "api_error", "message": "the upstream fell over"}}),
    wrong_shape=orjson.dumps({"type": "message", "role": "assistant"}),
    first=_sse("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": [],
        "stop_reason": None, "usage": {"input_tokens": 1, "output_tokens": 0}}})
    + _sse("content_block_start", {"type": "content_block_start", "index": 0,
                                   "content_block": {"type": "text", "text": ""}})
    + _sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                   "delta": {"type": "text_delta", "text": "first"}}),
    end=_sse("content_block_stop", {"type": "content_block_stop", "index": 0})
    + _sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                             "usage": {"output_tokens": 1}})
    + _sse("message_stop", {"type": "message_stop"}),
    midstream_error=_sse("error", {"type": "error", "error": {
        "type": "api_error", "message": "the upstream fell over"}}),
)

_RESPONSE = {"id": "resp_1", "object": "response", "created_at": 1, "model": "m"}
RESPONSES = Wire(  # providers.md §4
    stream_type="text/event-stream",
    answer=orjson.dumps({**_RESPONSE, "status": "completed", "output": [{
        "id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
        "content": [{"type": "output_text", "text": "first", "annotations": []}]}],
        "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}}),
    error=lambda status, message: orjson.dumps(
        {"error": {"message": message, "type": "error", "code": None}}),
    embedded_error=orjson.dumps({**_RESPONSE, "status": "failed", "output": [], "error": {
        "code": "server_error", "message": "the upstream fell over"}}),
    wrong_shape=orjson.dumps({"id": "resp_1", "object": "response"}),
    first=_sse("response.created", {"type": "response.created", "response": {
        **_RESPONSE, "status": "in_progress", "output": []}})
    + _sse("response.output_item.added", {"type": "response.output_item.added",
                                          "output_index": 0, "item": {
        "id": "msg_1", "type": "message", "role": "assistant", "status": "in_progress",
        "content": []}})
    + _sse("response.output_text.delta", {"type": "response.output_text.delta",
                                          "item_id": "msg_1", "output_index": 0,
                                          "content_index": 0, "delta": "first"}),
    end=_sse("response.completed", {"type": "response.completed", "response": {
        **_RESPONSE, "status": "completed", "output": [{
            "id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": "first", "annotations": []}]}],
        "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}}}),
    midstream_error=_sse("response.failed", {"type": "response.failed", "response": {
        **_RESPONSE, "status": "failed", "output": [],
        "error": {"code": "server_error", "message": "the upstream fell over"}}}),
)

# -- upstream data that once made a 500 (issue: never a 500 from upstream data) -------------

U64 = 2**64 - 1


def _deep(levels: int = 300) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return value


def _stdlib(obj: Any) -> bytes:
    return json.dumps(obj).encode()  # any depth (orjson writes 254 levels, the point here)


def deep_tool(api: str, stream: bool) -> tuple[bytes, ...]:
    """A tool call whose arguments nest 300 levels: an object where the API carries one
    (Ollama, Anthropic, OpenAI-compatible proxies), JSON text where it carries text."""
    deep = _deep()
    text = json.dumps(deep)
    if api == "ollama_chat":
        call = {"function": {"name": "f", "arguments": deep}}
        line = _stdlib({"model": "m", "created_at": "t", "done": not stream,
                        "message": {"role": "assistant", "content": "", "tool_calls": [call]},
                        **({} if stream else {"done_reason": "stop"})}) + b"\n"
        return (line, OLLAMA.end) if stream else (line,)
    if api == "openai_chat":
        if stream:
            return (_chunk({"role": "assistant", "tool_calls": [{
                "index": 0, "id": "call_1", "type": "function",
                "function": {"name": "f", "arguments": text}}]}),
                _chunk({}, "tool_calls") + b"data: [DONE]\n\n")
        return (_stdlib({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
                         "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                             "role": "assistant", "content": None, "tool_calls": [{
                                 "id": "call_1", "type": "function",
                                 "function": {"name": "f", "arguments": deep}}]}}]}),)
    if api == "anthropic_messages":
        if stream:
            return (ANTHROPIC.first.split(b"event: content_block_start")[0]
                    + _sse("content_block_start", {"type": "content_block_start", "index": 0,
                                                   "content_block": {"type": "tool_use",
                                                                     "id": "toolu_1",
                                                                     "name": "f", "input": {}}})
                    + _sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                   "delta": {"type": "input_json_delta",
                                                             "partial_json": text}}),
                    ANTHROPIC.end)
        return (_stdlib({"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
                         "content": [{"type": "tool_use", "id": "toolu_1", "name": "f",
                                      "input": deep}],
                         "stop_reason": "tool_use", "stop_sequence": None,
                         "usage": {"input_tokens": 1, "output_tokens": 1}}),)
    item = {"id": "fc_1", "type": "function_call", "status": "completed", "call_id": "call_1",
            "name": "f", "arguments": text}
    done = {**_RESPONSE, "status": "completed", "output": [item],
            "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}}
    if stream:
        return (_sse("response.created", {"type": "response.created", "response": {
                    **_RESPONSE, "status": "in_progress", "output": []}})
                + _sse("response.output_item.added", {"type": "response.output_item.added",
                                                      "output_index": 0, "item": {
                    **item, "status": "in_progress", "arguments": ""}})
                + _sse("response.function_call_arguments.delta", {
                    "type": "response.function_call_arguments.delta", "item_id": "fc_1",
                    "output_index": 0, "delta": text}),
                _sse("response.output_item.done", {"type": "response.output_item.done",
                                                   "output_index": 0, "item": item})
                + _sse("response.completed", {"type": "response.completed", "response": done}))
    return (_stdlib(done),)


def huge_usage(api: str, stream: bool) -> tuple[bytes, ...]:
    """An answer whose token counts are each 2^64 - 1, so that any sum passes 2^64."""
    if api == "ollama_chat":
        end = _ollama_line({"message": {"role": "assistant", "content": "" if stream else "first"},
                            "done": True, "done_reason": "stop",
                            "prompt_eval_count": U64, "eval_count": U64})
        return (OLLAMA.first, end) if stream else (end,)
    if api == "openai_chat":
        usage: dict[str, Any] = {
            "prompt_tokens": U64, "completion_tokens": U64, "total_tokens": U64}
        if stream:
            return (OPENAI.first, _sse(None, {
                "id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                "usage": usage}) + b"data: [DONE]\n\n")
        obj = orjson.loads(OPENAI.answer)
        return (orjson.dumps({**obj, "usage": usage}),)
    if api == "anthropic_messages":
        usage = {"input_tokens": U64, "output_tokens": U64,
                 "cache_read_input_tokens": U64, "cache_creation_input_tokens": U64}
        if stream:
            return (ANTHROPIC.first, ANTHROPIC.end.replace(
                b'"usage":{"output_tokens":1}', b'"usage":' + orjson.dumps(usage)))
        return (orjson.dumps({**orjson.loads(ANTHROPIC.answer), "usage": usage}),)
    usage = {
        "input_tokens": U64, "output_tokens": U64, "total_tokens": U64,
        "input_tokens_details": {"cached_tokens": U64},
        "output_tokens_details": {"reasoning_tokens": U64}}
    if stream:
        return (RESPONSES.first, RESPONSES.end.replace(
            b'"usage":{"input_tokens":1,"output_tokens":1,"total_tokens":2}',
            b'"usage":' + orjson.dumps(usage)))
    return (orjson.dumps({**orjson.loads(RESPONSES.answer), "usage": usage}),)


DATA_FAULTS = {"deep-arguments": deep_tool, "huge-usage": huge_usage}


#: Upstream API -> its bytes, and the provider (and its host) that speaks it here.
WIRES: dict[str, tuple[Wire, str, str]] = {
    "ollama_chat": (OLLAMA, "ollama", "ollama.test"),
    "openai_chat": (OPENAI, "kimi", "kimi.test"),
    "anthropic_messages": (ANTHROPIC, "anth", "anth.test"),
    "openai_responses": (RESPONSES, "resp", "resp.test"),
}
#: APIs a provider can name that reach their upstream the same way as another here.
SAME_WIRE = {"ollama_generate"}

CONFIG = config(models="", tables="""
[chatd.providers.anth]
api = "anthropic_messages"
base_url = "http://anth.test"
key_env = ""
[chatd.providers.resp]
api = "openai_responses"
base_url = "http://resp.test/v1"
key_env = ""
""")


def test_every_upstream_api_has_a_wire_here() -> None:
    missing = set(PROVIDER_APIS.values()) - set(WIRES) - SAME_WIRE
    assert not missing, f"add a Wire for {sorted(missing)} to the fault matrix"


# -- the faults -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One upstream misbehaviour and what the client must get for it."""

    name: str
    status: int
    type: str
    retry_after: str | None = None
    #: Streamed, the fault comes after the first event: a 200 that ends in the error.
    after_first_event: bool = False
    #: Upstream data chatd may carry or refuse: an answer (200, or a stream that ends well)
    #: or this fault's status and type, never anything else.
    either: bool = False


FAULTS = [
    *(Fault(f"status-{s}", 400, "upstream_rejected") for s in (400, 413, 422)),
    *(Fault(f"status-{s}", 502, "upstream_error") for s in (401, 402, 403, 404, 500)),
    Fault("status-429", 429, "rate_limited", retry_after="7"),
    Fault("status-429-no-wait", 429, "rate_limited", retry_after="2"),
    Fault("status-503", 503, "upstream_overloaded", retry_after="2"),
    Fault("timeout", 504, "upstream_timeout"),
    Fault("unreachable", 502, "upstream_unavailable"),
    Fault("not-json", 502, "bad_upstream_response"),
    # A first chunk of the wrong shape is a status on every door: a stream commits on the
    # first event a client would see, never on a same-dialect raw chunk alone (so whether
    # a chain falls back does not depend on the client's door).
    Fault("wrong-shape", 502, "bad_upstream_response"),
    Fault("cut", 502, "bad_upstream_response"),
    Fault("cut-after-first", 502, "bad_upstream_response", after_first_event=True),
    Fault("error-after-first", 502, "upstream_error", after_first_event=True),
    Fault("deep-arguments", 502, "bad_upstream_response", either=True),
    Fault("huge-usage", 502, "bad_upstream_response", either=True),
]


def upstream(request: HTTPRequest) -> Any:
    """Plays every API's upstream; the upstream model names the fault."""
    api = next(a for a, (_, _, host) in WIRES.items() if host == request.host)
    wire = WIRES[api][0]
    body = json.loads(request.body)
    fault = str(body["model"])
    stream = request.stream
    json_type = [("content-type", "application/json")]
    if fault.startswith("status-"):
        status = int(fault.split("-")[1])
        headers = [*json_type, *([("retry-after", "7")] if fault == "status-429" else [])]
        return MockResponse(status, headers, (wire.error(status, f"upstream said {status}"),))
    # What a transport raises for these (tests/test_transports.py holds every transport to
    # it on real sockets); here only what the doors make of them is in question.
    if fault == "timeout":
        raise ChatError("upstream_timeout", "awaiting the response: timed out")
    if fault == "unreachable":
        raise ChatError("upstream_unavailable", "connecting to the upstream: refused")
    data = DATA_FAULTS.get(fault)
    if data is not None:
        content_type = wire.stream_type if stream else "application/json"
        return MockResponse(200, [("content-type", content_type)], data(api, stream))
    if not stream:
        if fault == "not-json":
            return MockResponse(200, json_type, (b"{not json",))
        if fault == "wrong-shape":
            return MockResponse(200, json_type, (wire.wrong_shape,))
        if fault == "error-after-first":
            return MockResponse(200, json_type, (wire.embedded_error,))
        if fault.startswith("cut"):  # a body shorter than its Content-Length
            return MockResponse(200, [*json_type, ("content-length", "500")],
                                (b'{"id": "x"',))
        return MockResponse(200, json_type, (wire.answer,))
    events = [("content-type", wire.stream_type)]
    if fault == "not-json":
        return MockResponse(200, events, (b"data: {not json\n\n{not json\n",))
    if fault == "wrong-shape":
        framed = (wire.wrong_shape + b"\n" if wire.stream_type == "application/x-ndjson"
                  else b"data: " + wire.wrong_shape + b"\n\n")
        return MockResponse(200, events, (framed,))
    if fault == "cut":
        return MockResponse(200, events, ())
    if fault == "cut-after-first":
        return MockResponse(200, events, (wire.first,))
    if fault == "error-after-first":
        return MockResponse(200, events, (wire.first, wire.midstream_error))
    return MockResponse(200, events, (wire.first, wire.end))


def make_app() -> ChatdApp:
    return app_over(MockTransport(upstream), CONFIG, {"KIMI_API_KEY": KEY})


@pytest.fixture
async def app(anyio_backend: str) -> AsyncIterator[ChatdApp]:
    async with running(make_app()) as app:
        yield app


# -- the matrix -----------------------------------------------------------------------------

PATHS = sorted(door_paths())


@pytest.mark.parametrize("api", sorted(WIRES))
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_fault_matrix(app: ChatdApp, api: str, path: str, stream: bool) -> None:
    """Every fault of this API through this door: one test per cell, every fault in it, so
    a failure lists all the faults the cell gets wrong."""
    provider = WIRES[api][1]
    wrong: list[str] = []
    for fault in FAULTS:
        model = f"{provider}/{fault.name}"
        result = await call(app, "POST", path, request_body(path, model, stream))
        got = _outcome(path, stream, fault, result, same_dialect=door_api(path) == api)
        if got is not None:
            wrong.append(f"{fault.name}: {got}")
    # and the cell's control: the same door and API, no fault
    result = await call(app, "POST", path, request_body(path, f"{provider}/fine", stream))
    if result.status != 200 or (stream and stream_error_type(path, result.body) is not None):
        wrong.append(f"no fault: {result.status} {result.body[:300]!r}")
    assert not wrong, "\n".join(wrong)


def _outcome(
    path: str, stream: bool, fault: Fault, result: Any, *, same_dialect: bool
) -> str | None:
    """None when ``result`` is what ``fault`` must give, else what was wrong."""
    if result.status == 500:
        return f"a 500: {result.body[:300]!r}"
    if fault.either and result.status == 200:
        if stream and stream_error_type(path, result.body) not in (None, fault.type):
            return f"ended with {stream_error_type(path, result.body)!r}"
        return None
    try:
        if stream and fault.after_first_event:
            if result.status != 200:
                return f"status {result.status}, expected 200: {result.body[:300]!r}"
            got = stream_error_type(path, result.body)
            if got != fault.type:
                return f"ended with {got!r}, expected {fault.type!r}: {result.body[-300:]!r}"
            if b"first" not in result.body:
                return "the event before the failure did not reach the client"
            return None
        if result.status != fault.status:
            return f"status {result.status}, expected {fault.status}: {result.body[:300]!r}"
        got = error_type(path, result.status, result.body)
        if got != fault.type:
            return f"type {got!r}, expected {fault.type!r}: {result.body[:300]!r}"
        if result.headers.get("content-type") != "application/json":
            return f"content-type {result.headers.get('content-type')!r}"
        if result.headers.get("retry-after") != fault.retry_after:
            return f"retry-after {result.headers.get('retry-after')!r}, " \
                   f"expected {fault.retry_after!r}"
    except (AssertionError, ValueError, KeyError, TypeError, IndexError) as exc:
        return f"not the door's shape ({exc!r}): {result.body[:300]!r}"
    return None
