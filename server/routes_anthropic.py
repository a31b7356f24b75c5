"""The Anthropic Messages door's extra route: ``POST /v1/messages/count_tokens``.

Strategy: the chat path itself (``POST /v1/messages``) is the relay's
(:func:`~server.relay.chat_route` of :data:`chatproto.dialects.anthropic_messages.door`);
this module holds what the door serves besides chat. SPEC §3: ``{"input_tokens": N}``,
"the upstream's own count where its dialect has one, else an estimate marked by the
header ``x-chatd-estimate: true``". The call plan picks the target a real call would go
to; when that target speaks Anthropic Messages, its ``/count_tokens`` answers. When it
does not, or it has no such endpoint (a 404 or 405: OpenCode Zen does not document one)
or fails, the door's estimate answers instead, marked: a count is advisory (Claude Code
sizes its context with it), and an error would stop a client for want of a number that
an estimate gives.
"""

from __future__ import annotations

import logging
import time

from chatproto import ChatError, blame
from chatproto.dialects import anthropic_messages as dialect
from transports import Timeouts

from .asgi import Request, Responder, ScopeHeaders
from .relay import Host
from .service import MAX_ERROR_BYTES

__all__ = ["ERROR_PREFIX", "count_tokens"]

logger = logging.getLogger("chatd.anthropic")

#: Every path under ``/v1/messages/`` has Anthropic-shaped errors (the SDK reads a 404 of
#: a path chatd does not have as ``NotFoundError`` with its message).
ERROR_PREFIX = "/v1/messages/"

#: The count answer is small; anything larger is not one.
_MAX_COUNT_BYTES = 64 * 1024


async def count_tokens(host: Host, request: Request, responder: Responder) -> None:
    """``POST /v1/messages/count_tokens`` (see the module docstring)."""
    door = dialect.door
    call = door.parse_count(await host.read_body(request), ScopeHeaders(request.scope))
    chat = call.chat
    service = host.service()
    plan = service.plan(chat)  # routing errors (400, 404) are the client's answer
    try:
        attempt = plan.next(now=time.perf_counter())  # the service's clock
    except ChatError:
        attempt = None  # no target can carry it; an estimate still can be given
    count: int | None = None
    if attempt is not None and attempt.api == dialect.API:
        provider = attempt.provider
        http = dialect.codec.build_count_request(chat, attempt.route, provider)
        total = attempt.timeout_secs
        try:
            async with service.transport.open(
                http, Timeouts(connect=min(5.0, total), read=total, total=total)
            ) as resp:
                if 200 <= resp.status < 300:
                    body = await resp.aread(_MAX_COUNT_BYTES)
                    count = dialect.codec.parse_count_response(provider.name, body)
                else:
                    parts: list[bytes] = []
                    async for chunk in resp.aiter_bytes():
                        parts.append(chunk)
                        if sum(map(len, parts)) >= MAX_ERROR_BYTES:
                            break
                    raise dialect.codec.parse_error(
                        provider.name, resp.status, resp.headers,
                        b"".join(parts)[:MAX_ERROR_BYTES], now=time.time())
        except ChatError as exc:
            blame(exc, provider)
            logger.info("count_tokens on %s failed (%s %s); answering an estimate",
                        provider.name, exc.type, exc.message)
    if count is not None:
        await responder.whole(200, door.render_count(count), door.content_type)
        return
    await responder.whole(200, door.render_count(dialect.estimate_tokens(chat)),
                          door.content_type, [(b"x-chatd-estimate", b"true")])
