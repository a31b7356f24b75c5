"""chatd's two front doors driven by the official clients, as a user would drive them.

A real chatd (hypercorn, in-process, on 127.0.0.1:0) with every provider registered in
front of fake upstreams that are real servers on loopback: a local Ollama and an Ollama
Cloud (:class:`FakeOllama`, the cloud one checking its bearer key, read from a key file)
and one OpenAI-compatible fake serving OpenRouter, OpenCode and Kimi, each with its own
key and stream quirks (:class:`FakeOpenAI`). Every streamed upstream body is cut at awkward
points (mid-line, mid-UTF-8, one HTTP chunk each); the OpenRouter stream is interleaved
with SSE comments and the OpenCode one has a chunk after ``[DONE]``.

The clients are the ``openai`` SDK (``AsyncOpenAI``, ``max_retries=0``) and the ``ollama``
package (``AsyncClient``); both send chatd's client token, so auth is on throughout.
Each routed provider family is reached through each door, streamed and not, and the
client must see exactly the upstream's deltas, in order.
"""

from __future__ import annotations

import functools
import json
import socket
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import anyio
import httpx
import ollama
import openai
import pytest
from chatd_served import served
from fake_ollama import FakeOllama, awkward_pieces, words
from fake_openai import REPLY, FakeOpenAI

from server.app import ChatdApp, create_app
from server.config import load_config

pytestmark = [
    pytest.mark.anyio,
    # The openai SDK stops reading its SSE generators at ``[DONE]`` and closes the response
    # instead of the generators (openai ``_streaming.py``); under trio, whose async-generator
    # finalizer reports every unfinished generator, that is a ResourceWarning about the
    # SDK's own generators, not about chatd's stream.
    pytest.mark.filterwarnings(
        "ignore:Async generator '(openai|httpx|httpcore)[0-9]*[.]"
        ".*' was garbage collected:ResourceWarning"),
]

TOKEN = "chatd-client-token-77f1"
CLOUD_KEY = "ollama-cloud-key-4b1d-from-a-file"
KEYS = {"openrouter": "sk-or-v1-fake-9c0e", "opencode": "sk-zen-fake-1a2b",
        "kimi": "sk-kimi-fake-3c4d"}
LOCAL_REPLY = "Hej från den lokala Ollama — ça marche 🙂 !"
CLOUD_REPLY = "Cloud says こんにちは, über alles ☁️ ok"
LOCAL_MODEL, CLOUD_MODEL = "qwen3:4b", "kimi-k2.6"

TOOL: Any = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
MESSAGES: list[Any] = [{"role": "system", "content": "Be brief."},
                       {"role": "user", "content": "Say hello in three languages"}]


@dataclass(frozen=True)
class Route:
    """A model name a client sends, and what the upstream must see and answer."""

    model: str
    provider: str
    upstream_model: str
    reply: str


ROUTES = {
    "ollama": Route("ollama/qwen3:4b", "ollama", LOCAL_MODEL, LOCAL_REPLY),
    "ollama_cloud": Route("kimi-k2.6:cloud", "ollama_cloud", CLOUD_MODEL, CLOUD_REPLY),
    "openrouter": Route("openrouter/moonshotai/kimi-k2", "openrouter", "moonshotai/kimi-k2",
                        REPLY),
    "opencode": Route("opencode/glm-5.1", "opencode", "glm-5.1", REPLY),
    "kimi": Route("kimi/kimi-for-coding", "kimi", "kimi-for-coding", REPLY),
}


@dataclass
class Stack:
    """A served chatd and its fake upstreams."""

    port: int
    app: ChatdApp
    local: FakeOllama
    cloud: FakeOllama
    compat: FakeOpenAI

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # Each client gets the one shared TLS context: building a default one loads the CA
    # bundle (~30 ms a client), which would be most of a test's time. chatd is plain HTTP
    # on loopback; nothing else about the clients changes.

    def openai(self, token: str = TOKEN) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=f"{self.url}/v1", api_key=token, max_retries=0, timeout=10,
            http_client=openai.DefaultAsyncHttpxClient(verify=tls()))

    def ollama(self) -> ollama.AsyncClient:
        return ollama.AsyncClient(host=self.url, timeout=10, verify=tls(),
                                  headers={"Authorization": f"Bearer {TOKEN}"})

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=10, verify=tls())

    def upstream_bodies(self, provider: str) -> list[dict[str, Any]]:
        """What the route's upstream received, oldest first."""
        if provider == "ollama":
            return self.local.requests
        if provider == "ollama_cloud":
            return self.cloud.requests
        return self.compat.bodies(provider)


