"""The serving process: one worker, or a supervisor of several; signals, drain, connection cap.

Strategy: every worker process is the same program. It runs hypercorn's ``serve`` under
``anyio.run`` on the listening socket it was handed, keeps a signal watcher for its whole
life, and on the first SIGTERM or SIGINT tells the app to drain
(:meth:`~server.app.ChatdApp.begin_shutdown`: refuse new requests with 503
``shutting_down``, let in-flight calls run until ``shutdown_grace_secs``, then end them in
their dialect's way) and hypercorn to stop (close the listener and idle keep-alive
connections, wait for the connections still busy). hypercorn's own ``graceful_timeout``
is set past the grace, so it never cuts a call the app is still allowed to finish; its
default of 3 s is what cut every longer call before. Later signals are logged and ignored:
systemd sends SIGTERM to every process of the unit at once, and the supervisor forwards
the one it gets.

With ``--workers N`` the supervisor (this process) spawns N workers (``spawn``: fresh
interpreters), closes its own copy of the listening socket so that only workers accept,
forwards SIGTERM/SIGINT to them, and exits 0 when all of them have drained and exited 0. A
worker that dies on its own stops the others (exit 1): a supervisor that quietly runs on
with fewer workers hides the failure. This replaces hypercorn's ``run``, whose workers
could not tell the app that a drain had begun.

Each worker accepts on a listening socket of its own (Linux ``SO_REUSEPORT``): the kernel
hashes every new connection to one socket of the group, so the load spreads over the
workers. Sharing one socket does not: all workers wait in ``epoll`` on the same queue and
whichever wakes first takes the whole burst (50 keep-alive connections opened at once all
went to one of two workers in most runs, measured with ``bench/serve.py --workers 1,2``).
The first worker is handed the supervisor's socket, which was listening before any worker
existed, so a connection made as soon as the startup line is logged waits in its backlog;
the others bind their own to the same address when they start. Where ``SO_REUSEPORT``
does not balance (not Linux), the workers share the one socket as before.

The connection cap (``max_connections``) sits where hypercorn turns an accepted socket
into a connection (its ``TCPServer``, one name in each worker module). Past the cap a
connection is answered with a 503 ``overloaded`` and ``Retry-After`` and closed: a flood
of connections costs one descriptor each for an instant instead of exhausting the process.
The answer is in the shape of the door the request line's path names (SPEC §4: "Each door
speaks its own error shape, for every status"), so the refusal's request line is read
first, for up to :data:`LINGER_SECS` and :data:`REQUEST_LINE_BYTES`; a connection that
sends none in that time, or one refused while :data:`MAX_LINGERING` others are being
read, is answered at once in SPEC §4's native shape. The answer is followed by a
lingering close (half-close, read what the client sent until :data:`LINGER_SECS` after
the accept), so the client reads the 503 instead of a reset; at most
:data:`MAX_LINGERING` connections linger at once, the rest are closed at once. The cap is
also lowered to what the process's descriptor limit can carry (each admitted connection
may hold an upstream socket too), so it is never the descriptor limit that refuses.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from .config import ChatdConfig, read_config

if TYPE_CHECKING:
    from .app import ChatdApp
    from .asgi import ErrorRenderer

__all__ = ["ConnectionGate", "Worker", "block_signals", "run_worker", "supervise"]

logger = logging.getLogger("chatd")

#: hypercorn's graceful wait exceeds the grace by this much: ending the calls still
#: running at the deadline (an error line each) takes a moment.
DRAIN_MARGIN_SECS = 5.0
#: How long a refused connection is read from before it is closed (a lingering close).
LINGER_SECS = 0.5
#: Refused connections lingering at once; past it, refused connections close at once.
MAX_LINGERING = 1024
#: The most of a refused connection read for its request line (the path names the door).
REQUEST_LINE_BYTES = 8192
#: Allocations at least this large get their own mapping (see :func:`fix_malloc_threshold`).
MMAP_THRESHOLD = 256 * 1024
#: Descriptors kept free of connections: the listener, log files, the pool's churn.
FD_RESERVE = 64

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass(frozen=True, slots=True)
class Worker:
    """What a worker process needs to build and serve the app (picklable, for ``spawn``)."""

    config_path: str | None
    transport: str
    worker_class: str
    metrics_dir: str | None = None
    """Where the workers share their counters, so any one's scrape shows them all."""


