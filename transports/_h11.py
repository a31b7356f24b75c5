"""HTTP/1.1 over anyio sockets, driven by h11: chatd's fast path to providers.

Strategy: h11 does all the HTTP; this module only moves bytes and keeps a pool. A request is
validated into an ``h11.Request`` before any I/O (so a bad header is ``invalid_request``, not a
wasted connection), written in one ``send``, and the head is parsed with h11 while each
socket read (64 KiB) runs under its own deadline (one cancel scope for the send and the
head, moved before each read; a scope per body read). The body is then pulled by the
caller one socket read at a time (its h11 ``Data`` events joined), so chunks reach the
caller as the network delivers them. anyio raises ``EndOfStream`` at EOF where h11 wants
``receive_data(b"")``: that translation happens once, in :meth:`_Exchange._fill`.

Pool: per origin (scheme, host, port) at most ``max_connections_per_origin`` live
connections, a LIFO list of idle ones (the most recently used is the least likely to have
been dropped by the server), and a FIFO queue of waiting requests, to which a finished
connection is handed directly. A connection goes back to the pool only when h11 says both
sides are DONE and nothing stray is buffered; everything else (a cancelled, failed or
half-read exchange) is closed, which also keeps h11's state honest without a
``send_failed()`` dance.

Stale keep-alive: servers close idle connections whenever they like (commonly after 5-75 s).
Before reuse, an idle socket is probed with a zero-timeout poll: EOF, a reset or stray bytes
mean it is dead; the same probe runs over every idle connection once a ``reap_interval``
while the transport is entered, so one the server closed is closed here too instead of
sitting in CLOSE_WAIT until the next call to that origin. The probe cannot close the race
where the server closes just as our request leaves, so a request that fails on a *reused*
connection before any response byte arrived is retried once, on a fresh connection. Go's
net/http retries this case only for idempotent requests or when it knows nothing was
written; chatd's calls are all POSTs, so that rule would never fire here. Retrying them is
safe in practice: a server that closes an idle connection does so without reading the next
request. The cost of the rare exception (a server that read the request and died without a
byte) is one duplicate chat call. A fresh connection that fails the same way is not retried.
"""

from __future__ import annotations

import contextlib
import inspect
import select
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import anyio
import anyio.abc
import h11

from chatproto import ChatError, HTTPRequest, redact_userinfo

from ._base import (
    DEFAULT_REAP_INTERVAL,
    DEFAULT_TIMEOUTS,
    FRAMING_HEADERS,
    USER_AGENT,
    Response,
    Sweeper,
    Timeouts,
    Transport,
    userinfo_auth,
)
from ._errors import BODY_ERRORS, CONNECT_ERRORS, HEAD_ERRORS, ExceptionMap, map_exceptions

__all__ = ["H11Transport"]

#: Bytes asked of the socket per read. 64 KiB matches a typical socket buffer, so a
#: fast upstream's burst is one read (and one h11 event) instead of many small ones.
RECEIVE_SIZE = 64 * 1024

#: A request body larger than this is written in slices of this size (see
#: ``_send_and_receive_head``); a smaller one goes out in the same write as the head.
LARGE_BODY = 256 * 1024

#: A request body larger than this goes on a fresh connection and is let go once written
#: (see :class:`_Exchange`).
FRESH_BODY = 1024 * 1024

#: Methods whose request carries a body, so ``Content-Length: 0`` is sent even when empty
#: (RFC 9110 §8.6: a user agent SHOULD send it for a POST without content).
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

# h11 reports malformed bytes as RemoteProtocolError; which type it becomes depends on
# whether the head was complete (see _errors.py).
_HEAD_ERRORS = {**HEAD_ERRORS, h11.RemoteProtocolError: "upstream_unavailable"}
_BODY_ERRORS = {**BODY_ERRORS, h11.RemoteProtocolError: "bad_upstream_response"}
_POOL_ERRORS: ExceptionMap = {TimeoutError: "upstream_timeout"}

Origin = tuple[str, str, int]
_Head = tuple[Origin, bytes, bytes, list[tuple[bytes, bytes]], bool]
"""origin, method, target, validated headers without Content-Length, whether the method
always sends a Content-Length."""

