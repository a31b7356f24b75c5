"""chatd's HTTP surface: a plain ASGI 3 application, written once on anyio.

Strategy: no framework. A request passes four explicit steps, each of which may answer on
its own: the request id (a sane client ``x-request-id`` or a new one), client auth (every
route but ``/healthz``), the route table (404 / 405 with ``Allow``), then the handler. The
body is read with its limit enforced as it arrives. Every failure is a
:class:`~chatproto.ChatError` rendered in SPEC §4's one shape, or in the shape of the API a
path speaks (:attr:`ChatdApp.error_renderers`, by path or path prefix); an exception of any
other kind is a bug, logged and answered 500 only as a last resort. The two front doors
(:mod:`server.routes_openai`, :mod:`server.routes_ollama`) are route-table entries like
the native routes, installed by the constructor.

The response side is a small state machine (:class:`Responder`: REQUEST -> STREAMING ->
CLOSED), so a handler can never send a second status line, and the last-resort handler
knows whether a status line is still possible. While an upstream call runs, a sibling task
in the same task group watches ``receive()`` for ``http.disconnect`` and cancels the call,
so a client that goes away stops the upstream work (and is counted as cancelled).

Lifespan is real: the transport (its connection pool) is opened on ``lifespan.startup``
and closed on ``lifespan.shutdown``, inside the one lifespan task; a failure to open is
answered ``lifespan.startup.failed``. The same code runs under hypercorn's asyncio and trio
workers because it awaits only anyio.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Required, TypedDict

import anyio

from chatproto import (
    ChatError,
    ChatRequest,
    Provider,
    Secret,
    StreamEnded,
    TextDelta,
    ThinkingDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from chatproto._decoders import dumps
from chatproto._request import parse_chat_request
from chatproto._routing import DEFAULT_PROVIDER
from chatproto._telemetry import Telemetry
from chatproto._types import redact_userinfo

from .config import Config, register_providers, registered, resolve_auth_token
from .service import ChatService, retry_after_header

__all__ = [
    "ChatdApp",
    "ErrorRenderer",
    "Handler",
    "Request",
    "Responder",
    "TransportFactory",
    "create_app",
    "make_transport",
]

logger = logging.getLogger("chatd.app")

# ASGI 3 types (https://asgi.readthedocs.io/en/latest/specs/www.html). What chatd reads
# is typed loosely (servers add keys freely); what it sends is typed exactly.
Scope = Mapping[str, Any]
Received = Mapping[str, Any]


class ResponseStart(TypedDict):
    type: Literal["http.response.start"]
    status: int
    headers: list[tuple[bytes, bytes]]


class ResponseBody(TypedDict):
    type: Literal["http.response.body"]
    body: bytes
    more_body: bool


class LifespanReply(TypedDict, total=False):
    type: Required[Literal[
        "lifespan.startup.complete", "lifespan.startup.failed",
        "lifespan.shutdown.complete", "lifespan.shutdown.failed",
    ]]
    message: str


class WebSocketClose(TypedDict):
    type: Literal["websocket.close"]
    code: int


Sent = ResponseStart | ResponseBody | LifespanReply | WebSocketClose
Receive = Callable[[], Awaitable[Received]]
Send = Callable[[Sent], Awaitable[None]]


if TYPE_CHECKING:  # transports is imported when a transport is made (startup cost)
    from transports import Transport

TransportFactory = Callable[[], "Transport"]

JSON_TYPE = b"application/json"
NDJSON_TYPE = b"application/x-ndjson"

# A client-supplied request id is echoed only when it is short and plain, so it cannot
# smuggle anything into a header or a log line.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:+/=-]{1,128}")


def make_transport(name: str) -> Transport:
    """``h11`` (the default, lean) or ``httpx``; imported on demand to keep startup fast."""
    if name == "h11":
        from transports import H11Transport

        return H11Transport()
    if name == "httpx":
        from transports import HTTPXTransport

        return HTTPXTransport()
    raise ValueError(f"unknown transport {name!r} (expected h11 or httpx)")


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return None


def _request_id(scope: Scope) -> str:
    raw = _header(scope, b"x-request-id")
    if raw is not None:
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            text = ""
        if _REQUEST_ID.fullmatch(text):
            return text
    return os.urandom(16).hex()


ErrorRenderer = Callable[[ChatError], bytes]
"""Renders a ChatError as a JSON body (a front door speaking another API's error shape)."""


class Responder:
    """Sends one response, tracking ASGI response state so it cannot be sent twice."""

    __slots__ = ("head", "request_id", "send", "state", "status")

    def __init__(self, send: Send, request_id: str) -> None:
        self.send = send
        self.request_id = request_id
        self.state: Literal["REQUEST", "STREAMING", "CLOSED"] = "REQUEST"
        self.status = 0
        self.head = False
        """Answering HEAD: the headers of the GET response, its content never sent."""

    async def start(
        self, status: int, content_type: bytes, extra: Iterable[tuple[bytes, bytes]] = ()
    ) -> None:
        if self.state != "REQUEST":
            raise RuntimeError("response already started")
        self.state = "STREAMING"
        self.status = status
        headers = [
            (b"content-type", content_type),
            (b"x-request-id", self.request_id.encode()),
            *extra,
        ]
        await self.send({"type": "http.response.start", "status": status, "headers": headers})

    async def body(self, data: bytes, *, more: bool) -> None:
        if self.state != "STREAMING":
            raise RuntimeError("response not started or already closed")
        if not more:
            self.state = "CLOSED"
        if self.head:
            if more:
                return
            data = b""
        await self.send({"type": "http.response.body", "body": data, "more_body": more})

    async def whole(
        self,
        status: int,
        data: bytes,
        content_type: bytes = JSON_TYPE,
        extra: Iterable[tuple[bytes, bytes]] = (),
    ) -> None:
        await self.start(
            status, content_type, [(b"content-length", str(len(data)).encode()), *extra]
        )
        await self.body(data, more=False)

    async def json(
        self, status: int, obj: object, extra: Iterable[tuple[bytes, bytes]] = ()
    ) -> None:
        await self.whole(status, dumps(obj), JSON_TYPE, extra)

    async def error(self, exc: ChatError, render: ErrorRenderer | None = None) -> None:
        """Answer ``exc`` with its status, Retry-After (429/503) and ``render``'s body
        (default: SPEC §4's ``{"error": {...}}``)."""
        extra: list[tuple[bytes, bytes]] = []
        retry = retry_after_header(exc)
        if retry is not None:
            extra.append((b"retry-after", retry.encode()))
        if exc.type == "unauthorized":
            extra.append((b"www-authenticate", b"Bearer"))
        body = render(exc) if render is not None else dumps({"error": exc.to_dict()})
        await self.whole(exc.status, body, JSON_TYPE, extra)


@dataclass(slots=True)
class Request:
    """One incoming request, as a handler sees it (the body is read with
    :meth:`ChatdApp.read_body`)."""

    scope: Scope
    receive: Receive
    method: str
    path: str


Handler = Callable[[Request, Responder], Awaitable[None]]


class _Disconnected(Exception):
    """The client went away; nothing more can be sent."""


def _tool_call(call: ToolCall) -> dict[str, object]:
    return {"id": call.id, "name": call.name, "arguments": call.arguments}


def _usage(usage: Usage | None) -> dict[str, int]:
    return (usage or Usage()).to_dict()


class ChatdApp:
    """The ASGI application.

    Args:
        config: the validated configuration (limits, timeouts, tiers).
        providers: the registered providers by name (see :func:`register_providers`).
        transport_factory: makes the transport that is opened at lifespan startup.
        auth_token: when set, the bearer token every client must present.
        telemetry: the per-provider counters behind ``/metrics``.
    """

    def __init__(
        self,
        *,
        config: Config,
        providers: Mapping[str, Provider],
        transport_factory: TransportFactory,
        auth_token: Secret | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.config = config
        self.providers = dict(providers)
        self.telemetry = telemetry if telemetry is not None else Telemetry(self.providers)
        self._transport_factory = transport_factory
        self._auth_token = auth_token
        self._service: ChatService | None = None
        self._lifespan_stack: AsyncExitStack | None = None
        self._metrics: Callable[[], tuple[bytes, bytes]] | None = None
        self.routes: dict[str, dict[str, Handler]] = {
            "/v1/chat": {"POST": self._chat},
            "/v1/chat/providers": {"GET": self._providers},
            "/healthz": {"GET": self._healthz},
            "/metrics": {"GET": self._metrics_route},
        }
        """path -> method -> handler. A front door adds its paths here."""
        self.error_renderers: dict[str, ErrorRenderer] = {}
        """path -> how errors on it are shaped, when not SPEC §4's native shape (every
        ChatError a handler raises, and auth, 404, 405 and body-limit errors on that path).
        A key ending in ``/`` is a prefix: it covers every path under it, so a front door
        shapes even the 404 of a path it does not have (see :meth:`error_renderer`)."""
        # The front doors speak other APIs on their own paths (imported here, not at the
        # top, because they annotate with this module's types).
        from .routes_ollama import install as install_ollama
        from .routes_openai import install as install_openai

        install_openai(self)
        install_ollama(self)

    def error_renderer(self, path: str) -> ErrorRenderer | None:
        """How errors on ``path`` are shaped: its own entry, else the longest prefix entry
        (a key ending in ``/``) it falls under, else None (SPEC §4's native shape)."""
        render = self.error_renderers.get(path)
        if render is not None:
            return render
        best = ""
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
        )

    async def shutdown(self) -> None:
        """Close the transport (its pooled connections)."""
        self._service = None
        stack, self._lifespan_stack = self._lifespan_stack, None
        if stack is not None:
            await stack.aclose()

    # --- HTTP --------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        responder = Responder(send, _request_id(scope))
        method = str(scope.get("method", "GET"))
        path = str(scope.get("path", "/"))
        try:
            await self._dispatch(Request(scope, receive, method, path), responder)
        except ChatError as exc:
            if responder.state == "REQUEST":
                logger.info(
                    "%s %s -> %d %s (request %s): %s",
                    method, path, exc.status, exc.type, responder.request_id, exc.message,
                )
                await responder.error(exc, self.error_renderer(path))
        except _Disconnected:
            logger.info("%s %s: client went away (request %s)", method, path,
                        responder.request_id)
        except Exception:
            # A bug. Say so in the log; the client gets the least-bad answer possible.
            logger.exception("unexpected error on %s %s (request %s)", method, path,
                             responder.request_id)
            if responder.state == "REQUEST":
                await responder.json(
                    500, {"error": {"type": "internal_error", "message": "internal error"}}
                )
            elif responder.state == "STREAMING":
                await responder.body(b"", more=False)

    async def _dispatch(self, request: Request, responder: Responder) -> None:
        if request.path != "/healthz":
            self._check_auth(request.scope)
        methods = self.routes.get(request.path)
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
            render = self.error_renderer(request.path)
            body = render(exc) if render is not None else dumps({"error": exc.to_dict()})
            await responder.whole(exc.status, body, JSON_TYPE, [(b"allow", allow.encode())])
            return
        await handler(request, responder)

    def _check_auth(self, scope: Scope) -> None:
        token = self._auth_token
        if token is None:
            return
        raw = _header(scope, b"authorization") or b""
        scheme, _, given = raw.partition(b" ")
        # hmac.compare_digest: the comparison time does not depend on how much matched.
        if scheme.lower() != b"bearer" or not hmac.compare_digest(
            given.strip(), token.reveal().encode()
        ):
            raise ChatError("unauthorized", "missing or wrong bearer token")

    async def read_body(self, request: Request) -> bytes:
        """The whole request body, refusing more than ``max_body_bytes`` as it arrives.

        A declared Content-Length over the limit is refused before reading anything; a
        chunked body is counted chunk by chunk, so the limit bounds memory either way.
        """
        limit = self.config.chatd.max_body_bytes
        too_large = ChatError(
            "request_too_large", f"request body is larger than {limit} bytes"
        )
        declared = _header(request.scope, b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            raise too_large
        parts: list[bytes] = []
        size = 0
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected()
            chunk = bytes(message.get("body", b""))
            size += len(chunk)
            if size > limit:
                raise too_large
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts)

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

            self._metrics = renderer(self.telemetry)
        content_type, text = self._metrics()
        await responder.whole(200, text, content_type)

    async def _chat(self, request: Request, responder: Responder) -> None:
        body = await self.read_body(request)
        chat = parse_chat_request(body)
        service = self.service()
        if chat.stream:
            await self.until_disconnect(
                request.receive, responder, lambda: self._relay_stream(service, chat, responder)
            )
            return

        async def call() -> None:
            result = await service.chat(chat)
            r = result.response
            out: dict[str, object] = {
                "id": f"chat-{os.urandom(16).hex()}",
                "model": chat.model,
                "provider": result.route.provider,
                "upstream_model": result.route.upstream_model,
                "content": r.content,
                "thinking": r.thinking,
                "finish_reason": r.finish_reason,
                "usage": _usage(r.usage),
                "latency_ms": result.latency_ms,
            }
            if r.tool_calls:
                out["tool_calls"] = [_tool_call(c) for c in r.tool_calls]
            await responder.json(200, out)

        await self.until_disconnect(request.receive, responder, call)

    async def _relay_stream(
        self, service: ChatService, chat: ChatRequest, responder: Responder
    ) -> None:
        """SPEC §3 native streaming: one NDJSON line per event, relayed as it arrives.

        Errors before the first event come back as a normal status (the service commits to
        a route only once it has an event); after it, as a last ``{"done": true, "error"}``.
        """
        async with service.open_stream(chat) as stream:
            await responder.start(200, NDJSON_TYPE, [(b"cache-control", b"no-cache")])
            try:
                async for batch in stream.batches():
                    lines = []
                    for event in batch:
                        if isinstance(event, TextDelta):
                            line: dict[str, object] = {"content": event.text}
                        elif isinstance(event, ThinkingDelta):
                            line = {"thinking": event.text}
                        elif isinstance(event, ToolCallDelta):
                            line = {"tool_calls": [{
                                "index": event.index, "id": event.id, "name": event.name,
                                "arguments": event.arguments,
                            }]}
                        elif isinstance(event, StreamEnded):
                            line = {
                                "done": True,
                                "finish_reason": event.finish_reason,
                                "usage": _usage(event.usage),
                                "latency_ms": stream.latency_ms,
                                "provider": stream.route.provider,
                                "upstream_model": stream.route.upstream_model,
                            }
                        else:  # pragma: no cover - the event set is closed
                            continue
                        lines.append(dumps(line))
                    lines.append(b"")
                    await responder.body(b"\n".join(lines), more=True)
            except ChatError as exc:
                logger.info("stream from %s failed mid-way (request %s): %s %s",
                            exc.provider, responder.request_id, exc.type, exc.message)
                line = {"done": True, "error": exc.to_dict()}
                await responder.body(dumps(line) + b"\n", more=False)
                return
            await responder.body(b"", more=False)

    async def until_disconnect(
        self, receive: Receive, responder: Responder, work: Callable[[], Awaitable[None]]
    ) -> None:
        """Run ``work``; cancel it if the client disconnects before the response is complete.

        The work runs in this task (so its exceptions propagate unwrapped); the watcher is
        the task group's only child and never raises. The server reports a disconnect also
        after a complete response (the stream closing); that one cancels nothing.
        """
        disconnected = False

        async def watch(scope: anyio.CancelScope) -> None:
            nonlocal disconnected
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    if responder.state != "CLOSED":
                        disconnected = True
                        scope.cancel()
                    return

        failure: BaseException | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch, tg.cancel_scope)
            try:
                await work()
            except Exception as exc:  # re-raised below, outside the task group
                failure = exc
            finally:
                # ASGI: "http.disconnect: sent to the application if receive is called
                # after a response has been sent". So after a complete response the
                # watcher ends by itself; cancelling it (a costly step of anyio's on
                # asyncio) is needed only when no complete response went out.
                if responder.state != "CLOSED":
                    tg.cancel_scope.cancel()
        if failure is not None:
            raise failure
        if disconnected:
            raise _Disconnected()


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
