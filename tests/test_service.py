"""ChatService streams: what one upstream read produced is handed over as one batch."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import orjson
import pytest

from chatproto import ChatError, ChatRequest, Message, Provider, StreamEnded, TextDelta, Usage
from chatproto import mask_secret as _mask
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


KEY = "sk-SECRETKIMI1234"


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (f"invalid key {KEY} given", "invalid key *** given"),
        (f"{KEY} and {KEY}", "*** and ***"),
        ("x" * 20 + "Bearer sk-SECRETK…", "x" * 20 + "Bearer ***…"),  # clipped by a codec
        ("ends with sk-S", "ends with ***"),
        ("ends with sk-", "ends with sk-"),  # three characters: the public prefix
        ("no key here", "no key here"),
    ],
    ids=["whole", "twice", "clipped-with-ellipsis", "clipped-four", "three-left", "none"],
)
def test_key_masked_even_when_a_clip_cut_it(message: str, expected: str) -> None:
    assert _mask(message, KEY) == expected


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
