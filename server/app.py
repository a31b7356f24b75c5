"""chatd's HTTP surface: a plain ASGI 3 application, written once on anyio.

Strategy: no framework. A request passes four explicit steps, each of which may answer on
its own: the request id (a sane client ``x-request-id`` or a new one), client auth (every
route but ``/healthz``), the route table (404 / 405 with ``Allow``), then the handler. Every
failure is a :class:`~chatproto.ChatError` rendered in SPEC §4's one shape, or in the shape
of the door a path belongs to (:attr:`ChatdApp.error_renderers`, by path or path prefix);
an exception of any other kind is a bug, logged and answered 500 only as a last resort.

The doors are data: :data:`DOOR_ROUTES` maps each door's chat path to
:func:`~server.relay.chat_route` of its :class:`~chatproto.Door` (one relay serves them
all, :mod:`server.relay`), beside the few extra routes a door serves (model lists,
version); :data:`ERROR_SHAPES` names the further paths whose errors a door shapes. The
ASGI plumbing (request, response state machine, body limit, disconnect watching) is
:mod:`server.asgi`.

Lifespan is real: the transport (its connection pool) is opened on ``lifespan.startup``
and closed on ``lifespan.shutdown``, inside the one lifespan task; a failure to open is
answered ``lifespan.startup.failed``. The same code runs under hypercorn's asyncio and trio
workers because it awaits only anyio.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from chatproto import (
    DEFAULT_PROVIDER,
    ChatError,
    Door,
    Provider,
    Secret,
    Snapshot,
    Telemetry,
    redact_userinfo,
)
from chatproto.dialects import anthropic_messages, native, ollama, openai_chat, openai_responses

from . import embeddings, routes_anthropic, routes_ollama, routes_openai
from .asgi import (
    BodyBudget,
    BodyReads,
    Disconnected,
    Drain,
    ErrorRenderer,
    Handler,
    Receive,
    Request,
    Responder,
    Scope,
    Send,
    header,
    read_body,
    request_id,
)
from .config import Config, register_providers, registered, resolve_auth_token
from .cors import CorsPolicy
from .lister import ModelLister
from .observe import Observer
from .relay import DoorEndpoint, Endpoint, chat_route
from .service import ChatService

__all__ = [
    "DOOR_ROUTES",
    "ERROR_SHAPES",
    "ChatdApp",
    "TransportFactory",
    "create_app",
    "make_transport",
]

logger = logging.getLogger("chatd.app")

if TYPE_CHECKING:  # transports is imported when a transport is made (startup cost)
    from transports import Transport

TransportFactory = Callable[[], "Transport"]

#: The doors and the extra routes they serve: path -> method -> endpoint. A door is one
#: core module and one line here.
DOOR_ROUTES: Mapping[str, Mapping[str, Endpoint]] = {
    "/v1/chat": chat_route(native.door),
    "/v1/chat/completions": chat_route(openai_chat.door),
    "/v1/responses": chat_route(openai_responses.door),
    "/v1/models": {"GET": routes_openai.models},
    routes_openai.MODEL_PREFIX: {"GET": routes_openai.model},  # a prefix: /v1/models/{id}
    "/v1/embeddings": {"POST": embeddings.embed_openai},
    "/api/chat": chat_route(ollama.chat_door),
    "/api/generate": chat_route(ollama.generate_door),
    "/api/tags": {"GET": routes_ollama.tags},
    "/api/show": {"POST": routes_ollama.show},
    "/api/ps": {"GET": routes_ollama.ps},
    "/api/embed": {"POST": embeddings.embed},
    "/api/embeddings": {"POST": embeddings.embed_legacy},
    "/api/version": {"GET": routes_ollama.version},
    "/": {"GET": routes_ollama.heartbeat},  # HEAD too, as for every GET route
    "/v1/messages": chat_route(anthropic_messages.door),
    "/v1/messages/count_tokens": {"POST": routes_anthropic.count_tokens},
}

#: Paths besides a door's chat paths whose errors that door shapes; a key ending in ``/``
#: is a prefix covering every path under it, so a door shapes even the 404 of a path it
#: does not have.
ERROR_SHAPES: Mapping[str, Door] = {
    **dict.fromkeys(routes_openai.ERROR_PATHS, openai_chat.door),
    routes_ollama.ERROR_PREFIX: ollama.chat_door,
    "/v1/responses/": openai_responses.door,
    routes_anthropic.ERROR_PREFIX: anthropic_messages.door,
}


#: Routes outside ``max_in_flight``: answered at once, and needed most when all else is busy.
UNCOUNTED_PATHS = frozenset({"/healthz", "/metrics"})

#: How many maximum-size bodies may be between read and written upstream at once
#: (:class:`~server.asgi.BodyBudget`).
BODY_BUDGET_BODIES = 8

#: The answer to a bug (an exception that is not a ChatError), in the door's shape.
INTERNAL_ERROR = ChatError("internal_error", "internal error")


def make_transport(name: str) -> Transport:
    """``h11`` (the default, lean) or ``httpx``; imported on demand to keep startup fast."""
    if name == "h11":
        from transports import H11Transport

        return H11Transport()
    if name == "httpx":
        from transports import HTTPXTransport

        return HTTPXTransport()
    raise ValueError(f"unknown transport {name!r} (expected h11 or httpx)")


class ChatdApp:
    """The ASGI application.

    Args:
        config: the validated configuration (limits, timeouts, tiers).
        providers: the registered providers by name (see :func:`register_providers`).
        transport_factory: makes the transport that is opened at lifespan startup.
        auth_token: when set, the bearer token every client must present.
        telemetry: the per-provider counters behind ``/metrics``.
        doors: the door routes (default :data:`DOOR_ROUTES`).
        error_shapes: further paths whose errors a door shapes (default
            :data:`ERROR_SHAPES`).
    """

    def __init__(
        self,
        *,
        config: Config,
        providers: Mapping[str, Provider],
        transport_factory: TransportFactory,
        auth_token: Secret | None = None,
        telemetry: Telemetry | None = None,
        doors: Mapping[str, Mapping[str, Endpoint]] = DOOR_ROUTES,
        error_shapes: Mapping[str, Door] = ERROR_SHAPES,
    ) -> None:
        self.config = config
        self.providers = dict(providers)
        self.telemetry = telemetry if telemetry is not None else Telemetry(self.providers)
        self._transport_factory = transport_factory
        self._auth_token = auth_token
        self._service: ChatService | None = None
        self._lister: ModelLister | None = None
        origins = config.chatd.cors_allow_origins
        self._cors = CorsPolicy(origins) if origins else None
        self._lifespan_stack: AsyncExitStack | None = None
        self._metrics: Callable[[], tuple[bytes, bytes]] | None = None
        self.drain = Drain()
        """Set going by :meth:`begin_shutdown`; every relayed call's waits end with it."""
        self.body_reads = BodyReads(config.chatd.max_in_flight // 2)
        """Bodies still arriving: at most half of ``max_in_flight``, the oldest cut first."""
        self.body_budget = BodyBudget(BODY_BUDGET_BODIES * config.chatd.max_body_bytes)
        """Large bodies between read and written upstream: eight of the largest allowed."""
        self._in_flight = 0
        self.observer = Observer(
            self.telemetry, metrics=config.chatd.metrics,
            log_requests=config.chatd.log_requests,
        )
        """Per-request counters, headers and log line (:mod:`server.observe`)."""
        self._metrics_source: Callable[[], tuple[Snapshot, int]] = (
            lambda: (self.telemetry.export(), 1)
        )
        """What a scrape shows: this process's counters, or every worker's."""
        self.metrics_dir: Path | None = None
        """With several workers: where they share their counters (:mod:`server.metrics`);
        set before lifespan startup."""
        self.routes: dict[str, dict[str, Handler]] = {
            "/v1/chat/providers": {"GET": self._providers},
            "/healthz": {"GET": self._healthz},
        }
        """path -> method -> handler: chatd's own routes, then :data:`DOOR_ROUTES`."""
        if config.chatd.metrics:
            self.routes["/metrics"] = {"GET": self._metrics_route}
        self.error_renderers: dict[str, ErrorRenderer] = {}
        """path -> how errors on it are shaped, when not SPEC §4's native shape (every
        ChatError a handler raises, and auth, 404, 405 and body-limit errors on that path).
        A key ending in ``/`` is a prefix (see :meth:`error_renderer`)."""
        for path, methods in doors.items():
            self.routes[path] = {
                method: partial(endpoint, self) for method, endpoint in methods.items()
            }
            for endpoint in methods.values():
                if isinstance(endpoint, DoorEndpoint):
                    self.error_renderers[path] = endpoint.door.render_error
        for path, door in error_shapes.items():
            self.error_renderers[path] = door.render_error

    def error_renderer(self, path: str) -> ErrorRenderer:
        """How errors on ``path`` are shaped: its own entry, else the longest prefix entry
        (a key ending in ``/``) it falls under, else SPEC §4's native shape."""
        render = self.error_renderers.get(path)
        if render is not None:
            return render
        best = ""
        render = native.door.render_error
        for key, candidate in self.error_renderers.items():
            if key.endswith("/") and path.startswith(key) and len(key) > len(best):
                best, render = key, candidate
        return render

    # --- ASGI entry points -------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1000})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    logger.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.shutdown()
                except Exception as exc:
                    logger.exception("shutdown failed")
                    await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        """Open the transport and build the service; call from the lifespan task."""
        stack = AsyncExitStack()
        transport = await stack.enter_async_context(self._transport_factory())
        self._lifespan_stack = stack
        self._service = ChatService(
            providers=self.providers,
            tiers=self.config.tiers,
            transport=transport,
            timeout_secs=self.config.chatd.timeout_secs,
            connect_timeout_secs=self.config.chatd.connect_timeout_secs,
            telemetry=self.telemetry,
            profiles=self.config.profiles,
            chain_timeout_secs=self.config.chatd.chain_timeout_secs,
            default_retry_after_secs=self.config.chatd.default_retry_after_secs,
            stream_idle_secs=self.config.chatd.stream_idle_secs,
        )
        self._lister = ModelLister(transport, ttl_secs=self.config.chatd.model_list_ttl_secs)
        if self.metrics_dir is not None and self.config.chatd.metrics:
            await self._share_metrics(stack, self.metrics_dir)

    async def _share_metrics(self, stack: AsyncExitStack, directory: Path) -> None:
        """Publish this worker's counters for the others' scrapes (:mod:`server.metrics`),
        now and every :data:`~server.metrics.PUBLISH_INTERVAL` until shutdown."""
        from .metrics import PUBLISH_INTERVAL, WorkerShare

        share = WorkerShare(directory)
        self._metrics = None
        self._metrics_source = lambda: share.gather(self.telemetry.export())
        share.publish(self.telemetry.export())

        async def publish() -> None:
            while True:
                await anyio.sleep(PUBLISH_INTERVAL)
                try:
                    share.publish(self.telemetry.export())
                except OSError as exc:
                    logger.warning("cannot publish this worker's metrics: %s", exc)

        group = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(group.cancel_scope.cancel)  # runs first: stop publishing, then close
        group.start_soon(publish)

    async def shutdown(self) -> None:
        """Close the transport (its pooled connections)."""
        self._service = None
        self._lister = None
        stack, self._lifespan_stack = self._lifespan_stack, None
        if stack is not None:
            await stack.aclose()

    # --- HTTP --------------------------------------------------------------------------

    def begin_shutdown(self, grace: float) -> None:
        """SIGTERM: refuse new requests (503 ``shutting_down``) and give the calls in
        flight ``grace`` seconds, after which each is ended in its door's way."""
        self.drain.begin(anyio.current_time() + grace)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = str(scope.get("method", "GET"))
        path = str(scope.get("path", "/"))
        cors = self._cors
        if cors is not None:
            origin = header(scope, b"origin")
            if origin is not None:
                if cors.is_preflight(method, origin,
                                     header(scope, b"access-control-request-method")):
                    # Before auth: a browser sends no credentials on a preflight.
                    responder = Responder(send, request_id(scope))
                    await responder.whole(204, b"", extra=cors.preflight_headers(
                        origin, header(scope, b"access-control-request-headers")))
                    return
                send = cors.wrap(send, origin)
        responder = Responder(send, request_id(scope))
        # Health and metrics are cheap and must answer while the rest is saturated.
        counted = path not in UNCOUNTED_PATHS
        try:
            if self.drain.draining:
                raise ChatError("shutting_down", "chatd is shutting down")
            if counted:
                if self._in_flight >= self.config.chatd.max_in_flight:
                    raise ChatError(
                        "overloaded",
                        f"chatd is handling its maximum of {self._in_flight} requests "
                        "(max_in_flight); retry later",
                        retry_after=self.config.chatd.default_retry_after_secs,
                    )
                self._in_flight += 1
            try:
                await self._dispatch(Request(scope, receive, method, path), responder)
            finally:
                if counted:
                    self._in_flight -= 1
        except ChatError as exc:
            if responder.state == "REQUEST":
                logger.info(
                    "%s %s -> %d %s (request %s): %s",
                    method, path, exc.status, exc.type, responder.request_id, exc.message,
                )
                await responder.error(exc, self.error_renderer(path))
        except Disconnected:
            logger.info("%s %s: client went away (request %s)", method, path,
                        responder.request_id)
        except Exception:
            # A bug. Say so in the log, once; the client gets the least-bad answer
            # possible, in its door's shape (SPEC §4).
            logger.exception("unexpected error on %s %s (request %s)", method, path,
                             responder.request_id)
            if responder.state == "REQUEST":
                await responder.error(INTERNAL_ERROR, self.error_renderer(path))
            elif responder.state == "STREAMING":
                await responder.body(b"", more=False)

    async def _dispatch(self, request: Request, responder: Responder) -> None:
        if request.path != "/healthz":
            self._check_auth(request.scope)
        methods = self.routes.get(request.path) or self._prefix_route(request.path)
        if methods is None:
            raise ChatError("not_found", f"no route {request.path}")
        handler = methods.get(request.method)
        if handler is None and request.method == "HEAD" and "GET" in methods:
            # RFC 9110 §9.3.2: HEAD is GET without the content (health checkers use it).
            handler = methods["GET"]
            responder.head = True
        if handler is None:
            allow = ", ".join(sorted({*methods, "HEAD"} if "GET" in methods else methods))
            exc = ChatError(
                "method_not_allowed", f"{request.method} is not allowed on {request.path}"
            )
            await responder.error(
                exc, self.error_renderer(request.path), [(b"allow", allow.encode())]
            )
            return
        await handler(request, responder)

    def _prefix_route(self, path: str) -> dict[str, Handler] | None:
        """The route of the longest route key ending in ``/`` that starts ``path`` (a route
        whose last segment is an id with slashes: ``/v1/models/{id}``)."""
        best = ""
        for key in self.routes:
            if key.endswith("/") and key != "/" and path.startswith(key) and len(key) > len(best):
                best = key
        return self.routes[best] if best else None

    def _check_auth(self, scope: Scope) -> None:
        """``Authorization: Bearer <token>``, or ``x-api-key: <token>``: the header the
        Anthropic SDKs and Claude Code send an API key in (``ANTHROPIC_API_KEY``; with
        ``ANTHROPIC_AUTH_TOKEN`` they send Bearer)."""
        token = self._auth_token
        if token is None:
            return
        expected = token.reveal().encode()
        raw = header(scope, b"authorization")
        if raw is not None:
            scheme, _, given = raw.partition(b" ")
            # hmac.compare_digest: the comparison time does not depend on how much matched.
            if scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), expected):
                return
        key = header(scope, b"x-api-key")
        if key is not None and hmac.compare_digest(key.strip(), expected):
            return
        raise ChatError("unauthorized", "missing or wrong bearer token")

    async def read_body(self, request: Request) -> bytes:
        """The whole request body under ``max_body_bytes``, within
        ``client_body_timeout_secs`` (:func:`server.asgi.read_body`)."""
        chatd = self.config.chatd
        return await read_body(request, chatd.max_body_bytes, chatd.client_body_timeout_secs,
                               self.body_reads)

    def model_lister(self) -> ModelLister:
        """The upstream model lists' cache; it exists between lifespan startup and
        shutdown, like the service."""
        if self._lister is None:
            self.service()  # raises the same "not started" error
        assert self._lister is not None
        return self._lister

    def service(self) -> ChatService:
        """The chat service; it exists between lifespan startup and shutdown."""
        if self._service is None:
            # Only reachable when a server runs the app without ASGI lifespan.
            raise ChatError(
                "upstream_unavailable", "chatd has not started (no ASGI lifespan startup)"
            )
        return self._service

    # --- routes ------------------------------------------------------------------------

    async def _healthz(self, request: Request, responder: Responder) -> None:
        await responder.json(200, {"status": "ok"})

    async def _providers(self, request: Request, responder: Responder) -> None:
        await responder.json(200, {
            "providers": [
                {
                    "name": p.name,
                    "default": p.name == DEFAULT_PROVIDER,
                    "base_url": redact_userinfo(p.base_url),
                    "api": p.api,
                }
                for p in self.providers.values()
            ]
        })

    async def _metrics_route(self, request: Request, responder: Responder) -> None:
        if self._metrics is None:
            from .metrics import renderer  # prometheus_client costs ~40 ms to import

            self._metrics = renderer(self._metrics_source)
        content_type, text = self._metrics()
        await responder.whole(200, text, content_type)


def create_app(
    config: Config,
    *,
    environ: Mapping[str, str] | None = None,
    transport: str | TransportFactory = "h11",
) -> ChatdApp:
    """The app for ``config``: providers registered from ``environ`` (default: the process
    environment), client auth from ``chatd.auth_token_env``."""
    env = os.environ if environ is None else environ
    regs = register_providers(config, env)
    factory: TransportFactory
    if isinstance(transport, str):
        name = transport
        if name not in ("h11", "httpx"):
            raise ValueError(f"unknown transport {name!r} (expected h11 or httpx)")
        factory = lambda: make_transport(name)  # noqa: E731
    else:
        factory = transport
    return ChatdApp(
        config=config,
        providers=registered(regs),
        transport_factory=factory,
        auth_token=resolve_auth_token(config, env),
    )
