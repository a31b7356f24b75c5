"""A served chatd in front of one fake of every upstream family, for the clients that
speak Anthropic Messages to it (the ``anthropic`` SDK, Claude Code).

Strategy: one stack, so the SDK tests and the Claude Code tests meet the same upstreams:
a local Ollama and an Ollama Cloud (:class:`AgentOllama`), an OpenAI-compatible OpenRouter
and Kimi (:class:`AgentOpenAI`), and OpenCode Zen's ``claude-*`` models on Anthropic
Messages (:class:`FakeAnthropic`, at ``/zen/v1/messages`` as the real one), which also
plays Kimi's Anthropic endpoint (``kimi_anthropic/<m>``, a provider defined in the
configuration with ``api = "anthropic_messages"``, at ``/coding/v1/messages``). chatd runs
in-process (hypercorn on 127.0.0.1:0, the test's event loop) with client auth on; every
streamed upstream body is cut at awkward points. :data:`FAMILIES` names the model a client
sends for each family and what that upstream answers.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import anyio
from agent_fakes import AgentOllama, AgentOpenAI
from chatd_served import served
from fake_anthropic import REPLY as CLAUDE_REPLY
from fake_anthropic import FakeAnthropic
from fake_openai import REPLY as COMPAT_REPLY

from server.app import ChatdApp, create_app
from server.config import load_config

__all__ = ["CLOUD_KEY", "FAMILIES", "KEYS", "TOKEN", "Family", "Stack", "stack", "tls"]

TOKEN = "chatd-client-token-5e7a"
CLOUD_KEY = "ollama-cloud-key-77aa"
KEYS = {"openrouter": "sk-or-v1-fake-9c0e", "kimi": "sk-kimi-fake-3c4d",
        "opencode": "sk-zen-fake-1a2b"}
LOCAL_REPLY = "Hej från den lokala Ollama — ça marche 🙂 !"
CLOUD_REPLY = "Cloud says こんにちは, über alles ☁️ ok"


@dataclass(frozen=True)
class Family:
    """A model name a client sends, the provider and upstream model it reaches, and what
    that upstream answers."""

    model: str
    provider: str
    upstream_model: str
    reply: str


FAMILIES = {
    "ollama": Family("ollama/qwen3:4b", "ollama", "qwen3:4b", LOCAL_REPLY),
    "ollama_cloud": Family("kimi-k2.6:cloud", "ollama_cloud", "kimi-k2.6", CLOUD_REPLY),
    "openrouter": Family("openrouter/moonshotai/kimi-k2", "openrouter", "moonshotai/kimi-k2",
                         COMPAT_REPLY),
    "opencode": Family("opencode/claude-sonnet-4-6", "opencode", "claude-sonnet-4-6",
                       CLAUDE_REPLY),
}


@functools.cache
def tls() -> ssl.SSLContext:
    return ssl.create_default_context()


@dataclass
class Stack:
    port: int
    app: ChatdApp
    local: AgentOllama
    cloud: AgentOllama
    compat: AgentOpenAI
    claude: FakeAnthropic

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, *, bearer: bool = False, retries: int = 0) -> anthropic.AsyncAnthropic:
        auth: dict[str, Any] = {"auth_token": TOKEN} if bearer else {"api_key": TOKEN}
        return anthropic.AsyncAnthropic(
            base_url=self.url, max_retries=retries, timeout=10,
            http_client=anthropic.DefaultAsyncHttpxClient(verify=tls()), **auth)

    def bodies(self, provider: str) -> list[dict[str, Any]]:
        """What the family's upstream received, oldest first."""
        if provider == "ollama":
            return self.local.requests
        if provider == "ollama_cloud":
            return self.cloud.requests
        if provider == "opencode":
            return self.claude.requests
        return self.compat.bodies(provider)


@asynccontextmanager
async def stack(tmp_path: Path, *, cloud_key: bool = True, **fakes: Any
                ) -> AsyncIterator[Stack]:
    """The fakes and chatd, serving until the block ends; ``local_*``, ``compat_*`` and
    ``claude_*`` keyword arguments go to those fakes. ``cloud_key=False`` leaves Ollama
    Cloud unregistered."""
    def of(prefix: str) -> dict[str, Any]:
        return {k[len(prefix):]: v for k, v in fakes.items() if k.startswith(prefix)}

    local = AgentOllama(["qwen3:4b"], LOCAL_REPLY, awkward=True, **of("local_"))
    cloud = AgentOllama(["kimi-k2.6"], CLOUD_REPLY, key=CLOUD_KEY, awkward=True)
    compat = AgentOpenAI(keys=KEYS, **of("compat_"))
    claude = FakeAnthropic(key=KEYS["opencode"], **of("claude_"))
    key_file = tmp_path / "ollama_cloud.env"
    if cloud_key:
        key_file.write_text(f"OLLAMA_API_KEY={CLOUD_KEY}\n")
    async with anyio.create_task_group() as tg:
        for fake in (local, cloud, compat, claude):
            await tg.start(fake.serve)
        config = load_config(f"""
[chatd]
ollama_url = "{local.url}"
timeout_secs = 5
auth_token_env = "CHATD_TOKEN"
[chatd.providers.ollama_cloud]
base_url = "{cloud.url}"
key_file = "{key_file}"
[chatd.providers.openrouter]
base_url = "{compat.base_url('openrouter')}"
key_file = "{tmp_path / 'missing.env'}"
[chatd.providers.kimi]
base_url = "{compat.base_url('kimi')}"
key_file = "{tmp_path / 'missing.env'}"
[chatd.providers.opencode]
base_url = "{claude.url}/zen/v1"
key_file = "{tmp_path / 'missing.env'}"
[chatd.providers.kimi_anthropic]
api = "anthropic_messages"
base_url = "{claude.url}/coding"
key_env = "KIMI_ANTHROPIC_KEY"
forward_user_agent = true
[models]
smart = ["opencode/claude-sonnet-4-6", "ollama/qwen3:4b"]
""")
        environ = {"CHATD_TOKEN": TOKEN, "OPENROUTER_API_KEY": KEYS["openrouter"],
                   "KIMI_API_KEY": KEYS["kimi"], "OPENCODE_API_KEY": KEYS["opencode"],
                   # Kimi's Anthropic endpoint, played by the same fake (one key).
                   "KIMI_ANTHROPIC_KEY": KEYS["opencode"]}
        app = create_app(config, environ=environ)
        async with served(app) as port:
            yield Stack(port, app, local, cloud, compat, claude)
        tg.cancel_scope.cancel()
