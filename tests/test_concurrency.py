"""SPEC §5 ``max_concurrency`` / ``queue_timeout_secs``: calls in flight to one provider.

Through the whole app (the ASGI interface, the real codecs) against in-memory upstreams
that hold each call until the test lets it go, on asyncio and trio. The upstream records
how many calls it holds at once, so a bound that does not hold fails here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import anyio
import mock_stack
import orjson
import pytest
from mock_stack import app_over
from test_server import (
    Result,
    assert_error,
    call,
    ollama_answer,
    ollama_lines,
    openai_answer,
    running,
)

from chatproto import ChatRequest, HTTPRequest, Message
from server.app import ChatdApp
from transports import MockResponse, MockTransport

KEY = "sk-kimi-concurrency-0123456789"


def config(ollama: str = "", kimi: str = "") -> str:
    return mock_stack.config(kimi=kimi, tables=f"[chatd.providers.ollama]\n{ollama}")


class Upstream:
    """Holds every call until :meth:`release` lets the oldest one go; counts concurrency."""

    def __init__(self, answer: Callable[[HTTPRequest], MockResponse]) -> None:
        self.answer = answer
        self.holding = 0
        self.most = 0
        self.seen: list[str] = []
        self._gates: list[anyio.Event] = []
        self.arrived = anyio.Event()

    async def __call__(self, request: HTTPRequest) -> MockResponse:
        self.holding += 1
        self.most = max(self.most, self.holding)
        self.seen.append(orjson.loads(request.body)["messages"][0]["content"])
        gate = anyio.Event()
        self._gates.append(gate)
        self.arrived.set()
        try:
            await gate.wait()
        finally:
            self.holding -= 1
        return self.answer(request)

    async def wait_for(self, n: int) -> None:
        """Until ``n`` calls have reached the upstream."""
        with anyio.fail_after(5):
            while len(self.seen) < n:
                self.arrived = anyio.Event()
                await self.arrived.wait()

    def release(self) -> None:
        self._gates.pop(0).set()


def app_for(upstream: Upstream, **tables: str) -> ChatdApp:
    return app_over(MockTransport(upstream), config(**tables), {"KIMI_API_KEY": KEY})


def body(model: str, text: str, **fields: object) -> bytes:
    return orjson.dumps({"model": model, "messages": [{"role": "user", "content": text}],
                         **fields})


async def settle() -> None:
    """Let every runnable task reach its next wait."""
    for _ in range(20):
        await anyio.sleep(0)


def samples(result: Result) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in result.body.decode().splitlines() if line and not line.startswith("#")
    }


def by_host(request: HTTPRequest) -> MockResponse:
    return openai_answer("from kimi") if request.host == "kimi.test" else ollama_answer("hi")


@pytest.mark.anyio
async def test_callers_wait_in_order_and_are_served() -> None:
    """Bound 1: three callers, one upstream call at a time, answered in arrival order."""
    upstream = Upstream(by_host)
    app = app_for(upstream, ollama="max_concurrency = 1\nqueue_timeout_secs = 30")
    results: dict[str, Result] = {}

    async def one(text: str) -> None:
        results[text] = await call(app, "POST", "/v1/chat", body("ollama/m", text))

    async with running(app), anyio.create_task_group() as tg:
        for text in ("first", "second", "third"):
            tg.start_soon(one, text)
            await settle()  # each caller is queued before the next arrives
        await upstream.wait_for(1)
        await settle()
        assert upstream.seen == ["first"]  # the others wait for the slot
        for n in (2, 3):
            upstream.release()
            await upstream.wait_for(n)
        upstream.release()
    assert upstream.seen == ["first", "second", "third"]
    assert upstream.most == 1
    assert {t: r.status for t, r in results.items()} == dict.fromkeys(results, 200)


@pytest.mark.anyio
async def test_queue_timeout_is_503_with_retry_after_and_the_holder_finishes() -> None:
    upstream = Upstream(by_host)
    app = app_for(upstream, ollama="max_concurrency = 1\nqueue_timeout_secs = 0.2")
    results: dict[str, Result] = {}

    async def one(text: str) -> None:
        results[text] = await call(app, "POST", "/v1/chat", body("ollama/m", text))

    async with running(app):
        async with anyio.create_task_group() as tg:
            tg.start_soon(one, "holder")
            await upstream.wait_for(1)
            late = await call(app, "POST", "/v1/chat", body("ollama/m", "late"))
            upstream.release()
        metrics = samples(await call(app, "GET", "/metrics"))
    error = assert_error(late, 503, "upstream_overloaded", provider="ollama")
    assert "max_concurrency" in error["message"]
    assert late.headers["retry-after"] == "2"  # chatd.default_retry_after_secs
    assert results["holder"].status == 200
    assert upstream.seen == ["holder"]  # the one that timed out never reached it
    assert metrics['chatd_upstream_saturated_total{provider="ollama"}'] == 1
    assert metrics['chatd_upstream_requests_total{provider="ollama"}'] == 1


@pytest.mark.anyio
async def test_queue_timeout_zero_refuses_at_once() -> None:
    upstream = Upstream(by_host)
    app = app_for(upstream, ollama="max_concurrency = 1\nqueue_timeout_secs = 0")
    async with running(app), anyio.create_task_group() as tg:
        tg.start_soon(call, app, "POST", "/v1/chat", body("ollama/m", "holder"))
        await upstream.wait_for(1)
        with anyio.fail_after(1):
            late = await call(app, "POST", "/v1/chat", body("ollama/m", "late"))
        upstream.release()
    assert_error(late, 503, "upstream_overloaded", provider="ollama")


@pytest.mark.anyio
async def test_a_saturated_chain_target_falls_through_at_once() -> None:
    """``smart`` = kimi, then ollama. Kimi is full: the second call goes to ollama without
    waiting out kimi's (long) queue timeout, and the move is counted as a fallback."""
    upstream = Upstream(by_host)
    app = app_for(upstream, kimi="max_concurrency = 1\nqueue_timeout_secs = 60")
    results: dict[str, Result] = {}

    async def one(text: str) -> None:
        results[text] = await call(app, "POST", "/v1/chat", body("smart", text))

    async with running(app):
        async with anyio.create_task_group() as tg:
            tg.start_soon(one, "holder")
            await upstream.wait_for(1)
            tg.start_soon(one, "second")
            await upstream.wait_for(2)  # reached ollama while kimi still holds the first
            upstream.release()
            upstream.release()
        metrics = samples(await call(app, "GET", "/metrics"))
    assert results["holder"].json()["provider"] == "kimi"
    assert results["second"].json()["provider"] == "ollama"
    assert results["second"].json()["content"] == "hi"
    assert metrics['chatd_fallbacks_total{from="kimi",to="ollama"}'] == 1
    assert metrics['chatd_upstream_saturated_total{provider="kimi"}'] == 1
    assert metrics['chatd_upstream_requests_total{provider="kimi"}'] == 1


