"""Conformance suite: every transport, on asyncio and trio, against the same upstream scenarios.

Strategy: a scenario is a :class:`~transport_servers.Reply` queued on an upstream;
``harness(kind)`` yields a transport and an upstream that plays it, a real socket server on
127.0.0.1:0 for ``h11`` and ``httpx``, a MockTransport handler for ``mock``. The assertions
are shared, so the three transports are held to one contract. Scenarios that only exist on a
socket (connection reuse, a refused port, raw malformed bytes, TLS) run for the two socket
transports, and each says why. Time limits are fractions of a second, so a hang fails fast.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from transport_servers import (
    DROP,
    MockUpstream,
    Pause,
    Raw,
    Reply,
    SocketUpstream,
    Wait,
    socket_upstream,
)

from chatproto import ChatError, HTTPRequest
from transports import (
    H11Transport,
    HTTPXTransport,
    MockResponse,
    MockTransport,
    Timeouts,
    Transport,
)
from transports._base import USER_AGENT

pytestmark = pytest.mark.anyio

ALL_KINDS = ["h11", "httpx", "mock"]
SOCKET_KINDS = ["h11", "httpx"]

#: Generous against a loopback server, tight enough that a hang fails in seconds.
QUICK = Timeouts(connect=2.0, read=2.0, total=5.0)

Upstream = SocketUpstream | MockUpstream


def make_socket_transport(kind: str, **options: Any) -> Transport:
    if kind == "h11":
        return H11Transport(**options)
    # trust_env=False: a proxy variable in the test environment must not reroute 127.0.0.1.
    return HTTPXTransport(trust_env=False, **options)


@asynccontextmanager
async def harness(
    kind: str, *, ssl_server: ssl.SSLContext | None = None, **options: Any
) -> AsyncIterator[tuple[Any, Transport]]:
    """An upstream and a transport pointed at it (``Any``: tests use either's fields)."""
    if kind == "mock":
        mock = MockUpstream()
        async with MockTransport(mock.handle) as transport:
            yield mock, transport
        return
    async with (
        socket_upstream(ssl_server) as upstream,
        make_socket_transport(kind, **options) as transport,
    ):
        yield upstream, transport


def req(
    upstream: Upstream,
    path: str = "/v1/chat",
    *,
    stream: bool = False,
    body: bytes = b"{}",
    headers: tuple[tuple[str, str], ...] = (),
) -> HTTPRequest:
    return HTTPRequest(
        method="POST", url=upstream.url + path, headers=headers, body=body, stream=stream
    )


async def fetch(transport: Transport, request: HTTPRequest, timeouts: Timeouts = QUICK) -> bytes:
    async with transport.open(request, timeouts) as response:
        return await response.aread()


# -- requests and bodies -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ALL_KINDS)
async def test_request_arrives_exactly(kind: str, anyio_backend: str) -> None:
    body = b'{"model": "m", "messages": []}'
    async with harness(kind) as (upstream, transport):
        request = req(
            upstream,
            "/v1/chat/completions?trace=1",
            body=body,
            headers=(("Authorization", "Bearer sk-test"), ("Content-Type", "application/json")),
        )
        assert await fetch(transport, request) == b"ok"
    [seen] = upstream.seen
    assert (seen.method, seen.target, seen.body) == ("POST", "/v1/chat/completions?trace=1", body)
    assert seen.header("authorization") == "Bearer sk-test"
    assert seen.header("content-type") == "application/json"
    if kind == "mock":
        assert transport.requests == [request]  # type: ignore[attr-defined]
    else:  # what only a wire has
        assert seen.header("host") == upstream.url.removeprefix("http://")
        assert seen.header("content-length") == str(len(body))
        assert seen.header("user-agent") == USER_AGENT


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("size", [256 * 1024, 256 * 1024 + 1, 3 * 1024 * 1024 + 7],
                         ids=["one-slice", "just-over", "many-slices"])
async def test_a_large_body_arrives_exactly(kind: str, size: int, anyio_backend: str) -> None:
    """Past 256 KiB the h11 transport writes the body in slices of itself (no copy)."""
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    async with harness(kind) as (upstream, transport):
        assert await fetch(transport, req(upstream, body=body)) == b"ok"
        assert await fetch(transport, req(upstream, body=b"after")) == b"ok"  # in sync
    first, second = upstream.seen
    assert first.body == body and second.body == b"after"


@pytest.mark.parametrize("kind", SOCKET_KINDS)
async def test_framing_is_derived_and_user_agent_kept(kind: str, anyio_backend: str) -> None:
    """Socket only (framing exists on the wire): a stale Content-Length from the caller is
    replaced by the body's real length; a caller's User-Agent wins over chatd's."""
    async with harness(kind) as (upstream, transport):
        headers = (("Content-Length", "999"), ("User-Agent", "attribution/1"))
        await fetch(transport, req(upstream, body=b"12345", headers=headers))
    [seen] = upstream.seen
    assert seen.header("content-length") == "5"
    assert seen.header("user-agent") == "attribution/1"
    assert seen.body == b"12345"


@pytest.mark.parametrize("kind", SOCKET_KINDS)
async def test_invalid_header_is_invalid_request_without_leaking(
    kind: str, anyio_backend: str
) -> None:
    """Socket only (the mock has no wire to validate for). A header value with CR LF would
    smuggle a header; it is refused before sending, and the value, which may be a key, is
    in neither the message nor the exception chain."""
    async with harness(kind) as (upstream, transport):
        bad = (("Authorization", "Bearer sk-secret\r\nX-Injected: 1"),)
        with pytest.raises(ChatError) as caught:
            await fetch(transport, req(upstream, headers=bad))
    assert caught.value.type == "invalid_request"
    assert "sk-secret" not in repr(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert upstream.seen == []


BIG = bytes(range(256)) * 800  # 200 KiB: several socket reads


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize(
    ("reply", "framing"),
    [
        (Reply(body=(BIG,)), ("content-length", str(len(BIG)))),
        (Reply(body=(b"one ", b"two ", b"three"), chunked=True), ("transfer-encoding", "chunked")),
    ],
    ids=["content-length", "chunked"],
)
async def test_body_read_whole(
    kind: str, reply: Reply, framing: tuple[str, str], anyio_backend: str
) -> None:
    async with harness(kind) as (upstream, transport):
        upstream.answers.append(reply)
        async with transport.open(req(upstream), QUICK) as response:
            assert response.status == 200
            assert framing in response.headers
            body = await response.aread()
        assert body == b"".join(s for s in reply.body if isinstance(s, bytes))


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_body_streams_chunks_as_they_are_sent(
    kind: str, chunked: bool, anyio_backend: str
) -> None:
    """The first chunk reaches the caller while the upstream still holds the second."""
    release = anyio.Event()
    async with harness(kind) as (upstream, transport):
        upstream.answers.append(
            Reply(body=(b"first", Wait(release), b"second"), chunked=chunked)
        )
        async with transport.open(req(upstream, stream=True), QUICK) as response:
            chunks = response.aiter_bytes()
            assert await anext(chunks) == b"first"
            assert not release.is_set()
            release.set()
            assert b"".join([chunk async for chunk in chunks]) == b"second"


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize(("size", "ok"), [(10_000, True), (9_999, False)], ids=["at", "over"])
async def test_aread_limit(kind: str, size: int, ok: bool, anyio_backend: str) -> None:
    async with harness(kind) as (upstream, transport):
        upstream.answers.append(Reply(body=(b"x" * 4_000, b"x" * 4_000, b"x" * 2_000)))
        async with transport.open(req(upstream), QUICK) as response:
            if ok:
                assert len(await response.aread(limit=size)) == 10_000
            else:
                with pytest.raises(ChatError) as caught:
                    await response.aread(limit=size)
                assert caught.value.type == "bad_upstream_response"


@pytest.mark.parametrize("kind", ALL_KINDS)
async def test_error_status_is_a_response_not_an_error(kind: str, anyio_backend: str) -> None:
    """Classifying a 4xx/5xx is the codec's job (by status): the transport hands it over."""
    async with harness(kind) as (upstream, transport):
        upstream.answers.append(
            Reply(status=429, headers=(("Retry-After", "7"),), body=(b'{"error":"slow"}',))
        )
        async with transport.open(req(upstream), QUICK) as response:
            assert response.status == 429
            assert ("retry-after", "7") in response.headers
            assert await response.aread() == b'{"error":"slow"}'


# -- keep-alive and the pool (socket only: the mock has no connections) --------------------


@pytest.mark.parametrize("kind", SOCKET_KINDS)
async def test_keepalive_reuses_one_connection(kind: str, anyio_backend: str) -> None:
    async with harness(kind) as (upstream, transport):
        for _ in range(3):
            assert await fetch(transport, req(upstream)) == b"ok"
    assert len(upstream.seen) == 3
    assert upstream.accepted == 1


@pytest.mark.parametrize("kind", SOCKET_KINDS)
async def test_half_read_connection_is_closed_not_reused(kind: str, anyio_backend: str) -> None:
    async with harness(kind) as (upstream, transport):
        upstream.answers.append(Reply(body=(b"first", Pause(0.05), b"second")))
        async with transport.open(req(upstream, stream=True), QUICK) as response:
            assert await anext(response.aiter_bytes()) == b"first"
        with anyio.fail_after(1):
            await upstream.hangup.wait()
        assert await fetch(transport, req(upstream)) == b"ok"
    assert upstream.accepted == 2


@pytest.mark.parametrize("kind", SOCKET_KINDS)
async def test_connection_the_server_dropped_is_not_reused(kind: str, anyio_backend: str) -> None:
    """The server closes an idle keep-alive connection; the next request still succeeds."""
    async with harness(kind) as (upstream, transport):
        upstream.answers.append(Reply(close_after=True))
        assert await fetch(transport, req(upstream)) == b"ok"
        with anyio.fail_after(1):
            await upstream.server_closed.wait()
        assert await fetch(transport, req(upstream)) == b"ok"
    assert upstream.accepted == 2


@pytest.mark.parametrize(
    ("answers", "ok", "accepted"),
    [
        ([Reply(), DROP, Reply()], True, 2),  # stale reused connection: one retry, fresh
        ([Reply(), DROP, DROP], False, 2),  # ...but only one
    ],
    ids=["retried", "retried-once"],
)
async def test_h11_retries_once_when_a_reused_connection_dies_unanswered(
    answers: list[Any], ok: bool, accepted: int, anyio_backend: str
) -> None:
    """h11 only: the stale keep-alive retry is H11Transport's own (httpcore does not retry)."""
    async with harness("h11") as (upstream, transport):
        upstream.answers.extend(answers)
        assert await fetch(transport, req(upstream)) == b"ok"
        if ok:
            assert await fetch(transport, req(upstream)) == b"ok"
        else:
            with pytest.raises(ChatError) as caught:
                await fetch(transport, req(upstream))
            assert caught.value.type == "upstream_unavailable"
    assert upstream.accepted == accepted
    assert len(upstream.seen) == 3


@pytest.mark.parametrize("kind", SOCKET_KINDS)
async def test_pool_limit_waits_then_times_out(kind: str, anyio_backend: str) -> None:
    """With one connection allowed, a second request waits for it within its total."""
    limit: dict[str, Any] = {
        "h11": {"max_connections_per_origin": 1}, "httpx": {"max_connections": 1}
    }[kind]
    release = anyio.Event()
    async with harness(kind, **limit) as (upstream, transport):
        upstream.answers.append(Reply(body=(b"a", Wait(release), b"b")))
        async with transport.open(req(upstream, stream=True), QUICK) as first:
            chunks = first.aiter_bytes()
            assert await anext(chunks) == b"a"
            with pytest.raises(ChatError) as caught:
                await fetch(transport, req(upstream), Timeouts(total=0.2))
            assert caught.value.type == "upstream_timeout"
            release.set()
            assert [chunk async for chunk in chunks] == [b"b"]
        assert await fetch(transport, req(upstream)) == b"ok"
    assert upstream.accepted == 1


@pytest.mark.parametrize("kind", SOCKET_KINDS)
async def test_concurrent_requests_share_a_bounded_pool(kind: str, anyio_backend: str) -> None:
    limit: dict[str, Any] = {
        "h11": {"max_connections_per_origin": 4}, "httpx": {"max_connections": 4}
    }[kind]
    bodies: list[bytes] = []
    async with harness(kind, **limit) as (upstream, transport):
        upstream.answers.extend(Reply(body=(b"x", Pause(0.01), b"y")) for _ in range(20))

        async def one() -> None:
            bodies.append(await fetch(transport, req(upstream)))

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(one)
    assert bodies == [b"xy"] * 20
    assert 1 <= upstream.accepted <= 4


@pytest.mark.parametrize("kind", SOCKET_KINDS)
async def test_aclose_closes_idle_connections(kind: str, anyio_backend: str) -> None:
    async with harness(kind) as (upstream, transport):
        await fetch(transport, req(upstream))
        assert not upstream.hangup.is_set()
        await transport.aclose()
        with anyio.fail_after(1):
            await upstream.hangup.wait()


# -- failures ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", SOCKET_KINDS)
async def test_refused_connection_is_unavailable(kind: str, anyio_backend: str) -> None:
    """Socket only: a refused port (a mock handler would just raise what we assert)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port now.
    async with make_socket_transport(kind) as transport:
        request = HTTPRequest(method="GET", url=f"http://127.0.0.1:{port}/", headers=(), body=b"")
        with pytest.raises(ChatError) as caught:
            await fetch(transport, request)
    assert caught.value.type == "upstream_unavailable"
    assert caught.value.status == 502 and caught.value.provider is None


@pytest.mark.parametrize("kind", SOCKET_KINDS)
@pytest.mark.parametrize(
    "answer",
    [DROP, Raw(b"SSH-2.0-OpenSSH_9.6\r\n"), Raw(b"HTTP/1.1 200 OK\r\nContent-Len")],
    ids=["closed-unanswered", "not-http", "head-cut"],
)
async def test_no_complete_head_is_unavailable(kind: str, answer: Any, anyio_backend: str) -> None:
    """Socket only (raw bytes). No complete head means no HTTP answer: 502 unavailable.
    A fresh connection is not retried."""
    async with harness(kind) as (upstream, transport):
        upstream.answers.append(answer)
        with pytest.raises(ChatError) as caught:
            await fetch(transport, req(upstream))
    assert caught.value.type == "upstream_unavailable"
    assert upstream.accepted == 1


@pytest.mark.parametrize("kind", ALL_KINDS)
async def test_body_cut_after_head_is_bad_response(kind: str, anyio_backend: str) -> None:
    async with harness(kind) as (upstream, transport):
        upstream.answers.append(Reply(body=(b"partial",), cut=True))
        async with transport.open(req(upstream, stream=True), QUICK) as response:
            chunks = response.aiter_bytes()
            assert await anext(chunks) == b"partial"
            with pytest.raises(ChatError) as caught:
                await anext(chunks)
    assert caught.value.type == "bad_upstream_response"


@pytest.mark.parametrize("kind", SOCKET_KINDS)
@pytest.mark.parametrize(
    "answer",
    [
        Reply(body=(b"partial",), chunked=True, cut=True),
        Raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nnot a chunk\r\n"),
    ],
    ids=["chunked-cut", "chunked-garbled"],
)
async def test_chunked_body_broken_is_bad_response(
    kind: str, answer: Any, anyio_backend: str
) -> None:
    """Socket only: chunked framing exists on the wire (a mock chunk list has none)."""
    async with harness(kind) as (upstream, transport):
        upstream.answers.append(answer)
        async with transport.open(req(upstream), QUICK) as response:
            with pytest.raises(ChatError) as caught:
                await response.aread()
    assert caught.value.type == "bad_upstream_response"


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize(
    "timeouts",
    [Timeouts(read=0.2, total=5.0), Timeouts(read=5.0, total=0.2)],
    ids=["read", "total"],
)
async def test_slow_head_times_out(kind: str, timeouts: Timeouts, anyio_backend: str) -> None:
    async with harness(kind) as (upstream, transport):
        upstream.answers.append(Reply(head_delay=3.0))
        with anyio.fail_after(2), pytest.raises(ChatError) as caught:
            await fetch(transport, req(upstream), timeouts)
    assert caught.value.type == "upstream_timeout"
    assert caught.value.status == 504


@pytest.mark.parametrize("kind", ALL_KINDS)
async def test_idle_body_times_out(kind: str, anyio_backend: str) -> None:
    never = anyio.Event()
    async with harness(kind) as (upstream, transport):
        upstream.answers.append(Reply(body=(b"one", Wait(never), b"two")))
        request = req(upstream, stream=True)
        async with transport.open(request, Timeouts(read=0.2, total=5.0)) as response:
            chunks = response.aiter_bytes()
            assert await anext(chunks) == b"one"
            with anyio.fail_after(2), pytest.raises(ChatError) as caught:
                await anext(chunks)
    assert caught.value.type == "upstream_timeout"


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize(("stream", "ok"), [(True, True), (False, False)], ids=["stream", "whole"])
async def test_total_covers_the_head_of_a_stream_and_all_of_a_whole_call(
    kind: str, stream: bool, ok: bool, anyio_backend: str
) -> None:
    """A body slower than ``total`` is fine while streamed (``read`` polices it), and a
    timeout when the whole body was asked for."""
    async with harness(kind) as (upstream, transport):
        upstream.answers.append(Reply(body=(b"a", Pause(0.3), b"b")))
        timeouts = Timeouts(read=2.0, total=0.15)
        async with transport.open(req(upstream, stream=stream), timeouts) as response:
            if ok:
                assert await response.aread() == b"ab"
            else:
                with pytest.raises(ChatError) as caught:
                    await response.aread()
                assert caught.value.type == "upstream_timeout"


# -- cancellation ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ALL_KINDS)
async def test_cancel_mid_body_closes_the_connection(kind: str, anyio_backend: str) -> None:
    """Cancellation propagates (the scope catches it) and the upstream sees the hang-up."""
    never = anyio.Event()
    async with harness(kind) as (upstream, transport):
        upstream.answers.append(Reply(body=(b"one", Wait(never), b"two")))
        with anyio.CancelScope() as scope:
            async with transport.open(req(upstream, stream=True), QUICK) as response:
                async for chunk in response.aiter_bytes():
                    assert chunk == b"one"
                    scope.cancel()
            pytest.fail("cancellation was swallowed")
        assert scope.cancelled_caught
        with anyio.fail_after(1):
            await upstream.hangup.wait()


@pytest.mark.parametrize("kind", ALL_KINDS)
async def test_cancel_while_awaiting_the_head_closes_the_connection(
    kind: str, anyio_backend: str
) -> None:
    async with harness(kind) as (upstream, transport):
        upstream.answers.append(Reply(head_delay=3.0))
        with anyio.move_on_after(0.1) as scope:
            await fetch(transport, req(upstream))
        assert scope.cancelled_caught
        with anyio.fail_after(1):
            await upstream.hangup.wait()


# -- TLS (socket only) -------------------------------------------------------------------


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made by the openssl CLI (cert, key)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl CLI is needed to make a test certificate")
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.mark.parametrize("kind", SOCKET_KINDS)
@pytest.mark.parametrize("trusted", [True, False], ids=["trusted", "untrusted"])
async def test_tls(
    kind: str, trusted: bool, certificate: tuple[Path, Path], anyio_backend: str
) -> None:
    cert, key = certificate
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert) if trusted else None)
    async with harness(kind, ssl_server=server, ssl_context=client) as (upstream, transport):
        if trusted:
            assert await fetch(transport, req(upstream)) == b"ok"
            assert await fetch(transport, req(upstream)) == b"ok"
        else:
            with pytest.raises(ChatError) as caught:
                await fetch(transport, req(upstream))
            assert caught.value.type == "upstream_unavailable"
    assert upstream.accepted == 1
    assert len(upstream.seen) == (2 if trusted else 0)


# -- the mock's own contract -------------------------------------------------------------


async def test_mock_delivers_chunks_one_per_step_and_records(anyio_backend: str) -> None:
    transport = MockTransport(
        lambda request: MockResponse(201, [("X-Trace", "1")], [b"a", b"", b"bc"])
    )
    request = HTTPRequest(method="GET", url="http://x.test/", headers=(), body=b"")
    async with transport, transport.open(request) as response:
        assert (response.status, response.headers) == (201, (("x-trace", "1"),))
        assert [chunk async for chunk in response.aiter_bytes()] == [b"a", b"bc"]
    assert transport.requests == [request]


async def test_mock_handler_error_passes_through(anyio_backend: str) -> None:
    refused = ChatError("upstream_unavailable", "connection refused")

    def handler(request: HTTPRequest) -> MockResponse:
        raise refused

    request = HTTPRequest(method="GET", url="http://x.test/", headers=(), body=b"")
    with pytest.raises(ChatError) as caught:
        async with MockTransport(handler).open(request):
            pass
    assert caught.value is refused


def test_mock_response_refuses_a_bare_bytes_body() -> None:
    with pytest.raises(TypeError):
        MockResponse(200, (), b"body")  # type: ignore[arg-type]


# -- idle connections the upstream closes (socket only) -----------------------------------


def close_wait_sockets(remote_port: int) -> int:
    """This host's TCP sockets in CLOSE_WAIT towards ``remote_port`` (Linux /proc/net)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            remote, state = fields[2], fields[3]
            if state == "08" and int(remote.rsplit(":", 1)[1], 16) == remote_port:
                count += 1
    return count


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc/net/tcp")
@pytest.mark.parametrize("kind", SOCKET_KINDS)
async def test_idle_connection_the_upstream_closes_is_reaped(
    kind: str, anyio_backend: str
) -> None:
    """The upstream closes a pooled keep-alive connection and no request follows: the pool
    closes its end by itself, so the socket does not sit in CLOSE_WAIT until the next call
    to that origin (which may be hours away)."""
    async with harness(kind, reap_interval=0.05) as (upstream, transport):
        upstream.answers.append(Reply(close_after=True))
        assert await fetch(transport, req(upstream)) == b"ok"
        with anyio.fail_after(1):
            await upstream.server_closed.wait()
        port = int(upstream.url.rsplit(":", 1)[1])
        with anyio.fail_after(2):
            while close_wait_sockets(port):
                await anyio.sleep(0.02)
        assert await fetch(transport, req(upstream)) == b"ok"  # the pool still serves
    assert upstream.accepted == 2


@pytest.mark.parametrize("kind", SOCKET_KINDS)
async def test_idle_connection_past_its_expiry_is_closed_without_a_request(
    kind: str, anyio_backend: str
) -> None:
    """``keepalive_expiry`` is kept by the same sweep: the upstream sees chatd hang up."""
    async with harness(kind, reap_interval=0.05, keepalive_expiry=0.1) as (upstream, transport):
        assert await fetch(transport, req(upstream)) == b"ok"
        with anyio.fail_after(2):
            await upstream.hangup.wait()


# -- credentials in the URL (socket only: the mock hands the request over as it is) ------


@pytest.mark.parametrize("kind", SOCKET_KINDS)
async def test_userinfo_in_the_url_is_sent_as_basic_auth(kind: str, anyio_backend: str) -> None:
    """``http://user:pass@host/`` (a proxy with basic auth in front of an upstream) is
    honoured as RFC 7617 Basic credentials, percent-decoded (RFC 3986 §3.2.1), and never
    reaches the wire as part of the target or the Host."""
    import base64

    async with harness(kind) as (upstream, transport):
        url = upstream.url.replace("http://", "http://us%40er:p%3Ass@") + "/v1/chat"
        request = HTTPRequest(method="POST", url=url, headers=(), body=b"{}")
        assert await fetch(transport, request) == b"ok"
    [seen] = upstream.seen
    expected = "Basic " + base64.b64encode(b"us@er:p:ss").decode()
    assert seen.header("authorization") == expected
    assert seen.target == "/v1/chat"
    assert seen.header("host") == upstream.url.removeprefix("http://")


@pytest.mark.parametrize("kind", SOCKET_KINDS)
async def test_userinfo_and_an_authorization_header_are_refused(
    kind: str, anyio_backend: str
) -> None:
    """Both would be the Authorization header; neither is dropped silently, and the
    refusal quotes neither the password nor the key."""
    async with harness(kind) as (upstream, transport):
        url = upstream.url.replace("http://", "http://user:pa55word@") + "/v1/chat"
        request = HTTPRequest(
            method="POST", url=url, headers=(("Authorization", "Bearer sk-key"),), body=b"{}"
        )
        with pytest.raises(ChatError) as caught:
            await fetch(transport, request)
    assert caught.value.type == "invalid_request"
    assert "pa55word" not in repr(caught.value) and "sk-key" not in repr(caught.value)
    assert upstream.seen == []
