"""Providers defined in configuration (SPEC §1, §2, §5): one table, no code.

A real chatd in front of a real OpenAI-compatible fake on loopback: ``groq`` with a key and
``vllm`` without one (``key_env = ""``), each reached through every door, streamed and not;
then the chain's whole budget against targets that all hang.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from chatd_served import served
from fake_openai import REPLY, FakeOpenAI

from server.app import create_app
from server.config import ConfigError, load_config, register_providers

pytestmark = pytest.mark.anyio

GROQ_KEY = "gsk-fake-configured-5e6f"


@asynccontextmanager
async def chatd(tmp_path: Path, extra: str = "") -> AsyncIterator[tuple[str, FakeOpenAI]]:
    fake = FakeOpenAI(keys={"groq": GROQ_KEY}, flavors=("groq", "vllm"), stall={"hang"})
    async with anyio.create_task_group() as tg:
        await tg.start(fake.serve)
        config = load_config(f"""
[chatd]
ollama_url = "http://127.0.0.1:9"
timeout_secs = 5
{extra}
[chatd.providers.groq]
api = "openai_chat"
base_url = "{fake.base_url('groq')}"
key_env = "GROQ_API_KEY"
key_file = "{tmp_path / 'missing.env'}"
[chatd.providers.vllm]
api = "openai_chat"
base_url = "{fake.base_url('vllm')}"
key_env = ""
[models]
hanging = ["groq/hang", "vllm/hang", "groq/hang"]
""")
        app = create_app(config, environ={"GROQ_API_KEY": GROQ_KEY})
        assert {"groq", "vllm"} <= set(app.providers)
        async with served(app) as port:
            yield f"http://127.0.0.1:{port}", fake
        tg.cancel_scope.cancel()


def _content(door: str, body: bytes, stream: bool) -> str:
    """The answer text a client of ``door`` reads."""
    if not stream:
        obj = json.loads(body)
        if door == "native":
            return str(obj["content"])
        if door == "openai":
            return str(obj["choices"][0]["message"]["content"])
        return str(obj["message"]["content"])
    text = []
    for raw in body.splitlines():
        line = raw.removeprefix(b"data: ").strip()
        if not line or line == b"[DONE]":
            continue
        obj = json.loads(line)
        if door == "native":
            text.append(obj.get("content", ""))
        elif door == "openai":
            text.extend(c["delta"].get("content") or "" for c in obj["choices"])
        else:
            text.append(obj.get("message", {}).get("content", ""))
    return "".join(text)


DOORS = {"native": "/v1/chat", "openai": "/v1/chat/completions", "ollama": "/api/chat"}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("door", list(DOORS))
@pytest.mark.parametrize(("model", "flavor"), [("groq/llama-3.3-70b", "groq"),
                                               ("vllm/qwen3", "vllm")], ids=["keyed", "keyless"])
async def test_a_configured_provider_is_reached_through_every_door(
    tmp_path: Path, model: str, flavor: str, door: str, stream: bool
) -> None:
    async with chatd(tmp_path) as (url, fake), httpx.AsyncClient(base_url=url) as client:
        body: dict[str, Any] = {"model": model, "stream": stream,
                                "messages": [{"role": "user", "content": "hi"}]}
        resp = await client.post(DOORS[door], json=body)
        assert resp.status_code == 200, resp.text
        assert _content(door, resp.content, stream) == REPLY
    [sent] = fake.bodies(flavor)
    assert sent["model"] == model.partition("/")[2]
    auth = fake.last_call(flavor).headers.get("authorization")
    assert auth == (f"Bearer {GROQ_KEY}" if flavor == "groq" else None)


async def test_a_configured_provider_without_its_key_is_a_404_not_a_fall_through(
    tmp_path: Path
) -> None:
    config = load_config(f"""
