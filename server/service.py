"""The chat service: a request in, a provider's answer out, I/O only through a Transport.

Strategy: the core decides everything that can be decided without I/O: the fallback chain
(:func:`~chatproto._routing.resolve`), the HTTP request (``codec.build_request``), what the
bytes mean (``parse_response`` / ``stream_parser`` / ``parse_error``). This module only
sequences those steps around :meth:`Transport.open`, reads the clocks (``perf_counter`` for
latency, ``time.time`` for Retry-After dates) and counts each upstream call in
:class:`~chatproto._telemetry.Telemetry`. What one request cost (who served it, the
fallbacks taken, the upstream's time and the wait for a slot) is written into the
:class:`CallTrace` its caller passes, for the request's log line and headers.

A provider with ``max_concurrency`` has a FIFO semaphore: a call takes a slot before it
connects and holds it until the answer is read (a stream: until it ends or is abandoned).
At the bound the plan decides (:meth:`~chatproto.CallPlan.queue_wait`): a chain with a
target left falls through at once; the last target waits in arrival order up to
``queue_timeout_secs`` and then fails 503 ``upstream_overloaded``, a retryable error.

A fallback chain moves to its next route only on a *retryable* :class:`ChatError` (a
failure of that upstream, not of the request). For a stream that is possible only until
the first event has been handed to the caller: :meth:`ChatService.open_stream` reads each
upstream until it has produced at least one event before it commits to it, so an upstream
that fails at once (a 429, an immediate error line) still falls back, and the caller learns
the outcome before it has sent its own status line. After that, events are relayed as they
are parsed; nothing buffers the whole stream.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from typing import TypeVar

import anyio

from chatproto import (
    PROFILES,
    Attempt,
    CallPlan,
    ChatError,
    ChatRequest,
    ChatResponse,
    Codec,
    EmbedAttempt,
    Event,
    HTTPRequest,
    Provider,
    RawEvent,
    Route,
    SlotRules,
    StreamEnded,
    StreamParser,
    Telemetry,
    Usage,
    blame,
    resolve,
)
from transports import Response, Timeouts, Transport

__all__ = ["CallTrace", "ChatResult", "ChatService", "ChatStream"]

logger = logging.getLogger("chatd.service")

_T = TypeVar("_T")
_A = TypeVar("_A", Attempt, EmbedAttempt)

#: A non-streamed upstream body larger than this is refused (``bad_upstream_response``):
#: a chat answer is kilobytes; this bounds memory per request, not the model's output.
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
#: Error bodies are read only for their message.
MAX_ERROR_BYTES = 64 * 1024
#: An upstream request body larger than this is handed to the transport, not kept by the
#: call (:class:`Outbox`).
HANDOVER_BODY = 256 * 1024


class Outbox:
    """An attempt's upstream request on its way to the transport: taken once.

    A call lives mostly in waiting for its answer, and a large body is useless once sent:
    what keeps it in memory then is any reference left to it. So for a body over
    :data:`HANDOVER_BODY` the attempt loop keeps the attempt without its body, and the
    request itself sits here until the transport takes it; the transport lets it go once
    it is written (``transports/_h11.py``). Kept by the call, 60 concurrent calls with
    8 MiB bodies held two copies each (the parsed request and the upstream body) until
    their answers came (bench/hostile.py ``bulk``).
    """

    __slots__ = ("_http",)

    def __init__(self, http: HTTPRequest) -> None:
        self._http: HTTPRequest | None = http

    def take(self) -> HTTPRequest:
        http = self._http
        if http is None:
            raise RuntimeError("the request was handed over already")
        self._http = None
        return http


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatResult:
    """A whole answer and how it was obtained."""

    route: Route
    response: ChatResponse
    latency_ms: float
    """The upstream round trip, as chatd measured it."""
    fallbacks: tuple[str, ...] = ()
    """Providers tried (or skipped) and left before this one, in order."""


@dataclass(slots=True, kw_only=True)
class CallTrace:
    """What one request's upstream calls cost, filled in by the service as they happen.

    The caller makes one per request and reads it when the request is done, whatever its
    outcome: the route of the last attempt (the one that answered, or failed last), the
    fallbacks the chain took, and the time spent upstream and waiting for slots, so that
    chatd's own overhead is the rest.
    """

    route: Route | None = None
    fallbacks: list[str] = field(default_factory=list)
    """Providers tried (or skipped) and left before :attr:`route`, in order."""
    upstream_s: float = 0.0
    """Seconds spent on upstream calls, every attempt's (a stream: to its end)."""
    queued_s: float = 0.0
    """Seconds spent waiting for a provider's concurrency slot."""
    open_since: float | None = None
    """When the committed stream's upstream call began, while it runs (its time is added
    to :attr:`upstream_s` when it ends)."""
    usage: Usage | None = None


