"""The one relay, driven by a door it has never seen: a probe door registered as data.

Every rule the relay owns is checked through it, so each holds for any door: the dialect
is set on the request, the client's headers reach the door's parser, a call the door
answers itself is still routed, a whole answer gets the measured facts, a stream commits
its status only after the first event (a failure before that is a status in the door's
shape, with Retry-After), the door's opening bytes ride with the first write, and a failure
after it is the door's own last bytes. The upstream is a MockTransport speaking Ollama.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any

import anyio
import orjson
import pytest
from door_shapes import door_paths, request_body, stream_error_type
from test_server import (
    CONFIG,
    ENV,
    call,
    never_called,
    ollama_answer,
    ollama_error,
    ollama_lines,
    ollama_stream,
    openai_answer,
    running,
)

from chatproto import (
    Answer,
    CallContext,
    ChatError,
    ChatRequest,
    Door,
    DoorCall,
    DoorStream,
    Event,
    HTTPRequest,
    Message,
    Route,
    Served,
    StreamEnded,
    TextDelta,
    keep_rendered,
    rendered_before,
)
from chatproto.dialects import DOORS, door_for
from server.app import DOOR_ROUTES, ChatdApp
from server.config import load_config, register_providers, registered
from server.relay import DoorEndpoint, chat_route
from transports import MockResponse, MockTransport


class ProbeStream:
    def start(self) -> bytes:
        return b"<start>"

    def events(self, batch: Sequence[Event], served: Served) -> bytes:
        pieces: list[bytes] = []
        for ev in batch:
            if type(ev) is TextDelta:
                if ev.text == "boom":  # a text this dialect cannot carry
                    exc = ChatError("bad_upstream_response", "the probe cannot carry boom")
                    keep_rendered(exc, pieces)
                    raise exc
                pieces.append(b"[" + ev.text.encode() + b"]")
        out = b"".join(pieces)
        last = batch[-1]
        if type(last) is StreamEnded:
            timed = served.elapsed_ns is not None and served.elapsed_ns > 0
            out += f"<end {served.route.provider} {last.finish_reason} {timed}>".encode()
        return out

    def error(self, exc: ChatError) -> bytes:
        return f"<error {exc.type}>".encode()


class ProbeDoor:
    name = "probe"
    api = "probe_api"
    content_type = b"text/probe"
    stream_content_type = b"text/probe-stream"
    stream_headers = ((b"x-probe", b"1"),)

    def __init__(self) -> None:
        self.headers: list[tuple[str, str]] = []
        self.rendered: list[tuple[DoorCall, Answer, CallContext]] = []

    def parse(self, body: bytes, headers: Any) -> DoorCall:
        obj = orjson.loads(body)
        self.headers = list(headers)
        chat = ChatRequest(model=obj["model"], messages=(Message(role="user", content="hi"),),
                           stream=bool(obj.get("stream")))
        if obj.get("load"):
            return DoorCall(chat=chat, reply=lambda ctx: b"loaded " + ctx.id.encode())
        return DoorCall(chat=chat, view=obj)

    def render(self, call: DoorCall, answer: Answer, ctx: CallContext) -> bytes:
        assert isinstance(call.view, dict)
        if call.view.get("refuse"):
            raise ChatError("bad_upstream_response", "the probe cannot carry this")
        self.rendered.append((call, answer, ctx))
        return orjson.dumps({"content": answer.response.content})

    def stream(self, call: DoorCall, ctx: CallContext) -> ProbeStream:
        return ProbeStream()

    def render_error(self, exc: ChatError) -> bytes:
        return orjson.dumps({"probe_error": exc.type})


def probe_app(handler: Any) -> tuple[ChatdApp, ProbeDoor, MockTransport]:
    door = ProbeDoor()
    transport = MockTransport(handler)
    config = load_config(CONFIG)
    app = ChatdApp(
        config=config,
        providers=registered(register_providers(config, ENV)),
        transport_factory=lambda: transport,
        doors={"/probe": chat_route(door)},
        error_shapes={"/probe/": door},
    )
    return app, door, transport


def body(**fields: Any) -> bytes:
    return orjson.dumps({"model": "qwen3:4b", **fields})


@pytest.mark.anyio
async def test_a_whole_answer_gets_the_dialect_headers_and_measured_facts() -> None:
    app, door, _ = probe_app(lambda request: ollama_answer("hello"))
    async with running(app):
        before = time.time()
        result = await call(app, "POST", "/probe", body(),
                            [("X-Custom", "caf\xe9"), ("Content-Type", "application/json")])
    assert (result.status, result.headers["content-type"]) == (200, "text/probe")
    assert result.json() == {"content": "hello"}
    # Latin-1: every byte is one character, so a value goes upstream byte for byte.
    assert dict(door.headers)["x-custom"].encode("latin-1") == "caf\xe9".encode()
    [(parsed, answer, ctx)] = door.rendered
    assert parsed.chat.dialect == "probe_api"
    assert answer.route.provider == "ollama" and answer.route.upstream_model == "qwen3:4b"
    assert answer.elapsed_ns > 0 and answer.latency_ms >= 0
    assert re.fullmatch(r"[0-9a-f]{32}", ctx.id)
    assert ctx.received is not None and abs(ctx.received - before) < 60
    assert ctx.created == int(ctx.received)


@pytest.mark.anyio
async def test_a_door_reply_calls_no_upstream_but_routes_the_name() -> None:
    app, _, transport = probe_app(never_called)
    async with running(app):
        loaded = await call(app, "POST", "/probe", body(load=True))
        refused = await call(app, "POST", "/probe", body(model="openrouter/v/m", load=True))
    assert loaded.status == 200 and re.fullmatch(rb"loaded [0-9a-f]{32}", loaded.body)
    assert loaded.headers["content-type"] == "text/probe"
    assert (refused.status, refused.json()) == (404, {"probe_error": "provider_not_registered"})
    assert transport.requests == []


@pytest.mark.anyio
async def test_a_render_failure_is_a_status_in_the_doors_shape() -> None:
    app, _, _ = probe_app(lambda request: ollama_answer("hello"))
    async with running(app):
        result = await call(app, "POST", "/probe", body(refuse=True))
    assert (result.status, result.json()) == (502, {"probe_error": "bad_upstream_response"})
    assert result.headers["content-type"] == "application/json"


@pytest.mark.anyio
async def test_a_stream_opens_with_the_doors_bytes_and_ends_with_its_end() -> None:
    app, _, _ = probe_app(lambda request: ollama_stream("a", "b", "c"))
    async with running(app):
        result = await call(app, "POST", "/probe", body(stream=True))
    assert result.status == 200
    assert result.headers["content-type"] == "text/probe-stream"
    assert result.headers["x-probe"] == "1"
    assert result.body == b"<start>[a][b][c]<end ollama stop True>"


@pytest.mark.anyio
async def test_a_stream_failing_before_its_first_event_is_a_status() -> None:
    app, _, _ = probe_app(
        lambda request: ollama_error(429, "slow down", [("Retry-After", "3")]))
    async with running(app):
        result = await call(app, "POST", "/probe", body(stream=True))
    assert (result.status, result.json()) == (429, {"probe_error": "rate_limited"})
    assert result.headers["retry-after"] == "3"


@pytest.mark.anyio
async def test_a_stream_failing_after_its_first_event_ends_with_the_doors_error() -> None:
    def upstream(request: HTTPRequest) -> MockResponse:
        lines = [*ollama_lines("a", "b", end=False), b'{"error":"the GPU melted"}\n']
        return MockResponse(200, [("content-type", "application/x-ndjson")], lines)

    app, _, _ = probe_app(upstream)
    async with running(app):
        result = await call(app, "POST", "/probe", body(stream=True))
    assert result.status == 200
    assert re.fullmatch(rb"<start>\[a\]\[b\]<error [a-z_]+>", result.body), result.body


@pytest.mark.anyio
async def test_errors_under_a_doors_prefix_are_in_its_shape() -> None:
    app, _, _ = probe_app(never_called)
    async with running(app):
        missing = await call(app, "GET", "/probe/models")
        wrong_method = await call(app, "GET", "/probe")
        elsewhere = await call(app, "GET", "/elsewhere")
    assert (missing.status, missing.json()) == (404, {"probe_error": "not_found"})
    assert (wrong_method.status, wrong_method.json()) == (
        405, {"probe_error": "method_not_allowed"})
    assert wrong_method.headers["allow"] == "POST"
    assert elsewhere.status == 404 and elsewhere.json()["error"]["type"] == "not_found"


@pytest.mark.anyio
async def test_the_clients_user_agent_reaches_a_forwarding_provider() -> None:
    """SPEC §2: kimi forwards the calling client's User-Agent (its default); the relay
    puts it on the request for every door."""
    app, door, transport = probe_app(lambda request: openai_answer("ok"))
    async with running(app):
        result = await call(app, "POST", "/probe", body(model="kimi/kimi-k2"),
                            [("User-Agent", "KimiCLI/1.51.0")])
    assert result.status == 200, result.body
    [sent] = transport.requests
    assert [v for k, v in sent.headers if k.lower() == "user-agent"] == ["KimiCLI/1.51.0"]
    [(parsed, _, _)] = door.rendered
    assert parsed.chat.headers == (("user-agent", "KimiCLI/1.51.0"),)


ROUTE = Route(provider="ollama", upstream_model="m")


def _one_read(*contents: str) -> Any:
    """An Ollama stream whose lines all arrive in one read (one batch)."""
    return lambda request: MockResponse(200, [("content-type", "application/x-ndjson")],
                                        (b"".join(ollama_lines(*contents)),))


@pytest.mark.anyio
async def test_what_a_batch_rendered_before_a_failure_goes_before_the_doors_error() -> None:
    """SPEC §4: "Every event parsed before the failure reaches the client first, however
    the upstream's bytes were split": a door that cannot render one event of a batch
    hands over what it rendered before it (:func:`chatproto.keep_rendered`), and the
    relay sends that ahead of the door's error, whether the events came in one read or
    in several."""
    for upstream in (_one_read("a", "b", "boom", "c"),
                     lambda request: ollama_stream("a", "b", "boom", "c")):
        app, _, _ = probe_app(upstream)
        async with running(app):
            result = await call(app, "POST", "/probe", body(stream=True))
        assert result.body == b"<start>[a][b]<error bad_upstream_response>"


#: Text no door can encode: orjson refuses a lone surrogate ("str is not valid UTF-8").
UNENCODABLE = TextDelta(text="\ud800")


class JammedStream:
    """A door's own renderer, handed :data:`UNENCODABLE` where the upstream said "boom"."""

    def __init__(self, inner: DoorStream) -> None:
        self.inner = inner

    def start(self) -> bytes:
        return self.inner.start()

    def events(self, batch: Sequence[Event], served: Served) -> bytes:
        jammed = [UNENCODABLE if type(ev) is TextDelta and ev.text == "boom" else ev
                  for ev in batch]
        return self.inner.events(jammed, served)

    def error(self, exc: ChatError) -> bytes:
        return self.inner.error(exc)


