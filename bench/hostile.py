"""Hostile and careless clients against one ``chatd serve``: does it stay healthy?

Strategy: a fake Ollama (this script in ``--upstream`` mode, its own process) answers at
once, streams for ever, or goes silent, as the model name asks; chatd runs as a real
``chatd serve`` in front of it; this process plays every client, on raw asyncio sockets.
Each phase prints chatd's RSS and open descriptors (``/proc``), the bytes it logged, and
what the *normal* clients that kept calling meanwhile got (200s, 503s, errors):

- ``bodies``: N connections send a head and part of a body, then nothing. Past
  ``max_connections`` each is answered 503 at once; the rest hold their connection until
  ``client_body_timeout_secs`` and get a 408.
- ``streams``: N streams whose upstream goes silent after its first event (ended with an
  error line after ``stream_idle_secs``), and N streams whose client reads nothing (their
  upstream calls cancelled after ``stream_idle_secs``; the upstream counts what is open).
- ``soak``: 100k requests at c=200, twice, to see that nothing grows between passes.
- ``bulk``: 60 concurrent 8 MiB bodies (an upstream that answers after a pause, so they
  overlap): chatd's peak RSS during the phase (``VmHWM``, reset first), per body, and its
  RSS once all 60 calls have been sent and wait for their answers.

Hostile counts default to 15,000 (about 20,000 exhausted the descriptor limit before; this
client needs a descriptor for each of its own sockets, under the same 20,000 hard limit,
so 15,000 is what it can hold beside its normal clients); it lifts its own descriptor
limit to the hard one. Limits are shortened for the run (body
timeout and stream idle 5 s) so a phase takes seconds; the defaults are printed. Traffic
stays on 127.0.0.1. Run: ``python3 bench/hostile.py [--phases bodies,streams,soak,bulk]
[--hostile 15000] [--requests 100000] [--repo PATH]`` (``--repo``: the checkout whose chatd
to run, for a before/after comparison).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from _common import free_port, peak_rss_mb, process, rss_mb, wait_http

ROOT = Path(__file__).resolve().parent.parent
EXTRA_ENV: dict[str, str] = {}
KEEP_LOG: Path | None = None
BODY_TIMEOUT = 5.0
STREAM_IDLE = 5.0

# ----------------------------------------------------------------------- the upstream

_ANSWER = (json.dumps({
    "model": "m", "created_at": "2026-11-29T00:00:00Z",
    "message": {"role": "assistant", "content": "Hello from the hostile bench."},
    "done": True, "done_reason": "stop", "prompt_eval_count": 5, "eval_count": 6,
}) + "\n").encode()
_LINE = (json.dumps({"model": "m", "created_at": "2026-11-29T00:00:00Z",
                     "message": {"role": "assistant", "content": "tok "},
                     "done": False}) + "\n").encode()
_BIG_LINE = (json.dumps({"model": "m", "created_at": "2026-11-29T00:00:00Z",
                         "message": {"role": "assistant", "content": "x" * 30000},
                         "done": False}) + "\n").encode()
_open_streams = 0
_waiting = 0


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def _upstream_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Keep-alive HTTP/1.1: ``GET /stats`` says how many streams are open; ``POST`` reads
    the body and answers by the model name: ``slow-<ms>``, ``hang`` (one line, then
    silence), ``flood`` (lines as fast as the client takes them), else at once."""
    global _open_streams, _waiting
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if head.startswith(b"GET /stats"):
                body = json.dumps({"open_streams": _open_streams,
                                   "waiting": _waiting}).encode()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
                continue
            data = await reader.readexactly(length) if length else b"{}"
            try:
                request = json.loads(data)
            except ValueError:
                request = {}
            model = str(request.get("model", ""))
            stream = request.get("stream", True)
            if model.startswith("slow-"):
                _waiting += 1
                try:
                    await asyncio.sleep(int(model[5:]) / 1000)
                finally:
                    _waiting -= 1
            if not stream or model.startswith("slow-"):
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\n\r\n%s" % (len(_ANSWER), _ANSWER))
                await writer.drain()
                continue
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\n"
                         b"transfer-encoding: chunked\r\n\r\n")
            _open_streams += 1
            try:
                if model == "hang":
                    writer.write(_chunk(_LINE))
                    await writer.drain()
                    await reader.read()  # until chatd closes the call
                    return
                if model == "flood":
                    while True:
                        writer.write(_chunk(_BIG_LINE))
                        await writer.drain()
                writer.write(_chunk(_LINE) + _chunk(_ANSWER) + b"0\r\n\r\n")
                await writer.drain()
            finally:
                _open_streams -= 1
    except (asyncio.IncompleteReadError, ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def _upstream_main(port: int) -> None:
    server = await asyncio.start_server(_upstream_conn, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


# ------------------------------------------------------------------------- the client

def _lift_fd_limit() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _request(path: str, body: dict[str, object], *, close: bool = True) -> bytes:
    data = json.dumps(body).encode()
    connection = "Connection: close\r\n" if close else ""
    return (f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n{connection}\r\n").encode() + data


def _chat(model: str, stream: bool = False) -> dict[str, object]:
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}


async def _status(port: int, payload: bytes, timeout: float = 10.0) -> str:
    """One request on a fresh connection: its status code as text, or what went wrong."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(payload)
                line = await reader.readline()
                await reader.read()  # Connection: close: to the end
            finally:
                writer.close()
    except TimeoutError:
        return "timeout"
    except OSError as exc:
        return type(exc).__name__
    parts = line.split()
    return parts[1].decode() if len(parts) > 1 else "no-answer"


async def _normal_clients(port: int, stop: asyncio.Event, seen: Counter[str],
                          concurrency: int = 4) -> None:
    """Well-behaved clients calling all the time: what they get is the phase's verdict."""
    payload = _request("/v1/chat", _chat("fast"))

    async def one() -> None:
        while not stop.is_set():
            seen[await _status(port, payload)] += 1
            await asyncio.sleep(0.02)

    await asyncio.gather(*(one() for _ in range(concurrency)))


class Chatd:
    def __init__(self, pid: int, port: int, log: Path) -> None:
        self.pid, self.port, self.log = pid, port, log

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def reset_peak(self) -> None:
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS

    def state(self) -> str:
        return (f"RSS {rss_mb(self.pid):.0f} MB, FDs {self.fds()}, "
                f"log {self.log.stat().st_size / 1024:.0f} KB")


async def _with_normal_clients(chatd: Chatd, work: Callable[[], Awaitable[str]]) -> None:
    seen: Counter[str] = Counter()
    stop = asyncio.Event()
    normal = asyncio.create_task(_normal_clients(chatd.port, stop, seen))
    try:
        detail = await work()
    finally:
        stop.set()
        await normal
    print(f"    {detail}")
    print(f"    normal clients meanwhile: {dict(sorted(seen.items()))}")
    print(f"    chatd after: {chatd.state()}")


async def _settle(chatd: Chatd, baseline_fds: int, limit: float = 15.0) -> float:
    start = time.perf_counter()
    while chatd.fds() > baseline_fds + 8 and time.perf_counter() - start < limit:
        await asyncio.sleep(0.2)
    return time.perf_counter() - start


# ---------------------------------------------------------------------------- phases

async def phase_bodies(chatd: Chatd, hostile: int) -> None:
    print(f"bodies: {hostile} connections each send a head and 10 of 1000 body bytes, then "
          "nothing")
    baseline = chatd.fds()

    async def work() -> str:
        answers: Counter[str] = Counter()
        writers: list[asyncio.StreamWriter] = []

        async def hostile_one() -> None:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", chatd.port)
            except OSError as exc:
                answers[f"connect {type(exc).__name__}"] += 1
                return
            writers.append(writer)
            try:
                writer.write(b"POST /v1/chat HTTP/1.1\r\nHost: bench\r\nContent-Type: "
                             b"application/json\r\nContent-Length: 1000\r\n\r\n{\"model\":")
                async with asyncio.timeout(BODY_TIMEOUT + 20):
                    line = await reader.readline()
                parts = line.split()
                answers[parts[1].decode() if len(parts) > 1 else "closed"] += 1
            except TimeoutError:
                answers["held past the deadline"] += 1
            except OSError as exc:
                answers[type(exc).__name__] += 1

        started = time.perf_counter()
        tasks = [asyncio.create_task(hostile_one()) for _ in range(hostile)]
        await asyncio.sleep(2.0)
        print(f"    {hostile} hostile connections open 2 s in: {chatd.state()}")
        await asyncio.gather(*tasks)
        took = time.perf_counter() - started
        for writer in writers:
            writer.close()
        return f"hostile connections got {dict(sorted(answers.items()))} within {took:.1f} s"

    await _with_normal_clients(chatd, work)
    print(f"    descriptors back to baseline in {await _settle(chatd, baseline):.1f} s: "
          f"{chatd.state()}")


async def phase_streams(chatd: Chatd, upstream_port: int, hostile: int) -> None:
    baseline = chatd.fds()
    print(f"streams: {hostile} streams whose upstream goes silent after its first event")

    async def silent() -> str:
        endings: Counter[str] = Counter()
        payload = _request("/v1/chat", _chat("hang", stream=True))

        async def one() -> None:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", chatd.port)
            except OSError as exc:
                endings[f"connect {type(exc).__name__}"] += 1
                return
            try:
                writer.write(payload)
                async with asyncio.timeout(STREAM_IDLE + 30):
                    body = await reader.read()
                lines = [line for line in body.split(b"\r\n") if line.startswith(b"{")]
                if body.startswith(b"HTTP/1.1 200") and lines and b'"done":true' in lines[-1]:
                    error = lines[-1].split(b'"type":"', 1)[-1].split(b'"', 1)[0].decode()
                    endings[f"200, ended: {error}"] += 1
                elif body.startswith(b"HTTP/1.1 "):
                    endings[body[9:12].decode()] += 1
                else:
                    endings["closed without an answer" if not body else "cut"] += 1
            except TimeoutError:
                endings["never ended"] += 1
            except OSError as exc:
                endings[type(exc).__name__] += 1
            finally:
                writer.close()

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(hostile)))
        return (f"silent streams ended {dict(sorted(endings.items()))} within "
                f"{time.perf_counter() - started:.1f} s")

    await _with_normal_clients(chatd, silent)
    await _settle(chatd, baseline)
    stalled = min(hostile, 1000)
    print(f"streams: {stalled} streams whose client reads nothing (upstream floods)")

    async def unread() -> str:
        socks: list[socket.socket] = []
        payload = _request("/v1/chat", _chat("flood", stream=True))
        for _ in range(stalled):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", chatd.port))
            await asyncio.get_running_loop().sock_sendall(sock, payload)
            socks.append(sock)
        await asyncio.sleep(1.0)
        peak = await _upstream_streams(upstream_port)
        started = time.perf_counter()
        left = peak
        while left and time.perf_counter() - started < STREAM_IDLE + 30:
            await asyncio.sleep(0.5)
            left = await _upstream_streams(upstream_port)
        took = time.perf_counter() - started
        for sock in socks:
            sock.close()
        return (f"upstream streams open: {peak} at 1 s, {left} after {took:.1f} s "
                f"(stream_idle_secs = {STREAM_IDLE:g})")

    await _with_normal_clients(chatd, unread)
    print(f"    descriptors back to baseline in {await _settle(chatd, baseline):.1f} s: "
          f"{chatd.state()}")


