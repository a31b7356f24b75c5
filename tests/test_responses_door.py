"""``POST /v1/responses`` driven by the official openai SDK, for every upstream family.

A real chatd (hypercorn, in-process, on 127.0.0.1:0, auth on) in front of fake upstreams
that are real servers on loopback, each speaking its provider's exact wire format and
recording what chatd sent: a local Ollama and an Ollama Cloud (:class:`FakeOllama`), an
OpenAI Chat Completions one for OpenRouter (:class:`FakeOpenAI`), an Anthropic Messages one
(:class:`FakeAnthropic`, behind a provider configured with ``api =
"anthropic_messages"``), and a Responses one (:class:`FakeResponses`) behind OpenCode Zen,
whose ``gpt-*`` models are served on ``/responses`` (SPEC §2), and behind a provider
defined in configuration with ``api = "openai_responses"``. Every streamed upstream body
is cut at awkward points.

The client is ``openai.AsyncOpenAI`` (``max_retries=0``): ``client.responses.create``
plain and streamed, tools over two turns with ``function_call_output``, ``text.format``
json_schema and reasoning, each through each family; errors as the SDK's exceptions; a
client that goes away cancels the upstream call.
"""

from __future__ import annotations

import functools
import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import openai
import pytest
from chatd_served import served
from fake_anthropic import REPLY as CLAUDE_REPLY
from fake_anthropic import SIGNATURE, FakeAnthropic
from fake_anthropic import THINKING as CLAUDE_THINKING
from fake_ollama import FakeOllama, words
from fake_openai import FakeOpenAI
from fake_responses import REPLY as RESPONSES_REPLY
from fake_responses import THINKING, FakeResponses

from server.app import ChatdApp, create_app
from server.config import load_config

pytestmark = [
    pytest.mark.anyio,
    # The SDK leaves its SSE generators to the garbage collector (openai ``_streaming.py``);
    # under trio that is a ResourceWarning about the SDK's generators, not chatd's stream.
    pytest.mark.filterwarnings(
        "ignore:Async generator '(openai|httpx|httpcore)[0-9]*[.]"
        ".*' was garbage collected:ResourceWarning"),
]

TOKEN = "chatd-client-token-5e2a"
CLOUD_KEY = "ollama-cloud-key-from-a-file"
OPENROUTER_KEY = "sk-or-v1-fake-77aa"
ZEN_KEY = "sk-zen-fake-9b1c"
CLAUDE_KEY = "sk-ant-fake-41de"
LOCAL_REPLY = "Hej från den lokala Ollama — ça marche 🙂 !"
CLOUD_REPLY = "Cloud says こんにちは, über alles ☁️ ok"
CHAT_REPLY = "Grüße aus Tōkyō — 東京から 🙂 done."


@dataclass(frozen=True)
class Route:
    model: str
    family: str
    """``ollama`` (chat or generate), ``chat`` (Chat Completions), ``anthropic``,
    ``responses``."""
    upstream_model: str
    reply: str


ROUTES = {
    "ollama": Route("ollama/qwen3:4b", "ollama", "qwen3:4b", LOCAL_REPLY),
    "ollama_cloud": Route("kimi-k2.6:cloud", "ollama", "kimi-k2.6", CLOUD_REPLY),
    "openrouter": Route("openrouter/moonshotai/kimi-k2", "chat", "moonshotai/kimi-k2",
                        CHAT_REPLY),
    "anthropic": Route("claude/claude-sonnet-4-6", "anthropic", "claude-sonnet-4-6",
                       CLAUDE_REPLY),
    "opencode": Route("opencode/gpt-5.1", "responses", "gpt-5.1", RESPONSES_REPLY),
    "configured": Route("resp/gpt-4.1", "responses", "gpt-4.1", RESPONSES_REPLY),
}
TOOL_ROUTES = ["ollama", "openrouter", "anthropic", "opencode"]

EXEC: Any = {"type": "function", "name": "exec_command", "description": "Run a shell command",
        "strict": False,
        "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}},
                       "required": ["cmd"], "additionalProperties": False}}
