"""The one relay: a client's call through any door to the upstream and back.

Strategy: a door (:class:`~chatproto.Door`) owns every byte of its wire format; the
service owns every upstream call; this module owns what happens between them, once for
every door:

- the body is read under the size limit and parsed by the door; the request carries the
  door's dialect (``ChatRequest.dialect = door.api``, which turns on same-dialect
  passthrough in the call plan) and the client's User-Agent in ``ChatRequest.headers``
  (for a provider with ``forward_user_agent``, SPEC §2);
- a call the door answers itself (:attr:`~chatproto.DoorCall.reply`, Ollama's load call)
  is routed, so a name chatd cannot route is still refused, and answered with no upstream;
- a whole answer is rendered by the door with the id, the clock and the measured times
  passed in (:class:`~chatproto.CallContext`, :class:`~chatproto.Answer`);
- a stream commits to its status only once the service has the upstream's first event
  (``open_stream`` reads to it before it returns), so a failure before that is a proper
  status code, shaped by the door; after it, each batch the service hands over (what one
  upstream read produced) becomes one write, the door's opening bytes riding with the
  first, and a failure is the door's own last bytes (:meth:`~chatproto.DoorStream.error`),
  after whatever the door rendered for the same batch before an event it could not
  (:func:`~chatproto.rendered_before`; SPEC §4: every event parsed before the failure
  reaches the client first, however the upstream's bytes were split);
- every upstream call runs under :func:`~server.asgi.until_disconnect`: a client that goes
  away cancels it, also while the upstream has sent nothing yet;
- every request is observed (:mod:`server.observe`) from the door to its last byte: the
  service fills its trace, the head carries who served it (``x-chatd-provider``,
  ``x-chatd-upstream-model``, ``x-chatd-overhead-ms``, on errors too once a route was
  chosen), and it is counted and logged once with the status the client got, the door's
  ``name`` as its label;
- every wait has a deadline (SPEC §5): a stream whose upstream sends no event for
  ``stream_idle_secs`` (keep-alives are bytes, not events), or that runs past
  ``stream_max_secs``, ends with the door's error; a client that reads nothing for
  ``stream_idle_secs`` (its write blocks) has the upstream call cancelled; and once the
  process drains (:class:`~server.asgi.Drain`), a call still running at the end of the
  grace is answered 503 ``shutting_down`` before the head, or ended with the door's error
  after it. One cancel scope per call carries all of these, its deadline moved as the
  relay alternates between waiting on the upstream and writing to the client, so a
  stream chunk costs two deadline moves rather than two scopes.

Routes are data (:func:`chat_route`): adding a door to the server is one entry in the app's
route table.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal, Protocol

import anyio
import orjson
import sniffio

from chatproto import (
    Answer,
    CallContext,
    ChatError,
    ChatRequest,
    Door,
    DoorCall,
    DoorStream,
    Provider,
    Served,
    StreamEnded,
    rendered_before,
)

from .asgi import (
    LARGE_BODY,
    BodyBudget,
    Disconnected,
    Drain,
    Request,
    Responder,
    ScopeHeaders,
    header,
    until_disconnect,
)
from .config import ChatdConfig, Config
from .observe import Observed, Observer, observed
from .service import ChatService

if TYPE_CHECKING:
    from .lister import ModelLister

__all__ = [
    "Bounds", "DoorEndpoint", "Endpoint", "Host", "chat_route", "relay_stream", "relay_whole",
]

logger = logging.getLogger("chatd.relay")


class Host(Protocol):
    """What a route needs from the application that serves it."""

    config: Config
    providers: dict[str, Provider]
    observer: Observer
    drain: Drain
    body_budget: BodyBudget

    def service(self) -> ChatService:
        """The chat service (raises ChatError before lifespan startup)."""
        ...

    def model_lister(self) -> ModelLister:
        """The upstream model lists' cache (raises ChatError before lifespan startup)."""
        ...

    async def read_body(self, request: Request) -> bytes:
        """The request body under the configured limit."""
        ...


Endpoint = Callable[[Host, Request, Responder], Awaitable[None]]
"""A route handler; the application passes itself as the host."""

#: After a deadline has ended a stream, the longest its error line may take to write.
FINAL_WRITE_SECS = 5.0
#: How long the drain's end waits for a stream's last write to a client that is reading:
#: under process.DRAIN_MARGIN_SECS, after which hypercorn closes the connection itself.
DRAIN_WRITE_SECS = 2.0


