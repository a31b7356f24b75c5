"""SPEC §6, the seed acceptance: a real ``chatd serve`` process against a fake Ollama.

chatd runs as a subprocess (``python -m server serve --bind 127.0.0.1:0``), once per
hypercorn worker class, in dev mode: no provider key in its environment and every
``key_file`` pointing at a file that does not exist, so only the local ``ollama`` is
registered. Its ``ollama_url`` points at :class:`FakeOllama`, a real HTTP server on
127.0.0.1:0 running in a thread of the test process, which records every body it got.
The test reads chatd's real port from its startup log line and talks plain HTTP to it.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from fake_ollama import DEFAULT_REPLY, FakeOllama, in_thread

REPO = Path(__file__).resolve().parent.parent
MODEL = "qwen3:4b"
KEY_VARS = ("OLLAMA_API_KEY", "OPENROUTER_API_KEY", "OPENCODE_API_KEY", "KIMI_API_KEY")
STARTUP_TIMEOUT = 15.0


@pytest.fixture(scope="module")
def fake_ollama() -> Iterator[FakeOllama]:
    with in_thread(FakeOllama(models=[MODEL])) as fake:
        yield fake


@dataclass
class Chatd:
    url: str
    process: subprocess.Popen[str]
    log: list[str] = field(default_factory=list)


def _drain(stream: object, lines: queue.Queue[str | None]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.put(line)
    lines.put(None)


@contextmanager
def launch(fake: FakeOllama, tmp: Path, *args: str) -> Iterator[Chatd]:
    """Run ``python -m server serve --bind 127.0.0.1:0 ARGS`` in dev mode against ``fake``;
    on exit, SIGTERM it and check that it stopped cleanly, without a traceback."""
    config = tmp / "lakehouse.toml"
    config.write_text(
        f'[chatd]\nollama_url = "{fake.url}"\n'
        + "".join(
            f'[chatd.providers.{name}]\nkey_file = "{tmp / "missing" / name}.env"\n'
            for name in ("ollama_cloud", "openrouter", "opencode", "kimi")
        )
    )
    env = {k: v for k, v in os.environ.items() if k not in KEY_VARS}
    env.pop("LAKEHOUSE_CONFIG", None)
    # Import chatd from this checkout, whatever an (editable) install last recorded.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    process = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--bind", "127.0.0.1:0",
         "--config", str(config), *args],
        cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_drain, args=(process.stderr, lines), daemon=True).start()
    server = Chatd(url="", process=process)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    try:
        while not server.url:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            if line is None:
                pytest.fail(f"chatd exited at startup:\n{''.join(server.log)}")
            server.log.append(line)
            if m := re.search(r"serving on (http://127\.0\.0\.1:\d+)", line):
                server.url = m.group(1)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code: int | None = process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            code = None
        while (line := lines.get(timeout=5)) is not None:
            server.log.append(line)
        assert process.stderr is not None
        process.stderr.close()
    assert code == 0, f"chatd did not stop cleanly on SIGTERM:\n{''.join(server.log)}"
    assert "Traceback" not in "".join(server.log), "".join(server.log)


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def chatd(request: pytest.FixtureRequest, fake_ollama: FakeOllama,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chatd]:
    tmp = tmp_path_factory.mktemp(f"chatd-{request.param}")
    with launch(fake_ollama, tmp, "--worker-class", request.param) as server:
        yield server


def post_chat(chatd: Chatd, body: object) -> httpx.Response:
    return httpx.post(f"{chatd.url}/v1/chat", json=body, timeout=10)


def messages(text: str = "Say hello in five words") -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_startup_log_names_bind_and_providers(chatd: Chatd) -> None:
    [line] = [x for x in chatd.log if "serving on" in x]
    assert line.rstrip().endswith("providers: ollama")
    not_registered = [x for x in chatd.log if "not registered" in x]
    assert len(not_registered) == 4  # one line per provider without a key


def test_1_providers_lists_exactly_the_registered(chatd: Chatd,
                                                   fake_ollama: FakeOllama) -> None:
    r = httpx.get(f"{chatd.url}/v1/chat/providers", timeout=10)
    assert r.status_code == 200
    assert r.json() == {"providers": [
        {"name": "ollama", "default": True, "base_url": fake_ollama.url, "api": "ollama_chat"}
    ]}


def test_2_bare_model_goes_to_local_ollama(chatd: Chatd, fake_ollama: FakeOllama) -> None:
    before = len(fake_ollama.requests)
    r = post_chat(chatd, {"model": MODEL, "messages": messages("one two three four")})
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["provider"], out["model"], out["upstream_model"]) == ("ollama", MODEL, MODEL)
    assert out["content"] == DEFAULT_REPLY
    assert out["finish_reason"] == "stop"
    words = len(DEFAULT_REPLY.split(" "))
    assert out["usage"] == {"prompt_tokens": 4, "completion_tokens": words,
                            "total_tokens": 4 + words}
    assert out["latency_ms"] > 0
    [sent] = fake_ollama.requests[before:]
    assert sent["model"] == MODEL
    assert sent["think"] is False  # SPEC §2: think defaults to false for ollama
    assert sent["stream"] is False


def test_2b_max_tokens_and_streaming(chatd: Chatd, fake_ollama: FakeOllama) -> None:
    r = post_chat(chatd, {"model": MODEL, "messages": messages(), "max_tokens": 3,
                          "stream": True})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert "".join(x.get("content", "") for x in lines[:-1]) == "Hello from the"
    assert lines[-1]["done"] is True
    assert lines[-1]["finish_reason"] == "length"
    assert lines[-1]["usage"]["completion_tokens"] == 3
    assert fake_ollama.requests[-1]["options"]["num_predict"] == 3


def test_3_ollama_prefix_is_stripped(chatd: Chatd, fake_ollama: FakeOllama) -> None:
    before = len(fake_ollama.requests)
    r = post_chat(chatd, {"model": f"ollama/{MODEL}", "messages": messages()})
    assert r.status_code == 200, r.text
    assert (r.json()["model"], r.json()["upstream_model"]) == (f"ollama/{MODEL}", MODEL)
    assert [x["model"] for x in fake_ollama.requests[before:]] == [MODEL]


def test_4_cloud_suffix_without_ollama_cloud_is_404(chatd: Chatd,
                                                    fake_ollama: FakeOllama) -> None:
    before = len(fake_ollama.requests)
    r = post_chat(chatd, {"model": "kimi-k2.6:cloud", "messages": messages()})
    assert r.status_code == 404
    error = r.json()["error"]
    assert (error["type"], error["provider"]) == ("provider_not_registered", "ollama_cloud")
    assert fake_ollama.requests[before:] == []  # no silent fall-through


def test_5_unknown_prefix_goes_to_default_and_404_becomes_502(
    chatd: Chatd, fake_ollama: FakeOllama
) -> None:
    before = len(fake_ollama.requests)
    r = post_chat(chatd, {"model": f"unknown/{MODEL}", "messages": messages()})
    assert r.status_code == 502
    error = r.json()["error"]
    assert (error["type"], error["provider"], error["upstream_status"]) == (
        "upstream_error", "ollama", 404)
    assert error["message"] == f"model 'unknown/{MODEL}' not found"
    assert [x["model"] for x in fake_ollama.requests[before:]] == [f"unknown/{MODEL}"]


def test_6_missing_model_is_400(chatd: Chatd, fake_ollama: FakeOllama) -> None:
    before = len(fake_ollama.requests)
    r = post_chat(chatd, {"messages": messages()})
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request"
    assert "model" in r.json()["error"]["message"]
    assert fake_ollama.requests[before:] == []


def test_health_and_metrics(chatd: Chatd) -> None:
    assert httpx.get(f"{chatd.url}/healthz", timeout=10).json() == {"status": "ok"}
    r = httpx.get(f"{chatd.url}/metrics", timeout=10)
    assert r.status_code == 200
    assert 'chatd_upstream_requests_total{provider="ollama"}' in r.text


@pytest.mark.parametrize("worker_class", ["asyncio", "trio"])
def test_several_workers(fake_ollama: FakeOllama, tmp_path: Path, worker_class: str) -> None:
    """``--workers 2``: hypercorn's supervisor spawns workers that rebuild the app from the
    config path and transport passed through their environment."""
    with launch(fake_ollama, tmp_path, "--workers", "2", "--worker-class", worker_class,
                "--transport", "httpx") as server:
        for _ in range(4):
            r = httpx.post(f"{server.url}/v1/chat", json={"model": MODEL,
                                                          "messages": messages()},
                           timeout=STARTUP_TIMEOUT)
            assert (r.status_code, r.json()["content"]) == (200, DEFAULT_REPLY)
    assert "2 workers, httpx transport" in "".join(server.log)