# -- the connection cap ----------------------------------------------------------------


def fd_limit() -> int | None:
    """The soft open-file limit, None where there is none to read."""
    try:
        import resource
    except ImportError:  # not on this platform
        return None
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else int(soft)


def effective_max_connections(chatd: ChatdConfig, limit: int | None) -> int:
    """``max_connections``, lowered to what ``limit`` descriptors can carry.

    An admitted connection may hold an upstream socket as well, and a refused one holds a
    descriptor while it lingers.
    """
    wanted = chatd.max_connections
    if limit is None:
        return wanted
    room = (limit - FD_RESERVE - MAX_LINGERING) // 2
    return max(1, min(wanted, room))


Refusal = Callable[[str | None], bytes]
"""The whole 503 answer (head and body) for a refused connection whose request line names
this path (None: no request line arrived)."""


def native_refusal(limit: int, retry_after: float) -> Refusal:
    """SPEC §4's native shape for every path (a gate without the app's door table)."""
    from chatproto.dialects import native

    return door_refusal(limit, retry_after, lambda path: native.door.render_error)


def door_refusal(
    limit: int, retry_after: float, renderer: Callable[[str], ErrorRenderer]
) -> Refusal:
    """The answer past ``max_connections`` in the shape ``renderer`` gives the path (the
    app's :meth:`~server.app.ChatdApp.error_renderer`), with the headers of every chatd
    error (:func:`~server.asgi.error_headers`: ``x-should-retry``, ``Retry-After``). One
    answer per shape, rendered once: a flood of refusals costs a dictionary lookup each."""
    from chatproto import ChatError
    from chatproto.dialects import native as native_door

    from .asgi import error_headers

    exc = ChatError(
        "overloaded",
        f"chatd is serving its maximum of {limit} connections (max_connections); retry later",
        retry_after=retry_after,
    )
    native = native_door.door.render_error
    answers: dict[ErrorRenderer, bytes] = {}

    def answer(path: str | None) -> bytes:
        render = native if path is None else renderer(path)
        whole = answers.get(render)
        if whole is None:
            body = render(exc)
            head = ["HTTP/1.1 503 Service Unavailable", "content-type: application/json",
                    f"content-length: {len(body)}"]
            head += [f"{name.decode()}: {value.decode()}" for name, value in error_headers(exc)]
            head.append("connection: close")
            whole = answers[render] = ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body
        return whole

    return answer


def request_path(data: bytes) -> str | None:
    """The path of the request line that starts ``data``, None when there is none yet.

    ``POST /v1/messages?beta=true HTTP/1.1`` -> ``/v1/messages``; an absolute-form target
    (RFC 9112 §3.2.2) gives its path too. Only the door is decided by it, so anything
    that is not a plain request line is None (the native shape).
    """
    line, found, _ = data.partition(b"\r\n")
    if not found:
        line, found, _ = data.partition(b"\n")
    parts = line.split(b" ")
    if not found or len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
        return None
    target = parts[1].split(b"?", 1)[0]
    if target[:7].lower() == b"http://" or target[:8].lower() == b"https://":
        slash = target.find(b"/", target.index(b"//") + 2)
        target = target[slash:] if slash >= 0 else b"/"
    if not target.startswith(b"/"):
        return None
    return target.decode("latin-1")