async def _error_body(resp: Response) -> bytes:
    """The first :data:`MAX_ERROR_BYTES` of an error body, the rest left unread.

    Not ``aread(limit)``: that refuses an oversized body as ``bad_upstream_response``,
    and a 429 or 503 with a large HTML page must keep its status-based type.
    """
    parts: list[bytes] = []
    size = 0
    async for chunk in resp.aiter_bytes():
        parts.append(chunk)
        size += len(chunk)
        if size >= MAX_ERROR_BYTES:
            break
    return b"".join(parts)[:MAX_ERROR_BYTES]


def _has_content(events: list[Event]) -> bool:
    """Whether ``events`` hold one that is not a same-dialect RawEvent."""
    return any(type(event) is not RawEvent for event in events)


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 1)


class ChatStream:
    """One committed upstream stream: iterate it for core events (``async for``).

    The iteration ends after :class:`~chatproto.StreamEnded`, which is always the last event.
    A failure while iterating raises :class:`ChatError` with the provider filled in.
    """

    def __init__(
        self,
        *,
        route: Route,
        provider: Provider,
        chunks: AsyncIterator[bytes],
        parser: StreamParser,
        pending: list[Event],
        started: float,
        clock: Callable[[], float],
        telemetry: Telemetry,
        trace: CallTrace | None = None,
        default_retry_after_secs: float | None = None,
    ) -> None:
        self.route = route
        self._default_retry = default_retry_after_secs
        self._provider = provider
        self.latency_ms: float | None = None
        """Set when the stream ended normally: from sending the request to StreamEnded."""
        self.ended: StreamEnded | None = None
        self._chunks = chunks
        self._parser = parser
        self._pending: deque[Event] = deque(pending)
        self._eof = False
        self._started = started
        self._clock = clock
        self._telemetry = telemetry
        self._trace = trace
        self._recorded = False

    @property
    def provider(self) -> str:
        return self.route.provider

    def __aiter__(self) -> ChatStream:
        return self

    async def __anext__(self) -> Event:
        if not self._pending:
            if self.ended is not None:
                raise StopAsyncIteration
            await self._fill()
        event = self._pending.popleft()
        if type(event) is StreamEnded:
            self._end(event)
        return event

    def batches(self) -> _Batches:
        """The events in batches: each batch is what one upstream read produced.

        Relays render a batch into one write: an upstream read often holds several
        chunks, and one ASGI send per event costs more than rendering the event.
        A plain iterator, not an async generator, so leaving the loop early (at
        StreamEnded) leaves nothing to finalise later.
        """
        return _Batches(self)

    async def next_batch(self) -> list[Event]:
        """Every event available now (at least one); StopAsyncIteration after the end."""
        if self.ended is not None:
            raise StopAsyncIteration
        if not self._pending:
            await self._fill()
        batch = list(self._pending)
        self._pending.clear()
        last = batch[-1]
        if type(last) is StreamEnded:
            self._end(last)
        return batch

    async def _fill(self) -> None:
        """Read the upstream until the parser has produced at least one event."""
        try:
            while not self._pending:
                if self._parser.error is not None:
                    # The events before the failure were delivered; now the failure.
                    raise self._parser.error
                if self._eof:
                    # The parser must raise on a body that ends before its finish marker;
                    # if one ever does not, that is still a cut stream, not a hang.
                    raise ChatError(
                        "bad_upstream_response", "upstream stream ended without finishing"
                    )
                try:
                    chunk = await self._chunks.__anext__()
                except StopAsyncIteration:
                    self._eof = True
                    chunk = b""
                self._pending.extend(self._parser.feed(chunk))
        except ChatError as exc:
            # A mid-stream 429/503 carries the configured wait too (SPEC §4): Codex reads
            # it from response.failed.
            blame(exc, self._provider, default_retry_after_secs=self._default_retry)
            # What the upstream reported spending before it failed (OpenRouter's error
            # chunk carries the usage) is counted like a finished call's.
            self._record(error_type=exc.type, usage=exc.usage)
            raise

    def _end(self, event: StreamEnded) -> None:
        self.ended = event
        elapsed = self._clock() - self._started
        self.latency_ms = _ms(elapsed)
        self._record(latency_s=elapsed)

    def _record(self, *, latency_s: float | None = None, error_type: str | None = None,
                usage: Usage | None = None) -> None:
        if self._recorded:
            return
        self._recorded = True
        if latency_s is None:
            latency_s = self._clock() - self._started
        if self.ended is not None:
            usage = self.ended.usage
        self._telemetry.record(
            self.provider, latency_s=latency_s, usage=usage, error_type=error_type
        )
        if self._trace is not None:
            self._trace.upstream_s += latency_s
            self._trace.open_since = None
            self._trace.usage = usage

    def _abandon(self) -> None:
        """The caller stopped iterating before the end (it went away, or failed)."""
        if not self._recorded:
            self._recorded = True
            self._telemetry.record_cancelled(self.provider)
            if self._trace is not None:
                self._trace.upstream_s += self._clock() - self._started
                self._trace.open_since = None