@pytest.mark.anyio
async def test_a_stream_holds_its_slot_until_it_ends() -> None:
    release = anyio.Event()
    first_sent = anyio.Event()
    calls = 0

    async def paced() -> AsyncIterator[bytes]:
        first, *rest = ollama_lines("a", "b")
        yield first
        first_sent.set()
        await release.wait()
        for line in rest:
            yield line

    def handler(request: HTTPRequest) -> MockResponse:
        nonlocal calls
        calls += 1
        if calls > 1:
            return ollama_answer("next")
        return MockResponse(200, [("content-type", "application/x-ndjson")], paced())

    app = app_over(MockTransport(handler),
                   config(ollama="max_concurrency = 1\nqueue_timeout_secs = 0.1"), {})
    results: dict[str, Result] = {}

    async def stream() -> None:
        results["stream"] = await call(app, "POST", "/v1/chat",
                                       body("ollama/m", "s", stream=True))

    async with running(app):
        async with anyio.create_task_group() as tg:
            tg.start_soon(stream)
            with anyio.fail_after(5):
                await first_sent.wait()
            during = await call(app, "POST", "/v1/chat", body("ollama/m", "during"))
            release.set()
        after = await call(app, "POST", "/v1/chat", body("ollama/m", "after"))
    assert_error(during, 503, "upstream_overloaded")
    assert [line.get("content") for line in results["stream"].lines()[:2]] == ["a", "b"]
    assert results["stream"].lines()[-1]["done"] is True
    assert after.status == 200 and after.json()["content"] == "next"
    assert calls == 2


@pytest.mark.anyio
async def test_a_caller_that_goes_away_while_queued_gives_up_its_place() -> None:
    """A queued call cancelled (its client gone) leaves the queue: the next is served."""
    upstream = Upstream(by_host)
    app = app_for(upstream, ollama="max_concurrency = 1\nqueue_timeout_secs = 30")
    answered: list[str] = []

    def request(text: str) -> ChatRequest:
        return ChatRequest(model="ollama/m", messages=(Message(role="user", content=text),))

    async with running(app):
        svc = app.service()

        async def served(text: str) -> None:
            result = await svc.chat(request(text))
            answered.append(f"{text}:{result.response.content}")

        async with anyio.create_task_group() as tg:
            tg.start_soon(served, "holder")
            await upstream.wait_for(1)
            async with anyio.create_task_group() as quitter:
                quitter.start_soon(served, "quitter")
                await settle()  # queued behind the holder
                quitter.cancel_scope.cancel()
            tg.start_soon(served, "next")
            await settle()
            upstream.release()
            await upstream.wait_for(2)
            upstream.release()
    assert upstream.seen == ["holder", "next"]
    assert upstream.most == 1
    assert answered == ["holder:hi", "next:hi"]