class JammedDoor:
    """A real door, its streams jammed (:class:`JammedStream`)."""

    def __init__(self, door: Door) -> None:
        self.door = door
        self.name = door.name
        self.api = door.api
        self.content_type = door.content_type
        self.stream_content_type = door.stream_content_type
        self.stream_headers = door.stream_headers

    def parse(self, body: bytes, headers: Any) -> DoorCall:
        return self.door.parse(body, headers)

    def render(self, call: DoorCall, answer: Answer, ctx: CallContext) -> bytes:
        return self.door.render(call, answer, ctx)

    def stream(self, call: DoorCall, ctx: CallContext) -> DoorStream:
        return JammedStream(self.door.stream(call, ctx))

    def render_error(self, exc: ChatError) -> bytes:
        return self.door.render_error(exc)


def _door_at(path: str) -> Door:
    endpoint = DOOR_ROUTES[path]["POST"]
    assert isinstance(endpoint, DoorEndpoint)
    return endpoint.door


@pytest.mark.anyio
@pytest.mark.parametrize("path", sorted(door_paths()))
async def test_every_door_sends_what_it_rendered_before_an_event_it_cannot(
        path: str) -> None:
    """Each real door's renderer meets an event it cannot encode in the middle of one
    upstream read: the text before it reaches the client, then the door's own error."""
    config = load_config(CONFIG)
    app = ChatdApp(
        config=config, providers=registered(register_providers(config, ENV)),
        transport_factory=lambda: MockTransport(_one_read("Let me check.", "boom", "c")),
        doors={**DOOR_ROUTES, path: chat_route(JammedDoor(_door_at(path)))},
    )
    async with running(app):
        result = await call(app, "POST", path, request_body(path, "qwen3:4b", True))
    assert result.status == 200
    assert b"Let me check." in result.body, result.body
    assert b'"c"' not in result.body
    assert stream_error_type(path, result.body) == "bad_upstream_response"


