"""The ``/v1/messages`` door driven by the official ``anthropic`` SDK, for every upstream family.

A real chatd in front of a fake of every upstream family (:mod:`anthropic_stack`: local
Ollama, Ollama Cloud, OpenRouter and Kimi, and OpenCode Zen's ``claude-*`` models on a fake
Anthropic Messages server as strict as the real API about what it is sent). The client is
``anthropic.AsyncAnthropic`` with ``max_retries=0`` (one test counts the SDK's retries), its
key sent as ``x-api-key`` (and once as a Bearer token).

Each family is reached plain and streamed (``messages.stream`` and ``get_final_message``),
with tools over two turns, thinking, images; errors come back as the SDK's exceptions;
``count_tokens`` and ``models.list`` answer in the SDK's types.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from anthropic._constants import ANTHROPIC_API_VERSION
from anthropic_stack import FAMILIES, KEYS, TOKEN, Family, Stack, stack
from fake_anthropic import SIGNATURE, THINKING
from fake_ollama import words

pytestmark = [
    pytest.mark.anyio,
    # The SDK leaves its httpx generators to the garbage collector when a stream ends
    # early; under trio that is reported as a ResourceWarning about the SDK's generators.
    pytest.mark.filterwarnings(
        "ignore:Async generator '(anthropic|httpx2?|httpcore)[0-9]*[.]"
        ".*' was garbage collected:ResourceWarning"),
]

PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAA"
       "AABJRU5ErkJggg==")
TOOL = {"name": "get_weather", "description": "The weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                         "required": ["city"]}}
ARGUMENTS = {"city": "Tōkyō", "days": 3}


def upstream_messages(s: Stack, family: Family) -> list[dict[str, Any]]:
    """The last upstream request's messages; Ollama Cloud's ``/api/generate`` (chatd's call
    without tools, SPEC §2) flattens them into ``system`` and ``prompt``, read back here as
    a system and a user message."""
    [body] = s.bodies(family.provider)[-1:]
    assert body["model"] == family.upstream_model
    if "messages" not in body:
        assert s.cloud.calls[-1].path == "/api/generate"
        flat = [{"role": "system", "content": body["system"]}] if "system" in body else []
        user: dict[str, Any] = {"role": "user", "content": body["prompt"]}
        if "images" in body:
            user["images"] = body["images"]
        return [*flat, user]
    return list(body["messages"])


# --- plain and streamed -----------------------------------------------------------------

@pytest.mark.parametrize("name", list(FAMILIES))
async def test_plain(tmp_path: Path, name: str) -> None:
    family = FAMILIES[name]
    async with stack(tmp_path) as s, s.client() as client:
        message = await client.messages.create(
            model=family.model, max_tokens=64, system="Be brief.",
            messages=[{"role": "user", "content": "Say hello in three languages"}],
            extra_body={"temperature": 0.2})  # this SDK no longer types sampling fields
    assert message.type == "message" and message.role == "assistant"
    assert message.model == family.model
    assert message.id.startswith("msg_")
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == family.reply  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == len(words(family.reply))
    messages = upstream_messages(s, family)
    body = s.bodies(family.provider)[-1]
    if family.provider == "opencode":
        # The same dialect: the client's body as sent, only the model rewritten.
        assert body["system"] == "Be brief." and body["max_tokens"] == 64
        assert messages == [{"role": "user", "content": "Say hello in three languages"}]
        assert s.claude.calls[-1].path == "/zen/v1/messages"
        assert s.claude.calls[-1].headers["authorization"] == f"Bearer {KEYS['opencode']}"
        # The client's version, forwarded (this SDK sends a newer one than 2023-06-01).
        assert s.claude.calls[-1].headers["anthropic-version"] == ANTHROPIC_API_VERSION
    else:
        assert messages[0] == {"role": "system", "content": "Be brief."}
        assert "Say hello in three languages" in messages[1]["content"]
        options = body.get("options", body)
        assert options["temperature"] == 0.2


@pytest.mark.parametrize("name", list(FAMILIES))
async def test_streamed_with_get_final_message(tmp_path: Path, name: str) -> None:
    family = FAMILIES[name]
    async with stack(tmp_path) as s, s.client(bearer=True) as client, client.messages.stream(
        model=family.model, max_tokens=64,
        messages=[{"role": "user", "content": "Say hello"}],
    ) as stream:
        texts = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert texts == words(family.reply)  # every delta, in order
    assert final.model == family.model
    assert [b.type for b in final.content] == ["text"]
    assert final.content[0].text == family.reply  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == len(words(family.reply))
    assert final.usage.input_tokens > 0
    assert s.bodies(family.provider)[-1].get("stream", True) is True


async def test_same_dialect_stream_relays_the_upstream_events(tmp_path: Path) -> None:
    """OpenCode's claude-*: thinking with its signature, cache usage and OpenCode's
    trailing cost ping are the upstream's; only the model is rewritten."""
    async with stack(tmp_path) as s, s.client() as client, client.messages.stream(
        model="opencode/claude-sonnet-4-6", max_tokens=4096,
        thinking={"type": "enabled", "budget_tokens": 2048},
        system=[{"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "think"}],
    ) as stream:
        final = await stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"]
    thinking = final.content[0]
    assert (thinking.thinking, thinking.signature) == (THINKING, SIGNATURE)  # type: ignore[union-attr]
    assert final.usage.cache_read_input_tokens == 100
    assert final.usage.cache_creation_input_tokens == 20
    assert final.id == "msg_fake_01"  # the upstream's own id: relayed, not rebuilt
    body = s.claude.requests[-1]
    assert body["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}


async def test_kimis_anthropic_endpoint_as_a_configured_provider(tmp_path: Path) -> None:
    """``api = "anthropic_messages"`` with Kimi's base URL: ``/v1/messages`` under it, the
    key as Bearer, the client's User-Agent forwarded (Kimi admits only coding agents,
    SPEC §2), the client's body with only the model rewritten."""
    async with stack(tmp_path) as s, s.client() as client:
        message = await client.messages.create(
            model="kimi_anthropic/kimi-for-coding", max_tokens=32,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"User-Agent": "claude-cli/2.1.332 (external, sdk-cli)"})
    assert message.content[0].text == FAMILIES["opencode"].reply  # type: ignore[union-attr]
    call = s.claude.calls[-1]
    assert call.path == "/coding/v1/messages"
    assert call.headers["authorization"] == f"Bearer {KEYS['opencode']}"
    assert call.headers["user-agent"] == "claude-cli/2.1.332 (external, sdk-cli)"
    assert s.claude.requests[-1] == {"model": "kimi-for-coding", "max_tokens": 32,
                                     "messages": [{"role": "user", "content": "hi"}],
                                     "stream": False}


# --- tools over two turns -------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("name", list(FAMILIES))
async def test_tools_over_two_turns(tmp_path: Path, name: str, stream: bool) -> None:
    family = FAMILIES[name]
    question: Any = {"role": "user", "content": "What is the weather in Tōkyō?"}
    async with stack(tmp_path, local_tool_arguments=ARGUMENTS, compat_tool_arguments=ARGUMENTS,
                     claude_tool_arguments=ARGUMENTS) as s, s.client() as client:
        kwargs: dict[str, Any] = {"model": family.model, "max_tokens": 256, "tools": [TOOL],
                                  "tool_choice": {"type": "auto"}}
        if stream:
            async with client.messages.stream(messages=[question], **kwargs) as st:
                first = await st.get_final_message()
        else:
            first = await client.messages.create(messages=[question], **kwargs)
        assert first.stop_reason == "tool_use"
        [call] = [b for b in first.content if b.type == "tool_use"]
        assert call.name == "get_weather" and call.input == ARGUMENTS
        assert call.id
        result: Any = {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": call.id, "content": "12°C, clear"}]}
        second = await client.messages.create(
            messages=[question, {"role": "assistant", "content": first.content}, result],
            **kwargs)
    assert [b.type for b in second.content] == ["text"]
    assert second.stop_reason == "end_turn"
    history = upstream_messages(s, family)
    if family.provider == "opencode":
        assert history[1]["content"][-1]["id"] == call.id
        assert history[2]["content"][0] == {"type": "tool_result", "tool_use_id": call.id,
                                            "content": "12°C, clear"}
    else:
        # The id the client answered with is the one the upstream gave the call.
        assert history[-2]["role"] == "assistant"
        [upstream_call] = history[-2]["tool_calls"]
        assert upstream_call["function"]["name"] == "get_weather"
        assert history[-1]["role"] == "tool" and history[-1]["content"] == "12°C, clear"
        assert history[-1]["tool_call_id"] == call.id
        if family.provider in ("ollama", "ollama_cloud"):
            assert history[-1]["tool_name"] == "get_weather"
        else:
            assert upstream_call["id"] == call.id
        assert s.bodies(family.provider)[-1]["tools"] == [{"type": "function", "function": {
            "name": "get_weather", "description": "The weather in a city",
            "parameters": TOOL["input_schema"]}}]


# --- thinking -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["ollama", "opencode"])
async def test_thinking_and_back_on_the_next_turn(tmp_path: Path, name: str) -> None:
    """Thinking comes back as a thinking block, and goes upstream again on the next turn
    (Ollama's ``thinking`` field; the same dialect with its signature)."""
    family = FAMILIES[name]
    async with stack(tmp_path) as s, s.client() as client:
        kwargs: dict[str, Any] = {"model": family.model, "max_tokens": 4096,
                                  "thinking": {"type": "enabled", "budget_tokens": 2048}}
        question: Any = {"role": "user", "content": "Think first"}
        async with client.messages.stream(messages=[question], **kwargs) as stream:
            first = await stream.get_final_message()
        assert [b.type for b in first.content] == ["thinking", "text"]
        await client.messages.create(messages=[
            question, {"role": "assistant", "content": first.content},
            {"role": "user", "content": "And now?"}], **kwargs)
    history = upstream_messages(s, family)
    if name == "ollama":
        assert first.content[0].thinking == "Let me think."  # type: ignore[union-attr]
        assert s.local.requests[0]["think"] is True
        assert history[1]["role"] == "assistant"
        assert history[1]["thinking"] == "Let me think."
    else:
        assert first.content[0].signature == SIGNATURE  # type: ignore[union-attr]
        assert history[1]["content"][0] == {"type": "thinking", "thinking": THINKING,
                                            "signature": SIGNATURE}


async def test_thinking_goes_back_to_kimi_as_reasoning_content(tmp_path: Path) -> None:
    async with stack(tmp_path) as s, s.client() as client:
        await client.messages.create(
            model="kimi/kimi-for-coding", max_tokens=256, messages=[
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "earlier reasoning", "signature": ""},
                    {"type": "text", "text": "earlier answer"}]},
                {"role": "user", "content": "next"}])
    [body] = s.compat.bodies("kimi")
    assert body["messages"][1] == {"role": "assistant", "content": "earlier answer",
                                   "reasoning_content": "earlier reasoning"}


