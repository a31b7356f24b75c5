"""Chat Completions to Chat Completions loses nothing (SPEC §2 "Dialects"): what an
OpenAI-family upstream answers and what an OpenAI client sends reach the other end with
only the model name rewritten, whole and streamed, against :class:`canned.Canned`."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from canned import chunk, lab, sse, sse_events, whole

from chatproto import (
    Event,
    Provider,
    RawEvent,
    Route,
    Served,
    StreamEnded,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
)
from chatproto.dialects.openai_chat import CompletionStream, codec, parse_request

OPENAI_COMPLETION = {
    "id": "gen-1", "object": "chat.completion", "created": 1, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}

DETAILS = [{"type": "reasoning.text", "text": "r1", "signature": "sig-1",
            "format": "anthropic-claude-v1", "index": 0}]
ANNOTATIONS = [{"type": "url_citation", "url_citation": {
    "url": "https://example.com", "title": "Example", "start_index": 0, "end_index": 2}}]
LOGPROBS = {"content": [{"token": "ok", "logprob": -0.1, "bytes": [111, 107],
                         "top_logprobs": []}], "refusal": None}


def copy(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


async def streamed(tmp_path: Path, chunks: list[dict[str, Any]],
                   **request: Any) -> list[dict[str, Any]]:
    """The data of every chunk chatd's OpenAI door streams for ``chunks`` from an
    OpenAI-family upstream."""
    async with lab(tmp_path) as s, s.http() as client:
        s.up.answers["m"] = sse(chunks)
        r = await client.post("/v1/chat/completions", json={
            "model": "oai/m", "stream": True,
            "messages": [{"role": "user", "content": "hi"}], **request})
        assert r.status_code == 200, r.text
    return [data for _, data in sse_events(r.text.replace("data: [DONE]", ""))]


@pytest.mark.anyio
async def test_openai_door_passes_message_extras_from_an_openai_upstream(
        tmp_path: Path) -> None:
    """SPEC §2 "Dialects": the same dialect carries response extras "such as ... thinking
    signatures" unchanged. OpenRouter returns them in ``message.reasoning_details``
    (``{"type": "reasoning.text", "text", "signature"}``, which a client must send back
    for Claude/Gemini tool use through OpenRouter), and web-search citations in
    ``message.annotations``; chatd's answer has neither."""
    details = DETAILS
    annotations = ANNOTATIONS
    answer = copy(OPENAI_COMPLETION)
    answer["choices"][0]["message"].update(
        reasoning="r1", reasoning_details=details, annotations=annotations)
    async with lab(tmp_path) as s, s.http() as client:
        s.up.answers["m"] = whole(answer)
        r = await client.post("/v1/chat/completions", json={
            "model": "oai/m", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    message = r.json()["choices"][0]["message"]
    assert message.get("reasoning_details") == details, message
    assert message.get("annotations") == annotations, message


@pytest.mark.anyio
async def test_openai_door_streams_delta_extras_from_an_openai_upstream(
        tmp_path: Path) -> None:
    """The streamed case: OpenRouter streams ``delta.reasoning_details`` beside the
    reasoning text, a signature in a delta of its own (empty ``reasoning``), and
    ``annotations`` with the last text. Each reaches the client in order, on the chunk
    that carries the text it came with."""
    text, signed = dict(DETAILS[0], signature=None), dict(DETAILS[0], text="", signature="s")
    chunks = [chunk({"role": "assistant", "content": ""}),
              chunk({"reasoning": "r1", "reasoning_details": [text]}),
              chunk({"reasoning": "", "reasoning_details": [signed]}),
              chunk({"content": "ok", "annotations": ANNOTATIONS}),
              chunk({}, "stop")]
    datas = await streamed(tmp_path, chunks)
    deltas = [d["choices"][0]["delta"] for d in datas if d.get("choices")]
    assert [d.get("reasoning_details") for d in deltas if "reasoning_details" in d] == [
        [text], [signed]], deltas
    [thought] = [d for d in deltas if d.get("reasoning")]
    assert thought["reasoning_details"] == [text]
    [said] = [d for d in deltas if d.get("content")]
    assert said == {"content": "ok", "annotations": ANNOTATIONS}
    assert deltas.index(said) > deltas.index(thought) + 1  # the signature between
    assert datas[-1]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.anyio
async def test_openai_door_passes_choice_logprobs_from_an_openai_upstream(
        tmp_path: Path) -> None:
    """SPEC §2: ``logprobs`` is named as carried through on the same dialect; the answer's
    ``choices[0].logprobs`` must come back, not ``null``."""
    logprobs = LOGPROBS
    answer = copy(OPENAI_COMPLETION)
    answer["choices"][0]["logprobs"] = logprobs
    async with lab(tmp_path) as s, s.http() as client:
        s.up.answers["m"] = whole(answer)
        r = await client.post("/v1/chat/completions", json={
            "model": "oai/m", "logprobs": True,
            "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["logprobs"] == logprobs


@pytest.mark.anyio
async def test_openai_door_streams_choice_logprobs_from_an_openai_upstream(
        tmp_path: Path) -> None:
    """The streamed case: each chunk's ``choices[0].logprobs`` comes with its text, and
    a finish chunk's with the finish; a chunk without any says ``null``."""
    first, second = copy(LOGPROBS), copy(LOGPROBS)
    second["content"][0]["token"] = "!"
    said = [chunk({"content": "ok"}), chunk({"content": "!"}), chunk({"content": "."}),
            chunk({}, "stop")]
    said[0]["choices"][0]["logprobs"] = first
    said[1]["choices"][0]["logprobs"] = second
    said[3]["choices"][0]["logprobs"] = {"content": [], "refusal": None}
    datas = await streamed(tmp_path, said, logprobs=True)
    texts = [(d["choices"][0]["delta"].get("content"), d["choices"][0]["logprobs"])
             for d in datas if d["choices"][0]["delta"].get("content")]
    assert texts == [("ok", first), ("!", second), (".", None)]
    assert datas[-1]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop",
                                       "logprobs": {"content": [], "refusal": None}}


def raw(delta: dict[str, Any] | None, logprobs: object = None) -> RawEvent:
    """The RawEvent of one upstream chunk (``delta`` None: the usage chunk)."""
    if delta is None:
        return RawEvent(dialect="openai_chat", data={"choices": [], "usage": {}})
    data = chunk(delta)
    data["choices"][0]["logprobs"] = logprobs
    return RawEvent(dialect="openai_chat", data=data)


#: (events, the ``(delta, logprobs)`` of every chunk rendered after the first), for the
#: rule of :class:`CompletionStream`: a chunk's extras ride on its first canonical chunk,
#: alone when it has none (before the next upstream chunk's), or on the finish chunk.
EXTRAS: list[tuple[list[Event], list[tuple[dict[str, Any], object]]]] = [
    ([raw({"content": "a"}), TextDelta(text="a"), StreamEnded(finish_reason="stop")],
     [({"content": "a"}, None), ({}, None)]),
    ([raw({"content": "a", "refusal": None}, [1]), TextDelta(text="a"),
      StreamEnded(finish_reason="stop")],
     [({"content": "a"}, [1]), ({}, None)]),
    ([raw({"role": "assistant", "content": "", "refusal": None}), raw({"content": "a"}),
      TextDelta(text="a"), StreamEnded(finish_reason="stop")],
     [({"content": "a"}, None), ({}, None)]),
    ([raw({"reasoning": "", "reasoning_details": [2]}), raw({"content": "b"}),
      TextDelta(text="b"), StreamEnded(finish_reason="stop")],
     [({"reasoning_details": [2]}, None), ({"content": "b"}, None), ({}, None)]),
    ([raw({"reasoning": "r", "reasoning_details": [3]}), ThinkingDelta(text="r"),
      raw({"tool_calls": [], "x": 1}), ToolCallDelta(index=0, id="c", name="f"),
      ToolCallDelta(index=1, id="d", name="g"), StreamEnded(finish_reason="tool_calls")],
     [({"reasoning_content": "r", "reasoning": "r", "reasoning_details": [3]}, None),
      ({"tool_calls": [{"index": 0, "id": "c", "type": "function",
                        "function": {"name": "f", "arguments": ""}}], "x": 1}, None),
      ({"tool_calls": [{"index": 1, "id": "d", "type": "function",
                        "function": {"name": "g", "arguments": ""}}]}, None),
      ({}, None)]),
    ([raw({"annotations": [4]}, [5]), raw(None), StreamEnded(finish_reason="stop")],
     [({"annotations": [4]}, [5])]),
]


@pytest.mark.parametrize(("events", "expected"), EXTRAS)
def test_stream_carries_each_chunks_extras_on_the_chunk_chatd_renders_from_it(
        events: list[Event], expected: list[tuple[dict[str, Any], object]]) -> None:
    stream = CompletionStream(id="c", model="m", created=0, include_usage=False)
    served = Served(route=Route(provider="oai", upstream_model="m"))
    text = (stream.start() + stream.events(events, served)).decode()
    datas = [data for _, data in sse_events(text.replace("data: [DONE]", ""))][1:]
    got = [(d["choices"][0]["delta"], d["choices"][0]["logprobs"]) for d in datas]
    assert got == expected
    if expected[-1][0] != {}:  # the finish chunk carried them
        assert datas[-1]["choices"][0]["finish_reason"] == "stop"


# --- the request ------------------------------------------------------------------------

WEATHER = {"type": "function", "function": {"name": "get_weather",
                                            "parameters": {"type": "object"}}}


@pytest.mark.anyio
async def test_openai_door_keeps_assistant_message_fields_for_an_openai_upstream(
        tmp_path: Path) -> None:
    """The request half of the case above: OpenRouter asks clients to send
    ``reasoning_details`` back on the assistant turn ("Preserving reasoning blocks") so
    Claude or Gemini can go on after a tool call; Chat Completions to Chat Completions
    must carry it (SPEC §2), and chatd drops it."""
    details = [{"type": "reasoning.text", "text": "r1", "signature": "sig-1"}]
    async with lab(tmp_path) as s, s.http() as client:
        s.up.answers["m"] = whole(OPENAI_COMPLETION)
        r = await client.post("/v1/chat/completions", json={
            "model": "oai/m", "tools": [WEATHER], "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": None, "reasoning_details": details,
                 "tool_calls": [{"id": "call_1", "type": "function", "function": {
                     "name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]})
        sent = s.up.last()
    assert r.status_code == 200, r.text
    [assistant] = [m for m in sent["messages"] if m["role"] == "assistant"]
    assert assistant.get("reasoning_details") == details, assistant


@pytest.mark.anyio
async def test_openai_door_keeps_content_parts_for_an_openai_upstream(tmp_path: Path) -> None:
    """SPEC §2 "Dialects": Chat Completions to Chat Completions loses nothing. OpenRouter
    users mark prompt-cache breakpoints with ``cache_control`` on a text part (OpenRouter
    "Prompt caching") and send PDFs as ``file`` parts; chatd joins the parts into one
    string (the breakpoint is gone) and refuses ``file`` parts with a 400."""
    content = [{"type": "text", "text": "long document",
                "cache_control": {"type": "ephemeral"}},
               {"type": "file", "file": {"filename": "a.pdf",
                                         "file_data": "data:application/pdf;base64,JVBERi0="}},
               {"type": "text", "text": "summarise it"}]
    async with lab(tmp_path) as s, s.http() as client:
        s.up.answers["m"] = whole(OPENAI_COMPLETION)
        r = await client.post("/v1/chat/completions", json={
            "model": "oai/m", "messages": [{"role": "user", "content": content}]})
        assert r.status_code == 200, r.text
        sent = s.up.last()
    assert sent["messages"] == [{"role": "user", "content": content}]


@pytest.mark.anyio
async def test_a_file_part_is_refused_for_an_upstream_of_another_wire_format(
        tmp_path: Path) -> None:
    """Where the ``file`` part cannot go (an Ollama upstream), the call is a 400 that
    names it, not the request without the document; nothing is sent."""
    content = [{"type": "text", "text": "summarise it"},
               {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0="}}]
    async with lab(tmp_path) as s, s.http() as client:
        r = await client.post("/v1/chat/completions", json={
            "model": "oll/m", "messages": [{"role": "user", "content": content}]})
        assert not s.up.bodies
    assert r.status_code == 400, r.text
    assert "messages[0].content[1] is a file part" in r.json()["error"]["message"]



@pytest.mark.anyio
async def test_openai_door_keeps_the_whole_json_schema_format_for_an_openai_upstream(
        tmp_path: Path) -> None:
    """SPEC §2 "Dialects": Chat Completions to Chat Completions loses nothing, and names
    ``strict``. ``name`` and ``strict`` now pass (README "Options across dialects"), but
    ``response_format.json_schema.description`` (OpenAI's "what the response format is
    for, used by the model to determine how to respond") is still dropped."""
    response_format = {"type": "json_schema", "json_schema": {
        "name": "Weather", "description": "a forecast", "strict": True,
        "schema": {"type": "object", "properties": {"t": {"type": "number"}},
                   "required": ["t"], "additionalProperties": False}}}
    async with lab(tmp_path) as s, s.http() as client:
        s.up.answers["m"] = whole(OPENAI_COMPLETION)
        r = await client.post("/v1/chat/completions", json={
            "model": "oai/m", "response_format": response_format,
            "messages": [{"role": "user", "content": "hi"}]})
        sent = s.up.last()
    assert r.status_code == 200, r.text
    assert sent.get("response_format") == response_format


OPENROUTER = Provider(name="openrouter", api="openai_chat", base_url="https://or.test/v1")
ROUTE = Route(provider="openrouter", upstream_model="vendor/m")

#: (the client's messages, what the upstream gets): the client's own fields and content
#: parts under the ones chatd builds (developer as system, content null beside tool calls).
AS_SENT: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = [
    ([{"role": "developer", "content": "be brief", "x": 1}],
     [{"role": "system", "content": "be brief", "x": 1}]),
    ([{"role": "user", "content": [
        {"type": "text", "text": "doc", "cache_control": {"type": "ephemeral"}},
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}],
     [{"role": "user", "content": [
         {"type": "text", "text": "doc", "cache_control": {"type": "ephemeral"}},
         {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}]),
    ([{"role": "user", "content": "weather?"},
      {"role": "assistant", "content": "", "reasoning": "r", "reasoning_details": [{"a": 1}],
       "tool_calls": [{"id": "c1", "type": "function", "extra_content": {"sig": "s"},
                       "function": {"name": "f", "arguments": "{}"}}]},
      {"role": "tool", "tool_call_id": "c1", "content": "sunny"}],
     [{"role": "user", "content": "weather?"},
      {"role": "assistant", "content": None, "reasoning": "r",
       "reasoning_details": [{"a": 1}],
       "tool_calls": [{"id": "c1", "type": "function", "extra_content": {"sig": "s"},
                       "function": {"name": "f", "arguments": "{}"}}]},
      {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]),
]


@pytest.mark.parametrize(("messages", "expected"), AS_SENT)
def test_an_openai_clients_messages_reach_an_openai_upstream_as_sent(
        messages: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    chat = parse_request(json.dumps({"model": "m", "messages": messages}).encode()).chat
    sent = json.loads(codec.build_request(chat, ROUTE, OPENROUTER).body)
    assert sent["messages"] == expected


def test_only_the_same_dialect_reads_the_clients_body() -> None:
    """A request from another door (no ``raw``), or whose ``raw`` came from another
    dialect, is built from the canonical fields alone."""
    chat = parse_request(json.dumps({"model": "m", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "a", "cache_control": {}}]}],
        "response_format": {"type": "json_object", "x": 1}}).encode()).chat
    for other in (replace(chat, dialect="anthropic_messages"), replace(chat, raw=None)):
        sent = json.loads(codec.build_request(other, ROUTE, OPENROUTER).body)
        assert sent["messages"] == [{"role": "user", "content": "a"}]
        assert sent["response_format"] == {"type": "json_object"}
