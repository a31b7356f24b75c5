"""The Ollama and OpenAI-compatible fakes, answering like a model in an agent's loop.

Strategy: :class:`fake_ollama.FakeOllama` and :class:`fake_openai.FakeOpenAI` call the first
tool whenever tools are offered, which an agent that always offers tools (Claude Code sends
twelve) would follow forever. These subclasses decide as :class:`fake_anthropic.FakeAnthropic`
does, so every upstream family plays the same part in a two-turn tool round trip:

- the last turn (past any system messages) is a tool result -> text;
- tools are offered and the last user text holds ``trigger`` (or ``trigger`` is None) -> a
  call of the tool named ``tool_name`` (the first offered when absent);
- otherwise text.
"""

from __future__ import annotations

import json
from typing import Any

from fake_ollama import FakeOllama
from fake_openai import FakeOpenAI

__all__ = ["AgentOllama", "AgentOpenAI", "chosen_tool"]


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def chosen_tool(payload: dict[str, Any], trigger: str | None, tool_name: str | None
                ) -> str | None:
    """The tool an agent-loop model calls for an Ollama or OpenAI-shaped ``payload``."""
    tools = payload.get("tools") or []
    if not tools:
        return None
    messages = [m for m in payload.get("messages") or [] if m.get("role") != "system"]
    if not messages or messages[-1].get("role") == "tool":
        return None
    last_user = next((m for m in reversed(messages) if m.get("role") == "user"), None)
    if trigger is not None and (last_user is None
                                or trigger not in _text(last_user.get("content"))):
        return None
    names = [t["function"]["name"] for t in tools]
    return tool_name if tool_name in names else names[0]


class AgentOllama(FakeOllama):
    """:class:`FakeOllama` deciding tool calls by :func:`chosen_tool`."""

    def __init__(self, *args: Any, trigger: str | None = None, tool_name: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trigger = trigger
        self.tool_name = tool_name

    def _tool_call(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        name = chosen_tool(payload, self.trigger, self.tool_name)
        if name is None:
            return None
        return {"function": {"name": name, "arguments": self.tool_arguments}}


class AgentOpenAI(FakeOpenAI):
    """:class:`FakeOpenAI` deciding tool calls by :func:`chosen_tool`."""

    def __init__(self, *args: Any, trigger: str | None = None, tool_name: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trigger = trigger
        self.tool_name = tool_name

    def _call(self, payload: dict[str, Any]) -> tuple[str, str] | None:
        name = chosen_tool(payload, self.trigger, self.tool_name)
        if name is None:
            return None
        return name, json.dumps(self.tool_arguments)
