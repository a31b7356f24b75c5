"""The ASGI app against in-memory upstreams: every SPEC §4 row, streaming, fallback, metrics.

Two ways in, neither through httpx's ASGITransport (it buffers whole bodies):
:func:`call` drives the app directly with our own ``receive``/``send``, for the
table-driven cases; :func:`chatd_served.served` runs it under hypercorn on 127.0.0.1:0
(the worker class matching the test's anyio backend) for what needs a real connection:
body limits on the wire, incremental streaming, client disconnects. Upstreams are
``MockTransport`` handlers that answer in each provider's real wire format, parsed by the
real codecs."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import orjson
import pytest
from chatd_served import served
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mock_stack import app_over, config

from chatproto import ChatError, HTTPRequest
from server.app import ChatdApp, create_app
from server.config import ConfigError, load_config
from transports import MockResponse, MockTransport

KEY = "sk-kimi-SECRET-3c9e1f07aa-never-shown"
TOKEN = "client-token-5d2a"

# Upstream hosts; ollama_cloud/openrouter/opencode have no key (their key files do not
# exist), kimi's key comes from the environment mapping below.
CONFIG = config("max_body_bytes = 1024")
ENV = {"KIMI_API_KEY": KEY}

Handler = Callable[[HTTPRequest], MockResponse | Awaitable[MockResponse]]


def make_app(handler: Handler, *, extra: str = "", env: dict[str, str] | None = None
             ) -> tuple[ChatdApp, MockTransport]:
    transport = MockTransport(handler)
    app = app_over(transport, config(extra + "\nmax_body_bytes = 1024"),
                   ENV if env is None else env)
    return app, transport


# --- upstream wire formats ---------------------------------------------------------------

def ollama_answer(content: str = "Hi there", *, prompt: int = 7, completion: int = 2,
                  done_reason: str = "stop", **message: Any) -> MockResponse:
    body = {"model": "m", "created_at": "2025-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": content, **message},
            "done": True, "done_reason": done_reason,
            "prompt_eval_count": prompt, "eval_count": completion}
    return MockResponse(200, [("content-type", "application/json")], (orjson.dumps(body),))


def ollama_lines(*contents: str, end: bool = True, prompt: int = 5,
                 completion: int = 3) -> list[bytes]:
    lines = [orjson.dumps({"model": "m", "created_at": "t", "done": False,
                           "message": {"role": "assistant", "content": c}}) + b"\n"
             for c in contents]
    if end:
        lines.append(orjson.dumps({
            "model": "m", "created_at": "t", "done": True, "done_reason": "stop",
            "message": {"role": "assistant", "content": ""},
            "prompt_eval_count": prompt, "eval_count": completion}) + b"\n")
    return lines


def ollama_stream(*contents: str, end: bool = True) -> MockResponse:
    return MockResponse(200, [("content-type", "application/x-ndjson")],
                        ollama_lines(*contents, end=end))


def ollama_error(status: int, message: str, headers: Iterable[tuple[str, str]] = ()
                 ) -> MockResponse:
    return MockResponse(status, [("content-type", "application/json"), *headers],
                        (orjson.dumps({"error": message}),))


def openai_answer(content: str) -> MockResponse:
    body = {"id": "x", "object": "chat.completion", "created": 1, "model": "kimi-k2",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5}}
    return MockResponse(200, [("content-type", "application/json")], (orjson.dumps(body),))


def openai_error(status: int, message: str, headers: Iterable[tuple[str, str]] = ()
                 ) -> MockResponse:
    body = {"error": {"message": message, "type": "error", "code": status}}
    return MockResponse(status, [("content-type", "application/json"), *headers],
                        (orjson.dumps(body),))


def chat_body(model: object = "qwen3:4b", **fields: Any) -> bytes:
    return orjson.dumps({"model": model,
                         "messages": [{"role": "user", "content": "hello"}], **fields})


# --- driving the app directly -------------------------------------------------------------

@dataclass
class Result:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)

    def lines(self) -> list[Any]:
        return [orjson.loads(line) for line in self.body.splitlines()]


async def call(app: ChatdApp, method: str, path: str, body: bytes | list[bytes] = b"",
               headers: Iterable[tuple[str, str]] = (),
               on_send: Callable[[Any], Awaitable[None]] | None = None) -> Result:
    """One request through the ASGI interface; ``body`` as a list arrives in pieces;
    ``on_send`` sees each message once it is recorded (a slow client write, say)."""
    pieces = body if isinstance(body, list) else [body]
    inbox: list[dict[str, Any]] = [
        {"type": "http.request", "body": p, "more_body": i + 1 < len(pieces)}
        for i, p in enumerate(pieces)
    ]

    complete = anyio.Event()

    async def receive() -> dict[str, Any]:
        if inbox:
            return inbox.pop(0)
        # ASGI: "http.disconnect: sent to the application if receive is called after a
        # response has been sent" (hypercorn and uvicorn both do).
        await complete.wait()
        return {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(dict(message))
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            complete.set()
        if on_send is not None:
            await on_send(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers]}
    with anyio.fail_after(10):
        await app(scope, receive, send)
    assert sent and sent[0]["type"] == "http.response.start"
    assert all(m["type"] == "http.response.body" for m in sent[1:])
    assert not sent[-1].get("more_body", False), "response never finished"
    return Result(sent[0]["status"],
                  {k.decode(): v.decode() for k, v in sent[0]["headers"]},
                  b"".join(m.get("body", b"") for m in sent[1:]))


@asynccontextmanager
async def running(app: ChatdApp) -> AsyncIterator[ChatdApp]:
    await app.startup()
    try:
        yield app
    finally:
        await app.shutdown()


async def chat(handler: Handler, body: bytes | list[bytes], *, extra: str = "",
               headers: Iterable[tuple[str, str]] = ()) -> tuple[Result, MockTransport]:
    app, transport = make_app(handler, extra=extra)
    async with running(app):
        return await call(app, "POST", "/v1/chat", body, headers), transport


def assert_error(result: Result, status: int, type_: str, **fields: object) -> dict[str, Any]:
    assert result.status == status, result.body
    assert result.headers["content-type"] == "application/json"
    assert result.headers["x-request-id"]
    error = result.json()["error"]
    assert error["type"] == type_
    assert isinstance(error["message"], str) and error["message"]
    for key, value in fields.items():
        assert error[key] == value, (key, error)
    return dict(error)


def never_called(request: HTTPRequest) -> MockResponse:
    raise AssertionError(f"upstream must not be called: {request!r}")


# --- SPEC §4: the caller's mistakes ------------------------------------------------------

INVALID_BODIES = [
    ("not-json", b"{nope"),
    ("empty-body", b""),
    ("array", b"[1, 2]"),
    ("string", b'"hi"'),
    ("missing-model", orjson.dumps({"messages": [{"role": "user", "content": "x"}]})),
    ("model-number", chat_body(model=3)),
    ("model-null", chat_body(model=None)),
    ("model-blank", chat_body(model="   ")),
    ("prefix-without-model", chat_body(model="ollama/")),
    ("openrouter-without-vendor", chat_body(model="openrouter/kimi")),
    ("messages-missing", orjson.dumps({"model": "m"})),
    ("messages-object", orjson.dumps({"model": "m", "messages": {"role": "user"}})),
    ("messages-empty", orjson.dumps({"model": "m", "messages": []})),
    ("bad-role", orjson.dumps({"model": "m", "messages": [{"role": "robot", "content": "x"}]})),
    ("max-tokens-string", chat_body(max_tokens="10")),
    ("temperature-bool", chat_body(temperature=True)),
    ("stream-string", chat_body(stream="yes")),
    ("invalid-utf8", b'{"model": "\xff", "messages": []}'),
]


@pytest.mark.anyio
@pytest.mark.parametrize("body", [b for _, b in INVALID_BODIES],
                         ids=[i for i, _ in INVALID_BODIES])
async def test_invalid_request_is_400(body: bytes) -> None:
    result, transport = await chat(never_called, body)
    assert_error(result, 400, "invalid_request")
    assert transport.requests == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("model", "provider"),
    [("kimi-k2.6:cloud", "ollama_cloud"), ("ollama_cloud/qwen3", "ollama_cloud"),
     ("openrouter/moonshotai/kimi-k2", "openrouter"), ("opencode/grok", "opencode")],
)
async def test_unregistered_provider_is_404_without_fall_through(model: str,
                                                                 provider: str) -> None:
    result, transport = await chat(never_called, chat_body(model=model))
    assert_error(result, 404, "provider_not_registered", provider=provider)
    assert transport.requests == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("method", "path", "status", "type_", "allow"),
    [("GET", "/nope", 404, "not_found", None),
     ("GET", "/v1/chat/", 404, "not_found", None),
     ("GET", "/v1/chat", 405, "method_not_allowed", "POST"),
     ("PUT", "/v1/chat", 405, "method_not_allowed", "POST"),
     ("POST", "/healthz", 405, "method_not_allowed", "GET, HEAD"),
     ("DELETE", "/v1/chat/providers", 405, "method_not_allowed", "GET, HEAD"),
     ("POST", "/metrics", 405, "method_not_allowed", "GET, HEAD"),
     ("HEAD", "/v1/chat", 405, "method_not_allowed", "POST")],
    ids=["unknown", "trailing-slash", "get-chat", "put-chat", "post-healthz",
         "delete-providers", "post-metrics", "head-on-post-only"],
)
async def test_routes_404_and_405(method: str, path: str, status: int, type_: str,
                                  allow: str | None) -> None:
    app, _ = make_app(never_called)
    async with running(app):
        result = await call(app, method, path)
    assert_error(result, status, type_)
    assert result.headers.get("allow") == allow


@pytest.mark.anyio
@pytest.mark.parametrize(("method", "body"), [("GET", b"Ollama is running"), ("HEAD", b"")])
async def test_ollama_heartbeat_at_root(method: str, body: bytes) -> None:
    """Ollama's client sends HEAD / before most commands; chatd answers as Ollama does."""
    app, _ = make_app(never_called)
    async with running(app):
        result = await call(app, method, "/")
    assert (result.status, result.body) == (200, body)
    assert result.headers["content-length"] == "17"
    assert result.headers["content-type"].startswith("text/plain")


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/healthz", "/v1/chat/providers", "/api/version"])
async def test_head_is_get_without_the_content(path: str) -> None:
    """RFC 9110 §9.3.2: the same status and headers as GET, no content."""
    app, _ = make_app(never_called)
    async with running(app):
        got = await call(app, "GET", path)
        head = await call(app, "HEAD", path)
    assert (head.status, head.body) == (got.status, b"")
    assert head.headers["content-length"] == got.headers["content-length"] == str(len(got.body))


