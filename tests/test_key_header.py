"""``key_header`` on a provider table: the key where the upstream reads it.

Anthropic's own API takes an API key in ``x-api-key`` only (``Authorization: Bearer``
carries OAuth tokens there), so a provider with ``api = "anthropic_messages"`` pointed at
it needs ``key_header = "x-api-key"``. A real chatd in front of a :class:`FakeAnthropic`
that is as strict as that, reached from the Anthropic door (same dialect) and the OpenAI
door (across), whole and streamed; without the setting the same fake refuses the key.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from chatd_served import served
from fake_anthropic import REPLY, FakeAnthropic

from server.config import ConfigError, load_config

pytestmark = pytest.mark.anyio

KEY = "sk-ant-api03-fake-key-header-7d1e"


@asynccontextmanager
async def chatd(key_header: str) -> AsyncIterator[tuple[httpx.AsyncClient, FakeAnthropic]]:
    fake = FakeAnthropic(key=KEY, key_header="x-api-key")
    async with anyio.create_task_group() as tg:
        await tg.start(fake.serve)
        config = load_config(f"""
[chatd]
ollama_url = "http://127.0.0.1:9"
[chatd.providers.claude]
api = "anthropic_messages"
base_url = "{fake.url}"
key_env = "ANTHROPIC_API_KEY"
{key_header}
""")
        from server.app import create_app

        app = create_app(config, environ={"ANTHROPIC_API_KEY": KEY})
        async with served(app) as port, httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client, fake
        tg.cancel_scope.cancel()


def _text(path: str, body: bytes, stream: bool) -> str:
    """The answer text a client of the door at ``path`` reads."""
    if not stream:
        obj = json.loads(body)
        if path == "/v1/messages":
            return "".join(b["text"] for b in obj["content"] if b["type"] == "text")
        return str(obj["choices"][0]["message"]["content"])
    out = []
    for raw in body.splitlines():
        if not raw.startswith(b"data: ") or raw == b"data: [DONE]":
            continue
        obj = json.loads(raw[6:])
        if path == "/v1/messages":
            if obj["type"] == "content_block_delta" and obj["delta"]["type"] == "text_delta":
                out.append(obj["delta"]["text"])
        else:
            out.extend(c["delta"].get("content") or "" for c in obj["choices"])
    return "".join(out)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("path", ["/v1/messages", "/v1/chat/completions"],
                         ids=["same-dialect", "across"])
async def test_the_key_goes_in_x_api_key_where_configured(path: str, stream: bool) -> None:
    body: dict[str, Any] = {"model": "claude/claude-sonnet-4-6", "max_tokens": 64,
                            "stream": stream,
                            "messages": [{"role": "user", "content": "hi"}]}
    # Written as an operator might: header names are compared lower-case.
    async with chatd('key_header = "X-Api-Key"') as (client, fake):
        resp = await client.post(path, json=body)
    assert resp.status_code == 200, resp.text
    assert _text(path, resp.content, stream) == REPLY
    [call] = [c for c in fake.calls if c.path.endswith("/messages")]
    assert call.headers["x-api-key"] == KEY
    assert "authorization" not in call.headers  # the key is sent once, where it is read
    assert KEY not in resp.text


async def test_without_it_the_key_is_a_bearer_token_which_anthropic_refuses() -> None:
    """The default (SPEC §2: Bearer) against the same strict upstream: refused, so the
    setting is what makes the call work."""
    async with chatd("") as (client, fake):
        resp = await client.post("/v1/messages", json={
            "model": "claude/claude-sonnet-4-6", "max_tokens": 64,
            "messages": [{"role": "user", "content": "hi"}]})
    # An upstream's 401 is chatd's configuration at fault, not the client's: a 502.
    assert resp.status_code == 502, resp.text
    assert resp.json()["error"]["upstream_status"] == 401
    [call] = fake.calls
    assert call.headers["authorization"] == f"Bearer {KEY}"
    assert "x-api-key" not in call.headers
    assert KEY not in resp.text


def test_kimi_on_its_anthropic_endpoint_may_send_x_api_key() -> None:
    """providers.md §6.2: Kimi's Anthropic endpoint documents ``x-api-key``."""
    config = load_config('[chatd.providers.kimi]\napi = "anthropic_messages"\n'
                         'base_url = "https://api.kimi.com/coding"\nkey_header = "x-api-key"\n')
    rows = {r.name: r for r in config.profiles}
    assert rows["kimi"].key_header == "x-api-key"
    assert rows["openrouter"].key_header == "authorization"  # the others keep the default


CLAUDE = '[chatd.providers.claude]\napi = "anthropic_messages"\nbase_url = "https://x"\n'


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (CLAUDE + "key_header = 1", "chatd.providers.claude.key_header: expected a string"),
        (CLAUDE + 'key_header = "x api key"',
         "chatd.providers.claude.key_header: not a valid HTTP header name"),
        (CLAUDE + 'key_header = "x-api-key\\r\\nx-forged: 1"',
         "chatd.providers.claude.key_header: not a valid HTTP header name"),
        (CLAUDE + 'key_header = ""', "chatd.providers.claude.key_header: not a valid"),
        (CLAUDE + 'key_header = "api-key"',
         "chatd.providers.claude.key_header: chatd sends a key as one of: authorization, "
         "x-api-key; got 'api-key'"),
        ('[chatd.providers.openrouter]\nkey_header = "x-api-key"',
         "chatd.providers.openrouter.key_header: 'x-api-key' is read by the "
         "anthropic_messages wire format only; this provider's api is 'openai_chat'"),
        ('[chatd.providers.groq]\napi = "openai_chat"\nbase_url = "https://x"\n'
         'key_header = "x-api-key"', "chatd.providers.groq.key_header: 'x-api-key' is read"),
        ('[chatd.providers.ollama]\nkey_header = "x-api-key"',
         "chatd.providers.ollama.key_header: unknown key"),
    ],
    ids=["type", "space", "crlf", "empty", "unsupported", "builtin-openai", "configured-openai",
         "ollama-has-no-key"],
)
def test_a_bad_key_header_stops_startup_naming_the_key(toml: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(toml)
    assert message in str(info.value)


def test_authorization_is_accepted_on_any_provider() -> None:
    config = load_config('[chatd.providers.openrouter]\nkey_header = "Authorization"\n')
    row = next(r for r in config.profiles if r.name == "openrouter")
    assert row.key_header == "authorization"