@functools.cache
def tls() -> ssl.SSLContext:
    return ssl.create_default_context()


def free_port() -> int:
    """A port nothing listens on (bound, then closed): connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def stack(tmp_path: Path, *, cloud: bool = True, local_url: str | None = None,
                **fakes: Any) -> AsyncIterator[Stack]:
    """Fakes and chatd, all serving until the block ends.

    ``fakes`` go to the fake constructors: ``local_*`` to the local Ollama, ``compat_*``
    to the OpenAI-compatible one. ``cloud=False`` leaves Ollama Cloud unregistered (its
    key file does not exist).
    """
    local = FakeOllama([LOCAL_MODEL, "llama3.2:1b"], LOCAL_REPLY, awkward=True,
                       **{k[6:]: v for k, v in fakes.items() if k.startswith("local_")})
    cloud_fake = FakeOllama([CLOUD_MODEL], CLOUD_REPLY, key=CLOUD_KEY, awkward=True)
    compat = FakeOpenAI(keys=KEYS,
                        **{k[7:]: v for k, v in fakes.items() if k.startswith("compat_")})
    key_file = tmp_path / "ollama_cloud.env"
    if cloud:
        key_file.write_text(f"OLLAMA_API_KEY={CLOUD_KEY}\n")
    async with anyio.create_task_group() as tg:
        for fake in (local, cloud_fake, compat):
            await tg.start(fake.serve)
        config = load_config(f"""
[chatd]
ollama_url = "{local_url or local.url}"
timeout_secs = 5
max_body_bytes = 65536
auth_token_env = "CHATD_TOKEN"
[chatd.providers.ollama_cloud]
base_url = "{cloud_fake.url}"
key_file = "{key_file}"
[chatd.providers.openrouter]
base_url = "{compat.base_url('openrouter')}"
key_file = "{tmp_path / 'missing.env'}"
[chatd.providers.opencode]
base_url = "{compat.base_url('opencode')}"
key_file = "{tmp_path / 'missing.env'}"
[chatd.providers.kimi]
base_url = "{compat.base_url('kimi')}"
key_file = "{tmp_path / 'missing.env'}"
timeout_secs = 0.25
[models]
fast = "ollama/qwen3:4b"
smart = ["kimi-k2.6:cloud", "openrouter/moonshotai/kimi-k2"]
""")
        environ = {"CHATD_TOKEN": TOKEN, "OPENROUTER_API_KEY": KEYS["openrouter"],
                   "OPENCODE_API_KEY": KEYS["opencode"], "KIMI_API_KEY": KEYS["kimi"]}
        app = create_app(config, environ=environ)
        expected = {"ollama", "openrouter", "opencode", "kimi"} | ({"ollama_cloud"} if cloud
                                                                  else set())
        assert set(app.providers) == expected
        async with served(app) as port:
            yield Stack(port, app, local, cloud_fake, compat)
        tg.cancel_scope.cancel()


def check_upstream(s: Stack, route: Route, *, stream: bool) -> dict[str, Any]:
    """The one upstream request the route's provider got: the model as routed, the key."""
    [body] = s.upstream_bodies(route.provider)
    assert body["model"] == route.upstream_model
    # Ollama streams when ``stream`` is omitted (OL §1.2); the OpenAI family does not.
    assert body.get("stream", route.provider not in KEYS) is stream
    if route.provider == "ollama_cloud":
        call = s.cloud.calls[-1]
        assert call.path == "/api/generate"
        assert call.headers["authorization"] == f"Bearer {CLOUD_KEY}"
    elif route.provider in KEYS:
        call = s.compat.last_call(route.provider)
        assert call.headers["authorization"] == f"Bearer {KEYS[route.provider]}"
    else:
        assert s.local.calls[-1].path == "/api/chat"
    return body


# --- the fakes themselves ---------------------------------------------------------------

