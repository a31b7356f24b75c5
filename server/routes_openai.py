"""The OpenAI-compatible door's extra routes: ``GET /v1/models`` and ``GET /v1/models/{id}``.

Strategy: the chat path itself (``POST /v1/chat/completions``) is the relay's
(:func:`~server.relay.chat_route` of :data:`chatproto.dialects.openai_chat.door`); this
module holds what the door serves besides chat: the names a client can use (SPEC §3),
built by :func:`server.lister.usable_names` from the tiers, the registered providers and
their upstream lists, and rendered by :mod:`chatproto.dialects.openai_chat`.
"""

from __future__ import annotations

import time

from chatproto import CatalogEntry, ChatError, find_model
from chatproto.dialects.openai_chat import JSON_CONTENT_TYPE, render_model, render_models

from .asgi import Request, Responder, until_disconnect
from .lister import usable_names
from .relay import Host

__all__ = ["ERROR_PATHS", "MODEL_PREFIX", "model", "models"]

#: ``GET /v1/models/{id}``: the id may hold slashes (``openrouter/moonshotai/kimi-k2``),
#: so the route is this prefix and the id the rest of the path.
MODEL_PREFIX = "/v1/models/"

#: Paths besides the chat path whose errors are OpenAI-shaped (``/v1/models/`` is a
#: prefix: every model id under it).
ERROR_PATHS = ("/v1/models", MODEL_PREFIX, "/v1/embeddings")


async def _names(host: Host, request: Request, responder: Responder) -> tuple[
    CatalogEntry, ...
]:
    names: tuple[CatalogEntry, ...] = ()

    async def fetch() -> None:
        nonlocal names
        names = await usable_names(host.model_lister(), config=host.config,
                                   providers=host.providers)

    await until_disconnect(request.receive, responder, fetch)
    return names


async def models(host: Host, request: Request, responder: Responder) -> None:
    """``GET /v1/models``: every name chatd can route now, upstream lists included."""
    names = await _names(host, request, responder)
    await responder.whole(200, render_models(names, created=int(time.time())),
                          JSON_CONTENT_TYPE)


async def model(host: Host, request: Request, responder: Responder) -> None:
    """``GET /v1/models/{id}``: one listed name, or OpenAI's 404 for a name not listed."""
    name = request.path[len(MODEL_PREFIX):]
    entry = find_model(await _names(host, request, responder), name) if name else None
    if entry is None:
        raise ChatError("not_found", f"The model {name!r} does not exist or is not one "
                        "chatd can route now (GET /v1/models lists those)")
    await responder.whole(200, render_model(entry, created=int(time.time())),
                          JSON_CONTENT_TYPE)
