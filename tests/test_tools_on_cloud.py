"""Tool calling on Ollama Cloud and on the default ``smart`` tier (SPEC §1, §2).

Before: a ``:cloud`` model went to /api/generate, which takes no tools, so chatd answered
400 and ``invalid_request`` stopped the ``smart`` chain before its OpenRouter target. Now a
request with tools or tool results goes to Ollama Cloud's /api/chat, and a target that
cannot carry a request is skipped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_front_doors import CLOUD_KEY, TOOL, stack
from test_front_doors import pytestmark as _front_doors_marks

# The same marks as the front-door tests: anyio, and the openai SDK's own unfinished SSE
# generators (which trio reports) are not chatd's.
pytestmark = _front_doors_marks


@pytest.mark.parametrize("model", ["kimi-k2.6:cloud", "ollama_cloud/kimi-k2.6", "smart"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_a_tool_conversation_reaches_ollama_cloud_on_api_chat(
    tmp_path: Path, model: str, stream: bool
) -> None:
    async with stack(tmp_path) as s, s.openai() as client:
        messages: list[Any] = [{"role": "user", "content": "weather in Oslo?"}]
        if stream:
            chunks = [c async for c in await client.chat.completions.create(
                model=model, messages=messages, tools=[TOOL], stream=True)]
            calls = [t for c in chunks for ch in c.choices for t in ch.delta.tool_calls or ()]
            name, call_id = calls[0].function.name, calls[0].id  # type: ignore[union-attr]
            arguments = "".join(t.function.arguments or "" for t in calls if t.function)
        else:
            answer = await client.chat.completions.create(
                model=model, messages=messages, tools=[TOOL])
            [call] = answer.choices[0].message.tool_calls or []
            name, call_id = call.function.name, call.id  # type: ignore[union-attr]
            arguments = call.function.arguments  # type: ignore[union-attr]
        assert name == "get_weather" and call_id
        # Turn two: the tool result goes back; it must reach /api/chat too.
        messages += [
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": call_id, "type": "function",
                 "function": {"name": name, "arguments": arguments}}]},
            {"role": "tool", "tool_call_id": call_id, "content": json.dumps({"temp": 3})},
        ]
        final = await client.chat.completions.create(model=model, messages=messages,
                                                     tools=[TOOL])
        # The fake answers once the tool's result is in: the round trip is closed.
        assert final.choices[0].finish_reason == "stop"
        assert final.choices[0].message.content
    assert [c.path for c in s.cloud.calls] == ["/api/chat", "/api/chat"]
    assert all(c.headers["authorization"] == f"Bearer {CLOUD_KEY}" for c in s.cloud.calls)
    second = s.cloud.requests[-1]
    assert second["model"] == "kimi-k2.6"
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "tool"]
    assert s.compat.requests == []  # the chain did not fall through


async def test_without_tools_ollama_cloud_still_answers_on_api_generate(tmp_path: Path) -> None:
    async with stack(tmp_path) as s, s.openai() as client:
        await client.chat.completions.create(
            model="kimi-k2.6:cloud", messages=[{"role": "user", "content": "hi"}])
    assert [c.path for c in s.cloud.calls] == ["/api/generate"]