class ConnectionGate:
    """Counts a worker's open connections; past ``limit`` answers 503 and closes."""

    def __init__(self, limit: int, retry_after: float, refusal: Refusal | None = None) -> None:
        self.limit = limit
        self.open = 0
        self.refused = 0
        self._lingering = 0
        self._refusal = refusal if refusal is not None else native_refusal(limit, retry_after)

    def install(self, worker_class: str) -> None:
        """Put the gate in front of hypercorn's connection handler for ``worker_class``."""
        if worker_class == "trio":
            import hypercorn.trio.run as module
        else:
            import hypercorn.asyncio.run as module  # type: ignore[no-redef]
        # The original is kept on the module, so installing twice never wraps a wrapper.
        names = vars(module)
        real = names.get("_chatd_real_tcp_server") or names["TCPServer"]
        names["_chatd_real_tcp_server"] = real
        refuse = self._refuse_trio if worker_class == "trio" else self._refuse_asyncio

        def gated(*args: Any) -> Awaitable[None]:
            # hypercorn awaits what it constructs: TCPServer(...) for asyncio, and
            # partial(TCPServer, ...)(stream) for trio; the connection is the last argument.
            return self._run(real, args, refuse)

        names["TCPServer"] = gated

    async def _run(
        self, real: Callable[..., Awaitable[None]], args: tuple[Any, ...],
        refuse: Callable[[tuple[Any, ...]], Awaitable[None]],
    ) -> None:
        if self.open >= self.limit:
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                logger.warning(
                    "max_connections (%d) reached: refusing connections with 503 "
                    "(%d refused so far)", self.limit, self.refused,
                )
            await refuse(args)
            return
        self.open += 1
        try:
            await real(*args)
        finally:
            self.open -= 1

    async def _answer(
        self, receive: Callable[[], Awaitable[bytes]], send: Callable[[bytes], Awaitable[None]],
        half_close: Callable[[], Awaitable[None]],
    ) -> None:
        """Read the request line (while there is room to linger), answer in its door's
        shape, half-close, and read what else comes for :data:`LINGER_SECS`."""
        if self._lingering >= MAX_LINGERING:
            await send(self._refusal(None))
            return
        self._lingering += 1
        try:
            data = b""
            path = None
            with anyio.move_on_after(LINGER_SECS):
                while path is None and len(data) < REQUEST_LINE_BYTES:
                    more = await receive()
                    if not more:
                        break
                    data += more
                    path = request_path(data)
            await send(self._refusal(path))
            await half_close()
            with anyio.move_on_after(LINGER_SECS):
                while await receive():
                    pass
        finally:
            self._lingering -= 1

    async def _refuse_asyncio(self, args: tuple[Any, ...]) -> None:
        reader, writer = args[-2], args[-1]

        async def send(data: bytes) -> None:
            writer.write(data)

        async def half_close() -> None:
            writer.write_eof()

        try:
            await self._answer(lambda: reader.read(65536), send, half_close)
        except (OSError, RuntimeError):
            pass  # the client is gone already
        finally:
            writer.close()

    async def _refuse_trio(self, args: tuple[Any, ...]) -> None:
        import trio

        stream = args[-1]
        try:
            await self._answer(lambda: stream.receive_some(65536), stream.send_all,
                               stream.send_eof)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()


# -- one worker ------------------------------------------------------------------------


def _hypercorn_config(fd: int, chatd: ChatdConfig, worker_class: str) -> Any:
    from hypercorn.config import Config as HypercornConfig

    hc = HypercornConfig()
    hc.bind = [f"fd://{fd}"]
    hc.workers = 1
    hc.worker_class = worker_class
    hc.include_server_header = False
    # A Logger instance is used as is (no handler of hypercorn's own), so its lines go
    # through the one root handler (server/logs.py) instead of being printed twice.
    hc.errorlog = logging.getLogger("hypercorn.error")
    hc.backlog = 1024
    hc.graceful_timeout = chatd.shutdown_grace_secs + DRAIN_MARGIN_SECS
    return hc


