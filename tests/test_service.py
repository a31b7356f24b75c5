"""ChatService streams: what one upstream read produced is handed over as one batch."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import orjson
import pytest

from chatproto import ChatError, ChatRequest, Message, Provider, StreamEnded, TextDelta, Usage
from server.service import ChatService
from transports import MockResponse, MockTransport


def line(content: str, *, done: bool = False) -> bytes:
    obj: dict[str, object] = {"model": "m", "message": {"role": "assistant", "content": content},
                              "done": done}
    if done:
        obj.update(done_reason="stop", prompt_eval_count=3, eval_count=2)
    return orjson.dumps(obj) + b"\n"


def service(chunks: list[bytes]) -> ChatService:
    def handler(request: object) -> MockResponse:
        return MockResponse(200, [("content-type", "application/x-ndjson")], chunks)

    ollama = Provider(name="ollama", api="ollama_chat", base_url="http://ollama.test")
    return ChatService(providers={"ollama": ollama}, tiers={}, transport=MockTransport(handler))


REQUEST = ChatRequest(model="ollama/m", messages=(Message(role="user", content="hi"),),
                      stream=True)


@pytest.mark.anyio
async def test_batches_follow_upstream_reads() -> None:
    svc = service([line("a") + line("b"), line("c"), line("", done=True)])
    async with svc.open_stream(REQUEST) as stream:
        batches = [batch async for batch in stream.batches()]
    assert batches == [
        [TextDelta(text="a"), TextDelta(text="b")],
        [TextDelta(text="c")],
        [StreamEnded(finish_reason="stop", usage=Usage(prompt_tokens=3, completion_tokens=2))],
    ]
    assert stream.ended is not None and stream.latency_ms is not None


@pytest.mark.anyio
async def test_events_and_batches_agree() -> None:
    chunks = [line("a") + line("b") + line("", done=True)]
    async with service(chunks).open_stream(REQUEST) as stream:
        events = [event async for event in stream]
    async with service(chunks).open_stream(REQUEST) as stream:
        batched = [event async for batch in stream.batches() for event in batch]
    assert events == batched
    assert isinstance(events[-1], StreamEnded)


@pytest.mark.anyio
async def test_leaving_the_batch_loop_at_the_end_leaves_nothing_behind() -> None:
    """Relays return from inside the loop at StreamEnded; no generator is left to finalise
    (under trio an abandoned async generator warns, and warnings are errors here)."""
    async with service([line("a"), line("", done=True)]).open_stream(REQUEST) as stream:
        async for batch in stream.batches():
            if isinstance(batch[-1], StreamEnded):
                break
    with pytest.raises(StopAsyncIteration):
        await stream.next_batch()


@pytest.mark.anyio
async def test_stream_without_any_event_times_out_with_a_status() -> None:
    """An upstream that keeps the connection busy with blank lines but never sends an event
    is bounded by the whole-call timeout, so the caller still gets a 504 status."""

    async def blank_lines() -> AsyncIterator[bytes]:
        while True:
            yield b"\n"
            await anyio.sleep(0.02)

    def handler(request: object) -> MockResponse:
        return MockResponse(200, [("content-type", "application/x-ndjson")], blank_lines())

    ollama = Provider(name="ollama", api="ollama_chat", base_url="http://ollama.test")
    svc = ChatService(providers={"ollama": ollama}, tiers={}, transport=MockTransport(handler),
                      timeout_secs=0.2)
    started = anyio.current_time()
    with pytest.raises(ChatError) as info:
        async with svc.open_stream(REQUEST):
            pass
    assert (info.value.type, info.value.status, info.value.provider) == (
        "upstream_timeout", 504, "ollama")
    assert anyio.current_time() - started < 2.0


def _sse(obj: object) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


@pytest.mark.anyio
@pytest.mark.parametrize("dialect", [None, "openai_chat"], ids=["native-door", "openai-door"])
async def test_a_stream_falls_back_the_same_whatever_the_clients_door(dialect: str | None) -> None:
    """An upstream that sends a role-only chunk and then an error has produced nothing a
    client sees: the chain moves on, also when a same-dialect door asked for the
    upstream's own events (RawEvents alone must not commit the stream)."""
    from dataclasses import replace

    from chatproto import PROFILES, Secret

    def handler(request: object) -> MockResponse:
        url = str(getattr(request, "url", ""))
        if "kimi" in url:
            return MockResponse(200, [("content-type", "text/event-stream")], [
                _sse({"choices": [{"index": 0, "delta": {"role": "assistant"}}]}),
                _sse({"error": {"message": "overloaded", "code": 503}})])
        return MockResponse(200, [("content-type", "text/event-stream")], [
            _sse({"choices": [{"index": 0, "delta": {"content": "ok"}}]}),
            _sse({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
            b"data: [DONE]\n\n"])

    rows = {r.name: replace(r, key=Secret(f"sk-{r.name}-000000"),
                            base_url=f"http://{r.name}.test") for r in PROFILES}
    svc = ChatService(providers=rows, tiers={"smart": ("kimi/k2", "openrouter/a/b")},
                      transport=MockTransport(handler))
    request = ChatRequest(model="smart", messages=REQUEST.messages, stream=True,
                          dialect=dialect)
    async with svc.open_stream(request) as stream:
        events = [e async for e in stream]
    assert stream.provider == "openrouter"
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["ok"]


@pytest.mark.anyio
async def test_a_running_stream_may_pause_for_stream_idle_secs_not_the_chains_rest() -> None:
    """The chain's budget bounds the wait for the first event; after it a read may wait
    stream_idle_secs (SPEC §5), however little of the budget was left."""

    async def slow() -> AsyncIterator[bytes]:
        yield line("a")
        await anyio.sleep(0.3)
        yield line("b") + line("", done=True)

    def handler(request: object) -> MockResponse:
        return MockResponse(200, [("content-type", "application/x-ndjson")], slow())

    ollama = Provider(name="ollama", api="ollama_chat", base_url="http://ollama.test")
    svc = ChatService(providers={"ollama": ollama}, tiers={}, transport=MockTransport(handler),
                      timeout_secs=0.1, stream_idle_secs=5.0)
    async with svc.open_stream(REQUEST) as stream:
        events = [e async for e in stream]
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["a", "b"]