async def _upstream_stats(port: int) -> dict[str, int]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    body = await reader.readexactly(length)
    writer.close()
    return dict(json.loads(body))


async def _upstream_streams(port: int) -> int:
    return (await _upstream_stats(port))["open_streams"]


async def phase_soak(chatd: Chatd, requests: int, concurrency: int = 200) -> None:
    payload = _request("/v1/chat", _chat("fast"), close=False)
    for round_ in (1, 2):
        errors: Counter[str] = Counter()
        done = 0

        async def worker(errors: Counter[str] = errors) -> None:
            nonlocal done
            reader = writer = None
            while done < requests:
                done += 1
                try:
                    if writer is None:
                        reader, writer = await asyncio.open_connection("127.0.0.1",
                                                                       chatd.port)
                    assert reader is not None
                    writer.write(payload)
                    head = await reader.readuntil(b"\r\n\r\n")
                    status = head.split(b" ", 2)[1]
                    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    await reader.readexactly(length)
                    if status != b"200":
                        errors[status.decode()] += 1
                    if b"connection: close" in head.lower():
                        writer.close()
                        writer = None
                except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
                    errors[type(exc).__name__] += 1
                    if writer is not None:
                        writer.close()
                    writer = None
            if writer is not None:
                writer.close()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        took = time.perf_counter() - started
        print(f"soak pass {round_}: {requests} requests at c={concurrency} in {took:.1f} s "
              f"({requests / took:.0f} req/s), errors {dict(errors) or 0}; "
              f"chatd {chatd.state()}")


