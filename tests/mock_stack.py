"""chatd in-process over a :class:`~transports.MockTransport`: the configuration its tests
share and the app over a handler.

Strategy: the profile providers that read a key from this machine (Kimi, Ollama Cloud,
OpenRouter, OpenCode Zen) get key files that do not exist, so a test sees only the keys
its ``environ`` names, whatever the machine running it has configured; Kimi is at a
``.test`` address the handler answers for.
"""

from __future__ import annotations

from collections.abc import Mapping

from server.app import ChatdApp, create_app
from server.config import load_config
from transports import MockTransport

__all__ = ["SMART", "app_over", "config"]

#: A tier across two families, for the tests that route through one.
SMART = '[models]\nsmart = ["kimi/kimi-k2", "ollama/qwen3:4b"]\n'


def config(chatd: str = "", *, kimi: str = "", tables: str = "", models: str = SMART) -> str:
    """The configuration: ``chatd`` lines in ``[chatd]``, ``kimi`` lines in Kimi's table,
    then further ``tables`` and the ``models`` tiers."""
    return f"""
[chatd]
ollama_url = "http://ollama.test:11434"
{chatd}
[chatd.providers.kimi]
base_url = "https://kimi.test/v1"
key_file = "/nonexistent/kimi.env"
{kimi}
[chatd.providers.ollama_cloud]
key_file = "/nonexistent/ollama_cloud.env"
[chatd.providers.openrouter]
key_file = "/nonexistent/openrouter.env"
[chatd.providers.opencode]
key_file = "/nonexistent/opencode.env"
{tables}
{models}"""


def app_over(transport: MockTransport, text: str, environ: Mapping[str, str]) -> ChatdApp:
    """chatd configured by ``text``, keys from ``environ``, every upstream call answered by
    ``transport``."""
    return create_app(load_config(text), environ=environ, transport=lambda: transport)
