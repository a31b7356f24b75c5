"""Tool ids across dialects (SPEC §2, issue 10): an Ollama client's history carries none,
an OpenAI-family upstream requires the call's id and the result's tool_call_id to match."""

from __future__ import annotations

from pathlib import Path

from test_front_doors import TOKEN, stack
from test_front_doors import pytestmark as _front_doors_marks

pytestmark = _front_doors_marks
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HI = [{"role": "user", "content": "hi"}]


async def test_an_ollama_client_tool_conversation_with_an_openai_family_model(
    tmp_path: Path,
) -> None:
    """Ollama clients send history without ids; OpenAI requires the assistant's call id and
    the tool result's tool_call_id to match. chatd derives stable ones (SPEC §2)."""
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}
    async with stack(tmp_path) as s, s.http() as client:
        first = await client.post("/api/chat", headers=AUTH, json={
            "model": "openrouter/moonshotai/kimi-k2", "messages": HI, "tools": [tool],
            "stream": False})
        assert first.status_code == 200, first.text
        [call] = first.json()["message"]["tool_calls"]
        history = [*HI,
                   {"role": "assistant", "content": "",
                    "tool_calls": [{"function": call["function"]}]},
                   {"role": "tool", "tool_name": "get_weather", "content": "3 degrees"}]
        for _ in range(2):  # the same history twice: the ids must not change
            second = await client.post("/api/chat", headers=AUTH, json={
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