async def phase_bulk(chatd: Chatd, upstream_port: int, count: int = 60,
                     size: int = 8 * 1024 * 1024 - 4096) -> None:
    text = "a" * (size - 200)
    payload = _request("/v1/chat", {"model": "slow-3000", "messages": [
        {"role": "user", "content": text}]})
    await asyncio.sleep(1.0)
    before = rss_mb(chatd.pid)
    chatd.reset_peak()
    waiting: list[tuple[int, float]] = [(0, 0.0)]

    async def held() -> None:
        """chatd's RSS when the most calls have been sent and wait for their answers
        (most of a call's life): what a body costs once its transient copies are gone."""
        while True:
            now = (await _upstream_stats(upstream_port))["waiting"]
            if now >= waiting[-1][0]:
                waiting.append((now, rss_mb(chatd.pid)))
            await asyncio.sleep(0.05)

    watch = asyncio.create_task(held())
    statuses = Counter(await asyncio.gather(
        *(_status(chatd.port, payload, timeout=120) for _ in range(count))))
    watch.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watch
    peak = peak_rss_mb(chatd.pid)
    mib = len(payload) / 2**20
    per = (peak - before) / count
    print(f"bulk: {count} concurrent bodies of {mib:.1f} MiB: statuses "
          f"{dict(statuses)}; RSS {before:.0f} MB before, peak {peak:.0f} MB: "
          f"{per:.1f} MB per body ({per / mib:.2f} x its size)")
    most, rss = waiting[-1]
    if most:
        per = (rss - before) / most
        print(f"    when {most} calls waited upstream at once: RSS {rss:.0f} MB: "
              f"{per:.1f} MB per waiting call ({per / mib:.2f} x its body)")


