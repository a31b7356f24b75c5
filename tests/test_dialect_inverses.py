"""Each dialect's two ends are inverses where the wire format allows: what the client end
writes, the server end of the same module reads back to the same thing, and the other way.

A chatd in front of a chatd is the concrete case: the codec's upstream request is a
client request to the door; the door's answer, stream and error are an upstream's to the
codec. Fields chatd keeps only on one side (the door's own ids, Ollama's durations) are
left out of the comparison; everything that means something to a caller must survive.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from chatproto import (
    Answer,
    CallContext,
    ChatError,
    ChatRequest,
    ChatResponse,
    DoorCall,
    Message,
    Provider,
    Route,
    ToolCall,
    Usage,
    codec_for,
)
from chatproto.dialects import ollama, openai_chat

PNG = "iVBORw0KGgoAAAANSUhEUg=="
SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
TOOLS = ({"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}},)

HISTORY = (
    Message(role="system", content="be brief"),
    Message(role="user", content="look", images=(PNG,)),
    Message(role="assistant", content="", tool_calls=(
        ToolCall(id="c1", name="add", arguments='{"a":1,"b":[2,3]}'),)),
    Message(role="tool", content="6", tool_call_id="c1", name="add"),
)

REQUESTS = {
    "plain": ChatRequest(model="m", messages=(Message(role="user", content="hi"),)),
    "json-mode": ChatRequest(model="m", messages=HISTORY[:2], format="json"),
    "schema": ChatRequest(model="m", messages=HISTORY[:2], format=SCHEMA, max_tokens=7,
                          temperature=0.5, top_p=0.9, stop=("\n",), seed=3),
    "tools": ChatRequest(model="m", messages=HISTORY, tools=TOOLS, stream=True),
}

PROVIDER = Provider(name="up", api="openai_chat", base_url="http://up.test/v1")
OLLAMA = Provider(name="ollama", api="ollama_chat", base_url="http://ollama.test")
CTX = CallContext(id="0" * 32, created=1_700_000_000, received=1_700_000_000.25)


def _sent(codec_api: str, provider: Provider, request: ChatRequest) -> bytes:
    http = codec_for(codec_api).build_request(request, Route(provider=provider.name,
                                                              upstream_model="m"), provider)
    return http.body


def _meaning(request: ChatRequest) -> dict[str, Any]:
    """What the request asks, as every dialect can say it."""
    return {
        "messages": [(m.role, m.content, m.images, m.tool_call_id,
                      [(c.id, c.name, orjson.loads(c.arguments)) for c in m.tool_calls])
                     for m in request.messages],
        "format": request.format, "max_tokens": request.max_tokens,
        "temperature": request.temperature, "top_p": request.top_p, "stop": request.stop,
        "seed": request.seed, "stream": request.stream, "tools": list(request.tools),
    }


@pytest.mark.parametrize("request_", list(REQUESTS.values()), ids=list(REQUESTS))
def test_openai_codec_request_is_read_back_by_the_openai_door(request_: ChatRequest) -> None:
    """``format`` -> ``response_format`` -> ``format``; base64 -> data URL -> base64;
    tool-call arguments as text both ways."""
    call = openai_chat.door.parse(_sent("openai_chat", PROVIDER, request_), [])
    assert _meaning(call.chat) == _meaning(request_)
    assert call.chat.dialect == "openai_chat"


@pytest.mark.parametrize("request_", list(REQUESTS.values()), ids=list(REQUESTS))
def test_ollama_codec_request_is_read_back_by_the_ollama_door(request_: ChatRequest) -> None:
    """Tool-call arguments: text -> object on the wire -> text (the same JSON value)."""
    call = ollama.chat_door.parse(_sent("ollama_chat", OLLAMA, request_), [])
    assert _meaning(call.chat) == _meaning(request_)
    assert call.chat.dialect == "ollama_chat"


ANSWERS = {
    "text": ChatResponse(content="Hello", finish_reason="stop",
                         usage=Usage(prompt_tokens=3, completion_tokens=2)),
    "truncated": ChatResponse(content="Hel", finish_reason="length", thinking="hmm",
                              usage=Usage(prompt_tokens=3, completion_tokens=1)),
    "tool-calls": ChatResponse(content="", finish_reason="tool_calls", tool_calls=(
        ToolCall(id="c9", name="add", arguments='{"a":1}'),
        ToolCall(id="c10", name="mul", arguments="{}"),
    ), usage=Usage(prompt_tokens=5, completion_tokens=4)),
}


def _answer_meaning(r: ChatResponse) -> tuple[Any, ...]:
    return (r.content, r.thinking, r.finish_reason, r.usage.prompt_tokens,
            r.usage.completion_tokens,
            [(c.id, c.name, orjson.loads(c.arguments)) for c in r.tool_calls])


def _call(api: str) -> DoorCall:
    return DoorCall(chat=ChatRequest(model="m", messages=HISTORY[:1], dialect=api))


@pytest.mark.parametrize("response", list(ANSWERS.values()), ids=list(ANSWERS))
@pytest.mark.parametrize(("door", "api"), [(openai_chat.door, "openai_chat"),
                                           (ollama.chat_door, "ollama_chat")],
                         ids=["openai", "ollama"])
def test_a_doors_answer_is_read_back_by_its_codec(door: Any, api: str,
                                                  response: ChatResponse) -> None:
    """The finish reason survives Ollama's ``done_reason`` (``tool_calls`` is ``stop`` with
    calls present, and reads back as ``tool_calls``)."""
    answer = Answer(response=response, route=Route(provider="x", upstream_model="m"),
                    latency_ms=1.0, elapsed_ns=5)
    body = door.render(_call(api), answer, CTX)
    back = codec_for(api).parse_response("up", body)
    assert _answer_meaning(back) == _answer_meaning(response)


ERRORS = [
    ChatError("rate_limited", "slow down, 1 request per second", provider="kimi",
              upstream_status=429),
    ChatError("upstream_rejected", "model \"x\" not found", upstream_status=400),
    ChatError("upstream_timeout", "no answer within 120 s"),
]


@pytest.mark.parametrize("exc", ERRORS, ids=[e.type for e in ERRORS])
@pytest.mark.parametrize(("door", "api"), [(openai_chat.door, "openai_chat"),
                                           (ollama.chat_door, "ollama_chat")],
                         ids=["openai", "ollama"])
def test_a_doors_error_body_is_read_back_by_its_codec(door: Any, api: str,
                                                      exc: ChatError) -> None:
    """The message survives, and the status it is answered with classifies it again."""
    back = codec_for(api).parse_error("up", exc.status, [], door.render_error(exc), now=0.0)
    assert back.message == exc.message
    assert back.upstream_status == exc.status
    assert back.status == (502 if exc.status >= 500 else exc.status)