def test_awkward_pieces_cut_lines_and_characters() -> None:
    """The splits the stream tests rely on really happen: mid-line and mid-character."""
    data = b"data: " + json.dumps({"content": REPLY}, ensure_ascii=False).encode() + b"\n\n"
    pieces = awkward_pieces(data)
    assert b"".join(pieces) == data
    assert len(pieces) > 10
    broken = 0
    for piece in pieces:
        try:
            piece.decode("utf-8")
        except UnicodeDecodeError:
            broken += 1
    assert broken >= 4  # each of ü, ō, —, 東, 京, 🙂 ... is cut at least once
    assert any(p.endswith(b"\n") and not p.endswith(b"\n\n") for p in pieces[:-1])


# --- the openai SDK ---------------------------------------------------------------------

@pytest.mark.parametrize("name", list(ROUTES))
async def test_openai_sdk_plain(tmp_path: Path, name: str) -> None:
    route = ROUTES[name]
    async with stack(tmp_path) as s, s.openai() as client:
        r = await client.chat.completions.create(
            model=route.model, messages=MESSAGES, max_tokens=64, temperature=0.2, seed=7)
    assert r.object == "chat.completion"
    assert r.model == route.model
    [choice] = r.choices
    assert (choice.message.role, choice.message.content) == ("assistant", route.reply)
    assert choice.finish_reason == "stop"
    assert r.usage is not None and r.usage.completion_tokens == len(words(route.reply))
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    body = check_upstream(s, route, stream=False)
    if route.provider in KEYS:
        assert (body["max_tokens"], body["temperature"], body["seed"]) == (64, 0.2, 7)
    else:
        assert body["options"]["num_predict"] == 64
        assert body["think"] is False  # SPEC §2's default for Ollama upstreams


@pytest.mark.parametrize("include_usage", [False, True], ids=["no-usage", "usage"])
@pytest.mark.parametrize("name", list(ROUTES))
async def test_openai_sdk_streamed(tmp_path: Path, name: str, include_usage: bool) -> None:
    route = ROUTES[name]
    extra: dict[str, Any] = {}
    if include_usage:
        extra["stream_options"] = {"include_usage": True}
    async with stack(tmp_path) as s, s.openai() as client:
        stream = await client.chat.completions.create(
            model=route.model, messages=MESSAGES, stream=True, **extra)
        chunks = [chunk async for chunk in stream]
    assert {c.id for c in chunks} == {chunks[0].id}
    assert {c.model for c in chunks} == {route.model}
    assert chunks[0].choices[0].delta.role == "assistant"
    with_choices = [c for c in chunks if c.choices]
    deltas = [c.choices[0].delta.content for c in with_choices[1:-1]]
    assert deltas == words(route.reply)  # every delta, in order, one chunk each
    assert with_choices[-1].choices[0].finish_reason == "stop"
    usage_chunks = [c for c in chunks if not c.choices]
    if include_usage:
        [last] = usage_chunks
        assert last is chunks[-1]
        assert last.usage is not None
        assert last.usage.completion_tokens == len(words(route.reply))
    else:
        assert usage_chunks == []
        assert all(c.usage is None for c in chunks)
    check_upstream(s, route, stream=True)


TOOL_ROUTES = ["ollama", "openrouter", "kimi"]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("name", TOOL_ROUTES)
async def test_openai_sdk_tool_call(tmp_path: Path, name: str, stream: bool) -> None:
    """A tool call comes back with its arguments as a JSON string and finish_reason
    tool_calls, also when the (fake) Ollama sends the call and ``done`` in separate chunks
    and when OpenRouter streams the arguments in fragments."""
    route = ROUTES[name]
    async with stack(tmp_path) as s, s.openai() as client:
        expected_args = (s.local if route.provider == "ollama" else s.compat).tool_arguments
        kwargs: dict[str, Any] = {"model": route.model, "messages": MESSAGES,
                                  "tools": [TOOL], "tool_choice": "auto"}
        if not stream:
            r = await client.chat.completions.create(**kwargs)
            [choice] = r.choices
            finish = choice.finish_reason
            assert choice.message.tool_calls is not None
            calls = [(c.id, c.function.name, c.function.arguments)
                     for c in choice.message.tool_calls]
        else:
            response = await client.chat.completions.create(stream=True, **kwargs)
            parts: dict[int, list[str]] = {}
            ids: dict[int, str] = {}
            names: dict[int, str] = {}
            finish = None
            async for chunk in response:
                for choice_delta in chunk.choices:
                    finish = choice_delta.finish_reason or finish
                    for piece in choice_delta.delta.tool_calls or ():
                        if piece.id:
                            ids[piece.index] = piece.id
                        if piece.function and piece.function.name:
                            names[piece.index] = piece.function.name
                        if piece.function and piece.function.arguments:
                            parts.setdefault(piece.index, []).append(piece.function.arguments)
            calls = [(ids[i], names[i], "".join(parts[i])) for i in sorted(parts)]
            if route.provider == "openrouter":
                assert len(parts[0]) == 3  # the upstream's fragments, relayed one by one
    assert finish == "tool_calls"
    [(call_id, fn, arguments)] = calls
    assert call_id and fn == "get_weather"
    assert isinstance(arguments, str) and json.loads(arguments) == expected_args
    [body] = s.upstream_bodies(route.provider)
    assert body["tools"] == [TOOL]


