"""Nothing a client set and nothing an upstream reported is silently dropped (issue 10).

A real chatd in front of the loopback fakes of tests/test_front_doors.py. Each test sends
what a real client sends and checks what the upstream received, or what the client read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_front_doors import KEYS, stack
from test_front_doors import pytestmark as _front_doors_marks

pytestmark = _front_doors_marks

HI = [{"role": "user", "content": "hi"}]
SCHEMA = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
          "additionalProperties": False}


async def test_the_openai_door_carries_every_field_to_an_openai_family_upstream(
    tmp_path: Path,
) -> None:
    """Same dialect: what chatd does not interpret passes unchanged (SPEC §2 Dialects)."""
    extras: dict[str, Any] = {
        "presence_penalty": 0.5, "frequency_penalty": 0.25, "parallel_tool_calls": False,
        "logprobs": True, "top_logprobs": 3, "user": "u-1",
        "response_format": {"type": "json_schema", "json_schema": {
            "name": "answer", "strict": True, "schema": SCHEMA}},
        "provider": {"order": ["groq"], "allow_fallbacks": False},  # OpenRouter's routing
        "x_custom": {"nested": [1, 2]},
    }
    async with stack(tmp_path) as s, s.http() as client:
        resp = await client.post("/v1/chat/completions", headers=s_auth(), json={
            "model": "openrouter/moonshotai/kimi-k2", "messages": HI, **extras})
        assert resp.status_code == 200, resp.text
    [sent] = s.compat.bodies("openrouter")
    for key, value in extras.items():
        assert sent[key] == value, key


async def test_reasoning_effort_reaches_opencode(tmp_path: Path) -> None:
    async with stack(tmp_path) as s, s.http() as client:
        resp = await client.post("/v1/chat/completions", headers=s_auth(), json={
            "model": "opencode/glm-5.1", "messages": HI, "reasoning_effort": "high"})
        assert resp.status_code == 200, resp.text
    [sent] = s.compat.bodies("opencode")
    assert sent["reasoning_effort"] == "high"


async def test_the_ollama_door_carries_options_and_keep_alive_to_ollama(tmp_path: Path) -> None:
    options = {"num_ctx": 8192, "top_k": 20, "repeat_penalty": 1.1, "min_p": 0.05,
               "mirostat": 2, "num_predict": 5, "temperature": 0.3, "typical_p": 0.9}
    async with stack(tmp_path) as s, s.http() as client:
        resp = await client.post("/api/chat", headers=s_auth(), json={
            "model": "ollama/qwen3:4b", "messages": HI, "stream": False,
            "options": options, "keep_alive": "10m"})
        assert resp.status_code == 200, resp.text
    [sent] = s.local.requests
    assert sent["keep_alive"] == "10m"
    for key, value in options.items():
        assert sent["options"][key] == value, key


async def test_openai_penalties_reach_ollama_as_options(tmp_path: Path) -> None:
    async with stack(tmp_path) as s, s.http() as client:
        resp = await client.post("/v1/chat/completions", headers=s_auth(), json={
            "model": "ollama/qwen3:4b", "messages": HI,
            "presence_penalty": 0.5, "frequency_penalty": 0.25})
        assert resp.status_code == 200, resp.text
    [sent] = s.local.requests
    assert sent["options"]["presence_penalty"] == 0.5
    assert sent["options"]["frequency_penalty"] == 0.25


async def test_ollama_options_reach_openrouter_under_its_names(tmp_path: Path) -> None:
    """OpenRouter takes top_k, min_p, repetition_penalty, penalties and seed (its docs'
    parameters page); Ollama's ``repeat_penalty`` is its ``repetition_penalty``."""
    async with stack(tmp_path) as s, s.http() as client:
        resp = await client.post("/api/chat", headers=s_auth(), json={
            "model": "openrouter/moonshotai/kimi-k2", "messages": HI, "stream": False,
            "options": {"top_k": 20, "min_p": 0.05, "repeat_penalty": 1.1,
                        "presence_penalty": 0.5, "seed": 3, "num_ctx": 4096}})
        assert resp.status_code == 200, resp.text
    [sent] = s.compat.bodies("openrouter")
    assert (sent["top_k"], sent["min_p"], sent["repetition_penalty"],
            sent["presence_penalty"], sent["seed"]) == (20, 0.05, 1.1, 0.5, 3)
    assert "num_ctx" not in sent  # no counterpart: left out rather than refused


