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
import time

import anyio

from chatproto import (
    DEFAULT_PROVIDER,
    MAX_LISTED,
    CatalogEntry,
    ChatError,
    ListedModel,
    codec_for,
    name_for,
)
from chatproto.dialects.ollama import (
    JSON_CONTENT_TYPE,
    parse_ps,
    parse_show,
    ps_request,
    render_ps,
    render_show,
    render_tags,
    render_version,
    show_request,
)
from transports import Timeouts

from .asgi import Request, Responder, until_disconnect
from .lister import speaks, usable_names
from .relay import Host

__all__ = [
    "ERROR_PREFIX", "HEARTBEAT", "TAGS_TIMEOUTS", "heartbeat", "ps", "show", "tags", "version",
]

logger = logging.getLogger("chatd.ollama")

#: Every path under it answers errors in Ollama's shape.
ERROR_PREFIX = "/api/"

#: ``/api/ps`` asks the local Ollama what it has loaded. That only informs a status view,
#: so a slow or absent local Ollama must not hold the answer up.
TAGS_TIMEOUTS = Timeouts(connect=1.0, read=2.0, total=2.0)
#: A ps body is a few hundred bytes per model; this bounds memory, not the model count.
MAX_TAGS_BYTES = 4 * 1024 * 1024
#: ``/api/show`` of a local model: one small call, answered from the local manifest.
SHOW_TIMEOUT = 10.0
#: A verbose show answer lists every tensor: megabytes for a large model.
MAX_SHOW_BYTES = 32 * 1024 * 1024
MAX_ERROR_BYTES = 64 * 1024

HEARTBEAT = b"Ollama is running"


async def heartbeat(host: Host, request: Request, responder: Responder) -> None:
    """``GET /`` (and so ``HEAD /``): Ollama's liveness answer. Ollama's own client sends
    ``HEAD /`` (its ``Heartbeat``) before most CLI commands, and Ollama answers 200 with
    the text "Ollama is running"; without it the CLI would not talk to chatd."""
    await responder.whole(200, HEARTBEAT, b"text/plain; charset=utf-8")


async def tags(host: Host, request: Request, responder: Responder) -> None:
    """``GET /api/tags``: every name chatd can route now (SPEC §3): the tiers, the local
    Ollama's models and each registered provider's listed models."""
    names: tuple[CatalogEntry, ...] = ()

    async def fetch() -> None:
        nonlocal names
        names = await usable_names(host.model_lister(), config=host.config,
                                   providers=host.providers)

    await until_disconnect(request.receive, responder, fetch)
    await responder.whole(200, render_tags(names), JSON_CONTENT_TYPE)


async def show(host: Host, request: Request, responder: Responder) -> None:
    """``POST /api/show``: the local Ollama's own answer for a model it serves; for a model
    chatd routes elsewhere, a synthesized minimal one
    (:func:`chatproto.dialects.ollama.render_show`) whose ``capabilities`` say what chatd can
    carry to it. A name chatd cannot route is refused as a chat call with it would be."""
    model, verbose = parse_show(await host.read_body(request))
    service = host.service()
    route = service.routes(model)[0]
    provider = host.providers[route.provider]
    if provider.name != DEFAULT_PROVIDER:
        await responder.whole(200, render_show(provider=provider, route=route),
                              JSON_CONTENT_TYPE)
        return
    body = b""

    async def fetch() -> None:
        nonlocal body
        http = show_request(provider, route, verbose=verbose)
        connect = min(host.config.chatd.connect_timeout_secs, SHOW_TIMEOUT)
        timeouts = Timeouts(connect=connect, read=SHOW_TIMEOUT, total=SHOW_TIMEOUT)
        async with service.transport.open(http, timeouts) as resp:
            if not 200 <= resp.status < 300:
                raw = await resp.aread(MAX_ERROR_BYTES)
                exc = codec_for("ollama_chat").parse_error(
                    provider.name, resp.status, resp.headers, raw, now=time.time())
                if resp.status == 404:
                    # "model 'x' not found" answers the question about x; it is not an
                    # upstream failure, and Ollama clients read the 404 as such.
                    raise ChatError("not_found", exc.message, provider=provider.name,
                                    upstream_status=404)
                raise exc
            body = await resp.aread(MAX_SHOW_BYTES)

    await until_disconnect(request.receive, responder, fetch)
    await responder.whole(200, body, JSON_CONTENT_TYPE)


async def ps(host: Host, request: Request, responder: Responder) -> None:
    """``GET /api/ps``: the models the local Ollama has loaded, each under the name a
    client routes to it; an empty list when the local Ollama cannot say (logged)."""
    service = host.service()
    provider = host.providers[DEFAULT_PROVIDER]
    loaded: tuple[ListedModel, ...] = ()

    async def fetch() -> None:
        nonlocal loaded
        try:
            with anyio.fail_after(TAGS_TIMEOUTS.total):
                async with service.transport.open(ps_request(provider), TAGS_TIMEOUTS) as resp:
                    if not 200 <= resp.status < 300:
                        logger.info("local Ollama /api/ps answered %d; none listed",
                                    resp.status)
                        return
                    body = await resp.aread(MAX_TAGS_BYTES)
            loaded = parse_ps(provider.name, body, limit=MAX_LISTED)
        except ChatError as exc:
            logger.info("local Ollama /api/ps failed (%s: %s); none listed",
                        exc.type, exc.message)
        except TimeoutError:
            logger.info("local Ollama /api/ps: no answer in time; none listed")

    await until_disconnect(request.receive, responder, fetch)
    named = []
    for model in loaded:
        name = name_for(provider, model.id, providers=host.providers,
                        tiers=host.config.tiers, profiles=host.config.profiles,
                        speaks=speaks)
        if name is not None:
            named.append((name, model))
    await responder.whole(200, render_ps(named), JSON_CONTENT_TYPE)


async def version(host: Host, request: Request, responder: Responder) -> None:
    """``GET /api/version``: the Ollama version whose API this door follows."""
    await responder.whole(200, render_version(), JSON_CONTENT_TYPE)
