"""Nothing the upstream reported is dropped: Ollama's durations reach Ollama clients,
OpenRouter's cost and usage details reach OpenAI clients, streamed and not; the cache and
reasoning counts any upstream reported reach an OpenAI client as OpenAI's details.

Through a running chatd with the clients' own SDKs (the ``ollama`` package, the ``openai``
SDK) against the fakes of tests/test_front_doors.py, and at the door (the renderers
given what a codec parsed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from openai.types import CompletionUsage
from test_front_doors import TOKEN, stack
from test_front_doors import pytestmark as _front_doors_marks

from chatproto import ChatResponse, StreamEnded, TextDelta, Usage
from chatproto.dialects import ollama as fo
from chatproto.dialects import openai_chat as oc

pytestmark = _front_doors_marks

#: What the fake Ollama reports on its final line (tests/fake_ollama.py).
FAKE_DURATIONS = {"total_duration": 1_000_000, "load_duration": 100_000,
                  "prompt_eval_duration": 200_000, "eval_duration": 700_000}

#: OpenRouter's usage beyond the counts (providers.md §4.2, OR usage-accounting doc).
OPENROUTER_USAGE: dict[str, Any] = {
    "cost": 0.00042, "is_byok": False,
    "cost_details": {"upstream_inference_cost": 0.0004},
    "prompt_tokens_details": {"cached_tokens": 3, "cache_write_tokens": 1, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 2, "image_tokens": 0},
}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_ollama_durations_reach_an_ollama_client(tmp_path: Path, stream: bool) -> None:
    async with stack(tmp_path) as s, s.ollama() as client:
        if stream:
            parts = [p async for p in await client.chat(
                model="ollama/qwen3:4b", messages=[{"role": "user", "content": "hi"}],
                stream=True)]
            last = parts[-1]
        else:
            last = await client.chat(model="ollama/qwen3:4b",
                                     messages=[{"role": "user", "content": "hi"}])
    assert last.done is True
    assert {k: getattr(last, k) for k in FAKE_DURATIONS} == FAKE_DURATIONS
    assert last.eval_count and last.prompt_eval_count


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_ollama_cloud_durations_reach_an_ollama_client(tmp_path: Path,
                                                            stream: bool) -> None:
    """Ollama Cloud is called on /api/generate, a different endpoint from the client's
    /api/chat: the durations still pass, since they are canonical."""
    async with stack(tmp_path) as s, s.ollama() as client:
        if stream:
            parts = [p async for p in await client.chat(
                model="kimi-k2.6:cloud", messages=[{"role": "user", "content": "hi"}],
                stream=True)]
            last = parts[-1]
        else:
            last = await client.chat(model="kimi-k2.6:cloud",
                                     messages=[{"role": "user", "content": "hi"}])
    assert {k: getattr(last, k) for k in FAKE_DURATIONS} == FAKE_DURATIONS


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_openrouter_cost_and_usage_details_reach_an_openai_client(
        tmp_path: Path, stream: bool) -> None:
    async with stack(tmp_path, compat_usage_details=OPENROUTER_USAGE) as s, \
            s.openai() as client:
        messages: Any = [{"role": "user", "content": "hi"}]
        if stream:
            chunks = [c async for c in await client.chat.completions.create(
                model="openrouter/moonshotai/kimi-k2", messages=messages, stream=True,
                stream_options={"include_usage": True})]
            usage: CompletionUsage | None = next(c.usage for c in chunks if c.usage)
        else:
            answer = await client.chat.completions.create(
                model="openrouter/moonshotai/kimi-k2", messages=messages)
            usage = answer.usage
    assert usage is not None
    got = usage.model_dump(exclude_none=True)
    for key, value in OPENROUTER_USAGE.items():
        assert got[key] == value, key
    assert got["total_tokens"] == got["prompt_tokens"] + got["completion_tokens"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_kimi_cached_tokens_reach_an_openai_client_as_openais_details(
        tmp_path: Path, stream: bool) -> None:
    """Kimi may report its cache reads as a top-level ``cached_tokens`` (providers.md
    §6.1): the client gets them where OpenAI's SDK reads them, as well as Kimi's own."""
    async with stack(tmp_path, compat_usage_details={"cached_tokens": 4}) as s, \
            s.openai() as client:
        messages: Any = [{"role": "user", "content": "hi"}]
        if stream:
            chunks = [c async for c in await client.chat.completions.create(
                model="kimi/kimi-for-coding", messages=messages, stream=True,
                stream_options={"include_usage": True})]
            usage: CompletionUsage | None = next(c.usage for c in chunks if c.usage)
        else:
            usage = (await client.chat.completions.create(
                model="kimi/kimi-for-coding", messages=messages)).usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 4


# --- at the door ------------------------------------------------------------------------

def test_anthropic_cache_and_reasoning_counts_reach_an_openai_client() -> None:
    """Across dialects the canonical counts are rendered as OpenAI's details."""
    usage = Usage(prompt_tokens=10, completion_tokens=5, cached_tokens=6,
                  cache_creation_tokens=2, reasoning_tokens=3)
    body = orjson.loads(oc.render_completion(
        ChatResponse(content="x", finish_reason="stop", usage=usage),
        id="c", model="m", created=1))
    assert body["usage"] == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                             "prompt_tokens_details": {"cached_tokens": 6},
                             "completion_tokens_details": {"reasoning_tokens": 3}}


def test_an_upstream_usage_too_deep_to_rewrite_leaves_the_counts() -> None:
    deep: Any = {}
    for _ in range(300):
        deep = {"d": deep}
    raw = {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "x": deep}}
    body = orjson.loads(oc.render_completion(
        ChatResponse(content="x", finish_reason="stop",
                     usage=Usage(prompt_tokens=1, completion_tokens=1), raw=raw,
                     dialect="openai_chat"), id="c", model="m", created=1))
    assert body["usage"] == {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}


def test_chatds_own_measure_is_the_total_duration_when_the_upstream_reported_none() -> None:
    stream = fo.ChatStreamRenderer(model="m", created_at="t")
    stream.event(TextDelta(text="hi"))
    line = orjson.loads(stream.end(StreamEnded(finish_reason="stop",
                                               usage=Usage(prompt_tokens=1)),
                                   total_duration_ns=7).splitlines()[-1])
    assert (line["total_duration"], line["load_duration"]) == (7, 0)
    assert "eval_duration" not in line and "prompt_eval_duration" not in line


async def test_usage_carried_by_a_midstream_error_reaches_the_client_and_the_counters(
        tmp_path: Path) -> None:
    """OpenRouter's error chunk carries the call's usage: an OpenAI client asking for
    usage gets the usage chunk, then the error; the tokens are counted."""
    import openai

    model = "openrouter/moonshotai/kimi-k2"
    async with stack(tmp_path, compat_fail_midstream={"moonshotai/kimi-k2"},
                     compat_usage_on_error=True) as s, s.openai() as client:
        seen: list[Any] = []
        with pytest.raises(openai.APIError) as caught:
            async for c in await client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": "hi"}], stream=True,
                    stream_options={"include_usage": True}):
                seen.append(c)
        async with s.http() as http:
            metrics = (await http.get("/metrics", headers={
                "Authorization": f"Bearer {TOKEN}"})).text
    assert "Provider disconnected" in str(caught.value)
    usage = [c.usage for c in seen if c.usage is not None]
    assert usage and usage[-1].completion_tokens == 1
    assert 'chatd_tokens_total{kind="completion",provider="openrouter"} 1.0' in metrics