JSON_MODE = [("ollama", "format", "json"), ("ollama_cloud", "format", "json"),
             ("openrouter", "response_format", {"type": "json_object"}),
             ("kimi", "response_format", {"type": "json_object"})]


@pytest.mark.parametrize(("name", "field", "value"), JSON_MODE, ids=[j[0] for j in JSON_MODE])
async def test_openai_sdk_json_mode_reaches_the_upstream(
    tmp_path: Path, name: str, field: str, value: object
) -> None:
    route = ROUTES[name]
    async with stack(tmp_path) as s, s.openai() as client:
        await client.chat.completions.create(
            model=route.model, messages=MESSAGES, response_format={"type": "json_object"})
        [body] = s.upstream_bodies(route.provider)
    assert body[field] == value


async def test_openai_sdk_json_schema_reaches_ollama_as_its_format(tmp_path: Path) -> None:
    schema: Any = {"type": "object", "properties": {"n": {"type": "integer"}}}
    async with stack(tmp_path) as s, s.openai() as client:
        await client.chat.completions.create(
            model="qwen3:4b", messages=MESSAGES,
            response_format={"type": "json_schema",
                             "json_schema": {"name": "n", "schema": schema}})
    assert s.local.requests[-1]["format"] == schema


# SDK exceptions by status. The fakes answer these upstream models with these statuses.
FAILURES = {"busy:4b": (429, "slow down", {"Retry-After": "7"}),
            "down:4b": (503, "overloaded", {"Retry-After": "3"}),
            "broken:4b": (500, "internal upstream error", {}),
            "refused:4b": (400, "bad option", {})}
COMPAT_FAILURES = {"vendor/busy": (429, "rate limited by the vendor", {"Retry-After": "11"}),
                   "vendor/down": (503, "no capacity", {})}

SDK_ERRORS = [
    # (model, exception, status, chatd's type, Retry-After)
    ("", openai.BadRequestError, 400, "invalid_request", None),
    ("ollama/", openai.BadRequestError, 400, "invalid_request", None),
    ("refused:4b", openai.BadRequestError, 400, "upstream_rejected", None),
    ("kimi-k2.6:cloud", openai.NotFoundError, 404, "provider_not_registered", None),
    ("busy:4b", openai.RateLimitError, 429, "rate_limited", "7"),
    ("openrouter/vendor/busy", openai.RateLimitError, 429, "rate_limited", "11"),
    ("down:4b", openai.InternalServerError, 503, "upstream_overloaded", "3"),
    # SPEC §4: a 503 that names no wait gets default_retry_after_secs (2).
    ("openrouter/vendor/down", openai.InternalServerError, 503, "upstream_overloaded", "2"),
    ("broken:4b", openai.InternalServerError, 502, "upstream_error", None),
    ("no-such-model:1b", openai.InternalServerError, 502, "upstream_error", None),
    ("kimi/stall", openai.InternalServerError, 504, "upstream_timeout", None),
]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(("model", "exc_type", "status", "code", "retry_after"), SDK_ERRORS,
                         ids=[f"{e[2]}-{e[0] or 'empty'}" for e in SDK_ERRORS])
async def test_openai_sdk_raises_the_matching_exception(
    tmp_path: Path, model: str, exc_type: type[openai.APIStatusError], status: int,
    code: str, retry_after: str | None, stream: bool,
) -> None:
    """Before the first byte every failure is a real status, streamed or not, so the SDK
    raises the exception class it picks for that status; Retry-After is passed on."""
    async with stack(tmp_path, cloud=False, local_failures=FAILURES,
                     compat_failures=COMPAT_FAILURES, compat_stall={"stall"}) as s, \
            s.openai() as client:
        with pytest.raises(exc_type) as caught:
            await client.chat.completions.create(model=model, messages=MESSAGES,
                                                 stream=stream)
    error = caught.value
    assert error.status_code == status
    assert error.code == code
    assert isinstance(error.body, dict) and error.body["message"]
    assert error.response.headers.get("retry-after") == retry_after
    assert error.response.headers["content-type"] == "application/json"