@dataclass(frozen=True, slots=True)
class Bounds:
    """The deadlines one relayed call lives under (SPEC §5)."""

    drain: Drain = field(default_factory=Drain)
    stream_idle_secs: float = 120.0
    stream_max_secs: float = 1800.0

    @classmethod
    def of(cls, chatd: ChatdConfig, drain: Drain) -> Bounds:
        return cls(drain, chatd.stream_idle_secs, chatd.stream_max_secs)

    def shutting_down(self) -> ChatError:
        return ChatError(
            "shutting_down", "chatd is shutting down and its grace for this call has ended"
        )


def unencodable(exc: orjson.JSONEncodeError, provider: str) -> ChatError:
    """A door could not encode what the upstream sent (JSON nested past the 254 levels
    orjson writes, after it read up to 1,024): the upstream's data, so a 502, never a 500.
    Everything chatd itself puts in an answer encodes; whatever a door re-encodes from an
    upstream (a relayed body, a tool call's arguments as an object) may not."""
    return ChatError(
        "bad_upstream_response", f"the upstream's answer cannot be re-encoded: {exc}",
        provider=provider,
    )


Write = Callable[[bytes, bool], Awaitable[None]]
"""Sends one piece of a streamed body (``more``: whether another follows)."""


@asynccontextmanager
async def client_writes(responder: Responder) -> AsyncIterator[Write]:
    """How a stream's body goes to the client, so that a stalled client cannot hold the
    upstream call open.

    A client that reads nothing blocks the server's socket write. On asyncio hypercorn's
    write is cancellable, so the relay's own deadline ends it and the body is written
    directly. hypercorn's trio worker shields its socket writes (``trio/tcp_server.py``
    ``protocol_send``), so there a write blocked on a stalled client is beyond any cancel
    scope: each piece is handed to a writer task instead, and the relay's wait is for the
    *previous* piece to be written, which its deadline can end. The upstream call is then
    closed at once; the writer finishes when the client reads or goes away (hypercorn's
    connection is its to close).
    """
    if sniffio.current_async_library() != "trio":
        async def direct(data: bytes, more: bool) -> None:
            await responder.body(data, more=more)

        yield direct
        return
    send, receive = anyio.create_memory_object_stream[tuple[bytes, bool]](0)

    async def pump() -> None:
        async with receive:
            async for data, more in receive:
                await responder.body(data, more=more)

    unsent = b""

    async def handoff(data: bytes, more: bool) -> None:
        # A piece whose handoff a deadline cancelled was never taken by the writer: it
        # goes ahead of the next, so an ending written after that cancel (the drain's)
        # follows every byte the door rendered, in order.
        nonlocal unsent
        piece = unsent + data if unsent else data
        unsent = piece
        await send.send((piece, more))
        unsent = b""

    failure: Exception | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(pump)
        async with send:
            try:
                yield handoff
            except Exception as exc:  # re-raised below, outside the task group (unwrapped)
                failure = exc
                tg.cancel_scope.cancel()
    if failure is not None:
        raise failure


class DoorEndpoint:
    """The POST handler of one door's path: parse, call, render, through one relay."""

    __slots__ = ("door",)

    def __init__(self, door: Door) -> None:
        self.door = door

    async def __call__(self, host: Host, request: Request, responder: Responder) -> None:
        await observed(
            host.observer, self.door.name, responder,
            lambda obs: self._serve(host, request, responder, obs),
        )

    async def _serve(
        self, host: Host, request: Request, responder: Responder, obs: Observed
    ) -> None:
        raw = await host.read_body(request)
        release = None
        if len(raw) > LARGE_BODY:  # held twice until written upstream: room first
            release = await host.body_budget.acquire(len(raw))
        try:
            call = self.door.parse(raw, ScopeHeaders(request.scope))
            del raw  # parsed: only the parsed request is kept from here on
            await self._relay(host, request, responder, obs, call, release)
        finally:
            if release is not None:
                release()

    async def _relay(
        self, host: Host, request: Request, responder: Responder, obs: Observed,
        call: DoorCall, written: Callable[[], None] | None,
    ) -> None:
        door = self.door
        if call.dropped:
            logger.info("%s request %s: left out (no upstream here runs them): %s",
                        door.name, responder.request_id, "; ".join(call.dropped))
        chat = call.chat
        agent = header(request.scope, b"user-agent")
        if chat.dialect != door.api or (agent is not None and not _has_agent(chat)):
            # Doors set the dialect themselves; this is the guarantee. The client's
            # User-Agent rides along for a provider with ``forward_user_agent`` (SPEC §2).
            headers = chat.headers
            if agent is not None and not _has_agent(chat):
                headers = (*headers, ("user-agent", agent.decode("latin-1")))
            chat = replace(chat, dialect=door.api, headers=headers)
            call = replace(call, chat=chat)
        obs.model = chat.model
        service = host.service()
        now = time.time()
        ctx = CallContext(id=os.urandom(16).hex(), created=int(now), received=now)
        if call.reply is not None:
            obs.trace.route = service.routes(chat.model)[0]
            responder.extra = obs.served_headers()
            await responder.whole(200, call.reply(ctx), door.content_type)
            return
        started = time.perf_counter_ns()
        relay = relay_stream if chat.stream else relay_whole
        bounds = Bounds.of(host.config.chatd, host.drain)
        await until_disconnect(
            request.receive, responder,
            lambda: relay(service, door, call, ctx, responder, started, obs, bounds, written),
        )


