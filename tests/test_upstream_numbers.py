"""Upstream bytes that once made a 500: tool-call arguments nested past what orjson writes,
and token counts whose sum passes 2^64 (issue: never a 500 from upstream data)."""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import orjson
import pytest
from chatd_served import served
from mock_stack import app_over, config
from orjson import dumps  # chatproto's encoder is orjson's

from chatproto import ChatError, HTTPRequest, Usage, codec_for
from transports import MockResponse, MockTransport

U64 = 2**64 - 1
KEY = "sk-kimi-test-key"


def deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return value


def openai_body(*, arguments: Any = "{}", prompt: int = 1, completion: int = 1) -> bytes:
    message: dict[str, Any] = {"role": "assistant", "content": "hi"}
    if arguments is not None:
        message["tool_calls"] = [{"id": "call_1", "type": "function",
                                  "function": {"name": "f", "arguments": arguments}}]
    # The stdlib writes any depth (orjson stops at 254, which is the point here).
    return json.dumps({
        "id": "x", "object": "chat.completion", "created": 1, "model": "kimi-k2",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
    }).encode()


def openai_chunks(*, prompt: int, completion: int) -> list[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        obj = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "k",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return b"data: " + orjson.dumps(obj) + b"\n\n"

    usage = {"prompt_tokens": prompt, "completion_tokens": completion}
    return [chunk({"role": "assistant", "content": "hi"}),
            chunk({}, "stop", usage=usage), b"data: [DONE]\n\n"]


def ollama_body(*, prompt: int = 1, completion: int = 1) -> bytes:
    return orjson.dumps({
        "model": "m", "created_at": "2025-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": "local answer"}, "done": True,
        "done_reason": "stop", "prompt_eval_count": prompt, "eval_count": completion,
    })


# -- the core ------------------------------------------------------------------------------


def test_deep_tool_arguments_object_is_bad_upstream_response() -> None:
    codec = codec_for("openai_chat")
    with pytest.raises(ChatError) as caught:
        codec.parse_response("kimi", openai_body(arguments=deep(300)))
    assert (caught.value.type, caught.value.status) == ("bad_upstream_response", 502)


def test_usage_counts_saturate_where_json_stops() -> None:
    usage = Usage(prompt_tokens=U64, completion_tokens=U64, cached_tokens=U64)
    assert usage.total_tokens == U64
    assert orjson.loads(dumps(usage.to_dict()))["total_tokens"] == U64
    assert Usage(prompt_tokens=2, completion_tokens=3).total_tokens == 5


# -- through a served chatd ----------------------------------------------------------------


async def post(handler: Any, path: str, body: dict[str, Any]) -> httpx.Response:
    app = app_over(MockTransport(handler), config(), {"KIMI_API_KEY": KEY})
    async with served(app) as port, httpx.AsyncClient(trust_env=False) as client:
        with anyio.fail_after(10):
            response = await client.post(f"http://127.0.0.1:{port}{path}", json=body)
        if path == "/v1/chat":
            metrics = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            response.extensions["metrics"] = metrics
    return response


def message(model: str, **fields: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **fields}


@pytest.mark.anyio
async def test_deep_arguments_fall_back_and_are_counted(anyio_backend: str) -> None:
    """The bad answer is the upstream's failure: the chain moves on to its next target,
    and the failure is counted against the provider that sent it."""

    def handler(request: HTTPRequest) -> MockResponse:
        if request.host == "kimi.test":
            return MockResponse(200, [("content-type", "application/json")],
                                (openai_body(arguments=deep(300)),))
        return MockResponse(200, [("content-type", "application/json")], (ollama_body(),))

    response = await post(handler, "/v1/chat", message("smart"))
    assert response.status_code == 200, response.text
    assert response.json()["provider"] == "ollama"
    metrics = response.extensions["metrics"]
    assert 'chatd_upstream_errors_total{provider="kimi",type="bad_upstream_response"} 1.0' \
        in metrics, metrics


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/v1/chat", "/v1/chat/completions"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_usage_past_two_to_the_64_is_answered(
    path: str, stream: bool, anyio_backend: str
) -> None:
    def handler(request: HTTPRequest) -> MockResponse:
        if stream:
            return MockResponse(200, [("content-type", "text/event-stream")],
                                openai_chunks(prompt=U64, completion=U64))
        return MockResponse(200, [("content-type", "application/json")],
                            (openai_body(arguments=None, prompt=U64, completion=U64),))

    response = await post(handler, path, message("kimi/kimi-k2", stream=stream))
    assert response.status_code == 200, response.text
    assert "hi" in response.text
    if path == "/v1/chat":
        assert str(U64) in response.text
    if not stream:
        assert response.json()["usage"]["total_tokens"] == U64