# ------------------------------------------------------------------------------ main

@contextlib.contextmanager
def _servers(repo: Path, config: str) -> Iterator[tuple[Chatd, int]]:
    upstream_port, port = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(repo), **EXTRA_ENV}
    for var in ("OLLAMA_API_KEY", "OPENROUTER_API_KEY", "OPENCODE_API_KEY", "KIMI_API_KEY",
                "LAKEHOUSE_CONFIG"):
        env.pop(var, None)
    with tempfile.TemporaryDirectory() as tmp, process(
        [sys.executable, __file__, "--upstream", str(upstream_port)]
    ):
        path = Path(tmp) / "lakehouse.toml"
        path.write_text(config.format(upstream=upstream_port) + "".join(
            f'[chatd.providers.{name}]\nkey_file = "{tmp}/missing.env"\n'
            for name in ("ollama_cloud", "openrouter", "opencode", "kimi")))
        log = Path(tmp) / "chatd.log"
        with process([sys.executable, "-m", "server", "serve", "--bind",
                      f"127.0.0.1:{port}", "--config", str(path)],
                     env=env, cwd=Path(tmp), stderr=log) as proc:
            wait_http(f"http://127.0.0.1:{port}/healthz")
            try:
                yield Chatd(proc.pid, port, log), upstream_port
            finally:
                if KEEP_LOG is not None:
                    KEEP_LOG.write_bytes(log.read_bytes())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--phases", default="bodies,streams,soak,bulk")
    parser.add_argument("--hostile", type=int, default=15000)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--repo", type=Path, default=ROOT)
    parser.add_argument("--log", type=Path, help="keep chatd's log in this file")
    args = parser.parse_args()
    global KEEP_LOG
    KEEP_LOG = args.log
    if args.upstream:
        _lift_fd_limit()
        asyncio.run(_upstream_main(args.upstream))
        return 0
    limit = _lift_fd_limit()
    config = (
        '[chatd]\nollama_url = "http://127.0.0.1:{upstream}"\n'
        f"client_body_timeout_secs = {BODY_TIMEOUT}\nstream_idle_secs = {STREAM_IDLE}\n"
    )
    phases = args.phases.split(",")
    print(f"chatd from {args.repo}; this client's descriptor limit {limit}; "
          f"client_body_timeout_secs = {BODY_TIMEOUT:g}, stream_idle_secs = {STREAM_IDLE:g} "
          "(defaults 30 and 120); max_connections and max_in_flight at their defaults")
    if {"bodies", "streams", "soak"} & set(phases):
        with _servers(args.repo, config) as (chatd, upstream_port):
            print(f"idle: {chatd.state()}")
            if "bodies" in phases:
                asyncio.run(phase_bodies(chatd, args.hostile))
            if "streams" in phases:
                asyncio.run(phase_streams(chatd, upstream_port, args.hostile))
            if "soak" in phases:
                asyncio.run(phase_soak(chatd, args.requests))
            print(f"end: {chatd.state()}")
    if "bulk" in phases:
        # A chatd of its own, with every limit at its default: a clean RSS baseline, and
        # the body deadline must not cut uploads that only a loaded machine slows down.
        with _servers(args.repo, '[chatd]\nollama_url = "http://127.0.0.1:{upstream}"\n'
                      ) as (chatd, upstream_port):
            asyncio.run(phase_bulk(chatd, upstream_port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