@pytest.mark.anyio
async def test_root_refuses_other_methods() -> None:
    app, _ = make_app(never_called)
    async with running(app):
        result = await call(app, "POST", "/")
    assert_error(result, 405, "method_not_allowed")
    assert result.headers["allow"] == "GET, HEAD"


AUTH_CASES = [
    ("missing", (), 401),
    ("wrong-token", (("Authorization", "Bearer nope"),), 401),
    ("wrong-scheme", (("Authorization", f"Basic {TOKEN}"),), 401),
    ("no-scheme", (("Authorization", TOKEN),), 401),
    ("prefix-of-token", (("Authorization", f"Bearer {TOKEN[:-1]}"),), 401),
    ("right", (("Authorization", f"Bearer {TOKEN}"),), 200),
    ("scheme-any-case", (("Authorization", f"bearer {TOKEN}"),), 200),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("headers", "status"), [(h, s) for _, h, s in AUTH_CASES],
                         ids=[i for i, _, _ in AUTH_CASES])
@pytest.mark.parametrize("path", ["/v1/chat/providers", "/metrics", "/nope"])
async def test_client_auth(headers: tuple[tuple[str, str], ...], status: int,
                           path: str) -> None:
    app, _ = make_app(never_called, extra='auth_token_env = "CHATD_TOKEN"\n',
                      env={**ENV, "CHATD_TOKEN": TOKEN})
    async with running(app):
        result = await call(app, "GET", path, headers=headers)
        health = await call(app, "GET", "/healthz")
    if status == 401:
        assert_error(result, 401, "unauthorized")
        assert result.headers["www-authenticate"] == "Bearer"
        assert TOKEN.encode() not in result.body
    else:
        assert result.status == (404 if path == "/nope" else 200)
    assert (health.status, health.json()) == (200, {"status": "ok"})


