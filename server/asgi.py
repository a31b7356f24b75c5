"""ASGI 3 plumbing: the typed messages, one request, one response, and the two waits.

Strategy: everything here is about HTTP over ASGI and nothing about chat, so every other
module of the server builds on it and it imports none of them. The response side is a
small state machine (:class:`Responder`: REQUEST -> STREAMING -> CLOSED), so a handler can
never send a second status line and the last-resort handler knows whether a status line is
still possible. :func:`read_body` enforces the body limit as the body arrives;
:func:`until_disconnect` runs a handler's upstream work while a sibling task watches
``receive()`` for ``http.disconnect`` and cancels the work when the client goes away.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Required, TypedDict

import anyio
import orjson

from chatproto import ChatError, retry_after_header

__all__ = [
    "JSON_TYPE",
    "BodyBudget",
    "BodyReads",
    "Disconnected",
    "Drain",
    "ErrorRenderer",
    "Handler",
    "LifespanReply",
    "Receive",
    "Received",
    "Request",
    "Responder",
    "ResponseBody",
    "ResponseStart",
    "Scope",
    "ScopeHeaders",
    "Send",
    "Sent",
    "WebSocketClose",
    "error_headers",
    "header",
    "read_body",
    "request_id",
    "until_disconnect",
]

# ASGI 3 types (https://asgi.readthedocs.io/en/latest/specs/www.html). What chatd reads
# is typed loosely (servers add keys freely); what it sends is typed exactly.
Scope = Mapping[str, Any]
Received = Mapping[str, Any]


class ResponseStart(TypedDict):
    type: Literal["http.response.start"]
    status: int
    headers: list[tuple[bytes, bytes]]


class ResponseBody(TypedDict):
    type: Literal["http.response.body"]
    body: bytes
    more_body: bool


class LifespanReply(TypedDict, total=False):
    type: Required[Literal[
        "lifespan.startup.complete", "lifespan.startup.failed",
        "lifespan.shutdown.complete", "lifespan.shutdown.failed",
    ]]
    message: str


class WebSocketClose(TypedDict):
    type: Literal["websocket.close"]
    code: int


Sent = ResponseStart | ResponseBody | LifespanReply | WebSocketClose
Receive = Callable[[], Awaitable[Received]]
Send = Callable[[Sent], Awaitable[None]]

JSON_TYPE = b"application/json"

#: A request body declared larger than this is received into one buffer of its size.
LARGE_BODY = 256 * 1024

# A client-supplied request id is echoed only when it is short and plain, so it cannot
# smuggle anything into a header or a log line.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:+/=-]{1,128}")


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of request header ``name`` (lower-case bytes), or None."""
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return None


def request_id(scope: Scope) -> str:
    """The client's ``x-request-id`` when it is short and plain, else a fresh one."""
    raw = header(scope, b"x-request-id")
    if raw is not None:
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            text = ""
        if _REQUEST_ID.fullmatch(text):
            return text
    return os.urandom(16).hex()


class ScopeHeaders:
    """The request headers as ``(name, value)`` text pairs, names lower-case, decoded
    only when iterated (a door that reads no header costs nothing).

    Latin-1 is HTTP's historical header charset (RFC 9110 §5.5): every byte maps to one
    character, so nothing a client sends fails to decode.
    """

    __slots__ = ("_raw",)

    def __init__(self, scope: Scope) -> None:
        self._raw: Iterable[tuple[bytes, bytes]] = scope.get("headers", ())

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for key, value in self._raw:
            yield bytes(key).decode("latin-1").lower(), bytes(value).decode("latin-1")


ErrorRenderer = Callable[[ChatError], bytes]
"""Renders a ChatError as a JSON body (a door speaking another API's error shape)."""