def _has_agent(chat: ChatRequest) -> bool:
    return any(name == "user-agent" for name, _ in chat.headers)


def chat_route(door: Door) -> Mapping[str, Endpoint]:
    """The route-table entry of a door's path: ``{"POST": ...}``; errors on the path are
    shaped by the door (the app derives that from the entry)."""
    return {"POST": DoorEndpoint(door)}


async def relay_whole(
    service: ChatService, door: Door, call: DoorCall, ctx: CallContext,
    responder: Responder, started: int, obs: Observed | None = None,
    bounds: Bounds | None = None, written: Callable[[], None] | None = None,
) -> None:
    """One whole answer, rendered by the door (its ChatError goes to the app's handler).
    ``written`` is called once the upstream request is written (the service's)."""
    bounds = bounds if bounds is not None else Bounds()
    with bounds.drain.scope() as scope:
        result = await service.chat(call.chat, obs.trace if obs is not None else None,
                                    written=written)
    if scope.cancelled_caught:
        raise bounds.shutting_down()
    answer = Answer(
        response=result.response, route=result.route, latency_ms=result.latency_ms,
        elapsed_ns=time.perf_counter_ns() - started, fallbacks=result.fallbacks,
    )
    try:
        body = door.render(call, answer, ctx)
    except orjson.JSONEncodeError as exc:
        raise unencodable(exc, result.route.provider) from None
    if obs is not None:
        responder.extra = obs.served_headers()
    await responder.whole(200, body, door.content_type)


async def relay_stream(
    service: ChatService, door: Door, call: DoorCall, ctx: CallContext,
    responder: Responder, started: int, obs: Observed | None = None,
    bounds: Bounds | None = None, written: Callable[[], None] | None = None,
) -> None:
    """What one upstream read produced becomes one write as soon as the service hands it
    over; the door's opening bytes ride with the first (one write, not two)."""
    bounds = bounds if bounds is not None else Bounds()
    renderer = door.stream(call, ctx)
    async with client_writes(responder) as write:
        await _relay_stream(service, door, call, responder, started, obs, bounds, renderer,
                            write, written)


