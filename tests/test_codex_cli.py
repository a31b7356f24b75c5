"""The real Codex CLI (npm ``@openai/codex``) through chatd's ``/v1/responses``.

Codex speaks only the Responses API (``wire_api = "chat"`` is refused at load), so this is
the door's strongest test: the agent's own binary, pointed at a running chatd with a
custom provider as research/agents.md describes (``CODEX_HOME/config.toml``:
``model_provider``, ``base_url``, ``env_key``, ``wire_api = "responses"``), running
``codex exec --json`` headless. Behind chatd, fake upstreams that are real servers on
loopback, one per family: Chat Completions (OpenRouter, :class:`FakeOpenAI`), Ollama
(:class:`FakeOllama`), and Responses itself (OpenCode Zen ``gpt-*``,
:class:`FakeResponses`), the same dialect relayed losslessly.

Each family gets a plain answer and a full ``exec_command`` round trip: the fake calls the
tool, Codex really runs ``echo hi`` and sends its output back, and the second upstream
request must carry it (as ``function_call_output``, or the upstream dialect's tool
message). And Codex's error handling: a model chatd cannot route fails after one request
(``code: model_not_found``), and a 429 that named no wait is retried after chatd's
``default_retry_after_secs`` (without a ``Retry-After`` Codex would give up at once).

Skipped, saying so, only when the ``codex`` binary is absent; ``.ci/run`` installs it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from chatd_served import served
from fake_ollama import FakeOllama
from fake_openai import FakeOpenAI
from fake_responses import REPLY as RESPONSES_REPLY
from fake_responses import FakeResponses

from server.app import ChatdApp, create_app
from server.config import load_config

CODEX = shutil.which("codex")

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(CODEX is None, reason="the Codex CLI is not installed (npm i -g "
                       "@openai/codex@0.171.0; .ci/run installs it)"),
]

TOKEN = "chatd-token-for-codex"
OPENROUTER_KEY = "sk-or-fake-codex"
ZEN_KEY = "sk-zen-fake-codex"
LOCAL_REPLY = "Hello from the local Ollama."
CHAT_REPLY = "Grüße aus Tōkyō — 東京から 🙂 done."
TRIGGER = "RUN_TOOL"
TOOL_PROMPT = f"{TRIGGER}: please run the shell command `echo hi` and tell me what it printed"


@dataclass(frozen=True)
class Family:
    model: str
    reply: str


FAMILIES = {
    "chat": Family("openrouter/moonshotai/kimi-k2", CHAT_REPLY),
    "ollama": Family("ollama/qwen3:4b", LOCAL_REPLY),
    "responses": Family("opencode/gpt-5.1", RESPONSES_REPLY),
}


@dataclass
class Stack:
    port: int
    app: ChatdApp
    local: FakeOllama
    chat: FakeOpenAI
    responses: FakeResponses

    def bodies(self, family: str) -> list[dict[str, Any]]:
        if family == "chat":
            return self.chat.bodies("openrouter")
        if family == "ollama":
            return self.local.requests
        return self.responses.requests


@asynccontextmanager
async def stack(tmp_path: Path, *, rate_limited: int = 0) -> AsyncIterator[Stack]:
    args = {"cmd": "echo hi"}
    local = FakeOllama(["qwen3:4b"], LOCAL_REPLY, tool_arguments=args, tool_trigger=TRIGGER)
    chat = FakeOpenAI(keys={"openrouter": OPENROUTER_KEY}, tool_arguments=args,
                      tool_trigger=TRIGGER)
    responses = FakeResponses(key=ZEN_KEY, tool_arguments=args, tool_trigger=TRIGGER,
                              rate_limited=rate_limited)
    missing = tmp_path / "missing.env"
    async with anyio.create_task_group() as tg:
        for fake in (local, chat, responses):
            await tg.start(fake.serve)
        config = load_config(f"""
[chatd]
ollama_url = "{local.url}"
timeout_secs = 10
auth_token_env = "CHATD_TOKEN"
default_retry_after_secs = 1
[chatd.providers.openrouter]
base_url = "{chat.base_url('openrouter')}"
key_file = "{missing}"
[chatd.providers.opencode]
base_url = "{responses.base_url}"
key_file = "{missing}"
[chatd.providers.ollama_cloud]
base_url = "http://127.0.0.1:9"
key_file = "{missing}"
""")
        app = create_app(config, environ={"CHATD_TOKEN": TOKEN,
                                          "OPENROUTER_API_KEY": OPENROUTER_KEY,
                                          "OPENCODE_API_KEY": ZEN_KEY})
        async with served(app) as port:
            yield Stack(port, app, local, chat, responses)
        tg.cancel_scope.cancel()


@dataclass
class Run:
    returncode: int
    events: list[dict[str, Any]]
    stderr: str

    def items(self, kind: str) -> list[dict[str, Any]]:
        return [e["item"] for e in self.events
                if e.get("type") == "item.completed" and e["item"].get("type") == kind]


async def codex(s: Stack, tmp_path: Path, model: str, prompt: str) -> Run:
    """``codex exec --json`` with a custom provider pointing at chatd; its JSON events."""
    assert CODEX is not None
    home = tmp_path / "codex-home"
    home.mkdir(exist_ok=True)
    (home / "config.toml").write_text(f"""