def error_headers(exc: ChatError) -> list[tuple[bytes, bytes]]:
    """``x-should-retry`` on every error, Retry-After (SPEC §4: 429 and 503) and, for a
    401, the scheme to answer with."""
    extra: list[tuple[bytes, bytes]] = [
        (b"x-should-retry", b"true" if exc.should_retry else b"false")
    ]
    retry = retry_after_header(exc)
    if retry is not None:
        extra.append((b"retry-after", retry.encode()))
    if exc.type == "unauthorized":
        extra.append((b"www-authenticate", b"Bearer"))
    return extra


class Responder:
    """Sends one response, tracking ASGI response state so it cannot be sent twice."""

    __slots__ = ("extra", "head", "request_id", "send", "state", "status")

    def __init__(self, send: Send, request_id: str) -> None:
        self.send = send
        self.request_id = request_id
        self.state: Literal["REQUEST", "STREAMING", "CLOSED"] = "REQUEST"
        self.status = 0
        self.head = False
        """Answering HEAD: the headers of the GET response, its content never sent."""
        self.extra: list[tuple[bytes, bytes]] = []
        """Headers the head carries whatever answers (who served the request), set by the
        relay before it answers or lets an error through."""

    async def start(
        self, status: int, content_type: bytes, extra: Iterable[tuple[bytes, bytes]] = ()
    ) -> None:
        if self.state != "REQUEST":
            raise RuntimeError("response already started")
        self.state = "STREAMING"
        self.status = status
        headers = [
            (b"content-type", content_type),
            (b"x-request-id", self.request_id.encode()),
            *extra,
            *self.extra,
        ]
        await self.send({"type": "http.response.start", "status": status, "headers": headers})

    async def body(self, data: bytes, *, more: bool) -> None:
        if self.state != "STREAMING":
            raise RuntimeError("response not started or already closed")
        if not more:
            self.state = "CLOSED"
        if self.head:
            if more:
                return
            data = b""
        await self.send({"type": "http.response.body", "body": data, "more_body": more})

    async def whole(
        self,
        status: int,
        data: bytes,
        content_type: bytes = JSON_TYPE,
        extra: Iterable[tuple[bytes, bytes]] = (),
    ) -> None:
        await self.start(
            status, content_type, [(b"content-length", str(len(data)).encode()), *extra]
        )
        await self.body(data, more=False)

    async def json(
        self, status: int, obj: object, extra: Iterable[tuple[bytes, bytes]] = ()
    ) -> None:
        await self.whole(status, orjson.dumps(obj), JSON_TYPE, extra)

    async def error(
        self, exc: ChatError, render: ErrorRenderer, extra: Iterable[tuple[bytes, bytes]] = ()
    ) -> None:
        """Answer ``exc`` with its status, :func:`error_headers`, ``extra`` and the body
        ``render`` gives it (errors are JSON in every dialect chatd speaks)."""
        headers = error_headers(exc)
        headers.extend(extra)
        await self.whole(exc.status, render(exc), JSON_TYPE, headers)


@dataclass(slots=True)
class Request:
    """One incoming request, as a handler sees it (the body is read with
    :func:`read_body`)."""

    scope: Scope
    receive: Receive
    method: str
    path: str


Handler = Callable[[Request, Responder], Awaitable[None]]


class Disconnected(Exception):
    """The client went away; nothing more can be sent."""


class BodyReads:
    """The requests whose bodies are still arriving; past ``capacity``, the one that has
    been arriving longest is cut (408), so slow uploads cannot hold every slot.

    A client that sends a head and part of a body and then nothing holds its connection
    and its place in ``max_in_flight`` until ``client_body_timeout_secs``; enough of them
    would refuse everyone else for that long. A well-behaved client's body is done in
    milliseconds and never meets the cap; when the cap is full, the oldest body in
    progress is by far the likeliest to be one that will never finish.
    """

    __slots__ = ("_scopes", "capacity", "shed")

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._scopes: dict[anyio.CancelScope, None] = {}  # oldest first
        self.shed = 0
        """Bodies cut so far to make room."""

    @contextmanager
    def reading(self) -> Iterator[anyio.CancelScope]:
        """A cancel scope for one body's reads, cancelled if others need the room."""
        if len(self._scopes) >= self.capacity:
            oldest = next(iter(self._scopes))
            del self._scopes[oldest]
            oldest.cancel()
            self.shed += 1
        scope = anyio.CancelScope()
        self._scopes[scope] = None
        try:
            with scope:
                yield scope
        finally:
            self._scopes.pop(scope, None)