@pytest.mark.anyio
async def test_auth_token_variable_unset_refuses_to_start() -> None:
    """Fail closed: no app is built, so nothing is served without the token."""
    with pytest.raises(ConfigError, match="CHATD_TOKEN"):
        make_app(never_called, extra='auth_token_env = "CHATD_TOKEN"\n')


@pytest.mark.anyio
@pytest.mark.parametrize("pieces", [1, 3], ids=["whole", "in-pieces"])
async def test_body_limit_counted_as_it_arrives(pieces: int) -> None:
    body = chat_body(pad="x" * 1100)
    size = math.ceil(len(body) / pieces)
    parts = [body[i:i + size] for i in range(0, len(body), size)]
    result, transport = await chat(never_called, parts)
    assert_error(result, 413, "request_too_large")
    assert transport.requests == []


@pytest.mark.anyio
async def test_body_limit_by_content_length_before_reading() -> None:
    app, _ = make_app(never_called)
    received: list[str] = []

    async def receive() -> dict[str, Any]:
        received.append("read")
        raise AssertionError("the body must not be read")

    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/chat",
             "headers": [(b"content-length", b"1025")]}
    async with running(app):
        await app(scope, receive, send)
    assert received == []
    assert sent[0]["status"] == 413


# --- SPEC §4: upstream failures ----------------------------------------------------------

UPSTREAM_STATUSES = [
    (400, 400, "upstream_rejected", None),
    (413, 400, "upstream_rejected", None),
    (422, 400, "upstream_rejected", None),
    (429, 429, "rate_limited", "7"),
    (503, 503, "upstream_overloaded", "7"),
    (401, 502, "upstream_error", None),
    (402, 502, "upstream_error", None),
    (403, 502, "upstream_error", None),
    (404, 502, "upstream_error", None),
    (500, 502, "upstream_error", None),
    (502, 502, "upstream_error", None),
]


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize(("upstream", "status", "type_", "retry_after"), UPSTREAM_STATUSES,
                         ids=[str(u[0]) for u in UPSTREAM_STATUSES])
