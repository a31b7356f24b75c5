"""A large request body is not kept once it is written upstream, and large bodies between
read and written are bounded together (server/asgi.py ``BodyBudget``).

A call spends most of its life waiting for the upstream's answer; a body kept through
that wait doubles what a call costs (the parsed request and its upstream body: 60
concurrent 8 MiB calls held 2.04 times their size each while waiting, bench/hostile.py
``bulk``). The service hands the request to the transport without keeping it
(server/service.py ``Outbox``), and the h11 transport lets a body over ``FRESH_BODY`` go
once it is written, on a connection of its own (a reused one would need it again for the
stale keep-alive retry). What is still allocated while the upstream holds its answer is
measured with :mod:`tracemalloc`, over a real socket.
"""

from __future__ import annotations

import contextlib
import gc
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import httpx
import orjson
import pytest
from chatd_served import served

from chatproto import ChatRequest, Message, Provider
from server.app import create_app
from server.asgi import BodyBudget
from server.config import load_config
from server.service import ChatService
from transports import H11Transport
from transports._h11 import FRESH_BODY

pytestmark = pytest.mark.anyio

SIZE = 4 * FRESH_BODY


class Upstream:
    """Ollama's ``/api/chat`` on 127.0.0.1:0 that reads a request (counting its body's
    bytes, keeping none), says so, and answers only when released."""

    def __init__(self) -> None:
        self.received = anyio.Event()
        self.release = anyio.Event()
        self.accepted = 0
        self.large = 0
        """Large requests read so far."""
        self.port = 0

    async def connection(self, stream: anyio.abc.SocketStream) -> None:
        self.accepted += 1
        async with stream:
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                await self._serve(stream)

    async def _serve(self, stream: anyio.abc.SocketStream) -> None:
        data = b""
        while True:
            while b"\r\n\r\n" not in data:
                more = await stream.receive()
                data += more
            head, _, data = data.partition(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            left = length - len(data)
            data = b""
            while left > 0:
                left -= len(await stream.receive())
            if length >= SIZE:
                self.large += 1
                self.received.set()
                await self.release.wait()
            body = orjson.dumps({
                "model": "m", "created_at": "2026-01-01T00:00:00Z", "done": True,
                "message": {"role": "assistant", "content": "read it"},
                "done_reason": "stop", "prompt_eval_count": 1, "eval_count": 1,
            }) + b"\n"
            await stream.send(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\n"
                              b"content-length: %d\r\n\r\n%s" % (len(body), body))


@asynccontextmanager
async def upstream() -> AsyncIterator[Upstream]:
    fake = Upstream()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    fake.port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, fake.connection)
        yield fake
        tg.cancel_scope.cancel()


def request(content: str, *, stream: bool) -> ChatRequest:
    return ChatRequest(model="ollama/m", messages=(Message(role="user", content=content),),
                       stream=stream)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_a_large_body_is_not_held_while_the_upstream_works(
    stream: bool, anyio_backend: str
) -> None:
    text = "x" * SIZE  # the parsed request: the one copy a call must keep
    async with upstream() as fake, H11Transport() as transport:
        provider = Provider(name="ollama", api="ollama_chat",
                            base_url=f"http://127.0.0.1:{fake.port}")
        svc = ChatService(providers={"ollama": provider}, tiers={}, transport=transport)
        held: list[int] = []

        async def call() -> None:
            if stream:
                async with svc.open_stream(request(text, stream=True)) as events:
                    async for _ in events:
                        pass
            else:
                await svc.chat(request(text, stream=False))

        tracemalloc.start()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                with anyio.fail_after(10):
                    await fake.received.wait()
                gc.collect()
                held.append(tracemalloc.get_traced_memory()[0])
                fake.release.set()
        finally:
            tracemalloc.stop()
    # Built after tracing began, the upstream body (SIZE bytes and more) would count.
    assert held[0] < SIZE // 4, f"{held[0]} bytes still allocated while the upstream works"


