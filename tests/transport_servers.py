"""Upstreams for the transport conformance suite: a raw-socket HTTP/1.1 server and its mock twin.

Strategy: a scenario is data. A :class:`Reply` says what the upstream answers (status,
headers, body steps that may wait on an event or pause, framing, a cut), and the same
``Reply`` is played either by :class:`SocketUpstream` (bytes written by hand on a real
socket on 127.0.0.1:0, so every byte and every close is ours) or by :class:`MockUpstream`
(a :class:`transports.MockTransport` handler). One test body then runs against every
transport. Both record what they received (:class:`Seen`) and set :attr:`hangup` when
they observe the client closing a connection: for the socket server, EOF or a reset on a
per-connection reader that runs for the whole connection; for the mock, the body iterator
being closed before it finished.

The request parser here is deliberately tiny and separate from h11, so the h11 transport
is not checked against its own parser.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http import HTTPStatus

import anyio
import anyio.abc
from anyio.streams.tls import TLSStream

from chatproto import HTTPRequest
from transports import MockResponse

__all__ = [
    "DROP",
    "MockUpstream",
    "Pause",
    "Raw",
    "Reply",
    "Seen",
    "SocketUpstream",
    "Wait",
    "socket_upstream",
]


@dataclass(frozen=True)
class Wait:
    """A body step: stop sending until ``event`` is set."""

    event: anyio.Event


@dataclass(frozen=True)
class Pause:
    """A body step: stop sending for ``seconds``."""

    seconds: float


Step = bytes | Wait | Pause


@dataclass(frozen=True, kw_only=True)
class Reply:
    """What the upstream answers to one request.

    ``body`` bytes steps are written as they come (one chunk each when ``chunked``).
    ``cut`` closes the connection before the body is complete: with Content-Length framing
    the head announces 100 bytes more than are sent; with chunked framing the final
    ``0`` chunk is never sent. ``close_after`` closes the connection after a complete
    reply without announcing it (a keep-alive connection the server drops).
    """

    status: int = 200
    headers: Sequence[tuple[str, str]] = ()
    body: Sequence[Step] = (b"ok",)
    chunked: bool = False
    cut: bool = False
    head_delay: float = 0.0
    close_after: bool = False

    def body_length(self) -> int:
        return sum(len(step) for step in self.body if isinstance(step, bytes))

    def framing_header(self) -> tuple[str, str]:
        if self.chunked:
            return ("transfer-encoding", "chunked")
        return ("content-length", str(self.body_length() + (100 if self.cut else 0)))


@dataclass(frozen=True)
class Raw:
    """Socket only: write exactly ``data`` as the answer, then close."""

    data: bytes


class _Drop:
    """Socket only: read the request, then close without sending a byte."""

    def __repr__(self) -> str:
        return "DROP"


DROP = _Drop()

Answer = Reply | Raw | _Drop


@dataclass
class Seen:
    """A request as the upstream received it; header names lower-cased."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k == name]
        assert len(values) <= 1, f"header {name!r} sent {len(values)} times"
        return values[0] if values else None


@dataclass
class _Upstream:
    """What both upstreams share: the answer queue and what was observed."""

    url: str = ""
    answers: list[Answer] = field(default_factory=list)
    """Consumed one per request, in order; an empty queue answers ``Reply()``."""
    seen: list[Seen] = field(default_factory=list)
    hangup: anyio.Event = field(default_factory=anyio.Event)
    """Set when the upstream sees the client close a connection."""

    def next_answer(self) -> Answer:
        return self.answers.pop(0) if self.answers else Reply()


# -- the socket upstream -----------------------------------------------------------------


