"""The Ollama-compatible door's extra routes: ``GET /api/tags``, ``GET /api/version`` and
``GET``/``HEAD /``.

Strategy: the chat paths (``POST /api/chat``, ``/api/generate``) are the relay's
(:func:`~server.relay.chat_route` of :data:`server.ollama.chat_door` and
``generate_door``); this module holds what an Ollama client asks besides chat. Errors on
every path under ``/api/`` are Ollama's ``{"error": "..."}`` (:data:`ERROR_PREFIX`), also a
401, 404, 405 or 413 raised before a handler runs.
"""

from __future__ import annotations

import logging
from typing import Any

from chatproto import ChatError, HTTPRequest
from chatproto.dialects.ollama import (
    JSON_CONTENT_TYPE,
    parse_tags,
    render_tags,
    render_version,
)
from transports import Timeouts

from .asgi import Request, Responder, until_disconnect
from .relay import Host
from .service import ChatService

__all__ = ["ERROR_PREFIX", "HEARTBEAT", "TAGS_TIMEOUTS", "heartbeat", "tags", "version"]

logger = logging.getLogger("chatd.ollama")

#: Every path under it answers errors in Ollama's shape.
ERROR_PREFIX = "/api/"

#: ``/api/tags`` asks the local Ollama for its models. The listing only decorates a menu,
#: so a slow or absent local Ollama must not hold the answer up: after this, chatd answers
#: with its tiers alone.
TAGS_TIMEOUTS = Timeouts(connect=1.0, read=2.0, total=2.0)
#: A tags body is a few kilobytes per model; this bounds memory, not the model count.
MAX_TAGS_BYTES = 4 * 1024 * 1024

HEARTBEAT = b"Ollama is running"


async def heartbeat(host: Host, request: Request, responder: Responder) -> None:
    """``GET /`` (and so ``HEAD /``): Ollama's liveness answer. Ollama's own client sends
    ``HEAD /`` (its ``Heartbeat``) before most CLI commands, and Ollama answers 200 with
    the text "Ollama is running"; without it the CLI would not talk to chatd."""
    await responder.whole(200, HEARTBEAT, b"text/plain; charset=utf-8")


async def tags(host: Host, request: Request, responder: Responder) -> None:
    """``GET /api/tags``: the local Ollama's models (when it answers in time), then chatd's
    tiers."""
    service = host.service()
    local: tuple[dict[str, Any], ...] = ()

    async def fetch() -> None:
        nonlocal local
        local = await _local_tags(service)

    await until_disconnect(request.receive, responder, fetch)
    await responder.whole(200, render_tags(host.config.tiers, local), JSON_CONTENT_TYPE)


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


async def version(host: Host, request: Request, responder: Responder) -> None:
    """``GET /api/version``: the Ollama version whose API this door follows."""
    await responder.whole(200, render_version(), JSON_CONTENT_TYPE)
