"""``chatd serve --workers 2``: each worker its own SO_REUSEPORT socket; one scrape for all.

A real supervisor and its workers against a fake Ollama. Many keep-alive connections
opened at once must be served by both workers (with one shared socket, one worker took
them all in most runs); a scrape, whichever worker answers it, counts every worker's
requests; and the port is refused to a second chatd as a plain bind would refuse it.
Graceful shutdown with two workers (SIGTERM, in-flight calls finish) is
tests/test_shutdown.py, which runs every case with one worker and with two.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from chatd_process import launch
from fake_ollama import DEFAULT_REPLY, FakeOllama, in_thread

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="SO_REUSEPORT balances on Linux only")

MODEL = "qwen3:4b"
CONNECTIONS = 32
PER_CONNECTION = 3


@pytest.fixture(scope="module")
def fake_ollama() -> Iterator[FakeOllama]:
    with in_thread(FakeOllama(models=[MODEL])) as fake:
        yield fake


def samples(text: str) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines() if line and not line.startswith("#")
    }


@pytest.mark.parametrize("worker_class", ["asyncio", "trio"])
def test_connections_opened_at_once_reach_both_workers_and_one_scrape_counts_all(
    tmp_path: Path, fake_ollama: FakeOllama, worker_class: str
) -> None:
    config = f'[chatd]\nollama_url = "{fake_ollama.url}"\nlog_format = "json"\n'
    with launch(tmp_path, config, "--workers", "2", "--worker-class", worker_class) as chatd:
        chatd.wait_ready(2)
        start = threading.Barrier(CONNECTIONS)
        failures: list[str] = []

        def client() -> None:
            with httpx.Client(timeout=30, trust_env=False) as http:
                start.wait()  # every connection opens at the same moment
                for _ in range(PER_CONNECTION):
                    r = http.post(f"{chatd.url}/v1/chat", json={
                        "model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
                    if r.status_code != 200 or r.json()["content"] != DEFAULT_REPLY:
                        failures.append(r.text)

        threads = [threading.Thread(target=client) for _ in range(CONNECTIONS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert failures == []
        time.sleep(1.5)  # past the interval at which workers publish their counters
        scrapes = []
        for _ in range(4):  # fresh connections: the kernel picks the worker each time
            r = httpx.get(f"{chatd.url}/metrics", timeout=10,
                          headers={"connection": "close"})
            scrapes.append(samples(r.text))
        chatd.stop()
    assert chatd.code == 0, chatd.text()
    records = [json.loads(line) for line in chatd.text().splitlines()]
    served = Counter(r["pid"] for r in records if r["logger"] == "chatd.request")
    assert sum(served.values()) == CONNECTIONS * PER_CONNECTION
    assert len(served) == 2, served  # both workers took connections
    total = CONNECTIONS * PER_CONNECTION
    key = 'chatd_requests_total{door="native",provider="ollama",status="200"}'
    for got in scrapes:
        assert got["chatd_workers"] == 2
        assert got[key] == total
        assert got['chatd_upstream_requests_total{provider="ollama"}'] == total


def listening_inodes(port: int) -> set[int]:
    """Inodes of the TCP sockets listening on ``port`` (``/proc/net/tcp``, state 0A)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
            found.add(int(fields[9]))
    return found


def socket_inodes(pid: int) -> set[int]:
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().name
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(int(target[8:-1]))
    return out


def test_each_worker_listens_on_a_socket_of_its_own(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    """The kernel balances a SO_REUSEPORT group: one listening socket per worker, none left
    in the supervisor. (One socket shared by both is what let one worker take all.)"""
    config = f'[chatd]\nollama_url = "{fake_ollama.url}"\n'
    with launch(tmp_path, config, "--workers", "2") as chatd:
        chatd.wait_ready(2)
        listening = listening_inodes(chatd.port)
        supervisor = chatd.process.pid
        children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
        held = {int(pid): socket_inodes(int(pid)) & listening for pid in children}
        workers = {pid: inodes for pid, inodes in held.items() if inodes}
        parent = socket_inodes(supervisor) & listening
    assert len(listening) == 2, listening
    assert len(workers) == 2 and all(len(i) == 1 for i in workers.values()), workers
    assert set().union(*workers.values()) == listening  # a different socket each
    assert parent == set()


def test_a_port_in_use_is_refused_to_a_second_chatd(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    """SO_REUSEPORT must not let a second chatd join the first one's listener."""
    config = f'[chatd]\nollama_url = "{fake_ollama.url}"\n'
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir()
    second_dir.mkdir()
    with launch(first_dir, config, "--workers", "2") as first:
        first.wait_ready(2)
        import subprocess

        done = subprocess.run(
            [sys.executable, "-m", "server", "serve", "--workers", "2",
             "--bind", f"127.0.0.1:{first.port}", "--config", str(first_dir / "lakehouse.toml")],
            capture_output=True, text=True, timeout=60, check=False, cwd=second_dir,
        )
        assert done.returncode == 1, done.stderr
        assert f"cannot listen on 127.0.0.1:{first.port}" in done.stderr
        r = httpx.get(f"{first.url}/healthz", timeout=10)
        assert r.status_code == 200