@dataclass
class SocketUpstream(_Upstream):
    accepted: int = 0
    """Connections accepted so far (keep-alive reuse means fewer than requests)."""
    server_closed: anyio.Event = field(default_factory=anyio.Event)
    """Set when the server itself closes a connection (after ``close_after``, a cut...)."""
    ssl_context: ssl.SSLContext | None = None

    async def handle(self, stream: anyio.abc.ByteStream) -> None:
        self.accepted += 1
        server_closes = False
        try:
            if self.ssl_context is not None:
                try:
                    stream = await TLSStream.wrap(
                        stream, server_side=True, ssl_context=self.ssl_context,
                        standard_compatible=False,
                    )
                except (ssl.SSLError, OSError, anyio.BrokenResourceError, anyio.EndOfStream):
                    self.hangup.set()  # the client refused our certificate
                    return
            conn = _ServerConnection(stream)
            async with anyio.create_task_group() as tg:
                tg.start_soon(conn.read_until_eof, self.hangup, tg.cancel_scope)
                await self._answer_all(conn)
                server_closes = True  # not reached when the client's EOF cancelled us
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await stream.aclose()
        if server_closes:
            self.server_closed.set()

    async def _answer_all(self, conn: _ServerConnection) -> None:
        while True:
            self.seen.append(await conn.read_request())
            answer = self.next_answer()
            if isinstance(answer, _Drop):
                return
            if isinstance(answer, Raw):
                await conn.stream.send(answer.data)
                return
            if not await self._send_reply(conn.stream, answer):
                return

    @staticmethod
    async def _send_reply(stream: anyio.abc.ByteStream, reply: Reply) -> bool:
        """Write ``reply``; return whether the connection stays open."""
        if reply.head_delay:
            await anyio.sleep(reply.head_delay)
        lines = [f"HTTP/1.1 {reply.status} {HTTPStatus(reply.status).phrase}"]
        lines += [f"{name}: {value}" for name, value in (*reply.headers, reply.framing_header())]
        await stream.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        for step in reply.body:
            if isinstance(step, Wait):
                await step.event.wait()
            elif isinstance(step, Pause):
                await anyio.sleep(step.seconds)
            elif reply.chunked:
                await stream.send(b"%x\r\n%s\r\n" % (len(step), step))
            else:
                await stream.send(step)
        if reply.chunked and not reply.cut:
            await stream.send(b"0\r\n\r\n")
        return not (reply.cut or reply.close_after)


class _ServerConnection:
    """One accepted connection: a reader task fills :attr:`buffer` until EOF."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.buffer = bytearray()
        self._more = anyio.Event()

    async def read_until_eof(self, hangup: anyio.Event, scope: anyio.CancelScope) -> None:
        """Read for the connection's whole life; on the client's EOF, stop everything.

        An HTTP/1.1 client never half-closes, so EOF means it is gone: the answer in
        progress (perhaps waiting on an event that will never be set) is cancelled.
        """
        try:
            while True:
                self.buffer += await self.stream.receive()
                self._more.set()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            hangup.set()
            scope.cancel()

    async def read_request(self) -> Seen:
        while (request := self._parse()) is None:
            self._more = anyio.Event()
            await self._more.wait()
        return request

    def _parse(self) -> Seen | None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        request_line, *header_lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        method, target, version = request_line.split(" ")
        assert version == "HTTP/1.1", request_line
        headers = []
        for line in header_lines:
            name, _, value = line.partition(":")
            headers.append((name.lower(), value.strip()))
        length = int(dict(headers).get("content-length", "0"))
        if len(self.buffer) < end + 4 + length:
            return None
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        return Seen(method, target, headers, body)


@asynccontextmanager
async def socket_upstream(
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[SocketUpstream]:
    """Serve a :class:`SocketUpstream` on 127.0.0.1 at a free port for the block."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    scheme = "https" if ssl_context is not None else "http"
    upstream = SocketUpstream(url=f"{scheme}://127.0.0.1:{port}", ssl_context=ssl_context)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, upstream.handle)
        try:
            yield upstream
        finally:
            tg.cancel_scope.cancel()


# -- the mock upstream -------------------------------------------------------------------


@dataclass
class MockUpstream(_Upstream):
    """The same answers, played through a MockTransport handler (no sockets)."""

    url: str = "http://upstream.test:8080"

    async def handle(self, request: HTTPRequest) -> MockResponse:
        """The :class:`transports.MockTransport` handler."""
        self.seen.append(
            Seen(
                request.method,
                request.target,
                [(name.lower(), value) for name, value in request.headers],
                request.body,
            )
        )
        reply = self.next_answer()
        assert isinstance(reply, Reply), f"{reply!r} is a socket-only scenario"
        try:
            await anyio.sleep(reply.head_delay)
        except anyio.get_cancelled_exc_class():
            self.hangup.set()  # the client gave up before the head
            raise
        return MockResponse(
            reply.status, (*reply.headers, reply.framing_header()), self._body(reply)
        )

    async def _body(self, reply: Reply) -> AsyncIterator[bytes]:
        finished = False
        try:
            for step in reply.body:
                if isinstance(step, Wait):
                    await step.event.wait()
                elif isinstance(step, Pause):
                    await anyio.sleep(step.seconds)
                else:
                    yield step
            finished = True
        finally:
            if not finished:
                self.hangup.set()