@pytest.mark.parametrize("name", sorted(DOORS))
def test_every_renderer_keeps_what_it_rendered_before_a_failure(name: str) -> None:
    """The renderer's half, pure: the bytes that ride on the exception are exactly what
    the events before the failing one render alone, from the same state."""
    door = door_for(name)
    path = next(p for p in door_paths() if _door_at(p) is door)
    call_ = door.parse(request_body(path, "m", True), {})
    ctx = CallContext(id="0" * 32, created=1)
    before = [TextDelta(text="Let me check."), TextDelta(text=" Twice.")]
    alone = door.stream(call_, ctx)
    expected = alone.events(before, Served(route=ROUTE))
    renderer = door.stream(call_, ctx)
    with pytest.raises(orjson.JSONEncodeError) as caught:
        renderer.events([*before, UNENCODABLE, TextDelta(text="after")], Served(route=ROUTE))
    assert rendered_before(caught.value) == expected
    assert b"Let me check." in expected
    assert rendered_before(ChatError("upstream_error", "x")) == b""


@pytest.mark.anyio
async def test_the_drains_end_during_a_client_write_still_ends_the_stream_in_the_doors_way(
) -> None:
    """SPEC §5 ``shutdown_grace_secs``: past the grace a stream ends with the door's error
    and a finished body. The grace may end while the relay waits on a write to a client
    that is reading (a busy machine, a slow network): that is not a stalled client, so the
    stream must not be cut there (it was: a chunked body without its terminator)."""

    async def paced() -> Any:
        for line in ollama_lines(*"abcdefghij", end=True):
            yield line
            await anyio.sleep(0.05)

    def upstream(request: HTTPRequest) -> MockResponse:
        return MockResponse(200, [("content-type", "application/x-ndjson")], paced())

    app, _, _ = probe_app(upstream)
    writes = 0

    async def slow_second_write(message: Any) -> None:
        nonlocal writes
        if message["type"] == "http.response.body":
            writes += 1
            if writes == 2:  # the grace ends while this write is on its way (on trio the
                # relay is by then waiting to hand the writer the next piece)
                await anyio.sleep(0.15)
                app.begin_shutdown(0.0)
                await anyio.sleep(0.3)

    async with running(app):
        result = await call(app, "POST", "/probe", body(stream=True), on_send=slow_second_write)
    assert result.status == 200
    assert re.fullmatch(rb"<start>\[a\]\[b\](\[[c-j]\])*<error shutting_down>", result.body), (
        result.body)