async def test_upstream_status_mapping(upstream: int, status: int, type_: str,
                                       retry_after: str | None, stream: bool) -> None:
    def handler(request: HTTPRequest) -> MockResponse:
        return ollama_error(upstream, f"upstream says {upstream}", [("Retry-After", "7")])

    result, _ = await chat(handler, chat_body(stream=stream))
    assert_error(result, status, type_, provider="ollama", upstream_status=upstream,
                 message=f"upstream says {upstream}")
    assert result.headers.get("retry-after") == retry_after


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize(("upstream", "status", "type_"),
                         [(429, 429, "rate_limited"), (503, 503, "upstream_overloaded")])
async def test_huge_error_page_keeps_its_status(upstream: int, status: int, type_: str,
                                                stream: bool) -> None:
    """A 429/503 with a page far over the error-body cap is still classified by status."""
    page = b"<html>" + b"x" * (1 << 20) + b"</html>"

    def handler(request: HTTPRequest) -> MockResponse:
        return MockResponse(upstream, [("content-type", "text/html"), ("Retry-After", "3")],
                            [page[i : i + 65536] for i in range(0, len(page), 65536)])

    result, _ = await chat(handler, chat_body(stream=stream))
    assert_error(result, status, type_, provider="ollama", upstream_status=upstream)
    assert result.headers.get("retry-after") == "3"


@pytest.mark.anyio
async def test_absurd_retry_after_is_capped_not_a_500() -> None:
    """400 digits of delay-seconds are a float infinity; it is passed on capped at a day."""
    def handler(request: HTTPRequest) -> MockResponse:
        return ollama_error(429, "slow down", [("Retry-After", "9" * 400)])

    result, _ = await chat(handler, chat_body())
    assert_error(result, 429, "rate_limited")
    assert result.headers["retry-after"] == "86400"


@pytest.mark.anyio
async def test_retry_after_milliseconds_rounded_up() -> None:
    def handler(request: HTTPRequest) -> MockResponse:
        return ollama_error(429, "slow down", [("retry-after-ms", "1500")])

    result, _ = await chat(handler, chat_body())
    assert result.headers["retry-after"] == "2"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("raised", "status"),
    [("upstream_timeout", 504), ("upstream_unavailable", 502)],
)
async def test_transport_failures_blame_the_provider(raised: str, status: int) -> None:
    def handler(request: HTTPRequest) -> MockResponse:
        raise ChatError(raised, "connecting to ollama.test:11434: connection refused")

    result, _ = await chat(handler, chat_body())
    error = assert_error(result, status, raised, provider="ollama")
    assert "upstream_status" not in error


@pytest.mark.anyio
async def test_real_timeout_is_504() -> None:
    async def handler(request: HTTPRequest) -> MockResponse:
        await anyio.sleep(10)
        raise AssertionError("not reached")

    with anyio.fail_after(5):
        result, _ = await chat(handler, chat_body(),
                               extra="timeout_secs = 0.1\n")
    assert_error(result, 504, "upstream_timeout", provider="ollama")


BAD_UPSTREAM = [
    ("not-json", MockResponse(200, (), (b"<html>oops</html>",))),
    ("not-an-object", MockResponse(200, (), (b'[1, 2]\n',))),
    ("cut-stream-no-event", MockResponse(200, (), (b'{"model": "m", "message": {"role": ',))),
]


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("response", [r for _, r in BAD_UPSTREAM],
                         ids=[i for i, _ in BAD_UPSTREAM])
async def test_bad_upstream_response_is_502(response: MockResponse, stream: bool) -> None:
    result, _ = await chat(lambda request: response, chat_body(stream=stream))
    assert_error(result, 502, "bad_upstream_response", provider="ollama")


# --- success -----------------------------------------------------------------------------