NAMESPACE: Any = {"type": "namespace", "name": "agents", "description": "Sub-agents",
             "tools": [{"type": "function", "name": "spawn", "description": "Spawn one",
                        "strict": False, "parameters": {"type": "object", "properties": {}}}]}
WEB: Any = {"type": "web_search"}
ARGS = {"cmd": "echo hi"}
SCHEMA = {"type": "object", "properties": {"greeting": {"type": "string"}},
          "required": ["greeting"], "additionalProperties": False}


@dataclass
class Stack:
    port: int
    app: ChatdApp
    local: FakeOllama
    cloud: FakeOllama
    chat: FakeOpenAI
    claude: FakeAnthropic
    responses: FakeResponses

    def openai(self, token: str = TOKEN) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=f"http://127.0.0.1:{self.port}/v1", api_key=token, max_retries=0,
            timeout=10, http_client=openai.DefaultAsyncHttpxClient(verify=tls()))

    def bodies(self, name: str) -> list[dict[str, Any]]:
        """What the route's upstream received, oldest first."""
        if name == "ollama":
            return self.local.requests
        if name == "ollama_cloud":
            return self.cloud.requests
        if name == "openrouter":
            return self.chat.bodies("openrouter")
        if name == "anthropic":
            return self.claude.requests
        return self.responses.requests


@functools.cache
def tls() -> ssl.SSLContext:
    return ssl.create_default_context()


@asynccontextmanager
async def stack(tmp_path: Path, *, cloud: bool = True, **fakes: Any) -> AsyncIterator[Stack]:
    """The fakes and chatd; ``fakes`` go to the fake constructors by prefix: ``local_``,
    ``chat_``, ``claude_``, ``responses_``."""

    def picked(prefix: str) -> dict[str, Any]:
        return {k[len(prefix):]: v for k, v in fakes.items() if k.startswith(prefix)}

    local = FakeOllama(["qwen3:4b"], LOCAL_REPLY, awkward=True,
                       tool_arguments=ARGS, **picked("local_"))
    cloud_fake = FakeOllama(["kimi-k2.6"], CLOUD_REPLY, key=CLOUD_KEY, awkward=True)
    chat = FakeOpenAI(keys={"openrouter": OPENROUTER_KEY}, tool_arguments=ARGS,
                      **picked("chat_"))
    claude = FakeAnthropic(key=CLAUDE_KEY, tool_arguments=ARGS, **picked("claude_"))
    responses = FakeResponses(key=ZEN_KEY, tool_arguments=ARGS, **picked("responses_"))
    key_file = tmp_path / "ollama_cloud.env"
    if cloud:
        key_file.write_text(f"OLLAMA_API_KEY={CLOUD_KEY}\n")
    missing = tmp_path / "missing.env"
    async with anyio.create_task_group() as tg:
        for fake in (local, cloud_fake, chat, claude, responses):
            await tg.start(fake.serve)
        config = load_config(f"""
[chatd]
ollama_url = "{local.url}"
timeout_secs = 5
auth_token_env = "CHATD_TOKEN"
[chatd.providers.ollama_cloud]
base_url = "{cloud_fake.url}"
key_file = "{key_file}"
[chatd.providers.openrouter]
base_url = "{chat.base_url('openrouter')}"
key_file = "{missing}"
[chatd.providers.opencode]
base_url = "{responses.base_url}"
key_file = "{missing}"
[chatd.providers.resp]
api = "openai_responses"
base_url = "{responses.base_url}"
key_env = "RESP_KEY"
[chatd.providers.claude]
api = "anthropic_messages"
base_url = "{claude.url}"
key_env = "CLAUDE_KEY"
""")
        environ = {"CHATD_TOKEN": TOKEN, "OPENROUTER_API_KEY": OPENROUTER_KEY,
                   "OPENCODE_API_KEY": ZEN_KEY, "RESP_KEY": ZEN_KEY, "CLAUDE_KEY": CLAUDE_KEY}
        app = create_app(config, environ=environ)
        async with served(app) as port:
            yield Stack(port, app, local, cloud_fake, chat, claude, responses)
        tg.cancel_scope.cancel()


