"""How a stream that fails after its first event ends, door by door, over real sockets.

SPEC §4: "A failure after the first byte of a stream ends it in that dialect's way: native
``{"done": true, "error"}``; OpenAI Chat an error chunk, then ``[DONE]``; Anthropic
``event: error``; Responses ``response.failed``; Ollama ``{"error": …}``. Every event
parsed before the failure reaches the client first."

chatd is served by hypercorn on 127.0.0.1:0 and calls, through its real h11 transport, a
raw-socket upstream on 127.0.0.1:0 that streams one event and then fails: with an error
event of its own wire format (then a well-framed end of body), or by closing the
connection in the middle of the chunked body. The upstream speaks Ollama (``ollama/``) or
OpenAI Chat (``kimi/``), so every door meets a failure from another dialect and the OpenAI
door one from its own. Each door's ending is checked here against the sentence above,
byte for byte where the SPEC names bytes; :mod:`door_shapes` reads the error's type.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx
import orjson
import pytest
from canned import Answer, chunk, lab, sse, sse_events
from chatd_served import served
from door_shapes import door_paths, request_body, stream_error_type

from server.app import create_app
from server.config import load_config

pytestmark = pytest.mark.anyio

KEY = "sk-kimi-endings-key"


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _ollama(path: str, text: str) -> bytes:
    obj: dict[str, Any] = {"model": "m", "created_at": "2026-01-01T00:00:00Z", "done": False}
    if path.endswith("/generate"):
        obj["response"] = text
    else:
        obj["message"] = {"role": "assistant", "content": text}
    return orjson.dumps(obj) + b"\n"


def _openai(text: str) -> bytes:
    return b"data: " + orjson.dumps({
        "id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }) + b"\n\n"


async def _read_request(stream: anyio.abc.ByteStream) -> tuple[str, dict[str, Any]]:
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive()
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += await stream.receive()
    return head.split(b" ")[1].decode(), orjson.loads(body)


async def _upstream_connection(stream: anyio.abc.SocketStream) -> None:
    """One call: a 200 chunked stream, its first event, then the fault its model names."""
    async with stream:
        path, request = await _read_request(stream)
        fault = str(request["model"])
        openai = path.endswith("/chat/completions")
        content_type = b"text/event-stream" if openai else b"application/x-ndjson"
        await stream.send(b"HTTP/1.1 200 OK\r\ncontent-type: " + content_type
                          + b"\r\ntransfer-encoding: chunked\r\n\r\n")
        await stream.send(_chunk(_openai("first ") if openai else _ollama(path, "first ")))
        await anyio.sleep(0.05)  # the first event is relayed before the fault arrives
        if fault == "cut":
            return  # closes mid-body: no terminating chunk
        error = (b'data: {"error": {"message": "the model fell over", "type": "server_error"}}'
                 b"\n\n" if openai else b'{"error": "the model fell over"}\n')
        await stream.send(_chunk(error) + b"0\r\n\r\n")
        with anyio.move_on_after(5), contextlib.suppress(anyio.EndOfStream):
            await stream.receive()  # until chatd hangs up


@asynccontextmanager
async def _upstream() -> AsyncIterator[int]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, _upstream_connection)
        yield port
        tg.cancel_scope.cancel()


def _sse(body: bytes) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for block in body.split(b"\n\n"):
        lines = block.split(b"\n")
        name = next((x[6:].strip().decode() for x in lines if x.startswith(b"event:")), "")
        data = b"\n".join(x[5:].strip() for x in lines if x.startswith(b"data:"))
        if data:
            out.append((name, data))
    return out


def _native(body: bytes) -> None:
    last = orjson.loads(body.splitlines()[-1])
    assert last["done"] is True and set(last["error"]) >= {"type", "message"}, last


def _openai_end(body: bytes) -> None:
    *_, (_, error), (_, done) = _sse(body)
    assert done == b"[DONE]" and body.endswith(b"\n\ndata: [DONE]\n\n"), body[-300:]
    assert set(orjson.loads(error)) == {"error"}, error


def _anthropic(body: bytes) -> None:
    name, data = _sse(body)[-1]
    assert name == "error" and orjson.loads(data)["type"] == "error", body[-300:]


def _responses(body: bytes) -> None:
    name, data = _sse(body)[-1]
    assert name == "response.failed", body[-300:]
    assert orjson.loads(data)["response"]["status"] == "failed", data


def _ollama_end(body: bytes) -> None:
    last = orjson.loads(body.splitlines()[-1])
    assert isinstance(last["error"], str) and last["error"], last


#: SPEC §4's ending of each door, by door name.
ENDINGS: dict[str, Callable[[bytes], None]] = {
    "native": _native, "openai": _openai_end, "anthropic": _anthropic,
    "responses": _responses, "ollama": _ollama_end,
}

#: The fault -> the SPEC §4 type the stream must end with.
FAULTS = {"error": "upstream_error", "cut": "bad_upstream_response"}


def test_every_door_has_its_ending_here() -> None:
    assert set(door_paths().values()) <= set(ENDINGS)


@pytest.mark.parametrize("path", sorted(door_paths()))
@pytest.mark.parametrize("provider", ["ollama", "kimi"])
@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_a_stream_that_fails_mid_way_ends_in_its_doors_way(
    path: str, provider: str, fault: str, anyio_backend: str
) -> None:
    async with _upstream() as upstream:
        config = load_config(
            f'[chatd]\nollama_url = "http://127.0.0.1:{upstream}"\n'
            f'[chatd.providers.kimi]\nbase_url = "http://127.0.0.1:{upstream}/v1"\n'
            'key_file = "/nonexistent/kimi.env"\n'
            + "".join(f'[chatd.providers.{name}]\nkey_file = "/nonexistent/x.env"\n'
                      for name in ("ollama_cloud", "openrouter", "opencode"))
        )
        app = create_app(config, environ={"KIMI_API_KEY": KEY})
        async with served(app) as port, httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=10
        ) as client:
            response = await client.post(
                path, content=request_body(path, f"{provider}/{fault}", True),
                headers={"content-type": "application/json"},
            )
    body = response.content
    assert response.status_code == 200, body
    ENDINGS[door_paths()[path]](body)
    assert stream_error_type(path, body) == FAULTS[fault], body[-300:]
    assert b"first " in body  # the event before the failure reached the client first
    assert body.index(b"first ") < body.rindex(b"fell over" if fault == "error" else b"error")


# --- what a door cannot render, in the same read as what it can -------------------------
#
# SPEC §4's last sentence again, for a failure in the door rather than the upstream: the
# upstream's events arrive in one read and a later one cannot be rendered by the client's
# door. Every door's renderer with a jammed event: tests/test_relay.py; here, the upstream
# bytes that make a door fail for real.

INTERLEAVED_CALLS = [
    chunk({"role": "assistant", "content": "Let me check."}),
    chunk({"tool_calls": [{"index": 0, "id": "call_A", "type": "function",
                           "function": {"name": "fa", "arguments": ""}}]}),
    chunk({"tool_calls": [{"index": 1, "id": "call_B", "type": "function",
                           "function": {"name": "fb", "arguments": '{"y":'}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"x":1}'}}]}),
    chunk({"tool_calls": [{"index": 1, "function": {"arguments": "2}"}}]}),
    {**chunk({}, "tool_calls"),
     "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}},
]


async def test_anthropic_door_delivers_events_parsed_before_a_failure_in_the_same_read(
        tmp_path: Path) -> None:
    """SPEC §4: "Every event parsed before the failure reaches the client first, however
    the upstream's bytes were split." When the upstream's events arrive in one read and a
    later one cannot be rendered, the relay drops the whole batch (``renderer.events``
    raises and its rendered bytes are discarded, server/relay.py ``_relay_stream``): the
    client gets a lone ``event: error``, no ``message_start`` and no text."""
    answer = sse(INTERLEAVED_CALLS)
    async with lab(tmp_path) as s, s.http() as client:
        s.up.answers["m"] = Answer(200, "text/event-stream", (b"".join(answer.pieces),))
        r = await client.post("/v1/messages", json={
            "model": "oai/m", "max_tokens": 50, "stream": True,
            "tools": [{"name": "fa", "input_schema": {"type": "object"}},
                      {"name": "fb", "input_schema": {"type": "object"}}],
            "messages": [{"role": "user", "content": "hi"}]})
        events = sse_events(r.text)
    assert events and events[0][0] == "message_start", events
    texts = [d["delta"].get("text") for name, d in events if name == "content_block_delta"]
    assert "Let me check." in texts, events


def _deep(levels: int) -> object:
    """JSON nested ``levels`` deep: read (orjson reads 1,024 levels) but not written back
    (it writes 254), so a door that re-encodes it fails (server/relay.py ``unencodable``)."""
    value: object = 1
    for _ in range(levels):
        value = [value]
    return value


def _named(name: str, obj: dict[str, Any]) -> bytes:
    # The stdlib writes any depth (orjson, like the doors, stops at 254).
    return f"event: {name}\ndata: {json.dumps(obj)}\n\n".encode()


_MESSAGE: dict[str, Any] = {"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 1, "output_tokens": 1}}
_ANTHROPIC = (
    _named("message_start", {"type": "message_start", "message": _MESSAGE}),
    _named("content_block_start", {"type": "content_block_start", "index": 0,
                                   "content_block": {"type": "text", "text": ""}}),
    _named("content_block_delta", {"type": "content_block_delta", "index": 0,
                                   "delta": {"type": "text_delta", "text": "Let me check."}}),
    _named("ping", {"type": "ping", "deep": _deep(300)}),
    _named("message_stop", {"type": "message_stop"}),
)
_RESPONSE: dict[str, Any] = {"id": "resp_1", "object": "response", "created_at": 1, "model": "m",
             "status": "in_progress", "output": []}
_RESPONSES = (
    _named("response.created", {"type": "response.created", "sequence_number": 0,
                                "response": _RESPONSE}),
    _named("response.output_item.added", {
        "type": "response.output_item.added", "sequence_number": 1, "output_index": 0,
        "item": {"id": "msg_1", "type": "message", "status": "in_progress",
                 "role": "assistant", "content": []}}),
    _named("response.output_text.delta", {
        "type": "response.output_text.delta", "sequence_number": 2, "item_id": "msg_1",
        "output_index": 0, "content_index": 0, "delta": "Let me check."}),
    _named("response.output_text.done", {
        "type": "response.output_text.done", "sequence_number": 3, "item_id": "msg_1",
        "output_index": 0, "content_index": 0, "text": "Let me check.", "deep": _deep(300)}),
)
_TOO_MANY_CALLS = (
    b"data: " + orjson.dumps(chunk({"role": "assistant", "content": "Let me check."}))
    + b"\n\n",
    *(b"data: " + orjson.dumps(chunk({"tool_calls": [{
        "index": i, "id": f"call_{i}", "type": "function",
        "function": {"name": "f", "arguments": "{}"}}]})) + b"\n\n" for i in range(129)),
    b"data: " + orjson.dumps(chunk({}, "tool_calls")) + b"\n\ndata: [DONE]\n\n",
)

#: door path, upstream model, what the upstream sends (in one read, or one piece each),
#: the error type the door ends with. The Anthropic and Responses doors re-encode a
#: same-dialect upstream's events, so one nested past what orjson writes cannot go on;
#: the Ollama door buffers tool calls and refuses past ``MAX_TOOL_CALLS`` (128).
UNRENDERABLE = [
    ("/v1/messages", "ant/m", _ANTHROPIC, "bad_upstream_response"),
    ("/v1/responses", "rsp/m", _RESPONSES, "bad_upstream_response"),
    ("/api/chat", "oai/m", _TOO_MANY_CALLS, "bad_upstream_response"),
]


@pytest.mark.parametrize("split", ["one-read", "as-written"])
@pytest.mark.parametrize(("path", "model", "pieces", "error"), UNRENDERABLE,
                         ids=[row[0] for row in UNRENDERABLE])
async def test_what_a_door_rendered_before_an_event_it_cannot_reaches_the_client(
    tmp_path: Path, path: str, model: str, pieces: tuple[bytes, ...], error: str, split: str
) -> None:
    async with lab(tmp_path) as s, s.http() as client:
        s.up.answers["m"] = Answer(200, "text/event-stream",
                                   (b"".join(pieces),) if split == "one-read" else pieces)
        r = await client.post(path, content=request_body(path, model, True),
                              headers={"content-type": "application/json"})
    body = r.content
    assert r.status_code == 200, body
    ENDINGS[door_paths()[path]](body)
    assert stream_error_type(path, body) == error, body[-300:]
    assert b"Let me check." in body, body[:300]