async def test_openai_sdk_wrong_token_is_an_authentication_error(tmp_path: Path) -> None:
    async with stack(tmp_path) as s, s.openai(token="wrong") as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            await client.chat.completions.create(model="qwen3:4b", messages=MESSAGES)
    assert caught.value.code == "unauthorized"
    assert s.local.requests == []


@pytest.mark.parametrize("name", ["ollama", "openrouter"])
async def test_openai_sdk_mid_stream_failure_raises_after_the_deltas(
    tmp_path: Path, name: str
) -> None:
    """After the first byte a failure is the stream's last event (OpenAI's ``data:
    {"error"}``), which the SDK raises as APIError once it has yielded what came before."""
    route = ROUTES[name]
    async with stack(tmp_path, local_fail_midstream={LOCAL_MODEL},
                     compat_fail_midstream={route.upstream_model}) as s, \
            s.openai() as client:
        stream = await client.chat.completions.create(
            model=route.model, messages=MESSAGES, stream=True)
        seen: list[str] = []
        with pytest.raises(openai.APIError) as caught:
            async for chunk in stream:
                seen.extend(c.delta.content for c in chunk.choices if c.delta.content)
    assert seen == words(route.reply)[:1]
    assert caught.value.message


#: Every name the stack can use, in menu order (SPEC §3): the tiers, their targets, then
#: each registered provider's upstream list (local first). Never a ``<provider>/`` prefix,
#: which would be a 400 if sent.
USABLE = ["fast", "smart", "ollama/qwen3:4b", "kimi-k2.6:cloud", "openrouter/moonshotai/kimi-k2",
          "llama3.2:1b", "qwen3:4b", "openrouter/openai/gpt-4o-mini",
          "openrouter/openai/text-embedding-3-small", "opencode/glm-5.1",
          "opencode/claude-sonnet-4-6", "opencode/gpt-5.4", "kimi/kimi-for-coding"]
#: Names on OpenCode's Anthropic and Responses endpoints, which this fake does not serve
#: (their dialects' own tests drive them).
ELSEWHERE = ("opencode/claude-sonnet-4-6", "opencode/gpt-5.4")


async def test_openai_sdk_models_list_every_usable_name(tmp_path: Path) -> None:
    """Exactly the usable names, and each one is: retrievable, and answered when used."""
    async with stack(tmp_path) as s, s.openai() as client:
        ids = [m.id async for m in client.models.list()]
        assert ids == USABLE
        for name in ids:
            model = await client.models.retrieve(name)
            assert model.id == name
            if name in ELSEWHERE:
                continue
            r = await client.chat.completions.create(model=name, messages=MESSAGES)
            assert r.choices[0].finish_reason == "stop", name
        latest = await client.models.retrieve("smart:latest")
        assert (latest.id, latest.owned_by) == ("smart", "chatd")
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("ollama/")  # a prefix is not a model
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("openrouter/no-such")  # not a vendor/model id
    # One fetch of each upstream list served every call (cached).
    assert [c.path for c in s.local.calls if c.path == "/api/tags"] == ["/api/tags"]
    assert sorted(c.path for c in s.compat.calls if c.path.endswith("/models")) == [
        "/kimi/models", "/opencode/models", "/openrouter/models"]


# --- the ollama client ------------------------------------------------------------------

@pytest.mark.parametrize("name", list(ROUTES))
async def test_ollama_client_chat(tmp_path: Path, name: str) -> None:
    route = ROUTES[name]
    async with stack(tmp_path) as s, s.ollama() as client:
        r = await client.chat(model=route.model, messages=MESSAGES, stream=False,
                                  options={"num_predict": 64, "temperature": 0.1})
    assert r.model == route.model
    assert (r.message.role, r.message.content) == ("assistant", route.reply)
    assert (r.done, r.done_reason) == (True, "stop")
    assert r.eval_count == len(words(route.reply))
    assert r.total_duration is not None and r.total_duration > 0
    body = check_upstream(s, route, stream=False)
    if route.provider in KEYS:
        assert (body["max_tokens"], body["temperature"]) == (64, 0.1)