def check_routed(s: Stack, name: str, *, stream: bool) -> dict[str, Any]:
    """The one upstream request of the call: the model as routed, streamed or not."""
    route = ROUTES[name]
    [body] = s.bodies(name)
    assert body["model"] == route.upstream_model
    # Ollama streams when ``stream`` is omitted (OL §1.2); the OpenAI family does not.
    assert body.get("stream", route.family == "ollama") is stream
    return body


# --- plain and streamed -----------------------------------------------------------------

@pytest.mark.parametrize("name", list(ROUTES))
async def test_plain(tmp_path: Path, name: str) -> None:
    route = ROUTES[name]
    async with stack(tmp_path) as s, s.openai() as client:
        r = await client.responses.create(model=route.model, instructions="Be brief.",
                                          input="Say hello.", max_output_tokens=64,
                                          temperature=0.2)
    assert (r.object, r.status, r.model) == ("response", "completed", route.model)
    assert r.output_text == route.reply
    assert r.usage is not None and r.usage.output_tokens > 0
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    body = check_routed(s, name, stream=False)
    if route.family == "responses":
        # The same dialect: the client's own body, only the model rewritten.
        assert (body["instructions"], body["input"], body["max_output_tokens"],
                body["temperature"]) == ("Be brief.", "Say hello.", 64, 0.2)
    elif route.family == "chat":
        assert body["messages"] == [{"role": "system", "content": "Be brief."},
                                    {"role": "user", "content": "Say hello."}]
        assert (body["max_tokens"], body["temperature"]) == (64, 0.2)
    elif route.family == "anthropic":
        assert "Be brief." in json.dumps(body["system"])
        assert body["messages"] == [{"role": "user", "content": [
            {"type": "text", "text": "Say hello."}]}]
        assert (body["max_tokens"], body["temperature"]) == (64, 0.2)
    else:
        assert body.get("options", {}).get("num_predict") == 64


@pytest.mark.parametrize("name", list(ROUTES))
async def test_streamed(tmp_path: Path, name: str) -> None:
    route = ROUTES[name]
    async with stack(tmp_path) as s, s.openai() as client:
        stream = await client.responses.create(model=route.model, input="Say hello.",
                                               stream=True)
        events = [e async for e in stream]
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == sorted(e.sequence_number for e in events)
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert deltas == words(route.reply)  # every delta, in order, one event each
    done = [e.item for e in events if e.type == "response.output_item.done"]
    assert [i.type for i in done] == ["message"]
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output_text == route.reply and final.model == route.model
    assert final.usage is not None and final.usage.output_tokens > 0
    check_routed(s, name, stream=True)
    if route.family == "responses":
        # Lossless: the upstream's own events, fields chatd does not know included.
        assert done[0].model_extra == {"x_fake": "kept"}
        text_events = [e for e in events if e.type == "response.output_text.delta"]
        assert all((e.model_extra or {}).get("obfuscation") == "Zx" for e in text_events)


async def test_the_stream_helper_assembles_the_answer(tmp_path: Path) -> None:
    async with stack(tmp_path) as s, s.openai() as client, client.responses.stream(
            model="ollama/qwen3:4b", input="Say hello.") as helper:
        final = await helper.get_final_response()
    assert final.output_text == LOCAL_REPLY
    assert len(s.local.requests) == 1


