"""Real Claude Code through chatd: a plain answer and a full tool round trip, translated
(to the OpenAI-family and Ollama fakes) and on the same dialect (the Anthropic fake).

Claude Code 2.1.332 (npm ``@anthropic-ai/claude-code``, a native binary; ``.ci/run`` installs
it) runs headless as research/agents.md describes: ``claude -p … --output-format json``
with ``ANTHROPIC_BASE_URL`` pointing at a served chatd (:mod:`anthropic_stack`), telemetry,
non-essential traffic and the updater off, and a fresh ``HOME``. It sends what it sends
any gateway: seven betas, three system blocks with ``cache_control``, a ``role: "system"``
message for a model name it does not take for Claude, twelve tools (one deferred, with an
empty schema), thinking (adaptive, with an effort) and metadata. The fakes answer like a
model in an agent loop (:mod:`agent_fakes`): text, or, when the prompt says ``RUN_TOOL``, a
call of its Bash tool, and text once the result is back. The round trip proves itself: the
command prints ``chatd-tool-$((6 * 7))``, so ``chatd-tool-42`` in the second upstream
request can only be the output of a shell Claude Code ran.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import anyio
import pytest
from anthropic_stack import FAMILIES, KEYS, TOKEN, Family, Stack, stack

CLAUDE = shutil.which("claude")

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(CLAUDE is None, reason="Claude Code is not installed here (.ci/run "
                       "installs npm @anthropic-ai/claude-code@2.1.332)"),
]

COMMAND = "echo chatd-tool-$((6 * 7))"
OUTPUT = "chatd-tool-42"
TOOL_CALL = {"command": COMMAND, "description": "Print the marker"}
#: The fakes call Bash only when asked to: Claude Code offers tools with every request.
AGENT: dict[str, Any] = {f"{fake}_{k}": v for fake in ("local", "compat", "claude")
         for k, v in (("trigger", "RUN_TOOL"), ("tool_name", "Bash"),
                      ("tool_arguments", TOOL_CALL))}

#: Translated to Ollama and to the OpenAI family; Anthropic to Anthropic.
NAMES = ["ollama", "openrouter", "opencode"]


async def claude(s: Stack, tmp_path: Path, family: Family, prompt: str, *,
                 api_key: bool = False, env_over: dict[str, str | None] | None = None
                 ) -> dict[str, Any]:
    """Run ``claude -p`` against chatd; its JSON result. ``api_key`` sends chatd's token as
    ``ANTHROPIC_API_KEY`` (``x-api-key``) instead of ``ANTHROPIC_AUTH_TOKEN`` (Bearer);
    ``env_over`` sets (or, with None, removes) further variables."""
    assert CLAUDE is not None
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": s.url,
        "ANTHROPIC_MODEL": family.model,
        ("ANTHROPIC_API_KEY" if api_key else "ANTHROPIC_AUTH_TOKEN"): TOKEN,
        "DISABLE_TELEMETRY": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    for key, value in (env_over or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [CLAUDE, "-p", prompt, "--output-format", "json", "--allowedTools", "Bash",
             "--max-turns", "4"],
            env=env, cwd=tmp_path, check=False)
    assert done.returncode == 0, (done.stdout.decode()[-2000:], done.stderr.decode()[-2000:])
    result: dict[str, Any] = json.loads(done.stdout)
    assert result["is_error"] is False and result["subtype"] == "success", result
    return result


def text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") if isinstance(b, dict) else "" for b in content)
    return ""


@pytest.mark.parametrize("name", NAMES)
async def test_plain_answer(tmp_path: Path, name: str) -> None:
    family = FAMILIES[name]
    async with stack(tmp_path, **AGENT) as s:
        result = await claude(s, tmp_path, family, "Say hello in one line.",
                              api_key=name == "opencode")
        bodies = s.bodies(family.provider)
    assert result["result"] == family.reply
    assert result["num_turns"] == 1
    [body] = bodies
    assert body["model"] == family.upstream_model
    assert body["stream"] is True
    assert "Bash" in {t.get("name") or t["function"]["name"] for t in body["tools"]}
    if name == "opencode":
        # The same dialect: Claude Code's own body and betas, only the model rewritten.
        call = s.claude.calls[-1]
        assert call.headers["authorization"] == f"Bearer {KEYS['opencode']}"
        assert "claude-code-20250219" in call.headers["anthropic-beta"]
        assert body["thinking"]["type"] in ("enabled", "adaptive")
        assert body["system"][-1]["cache_control"] == {"type": "ephemeral"}
        assert any(t.get("defer_loading") for t in body["tools"])
        assert {m["role"] for m in body["messages"]} == {"user"}
        assert result["usage"]["cache_read_input_tokens"] == 100
    else:
        # Claude Code's system message inside messages stays a system message.
        assert [m["role"] for m in body["messages"]][:3] == ["system", "user", "system"]


@pytest.mark.parametrize("name", NAMES)
async def test_tool_round_trip(tmp_path: Path, name: str) -> None:
    family = FAMILIES[name]
    async with stack(tmp_path, **AGENT) as s:
        result = await claude(
            s, tmp_path, family,
            f"RUN_TOOL: run the shell command `{COMMAND}` and tell me what it printed")
        bodies = s.bodies(family.provider)
    assert result["num_turns"] == 2
    assert result["result"] == family.reply
    first, second = bodies
    history = second["messages"]
    if name == "opencode":
        [call] = [b for b in history[-2]["content"] if b["type"] == "tool_use"]
        assert (call["name"], call["input"]) == ("Bash", TOOL_CALL)
        [tool_result] = [b for b in history[-1]["content"] if b["type"] == "tool_result"]
        assert tool_result["tool_use_id"] == call["id"] == "toolu_fake_0001"
        assert OUTPUT in text_of(tool_result["content"])
        assert tool_result["is_error"] is False
        # The thinking block came back with its signature (the fake refuses it otherwise).
        assert history[-2]["content"][0]["type"] == "thinking"
        assert history[-2]["content"][0]["signature"]
    else:
        assistant, tool = history[-2], history[-1]
        [call] = assistant["tool_calls"]
        assert call["function"]["name"] == "Bash"
        arguments = call["function"]["arguments"]
        assert (json.loads(arguments) if isinstance(arguments, str) else arguments) == (
            TOOL_CALL)
        assert tool["role"] == "tool" and OUTPUT in tool["content"]
        if name == "ollama":
            assert tool["tool_name"] == "Bash"
            # Ollama gave no id: the Anthropic door named the call, Claude Code answered
            # that name, and the call and its result reach Ollama paired by it.
            assert tool["tool_call_id"] == call["id"]
            assert call["id"].startswith("toolu_")
        else:
            assert tool["tool_call_id"] == call["id"] == "call_fake_1"
    assert OUTPUT not in json.dumps(first)


async def test_gateway_model_discovery_reads_chatds_model_list(tmp_path: Path) -> None:
    """With gateway discovery on, Claude Code reads ``GET /v1/models`` (its own schema: a
    ``data`` array of ids and display names), keeps the Claude-like ids and caches them;
    the model list's Anthropic shape is what it validated."""
    family = FAMILIES["opencode"]
    async with stack(tmp_path, **AGENT) as s:
        await claude(s, tmp_path, family, "Say hello.", api_key=True, env_over={
            "CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY": "1",
            # Discovery is "non-essential traffic"; the network is local anyway.
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": None})
    cache = json.loads((tmp_path / "home/.claude/cache/gateway-models.json").read_text())
    assert cache["baseUrl"] == s.url
    assert cache["models"] == [{"id": family.model, "display_name": family.model}]