@pytest.mark.anyio
async def test_native_response_shape() -> None:
    result, transport = await chat(lambda r: ollama_answer("Hi there"),
                                   chat_body(model="ollama/qwen3:4b", max_tokens=10))
    assert result.status == 200
    assert result.headers["content-type"] == "application/json"
    out = result.json()
    assert set(out) == {"id", "model", "provider", "upstream_model", "content", "thinking",
                        "finish_reason", "usage", "latency_ms"}
    assert out["model"] == "ollama/qwen3:4b"
    assert (out["provider"], out["upstream_model"]) == ("ollama", "qwen3:4b")
    assert (out["content"], out["thinking"], out["finish_reason"]) == ("Hi there", None, "stop")
    assert out["usage"] == {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
    assert isinstance(out["latency_ms"], float) and out["latency_ms"] >= 0
    assert isinstance(out["id"], str) and out["id"]
    [sent] = transport.requests
    assert sent.url == "http://ollama.test:11434/api/chat"
    upstream = orjson.loads(sent.body)
    assert upstream["model"] == "qwen3:4b"
    assert upstream["think"] is False
    assert upstream["options"]["num_predict"] == 10


@pytest.mark.anyio
async def test_tool_calls_and_thinking_in_response() -> None:
    calls = [{"function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}}]
    result, _ = await chat(
        lambda r: ollama_answer("", thinking="hmm", tool_calls=calls), chat_body()
    )
    out = result.json()
    assert out["thinking"] == "hmm"
    # Ollama gave no id: the native door names the call after its answer, unique across
    # turns (not call_0 on every one).
    assert out["tool_calls"] == [
        {"id": f"call_{out['id']}_0", "name": "get_weather", "arguments": '{"city":"Tokyo"}'}
    ]


@pytest.mark.anyio
async def test_native_stream_relays_each_event() -> None:
    result, _ = await chat(lambda r: ollama_stream("Hel", "lo", "!"), chat_body(stream=True))
    assert result.status == 200
    assert result.headers["content-type"] == "application/x-ndjson"
    lines = result.lines()
    assert lines[:3] == [{"content": "Hel"}, {"content": "lo"}, {"content": "!"}]
    done = lines[3]
    assert len(lines) == 4
    assert done["done"] is True
    assert (done["finish_reason"], done["provider"], done["upstream_model"]) == (
        "stop", "ollama", "qwen3:4b")
    assert done["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    assert done["latency_ms"] >= 0


@pytest.mark.anyio
async def test_stream_error_after_first_byte_is_a_last_line() -> None:
    chunks = [*ollama_lines("partial", end=False), b'{"error": "model crashed"}\n']
    result, _ = await chat(lambda r: MockResponse(200, (), chunks), chat_body(stream=True))
    assert result.status == 200
    lines = result.lines()
    assert lines[0] == {"content": "partial"}
    assert lines[-1]["done"] is True
    error = lines[-1]["error"]
    assert error["provider"] == "ollama"
    assert "model crashed" in error["message"]


@pytest.mark.anyio
async def test_stream_cut_after_first_byte_is_bad_upstream_response_line() -> None:
    result, _ = await chat(lambda r: ollama_stream("partial", end=False),
                           chat_body(stream=True))
    lines = result.lines()
    assert lines[0] == {"content": "partial"}
    assert lines[-1] == {"done": True, "error": {
        "type": "bad_upstream_response", "message": lines[-1]["error"]["message"],
        "provider": "ollama"}}


# --- fallback chains ---------------------------------------------------------------------

def kimi_then_ollama(kimi: MockResponse) -> Handler:
    def handler(request: HTTPRequest) -> MockResponse:
        if request.host == "kimi.test":
            return kimi
        stream = orjson.loads(request.body).get("stream")
        return ollama_stream("from ollama") if stream else ollama_answer("from ollama")
    return handler


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize(
    "kimi",
    [openai_error(429, "slow down"), openai_error(503, "busy"), openai_error(500, "boom"),
     MockResponse(200, (), (b"garbage",))],
    ids=["429", "503", "500", "garbage"],
)
async def test_fallback_to_next_route_on_retryable_error(kimi: MockResponse,
                                                         stream: bool) -> None:
    result, transport = await chat(kimi_then_ollama(kimi), chat_body(model="smart",
                                                                     stream=stream))
    assert result.status == 200
    assert [r.host for r in transport.requests] == ["kimi.test", "ollama.test"]
    assert transport.requests[0].url == "https://kimi.test/v1/chat/completions"
    if stream:
        assert result.lines()[0] == {"content": "from ollama"}
        final = result.lines()[-1]
    else:
        final = result.json()
        assert final["content"] == "from ollama"
        assert final["model"] == "smart"
    assert (final["provider"], final["upstream_model"]) == ("ollama", "qwen3:4b")


@pytest.mark.anyio
async def test_no_fallback_when_the_request_itself_was_refused() -> None:
    result, transport = await chat(kimi_then_ollama(openai_error(400, "bad param")),
                                   chat_body(model="smart"))
    assert_error(result, 400, "upstream_rejected", provider="kimi", upstream_status=400)
    assert len(transport.requests) == 1


@pytest.mark.anyio
async def test_last_error_of_an_exhausted_chain_is_returned() -> None:
    def handler(request: HTTPRequest) -> MockResponse:
        if request.host == "kimi.test":
            return openai_error(429, "slow down", [("retry-after", "30")])
        return ollama_error(503, "queue full", [("retry-after", "3")])

    result, transport = await chat(handler, chat_body(model="smart"))
    assert_error(result, 503, "upstream_overloaded", provider="ollama")
    assert result.headers["retry-after"] == "3"
    assert len(transport.requests) == 2


# --- providers, metrics, request ids, keys -----------------------------------------------

@pytest.mark.anyio
async def test_providers_lists_exactly_the_registered() -> None:
    app, _ = make_app(never_called)
    async with running(app):
        result = await call(app, "GET", "/v1/chat/providers")
    assert result.status == 200
    assert result.json() == {"providers": [
        {"name": "ollama", "default": True, "base_url": "http://ollama.test:11434",
         "api": "ollama_chat"},
        {"name": "kimi", "default": False, "base_url": "https://kimi.test/v1",
         "api": "openai_chat"},
    ]}


@pytest.mark.anyio
async def test_key_never_appears_in_any_response_or_log(
    caplog: pytest.LogCaptureFixture
) -> None:
    """Kimi's key is sent upstream (the mock checks) but never shown: not in the provider
    list, not in errors even when the upstream quotes it, not in the log."""
    def handler(request: HTTPRequest) -> MockResponse:
        if request.host == "kimi.test":
            assert ("Authorization", f"Bearer {KEY}") in request.headers
            model = orjson.loads(request.body)["model"]
            if model == "quote":
                return openai_error(401, f"Incorrect API key provided: {KEY}")
            if model == "stream":
                return MockResponse(200, (), (
                    b'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n',
                    b'data: {"error":{"message":"bad key ' + KEY.encode() + b'"}}\n\n'))
            return openai_answer("ok")
        return ollama_answer()

    app, _ = make_app(handler)
    results: list[Result] = []
    with caplog.at_level(logging.DEBUG):
        async with running(app):
            for method, path, body in [
                ("GET", "/v1/chat/providers", b""),
                ("POST", "/v1/chat", chat_body(model="kimi/ok")),
                ("POST", "/v1/chat", chat_body(model="kimi/quote")),
                ("POST", "/v1/chat", chat_body(model="kimi/quote", stream=True)),
                ("POST", "/v1/chat", chat_body(model="kimi/stream", stream=True)),
                ("GET", "/metrics", b""),
                ("GET", "/nope", b""),
            ]:
                results.append(await call(app, method, path, body))
    quoted = results[2].json()["error"]
    assert quoted["message"] == "Incorrect API key provided: ***"
    assert results[4].lines()[-1]["error"]["message"] == "bad key ***"
    for result in results:
        assert KEY.encode() not in result.body
        assert KEY not in repr(result.headers)
    assert KEY not in caplog.text
    assert KEY not in repr(app.providers) and KEY not in repr(app.config)


@pytest.mark.anyio
async def test_metrics_after_calls() -> None:
    def handler(request: HTTPRequest) -> MockResponse:
        if request.host == "kimi.test":
            return openai_error(429, "slow")
        return ollama_answer(prompt=7, completion=2)

    app, _ = make_app(handler)
    async with running(app):
        for body in (chat_body(), chat_body(), chat_body(model="kimi/k2")):
            await call(app, "POST", "/v1/chat", body)
        result = await call(app, "GET", "/metrics")
    assert result.status == 200
    assert result.headers["content-type"].startswith("text/plain")
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in result.body.decode().splitlines() if line and not line.startswith("#")
    }
    assert samples['chatd_upstream_requests_total{provider="ollama"}'] == 2
    assert samples['chatd_upstream_requests_total{provider="kimi"}'] == 1
    assert samples['chatd_upstream_errors_total{provider="kimi",type="rate_limited"}'] == 1
    assert samples['chatd_tokens_total{kind="prompt",provider="ollama"}'] == 14
    assert samples['chatd_tokens_total{kind="completion",provider="ollama"}'] == 4
    assert samples['chatd_upstream_latency_seconds_count{provider="ollama"}'] == 2
    assert samples['chatd_upstream_latency_seconds_bucket{le="+Inf",provider="kimi"}'] == 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("given", "echoed"),
    [(None, False), ("abc-123_X.y:z", True), ("a" * 128, True), ("a" * 129, False),
     ("has space", False), ("new\nline", False), ("ünï", False)],
    ids=["none", "plain", "max-length", "too-long", "space", "newline", "non-ascii"],
)
async def test_request_id_on_every_response(given: str | None, echoed: bool) -> None:
    app, _ = make_app(lambda r: ollama_answer())
    headers = [] if given is None else [("x-request-id", given)]
    async with running(app):
        results = [await call(app, m, p, b, headers) for m, p, b in [
            ("GET", "/healthz", b""), ("GET", "/nope", b""), ("POST", "/v1/chat", b"{"),
            ("POST", "/v1/chat", chat_body())]]
    ids = {r.headers["x-request-id"] for r in results}
    if echoed:
        assert ids == {given}
    else:
        assert len(ids) == len(results) and given not in ids
        assert all(len(i) == 32 for i in ids)


# --- robustness --------------------------------------------------------------------------

@pytest.mark.anyio
async def test_unexpected_exception_is_logged_and_answered_500(
    caplog: pytest.LogCaptureFixture
) -> None:
    app, _ = make_app(never_called)

    async def broken(request: Any, responder: Any) -> None:
        raise RuntimeError("a bug")

    app.routes["/healthz"]["GET"] = broken
    with caplog.at_level(logging.ERROR, logger="chatd.app"):
        result = await call(app, "GET", "/healthz")
    assert result.status == 500
    assert result.json() == {"error": {"type": "internal_error", "message": "internal error"}}
    assert "a bug" in caplog.text


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
chat_like = st.fixed_dictionaries(
    {},
    optional={
        "model": json_values | st.sampled_from(["qwen3:4b", "x:cloud", "kimi/k", "smart"]),
        "messages": json_values | st.lists(st.fixed_dictionaries(
            {"role": json_values | st.sampled_from(["user", "system", "tool"])},
            optional={"content": json_values, "tool_calls": json_values}), max_size=3),
        "stream": json_values, "max_tokens": json_values, "temperature": json_values,
        "format": json_values, "think": json_values, "tools": json_values,
        "stop": json_values, "seed": json_values,
    },
)
bodies = st.binary(max_size=200) | json_values.map(orjson.dumps) | chat_like.map(orjson.dumps)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies)
@example(body=b'{"model": "m", "messages": [{"role": "user", "content": "x"}], '
              b'"max_tokens": 123456789012345678901234567890}')
@example(body=b'{"model": "m", "messages": [{"role": "user", "content": "x"}], '
              b'"temperature": 1e400}')
@example(body=b'{"model": "m", "messages": [{"role": "user", "content": "\\ud800"}]}')
@example(body=b'{"model": "m", "messages": [' + b'[' * 2000 + b']' * 2000 + b']}')
def test_no_input_produces_a_500(backend: str, body: bytes) -> None:
    async def run() -> Result:
        app, _ = make_app(lambda r: ollama_answer())
        async with running(app):
            return await call(app, "POST", "/v1/chat", body)

    result = anyio.run(run, backend=backend)
    assert result.status != 500, result.body
    assert result.status in (200, 400, 404, 413)


# --- lifespan ----------------------------------------------------------------------------

async def lifespan(app: ChatdApp, *kinds: str) -> list[dict[str, Any]]:
    inbox = [{"type": f"lifespan.{k}"} for k in kinds]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if inbox:
            return inbox.pop(0)
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: Any) -> None:
        sent.append(message)

    with anyio.fail_after(5):
        await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    return sent