# --- tools over two turns ---------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("name", TOOL_ROUTES)
async def test_tools_over_two_turns(tmp_path: Path, name: str, stream: bool) -> None:
    """Turn one asks for exec_command; turn two sends its output back as
    ``function_call_output`` and gets the answer. Namespaced tools are flattened and
    web_search is left out where the upstream is another dialect, and passed untouched
    where it is the same."""
    route = ROUTES[name]
    tools: list[Any] = [EXEC, NAMESPACE, WEB]
    question = {"type": "message", "role": "user",
                "content": [{"type": "input_text", "text": "Run echo hi."}]}
    async with stack(tmp_path) as s, s.openai() as client:
        first = await create(client, stream, model=route.model, input=[question],
                             tools=tools, tool_choice="auto", parallel_tool_calls=False)
        [call] = [i for i in first.output if i.type == "function_call"]
        assert (call.name, json.loads(call.arguments)) == ("exec_command", ARGS)
        assert call.call_id and call.id and call.id.startswith("fc_")
        history = [question, *[i.model_dump(exclude_none=True) for i in first.output],
                   {"type": "function_call_output", "call_id": call.call_id,
                    "output": "hi\n"}]
        second = await create(client, stream, model=route.model, input=history, tools=tools)
        bodies = s.bodies(name)
    assert second.output_text == route.reply
    assert len(bodies) == 2
    sent = bodies[1]
    if route.family == "responses":
        assert sent["tools"] == tools
        assert sent["input"][-1] == {"type": "function_call_output",
                                     "call_id": call.call_id, "output": "hi\n"}
        assert sent["input"][-2]["call_id"] == call.call_id
        return
    if route.family == "anthropic":
        names = [t["name"] for t in sent["tools"]]
        assert names == ["exec_command", "agents__spawn"]
        assistant, result = sent["messages"][-2:]
        [use] = [b for b in assistant["content"] if b["type"] == "tool_use"]
        assert (use["id"], use["name"], use["input"]) == (call.call_id, "exec_command", ARGS)
        [block] = result["content"]
        assert (block["type"], block["tool_use_id"]) == ("tool_result", call.call_id)
        assert "hi" in json.dumps(block["content"])
        return
    names = [t["function"]["name"] for t in sent["tools"]]
    assert names == ["exec_command", "agents__spawn"]  # web_search left out
    if route.family == "chat":
        assistant, result = sent["messages"][-2:]
        assert assistant["tool_calls"][0]["id"] == call.call_id
        assert result == {"role": "tool", "content": "hi\n", "tool_call_id": call.call_id}
    else:
        assistant, result = sent["messages"][-2:]
        assert assistant["tool_calls"][0]["function"]["name"] == "exec_command"
        assert (result["role"], result["content"]) == ("tool", "hi\n")


async def create(client: openai.AsyncOpenAI, stream: bool, **kwargs: Any) -> Any:
    """One turn, plain or streamed; the final response either way."""
    if not stream:
        return await client.responses.create(**kwargs)
    events = [e async for e in await client.responses.create(stream=True, **kwargs)]
    assert events[-1].type == "response.completed"
    return events[-1].response


async def test_namespaced_call_maps_back(tmp_path: Path) -> None:
    """A model calling a flattened namespace tool is shown the name and namespace the
    client defined."""
    async with stack(tmp_path) as s, s.openai() as client:
        r = await client.responses.create(model="openrouter/moonshotai/kimi-k2",
                                          input="spawn one", tools=[NAMESPACE, EXEC])
    [call] = [i for i in r.output if i.type == "function_call"]
    assert (call.name, call.namespace) == ("spawn", "agents")
    assert [t["function"]["name"] for t in s.chat.bodies("openrouter")[0]["tools"]] == [
        "agents__spawn", "exec_command"]


# --- text.format and reasoning ----------------------------------------------------------

