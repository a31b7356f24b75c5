"""SPEC §5's limits for hostile or careless clients: their settings, and each one held."""

from __future__ import annotations

import pytest

from server.config import DEFAULT_CONFIG, ConfigError, load_config

LIMITS = {
    "client_body_timeout_secs": 30.0, "max_connections": 2048, "max_in_flight": 1024,
    "stream_idle_secs": 120.0, "stream_max_secs": 1800.0, "shutdown_grace_secs": 30.0,
}


def test_limit_defaults_are_spec_values() -> None:
    assert {name: getattr(DEFAULT_CONFIG.chatd, name) for name in LIMITS} == LIMITS


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_limit_is_read(name: str) -> None:
    config = load_config(f"[chatd]\n{name} = 7\n")
    assert getattr(config.chatd, name) == 7


@pytest.mark.parametrize(
    ("text", "message"),
    [("client_body_timeout_secs = 0", "chatd.client_body_timeout_secs: must be a positive"),
     ("stream_idle_secs = 'x'", "chatd.stream_idle_secs: expected a number, got string"),
     ("stream_max_secs = inf", "chatd.stream_max_secs: must be a positive"),
     ("shutdown_grace_secs = -1", "chatd.shutdown_grace_secs: must be a positive"),
     ("max_connections = 1.5", "chatd.max_connections: expected an integer, got float"),
     ("max_in_flight = 0", "chatd.max_in_flight: must be positive"),
     ("max_in_flight = true", "chatd.max_in_flight: expected an integer, got boolean")],
    ids=["body-zero", "idle-type", "max-inf", "grace-negative", "conn-float", "inflight-zero",
         "inflight-bool"],
)
def test_bad_limit_names_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(f"[chatd]\n{text}\n")
    assert str(info.value).startswith(message), str(info.value)


# -- held: through the app, every door ----------------------------------------------------

import socket  # noqa: E402
import time  # noqa: E402
from collections.abc import AsyncIterator  # noqa: E402
from typing import Any  # noqa: E402

import anyio  # noqa: E402
import mock_stack  # noqa: E402
import orjson  # noqa: E402
from chatd_served import served  # noqa: E402
from door_shapes import door_paths, error_type, request_body, stream_error_type  # noqa: E402
from mock_stack import app_over  # noqa: E402
from test_server import call, running  # noqa: E402

from chatproto import HTTPRequest  # noqa: E402
from server.app import ChatdApp  # noqa: E402
from transports import MockResponse, MockTransport  # noqa: E402

KEY = "sk-kimi-limits-key"
PATHS = sorted(door_paths())


def make(handler: Any, extra: str = "") -> ChatdApp:
    return app_over(MockTransport(handler), mock_stack.config(extra, models=""),
                    {"KIMI_API_KEY": KEY})


def sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def chunk(text: str) -> bytes:
    return sse({"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "k",
                "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]})


def answer(content: str = "hello") -> MockResponse:
    body = {"id": "x", "object": "chat.completion", "created": 1, "model": "k",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1}}
    return MockResponse(200, [("content-type", "application/json")], (orjson.dumps(body),))


def streaming(chunks: AsyncIterator[bytes]) -> MockResponse:
    return MockResponse(200, [("content-type", "text/event-stream")], chunks)


@pytest.mark.anyio
@pytest.mark.parametrize("path", PATHS)
async def test_a_body_not_received_in_time_is_408(path: str, anyio_backend: str) -> None:
    """SPEC §5 client_body_timeout_secs: a body that stops arriving holds its connection no
    longer than the deadline; the client hears 408 in its door's shape."""
    app = make(lambda request: answer(), "client_body_timeout_secs = 0.3")
    async with served(app) as port:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                         "\r\nContent-Length: 1000\r\n\r\n{\"model\":".encode())
            started = time.monotonic()
            data = b""
            with anyio.fail_after(5):
                while b"\r\n\r\n" not in data or not data.endswith(b"}"):
                    more = await anyio.to_thread.run_sync(sock.recv, 65536)
                    if not more:
                        break
                    data += more
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), head
    assert error_type(path, 408, body) == "request_timeout"
    assert time.monotonic() - started < 3


@pytest.mark.anyio
@pytest.mark.parametrize("path", PATHS)
async def test_past_max_in_flight_is_503_with_retry_after(path: str, anyio_backend: str) -> None:
    release = anyio.Event()

    async def slow(request: HTTPRequest) -> MockResponse:
        await release.wait()
        return answer()

    app = make(slow, "max_in_flight = 2")
    results: list[Any] = []
    async with running(app), anyio.create_task_group() as tg:
        async def one() -> None:
            results.append(await call(app, "POST", path, request_body(path, "kimi/k", False)))

        tg.start_soon(one)
        tg.start_soon(one)
        await anyio.sleep(0.05)
        refused = await call(app, "POST", path, request_body(path, "kimi/k", False))
        health = await call(app, "GET", "/healthz")
        release.set()
    assert refused.status == 503, refused.body
    assert refused.headers["retry-after"] == "2"
    assert error_type(path, 503, refused.body) == "overloaded"
    assert health.status == 200  # health answers while chatd is saturated
    assert [r.status for r in results] == [200, 200]


def pinging() -> MockResponse:
    async def chunks() -> AsyncIterator[bytes]:
        yield chunk("first")
        while True:  # SSE comments: bytes that keep the connection busy, never an event
            await anyio.sleep(0.05)
            yield b": keep-alive\n\n"

    return streaming(chunks())


