"""SPEC §5 ``max_connections`` on a real ``chatd serve``: a connection past the cap is
answered 503 at once (before its request is read) and closed, and service resumes as soon
as connections free up. The cap sits in the serving process (server/process.py), so these
run a subprocess, on both worker classes."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest
from chatd_process import launch

from server.config import ChatdConfig
from server.process import FD_RESERVE, MAX_LINGERING, effective_max_connections

pytestmark = pytest.mark.slow


def hold(port: int) -> socket.socket:
    """A connection whose request body never finishes (held until the body deadline)."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"POST /v1/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n{")
    return sock


def read_answer(sock: socket.socket, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            more = sock.recv(65536)
        except TimeoutError:
            return data
        if not more:
            return data
        data += more


@pytest.mark.parametrize("worker_class", ["asyncio", "trio"])
def test_past_max_connections_is_503_at_once_then_service_resumes(
    tmp_path: Path, worker_class: str
) -> None:
    config = '[chatd]\nollama_url = "http://127.0.0.1:9"\nmax_connections = 3\n'
    with launch(tmp_path, config, "--worker-class", worker_class) as chatd:
        chatd.wait_ready()
        held = [hold(chatd.port) for _ in range(3)]
        time.sleep(0.5)  # the three are in: their bodies are being read
        refused = socket.create_connection(("127.0.0.1", chatd.port))
        refused.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        answer = read_answer(refused)
        took = time.monotonic() - started
        refused.close()
        for sock in held:
            sock.close()
        time.sleep(0.5)
        after = httpx.get(f"{chatd.url}/healthz", timeout=5)
        chatd.stop()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 "), answer
    assert b"retry-after: 2" in head.lower() and b"x-should-retry: true" in head.lower()
    assert b'"type":"overloaded"' in body and b"max_connections" in body
    assert took < 2
    assert after.status_code == 200
    assert chatd.code == 0, chatd.text()
    assert "max_connections (3) reached" in chatd.text()


@pytest.mark.parametrize(
    ("wanted", "limit", "effective"),
    [(2048, 65536, 2048), (2048, 1024, 1), (2048, 4096, (4096 - FD_RESERVE - MAX_LINGERING) // 2),
     (10, None, 10)],
    ids=["room", "tiny-limit", "lowered", "no-limit"],
)
def test_max_connections_fits_the_descriptor_limit(
    wanted: int, limit: int | None, effective: int
) -> None:
    """Each admitted connection may hold an upstream socket too, and a refused one a
    descriptor while it lingers: the cap is lowered so the limit is never what refuses."""
    assert effective_max_connections(ChatdConfig(max_connections=wanted), limit) == effective