@pytest.mark.parametrize("name", list(ROUTES))
async def test_json_schema_reaches_the_upstream(tmp_path: Path, name: str) -> None:
    route = ROUTES[name]
    fmt: Any = {"type": "json_schema", "name": "greeting", "schema": SCHEMA, "strict": True}
    async with stack(tmp_path) as s, s.openai() as client:
        if route.family == "anthropic":
            # No dependable counterpart in Anthropic Messages: refused, never ignored.
            with pytest.raises(openai.BadRequestError) as caught:
                await client.responses.create(model=route.model, input="Greet.",
                                              text={"format": fmt})
            assert "format" in caught.value.body["message"]  # type: ignore[index]
            assert s.claude.requests == []
            return
        await client.responses.create(model=route.model, input="Greet.",
                                      text={"format": fmt})
    body = check_routed(s, name, stream=False)
    if route.family == "responses":
        assert body["text"] == {"format": fmt}
    elif route.family == "chat":
        # The schema's name and strict reach an upstream that has them.
        assert body["response_format"] == {"type": "json_schema", "json_schema": {
            "name": "greeting", "schema": SCHEMA, "strict": True}}
    else:
        assert body["format"] == SCHEMA


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("name", ["ollama", "openrouter", "anthropic", "opencode"])
async def test_reasoning(tmp_path: Path, name: str, stream: bool) -> None:
    """reasoning.effort reaches the upstream as its own control; the model's reasoning
    comes back as a reasoning item with its summary, and what must come back with it on
    the next turn does: a Responses upstream's encrypted_content, and an Anthropic
    thinking block's signature, carried in encrypted_content by a client that knows
    nothing of it."""
    route = ROUTES[name]
    async with stack(tmp_path) as s, s.openai() as client:
        r = await create(client, stream, model=route.model, input="Think, then greet.",
                         reasoning={"effort": "low", "summary": "auto"},
                         include=["reasoning.encrypted_content"])
        reasoning = [i for i in r.output if i.type == "reasoning"]
        if route.family == "chat":
            assert reasoning == []  # the chat fake gives no reasoning text
        else:
            [item] = reasoning
            expected = {"responses": THINKING, "anthropic": CLAUDE_THINKING}.get(
                route.family, "Let me think.")
            assert "".join(p.text for p in item.summary) == expected
            again = [item.model_dump(exclude_none=True),
                     *[i.model_dump(exclude_none=True) for i in r.output
                       if i.type == "message"],
                     {"role": "user", "content": "And again."}]
            await client.responses.create(model=route.model, input=again)
    first = s.bodies(name)[0]
    if route.family == "responses":
        assert first["reasoning"] == {"effort": "low", "summary": "auto"}
        assert reasoning[0].encrypted_content == "gAAAA-fake-encrypted-1"
        assert s.responses.requests[1]["input"][0]["encrypted_content"] == (
            "gAAAA-fake-encrypted-1")
    elif route.family == "chat":
        assert first["reasoning"] == {"effort": "low"}
    elif route.family == "anthropic":
        assert first["thinking"]["type"] == "enabled"
        assert reasoning[0].encrypted_content == f"chatd-signature:{SIGNATURE}"
        [thinking] = s.claude.requests[1]["messages"][0]["content"][:1]
        assert thinking == {"type": "thinking", "thinking": CLAUDE_THINKING,
                            "signature": SIGNATURE}
    else:
        assert first["think"] == "low"
        assert s.local.requests[1]["messages"][0]["thinking"] == "Let me think."


# --- errors -------------------------------------------------------------------------------

FAILURES: dict[str, tuple[int, str, dict[str, str]]] = {
    "busy:4b": (429, "slow down", {}),
    "gone:4b": (404, "model 'gone:4b' not found", {}),
}
SDK_ERRORS = [
    # (model, body extras, exception, status, code, Retry-After)
    ("", {}, openai.BadRequestError, 400, "invalid_request", None),
    ("ollama/qwen3:4b", {"previous_response_id": "resp_1"}, openai.BadRequestError, 400,
     "invalid_request", None),
    # Codex retries a 404 five times unless code is model_not_found (research/agents.md).
    ("kimi-k2.6:cloud", {}, openai.NotFoundError, 404, "model_not_found", None),
    ("no-such-model:1b", {}, openai.InternalServerError, 502, "model_not_found", None),
    # SPEC §4: a 429 that names no wait gets default_retry_after_secs.
    ("busy:4b", {}, openai.RateLimitError, 429, "rate_limited", "2"),
    ("opencode/gpt-busy", {}, openai.RateLimitError, 429, "rate_limited", "9"),
    ("opencode/gpt-gone", {}, openai.InternalServerError, 502, "model_not_found", None),
]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(("model", "extra", "exc_type", "status", "code", "retry_after"),
                         SDK_ERRORS, ids=[f"{e[3]}-{e[0] or 'empty'}-{len(e[1])}"
                                          for e in SDK_ERRORS])