class _Batches:
    __slots__ = ("_stream",)

    def __init__(self, stream: ChatStream) -> None:
        self._stream = stream

    def __aiter__(self) -> _Batches:
        return self

    def __anext__(self) -> Awaitable[list[Event]]:
        return self._stream.next_batch()


class ChatService:
    """Route a :class:`ChatRequest` and call the upstream(s) through ``transport``.

    A thin driver of :class:`~chatproto.CallPlan`: the plan decides the attempts, their
    timeouts and whether to move on after a failure; this class does the I/O, reads the
    clocks and counts each call.

    Args:
        providers: the registered providers by name.
        tiers: ``[models]`` tiers (SPEC §1 rule 2).
        transport: an *open* transport; the service never opens or closes it.
        timeout_secs: the whole-call timeout, unless a provider sets its own.
        connect_timeout_secs: the TCP/TLS connect timeout.
        telemetry: where each upstream call is counted.
        profiles: every known provider, registered or not (routing's rows).
        chain_timeout_secs: a fallback chain's whole budget (default: ``timeout_secs``).
        default_retry_after_secs: the wait given to a 429/503 that names none.
        stream_idle_secs: how long a running stream's read may wait (SPEC §5).
        clock: monotonic seconds, for latency and the chain's budget.
        wall_clock: epoch seconds, for Retry-After dates.
    """

    def __init__(
        self,
        *,
        providers: Mapping[str, Provider],
        tiers: Mapping[str, tuple[str, ...]],
        transport: Transport,
        timeout_secs: float = 120.0,
        connect_timeout_secs: float = 5.0,
        telemetry: Telemetry | None = None,
        profiles: Sequence[Provider] = PROFILES,
        chain_timeout_secs: float | None = None,
        default_retry_after_secs: float = 2.0,
        stream_idle_secs: float = 120.0,
        clock: Callable[[], float] = time.perf_counter,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.providers = dict(providers)
        self.tiers = dict(tiers)
        self.profiles = tuple(profiles)
        self.transport = transport
        self.telemetry = telemetry if telemetry is not None else Telemetry(self.providers)
        self._timeout = timeout_secs
        self._chain_timeout = chain_timeout_secs
        self._default_retry = default_retry_after_secs
        self._stream_idle = stream_idle_secs
        self._connect_timeout = connect_timeout_secs
        self._clock = clock
        self._wall_clock = wall_clock
        self._slots: dict[str, anyio.Semaphore] = {}

    def plan(self, request: ChatRequest) -> CallPlan:
        """The call plan for ``request`` (routing errors, 400/404, raise here)."""
        return CallPlan(
            request,
            providers=self.providers,
            tiers=self.tiers,
            profiles=self.profiles,
            timeout_secs=self._timeout,
            chain_timeout_secs=self._chain_timeout,
            default_retry_after_secs=self._default_retry,
            now=self._clock(),
        )

    def routes(self, model: object) -> tuple[Route, ...]:
        """The fallback chain for ``model`` (SPEC §1); ChatError 400/404 if none."""
        return resolve(model, self.providers, self.tiers, profiles=self.profiles)

    def _timeouts(self, attempt: Attempt, *, stream: bool = False) -> Timeouts:
        """The transport's limits for ``attempt``.

        ``total`` is the attempt's share of the chain's budget: the whole of a
        non-streamed call, the head of a streamed one (its first event is bounded by the
        same deadline in :meth:`_start`). Once a stream runs, a read may wait
        ``stream_idle_secs`` (SPEC §5), not what was left of the chain's budget when the
        stream started.
        """
        total = attempt.timeout_secs
        read = self._stream_idle if stream else total
        return Timeouts(connect=min(self._connect_timeout, total), read=read, total=total)

    async def _attempts(
        self,
        request: ChatRequest,
        run: Callable[[Attempt, Outbox, CallPlan], Awaitable[_T]],
        trace: CallTrace,
    ) -> _T:
        """The one attempt loop: ``run`` each attempt the plan gives until one succeeds
        or the plan gives up (and raises). Each move along the chain is counted as a
        fallback ``(from, to)``, skipped targets included. The attempt's request goes to
        ``run`` in an :class:`Outbox`; a large body is not kept here."""
        plan = self.plan(request)
        trace.fallbacks = plan.fallbacks
        counted = 0
        while True:
            attempt = plan.next(now=self._clock())
            outbox = Outbox(attempt.http)
            if len(attempt.http.body) > HANDOVER_BODY:
                attempt = replace(attempt, http=replace(attempt.http, body=b""))
            trace.route = attempt.route
            trail = plan.fallbacks
            while counted < len(trail):
                to = trail[counted + 1] if counted + 1 < len(trail) else attempt.provider.name
                self.telemetry.record_fallback(trail[counted], to)
                counted += 1
            try:
                return await run(attempt, outbox, plan)
            except ChatError as exc:
                plan.failed(attempt, exc)
                logger.info("falling back from %s after %s", attempt.provider.name, exc.type)

    async def chat(
        self, request: ChatRequest, trace: CallTrace | None = None, *,
        written: Callable[[], None] | None = None,
    ) -> ChatResult:
        """A non-streamed answer, trying the chain's routes in order. ``written`` is
        called once an upstream request has been written (``Transport.open``).

        Raises:
            ChatError: the request's own error, or the last route's failure.
        """
        if request.stream:  # dataclasses.replace is a measurable cost per call
            request = replace(request, stream=False)
        trace = trace if trace is not None else CallTrace()
        return await self._attempts(
            request,
            lambda attempt, outbox, plan: self._call(attempt, outbox, plan, trace, written),
            trace,
        )

    async def _call(
        self, attempt: Attempt, outbox: Outbox, plan: CallPlan, trace: CallTrace,
        written: Callable[[], None] | None = None,
    ) -> ChatResult:
        provider = attempt.provider
        codec = attempt.codec
        async with self.slot(attempt, plan, trace) as attempt:
            started = self._clock()
            with self._accounted(provider, started, trace):
                async with self.transport.open(
                    outbox.take(), self._timeouts(attempt), written=written
                ) as resp:
                    await self._raise_for_status(resp, codec, provider)
                    body = await resp.aread(MAX_RESPONSE_BYTES)
                response = codec.parse_response(
                    provider.name, body, passthrough=attempt.passthrough
                )
            elapsed = self._clock() - started
        self.telemetry.record(provider.name, latency_s=elapsed, usage=response.usage)
        trace.upstream_s += elapsed
        trace.usage = response.usage
        return ChatResult(
            route=attempt.route, response=response, latency_ms=_ms(elapsed),
            fallbacks=tuple(plan.fallbacks),
        )

    @asynccontextmanager
    async def open_stream(
        self, request: ChatRequest, trace: CallTrace | None = None, *,
        written: Callable[[], None] | None = None,
    ) -> AsyncIterator[ChatStream]:
        """Commit to the first route of the chain that starts streaming; yield its events.
        ``written`` as for :meth:`chat`.

        Raises (on entry):
            ChatError: the request's own error, or the last route's failure; no event has
                been produced, so the caller can still answer with a status code.
        """
        if not request.stream:
            request = replace(request, stream=True)
        trace = trace if trace is not None else CallTrace()
        async with AsyncExitStack() as outer:
            stream = await self._attempts(
                request,
                lambda attempt, outbox, plan: self._start(
                    attempt, outbox, plan, outer, trace, written
                ),
                trace,
            )
            try:
                yield stream
            finally:
                stream._abandon()

    async def _start(
        self, attempt: Attempt, outbox: Outbox, plan: CallPlan, outer: AsyncExitStack,
        trace: CallTrace, written: Callable[[], None] | None = None,
    ) -> ChatStream:
        """Open ``attempt`` and read until its first event; on success the response's
        cleanup (and the provider's slot) moves to ``outer``, on failure it runs here."""
        provider = attempt.provider
        codec = attempt.codec
        async with AsyncExitStack() as layer:
            attempt = await layer.enter_async_context(self.slot(attempt, plan, trace))
            timeouts = self._timeouts(attempt, stream=True)
            started = self._clock()
            # The whole-call timeout bounds a stream until its first event: the transport's
            # ``total`` covers only the head, and an upstream that sends keep-alive blank
            # lines or comments (and nothing else) would otherwise hold the caller without
            # a status.
            first_event_by = anyio.current_time() + timeouts.total
            with self._accounted(provider, started, trace):
                resp = await layer.enter_async_context(
                    self.transport.open(outbox.take(), timeouts, written=written)
                )
                await self._raise_for_status(resp, codec, provider)
                chunks = resp.aiter_bytes()
                parser = codec.stream_parser(provider.name, passthrough=attempt.passthrough)
                pending: list[Event] = []
                eof = False
                with anyio.CancelScope(deadline=first_event_by) as waiting:
                    # Commit on the first event a client would see: a passthrough parser's
                    # RawEvents alone (a role-only chunk) must not decide, or whether a
                    # chain falls back would depend on the client's door.
                    while not eof and not _has_content(pending):
                        if parser.error is not None:
                            raise parser.error
                        try:
                            chunk = await chunks.__anext__()
                        except StopAsyncIteration:
                            eof, chunk = True, b""
                        pending.extend(parser.feed(chunk))
                if waiting.cancelled_caught:
                    raise ChatError(
                        "upstream_timeout",
                        f"no stream event within {timeouts.total:g} s of the request",
                    )
                if not _has_content(pending):
                    raise ChatError(
                        "bad_upstream_response", "upstream stream ended without any event"
                    )
            stream = ChatStream(
                route=attempt.route,
                provider=provider,
                chunks=chunks,
                parser=parser,
                pending=pending,
                started=started,
                clock=self._clock,
                telemetry=self.telemetry,
                trace=trace,
                default_retry_after_secs=self._default_retry,
            )
            trace.open_since = started
            if eof:
                stream._eof = True
            outer.push_async_exit(layer.pop_all())
        return stream

    def _semaphore(self, provider: Provider) -> anyio.Semaphore | None:
        """The FIFO slots of ``provider`` (made on first use: inside the event loop)."""
        if provider.max_concurrency is None:
            return None
        sem = self._slots.get(provider.name)
        if sem is None:
            sem = self._slots[provider.name] = anyio.Semaphore(
                provider.max_concurrency, fast_acquire=True
            )
        return sem

    @asynccontextmanager
    async def slot(
        self, attempt: _A, plan: SlotRules, trace: CallTrace
    ) -> AsyncIterator[_A]:
        """Hold one of the provider's ``max_concurrency`` slots (a chat or an embeddings
        call); yields the attempt with its timeout shortened by any wait. Raises the
        plan's ``upstream_overloaded`` when no slot came in time (at once when the chain
        has a target left)."""
        sem = self._semaphore(attempt.provider)
        if sem is None:
            yield attempt
            return
        try:
            sem.acquire_nowait()
        except anyio.WouldBlock:
            began = self._clock()
            wait = plan.queue_wait(attempt, now=began)
            acquired = False
            if wait > 0:
                with anyio.move_on_after(wait):
                    await sem.acquire()
                    acquired = True
            now = self._clock()
            trace.queued_s += now - began
            if not acquired:
                self.telemetry.record_saturated(attempt.provider.name)
                raise plan.saturated(attempt, now - began) from None
            try:
                attempt = plan.resume(attempt, now=now)
            except ChatError:
                sem.release()
                raise
        try:
            yield attempt
        finally:
            sem.release()

    @contextmanager
    def _accounted(
        self, provider: Provider, started: float, trace: CallTrace
    ) -> Iterator[None]:
        """Blame a failure on ``provider`` and count it; count a cancellation as such."""
        try:
            yield
        except ChatError as exc:
            blame(exc, provider)
            elapsed = self._clock() - started
            trace.upstream_s += elapsed
            self.telemetry.record(provider.name, latency_s=elapsed, error_type=exc.type)
            raise
        except anyio.get_cancelled_exc_class():
            trace.upstream_s += self._clock() - started
            self.telemetry.record_cancelled(provider.name)
            raise

    async def _raise_for_status(self, resp: Response, codec: Codec, provider: Provider) -> None:
        """A non-2xx answer becomes its SPEC §4 error, with the upstream's own message."""
        if not 200 <= resp.status < 300:
            body = await _error_body(resp)
            raise codec.parse_error(
                provider.name, resp.status, resp.headers, body, now=self._wall_clock()
            )
