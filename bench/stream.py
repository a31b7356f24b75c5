"""Streaming benchmark: what chatd adds to a streamed answer, and how many it can carry.

Strategy: a paced fake Ollama (this script, ``--upstream`` mode, in its own process)
streams NDJSON chunks; the same client measures it directly and through one ``chatd
serve`` process, in one invocation, so every figure has its baseline beside it:

- time to first token (TTFT): sequential streams, time from sending the request to the
  first content line, direct vs. through chatd (p50/p99 and the difference);
- relay rate: long unpaced streams, content lines received per second, direct vs. chatd;
- concurrency: N streams held open at once through chatd (paced, so they overlap), with
  errors counted and chatd's peak RSS (VmHWM) read from /proc;
- ``/v1/responses``: TTFT and relay rate through the OpenAI Responses door, translated
  from the same Ollama stream (each NDJSON line becomes a ``response.output_text.delta``
  event) and relayed from a Responses-speaking upstream (the fake's ``/v1/responses``,
  a provider configured with ``api = "openai_responses"``: the same dialect, relayed
  event by event with only the model rewritten), each against the fake measured directly.

Traffic stays on 127.0.0.1 and every phase is bounded. Run:
``python3 bench/stream.py [--streams 1000] [--transport h11]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _common import free_port, peak_rss_mb, process, wait_http

# --------------------------------------------------------------------- the fake upstream

def _chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


async def _serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """HTTP/1.1 keep-alive loop: each POST gets a chunked NDJSON stream.

    How many chunks and how far apart come from the model name, ``bench-<n>-<ms>``: chatd
    rebuilds the upstream body, so the model name is the one knob that reaches us.
    """
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            responses = head.split(b" ", 2)[1].endswith(b"/responses")
            length = 0
            close = False
            for line in head.split(b"\r\n"):
                lower = line.lower()
                if lower.startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
                elif lower.startswith(b"connection:") and b"close" in lower:
                    close = True
            body = json.loads(await reader.readexactly(length)) if length else {}
            _, n, ms = str(body.get("model", "bench-10-0")).split("-")
            count, interval = int(n), int(ms) / 1000
            if responses:
                await _responses(writer, count, interval)
                if close:
                    return
                continue
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\n"
                         b"transfer-encoding: chunked\r\n\r\n")
            line = (json.dumps({"model": "m", "created_at": "2026-11-29T00:00:00Z",
                                "message": {"role": "assistant", "content": "tok "},
                                "done": False}) + "\n").encode()
            for _ in range(count):
                writer.write(_chunk(line))
                if interval:
                    await writer.drain()
                    await asyncio.sleep(interval)
                elif writer.transport.get_write_buffer_size() > 1 << 16:
                    await writer.drain()
            end = (json.dumps({"model": "m", "created_at": "2026-11-29T00:00:00Z",
                               "message": {"role": "assistant", "content": ""},
                               "done": True, "done_reason": "stop",
                               "prompt_eval_count": 5, "eval_count": count}) + "\n").encode()
            writer.write(_chunk(end) + b"0\r\n\r\n")
            await writer.drain()
            if close:
                return
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def _sse(seq: int, kind: bytes, fields: bytes) -> bytes:
    return (b'event: %s\ndata: {"type":"%s","sequence_number":%d,%s}\n\n'
            % (kind, kind, seq, fields))


async def _responses(writer: asyncio.StreamWriter, count: int, interval: float) -> None:
    """A Responses SSE stream as OpenAI sends one (openai-python ``response_stream_event``):
    the envelope, one message item, ``count`` text deltas, the item's end, completed."""
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                 b"transfer-encoding: chunked\r\n\r\n")
    envelope = b'"response":{"id":"resp_b","object":"response","model":"m","output":[]}'
    ids = b'"item_id":"msg_b","output_index":0,"content_index":0'
    head = (_sse(0, b"response.created", envelope)
            + _sse(1, b"response.in_progress", envelope)
            + _sse(2, b"response.output_item.added", b'"output_index":0,"item":{"id":"msg_b",'
                   b'"type":"message","status":"in_progress","role":"assistant",'
                   b'"content":[]}')
            + _sse(3, b"response.content_part.added", ids + b',"part":{"type":"output_text",'
                   b'"text":"","annotations":[]}'))
    writer.write(_chunk(head))
    for i in range(count):
        writer.write(_chunk(_sse(4 + i, b"response.output_text.delta",
                                 ids + b',"delta":"tok ","logprobs":[]')))
        if interval:
            await writer.drain()
            await asyncio.sleep(interval)
        elif writer.transport.get_write_buffer_size() > 1 << 16:
            await writer.drain()
    seq = 4 + count
    end = (_sse(seq, b"response.output_item.done", b'"output_index":0,"item":{"id":"msg_b",'
                b'"type":"message","status":"completed","role":"assistant","content":[]}')
           + _sse(seq + 1, b"response.completed", b'"response":{"id":"resp_b","object":'
                  b'"response","model":"m","status":"completed","output":[],"usage":'
                  b'{"input_tokens":5,"output_tokens":%d,"total_tokens":%d}}'
                  % (count, 5 + count)))
    writer.write(_chunk(end) + b"0\r\n\r\n")
    await writer.drain()