[chatd.providers.groq]
api = "openai_chat"
base_url = "https://api.groq.com/openai/v1"
key_env = "GROQ_API_KEY"
key_file = "{tmp_path / 'missing.env'}"
""")
    regs = {r.name: r for r in register_providers(config, {})}
    assert not regs["groq"].registered
    app = create_app(config, environ={})
    async with served(app) as port, httpx.AsyncClient() as client:
        resp = await client.post(f"http://127.0.0.1:{port}/v1/chat", json={
            "model": "groq/llama", "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 404
    assert resp.json()["error"]["type"] == "provider_not_registered"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_a_chain_whose_targets_all_hang_answers_within_its_budget(
    tmp_path: Path, stream: bool
) -> None:
    """SPEC §5 chain_timeout_secs: three hanging targets with a 5 s timeout each answer a
    504 in about the chain's 0.6 s, not 15 s."""
    async with chatd(tmp_path, "chain_timeout_secs = 0.6") as (url, fake), \
            httpx.AsyncClient(base_url=url, timeout=10) as client:
        started = anyio.current_time()
        resp = await client.post("/v1/chat", json={
            "model": "hanging", "stream": stream,
            "messages": [{"role": "user", "content": "hi"}]})
        elapsed = anyio.current_time() - started
    assert resp.status_code == 504, resp.text
    assert resp.json()["error"]["type"] == "upstream_timeout"
    assert 0.5 <= elapsed < 2.0
    assert 1 <= len(fake.requests) <= 3


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[chatd.providers.groq]\nbase_url = "https://x"',
         "chatd.providers.groq: unknown provider"),
        ('[chatd.providers.groq]\napi = "openai_chat"',
         "chatd.providers.groq.base_url: required"),
        ('[chatd.providers.groq]\napi = "grpc"\nbase_url = "https://x"',
         "chatd.providers.groq.api: unknown api 'grpc'"),
        ('[chatd.providers.Groq]\napi = "openai_chat"\nbase_url = "https://x"',
         "chatd.providers.Groq: a provider name is"),
        ('[chatd.providers.mine]\napi = "openai_chat"\nbase_url = "https://x"\n'
         'prefix = "kimi/"', "providers 'kimi' and 'mine' have colliding model prefixes"),
        ('[chatd.providers.mine]\napi = "openai_chat"\nbase_url = "https://x"\n'
         'prefix = "openrouter/x/"', "'openrouter' and 'mine' have colliding"),
        ('[chatd.providers.kimi]\napi = "grpc"', "chatd.providers.kimi.api: unknown api"),
        ('[chatd.providers.mine]\napi = "openai_chat"\nbase_url = "https://x"\n'
         'prefix = "kimi-"', "chatd.providers.mine.prefix: must be non-empty"),
        ('[chatd.providers.mine]\napi = "openai_chat"\nbase_url = "https://u:p@x"\n'
         'key_env = "MINE_KEY"', "chatd.providers.mine.base_url: has credentials"),
        ('[chatd.providers.mine]\napi = "openai_chat"\nbase_url = "https://x"\n'
         'key_env = ""\nkey_file = "/etc/mine.env"', "chatd.providers.mine.key_file: is read"),
        ("[chatd]\ndefault_retry_after_secs = 1e300",
         "chatd.default_retry_after_secs: at most 86400 seconds"),
        ('[chatd.providers.kimi]\nforward_user_agent = "yes"',
         "chatd.providers.kimi.forward_user_agent: expected true or false, got string"),
        ("[chatd]\nchain_timeout_secs = 0", "chatd.chain_timeout_secs: must be a positive"),
        ('[chatd]\ndefault_retry_after_secs = "2"',
         "chatd.default_retry_after_secs: expected a number, got string"),
    ],
    ids=["no-api", "no-base-url", "bad-api", "bad-name", "prefix-equal", "prefix-inside",
         "bad-api-on-builtin", "prefix-ending", "userinfo-and-key", "key-file-alone",
         "retry-huge", "forward-type", "chain-zero", "retry-type"],
)
def test_bad_provider_tables_stop_startup_naming_the_key(toml: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(toml)
    assert message in str(info.value)


def test_a_configured_prefix_routes_and_tiers_may_name_it() -> None:
    config = load_config("""
[chatd.providers.lmstudio]
api = "openai_chat"
base_url = "http://127.0.0.1:1234/v1"
key_env = ""
prefix = "lm:"
[models]
local = ["lm:qwen3-8b", "ollama/qwen3:4b"]
""")
    from chatproto import resolve

    regs = register_providers(config, {})
    names = [r.name for r in regs if r.registered]
    assert names[-1] == "lmstudio"
    [route] = resolve("lm:qwen3-8b", names, profiles=config.profiles)
    assert (route.provider, route.upstream_model) == ("lmstudio", "qwen3-8b")
    assert [r.provider for r in resolve("local", names, config.tiers,
                                        profiles=config.profiles)] == ["lmstudio", "ollama"]


def test_kimi_may_speak_another_wire_format_as_spec_2_says() -> None:
    """SPEC §2: kimi "with api = ... and base_url = ..., its Anthropic endpoint"; any
    built-in table may name the api its base_url speaks."""
    config = load_config('[chatd.providers.kimi]\napi = "openai_chat"\n'
                         'base_url = "https://api.kimi.com/coding/v1"\n')
    row = next(r for r in config.profiles if r.name == "kimi")
    assert row.api == "openai_chat" and row.prefix == "kimi/"


def test_credentials_in_the_url_with_key_env_empty_register_the_provider() -> None:
    """The startup error for userinfo beside a key advises key_env = "": that works."""
    config = load_config('[chatd.providers.openrouter]\nkey_env = ""\n'
                         'base_url = "https://u:p@or.example/api/v1"\n')
    regs = {r.name: r for r in register_providers(config, {})}
    assert regs["openrouter"].registered and regs["openrouter"].provider is not None
    assert regs["openrouter"].provider.key is None
