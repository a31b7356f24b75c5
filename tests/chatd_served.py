"""Serve a real chatd in-process for tests: hypercorn on 127.0.0.1:0, the running backend.

Strategy: the socket is bound and listening before hypercorn starts, so the port is known
at once and early connections wait in the backlog. The worker matches the test's anyio
backend (``hypercorn.trio.serve`` or ``hypercorn.asyncio.serve``), and hypercorn runs the
app's real lifespan (its transport is opened and closed as in production). Serving in the
test's own event loop puts chatd, its fake upstreams and the client on one clock, so a
test can compare ``anyio.current_time()`` readings taken on either side.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import anyio
import sniffio

from server.app import ChatdApp

__all__ = ["served"]


@asynccontextmanager
async def served(app: ChatdApp) -> AsyncIterator[int]:
    """Serve ``app`` until the block ends; yield its port."""
    from hypercorn.config import Config as HypercornConfig

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    hc = HypercornConfig()
    hc.bind = [f"fd://{sock.detach()}"]
    hc.errorlog = logging.getLogger("hypercorn.error")
    hc.graceful_timeout = 1
    if sniffio.current_async_library() == "trio":
        from hypercorn.trio import serve
    else:
        from hypercorn.asyncio import serve  # type: ignore[assignment]
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(serve, app, hc, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
        try:
            yield port
        finally:
            stop.set()