# --- images -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(FAMILIES))
async def test_images(tmp_path: Path, name: str) -> None:
    family = FAMILIES[name]
    url = "https://example.com/cat.jpg"
    remote = name in ("openrouter", "opencode")  # Ollama takes base64 only
    images: list[Any] = [{"type": "image", "source": {"type": "base64",
                                                      "media_type": "image/png", "data": PNG}}]
    if remote:
        images.append({"type": "image", "source": {"type": "url", "url": url}})
    async with stack(tmp_path) as s, s.client() as client:
        await client.messages.create(model=family.model, max_tokens=64, messages=[{
            "role": "user", "content": [{"type": "text", "text": "What is in it?"}, *images]}])
        if not remote:
            # SPEC §1: a target whose API cannot carry the request is refused, clearly.
            with pytest.raises(anthropic.BadRequestError) as caught:
                await client.messages.create(model=family.model, max_tokens=64, messages=[{
                    "role": "user", "content": [{"type": "image", "source": {
                        "type": "url", "url": url}}]}])
            assert "base64" in caught.value.message
    [message] = upstream_messages(s, family)
    if family.provider == "opencode":
        assert [b["source"] for b in message["content"][1:]] == [
            {"type": "base64", "media_type": "image/png", "data": PNG},
            {"type": "url", "url": url}]
    elif family.provider in ("ollama", "ollama_cloud"):
        assert message["images"] == [PNG]
    else:
        assert message["content"][1:] == [
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            {"type": "image_url", "image_url": {"url": url}}]


