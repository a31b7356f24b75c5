"""Tool-call ids an Ollama upstream leaves out do not repeat across the turns of one
conversation, and stay the same when the same history is sent again.

Ollama's calls carry no id (OL ``types.go``: optional); chatd used to name them
``call_<index>``, so every turn's first call was ``call_0``, and a conversation with two
tool turns held two calls of one id (Anthropic refuses that history; agents keyed by id
answer the wrong call). Now each door derives the id where it renders the call: the Ollama
door from the answer's place in the history (what it also derives when the client sends
the call back without its id), the others from their answer's id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from test_front_doors import TOKEN, TOOL, stack
from test_front_doors import pytestmark as _front_doors_marks

from chatproto import ChatResponse, StreamEnded, ToolCall, ToolCallDelta
from chatproto.dialects import ollama as fo

pytestmark = _front_doors_marks

CALL = ToolCall(id=None, name="get_weather", arguments='{"city":"Paris"}')
ANSWER = ChatResponse(content="", finish_reason="tool_calls", tool_calls=(CALL,))


def rendered_id(turn: int, *, stream: bool) -> str:
    if stream:
        renderer = fo.ChatStreamRenderer(model="m", created_at="t", turn=turn)
        renderer.event(ToolCallDelta(index=0, name=CALL.name, arguments=CALL.arguments))
        lines = renderer.end(StreamEnded(finish_reason="tool_calls"), total_duration_ns=1)
        message = orjson.loads(lines.splitlines()[0])["message"]
    else:
        message = orjson.loads(fo.render_chat(ANSWER, model="m", created_at="t",
                                              total_duration_ns=1, turn=turn))["message"]
    call_id: str = message["tool_calls"][0]["id"]
    return call_id


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_ollama_door_ids_differ_across_turns_and_repeat_on_replay(stream: bool) -> None:
    first, second = rendered_id(1, stream=stream), rendered_id(3, stream=stream)
    assert first != second
    assert rendered_id(1, stream=stream) == first  # the same history, the same id


def test_a_client_that_drops_the_id_names_the_same_call() -> None:
    """The id the door answered with is the one it derives when the call comes back in
    the history without one, so the tool result pairs with it either way."""
    answered = rendered_id(1, stream=False)
    history = {"model": "m", "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": CALL.name, "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "sunny", "tool_name": CALL.name}]}
    messages = fo.parse_chat(orjson.dumps(history)).messages
    assert messages[1].tool_calls[0].id == answered
    assert messages[2].tool_call_id == answered


async def ollama_two_tool_turns(s: Any, model: str) -> list[str]:
    """Two user turns that each end in a call of the same tool with the same arguments,
    each answered, on Ollama's wire (the ``ollama`` Python client keeps no call ids, so
    the bytes are read as a client that does would read them); the ids of the calls."""
    ids: list[str] = []
    messages: list[Any] = []
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with s.http() as http:
        for question in ("Weather in Paris?", "And now?"):
            messages.append({"role": "user", "content": question})
            answer = (await http.post("/api/chat", headers=headers, json={
                "model": model, "messages": messages, "tools": [TOOL],
                "stream": False})).json()["message"]
            [call] = answer["tool_calls"]
            ids.append(call["id"])
            messages.append(answer)
            messages.append({"role": "tool", "content": "sunny", "tool_name": "get_weather"})
            final = (await http.post("/api/chat", headers=headers, json={
                "model": model, "messages": messages, "tools": [TOOL],
                "stream": False})).json()["message"]
            messages.append(final)
    return ids


@pytest.mark.parametrize("model", ["ollama/qwen3:4b", "kimi-k2.6:cloud"])
async def test_ollama_clients_tool_ids_do_not_repeat_across_turns(tmp_path: Path,
                                                                  model: str) -> None:
    async with stack(tmp_path) as s:
        ids = await ollama_two_tool_turns(s, model)
        sent = s.upstream_bodies("ollama" if model.startswith("ollama/") else
                                 "ollama_cloud")[-1]["messages"]
    assert all(ids) and len(set(ids)) == 2, ids
    calls = [c["id"] for m in sent if m["role"] == "assistant" for c in m.get("tool_calls", [])]
    results = [m["tool_call_id"] for m in sent if m["role"] == "tool"]
    assert calls == results == ids


async def test_openai_clients_tool_ids_from_ollama_do_not_repeat_across_turns(
        tmp_path: Path) -> None:
    """An OpenAI client of an Ollama upstream: every id the answers gave is distinct, and
    each tool result names its call (the fake refuses nothing here; the client keys by id)."""
    ids: list[str] = []
    messages: list[Any] = []
    async with stack(tmp_path) as s, s.openai() as client:
        for question in ("Weather in Paris?", "And now?"):
            messages.append({"role": "user", "content": question})
            answer = await client.chat.completions.create(
                model="ollama/qwen3:4b", messages=messages, tools=[TOOL])
            message = answer.choices[0].message
            assert message.tool_calls
            call = message.tool_calls[0]
            ids.append(call.id)
            messages.append(message.model_dump(exclude_none=True))
            messages.append({"role": "tool", "tool_call_id": call.id, "content": "sunny"})
            final = await client.chat.completions.create(
                model="ollama/qwen3:4b", messages=messages, tools=[TOOL])
            messages.append(final.choices[0].message.model_dump(exclude_none=True))
        sent = s.local.requests[-1]["messages"]
    assert len(set(ids)) == 2, ids
    # What reached Ollama pairs each result with its own call.
    calls = [c["id"] for m in sent if m["role"] == "assistant" for c in m.get("tool_calls", [])]
    results = [m["tool_call_id"] for m in sent if m["role"] == "tool"]
    assert calls == results == ids