@pytest.mark.anyio
async def test_lifespan_opens_and_closes_the_transport() -> None:
    app, transport = make_app(never_called)
    sent = await lifespan(app, "startup", "shutdown")
    assert [m["type"] for m in sent] == ["lifespan.startup.complete",
                                          "lifespan.shutdown.complete"]
    with pytest.raises(RuntimeError, match="closed"):
        async with transport.open(HTTPRequest(method="GET", url="http://x/", headers=(),
                                              body=b"")):
            pass


@pytest.mark.anyio
async def test_lifespan_startup_failure_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    def broken_factory() -> MockTransport:
        raise OSError("no sockets today")

    app = create_app(load_config(CONFIG), environ=ENV, transport=broken_factory)
    with caplog.at_level(logging.ERROR, logger="chatd.app"):
        sent = await lifespan(app, "startup")
    assert sent == [{"type": "lifespan.startup.failed", "message": "no sockets today"}]


@pytest.mark.anyio
async def test_without_lifespan_chat_is_502_not_500() -> None:
    app, _ = make_app(never_called)
    result = await call(app, "POST", "/v1/chat", chat_body())
    assert_error(result, 502, "upstream_unavailable")


# --- over a real connection (hypercorn in-process) -----------------------------------------

async def raw_exchange(port: int, *parts: bytes) -> tuple[int, bytes]:
    """Send ``parts`` on a plain socket; return the response status and everything read."""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        for part in parts:
            await stream.send(part)
        data = b""
        with anyio.fail_after(5):
            while b"\r\n\r\n" not in data:
                data += await stream.receive()
    return int(data.split(b" ", 2)[1]), data