class BodyBudget:
    """Bytes of large request bodies between being read and being written upstream.

    In that stretch a call holds its body twice: the parsed request, and the body read
    (until parsed) or the upstream body built from it (until written). Bodies that arrive
    together are all parsed before any is written: asyncio runs every task made ready by
    the same wake-up (their last body chunks) before it looks at a socket again, so 60
    concurrent 8 MiB calls held two copies each at their peak (bench/hostile.py ``bulk``).
    A call with a body over :data:`LARGE_BODY` takes room for it here before it parses,
    and gives it back once its upstream request is written (``Transport.open``'s
    ``written``) or the call ends: past ``capacity`` the next one waits, first come first
    served, holding only the body it read. One body larger than ``capacity`` is let in
    alone. The wait is at most ``wait_secs``, then the call goes ahead anyway: this bounds
    memory, and must never refuse a call or stall every large body behind an upstream
    that reads slowly.
    """

    __slots__ = ("_waiters", "capacity", "in_use", "wait_secs")

    def __init__(self, capacity: int, wait_secs: float = 5.0) -> None:
        self.capacity = capacity
        self.wait_secs = wait_secs
        self.in_use = 0
        self._waiters: deque[tuple[int, anyio.Event]] = deque()

    def _fits(self, size: int) -> bool:
        return self.in_use == 0 or self.in_use + size <= self.capacity

    async def acquire(self, size: int) -> Callable[[], None]:
        """Room for a body of ``size`` bytes; returns its release (idempotent)."""
        if not self._waiters and self._fits(size):
            self.in_use += size
        else:
            entry = (size, anyio.Event())
            self._waiters.append(entry)
            try:
                with anyio.move_on_after(self.wait_secs):
                    await entry[1].wait()
            except BaseException:
                self._leave(entry)
                raise
            if not entry[1].is_set():  # waited long enough: go ahead, counted
                self._waiters.remove(entry)
                self.in_use += size
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.in_use -= size
                self._wake()

        return release

    def _leave(self, entry: tuple[int, anyio.Event]) -> None:
        """A waiter cancelled: its room, if granted meanwhile, goes to the next."""
        if entry[1].is_set():
            self.in_use -= entry[0]
            self._wake()
        else:
            self._waiters.remove(entry)

    def _wake(self) -> None:
        while self._waiters and self._fits(self._waiters[0][0]):
            size, event = self._waiters.popleft()
            self.in_use += size
            event.set()


