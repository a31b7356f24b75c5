"""A slow Ollama for shutdown and limit tests: the model name says how long it takes.

``POST /api/chat`` with model ``wait-S`` answers after S seconds (``"stream": false``), or
streams one line every :data:`STEP` seconds for S seconds and then its ``done`` line.
Model ``hang`` streams one line and then nothing, for ever. Ollama's wire format
(providers.md OL §1.4, §1.5), on :class:`fake_ollama.FakeServer`'s plumbing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import anyio.abc
import anyio.from_thread
import h11
from fake_ollama import FakeServer, in_thread

__all__ = ["STEP", "PacedOllama", "paced_ollama", "wait_received"]

#: Seconds between two streamed lines.
STEP = 0.25


def _line(content: str, *, done: bool = False) -> bytes:
    obj: dict[str, object] = {"model": "m", "created_at": "2025-01-01T00:00:00Z",
                              "message": {"role": "assistant", "content": content},
                              "done": done}
    if done:
        obj.update(done_reason="stop", prompt_eval_count=3, eval_count=4)
    return json.dumps(obj).encode() + b"\n"


class PacedOllama(FakeServer):
    def __init__(self) -> None:
        super().__init__()
        self.received = 0
        """Requests taken so far: a test waits on it, not on a guess of how long the calls
        it started take to arrive on a busy machine."""

    async def _respond(self, conn: h11.Connection, stream: anyio.abc.SocketStream,
                       request: h11.Request, body: bytes) -> None:
        self.received += 1
        payload = json.loads(body)
        model = str(payload.get("model", ""))
        if payload.get("stream") is False:
            await anyio.sleep(float(model.removeprefix("wait-")))
            await self._whole(conn, stream, 200, _line("slow answer", done=True))
            return
        await self._head(conn, stream, 200, [("content-type", "application/x-ndjson")])
        await self._chunk(conn, stream, _line("first "))
        if model == "hang":
            await self._until_closed(stream)
            return
        steps = round(float(model.removeprefix("wait-")) / STEP)
        for i in range(steps):
            await anyio.sleep(STEP)
            await self._chunk(conn, stream, _line(f"{i} "))
        await self._chunk(conn, stream, _line("", done=True))
        await self._send(conn, stream, h11.EndOfMessage())


def wait_received(fake: PacedOllama, count: int, timeout: float = 20.0) -> None:
    """Block until ``fake`` has taken ``count`` requests in all (AssertionError after
    ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while fake.received < count:
        assert time.monotonic() < deadline, f"{fake.received} of {count} requests arrived"
        time.sleep(0.02)


@contextmanager
def paced_ollama() -> Iterator[PacedOllama]:
    """A :class:`PacedOllama` serving from a thread of this process."""
    with in_thread(PacedOllama()) as fake:
        yield fake