@pytest.mark.anyio
async def test_served_chat_and_stream_over_http() -> None:
    app, _ = make_app(lambda r: ollama_stream("a", "b") if orjson.loads(r.body)["stream"]
                      else ollama_answer("hello"))
    async with served(app) as port, httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}"
    ) as client:
        r = await client.post("/v1/chat", content=chat_body(),
                              headers={"x-request-id": "req-1"})
        assert (r.status_code, r.json()["content"]) == (200, "hello")
        assert r.headers["x-request-id"] == "req-1"
        r = await client.post("/v1/chat", content=chat_body(stream=True))
        assert r.headers["content-type"] == "application/x-ndjson"
        lines = [orjson.loads(x) for x in r.content.splitlines()]
        assert lines[:2] == [{"content": "a"}, {"content": "b"}]
        assert lines[2]["done"] is True
        assert (await client.get("/healthz")).json() == {"status": "ok"}


@pytest.mark.anyio
async def test_served_413_by_content_length() -> None:
    app, _ = make_app(never_called)
    async with served(app) as port:
        status, data = await raw_exchange(
            port, b"POST /v1/chat HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{")
    assert status == 413
    assert b"request_too_large" in data or b"x-request-id" in data


@pytest.mark.anyio
async def test_served_413_chunked_counted_as_it_arrives() -> None:
    app, _ = make_app(never_called)
    chunk = b"x" * 600
    async with served(app) as port:
        status, _ = await raw_exchange(
            port,
            b"POST /v1/chat HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"258\r\n" + chunk + b"\r\n",
            b"258\r\n" + chunk + b"\r\n",
        )
    assert status == 413


