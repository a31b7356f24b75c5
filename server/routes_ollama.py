"""The Ollama-compatible front door, wired: ``POST /api/chat``, ``POST /api/generate``,
``GET /api/tags``, ``GET /api/version``.

Strategy: thin handlers. :mod:`server.front_ollama` owns every byte of Ollama's format and
:class:`~server.service.ChatService` every upstream call; a handler here reads the body,
reads the clocks (``created_at`` once per answer, the duration around the call) and relays.
Errors are raised as :class:`~chatproto.ChatError` and rendered by
:class:`~server.app.ChatdApp` as Ollama's ``{"error": "..."}`` on every path under
``/api/`` (also a 401, 404, 405 or 413 raised before a handler runs), with Retry-After
passed on for 429 and 503.

A stream commits to its status only once the service has an event from the upstream, so a
failure before that is a proper status code; after it, Ollama's mid-stream ``{"error"}``
line ends the stream (OL §1.5). Every upstream call runs under
:meth:`ChatdApp.until_disconnect`, so a client that goes away cancels it, also before the
upstream's first byte.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import TYPE_CHECKING, Any

from chatproto import ChatError, ChatRequest, HTTPRequest, StreamEnded
from transports import Timeouts

from .front_ollama import (
    ENDPOINTS,
    JSON_CONTENT_TYPE,
    NDJSON_CONTENT_TYPE,
    Endpoint,
    StreamRenderer,
    format_time,
    is_load,
    parse_tags,
    render_error,
    render_tags,
    render_version,
)

if TYPE_CHECKING:
    from .app import ChatdApp, Request, Responder
    from .service import ChatService

__all__ = ["TAGS_TIMEOUTS", "OllamaDoor", "install"]

logger = logging.getLogger("chatd.ollama")

#: ``/api/tags`` asks the local Ollama for its models. The listing only decorates a menu,
#: so a slow or absent local Ollama must not hold the answer up: after this, chatd answers
#: with its tiers alone.
TAGS_TIMEOUTS = Timeouts(connect=1.0, read=2.0, total=2.0)
#: A tags body is a few kilobytes per model; this bounds memory, not the model count.
MAX_TAGS_BYTES = 4 * 1024 * 1024


class OllamaDoor:
    """The handlers of the Ollama-compatible routes of one :class:`ChatdApp`."""

    __slots__ = ("app",)

    def __init__(self, app: ChatdApp) -> None:
        self.app = app

    async def answer(self, endpoint: Endpoint, request: Request, responder: Responder) -> None:
        """``POST /api/chat`` or ``/api/generate``: one JSON answer, or an NDJSON stream."""
        app = self.app
        chat = endpoint.parse(await app.read_body(request))
        service = app.service()
        created_at = format_time(time.time())
        if is_load(chat):
            # Routed anyway, so a name chatd cannot route (an unregistered ``:cloud``) is
            # refused here as it would be with messages, rather than "loaded".
            service.routes(chat.model)
            body = endpoint.render_load(model=chat.model, created_at=created_at)
            await responder.whole(200, body, JSON_CONTENT_TYPE)
            return
        started = time.perf_counter_ns()
        if chat.stream:
            renderer = endpoint.stream(model=chat.model, created_at=created_at)
            await app.until_disconnect(
                request.receive, responder,
                lambda: self._relay(service, chat, renderer, responder, started),
            )
            return

        async def call() -> None:
            result = await service.chat(chat)
            body = endpoint.render(
                result.response, model=chat.model, created_at=created_at,
                total_duration_ns=time.perf_counter_ns() - started,
            )
            await responder.whole(200, body, JSON_CONTENT_TYPE)

        await app.until_disconnect(request.receive, responder, call)

    @staticmethod
    async def _relay(
        service: ChatService, chat: ChatRequest, renderer: StreamRenderer,
        responder: Responder, started: int,
    ) -> None:
        """What one upstream read produced becomes one NDJSON write as soon as the service
        hands it over (tool calls excepted: the renderer holds them for the line before the
        last, OL §1.5)."""
        async with service.open_stream(chat) as stream:
            await responder.start(200, NDJSON_CONTENT_TYPE)
            try:
                async for batch in stream.batches():
                    last = batch[-1]
                    ended = type(last) is StreamEnded
                    data = b"".join([renderer.event(ev) for ev in
                                     (batch[:-1] if ended else batch)])
                    if ended:
                        assert isinstance(last, StreamEnded)
                        data += renderer.end(
                            last, total_duration_ns=time.perf_counter_ns() - started
                        )
                        await responder.body(data, more=False)
                        return
                    if data:
                        await responder.body(data, more=True)
            except ChatError as exc:
                logger.info(
                    "stream from %s failed mid-way (request %s): %s %s",
                    exc.provider, responder.request_id, exc.type, exc.message,
                )
                await responder.body(renderer.error(exc), more=False)
                return
            # Unreachable by ChatStream's contract (StreamEnded is always last); never
            # leave the response open if it ever is.
            await responder.body(b"", more=False)  # pragma: no cover

    async def heartbeat(self, request: Request, responder: Responder) -> None:
        """``GET /`` (and so ``HEAD /``): Ollama's liveness answer. Ollama's own client
        sends ``HEAD /`` (its ``Heartbeat``) before most CLI commands, and Ollama answers
        200 with the text "Ollama is running"; without it the CLI would not talk to chatd."""
        await responder.whole(200, HEARTBEAT, b"text/plain; charset=utf-8")

    async def tags(self, request: Request, responder: Responder) -> None:
        """``GET /api/tags``: the local Ollama's models (when it answers in time), then
        chatd's tiers."""
        app = self.app
        service = app.service()
        local: tuple[dict[str, Any], ...] = ()

        async def fetch() -> None:
            nonlocal local
            local = await self._local_tags(service)

        await app.until_disconnect(request.receive, responder, fetch)
        await responder.whole(200, render_tags(app.config.tiers, local), JSON_CONTENT_TYPE)

    @staticmethod
    async def _local_tags(service: ChatService) -> tuple[dict[str, Any], ...]:
        """The local Ollama's ``/api/tags`` entries; () when it fails in any way (logged)."""
        provider = service.providers.get("ollama")
        if provider is None:  # pragma: no cover - ollama is always registered
            return ()
        http = HTTPRequest(
            method="GET",
            url=provider.base_url.rstrip("/") + "/api/tags",
            headers=(("Accept", "application/json"), *provider.headers),
            body=b"",
        )
        try:
            async with service.transport.open(http, TAGS_TIMEOUTS) as resp:
                if not 200 <= resp.status < 300:
                    logger.info("local Ollama /api/tags answered %d; listing tiers only",
                                resp.status)
                    return ()
                body = await resp.aread(MAX_TAGS_BYTES)
        except ChatError as exc:
            logger.info("local Ollama /api/tags failed (%s: %s); listing tiers only",
                        exc.type, exc.message)
            return ()
        return parse_tags(body)

    async def version(self, request: Request, responder: Responder) -> None:
        """``GET /api/version``: the Ollama version whose API this door follows."""
        await responder.whole(200, render_version(), JSON_CONTENT_TYPE)


HEARTBEAT = b"Ollama is running"


def install(app: ChatdApp) -> OllamaDoor:
    """Add the Ollama-compatible routes, and Ollama's error shape under ``/api/``."""
    door = OllamaDoor(app)
    for path, endpoint in ENDPOINTS.items():
        app.routes[path] = {"POST": partial(door.answer, endpoint)}
    app.routes["/api/tags"] = {"GET": door.tags}
    app.routes["/api/version"] = {"GET": door.version}
    app.routes["/"] = {"GET": door.heartbeat}  # HEAD too, as for every GET route
    app.error_renderers["/api/"] = render_error
    return door