def fix_malloc_threshold() -> None:
    """Keep glibc giving large buffers back to the system when they are freed.

    glibc serves an allocation above ``M_MMAP_THRESHOLD`` (128 KiB at start) with its own
    mapping, returned to the system on free, but raises the threshold to the size of each
    such block freed, up to 32 MiB: after the first 8 MiB request body, every later one
    lands in the heap, and concurrent bodies leave it fragmented and resident long after
    they are gone. Setting the threshold fixes it (and turns the adjustment off). Only
    allocations of a large body's size are affected; Python's small objects live in its
    own arenas. A no-op where the C library is not glibc.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if sys.platform != "linux" or name is None:
        return
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt
        return
    m_mmap_threshold = -3  # <malloc.h>
    mallopt(m_mmap_threshold, MMAP_THRESHOLD)


def run_worker(app: ChatdApp, fd: int, worker_class: str) -> int:
    """Serve ``app`` on the listening socket ``fd`` until a signal has drained it.

    Returns the exit status: 0 after a drain, 1 when the app could not start.
    """
    fix_malloc_threshold()
    chatd = app.config.chatd
    limit = effective_max_connections(chatd, fd_limit())
    gate = ConnectionGate(limit, chatd.default_retry_after_secs,
                          door_refusal(limit, chatd.default_retry_after_secs,
                                       app.error_renderer))
    hc = _hypercorn_config(fd, chatd, worker_class)
    try:
        anyio.run(_serve, app, hc, gate, worker_class, backend=worker_class)
    except Exception as exc:  # startup failed (already logged with its traceback)
        logger.error("chatd could not serve: %s", describe(exc))
        return 1
    return 0


def describe(exc: BaseException) -> str:
    """One line for ``exc``; an exception group (trio nurseries) by its leaf exceptions."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe(e) for e in exc.exceptions)
    return str(exc) or type(exc).__name__


async def _serve(app: ChatdApp, hc: Any, gate: ConnectionGate, worker_class: str) -> None:
    if worker_class == "trio":
        from hypercorn.trio import serve
    else:
        from hypercorn.asyncio import serve  # type: ignore[assignment]
    gate.install(worker_class)
    stop = anyio.Event()

    async def run(scope: anyio.CancelScope) -> None:
        await serve(app, hc, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
        scope.cancel()  # the signal watcher's work is done too

    # hypercorn runs in a child task, not in this one: on asyncio it cancels the task it
    # runs in to stop its own task group, which the host of an anyio task group must not
    # see (it would take it for a cancellation from outside).
    async with anyio.create_task_group() as tg:
        await tg.start(_watch_signals, app, stop)
        tg.start_soon(run, tg.cancel_scope)


async def _watch_signals(
    app: ChatdApp, stop: anyio.Event, *, task_status: anyio.abc.TaskStatus[None]
) -> None:
    """For the worker's whole life: the first signal starts the drain, later ones are
    logged (a second SIGTERM must not kill a draining worker)."""
    grace = app.config.chatd.shutdown_grace_secs
    with anyio.open_signal_receiver(*SIGNALS) as signals:
        _mask(signal.SIG_UNBLOCK)  # what arrived while starting is delivered now
        task_status.started()
        try:
            await _each_signal(signals, app, stop, grace)
        finally:
            # Drained: nothing but the process's own exit ends it now (the receiver's exit
            # restores the default action, which a late SIGTERM would turn into a kill).
            _mask(signal.SIG_BLOCK)


async def _each_signal(
    signals: Any, app: ChatdApp, stop: anyio.Event, grace: float
) -> None:
    async for signum in signals:
        name = signal.Signals(signum).name
        if stop.is_set():
            logger.info("received %s while draining (pid %d); still draining",
                        name, os.getpid())
            continue
        logger.info(
            "received %s (pid %d): no new connections; in-flight calls have %g s "
            "to finish", name, os.getpid(), grace,
        )
        app.begin_shutdown(grace)
        stop.set()


def _mask(how: int) -> None:
    if hasattr(signal, "pthread_sigmask"):  # not on Windows
        signal.pthread_sigmask(how, SIGNALS)


def block_signals() -> None:
    """Hold SIGTERM/SIGINT until a worker's watcher is ready (:func:`_watch_signals`).

    Called before anything is served: a signal in the first moments (a worker still
    importing) would otherwise take the default action and kill it mid-start. The mask is
    inherited by spawned workers, so they are covered from their first instruction.
    """
    _mask(signal.SIG_BLOCK)


# -- several workers -------------------------------------------------------------------


#: Listen backlog of every listening socket (the supervisor's and each worker's own).
BACKLOG = 1024


def spreads_load(sock: socket.socket) -> bool:
    """Whether ``sock`` is in a ``SO_REUSEPORT`` group the kernel balances (Linux)."""
    if not sys.platform.startswith("linux") or not hasattr(socket, "SO_REUSEPORT"):
        return False
    return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT))