# --- errors -----------------------------------------------------------------------------

LOCAL_FAILURES = {"busy:4b": (429, "slow down", {"Retry-After": "7"}),
                  "refused:4b": (400, "bad option", {}),
                  "locked:4b": (401, "unauthorized", {})}
CLAUDE_FAILURES = {"claude-busy": (529, "overloaded_error", "Overloaded", {}),
                   "claude-limited": (429, "rate_limit_error", "Number of requests",
                                      {"retry-after": "13"})}

SDK_ERRORS = [
    # (model, exception, status, Anthropic's type, Retry-After, x-should-retry)
    ("ollama/busy:4b", anthropic.RateLimitError, 429, "rate_limit_error", "7", "true"),
    ("opencode/claude-limited", anthropic.RateLimitError, 429, "rate_limit_error", "13",
     "true"),
    ("opencode/claude-busy", anthropic.InternalServerError, 503, "overloaded_error", "2",
     "true"),
    ("ollama/refused:4b", anthropic.BadRequestError, 400, "invalid_request_error", None,
     "false"),
    ("ollama/", anthropic.BadRequestError, 400, "invalid_request_error", None, "false"),
    ("zzz:cloud", anthropic.InternalServerError, 502, "api_error", None, "false"),
    ("ollama/no-such-model:1b", anthropic.InternalServerError, 502, "api_error", None,
     "false"),
    ("ollama/locked:4b", anthropic.InternalServerError, 502, "api_error", None, "false"),
]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(("model", "exc_type", "status", "kind", "retry_after", "should"),
                         SDK_ERRORS, ids=[f"{e[2]}-{e[0]}" for e in SDK_ERRORS])