model = "{model}"
model_provider = "chatd"

[model_providers.chatd]
name = "chatd"
base_url = "http://127.0.0.1:{s.port}/v1"
env_key = "CHATD_TOKEN"
wire_api = "responses"
""")
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           "CODEX_HOME": str(home), "CHATD_TOKEN": TOKEN, "NO_COLOR": "1",
           "NO_PROXY": "127.0.0.1,localhost"}
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [CODEX, "exec", "--skip-git-repo-check", "--json", "-s", "danger-full-access",
             prompt],
            env=env, cwd=work, check=False, stdin=subprocess.DEVNULL)
    events = [json.loads(line) for line in done.stdout.decode().splitlines()
              if line.startswith("{")]
    return Run(done.returncode, events, done.stderr.decode(errors="replace"))


def answered(run: Run, reply: str) -> None:
    assert run.returncode == 0, (run.events, run.stderr[-2000:])
    assert [m["text"] for m in run.items("agent_message")] == [reply]
    assert run.events[-1]["type"] == "turn.completed"


@pytest.mark.parametrize("family", list(FAMILIES))
async def test_plain_answer(tmp_path: Path, family: str) -> None:
    f = FAMILIES[family]
    async with stack(tmp_path) as s:
        run = await codex(s, tmp_path, f.model, "Say hello in German.")
        [body] = s.bodies(family)
    answered(run, f.reply)
    assert run.items("command_execution") == []
    text = json.dumps(body, ensure_ascii=False)
    assert "Say hello in German." in text
    if family == "responses":
        # The same dialect: Codex's own body, hosted and namespaced tools included.
        assert body["model"] == "gpt-5.1"
        kinds = [t["type"] for t in body["tools"]]
        assert "web_search" in kinds and "namespace" in kinds
        assert "client_metadata" in body and body["store"] is False
    else:
        names = [t["function"]["name"] for t in body["tools"]]
        assert "exec_command" in names
        assert any("__" in n for n in names)  # Codex's namespace group, flattened
        assert "web_search" not in text.replace("web_search_", "")


@pytest.mark.parametrize("family", list(FAMILIES))
async def test_exec_command_round_trip(tmp_path: Path, family: str) -> None:
    """The model asks for ``exec_command``; Codex runs ``echo hi`` and sends the output
    back; the upstream's second request carries it, and the final answer comes through."""
    f = FAMILIES[family]
    async with stack(tmp_path) as s:
        run = await codex(s, tmp_path, f.model, TOOL_PROMPT)
        bodies = s.bodies(family)
    answered(run, f.reply)
    [command] = run.items("command_execution")
    assert "echo hi" in command["command"]
    assert (command["exit_code"], command["aggregated_output"]) == (0, "hi\n")
    assert len(bodies) == 2
    second = bodies[1]
    if family == "responses":
        *_, reasoning, call, output = second["input"]
        assert (call["type"], call["call_id"], call["name"]) == (
            "function_call", "call_fake1", "exec_command")
        assert (output["type"], output["call_id"]) == ("function_call_output", "call_fake1")
        assert "hi" in output["output"]
        # Reasoning went out with its encrypted content and came back with it unchanged.
        assert (reasoning["type"], reasoning["encrypted_content"]) == (
            "reasoning", "gAAAA-fake-encrypted-1")
        return
    *_, assistant, result = second["messages"]
    [call] = assistant["tool_calls"]
    assert call["function"]["name"] == "exec_command"
    assert result["role"] == "tool" and "hi" in result["content"]
    if family == "chat":
        assert call["id"] == result["tool_call_id"] == "call_fake_1"


async def test_a_model_chatd_cannot_route_fails_after_one_request(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Codex retries a 404 five times unless its code is ``model_not_found``."""
    caplog.set_level(logging.INFO, logger="chatd.app")
    async with stack(tmp_path) as s:
        started = anyio.current_time()
        run = await codex(s, tmp_path, "kimi-k2.6:cloud", "Say hello.")
        took = anyio.current_time() - started
    refused = [r for r in caplog.records if "POST /v1/responses -> 404" in r.getMessage()]
    assert len(refused) == 1
    assert run.returncode != 0
    assert "ollama_cloud" in run.events[-1]["error"]["message"]
    assert took < 15


async def test_a_rate_limit_that_names_no_wait_is_retried(tmp_path: Path) -> None:
    """chatd adds ``Retry-After: <default_retry_after_secs>`` to the upstream's bare 429;
    Codex waits and retries instead of failing at once."""
    async with stack(tmp_path, rate_limited=1) as s:
        run = await codex(s, tmp_path, FAMILIES["responses"].model, "Say hello.")
        assert len(s.responses.requests) == 2
    answered(run, RESPONSES_REPLY)
