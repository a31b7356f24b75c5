"""What one client request leaves behind: its counters, its who-served-it headers, its log line.

Strategy: the relay opens an :class:`Observed` when a request reaches a door and closes
it exactly once with the status the client got (:meth:`Observed.finish`), whatever
happened in between. The service fills the request's :class:`~server.service.CallTrace`
as it calls upstreams (the route, the fallbacks, the upstream's time, the wait for a
slot), so chatd's own overhead is the rest of the wall time, measured here with one clock.

Nothing here reads a body or a message: the log line holds the request id, door, model
name, route, status, error type, times, token counts and fallbacks, never content or an
upstream's message (either may quote a prompt), and never a key. Strings a client chose
(the model name) are clipped and go through :mod:`server.logs`' escaping like any record.
With ``metrics = false`` and ``log_requests = false`` the request costs two clock reads.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from chatproto import ChatError, Telemetry

from .asgi import Disconnected, Responder
from .logs import event_writer
from .service import CallTrace

__all__ = ["CLIENT_CLOSED", "Observed", "Observer", "observed"]

logger = logging.getLogger("chatd.request")

#: The status a request is counted with when the client went away before its answer was
#: complete (nginx's convention; no response carries it).
CLIENT_CLOSED = 499
#: A client's model name (and the upstream model, the client's text after a prefix) is
#: logged and echoed in ``x-chatd-upstream-model`` up to this many characters.
MAX_LOGGED_MODEL = 200


class Observer:
    """Makes one :class:`Observed` per request; holds the settings and the counters.

    Args:
        telemetry: where requests are counted (``chatd_requests_total`` and friends).
        metrics: count requests per door (``chatd.metrics``).
        log_requests: write one line per request (``chatd.log_requests``).
        clock: monotonic seconds (the service's clock, so the times subtract).
    """

    __slots__ = ("clock", "log_requests", "metrics", "telemetry")

    def __init__(
        self,
        telemetry: Telemetry,
        *,
        metrics: bool = True,
        log_requests: bool = True,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.telemetry = telemetry
        self.metrics = metrics
        self.log_requests = log_requests
        self.clock = clock

    def begin(self, door: str, request_id: str) -> Observed:
        """A request has reached ``door``: it is in flight until :meth:`Observed.finish`."""
        self.telemetry.in_flight += 1
        return Observed(self, door, request_id)


class Observed:
    """One request, from its door to its last byte."""

    __slots__ = (
        "_done", "_observer", "door", "error", "model", "request_id", "started", "stream",
        "trace",
    )

    def __init__(self, observer: Observer, door: str, request_id: str) -> None:
        self._observer = observer
        self._done = False
        self.door = door
        self.request_id = request_id
        self.started = observer.clock()
        self.model: str | None = None
        """The model name the client asked for, once the body is parsed."""
        self.stream = False
        self.trace = CallTrace()
        """Filled by the service: pass it to ``chat``/``open_stream``."""
        self.error: ChatError | None = None
        """A failure after the response head (a stream that failed mid-way)."""

    def overhead_s(self, now: float | None = None) -> float:
        """chatd's own time so far: wall time minus upstream time and slot waits."""
        end = self._observer.clock() if now is None else now
        trace = self.trace
        upstream = trace.upstream_s
        if trace.open_since is not None:  # a stream still running upstream
            upstream += end - trace.open_since
        return max(0.0, end - self.started - upstream - trace.queued_s)

    def served_headers(self) -> list[tuple[bytes, bytes]]:
        """Who served the request and chatd's share of its time so far, for the response
        head (``x-chatd-provider``, ``x-chatd-upstream-model``, ``x-chatd-overhead-ms``;
        README "What each answer and request leaves behind"). Empty before routing gave a
        route."""
        route = self.trace.route
        if route is None:
            return []
        overhead_ms = self.overhead_s() * 1000.0
        return [
            (b"x-chatd-provider", route.provider.encode()),
            # An upstream model name is the client's text after a prefix: it is echoed only
            # as far as a header can carry it (visible ASCII), else percent-escaped.
            # Clipped as in the log: HTTP clients refuse a head past 64 KiB (h11, httpx's),
            # and a client's 300 kB name would make even its error unreadable.
            (b"x-chatd-upstream-model", _header_value(_clip(route.upstream_model))),
            (b"x-chatd-overhead-ms", f"{overhead_ms:.3f}".encode()),
        ]

    def stream_opened(self) -> None:
        self.stream = True
        self._observer.telemetry.open_streams += 1

    def finish(self, status: int, error: ChatError | str | None = None) -> None:
        """The request is over: ``status`` is what the client got (``CLIENT_CLOSED`` if it
        went away); ``error`` the error it ended with, also after a stream's head."""
        if self._done:
            return
        self._done = True
        observer = self._observer
        telemetry = observer.telemetry
        telemetry.in_flight -= 1
        if self.stream:
            telemetry.open_streams -= 1
        if not (observer.metrics or observer.log_requests):
            return
        now = observer.clock()
        overhead = self.overhead_s(now)
        error_type = error.type if isinstance(error, ChatError) else error
        route = self.trace.route
        provider = route.provider if route is not None else ""
        if observer.metrics:
            telemetry.record_request(
                self.door, provider=provider, status=status, error_type=error_type,
                overhead_s=overhead,
            )
        if observer.log_requests and logger.isEnabledFor(logging.INFO):
            fields = self._fields(now, status, error_type, overhead)
            writer = event_writer()
            if writer is not None and writer.reaches_only_this(logger):
                writer.write(logger.name, _RequestLine.event, fields, lambda: _text(fields))
                return
            # Not logger.info: that walks the stack for the caller's file and line, which
            # every request line would pay for and none shows.
            logger.handle(logger.makeRecord(
                logger.name, logging.INFO, __file__, 0, _RequestLine(fields), (), None,
                extra={"fields": fields},
            ))

    def _fields(
        self, now: float, status: int, error_type: str | None, overhead: float
    ) -> dict[str, Any]:
        trace = self.trace
        route = trace.route
        usage = trace.usage
        model = self.model
        return {
            "request_id": self.request_id,
            "door": self.door,
            "model": _clip(model) if model is not None else None,
            "stream": self.stream,
            "provider": route.provider if route is not None else None,
            # The client's text after a prefix, so as long as the model name (SPEC §5: one
            # bounded line per request).
            "upstream_model": _clip(route.upstream_model) if route is not None else None,
            "status": status,
            "error_type": error_type,
            "latency_ms": _ms(now - self.started),
            "upstream_ms": _ms(trace.upstream_s),
            "queued_ms": _ms(trace.queued_s),
            "overhead_ms": _ms(overhead),
            "prompt_tokens": usage.prompt_tokens if usage is not None else None,
            "completion_tokens": usage.completion_tokens if usage is not None else None,
            "cached_tokens": usage.cached_tokens if usage is not None else None,
            "reasoning_tokens": usage.reasoning_tokens if usage is not None else None,
            "fallbacks": list(trace.fallbacks),
        }


async def observed(
    observer: Observer, door: str, responder: Responder,
    work: Callable[[Observed], Awaitable[None]],
) -> None:
    """Run ``work`` (one request through ``door``) observed: counted and logged once, with
    the status the client got, whatever happens; an error the app will answer carries the
    who-served-it headers too."""
    obs = observer.begin(door, responder.request_id)
    try:
        await work(obs)
    except ChatError as exc:
        if responder.state == "REQUEST":  # the app answers it, with these headers
            responder.extra = obs.served_headers()
            obs.finish(exc.status, exc)
        else:
            obs.finish(responder.status, exc)
        raise
    except Disconnected:
        obs.finish(CLIENT_CLOSED, "client_closed")
        raise
    except BaseException:  # a bug (answered 500) or the task cancelled (shutdown)
        obs.finish(500 if responder.state == "REQUEST" else responder.status,
                   "internal_error")
        raise
    obs.finish(responder.status, obs.error)


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def _clip(name: str) -> str:
    """A model name as far as it is logged and echoed: :data:`MAX_LOGGED_MODEL` characters,
    then ``…``."""
    return name if len(name) <= MAX_LOGGED_MODEL else name[:MAX_LOGGED_MODEL] + "…"


def _header_value(text: str) -> bytes:
    if text.isascii() and text.isprintable():
        return text.encode()
    from urllib.parse import quote

    return quote(text, safe="/:@!$&'()*+,;=-._~").encode()


class _RequestLine:
    """A request record's message: the text form when formatted as text; under
    ``log_format = "json"`` the formatter writes :attr:`event` as ``msg`` and the fields
    as keys (:class:`server.logs.JsonFormatter`)."""

    __slots__ = ("fields",)
    event = "request"

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields

    def __str__(self) -> str:
        return _text(self.fields)


def _text(fields: dict[str, Any]) -> str:
    """The ``log_format = "text"`` line: ``request <id> key=value ...``; values with a space
    or a quote are quoted. The handler's formatter escapes control characters."""
    parts = [f"request {fields['request_id']}"]
    for key, value in fields.items():
        if key == "request_id" or value is None or value == []:
            continue
        if isinstance(value, list):
            value = ">".join(map(str, value))
        elif isinstance(value, bool):
            value = "true" if value else "false"
        text = str(value)
        if text == "" or any(c in text for c in ' "='):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        parts.append(f"{key}={text}")
    return " ".join(parts)