@pytest.mark.parametrize("name", list(ROUTES))
async def test_ollama_client_streamed_chat(tmp_path: Path, name: str) -> None:
    route = ROUTES[name]
    async with stack(tmp_path) as s, s.ollama() as client:
        parts = [p async for p in await client.chat(
            model=route.model, messages=MESSAGES, stream=True)]
    assert [p.message.content for p in parts[:-1]] == words(route.reply)
    assert not any(p.done for p in parts[:-1])
    last = parts[-1]
    assert (last.done, last.done_reason, last.message.content) == (True, "stop", "")
    assert last.eval_count == len(words(route.reply))
    check_upstream(s, route, stream=True)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("name", list(ROUTES))
async def test_ollama_client_generate(tmp_path: Path, name: str, stream: bool) -> None:
    route = ROUTES[name]
    async with stack(tmp_path) as s, s.ollama() as client:
        if stream:
            parts = [p async for p in await client.generate(
                model=route.model, prompt="Say hello", system="Be brief.", stream=True)]
            assert [p.response for p in parts[:-1]] == words(route.reply)
            last = parts[-1]
        else:
            last = await client.generate(model=route.model, prompt="Say hello",
                                         system="Be brief.")
            assert last.response == route.reply
    assert (last.done, last.done_reason) == (True, "stop")
    body = check_upstream(s, route, stream=stream)
    if route.provider == "ollama_cloud":
        assert (body["system"], body["prompt"]) == ("Be brief.", "Say hello")
    elif route.provider == "ollama":
        assert body["messages"] == [{"role": "system", "content": "Be brief."},
                                    {"role": "user", "content": "Say hello"}]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("name", TOOL_ROUTES)
async def test_ollama_client_tool_call(tmp_path: Path, name: str, stream: bool) -> None:
    """Tool calls reach an Ollama client whole, arguments as an object, whichever
    provider made them (OpenRouter streams them in fragments)."""
    route = ROUTES[name]
    async with stack(tmp_path) as s, s.ollama() as client:
        expected_args = (s.local if route.provider == "ollama" else s.compat).tool_arguments
        if stream:
            parts = [p async for p in await client.chat(
                model=route.model, messages=MESSAGES, tools=[TOOL], stream=True)]
            calls = [c for p in parts for c in p.message.tool_calls or ()]
            assert parts[-1].done
        else:
            r = await client.chat(model=route.model, messages=MESSAGES, tools=[TOOL])
            calls = list(r.message.tool_calls or ())
    [call] = calls
    assert call.function.name == "get_weather"
    assert dict(call.function.arguments) == expected_args


@pytest.mark.parametrize(("name", "field", "value"), JSON_MODE, ids=[j[0] for j in JSON_MODE])
async def test_ollama_client_json_format_reaches_the_upstream(
    tmp_path: Path, name: str, field: str, value: object
) -> None:
    route = ROUTES[name]
    async with stack(tmp_path) as s, s.ollama() as client:
        await client.chat(model=route.model, messages=MESSAGES, format="json")
        [body] = s.upstream_bodies(route.provider)
    assert body[field] == value


OLLAMA_ERRORS = [("kimi-k2.6:cloud", 404), ("busy:4b", 429), ("down:4b", 503),
                 ("broken:4b", 502), ("no-such-model:1b", 502), ("kimi/stall", 504),
                 ("ollama/", 400)]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(("model", "status"), OLLAMA_ERRORS, ids=[e[0] for e in OLLAMA_ERRORS])
async def test_ollama_client_raises_response_error(
    tmp_path: Path, model: str, status: int, stream: bool
) -> None:
    async with stack(tmp_path, cloud=False, local_failures=FAILURES,
                     compat_stall={"stall"}) as s, s.ollama() as client:
        with pytest.raises(ollama.ResponseError) as caught:
            result = await client.chat(model=model, messages=MESSAGES, stream=stream)
            if stream:
                async for _ in result:
                    pass
    assert caught.value.status_code == status
    assert caught.value.error and caught.value.error[0] != "{"  # the message, unwrapped