USAGE_DETAILS = {"prompt_tokens_details": {"cached_tokens": 3, "cache_write_tokens": 1},
                 "completion_tokens_details": {"reasoning_tokens": 2}, "cost": 0.0012}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_upstream_usage_details_reach_an_openai_client(tmp_path: Path, stream: bool) -> None:
    async with stack(tmp_path, compat_usage_details=USAGE_DETAILS) as s, s.http() as client:
        body: dict[str, Any] = {"model": "openrouter/moonshotai/kimi-k2", "messages": HI}
        if stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        resp = await client.post("/v1/chat/completions", headers=s_auth(), json=body)
        assert resp.status_code == 200, resp.text
    if stream:
        chunks = [json.loads(line[6:]) for line in resp.text.splitlines()
                  if line.startswith("data: {")]
        [usage] = [c["usage"] for c in chunks if c.get("usage")]
    else:
        usage = resp.json()["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == 3
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 2
    assert usage["cost"] == 0.0012


async def test_cached_and_reasoning_counts_reach_the_native_door(tmp_path: Path) -> None:
    async with stack(tmp_path, compat_usage_details=USAGE_DETAILS) as s, s.http() as client:
        resp = await client.post("/v1/chat", headers=s_auth(), json={
            "model": "openrouter/moonshotai/kimi-k2", "messages": HI})
    usage = resp.json()["usage"]
    assert (usage["cached_tokens"], usage["reasoning_tokens"]) == (3, 2)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_ollama_durations_reach_an_ollama_client(tmp_path: Path, stream: bool) -> None:
    """Clients compute tokens/s from them."""
    async with stack(tmp_path) as s, s.http() as client:
        resp = await client.post("/api/chat", headers=s_auth(), json={
            "model": "ollama/qwen3:4b", "messages": HI, "stream": stream})
        assert resp.status_code == 200, resp.text
    last = json.loads(resp.text.strip().splitlines()[-1])
    assert last["done"] is True
    assert (last["load_duration"], last["prompt_eval_duration"], last["eval_duration"],
            last["total_duration"]) == (100_000, 200_000, 700_000, 1_000_000)


async def test_an_ollama_client_tool_conversation_with_an_openai_family_model(
    tmp_path: Path,
) -> None:
    """Ollama clients send history without ids; OpenAI requires the assistant's call id and
    the tool result's tool_call_id to match. chatd derives stable ones (SPEC §2)."""
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}
    async with stack(tmp_path) as s, s.http() as client:
        first = await client.post("/api/chat", headers=s_auth(), json={
            "model": "openrouter/moonshotai/kimi-k2", "messages": HI, "tools": [tool],
            "stream": False})
        assert first.status_code == 200, first.text
        [call] = first.json()["message"]["tool_calls"]
        history = [*HI,
                   {"role": "assistant", "content": "",
                    "tool_calls": [{"function": call["function"]}]},
                   {"role": "tool", "tool_name": "get_weather", "content": "3 degrees"}]
        for _ in range(2):  # the same history twice: the ids must not change
            second = await client.post("/api/chat", headers=s_auth(), json={
                "model": "openrouter/moonshotai/kimi-k2", "messages": history,
                "tools": [tool], "stream": False})
            assert second.status_code == 200, second.text
    turns = s.compat.bodies("openrouter")[1:]
    ids = []
    for sent in turns:
        assistant, result = sent["messages"][1], sent["messages"][2]
        call_id = assistant["tool_calls"][0]["id"]
        assert call_id and result["tool_call_id"] == call_id
        ids.append(call_id)
    assert ids[0] == ids[1]


async def test_an_image_url_reaches_an_openai_family_upstream_and_is_refused_by_ollama(
    tmp_path: Path,
) -> None:
    url = "https://example.org/cat.png"
    content = [{"type": "text", "text": "what is this"},
               {"type": "image_url", "image_url": {"url": url}}]
    async with stack(tmp_path) as s, s.http() as client:
        ok = await client.post("/v1/chat/completions", headers=s_auth(), json={
            "model": "openrouter/moonshotai/kimi-k2",
            "messages": [{"role": "user", "content": content}]})
        refused = await client.post("/v1/chat/completions", headers=s_auth(), json={
            "model": "ollama/qwen3:4b", "messages": [{"role": "user", "content": content}]})
    assert ok.status_code == 200, ok.text
    [sent] = s.compat.bodies("openrouter")
    parts = sent["messages"][0]["content"]
    assert {"type": "image_url", "image_url": {"url": url}} in parts
    assert refused.status_code == 400
    assert "URL" in refused.json()["error"]["message"]


def s_auth() -> dict[str, str]:
    from test_front_doors import TOKEN

    return {"Authorization": f"Bearer {TOKEN}"}


assert KEYS  # the stack's keys are the fakes' own
