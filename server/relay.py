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
  first, and a failure is the door's own last bytes (:meth:`~chatproto.DoorStream.error`);
- every upstream call runs under :func:`~server.asgi.until_disconnect`: a client that goes
  away cancels it, also while the upstream has sent nothing yet;
- every request is observed (:mod:`server.observe`) from the door to its last byte: the
  service fills its trace, the head carries who served it (``x-chatd-provider``,
  ``x-chatd-upstream-model``, ``x-chatd-overhead-ms``, on errors too once a route was
  chosen), and it is counted and logged once with the status the client got, the door's
  ``name`` as its label.

Routes are data (:func:`chat_route`): adding a door to the server is one entry in the app's
route table.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Protocol

from chatproto import (
    Answer,
    CallContext,
    ChatError,
    ChatRequest,
    Door,
    DoorCall,
    Provider,
    Served,
    StreamEnded,
)

from .asgi import Disconnected, Request, Responder, ScopeHeaders, header, until_disconnect
from .config import Config
from .observe import CLIENT_CLOSED, Observed, Observer
from .service import ChatService

__all__ = ["DoorEndpoint", "Endpoint", "Host", "chat_route", "relay_stream", "relay_whole"]

logger = logging.getLogger("chatd.relay")


class Host(Protocol):
    """What a route needs from the application that serves it."""

    config: Config
    providers: dict[str, Provider]
    observer: Observer

    def service(self) -> ChatService:
        """The chat service (raises ChatError before lifespan startup)."""
        ...

    async def read_body(self, request: Request) -> bytes:
        """The request body under the configured limit."""
        ...


Endpoint = Callable[[Host, Request, Responder], Awaitable[None]]
"""A route handler; the application passes itself as the host."""


class DoorEndpoint:
    """The POST handler of one door's path: parse, call, render, through one relay."""

    __slots__ = ("door",)

    def __init__(self, door: Door) -> None:
        self.door = door

    async def __call__(self, host: Host, request: Request, responder: Responder) -> None:
        obs = host.observer.begin(self.door.name, responder.request_id)
        try:
            await self._serve(host, request, responder, obs)
        except ChatError as exc:
            if responder.state == "REQUEST":  # the app answers it, with these headers
                responder.extra = obs.served_headers()
                obs.finish(exc.status, exc)
            else:
                obs.finish(responder.status, exc)
            raise
        except Disconnected:
            obs.finish(CLIENT_CLOSED, "client_closed")
            raise
        except BaseException:  # a bug (answered 500) or the task cancelled (shutdown)
            obs.finish(500 if responder.state == "REQUEST" else responder.status,
                       "internal_error")
            raise
        obs.finish(responder.status, obs.error)

    async def _serve(
        self, host: Host, request: Request, responder: Responder, obs: Observed
    ) -> None:
        door = self.door
        call = door.parse(await host.read_body(request), ScopeHeaders(request.scope))
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
        await until_disconnect(
            request.receive, responder,
            lambda: relay(service, door, call, ctx, responder, started, obs),
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
) -> None:
    """One whole answer, rendered by the door (its ChatError goes to the app's handler)."""
    result = await service.chat(call.chat, obs.trace if obs is not None else None)
    answer = Answer(
        response=result.response, route=result.route, latency_ms=result.latency_ms,
        elapsed_ns=time.perf_counter_ns() - started, fallbacks=result.fallbacks,
    )
    body = door.render(call, answer, ctx)
    if obs is not None:
        responder.extra = obs.served_headers()
    await responder.whole(200, body, door.content_type)


async def relay_stream(
    service: ChatService, door: Door, call: DoorCall, ctx: CallContext,
    responder: Responder, started: int, obs: Observed | None = None,
) -> None:
    """What one upstream read produced becomes one write as soon as the service hands it
    over; the door's opening bytes ride with the first (one write, not two)."""
    renderer = door.stream(call, ctx)
    async with service.open_stream(
        call.chat, obs.trace if obs is not None else None
    ) as stream:
        if obs is not None:
            responder.extra = obs.served_headers()
            obs.stream_opened()
        await responder.start(200, door.stream_content_type, door.stream_headers)
        pending = renderer.start()
        served = Served(route=stream.route)
        try:
            async for batch in stream.batches():
                if type(batch[-1]) is StreamEnded:
                    final = Served(
                        route=stream.route, latency_ms=stream.latency_ms,
                        elapsed_ns=time.perf_counter_ns() - started,
                    )
                    await responder.body(pending + renderer.events(batch, final), more=False)
                    return
                data = renderer.events(batch, served)
                if data:
                    await responder.body(pending + data, more=True)
                    pending = b""
        except ChatError as exc:
            logger.info(
                "%s stream from %s failed mid-way (request %s): %s %s",
                door.name, exc.provider, responder.request_id, exc.type, exc.message,
            )
            if obs is not None:
                obs.error = exc
            await responder.body(pending + renderer.error(exc), more=False)
            return
        # Unreachable by ChatStream's contract (StreamEnded is always last); never leave
        # the response open if it ever is.
        await responder.body(pending, more=False)  # pragma: no cover