async def _upstream_main(port: int) -> None:
    server = await asyncio.start_server(_serve_one, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


# ----------------------------------------------------------------------------- client

#: What marks one token in a stream: the content of an NDJSON line, or a Responses delta.
TOKEN = b'"tok '
DELTA = b'"delta":"tok '


async def _stream(host: str, port: int, path: str, body: bytes, marker: bytes = TOKEN
                  ) -> tuple[float, int, float]:
    """One streamed POST on a fresh connection: (TTFT s, content lines, total s)."""
    reader, writer = await asyncio.open_connection(host, port)
    started = time.perf_counter()
    writer.write(b"POST %s HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\n"
                 b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                 % (path.encode(), host.encode(), len(body), body))
    await writer.drain()
    ttft = 0.0
    lines = 0
    buf = b""
    while True:
        data = await reader.read(65536)
        if not data:
            break
        # The last read's tail goes in front: a token may straddle two reads.
        seen = (buf[1 - len(marker):] + data).count(marker)
        if seen and not ttft:
            ttft = time.perf_counter() - started
        lines += seen
        buf = data[-64:]
    writer.close()
    if b'"error":{' in buf or b"response.failed" in buf or b'"error": "' in buf \
            or (marker is TOKEN and b"error" in buf):
        raise RuntimeError(f"stream ended with an error: {buf!r}")
    return ttft, lines, time.perf_counter() - started


def _body(model: str, direct: bool) -> bytes:
    msgs = [{"role": "user", "content": "stream please"}]
    if direct:
        return json.dumps({"model": model, "messages": msgs, "stream": True}).encode()
    return json.dumps({"model": f"ollama/{model}", "messages": msgs, "stream": True}).encode()


def _paths(direct: bool) -> str:
    return "/api/chat" if direct else "/v1/chat"


async def ttft(port: int, direct: bool, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t, lines, _ = await _stream("127.0.0.1", port, _paths(direct), _body("bench-3-0", direct))
        assert lines == 3, lines
        out.append(t)
    return out


async def relay(port: int, direct: bool, chunks: int, parallel: int) -> float:
    started = time.perf_counter()
    results = await asyncio.gather(*[
        _stream("127.0.0.1", port, _paths(direct), _body(f"bench-{chunks}-0", direct))
        for _ in range(parallel)])
    elapsed = time.perf_counter() - started
    assert all(r[1] == chunks for r in results), [r[1] for r in results]
    return chunks * parallel / elapsed


@dataclass(frozen=True)
class Path_:
    """One way to stream the same answer: where to send it, and how to read it back."""

    port: int
    path: str
    model: str
    """The model name, with ``{n}``/``{ms}`` for the fake's chunk count and pacing."""
    marker: bytes = DELTA

    def body(self, n: int, ms: int) -> bytes:
        return json.dumps({"model": self.model.format(n=n, ms=ms), "input": "stream please",
                           "stream": True}).encode()


async def ttft_of(p: Path_, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t, lines, _ = await _stream("127.0.0.1", p.port, p.path, p.body(3, 0), p.marker)
        assert lines == 3, lines
        out.append(t)
    return out


async def relay_of(p: Path_, chunks: int, parallel: int) -> float:
    started = time.perf_counter()
    results = await asyncio.gather(*[
        _stream("127.0.0.1", p.port, p.path, p.body(chunks, 0), p.marker)
        for _ in range(parallel)])
    elapsed = time.perf_counter() - started
    assert all(r[1] == chunks for r in results), [r[1] for r in results]
    return chunks * parallel / elapsed


async def concurrent(port: int, streams: int, chunks: int, interval_ms: int
                     ) -> tuple[int, int, float]:
    body = _body(f"bench-{chunks}-{interval_ms}", False)
    started = time.perf_counter()
    results = await asyncio.gather(
        *[_stream("127.0.0.1", port, "/v1/chat", body) for _ in range(streams)],
        return_exceptions=True)
    elapsed = time.perf_counter() - started
    ok = sum(1 for r in results if not isinstance(r, BaseException) and r[1] == chunks)
    return ok, streams - ok, elapsed


# ------------------------------------------------------------------------------ driver

def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.02)
    raise RuntimeError(f"port {port} did not open")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upstream", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--transport", default="h11", choices=["h11", "httpx"])
    ap.add_argument("--worker-class", default="asyncio", choices=["asyncio", "trio"])
    ap.add_argument("--ttft-runs", type=int, default=200)
    ap.add_argument("--relay-chunks", type=int, default=20000)
    ap.add_argument("--relay-parallel", type=int, default=4)
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--stream-chunks", type=int, default=20)
    ap.add_argument("--stream-interval-ms", type=int, default=100)
    args = ap.parse_args()
    if args.upstream:
        asyncio.run(_upstream_main(args.upstream))
        return

    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 8192)), hard))

    up = free_port()
    port = free_port()
    with tempfile.TemporaryDirectory() as d:
        cfg = Path(d) / "lakehouse.toml"
        cfg.write_text(f'[chatd]\nollama_url = "http://127.0.0.1:{up}"\n'
                       f'[chatd.providers.bench]\napi = "openai_responses"\n'
                       f'base_url = "http://127.0.0.1:{up}/v1"\n')
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
        with process([sys.executable, __file__, "--upstream", str(up)]), \
             process([sys.executable, "-m", "server", "serve", "--config", str(cfg),
                      "--bind", f"127.0.0.1:{port}", "--transport", args.transport,
                      "--worker-class", args.worker_class], env=env) as chatd:
            wait_port(up)
            wait_http(f"http://127.0.0.1:{port}/healthz")

            async def run() -> None:
                await ttft(up, True, 20)  # warm up
                await ttft(port, False, 20)
                direct_t = await ttft(up, True, args.ttft_runs)
                chatd_t = await ttft(port, False, args.ttft_runs)
                d50, c50 = statistics.median(direct_t), statistics.median(chatd_t)
                print(f"{'TTFT':24} {'direct':>10} {'chatd':>10} {'added':>10}")
                print(f"{'p50 ms':24} {d50 * 1e3:10.3f} {c50 * 1e3:10.3f} "
                      f"{(c50 - d50) * 1e3:10.3f}")
                print(f"{'p99 ms':24} {pct(direct_t, .99) * 1e3:10.3f} "
                      f"{pct(chatd_t, .99) * 1e3:10.3f} "
                      f"{(pct(chatd_t, .99) - pct(direct_t, .99)) * 1e3:10.3f}")

                rates_d, rates_c = [], []
                for _ in range(3):
                    rates_d.append(await relay(up, True, args.relay_chunks,
                                               args.relay_parallel))
                    rates_c.append(await relay(port, False, args.relay_chunks,
                                               args.relay_parallel))
                rd, rc = statistics.median(rates_d), statistics.median(rates_c)
                print(f"\n{'relay':24} {'direct':>10} {'chatd':>10} {'ratio':>10}")
                print(f"{'chunks/s (median of 3)':24} {rd:10.0f} {rc:10.0f} {rc / rd:10.2f}")
                print(f"{'µs per chunk':24} {1e6 / rd:10.2f} {1e6 / rc:10.2f} "
                      f"{1e6 / rc - 1e6 / rd:10.2f} added")

                # /v1/responses: from the Ollama stream (translated) and from a
                # Responses upstream (the same dialect), each against its direct baseline.
                pairs = [
                    ("from Ollama", Path_(up, "/api/chat", "bench-{n}-{ms}", TOKEN),
                     Path_(port, "/v1/responses", "ollama/bench-{n}-{ms}")),
                    ("same dialect", Path_(up, "/v1/responses", "bench-{n}-{ms}"),
                     Path_(port, "/v1/responses", "bench/bench-{n}-{ms}")),
                ]
                for _, direct, via in pairs:  # warm up
                    await ttft_of(direct, 20)
                    await ttft_of(via, 20)
                print(f"\n{'/v1/responses TTFT':24} {'direct':>10} {'chatd':>10} {'added':>10}")
                for label, direct, via in pairs:
                    dt = await ttft_of(direct, args.ttft_runs)
                    ct = await ttft_of(via, args.ttft_runs)
                    d50, c50 = statistics.median(dt), statistics.median(ct)
                    d99, c99 = pct(dt, .99), pct(ct, .99)
                    print(f"{'p50 ms, ' + label:24} {d50 * 1e3:10.3f} {c50 * 1e3:10.3f} "
                          f"{(c50 - d50) * 1e3:10.3f}")
                    print(f"{'p99 ms, ' + label:24} {d99 * 1e3:10.3f} {c99 * 1e3:10.3f} "
                          f"{(c99 - d99) * 1e3:10.3f}")
                print(f"\n{'/v1/responses relay':24} {'direct':>10} {'chatd':>10} "
                      f"{'ratio':>10}")
                for label, direct, via in pairs:
                    rd_, rc_ = [], []
                    for _ in range(3):
                        rd_.append(await relay_of(direct, args.relay_chunks,
                                                  args.relay_parallel))
                        rc_.append(await relay_of(via, args.relay_chunks,
                                                  args.relay_parallel))
                    rd, rc = statistics.median(rd_), statistics.median(rc_)
                    print(f"{'chunks/s, ' + label:24} {rd:10.0f} {rc:10.0f} {rc / rd:10.2f}")
                    print(f"{'µs per chunk, ' + label:24} {1e6 / rd:10.2f} {1e6 / rc:10.2f} "
                          f"{1e6 / rc - 1e6 / rd:10.2f} added")

                before = peak_rss_mb(chatd.pid)
                ok, failed, elapsed = await concurrent(
                    port, args.streams, args.stream_chunks, args.stream_interval_ms)
                floor = args.stream_chunks * args.stream_interval_ms / 1000
                print(f"\n{args.streams} concurrent streams through chatd: {ok} ok, "
                      f"{failed} failed, {elapsed:.2f} s (paced floor {floor:.2f} s); "
                      f"chatd peak RSS {peak_rss_mb(chatd.pid):.1f} MB "
                      f"(before: {before:.1f} MB)")

            asyncio.run(run())


if __name__ == "__main__":
    main()