@pytest.mark.parametrize("name", ["ollama", "openrouter"])
async def test_ollama_client_mid_stream_failure_raises_after_the_deltas(
    tmp_path: Path, name: str
) -> None:
    route = ROUTES[name]
    async with stack(tmp_path, local_fail_midstream={LOCAL_MODEL},
                     compat_fail_midstream={route.upstream_model}) as s, \
            s.ollama() as client:
        seen: list[str] = []
        with pytest.raises(ollama.ResponseError) as caught:
            async for part in await client.chat(model=route.model, messages=MESSAGES,
                                                    stream=True):
                seen.append(part.message.content or "")
    assert seen == words(route.reply)[:1]
    assert caught.value.error


async def test_ollama_client_list_shows_every_usable_name(tmp_path: Path) -> None:
    """/api/tags: the same names, tiers also as ``<tier>:latest``; local entries whole."""
    async with stack(tmp_path) as s, s.ollama() as client:
        listed = await client.list()
    names = [m.model for m in listed.models]
    assert names == ["fast", "fast:latest", "smart", "smart:latest", *USABLE[2:]]
    local = listed.models[names.index("qwen3:4b")]
    assert local.details is not None
    assert local.details.family == "qwen3"  # the local entry, passed on whole
    assert local.size == 2_600_000_000
    assert [c.path for c in s.local.calls] == ["/api/tags"]


async def test_ollama_client_list_without_a_local_ollama_lists_the_rest(tmp_path: Path) -> None:
    """An unreachable list never fails the route: the others are still listed."""
    async with stack(tmp_path, local_url=f"http://127.0.0.1:{free_port()}") as s, \
            s.ollama() as client:
        with anyio.fail_after(3):
            listed = await client.list()
    names = [m.model for m in listed.models]
    assert names == ["fast", "fast:latest", "smart", "smart:latest",
                     *[n for n in USABLE[2:] if n not in ("llama3.2:1b", "qwen3:4b")]]


async def test_ollama_load_call_answers_without_an_upstream(tmp_path: Path) -> None:
    async with stack(tmp_path, cloud=False) as s, s.ollama() as client:
        r = await client.generate(model="qwen3:4b")
        assert (r.done, r.done_reason, r.response) == (True, "load", "")
        with pytest.raises(ollama.ResponseError) as caught:
            await client.generate(model="kimi-k2.6:cloud")  # routed even when loading
    assert caught.value.status_code == 404
    assert s.local.requests == []


# --- the wire: shapes a client library would hide -----------------------------------------

WIRE_ERRORS = [
    # (method, path, headers, body, status, shape)
    ("POST", "/v1/chat/completions", {}, b"{}", 401, "openai"),
    ("GET", "/v1/models", {}, b"", 401, "openai"),
    ("GET", "/v1/chat/completions", {"auth": "1"}, b"", 405, "openai"),
    ("GET", "/v1/models/no-such/model", {"auth": "1"}, b"", 404, "openai"),
    ("POST", "/v1/embeddings", {"auth": "1"}, b"{", 400, "openai"),
    ("POST", "/api/embed", {"auth": "1"}, b"[]", 400, "ollama"),
    ("POST", "/v1/chat/completions", {"auth": "1"}, b"x" * 70000, 413, "openai"),
    ("POST", "/v1/chat/completions", {"auth": "1"}, b"[1]", 400, "openai"),
    ("POST", "/api/chat", {}, b"{}", 401, "ollama"),
    ("GET", "/api/chat", {"auth": "1"}, b"", 405, "ollama"),
    ("GET", "/api/nope", {"auth": "1"}, b"", 404, "ollama"),
    ("POST", "/api/generate", {"auth": "1"}, b"x" * 70000, 413, "ollama"),
    ("POST", "/api/generate", {"auth": "1"}, b'{"model": "m", "raw": true}', 400, "ollama"),
    ("POST", "/v1/chat", {"auth": "1"}, b"x" * 70000, 413, "native"),
    ("GET", "/v1/nope", {"auth": "1"}, b"", 404, "native"),
]


@pytest.mark.parametrize(("method", "path", "headers", "body", "status", "shape"), WIRE_ERRORS,
                         ids=[f"{e[4]}-{e[0]}-{e[1]}" for e in WIRE_ERRORS])