#: Distinct (method, url, headers) request heads kept validated; see ``_request_event``.
HEAD_CACHE_SIZE = 64

# h11's Request takes ``_parsed=True`` for headers its own parser produced, skipping the
# per-value regexes. Used only for headers h11 validated before (see _request_event); if a
# future h11 drops the flag, every call is simply validated in full again.
_H11_PARSED_FLAG = "_parsed" in inspect.signature(h11.Request).parameters


def _readable_now(fd: int) -> bool:
    """Whether ``fd`` has data, EOF or an error pending, without blocking."""
    if hasattr(select, "poll"):  # no FD_SETSIZE limit, unlike select()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])  # Windows


class H11Transport(Transport):
    """HTTP/1.1 (h11) over anyio TCP, TLS by the standard ``ssl`` module, pooled per origin.

    Args:
        ssl_context: used for ``https`` origins; default ``ssl.create_default_context()``
            (system CAs, hostname checks), built on first use.
        max_connections_per_origin: live connections (busy + idle) per origin; a request
            beyond it waits for a free one, within ``Timeouts.total``. A streamed answer
            holds its connection for its whole length, so the bound is set for a
            thousand concurrent streams: at 100, the 101st stream waited for another to
            finish (measured: 1,000 paced 2 s streams took 21 s instead of ~2 s).
        max_idle_per_origin: idle connections kept for reuse per origin. Steady
            concurrency above it closes and reopens connections (measured: 30% of calls
            reconnecting at 50 concurrent calls with a bound of 20), so it is 100; a
            burst beyond that closes its extra connections as they go idle.
        keepalive_expiry: seconds an idle connection may wait before it is discarded
            instead of reused.
        user_agent: sent unless the request sets ``User-Agent`` itself.
        reap_interval: seconds between sweeps of the idle connections while the
            transport is entered (``async with``): one the upstream closed, or past
            ``keepalive_expiry``, is closed then instead of at the next checkout
            (see :class:`~transports._base.Sweeper`).
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_connections_per_origin: int = 1024,
        max_idle_per_origin: int = 100,
        keepalive_expiry: float = 30.0,
        user_agent: str = USER_AGENT,
        reap_interval: float = DEFAULT_REAP_INTERVAL,
    ) -> None:
        if max_connections_per_origin < 1 or max_idle_per_origin < 0:
            raise ValueError("connection limits must be positive")
        self._ssl_context = ssl_context
        self._max_connections = max_connections_per_origin
        self._max_idle = max_idle_per_origin
        self._keepalive_expiry = keepalive_expiry
        self._user_agent = user_agent
        self._pools: dict[Origin, _Pool] = {}
        self._heads: dict[tuple[str, str, tuple[tuple[str, str], ...]], _Head] = {}
        self._closed = False
        self._sweeper = Sweeper(self._sweep, reap_interval)

    def open(
        self, request: HTTPRequest, timeouts: Timeouts = DEFAULT_TIMEOUTS, *,
        written: Callable[[], None] | None = None,
    ) -> _Exchange:
        return _Exchange(self, request, timeouts, written)

    async def __aenter__(self) -> Self:
        await self._sweeper.start()
        return self

    async def aclose(self) -> None:
        self._closed = True
        await self._sweeper.stop()
        for pool in self._pools.values():
            while pool.idle:
                await pool.idle.pop().aclose()

    async def _sweep(self) -> None:
        """Close idle connections the upstream has closed (or that are past expiry).

        The list is rebuilt before the first await, so a checkout running meanwhile never
        takes a connection that is about to be closed.
        """
        now = anyio.current_time()
        for pool in self._pools.values():
            dead = [
                conn for conn in pool.idle
                if now - conn.idle_since >= self._keepalive_expiry or conn.is_dead()
            ]
            if dead:
                pool.idle[:] = [conn for conn in pool.idle if conn not in dead]
                for conn in dead:
                    await conn.aclose()

    def __repr__(self) -> str:
        idle = sum(len(p.idle) for p in self._pools.values())
        return f"<H11Transport origins={len(self._pools)} idle={idle}>"

    # -- request ------------------------------------------------------------------------

    def _request_event(self, request: HTTPRequest) -> tuple[Origin, h11.Request]:
        """The origin and the h11 request head; ``invalid_request`` if not valid HTTP/1.1.

        Everything but Content-Length depends only on (method, url, headers), which repeat
        for every call to a provider, so that part is parsed and validated once (by h11)
        and cached; per call only the length is added. Rebuilding and revalidating it cost
        ~25 us a call (h11 runs its header regexes on every value each time).
        """
        key = (request.method, request.url, request.headers)
        head = self._heads.get(key)
        if head is None:
            head = self._head(request)
            if len(self._heads) >= HEAD_CACHE_SIZE:
                self._heads.clear()  # a bound, not a policy: chatd has a few per provider
            self._heads[key] = head
        origin, method, target, headers, with_length = head
        if request.body or with_length:
            headers = [*headers, (b"Content-Length", b"%d" % len(request.body))]
        # The cached headers were validated by h11 when the entry was made, and the length
        # is digits we wrote: h11's "already parsed" path skips re-running its regexes.
        if _H11_PARSED_FLAG:
            event = h11.Request(method=method, target=target, headers=headers, _parsed=True)
        else:  # pragma: no cover - an h11 without the flag
            event = h11.Request(method=method, target=target, headers=headers)
        return origin, event

    def _head(self, request: HTTPRequest) -> _Head:
        """Parse and validate everything of a request head except its Content-Length."""
        try:
            url = urlsplit(request.url)  # once: HTTPRequest's properties each re-parse
            scheme, host, port = url.scheme, url.hostname or "", url.port
        except ValueError:  # a port that is not a number
            scheme = host = ""
        if scheme not in ("http", "https") or not host:
            shown = redact_userinfo(request.url)
            raise ChatError("invalid_request", f"cannot send to {shown!r}: not http(s)")
        default_port = 443 if scheme == "https" else 80
        port = port or default_port
        target = url.path or "/"
        if url.query:
            target = f"{target}?{url.query}"
        headers: list[tuple[str, str]] = []
        basic = userinfo_auth(url, request.headers)
        if basic is not None:
            headers.append(basic)
        has_host = has_agent = False
        for name, value in request.headers:
            lower = name.lower()
            if lower in FRAMING_HEADERS:
                continue  # framing is ours: derived from the body, per call
            has_host = has_host or lower == "host"
            has_agent = has_agent or lower == "user-agent"
            headers.append((name, value))
        if not has_host:  # RFC 9110 §7.2: the port only when it is not the default
            authority = f"[{host}]" if ":" in host else host  # IPv6 back in brackets
            if port != default_port:
                authority = f"{authority}:{port}"
            headers.insert(0, ("Host", authority))
        if not has_agent:
            headers.append(("User-Agent", self._user_agent))
        try:
            event = h11.Request(method=request.method, target=target, headers=headers)
        except (h11.LocalProtocolError, UnicodeError):
            # h11's message quotes the offending value, which may be a key: not passed on.
            raise ChatError(
                "invalid_request",
                "the request is not valid HTTP/1.1 (method, target or a header has "
                "characters HTTP does not allow)",
            ) from None
        return (
            (scheme, host, port),
            event.method,
            event.target,
            event.headers.raw_items(),
            request.method in BODY_METHODS,
        )

    # -- pool ---------------------------------------------------------------------------

    async def _checkout(
        self, origin: Origin, timeouts: Timeouts, deadline: float, *, fresh: bool
    ) -> _Connection:
        """An idle live connection to ``origin``, else a new one (``fresh``: always new)."""
        if self._closed:
            raise RuntimeError("this H11Transport is closed")
        pool = self._pools.get(origin)
        if pool is None:
            pool = self._pools[origin] = _Pool(self._max_connections, self._max_idle)
        if not fresh:
            now = anyio.current_time()
            while pool.idle:
                conn = pool.idle.pop()
                if now - conn.idle_since < self._keepalive_expiry and not conn.is_dead():
                    conn.reused = True
                    return conn
                await conn.aclose()
        if pool.live < pool.max_connections:
            pool.live += 1
        else:
            with map_exceptions(_POOL_ERRORS, f"waiting for a free connection to {origin[1]}"):
                handed = await pool.wait_turn(deadline)
            if handed is not None:
                if not fresh:
                    return handed
                await handed.close_socket()  # keep its slot for the fresh connection
        try:
            stream = await self._connect(origin, timeouts, deadline)
        except BaseException:
            pool.release_slot()
            raise
        return _Connection(stream, pool)

    async def _connect(
        self, origin: Origin, timeouts: Timeouts, deadline: float
    ) -> anyio.abc.ByteStream:
        scheme, host, port = origin
        limit = min(timeouts.connect, deadline - anyio.current_time())
        with map_exceptions(CONNECT_ERRORS, f"connecting to {host}:{port}"):
            with anyio.fail_after(limit):
                if scheme == "https":
                    return await anyio.connect_tcp(
                        host,
                        port,
                        ssl_context=self._get_ssl_context(),
                        tls=True,
                        # Closing skips the close_notify exchange: a peer that does not
                        # answer it must not stall our cleanup. HTTP framing, not TLS
                        # EOF, tells us where a response ends.
                        tls_standard_compatible=False,
                    )
                return await anyio.connect_tcp(host, port)

    def _get_ssl_context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            context = ssl.create_default_context()
            context.set_alpn_protocols(["http/1.1"])
            self._ssl_context = context
        return self._ssl_context

    def _checkin(self, conn: _Connection) -> bool:
        """Pool ``conn`` if it finished a clean exchange and is wanted (True); False: the
        caller closes it. Synchronous, so the common case costs no cancel scope."""
        state = conn.h11
        if (
            not self._closed
            and state.our_state is h11.DONE
            and state.their_state is h11.DONE
            and state.trailing_data == (b"", False)
        ):
            state.start_next_cycle()
            return conn.pool.offer(conn)
        return False


class _Waiter:
    """A request queued for a connection: it is handed one, or a slot to open one."""

    __slots__ = ("conn", "event", "granted")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.conn: _Connection | None = None
        self.granted = False


class _Pool:
    """The connections to one origin.

    ``live`` counts open connections (busy and idle) and never exceeds
    ``max_connections``. A request that finds none idle and no room queues as a
    :class:`_Waiter`, first come first served; a finished connection is handed straight to
    the first waiter (no new handshake under load), and a closed one passes its slot on.
    """

    __slots__ = ("idle", "live", "max_connections", "max_idle", "waiters")

    def __init__(self, max_connections: int, max_idle: int) -> None:
        self.max_connections = max_connections
        self.max_idle = max_idle
        self.live = 0
        self.idle: list[_Connection] = []
        self.waiters: deque[_Waiter] = deque()

    def offer(self, conn: _Connection) -> bool:
        """Give a reusable connection to a waiter or the idle list; False: close it."""
        if self.waiters:
            waiter = self.waiters.popleft()
            conn.reused = True
            waiter.conn = conn
            waiter.event.set()
            return True
        if len(self.idle) < self.max_idle:
            conn.idle_since = anyio.current_time()
            self.idle.append(conn)
            return True
        return False

    def release_slot(self) -> None:
        """A connection closed (or never opened): its slot goes to a waiter, else away."""
        if self.waiters:
            waiter = self.waiters.popleft()
            waiter.granted = True
            waiter.event.set()
        else:
            self.live -= 1

    async def wait_turn(self, deadline: float) -> _Connection | None:
        """Queue until handed a connection (returned) or a slot (None), by ``deadline``."""
        waiter = _Waiter()
        self.waiters.append(waiter)
        try:
            with anyio.fail_after(deadline - anyio.current_time()):
                await waiter.event.wait()
        except BaseException:
            # Timed out or cancelled: whatever arrived meanwhile goes to the next in line.
            if waiter.conn is not None:
                await waiter.conn.aclose()
            elif waiter.granted:
                self.release_slot()
            else:
                self.waiters.remove(waiter)
            raise
        return waiter.conn


class _Connection:
    """One socket, its h11 state machine, and what the pool needs to know about it."""

    __slots__ = ("closed", "got_bytes", "h11", "idle_since", "pool", "reused", "sock", "stream")

    def __init__(self, stream: anyio.abc.ByteStream, pool: _Pool) -> None:
        self.stream = stream
        self.sock = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
        self.pool = pool
        self.h11 = h11.Connection(h11.CLIENT)
        self.idle_since = 0.0
        self.reused = False
        self.got_bytes = False
        """Whether any byte of the current response arrived (decides the stale retry)."""
        self.closed = False

    def is_dead(self) -> bool:
        """True when an idle connection can no longer carry a request.

        An idle HTTP/1.1 server has nothing to say, so a readable socket (EOF, a reset,
        stray bytes) means the connection is gone. A zero-timeout poll asks the kernel
        without reading anything; both backends leave the fd alone while we are not
        receiving (anyio pauses asyncio's reader between receives).
        """
        if self.sock is None:
            return False  # nothing to probe; the stale retry covers it
        fd = self.sock.fileno()
        return fd < 0 or _readable_now(fd)

    async def aclose(self) -> None:
        """Close the socket (idempotent, shielded) and free its pool slot."""
        if not self.closed:
            await self.close_socket()
            self.pool.release_slot()

    async def close_socket(self) -> None:
        """Close the socket but keep the pool slot (the caller reuses it)."""
        self.closed = True
        with anyio.CancelScope(shield=True):
            # A broken socket may complain while closing; it is released either way.
            with contextlib.suppress(OSError, anyio.BrokenResourceError):
                await self.stream.aclose()


class _Exchange:
    """One request and its response on one connection: what :meth:`H11Transport.open`
    returns. Entering sends and reads the head; leaving pools or closes the connection.

    A body over :data:`FRESH_BODY` is let go as soon as it is written, so that it is not
    resident while the upstream works on its answer (most of a call's life; the caller
    hands the request over without keeping it, server/service.py ``Outbox``). Such a body
    goes on a fresh connection: on a reused one the stale keep-alive retry (module
    docstring) would need it again until the first response byte, which for a whole
    answer is the end of the wait. A handshake costs less than writing a megabyte.
    """

    __slots__ = (
        "_conn", "_deadline", "_done", "_request", "_timeouts", "_transport", "_written",
    )

    def __init__(
        self, transport: H11Transport, request: HTTPRequest, timeouts: Timeouts,
        written: Callable[[], None] | None = None,
    ) -> None:
        self._transport = transport
        self._request = request
        self._timeouts = timeouts
        self._written = written
        self._deadline = 0.0
        self._done = False

    async def __aenter__(self) -> Response:
        transport = self._transport
        origin, event = transport._request_event(self._request)
        self._deadline = anyio.current_time() + self._timeouts.total
        large = len(self._request.body) > FRESH_BODY
        for attempt in (1, 2):
            conn = await transport._checkout(
                origin, self._timeouts, self._deadline, fresh=attempt == 2 or large
            )
            try:
                response = await self._send_and_receive_head(conn, event)
            except ChatError as exc:
                await conn.aclose()
                stale = conn.reused and not conn.got_bytes and exc.type == "upstream_unavailable"
                if attempt == 1 and stale:
                    continue  # see the module docstring: stale keep-alive, retried once
                raise
            except BaseException:
                await conn.aclose()
                raise
            self._conn = conn
            return response
        raise AssertionError("unreachable: the second attempt returns or raises")

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._transport._checkin(self._conn):
            await self._conn.aclose()  # shielded: it runs even when we are cancelled

    async def _send_and_receive_head(self, conn: _Connection, event: h11.Request) -> Response:
        state = conn.h11
        conn.got_bytes = False
        # One cancel scope for the send and every read of the head, its deadline moved
        # before each read: a fresh fail_after per operation cost more than the rest of
        # this method. Nothing in here yields to the caller, so the scope wraps no user code.
        what = "sending the request"
        with anyio.CancelScope(deadline=self._read_deadline()) as scope:
            with map_exceptions(_HEAD_ERRORS, what):
                await self._send(conn, event)  # its own frame: no local keeps the body
            if len(self._request.body) > FRESH_BODY:
                self._request = replace(self._request, body=b"")  # written: let it go
            if self._written is not None:
                self._written()
            what = "awaiting the response"
            while True:
                with map_exceptions(_HEAD_ERRORS, "reading the response head"):
                    head = state.next_event()
                if head is h11.NEED_DATA:
                    scope.deadline = self._read_deadline()
                    await self._fill(conn, _HEAD_ERRORS, what)
                elif isinstance(head, h11.Response):
                    headers = tuple(
                        (n.decode("ascii"), v.decode("latin-1")) for n, v in head.headers
                    )
                    return Response(status=head.status_code, headers=headers, receive=self._receive)
                elif not isinstance(head, h11.InformationalResponse):  # 1xx: wait for more
                    raise ChatError(
                        "upstream_unavailable", f"unexpected {head!r} before a response"
                    )
        # Only our own deadline's cancellation is swallowed by the scope and lands here.
        raise ChatError("upstream_timeout", f"{what}: timed out")

    async def _receive(self) -> bytes:
        """The next body chunk, ``b""`` at the end: ``Response``'s receive callable.

        A chunk is everything one socket read produced: a chunked body yields one h11
        ``Data`` per HTTP chunk, often dozens per read for a fast stream, and handing them
        over joined lets the layers above parse, render and write them in one go.
        """
        if self._done:
            return b""
        conn = self._conn
        state = conn.h11
        parts: list[bytes] = []
        while True:
            with map_exceptions(_BODY_ERRORS, "reading the response body"):
                event = state.next_event()
            if type(event) is h11.Data:
                if event.data:
                    parts.append(bytes(event.data))  # h11 hands out a bytearray slice
            elif event is h11.NEED_DATA:
                if parts:
                    return parts[0] if len(parts) == 1 else b"".join(parts)
                # A stream is policed by the idle limit alone (see Timeouts.total).
                if self._request.stream:
                    deadline = anyio.current_time() + self._timeouts.read
                else:
                    deadline = self._read_deadline()
                with anyio.CancelScope(deadline=deadline) as scope:
                    await self._fill(conn, _BODY_ERRORS, "reading the response body")
                if scope.cancelled_caught:
                    raise ChatError("upstream_timeout", "reading the response body: timed out")
            else:  # EndOfMessage (then DONE/MUST_CLOSE: h11 has nothing more to say)
                self._done = True
                return b"".join(parts)

    async def _send(self, conn: _Connection, event: h11.Request) -> None:
        """Write the head and the body (a frame of its own, so that no local of the
        caller's holds the body once it is written)."""
        state = conn.h11
        body = self._request.body
        pieces: list[bytes | memoryview]
        if len(body) > LARGE_BODY:
            # Written in slices of the body itself: joining head and body would copy the
            # body, and one large write leaves asyncio a copy of whatever the socket did
            # not take at once (8 MiB bodies cost three times their size that way).
            pieces = [state.send(event)]
            framed = memoryview(state.send(h11.Data(data=body)))
            pieces += [framed[i:i + LARGE_BODY] for i in range(0, len(framed), LARGE_BODY)]
            pieces.append(state.send(h11.EndOfMessage()))
        elif body:
            pieces = [b"".join(
                (state.send(event), state.send(h11.Data(data=body)), state.send(h11.EndOfMessage()))
            )]
        else:
            pieces = [state.send(event) + state.send(h11.EndOfMessage())]
        for piece in pieces:
            await conn.stream.send(piece)  # type: ignore[arg-type]

    def _read_deadline(self) -> float:
        """When the next read must be done: the idle limit capped by the total deadline."""
        return min(anyio.current_time() + self._timeouts.read, self._deadline)

    @staticmethod
    async def _fill(conn: _Connection, errors: ExceptionMap, what: str) -> None:
        """One socket read into h11, EOF translated to ``receive_data(b"")``. The caller
        holds the cancel scope that bounds it."""
        with map_exceptions(errors, what):
            try:
                data = await conn.stream.receive(RECEIVE_SIZE)
            except anyio.EndOfStream:
                data = b""
        if data:
            conn.got_bytes = True
        elif not conn.got_bytes:
            raise ChatError(
                "upstream_unavailable", "the upstream closed the connection without answering"
            )
        conn.h11.receive_data(data)