async def test_errors_are_the_sdk_exceptions(
    tmp_path: Path, model: str, exc_type: type[anthropic.APIStatusError], status: int,
    kind: str, retry_after: str | None, should: str, stream: bool,
) -> None:
    async with stack(tmp_path, local_failures=LOCAL_FAILURES,
                     claude_failures=CLAUDE_FAILURES) as s, s.client() as client:
        with pytest.raises(exc_type) as caught:
            if stream:
                async with client.messages.stream(
                        model=model, max_tokens=16,
                        messages=[{"role": "user", "content": "hi"}]) as st:
                    await st.get_final_message()
            else:
                await client.messages.create(model=model, max_tokens=16,
                                             messages=[{"role": "user", "content": "hi"}])
    error = caught.value
    assert error.status_code == status
    assert isinstance(error.body, dict) and error.body["type"] == "error"
    assert error.body["error"]["type"] == kind and error.body["error"]["message"]
    assert error.response.headers.get("retry-after") == retry_after
    assert error.response.headers["x-should-retry"] == should


async def test_not_found_for_a_provider_that_is_not_registered(tmp_path: Path) -> None:
    async with stack(tmp_path, cloud_key=False) as s, s.client() as client:
        with pytest.raises(anthropic.NotFoundError) as caught:
            await client.messages.create(model="kimi-k2.6:cloud", max_tokens=16,
                                         messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["error"]["code"] == "provider_not_registered"  # type: ignore[index]


async def test_bad_requests_are_refused_before_any_upstream_call(tmp_path: Path) -> None:
    async with stack(tmp_path) as s, s.client() as client:
        with pytest.raises(anthropic.BadRequestError) as caught:
            await client.messages.create(  # type: ignore[call-overload]
                model="ollama/qwen3:4b", max_tokens=16,
                messages=[{"role": "user", "content": "hi"}],
                tool_choice={"type": "sometimes"})
        assert "tool_choice.type" in caught.value.message
        with pytest.raises(anthropic.AuthenticationError):
            async with anthropic.AsyncAnthropic(base_url=s.url, api_key="wrong",
                                                max_retries=0) as wrong:
                await wrong.messages.create(model="ollama/qwen3:4b", max_tokens=16,
                                            messages=[{"role": "user", "content": "hi"}])
    assert s.local.requests == []


async def test_a_non_retryable_502_is_not_retried_by_the_sdk(tmp_path: Path) -> None:
    """An upstream 401 is chatd's 502 ``upstream_error`` with ``x-should-retry: false``:
    the SDK, which retries every 5xx otherwise, sends it once."""
    async with stack(tmp_path, local_failures=LOCAL_FAILURES) as s, \
            s.client(retries=2) as client:
        with pytest.raises(anthropic.InternalServerError):
            await client.messages.create(model="ollama/locked:4b", max_tokens=16,
                                         messages=[{"role": "user", "content": "hi"}])
        assert len(s.local.requests) == 1
        with pytest.raises(anthropic.RateLimitError):  # and a 429 is retried, as it says
            async with s.client(retries=1) as once:
                await once.with_options(timeout=10).messages.create(
                    model="ollama/busy:4b", max_tokens=16,
                    messages=[{"role": "user", "content": "hi"}])
    assert len(s.local.requests) == 3


@pytest.mark.parametrize("name", ["ollama", "opencode"])
async def test_a_mid_stream_failure_is_an_error_event(tmp_path: Path, name: str) -> None:
    family = FAMILIES[name]
    async with stack(tmp_path, local_fail_midstream={"qwen3:4b"},
                     claude_fail_midstream={"claude-sonnet-4-6"}) as s, s.client() as client:
        seen: list[str] = []
        with pytest.raises(anthropic.APIStatusError) as caught:
            async with client.messages.stream(
                    model=family.model, max_tokens=64,
                    messages=[{"role": "user", "content": "hi"}]) as stream:
                async for text in stream.text_stream:
                    seen.append(text)
    assert seen == words(family.reply)[:1]
    assert isinstance(caught.value.body, dict)
    expected = "overloaded_error" if name == "opencode" else "api_error"
    assert caught.value.body["error"]["type"] == expected


# --- count_tokens and the model list ----------------------------------------------------

async def test_count_tokens(tmp_path: Path) -> None:
    async with stack(tmp_path) as s, s.client() as client:
        counted = await client.messages.count_tokens(
            model="opencode/claude-sonnet-4-6", system="Be brief.",
            messages=[{"role": "user", "content": "one two three"}])
        raw = await client.messages.with_raw_response.count_tokens(
            model="ollama/qwen3:4b", messages=[{"role": "user", "content": "one two three"}])
        estimated = await raw.parse()
    assert counted.input_tokens == 3  # the upstream's own count
    assert s.claude.counts == [{"model": "claude-sonnet-4-6", "system": "Be brief.",
                                "messages": [{"role": "user", "content": "one two three"}]}]
    assert raw.headers["x-chatd-estimate"] == "true"
    assert estimated.input_tokens == (len("system") * 0 + len("user") + 13) // 4


async def test_models_list_in_both_shapes(tmp_path: Path) -> None:
    async with stack(tmp_path) as s, s.client() as client:
        page = await client.models.list()
        async with httpx.AsyncClient(base_url=s.url) as http:
            raw = (await http.get("/v1/models", headers={"x-api-key": TOKEN})).json()
    ids = [m.id for m in page.data]
    assert ids[0] == "smart" and "opencode/claude-sonnet-4-6" in ids
    assert all(m.type == "model" and m.display_name for m in page.data)
    assert raw["object"] == "list" and raw["has_more"] is False
    assert raw["first_id"] == ids[0] and raw["last_id"] == ids[-1]
    assert {"id", "object", "created", "owned_by"} <= set(raw["data"][0])
