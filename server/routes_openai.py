"""The OpenAI-compatible front door, wired: ``POST /v1/chat/completions``, ``GET /v1/models``.

Strategy: thin handlers. :mod:`server.front_openai` owns every byte of OpenAI's format and
:class:`~server.service.ChatService` every upstream call; a handler here only reads the
body, takes the id and the clock, and relays. Errors are raised as
:class:`~chatproto.ChatError` and rendered by :class:`~server.app.ChatdApp` in OpenAI's
shape (registered in :attr:`ChatdApp.error_renderers` for these paths, so a 401, 404, 405
or 413 that happens before a handler runs is shaped the same way), with Retry-After passed
on for 429 and 503.

A stream commits to its status only once the service has an event from the upstream
(``open_stream`` reads to the first event before it returns), so a failure before that is
a proper status code; after it, :meth:`CompletionStream.error` is the last SSE event.
Every call runs under :meth:`ChatdApp.until_disconnect`: a client that goes away cancels
the upstream call, also while the upstream has sent nothing yet.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING

from chatproto import ChatError, ChatRequest, StreamEnded

from .front_openai import (
    SSE_CONTENT_TYPE,
    CompletionStream,
    parse_request,
    render_completion,
    render_error,
    render_models,
)

if TYPE_CHECKING:
    from .app import ChatdApp, Request, Responder
    from .service import ChatService

__all__ = ["OpenAIDoor", "install"]

logger = logging.getLogger("chatd.openai")

JSON_TYPE = b"application/json"

#: Paths whose errors are OpenAI-shaped; ``/v1/models/`` is a prefix (the SDK's
#: ``models.retrieve(id)`` asks ``GET /v1/models/{id}``, which chatd does not have: its 404
#: should still be one the SDK reads as ``NotFoundError`` with a message).
ERROR_PATHS = ("/v1/chat/completions", "/v1/models", "/v1/models/")


class OpenAIDoor:
    """The handlers of the OpenAI-compatible routes of one :class:`ChatdApp`."""

    __slots__ = ("app",)

    def __init__(self, app: ChatdApp) -> None:
        self.app = app

    async def completions(self, request: Request, responder: Responder) -> None:
        """``POST /v1/chat/completions``: a ``chat.completion`` or an SSE stream of chunks."""
        app = self.app
        parsed = parse_request(await app.read_body(request))
        chat = parsed.chat
        service = app.service()
        completion_id = f"chatcmpl-{os.urandom(16).hex()}"
        created = int(time.time())
        if chat.stream:
            renderer = CompletionStream(
                id=completion_id, model=chat.model, created=created,
                include_usage=parsed.include_usage,
            )
            await app.until_disconnect(
                request.receive, responder,
                lambda: self._relay(service, chat, renderer, responder),
            )
            return

        async def call() -> None:
            result = await service.chat(chat)
            body = render_completion(
                result.response, id=completion_id, model=chat.model, created=created
            )
            await responder.whole(200, body, JSON_TYPE)

        await app.until_disconnect(request.receive, responder, call)

    @staticmethod
    async def _relay(
        service: ChatService, chat: ChatRequest, renderer: CompletionStream,
        responder: Responder,
    ) -> None:
        """What one upstream read produced becomes one SSE write as soon as the service
        hands it over.

        The role chunk rides with the first event's bytes (one write, not two): it exists
        only to open the stream, and sending it alone would cost a write per stream.
        """
        async with service.open_stream(chat) as stream:
            await responder.start(200, SSE_CONTENT_TYPE, [(b"cache-control", b"no-cache")])
            pending = renderer.start()
            try:
                async for batch in stream.batches():
                    data = b"".join([renderer.event(ev) for ev in batch])
                    if type(batch[-1]) is StreamEnded:
                        await responder.body(pending + data, more=False)
                        return
                    await responder.body(pending + data, more=True)
                    pending = b""
            except ChatError as exc:
                logger.info(
                    "stream from %s failed mid-way (request %s): %s %s",
                    exc.provider, responder.request_id, exc.type, exc.message,
                )
                await responder.body(pending + renderer.error(exc), more=False)
                return
            # Unreachable by ChatStream's contract (StreamEnded is always last); never
            # leave the response open if it ever is.
            await responder.body(pending, more=False)  # pragma: no cover

    async def models(self, request: Request, responder: Responder) -> None:
        """``GET /v1/models``: the tiers and registered providers chatd can route now."""
        app = self.app
        body = render_models(app.config.tiers, list(app.providers), created=int(time.time()))
        await responder.whole(200, body, JSON_TYPE)


def install(app: ChatdApp) -> OpenAIDoor:
    """Add the OpenAI-compatible routes and their error shape to ``app``."""
    door = OpenAIDoor(app)
    app.routes["/v1/chat/completions"] = {"POST": door.completions}
    app.routes["/v1/models"] = {"GET": door.models}
    for path in ERROR_PATHS:
        app.error_renderers[path] = render_error
    return door
