"""The OpenAI-compatible door's extra route: ``GET /v1/models``.

Strategy: the chat path itself (``POST /v1/chat/completions``) is the relay's
(:func:`~server.relay.chat_route` of :data:`chatproto.dialects.openai_chat.door`); this
module holds what the door serves besides chat: the list of names chatd can route now,
rendered by :func:`~chatproto.dialects.openai_chat.render_models` from the app's tiers and
registered providers.
"""

from __future__ import annotations

import time

from chatproto.dialects.openai_chat import JSON_CONTENT_TYPE, render_models

from .asgi import Request, Responder
from .relay import Host

__all__ = ["ERROR_PATHS", "models"]

#: Paths besides the chat path whose errors are OpenAI-shaped; ``/v1/models/`` is a prefix
#: (the SDK's ``models.retrieve(id)`` asks ``GET /v1/models/{id}``, which chatd does not
#: have: its 404 should still be one the SDK reads as ``NotFoundError`` with a message).
ERROR_PATHS = ("/v1/models", "/v1/models/")


async def models(host: Host, request: Request, responder: Responder) -> None:
    """``GET /v1/models``: the tiers and registered providers chatd can route now."""
    body = render_models(host.config.tiers, list(host.providers), created=int(time.time()))
    await responder.whole(200, body, JSON_CONTENT_TYPE)