async def _relay_stream(
    service: ChatService, door: Door, call: DoorCall, responder: Responder, started: int,
    obs: Observed | None, bounds: Bounds, renderer: DoorStream, write: Write,
    written: Callable[[], None] | None = None,
) -> None:
    """:func:`relay_stream`'s work, its writes through ``write``."""
    drain = bounds.drain
    idle = bounds.stream_idle_secs
    clock = anyio.current_time
    phase: Literal["opening", "upstream", "client"] = "opening"
    pending = b""
    head_sent = ending = False
    with drain.scope() as scope:  # until the first event: the service's timeout, the drain
        async with service.open_stream(
            call.chat, obs.trace if obs is not None else None, written=written
        ) as stream:
            phase = "client"
            scope.deadline = min(clock() + idle, drain.deadline)
            if obs is not None:
                responder.extra = obs.served_headers()
                obs.stream_opened()
            await responder.start(200, door.stream_content_type, door.stream_headers)
            head_sent = True
            pending = renderer.start()
            served = Served(route=stream.route)
            ends = clock() + bounds.stream_max_secs
            batches = stream.batches()
            try:
                while True:
                    phase = "upstream"
                    scope.deadline = min(clock() + idle, ends, drain.deadline)
                    batch = await batches.__anext__()
                    phase = "client"
                    scope.deadline = min(clock() + idle, drain.deadline)
                    if type(batch[-1]) is StreamEnded:
                        final = Served(
                            route=stream.route, latency_ms=stream.latency_ms,
                            elapsed_ns=time.perf_counter_ns() - started,
                        )
                        data = renderer.events(batch, final)
                        ending = True
                        await write(pending + data, False)
                        return
                    data = renderer.events(batch, served)
                    if data:
                        await write(pending + data, True)
                        pending = b""
            except ChatError as exc:
                phase = "client"
                scope.deadline = min(clock() + FINAL_WRITE_SECS, drain.deadline)
                logger.info(
                    "%s stream from %s failed mid-way (request %s): %s %s",
                    door.name, exc.provider, responder.request_id, exc.type, exc.message,
                )
                if obs is not None:
                    obs.error = exc
                data = rendered_before(exc) + renderer.error(exc)
                ending = True
                await write(pending + data, False)
                return
            except Disconnected:
                raise
            except orjson.JSONEncodeError as exc:
                failure = unencodable(exc, stream.route.provider)
                phase = "client"
                scope.deadline = min(clock() + FINAL_WRITE_SECS, drain.deadline)
                logger.info("%s stream from %s failed (request %s): %s", door.name,
                            failure.provider, responder.request_id, failure.message)
                if obs is not None:
                    obs.error = failure
                data = rendered_before(exc) + renderer.error(failure)
                ending = True
                await write(pending + data, False)
                return
            except Exception as exc:
                # A bug after the head: logged once here, and the stream still ends in the
                # door's way (SPEC §4), not as a cut body.
                logger.exception("%s stream failed (request %s)", door.name,
                                 responder.request_id)
                internal = ChatError("internal_error", "internal error")
                if obs is not None:
                    obs.error = internal
                phase = "client"
                scope.deadline = min(clock() + FINAL_WRITE_SECS, drain.deadline)
                data = rendered_before(exc) + renderer.error(internal)
                ending = True
                await write(pending + data, False)
                return
            except StopAsyncIteration:  # pragma: no cover - StreamEnded is always last
                # Unreachable by ChatStream's contract; never leave the response open.
                await write(pending, False)
                return
    # Only a deadline of ours lands here (the scope swallowed its own cancellation), and
    # leaving the ``async with`` has closed the upstream call.
    if phase == "opening":
        raise bounds.shutting_down()  # nothing sent yet: the app answers 503
    if phase == "client" and head_sent and drain.expired():
        # The drain's end found the relay waiting on a client write, not on a stalled
        # client: the stream still ends in the door's way (SPEC §5 shutdown_grace_secs),
        # within DRAIN_WRITE_SECS, short of hypercorn's own cut (process.DRAIN_MARGIN_SECS).
        exc = bounds.shutting_down()
        exc.provider = stream.route.provider
        if obs is not None and not ending:
            obs.error = exc
        with anyio.move_on_after(DRAIN_WRITE_SECS):
            await write(b"" if ending else pending + renderer.error(exc), False)
            logger.info("%s stream from %s ended (request %s): %s %s", door.name,
                        exc.provider, responder.request_id, exc.type, exc.message)
            return
    if phase == "client":
        # The client read nothing for stream_idle_secs (or at the drain's end): its
        # upstream call is cancelled; a write it does not read cannot tell it anything.
        logger.info("%s stream: the client read nothing for %g s; upstream call cancelled "
                    "(request %s)", door.name, idle, responder.request_id)
        raise Disconnected()
    now = clock()
    if drain.expired():
        exc = bounds.shutting_down()
    elif now >= ends:
        exc = ChatError("upstream_timeout",
                        f"the stream ran past stream_max_secs ({bounds.stream_max_secs:g} s)")
    else:
        exc = ChatError("upstream_timeout",
                        f"the upstream sent no event for {idle:g} s (stream_idle_secs)")
    exc.provider = stream.route.provider
    logger.info("%s stream from %s ended (request %s): %s %s", door.name, exc.provider,
                responder.request_id, exc.type, exc.message)
    if obs is not None:
        obs.error = exc
    with anyio.move_on_after(FINAL_WRITE_SECS):
        await write(pending + renderer.error(exc), False)
        return
    raise Disconnected()
