"""The built-in providers, one row each: everything chatd knows about a provider is here.

Strategy: a provider is data. Each row is a :class:`~chatproto.Provider` without a key;
routing reads the prefixes and model-name rules, configuration takes its defaults from
the rows (SPEC §5's provider tables equal them), the codecs read the quirk flags, and the
README's routing table lists them. A provider defined in configuration is one more row of
the same type, built by the server from its table. Adding an OpenAI-compatible provider is
one row here or one table in lakehouse.toml; no code reads a provider's name.
"""

from __future__ import annotations

from ._types import Provider

__all__ = ["DEFAULT_PROVIDER", "PROFILES", "profile"]

#: SPEC §1 rule 9: bare names and unknown prefixes go here. It is always registered.
DEFAULT_PROVIDER = "ollama"

PROFILES: tuple[Provider, ...] = (
    # SPEC §2: the local Ollama, POST {ollama_url}/api/chat, no auth. Its URL is
    # ``chatd.ollama_url``; ``/api/tags`` lists its models (providers.md §1.6).
    Provider(
        name="ollama", api="ollama_chat", base_url="http://127.0.0.1:11434",
        prefix="ollama/", list_models=True,
    ),
    # SPEC §2: Ollama Cloud. /api/generate with flattened messages, except that "a request
    # that carries tools or tool results goes to POST {base_url}/api/chat instead (Ollama
    # Cloud serves the local API, tools included)". Rule 4 strips a :cloud/-cloud tag,
    # rule 8 routes a bare <m>:cloud here (providers.md §2.2).
    Provider(
        name="ollama_cloud", api="ollama_generate", base_url="https://ollama.com",
        prefix="ollama_cloud/", key_env="OLLAMA_API_KEY",
        key_file="/etc/lakehouse/ollama_cloud.env", tools_api="ollama_chat",
        strip_cloud_tag=True, cloud_suffix=True,
    ),
    # OpenRouter: Chat Completions; ids are vendor/model (providers.md §4, rule 5);
    # reasoning control is its ``reasoning`` object (providers.md §4.2).
    Provider(
        name="openrouter", api="openai_chat", base_url="https://openrouter.ai/api/v1",
        prefix="openrouter/", key_env="OPENROUTER_API_KEY",
        key_file="/etc/lakehouse/openrouter.env", vendor_model_ids=True,
        reasoning_control="reasoning", extra_sampling=True, list_models=True,
    ),
    # OpenCode Zen serves each model on one wire format (SPEC §2, providers.md §5):
    # "claude-* -> POST {base_url}/messages (Anthropic Messages), gpt-* -> POST
    # {base_url}/responses (OpenAI Responses), every other model -> /chat/completions";
    # its chat bodies carry ``reasoning_effort``, which Zen itself reads (OC console
    # ``zen/util/provider/provider.ts``).
    Provider(
        name="opencode", api="openai_chat", base_url="https://opencode.ai/zen/v1",
        prefix="opencode/", key_env="OPENCODE_API_KEY",
        key_file="/etc/lakehouse/opencode.env",
        model_apis=(("claude-", "anthropic_messages"), ("gpt-", "openai_responses")),
        paths=(("anthropic_messages", "/messages"),),
        reasoning_control="effort", list_models=True,
    ),
    # Kimi For Coding: Chat Completions; ``thinking: {type}`` control and earlier
    # reasoning echoed as ``reasoning_content`` (providers.md §6.1, KC kosong kimi.py); it
    # admits only coding agents, so the client's User-Agent is forwarded (SPEC §2).
    Provider(
        name="kimi", api="openai_chat", base_url="https://api.kimi.com/coding/v1",
        prefix="kimi/", key_env="KIMI_API_KEY", key_file="/etc/lakehouse/kimi.env",
        reasoning_control="thinking", echo_reasoning=True, forward_user_agent=True,
        list_models=True,
    ),
)


def profile(name: str, profiles: tuple[Provider, ...] = PROFILES) -> Provider | None:
    """The row named ``name``, or None."""
    for row in profiles:
        if row.name == name:
            return row
    return None