@pytest.mark.anyio
async def test_served_stream_is_relayed_as_it_arrives() -> None:
    """The upstream holds its second line until the client has read the first: a server
    that buffered the stream would never deliver the first line, and the test times out."""
    release = anyio.Event()

    async def paced() -> AsyncIterator[bytes]:
        first, *rest = ollama_lines("first", "second")
        yield first
        await release.wait()
        for line in rest:
            yield line

    app, _ = make_app(lambda r: MockResponse(200, (), paced()))
    async with served(app) as port, httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}"
    ) as client:
        with anyio.fail_after(5):
            async with client.stream("POST", "/v1/chat", content=chat_body(stream=True)) as r:
                lines = r.aiter_lines()
                assert orjson.loads(await anext(lines)) == {"content": "first"}
                release.set()
                rest = [orjson.loads(line) async for line in lines if line]
    assert rest[0] == {"content": "second"}
    assert rest[-1]["done"] is True


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_client_disconnect_cancels_the_upstream_call(stream: bool) -> None:
    started, cancelled = anyio.Event(), anyio.Event()

    async def endless() -> AsyncIterator[bytes]:
        try:
            yield ollama_lines("first")[0]
            await anyio.sleep_forever()
        finally:
            cancelled.set()
        yield b""  # pragma: no cover - typing: still a generator

    async def handler(request: HTTPRequest) -> MockResponse:
        started.set()
        if stream:
            return MockResponse(200, (), endless())
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()
        raise AssertionError("unreachable")

    app, _ = make_app(handler)
    body = chat_body(stream=stream)
    head = (b"POST /v1/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body))
    async with served(app) as port:
        with anyio.fail_after(5):
            async with await anyio.connect_tcp("127.0.0.1", port) as conn:
                await conn.send(head + body)
                await started.wait()
                if stream:  # the first line reached us: the response is under way
                    data = b""
                    while b'{"content":"first"}' not in data:
                        data += await conn.receive()
            await cancelled.wait()
    stats = app.telemetry.snapshot()["ollama"]
    assert stats.cancelled == 1


@pytest.mark.anyio
async def test_a_front_door_can_shape_its_own_errors() -> None:
    """Routes are data: a front door adds a path and, optionally, its error shape, which
    then also applies to auth, 405 and body-limit errors on that path."""
    app, _ = make_app(never_called, extra='auth_token_env = "CHATD_TOKEN"\n',
                      env={**ENV, "CHATD_TOKEN": TOKEN})

    async def door(request: Any, responder: Any) -> None:
        await app.read_body(request)
        raise ChatError("invalid_request", "door says no")

    app.routes["/door"] = {"POST": door}
    app.error_renderers["/door"] = lambda exc: orjson.dumps({"oops": exc.type})
    auth = [("Authorization", f"Bearer {TOKEN}")]
    async with running(app):
        results = [
            await call(app, "POST", "/door", b"{}", auth),
            await call(app, "POST", "/door", b"{}"),
            await call(app, "GET", "/door", b"", auth),
            await call(app, "POST", "/door", b"x" * 2000, auth),
            await call(app, "POST", "/v1/chat", b"{", auth),
        ]
    assert [(r.status, r.json()) for r in results] == [
        (400, {"oops": "invalid_request"}),
        (401, {"oops": "unauthorized"}),
        (405, {"oops": "method_not_allowed"}),
        (413, {"oops": "request_too_large"}),
        (400, {"error": results[4].json()["error"]}),
    ]
    assert results[2].headers["allow"] == "POST"
