"""SIGTERM against a real ``chatd serve`` (SPEC §5 ``shutdown_grace_secs``), with one worker
and with two, on both worker classes.

Within the grace, in-flight calls finish as if nothing happened; past it, each is ended
in its dialect's way (503 ``shutting_down`` before the head; a stream's own error line,
and a properly terminated body, after it). Either way the process exits 0, logs no
traceback, and accepts no new connection once it has begun to stop.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from chatd_process import Chatd, launch
from fake_paced import PacedOllama, paced_ollama, wait_received

pytestmark = pytest.mark.slow

MODES = [("asyncio", 1), ("trio", 1), ("asyncio", 2), ("trio", 2)]
IDS = [f"{w}-{n}worker" for w, n in MODES]


@pytest.fixture(scope="module")
def upstream() -> Any:
    with paced_ollama() as fake:
        yield fake


def chat(chatd: Chatd, model: str, *, stream: bool, path: str = "/v1/chat"
         ) -> tuple[int, str]:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    with httpx.Client(timeout=30, trust_env=False) as client:
        response = client.post(chatd.url + path, json=body)
        return response.status_code, response.text  # a cut chunked body raises here


def start_calls(chatd: Chatd, upstream: PacedOllama, pool: ThreadPoolExecutor, model: str,
                count: int = 2) -> list[Future[tuple[int, str]]]:
    # A connection still in the listen backlog when the last worker closes its listener
    # is reset by the kernel: the calls go out once every worker accepts.
    chatd.wait_ready(chatd.workers)
    before = upstream.received
    calls = [pool.submit(chat, chatd, model, stream=stream)
             for stream in (False, True) for _ in range(count)]
    wait_received(upstream, before + len(calls))  # every call has reached the upstream
    return calls


def assert_clean_exit(chatd: Chatd) -> None:
    log = chatd.text()
    assert chatd.code == 0, log
    assert "Traceback" not in log and "CancelledError" not in log, log
    assert " ERROR " not in log, log


def refused(chatd: Chatd) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", chatd.port), timeout=1) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            return sock.recv(100) == b""
    except OSError:
        return True


@pytest.mark.parametrize(("worker_class", "workers"), MODES, ids=IDS)
def test_sigterm_lets_calls_finish_within_the_grace(
    tmp_path: Path, upstream: PacedOllama, worker_class: str, workers: int
) -> None:
    config = f'[chatd]\nollama_url = "{upstream.url}"\nshutdown_grace_secs = 20\n'
    with launch(tmp_path, config, "--worker-class", worker_class, "--workers",
                str(workers)) as chatd, ThreadPoolExecutor(8) as pool:
        chatd.workers = workers
        calls = start_calls(chatd, upstream, pool, "wait-4")  # 6 s calls: past hypercorn's 3 s
        started = time.monotonic()
        chatd.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert refused(chatd)
        results = [call.result(timeout=30) for call in calls]
        chatd.stop(timeout=30)
        assert time.monotonic() - started < 15
    for (status, text), stream in zip(results, (False, False, True, True), strict=True):
        assert status == 200, text
        if stream:
            last = json.loads(text.splitlines()[-1])
            assert last["done"] is True and last["finish_reason"] == "stop", text
        else:
            assert json.loads(text)["content"] == "slow answer"
    assert_clean_exit(chatd)


@pytest.mark.parametrize(("worker_class", "workers"), MODES, ids=IDS)
def test_sigterm_past_the_grace_ends_calls_in_their_dialect(
    tmp_path: Path, upstream: PacedOllama, worker_class: str, workers: int
) -> None:
    config = f'[chatd]\nollama_url = "{upstream.url}"\nshutdown_grace_secs = 1\n'
    with launch(tmp_path, config, "--worker-class", worker_class, "--workers",
                str(workers)) as chatd, ThreadPoolExecutor(8) as pool:
        chatd.workers = workers
        calls = start_calls(chatd, upstream, pool, "wait-30")
        before = upstream.received
        openai = pool.submit(chat, chatd, "wait-30", stream=True, path="/v1/chat/completions")
        wait_received(upstream, before + 1)
        started = time.monotonic()
        chatd.process.send_signal(signal.SIGTERM)
        results = [call.result(timeout=30) for call in calls]
        openai_status, openai_text = openai.result(timeout=30)
        chatd.stop(timeout=30)
        assert time.monotonic() - started < 10
    for (status, text), stream in zip(results, (False, False, True, True), strict=True):
        if stream:
            assert status == 200, text
            lines = [json.loads(line) for line in text.splitlines()]
            assert lines[0] == {"content": "first "}, text
            assert lines[-1]["done"] is True, text
            assert lines[-1]["error"]["type"] == "shutting_down", text
        else:
            assert status == 503, text
            assert json.loads(text)["error"]["type"] == "shutting_down", text
    assert openai_status == 200
    events = [line.removeprefix("data: ") for line in openai_text.splitlines() if line]
    assert events[-1] == "[DONE]", openai_text  # SPEC §4: an error chunk, then [DONE]
    assert json.loads(events[-2])["error"]["code"] == "shutting_down", openai_text
    assert_clean_exit(chatd)