def own_listener(family: int, address: tuple[Any, ...]) -> socket.socket:
    """A worker's own listening socket on the supervisor's ``address``, in its
    ``SO_REUSEPORT`` group."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def _worker_main(
    sock: socket.socket | None, worker: Worker, family: int, address: tuple[Any, ...]
) -> None:
    """A spawned worker process: its listening socket (``sock``, or its own on
    ``address``), the app rebuilt from the config file, then served."""
    from .app import create_app
    from .logs import setup

    if sock is None:
        sock = own_listener(family, address)
    config = read_config(Path(worker.config_path) if worker.config_path else None)
    setup(logging.INFO, sys.stderr, json=config.chatd.log_format == "json")
    app = create_app(config, transport=worker.transport)
    if worker.metrics_dir is not None:
        app.metrics_dir = Path(worker.metrics_dir)
    code = run_worker(app, sock.detach(), worker.worker_class)
    logger.info("worker %d stopped", os.getpid())
    sys.exit(code)


def supervise(sock: socket.socket, workers: int, worker: Worker) -> int:
    """Run ``workers`` worker processes on ``sock`` until they have all exited."""
    stopping = False
    processes: list[BaseProcess] = []

    def stop_all() -> None:
        nonlocal stopping
        stopping = True
        for process in processes:
            if process.pid is not None and process.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)

    def forward(signum: int, frame: object) -> None:
        if not stopping:
            logger.info("received %s: draining %d workers",
                        signal.Signals(signum).name, len(processes))
        stop_all()

    # The signals are blocked (block_signals) while the workers start: they inherit the
    # mask and unblock it once their watcher is in place; here, what arrived meanwhile is
    # delivered to ``forward`` once every worker has a pid to forward it to.
    previous = {signum: signal.signal(signum, forward) for signum in SIGNALS}
    shared = tempfile.TemporaryDirectory(prefix="chatd-metrics-")
    worker = replace(worker, metrics_dir=shared.name)
    try:
        context = multiprocessing.get_context("spawn")
        spread = spreads_load(sock)
        family, address = sock.family, sock.getsockname()
        for index in range(workers):
            # The first worker takes over the supervisor's socket (and what waits in its
            # backlog); with SO_REUSEPORT each other one listens on a socket of its own.
            handed = sock if index == 0 or not spread else None
            process: BaseProcess = context.Process(
                target=_worker_main, args=(handed, worker, family, address)
            )
            process.start()
            processes.append(process)
        sock.close()  # only the workers accept from now on
        _mask(signal.SIG_UNBLOCK)
        failed = False
        alive = list(processes)
        while alive:
            for sentinel in wait([p.sentinel for p in alive]):
                process = next(p for p in alive if p.sentinel == sentinel)
                process.join()
                alive.remove(process)
                if process.exitcode != 0:
                    failed = True
                    logger.error("worker %d exited with status %s", process.pid,
                                 process.exitcode)
                if not stopping:
                    logger.error("worker %d stopped unexpectedly; stopping the others",
                                 process.pid)
                    failed = True
                    stop_all()
        return 1 if failed else 0
    finally:
        _mask(signal.SIG_BLOCK)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        shared.cleanup()
