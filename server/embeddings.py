"""Embeddings: ``POST /v1/embeddings``, ``POST /api/embed`` and ``POST /api/embeddings``.

Strategy: the core decides everything but the I/O: each door's body becomes an
:class:`~chatproto._embed.EmbedRequest`, :class:`~chatproto._embed.EmbedPlan` routes it by
SPEC §1's rules and gives the attempts (a target whose API has no embeddings is skipped; a
retryable upstream failure moves along a tier's chain), and the codec of the upstream's
wire format builds the call and reads the answer. This module sends each attempt through
the app's transport under its timeout, counts it in the telemetry, and has the door render
the vectors. Errors are the door's shape (OpenAI's on ``/v1/embeddings``, Ollama's under
``/api/``), as for chat. Like a chat call, each request is observed under its door's name
(counted per door, logged in one line, the who-served-it headers on its answer) and each
attempt holds one of its provider's ``max_concurrency`` slots (:meth:`ChatService.slot`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from chatproto import ChatError, EmbedAttempt, EmbedPlan, EmbedRequest, EmbedResponse, Usage
from chatproto.dialects.ollama import parse_embed, parse_embeddings, render_embed, render_embeddings
from chatproto.dialects.openai_chat import parse_embeddings as parse_openai_embeddings
from chatproto.dialects.openai_chat import render_embeddings as render_openai_embeddings
from transports import Timeouts

from .asgi import Request, Responder, until_disconnect
from .observe import Observed, observed
from .relay import Host
from .service import CallTrace

__all__ = ["MAX_EMBED_RESPONSE_BYTES", "embed", "embed_legacy", "embed_openai", "embeddings"]

logger = logging.getLogger("chatd.embeddings")

#: An upstream embeddings body larger than this is refused (``bad_upstream_response``):
#: 2,048 inputs of 3,072 floats as JSON text is about 120 MB, far past any sane batch, and
#: this bounds memory per request.
MAX_EMBED_RESPONSE_BYTES = 64 * 1024 * 1024
MAX_ERROR_BYTES = 64 * 1024

JSON_CONTENT_TYPE = b"application/json; charset=utf-8"


async def embeddings(
    host: Host, request: EmbedRequest, trace: CallTrace | None = None
) -> EmbedResponse:
    """Route ``request`` and call the upstream(s) until one answers (or the plan gives up);
    what it cost goes into ``trace``.

    Raises:
        ChatError: the request's own error, or the last target's failure.
    """
    service = host.service()  # refuses before lifespan startup, as a chat call does
    trace = trace if trace is not None else CallTrace()
    settings = host.config.chatd
    clock = time.perf_counter
    plan = EmbedPlan(
        request,
        providers=host.providers,
        tiers=host.config.tiers,
        profiles=host.config.profiles,
        timeout_secs=settings.timeout_secs,
        chain_timeout_secs=settings.chain_timeout_secs,
        default_retry_after_secs=settings.default_retry_after_secs,
        now=clock(),
    )
    left: str | None = None
    while True:
        attempt = plan.next(now=clock())
        trace.route = attempt.route
        if left is not None:
            service.telemetry.record_fallback(left, attempt.provider.name)
        try:
            return await _call(host, attempt, plan, len(request.inputs), clock, trace)
        except ChatError as exc:
            plan.failed(attempt, exc)
            left = attempt.provider.name
            trace.fallbacks.append(left)
            logger.info("embeddings: falling back from %s after %s", attempt.provider.name,
                        exc.type)


async def _call(
    host: Host, attempt: EmbedAttempt, plan: EmbedPlan, count: int,
    clock: Callable[[], float], trace: CallTrace,
) -> EmbedResponse:
    service = host.service()
    provider = attempt.provider
    async with service.slot(attempt, plan, trace) as attempt:
        total = attempt.timeout_secs
        timeouts = Timeouts(connect=min(host.config.chatd.connect_timeout_secs, total),
                            read=total, total=total)
        started = clock()
        try:
            async with service.transport.open(attempt.http, timeouts) as resp:
                if not 200 <= resp.status < 300:
                    body = await resp.aread(MAX_ERROR_BYTES) if resp.status != 204 else b""
                    raise attempt.codec.parse_error(
                        provider.name, resp.status, resp.headers, body, now=time.time()
                    )
                body = await resp.aread(MAX_EMBED_RESPONSE_BYTES)
            answer = attempt.codec.parse_response(provider.name, body, count)
        except ChatError as exc:
            elapsed = clock() - started
            trace.upstream_s += elapsed
            service.telemetry.record(provider.name, latency_s=elapsed, error_type=exc.type)
            raise
        except BaseException:
            trace.upstream_s += clock() - started
            raise
        elapsed = clock() - started
    usage = Usage(prompt_tokens=answer.prompt_tokens or 0)
    trace.upstream_s += elapsed
    trace.usage = usage
    service.telemetry.record(provider.name, latency_s=elapsed, usage=usage)
    return answer


async def _answer(host: Host, request: Request, responder: Responder, obs: Observed,
                  embed_request: EmbedRequest, render: Callable[[EmbedResponse], bytes]
                  ) -> None:
    obs.model = embed_request.model

    async def call() -> None:
        answer = await embeddings(host, embed_request, obs.trace)
        body = render(answer)
        responder.extra = obs.served_headers()
        await responder.whole(200, body, JSON_CONTENT_TYPE)

    await until_disconnect(request.receive, responder, call)


#: The door names embeddings are counted under (the chat doors of the same wire formats).
OPENAI_DOOR = "openai"
OLLAMA_DOOR = "ollama"


async def embed_openai(host: Host, request: Request, responder: Responder) -> None:
    """``POST /v1/embeddings`` (OpenAI's shape; vectors as floats or base64, as asked)."""
    async def work(obs: Observed) -> None:
        call = parse_openai_embeddings(await host.read_body(request))
        model = call.request.model
        await _answer(host, request, responder, obs, call.request,
                      lambda answer: render_openai_embeddings(
                          answer, model=model, encoding_format=call.encoding_format))

    await observed(host.observer, OPENAI_DOOR, responder, work)


async def embed(host: Host, request: Request, responder: Responder) -> None:
    """``POST /api/embed`` (Ollama's shape: ``embeddings``, one vector per input)."""
    async def work(obs: Observed) -> None:
        embed_request = parse_embed(await host.read_body(request))
        started = time.perf_counter_ns()
        await _answer(host, request, responder, obs, embed_request,
                      lambda answer: render_embed(
                          answer, model=embed_request.model,
                          total_duration_ns=time.perf_counter_ns() - started))

    await observed(host.observer, OLLAMA_DOOR, responder, work)


async def embed_legacy(host: Host, request: Request, responder: Responder) -> None:
    """``POST /api/embeddings``: Ollama's legacy endpoint, one ``prompt`` in, one
    ``embedding`` out."""
    async def work(obs: Observed) -> None:
        embed_request = parse_embeddings(await host.read_body(request))
        await _answer(host, request, responder, obs, embed_request, render_embeddings)

    await observed(host.observer, OLLAMA_DOOR, responder, work)