def endless() -> MockResponse:
    async def chunks() -> AsyncIterator[bytes]:
        while True:
            yield chunk("more ")
            await anyio.sleep(0.05)

    return streaming(chunks())


@pytest.mark.anyio
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("upstream", "extra", "needle"),
    [(pinging, "stream_idle_secs = 0.3", "stream_idle_secs"),
     (endless, "stream_max_secs = 0.4", "stream_max_secs")],
    ids=["idle-upstream", "past-max"],
)
async def test_a_stream_ends_at_its_limit_with_the_doors_error(
    path: str, upstream: Any, extra: str, needle: str, anyio_backend: str
) -> None:
    """SPEC §5: an upstream that sends keep-alives but no event for stream_idle_secs, or a
    stream that runs past stream_max_secs, ends with an error in the dialect's way."""
    app = make(lambda request: upstream(), extra)
    started = anyio.current_time()
    async with running(app):
        result = await call(app, "POST", path, request_body(path, "kimi/k", True))
    assert result.status == 200
    assert stream_error_type(path, result.body) == "upstream_timeout", result.body
    assert needle.encode() in result.body
    assert b"first" in result.body or b"more" in result.body  # what came before is there
    assert anyio.current_time() - started < 3


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/v1/chat", "/v1/chat/completions"])
async def test_a_client_that_reads_nothing_has_its_upstream_call_cancelled(
    path: str, anyio_backend: str
) -> None:
    """SPEC §5: a client that reads nothing for stream_idle_secs (its socket buffers full,
    every write blocked) has its upstream call, and its token spend, cancelled."""
    closed = anyio.Event()
    big = "x" * 60_000

    def flood(request: HTTPRequest) -> MockResponse:
        async def chunks() -> AsyncIterator[bytes]:
            try:
                while True:
                    yield chunk(big)
                    await anyio.sleep(0)
            finally:
                closed.set()

        return streaming(chunks())

    app = make(flood, "stream_idle_secs = 0.5")
    async with served(app) as port:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        body = request_body(path, "kimi/k", True)
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        try:
            with anyio.fail_after(10):
                await closed.wait()
        finally:
            sock.close()


@pytest.mark.anyio
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_a_bug_is_answered_in_the_doors_shape(
    path: str, stream: bool, anyio_backend: str
) -> None:
    """SPEC §4: an unexpected exception is a bug, answered 500 internal_error in the door's
    own shape before the head, and ended the dialect's way after it."""

    def broken(request: HTTPRequest) -> MockResponse:
        if not stream:
            raise RuntimeError("a bug")

        async def chunks() -> AsyncIterator[bytes]:
            yield chunk("first")
            raise RuntimeError("a bug mid-stream")

        return streaming(chunks())

    app = make(broken)
    async with running(app):
        result = await call(app, "POST", path, request_body(path, "kimi/k", stream))
    if stream:
        assert result.status == 200
        assert stream_error_type(path, result.body) == "internal_error", result.body
    else:
        assert result.status == 500
        assert error_type(path, 500, result.body) == "internal_error"


@pytest.mark.anyio
@pytest.mark.parametrize("size", [256 * 1024 + 1, 3 * 1024 * 1024], ids=["just-large", "3MiB"])
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_a_large_body_is_read_whole(size: int, declared: bool, anyio_backend: str) -> None:
    """A declared length past 256 KiB is received into one buffer of that size (the
    memory bound of SPEC §5's 8 MiB bodies); what the door parses is the body, exactly."""
    seen: list[bytes] = []

    def upstream(request: HTTPRequest) -> MockResponse:
        seen.append(request.body)
        return answer()

    text = "é" * ((size - 100) // 2)
    body = orjson.dumps({"model": "kimi/k", "messages": [{"role": "user", "content": text}]})
    pieces = [body[i:i + 65536] for i in range(0, len(body), 65536)]
    headers = [("content-length", str(len(body)))] if declared else []
    app = make(upstream)
    async with running(app):
        result = await call(app, "POST", "/v1/chat", pieces, headers=headers)
    assert result.status == 200, result.body
    [sent] = seen
    assert orjson.loads(sent)["messages"][-1]["content"] == text


@pytest.mark.anyio
async def test_slow_bodies_cannot_hold_every_slot(anyio_backend: str) -> None:
    """Bodies still arriving take at most half of max_in_flight; past it the one arriving
    longest is cut with a 408, so a normal request is still served at once instead of
    waiting client_body_timeout_secs behind clients that never finish."""
    app = make(lambda request: answer(), "max_in_flight = 4\nclient_body_timeout_secs = 30")
    async with served(app) as port:
        slow = []
        for _ in range(4):  # enough to fill max_in_flight, were they all let in
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"POST /v1/chat HTTP/1.1\r\nHost: x\r\nContent-Type: "
                         b"application/json\r\nContent-Length: 1000\r\n\r\n{")
            slow.append(sock)
            await anyio.sleep(0.1)  # in order: the first is the oldest
        body = request_body("/v1/chat", "kimi/k", False)
        with anyio.fail_after(5):
            normal = await call(app, "POST", "/v1/chat", body)  # a third body: room made
        assert normal.status == 200, normal.body
        answers = [await anyio.to_thread.run_sync(sock.recv, 65536) for sock in slow[:3]]
        for sock in slow:
            sock.close()
    for data in answers:  # the three oldest were cut: the newest two may arrive, not more
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 "), head
        assert b"its place for other requests" in rest
