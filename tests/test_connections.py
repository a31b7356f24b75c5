"""SPEC §5 ``max_connections`` on a real ``chatd serve``: a connection past the cap is
answered 503 at once (as soon as its request line names the door whose shape the answer
takes) and closed, and service resumes as soon as connections free up. The cap sits in
the serving process (server/process.py), so these run a subprocess, on both worker
classes."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest
from chatd_process import launch
from door_shapes import door_paths, error_type, request_body

from server.config import ChatdConfig
from server.process import (
    FD_RESERVE,
    MAX_LINGERING,
    effective_max_connections,
    request_path,
)

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


@pytest.mark.parametrize("worker_class", ["asyncio", "trio"])
def test_past_max_connections_each_door_answers_in_its_own_shape(
    tmp_path: Path, worker_class: str
) -> None:
    """SPEC §4: "Each door speaks its own error shape, for every status": the refusal
    reads the request line, and its path says which door; with Retry-After and
    x-should-retry as on every 503. A connection that sends no request line is answered
    in the native shape once the line has had its chance."""
    config = '[chatd]\nollama_url = "http://127.0.0.1:9"\nmax_connections = 2\n'
    answers: dict[str, tuple[bytes, float]] = {}
    with launch(tmp_path, config, "--worker-class", worker_class) as chatd:
        chatd.wait_ready()
        held = [hold(chatd.port) for _ in range(2)]
        time.sleep(0.5)
        for path in [*sorted(door_paths()), "/v1/messages/count_tokens", "silent"]:
            refused = socket.create_connection(("127.0.0.1", chatd.port))
            started = time.monotonic()
            if path != "silent":
                body = request_body(path if path in door_paths() else "/v1/messages",
                                    "m", False)
                refused.sendall(f"POST {path}?x=1 HTTP/1.1\r\nHost: x\r\nContent-Type: "
                                f"application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                                .encode() + body)
            answers[path] = read_answer(refused), time.monotonic() - started
            refused.close()
        for sock in held:
            sock.close()
        chatd.stop()
    wrong = []
    for path, (answer, took) in answers.items():
        head, _, body = answer.partition(b"\r\n\r\n")
        lower = head.lower()
        door = "/v1/chat" if path == "silent" else path  # no request line: native
        if door not in door_paths():
            door = "/v1/messages"  # a path under the Anthropic door's prefix
        try:
            assert head.startswith(b"HTTP/1.1 503 "), answer
            assert b"retry-after: 2\r\n" in lower and b"x-should-retry: true" in lower, head
            assert error_type(door, 503, body) == "overloaded", body
            assert b"max_connections" in body, body
            assert took < 2, took
        except (AssertionError, KeyError, ValueError) as exc:  # a reader's complaint
            wrong.append(f"{path}: {exc!r}")
    assert not wrong, "\n".join(wrong)
    assert chatd.code == 0, chatd.text()


@pytest.mark.parametrize(
    ("data", "path"),
    [(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\n", "/v1/messages"),
     (b"POST /v1/chat/completions?a=b HTTP/1.1\r\n", "/v1/chat/completions"),
     (b"POST http://chatd:3220/api/chat HTTP/1.1\r\n", "/api/chat"),
     (b"GET http://chatd HTTP/1.1\r\n", "/"),
     (b"POST /v1/messages HTTP/1.1\n", "/v1/messages"),
     (b"POST /v1/messages HTTP/1.1", None),  # the line is not complete yet
     (b"", None), (b"\r\n", None), (b"hello\r\n", None), (b"POST * HTTP/1.1\r\n", None),
     (b"POST /a b HTTP/1.1\r\n", None)],
)
def test_the_request_line_names_the_path(data: bytes, path: str | None) -> None:
    assert request_path(data) == path