async def test_a_large_body_goes_on_a_connection_of_its_own(anyio_backend: str) -> None:
    """An idle pooled connection is not used for it (the stale retry would need the body
    again); a small body after it reuses a pooled connection as before."""
    async with upstream() as fake, H11Transport() as transport:
        fake.release.set()
        provider = Provider(name="ollama", api="ollama_chat",
                            base_url=f"http://127.0.0.1:{fake.port}")
        svc = ChatService(providers={"ollama": provider}, tiers={}, transport=transport)
        await svc.chat(request("small", stream=False))
        await svc.chat(request("x" * SIZE, stream=False))
        assert fake.accepted == 2
        await svc.chat(request("small", stream=False))
        assert fake.accepted == 2


# -- the budget of large bodies between read and written ----------------------------------


async def test_the_budget_admits_in_order_within_its_capacity(anyio_backend: str) -> None:
    budget = BodyBudget(100, wait_secs=10)
    first = await budget.acquire(60)
    order: list[str] = []

    async def take(name: str, size: int) -> None:
        release = await budget.acquire(size)
        order.append(name)
        release()

    async with anyio.create_task_group() as tg:
        tg.start_soon(take, "big", 60)
        await anyio.sleep(0.05)
        tg.start_soon(take, "small", 10)  # it would fit, but it came later: FIFO
        await anyio.sleep(0.05)
        assert order == [] and budget.in_use == 60  # the small one did not jump the queue
        first()
        first()  # a second release changes nothing
    assert sorted(order) == ["big", "small"]  # both fit once the first went: both in
    assert budget.in_use == 0


async def test_a_body_larger_than_the_budget_goes_alone(anyio_backend: str) -> None:
    budget = BodyBudget(100, wait_secs=10)
    release = await budget.acquire(500)
    assert budget.in_use == 500
    release()
    assert budget.in_use == 0


async def test_a_wait_past_its_bound_goes_ahead(anyio_backend: str) -> None:
    """The budget bounds memory; it never refuses a call, nor stalls one for long behind
    an upstream that reads slowly."""
    budget = BodyBudget(100, wait_secs=0.1)
    held = await budget.acquire(100)
    with anyio.fail_after(2):
        late = await budget.acquire(50)
    assert budget.in_use == 150
    late()
    held()
    assert budget.in_use == 0


async def test_a_cancelled_waiter_gives_its_room_to_the_next(anyio_backend: str) -> None:
    budget = BodyBudget(100, wait_secs=10)
    held = await budget.acquire(100)
    got: list[int] = []

    async def take(size: int) -> None:
        got.append(size)
        (await budget.acquire(size))()

    scope = anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_cancelled, budget, scope)
        await anyio.sleep(0.05)
        tg.start_soon(take, 80)
        await anyio.sleep(0.05)
        scope.cancel()  # the first in line leaves; the next gets the room once it is free
        held()
    assert got == [80] and budget.in_use == 0


async def _cancelled(budget: BodyBudget, scope: anyio.CancelScope) -> None:
    with scope:
        await budget.acquire(90)


async def test_a_large_body_gives_back_its_room_once_written_not_when_answered(
    anyio_backend: str
) -> None:
    """Room for one large body: a second large call reaches the upstream while the first
    still waits for its answer (its request written), not after it."""
    async with upstream() as fake:
        config = load_config(f'[chatd]\nollama_url = "http://127.0.0.1:{fake.port}"\n'
                             + "".join(f'[chatd.providers.{name}]\nkey_file = "/nonexistent"\n'
                                       for name in ("ollama_cloud", "openrouter", "opencode",
                                                    "kimi")))
        app = create_app(config, environ={})
        app.body_budget = BodyBudget(SIZE * 3 // 2, wait_secs=60)
        body = orjson.dumps({"model": "ollama/m", "messages": [
            {"role": "user", "content": "x" * SIZE}]})
        statuses: list[int] = []
        async with served(app) as port, httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=30
        ) as client:

            async def call() -> None:
                statuses.append((await client.post("/v1/chat", content=body)).status_code)

            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                tg.start_soon(call)
                with anyio.fail_after(10):
                    while fake.large < 2:
                        await anyio.sleep(0.02)
                assert app.body_budget.in_use == 0  # both written, both answers pending
                fake.release.set()
    assert statuses == [200, 200]