async def read_body(
    request: Request, limit: int, timeout: float = math.inf, reads: BodyReads | None = None
) -> bytes:
    """The whole request body, refusing more than ``limit`` bytes as it arrives, and a body
    not complete within ``timeout`` seconds (SPEC §5 ``client_body_timeout_secs``).

    A declared Content-Length over the limit is refused before reading anything; a
    chunked body is counted chunk by chunk, so the limit bounds memory either way. The
    deadline covers the whole body, not each read: a client sending a byte a second would
    pass any per-read limit while holding its connection (and descriptor) for ever.

    With ``reads``, the body counts among those in progress and may be cut to make room
    (:class:`BodyReads`).

    Raises:
        ChatError: ``request_too_large`` (413), ``request_timeout`` (408).
        Disconnected: the client went away before the body was complete.
    """
    too_large = ChatError("request_too_large", f"request body is larger than {limit} bytes")
    declared = header(request.scope, b"content-length")
    length = int(declared) if declared is not None and declared.strip().isdigit() else None
    if length is not None and length > limit:
        raise too_large
    # A declared length is read into one buffer of that size: a list of the server's
    # 64 KiB pieces, joined at the end, held the body twice and left the heap full of
    # freed pieces (60 concurrent 8 MiB bodies cost 2.6 times their size; see bench/).
    buffer = bytearray(length) if length is not None and length > LARGE_BODY else None
    parts: list[bytes] = []
    size = 0
    with anyio.move_on_after(timeout), (
        reads.reading() if reads is not None else contextlib.nullcontext()
    ) as room:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                raise Disconnected()
            chunk = message.get("body", b"")
            if size + len(chunk) > limit:
                raise too_large
            if buffer is not None and size + len(chunk) <= len(buffer):
                buffer[size:size + len(chunk)] = chunk
            else:
                if buffer is not None:  # more than declared (the server refuses that)
                    parts.append(bytes(buffer[:size]))
                    buffer = None
                parts.append(bytes(chunk))
            size += len(chunk)
            if not message.get("more_body", False):
                if buffer is not None:
                    return bytes(buffer) if size == len(buffer) else bytes(buffer[:size])
                body = b"".join(parts)
                parts.clear()  # the pieces go now, not when the caller returns
                return body
    if room is not None and room.cancelled_caught:
        raise ChatError(
            "request_timeout",
            f"the request body was still arriving ({size} bytes so far) when chatd needed "
            "its place for other requests",
        )
    raise ChatError(
        "request_timeout",
        f"the request body was not received within {timeout:g} s ({size} bytes arrived)",
    )


class Drain:
    """The process is stopping: waits registered here end at the drain's deadline.

    Until :meth:`begin` the deadline is infinite and a registered wait costs one cancel
    scope. A request's upstream wait runs inside :meth:`scope`; :meth:`begin` moves the
    deadline of every scope open at that moment, and a scope opened later starts with
    it, so no call outlives the grace. What an expired scope means is the caller's to say
    (``shutting_down``, in the dialect's shape): the drain only keeps the clock.
    """

    __slots__ = ("_scopes", "deadline")

    def __init__(self) -> None:
        self.deadline = math.inf
        self._scopes: set[anyio.CancelScope] = set()

    @property
    def draining(self) -> bool:
        return self.deadline != math.inf

    def begin(self, deadline: float) -> None:
        """Every wait ends by ``deadline`` (anyio clock); called once, on the first signal."""
        self.deadline = min(self.deadline, deadline)
        for scope in self._scopes:
            scope.deadline = min(scope.deadline, self.deadline)

    def expired(self) -> bool:
        return anyio.current_time() >= self.deadline

    @contextmanager
    def scope(self) -> Iterator[anyio.CancelScope]:
        """A cancel scope whose deadline is never later than the drain's."""
        scope = anyio.CancelScope(deadline=self.deadline)
        self._scopes.add(scope)
        try:
            with scope:
                yield scope
        finally:
            self._scopes.discard(scope)


async def until_disconnect(
    receive: Receive, responder: Responder, work: Callable[[], Awaitable[None]]
) -> None:
    """Run ``work``; cancel it if the client disconnects before the response is complete.

    The work runs in this task (so its exceptions propagate unwrapped); the watcher is the
    task group's only child and never raises. The server reports a disconnect also after a
    complete response (the stream closing); that one cancels nothing.

    Raises:
        Disconnected: the client went away and the work was cancelled.
    """
    disconnected = False

    async def watch(scope: anyio.CancelScope) -> None:
        nonlocal disconnected
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if responder.state != "CLOSED":
                    disconnected = True
                    scope.cancel()
                return

    failure: BaseException | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(watch, tg.cancel_scope)
        try:
            await work()
        except Exception as exc:  # re-raised below, outside the task group
            failure = exc
        finally:
            # ASGI: "http.disconnect: sent to the application if receive is called after a
            # response has been sent". So after a complete response the watcher ends by
            # itself; cancelling it (a costly step of anyio's on asyncio) is needed only
            # when no complete response went out.
            if responder.state != "CLOSED":
                tg.cancel_scope.cancel()
    if failure is not None:
        raise failure
    if disconnected:
        raise Disconnected()