async def test_errors_are_the_sdks_exceptions(
    tmp_path: Path, model: str, extra: dict[str, Any], exc_type: type[openai.APIStatusError],
    status: int, code: str, retry_after: str | None, stream: bool,
) -> None:
    async with stack(tmp_path, cloud=False, local_failures=FAILURES, responses_failures={
        "gpt-busy": (429, "Rate limit reached", {"Retry-After": "9"}),
        "gpt-gone": (404, "The model `gpt-gone` does not exist", {})}) as s, \
            s.openai() as client:
        with pytest.raises(exc_type) as caught:
            await client.responses.create(model=model, input="hi", stream=stream,
                                          extra_body=extra)
    error = caught.value
    assert (error.status_code, error.code) == (status, code)
    assert isinstance(error.body, dict) and error.body["message"]
    assert error.response.headers.get("retry-after") == retry_after
    if extra:
        assert "previous_response_id" in error.body["message"]


async def test_wrong_token_is_an_authentication_error(tmp_path: Path) -> None:
    async with stack(tmp_path) as s, s.openai(token="wrong") as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            await client.responses.create(model="ollama/qwen3:4b", input="hi")
    assert caught.value.code == "unauthorized"
    assert s.local.requests == []


async def test_an_unknown_responses_path_is_an_openai_404(tmp_path: Path) -> None:
    async with stack(tmp_path) as s, s.openai() as client:
        with pytest.raises(openai.NotFoundError) as caught:
            await client.responses.retrieve("resp_123")
    assert caught.value.code == "not_found"


@pytest.mark.parametrize("name", ["ollama", "openrouter", "opencode"])
async def test_mid_stream_failure_is_response_failed(tmp_path: Path, name: str) -> None:
    route = ROUTES[name]
    async with stack(tmp_path, local_fail_midstream={"qwen3:4b"},
                     chat_fail_midstream={route.upstream_model},
                     responses_fail_midstream={route.upstream_model}) as s, \
            s.openai() as client:
        stream = await client.responses.create(model=route.model, input="hi", stream=True)
        events = [e async for e in stream]
    assert [e.delta for e in events if e.type == "response.output_text.delta"] == (
        words(route.reply)[:1])
    last = events[-1]
    assert last.type == "response.failed"
    assert last.response.error is not None and last.response.error.message
    assert len(s.bodies(name)) == 1


# --- a client that goes away ------------------------------------------------------------

@pytest.mark.parametrize("name", ["openrouter", "opencode"])
async def test_disconnect_cancels_the_upstream_call(tmp_path: Path, name: str) -> None:
    """The upstream has the request and stalls; the client closes its socket; chatd closes
    the upstream connection at once (100 ms, as for the other doors)."""
    route = ROUTES[name]
    async with stack(tmp_path, chat_stall={route.upstream_model},
                     responses_stall={route.upstream_model}) as s:
        fake = s.chat if route.family == "chat" else s.responses
        body = json.dumps({"model": route.model, "input": "hi", "stream": True}).encode()
        head = (f"POST /v1/responses HTTP/1.1\r\nHost: chatd\r\n"
                f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n")
        with anyio.fail_after(5):
            client = await anyio.connect_tcp("127.0.0.1", s.port)
            await client.send(head.encode() + body)
            while not fake.calls:
                await anyio.sleep(0.005)
            await anyio.sleep(0.02)
            gone = anyio.current_time()
            await client.aclose()
            while not fake.closed_at:
                await anyio.sleep(0.002)
        assert fake.closed_at[0] - gone < 0.100
        provider = "openrouter" if route.family == "chat" else "opencode"
        with anyio.fail_after(2):
            while s.app.telemetry.snapshot()[provider].cancelled < 1:
                await anyio.sleep(0.005)


async def test_what_the_door_left_out_is_logged(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="chatd.relay")
    async with stack(tmp_path) as s, s.openai() as client:
        r = await client.responses.create(model="ollama/qwen3:4b", input="hi",
                                          tools=[EXEC, WEB])
    assert r.status == "completed"
    [line] = [rec.getMessage() for rec in caplog.records if "left out" in rec.getMessage()]
    assert "tools[1] type 'web_search'" in line
    assert len(s.local.requests) == 1