async def test_errors_before_the_handler_take_the_door_s_shape(
    tmp_path: Path, method: str, path: str, headers: Mapping[str, str], body: bytes,
    status: int, shape: str,
) -> None:
    sent = {"Authorization": f"Bearer {TOKEN}"} if headers else {}
    async with stack(tmp_path) as s, s.http() as client:
        r = await client.request(method, path, content=body, headers=sent)
    assert r.status_code == status
    error = r.json()["error"]
    if shape == "openai":
        assert set(error) >= {"message", "type", "param", "code"}
        assert isinstance(error["message"], str) and error["message"]
    elif shape == "ollama":
        assert isinstance(error, str) and error
    else:
        assert set(error) >= {"type", "message"}
    if status == 405:
        assert r.headers["allow"] in ("POST", "GET")


async def test_version_and_stream_content_types(tmp_path: Path) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with stack(tmp_path) as s, s.http() as client:
        version = await client.get("/api/version", headers=auth)
        sse = await client.post("/v1/chat/completions", headers=auth, json={
            "model": "qwen3:4b", "messages": MESSAGES, "stream": True})
        ndjson = await client.post("/api/chat", headers=auth, json={
            "model": "qwen3:4b", "messages": MESSAGES})
    assert version.json() == {"version": "0.33.0"}
    assert sse.headers["content-type"] == "text/event-stream"
    assert sse.text.endswith("data: [DONE]\n\n")
    assert ndjson.headers["content-type"] == "application/x-ndjson"
    assert json.loads(ndjson.text.splitlines()[-1])["done"] is True


RETRY = [("busy:4b", 429, "7"), ("down:4b", 503, "3"), ("openrouter/vendor/busy", 429, "11")]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/chat", "/api/generate"])
@pytest.mark.parametrize(("model", "status", "retry_after"), RETRY, ids=[r[0] for r in RETRY])
async def test_retry_after_is_passed_on_by_both_doors(
    tmp_path: Path, model: str, status: int, retry_after: str, path: str, stream: bool
) -> None:
    """SPEC §4: 429 and 503 keep the upstream's Retry-After (the ollama client hides
    headers, so this is checked on the wire)."""
    body: dict[str, Any] = {"model": model, "stream": stream}
    body.update({"prompt": "hi"} if path == "/api/generate" else {"messages": MESSAGES})
    async with stack(tmp_path, local_failures=FAILURES,
                     compat_failures=COMPAT_FAILURES) as s, s.http() as client:
        r = await client.post(path, json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert (r.status_code, r.headers.get("retry-after")) == (status, retry_after)
    assert r.headers["x-request-id"]
    error = r.json()["error"]
    message = error if path.startswith("/api/") else error["message"]
    assert message == (FAILURES.get(model) or COMPAT_FAILURES[model.split("/", 1)[1]])[1]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(("effort", "think"), [("low", "low"), ("none", False),
                                               ("minimal", False), ("high", "high")])
async def test_openai_sdk_reasoning_effort_becomes_think_and_thinking_comes_back(
    tmp_path: Path, effort: str, think: object, stream: bool
) -> None:
    async with stack(tmp_path) as s, s.openai() as client:
        if stream:
            chunks = [c async for c in await client.chat.completions.create(
                model="qwen3:4b", messages=MESSAGES, reasoning_effort=cast(Any, effort),
                stream=True)]
            deltas = [c.choices[0].delta for c in chunks if c.choices]
            reasoning = "".join((d.model_extra or {}).get("reasoning_content") or ""
                                for d in deltas)
            content = "".join(d.content or "" for d in deltas)
        else:
            r = await client.chat.completions.create(
                model="qwen3:4b", messages=MESSAGES, reasoning_effort=cast(Any, effort))
            reasoning = (r.choices[0].message.model_extra or {}).get("reasoning_content") or ""
            content = r.choices[0].message.content or ""
    assert s.local.requests[-1]["think"] == think
    assert reasoning == (s.local.thinking if think else "")
    assert content == LOCAL_REPLY


async def test_ollama_client_think_brings_thinking_back(tmp_path: Path) -> None:
    async with stack(tmp_path) as s, s.ollama() as client:
        r = await client.chat(model="qwen3:4b", messages=MESSAGES, think=True)
        parts = [p async for p in await client.chat(model="ollama/qwen3:4b",
                                                    messages=MESSAGES, think="high",
                                                    stream=True)]
    assert (r.message.thinking, r.message.content) == (s.local.thinking, LOCAL_REPLY)
    assert [p.message.thinking for p in parts if p.message.thinking] == [s.local.thinking]
    assert [x["think"] for x in s.local.requests] == [True, "high"]
