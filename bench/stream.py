"""Streaming benchmark: what chatd adds to a streamed answer, and how many it can carry.

Strategy: a paced fake upstream (this script, ``--upstream`` mode, in its own process)
streams Ollama NDJSON on ``/api/chat``, Anthropic SSE on ``/v1/messages`` and OpenAI
Responses SSE on ``/v1/responses``; the same client measures it directly and through one
``chatd serve`` process, in one invocation, so every figure has its baseline beside it.
Each row (:data:`ROWS`) is a door and an upstream, measured against that upstream alone:

- ``/v1/chat``, ``/v1/chat/completions``, ``/v1/messages`` and ``/v1/responses`` to Ollama
  (translated: each NDJSON line becomes the door's delta);
- ``/v1/messages`` to an Anthropic upstream and ``/v1/responses`` to a Responses upstream
  (the same dialect, relayed event by event with only the model rewritten; providers
  configured with ``api = "anthropic_messages"`` / ``"openai_responses"``);
- and the ``/v1/messages`` and ``/v1/responses`` rows against the OpenAI door's.

Measured per row:

- time to first token (TTFT): sequential streams, time from sending the request to the
  first content delta, direct vs. through chatd (p50/p99 and the difference);
- relay rate: long unpaced streams, content deltas received per second, direct vs. chatd,
  and the CPU time chatd spent per delta (``/proc``; unlike the rates, it does not move
  with what else the machine runs);
- concurrency (``/v1/chat`` only): N streams held open at once through chatd (paced, so
  they overlap), with errors counted and chatd's peak RSS (VmHWM) read from /proc.

TTFT samples and relay rounds are taken in turn across the rows, so a change in the
machine's load shifts every row alike. Traffic stays on 127.0.0.1 and every phase is
bounded. Run: ``python3 bench/stream.py [--streams 1000] [--transport h11]``.
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
from pathlib import Path

from _common import cpu_seconds, free_port, peak_rss_mb, process, wait_http

# --------------------------------------------------------------------- the fake upstream

def _chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


_TOKEN_EVENT = (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                b'"delta":{"type":"text_delta","text":"tok "}}\n\n')


def _anthropic_start() -> bytes:
    start = {"type": "message_start", "message": {
        "id": "msg_bench", "type": "message", "role": "assistant", "model": "m",
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 5, "output_tokens": 1}}}
    return (b"event: message_start\ndata: " + json.dumps(start).encode() + b"\n\n"
            b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
            b'"content_block":{"type":"text","text":""}}\n\n')


def _anthropic_end(count: int) -> bytes:
    delta = {"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                                "stop_sequence": None},
             "usage": {"output_tokens": count}}
    return (b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
            b"event: message_delta\ndata: " + json.dumps(delta).encode() + b"\n\n"
            b'event: message_stop\ndata: {"type":"message_stop"}\n\n')


async def _serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """HTTP/1.1 keep-alive loop: each POST gets a chunked stream: Responses SSE on a path
    ending ``/responses``, Anthropic SSE on one ending ``/messages``, else Ollama NDJSON.

    How many chunks and how far apart come from the model name, ``bench-<n>-<ms>``: chatd
    rebuilds the upstream body, so the model name is the one knob that reaches us.
    """
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            target = head.split(b" ", 2)[1]
            responses = target.endswith(b"/responses")
            anthropic = target.endswith(b"/messages")
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
            kind = b"text/event-stream" if anthropic else b"application/x-ndjson"
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: " + kind + b"\r\n"
                         b"transfer-encoding: chunked\r\n\r\n")
            line = (json.dumps({"model": "m", "created_at": "2026-11-29T00:00:00Z",
                                "message": {"role": "assistant", "content": "tok "},
                                "done": False}) + "\n").encode()
            if anthropic:
                writer.write(_chunk(_anthropic_start()))
                line = _TOKEN_EVENT
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
            if anthropic:
                end = _anthropic_end(count)
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


class Route:
    """A path to stream from, the body to send there for a model name ``bench-n-ms``, and
    what marks one token in the answer."""

    def __init__(self, label: str, path: str, prefix: str = "", *, kind: str = "chat"
                 ) -> None:
        self.label = label
        self.path = path
        self.prefix = prefix
        self.kind = kind
        """``chat`` (messages), ``messages`` (with Anthropic's required max_tokens) or
        ``responses`` (input)."""
        self.marker = DELTA if kind == "responses" else TOKEN

    def body(self, model: str) -> bytes:
        obj: dict[str, object] = {"model": self.prefix + model, "stream": True}
        if self.kind == "responses":
            obj["input"] = "stream please"
        else:
            obj["messages"] = [{"role": "user", "content": "stream please"}]
        if self.kind == "messages":
            obj["max_tokens"] = 4096
        return json.dumps(obj).encode()


OLLAMA = Route("Ollama alone", "/api/chat")
ANTHROPIC = Route("Anthropic alone", "/v1/messages", kind="messages")
RESPONSES = Route("Responses alone", "/v1/responses", kind="responses")
BASELINES = (OLLAMA, ANTHROPIC, RESPONSES)
NATIVE = Route("/v1/chat -> Ollama", "/v1/chat", "ollama/")
OPENAI = Route("/v1/chat/completions -> Ollama", "/v1/chat/completions", "ollama/")
#: (row through chatd, its baseline: the upstream it reaches, measured alone).
ROWS = [
    (NATIVE, OLLAMA),
    (OPENAI, OLLAMA),
    (Route("/v1/messages -> Ollama", "/v1/messages", "ollama/", kind="messages"), OLLAMA),
    (Route("/v1/messages -> Anthropic", "/v1/messages", "claude/", kind="messages"),
     ANTHROPIC),
    (Route("/v1/responses -> Ollama", "/v1/responses", "ollama/", kind="responses"), OLLAMA),
    (Route("/v1/responses -> Responses", "/v1/responses", "bench/", kind="responses"),
     RESPONSES),
]


async def ttft(port: int, route: Route) -> float:
    t, lines, _ = await _stream("127.0.0.1", port, route.path, route.body("bench-3-0"),
                                route.marker)
    assert lines == 3, (route.label, lines)
    return t


async def ttfts(up: int, port: int, n: int) -> dict[str, list[float]]:
    """``n`` TTFT samples per baseline and per row, taken in turn (one of each per round)."""
    out: dict[str, list[float]] = {}
    for _ in range(n):
        for base in BASELINES:
            out.setdefault(base.label, []).append(await ttft(up, base))
        for route, _ in ROWS:
            out.setdefault(route.label, []).append(await ttft(port, route))
    return out


async def relay(port: int, route: Route, chunks: int, parallel: int) -> float:
    started = time.perf_counter()
    results = await asyncio.gather(*[
        _stream("127.0.0.1", port, route.path, route.body(f"bench-{chunks}-0"), route.marker)
        for _ in range(parallel)])
    elapsed = time.perf_counter() - started
    assert all(r[1] == chunks for r in results), (route.label, [r[1] for r in results])
    return chunks * parallel / elapsed


async def concurrent(port: int, streams: int, chunks: int, interval_ms: int
                     ) -> tuple[int, int, float]:
    body = NATIVE.body(f"bench-{chunks}-{interval_ms}")
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
    ap.add_argument("--relay-rounds", type=int, default=3)
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
        # The same fake is also a keyless Responses upstream ("bench/<m>") and a keyless
        # Anthropic Messages upstream ("claude/<m>").
        cfg.write_text(f'[chatd]\nollama_url = "http://127.0.0.1:{up}"\n'
                       f'[chatd.providers.bench]\napi = "openai_responses"\n'
                       f'base_url = "http://127.0.0.1:{up}/v1"\n'
                       f'[chatd.providers.claude]\napi = "anthropic_messages"\n'
                       f'base_url = "http://127.0.0.1:{up}"\nkey_env = ""\n')
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
        with process([sys.executable, __file__, "--upstream", str(up)]), \
             process([sys.executable, "-m", "server", "serve", "--config", str(cfg),
                      "--bind", f"127.0.0.1:{port}", "--transport", args.transport,
                      "--worker-class", args.worker_class], env=env) as chatd:
            wait_port(up)
            wait_http(f"http://127.0.0.1:{port}/healthz")

            async def run() -> None:
                await ttfts(up, port, 20)  # warm up
                samples = await ttfts(up, port, args.ttft_runs)
                print(f"{'TTFT ms':32} {'direct':>8} {'chatd':>8} {'added':>8}   "
                      f"{'p99 direct':>10} {'chatd':>8} {'added':>8}")
                added: dict[str, float] = {}
                for route, base in ROWS:
                    d, c = samples[base.label], samples[route.label]
                    d50, c50 = statistics.median(d), statistics.median(c)
                    added[route.label] = c50 - d50
                    print(f"{route.label:32} {d50 * 1e3:8.3f} {c50 * 1e3:8.3f} "
                          f"{(c50 - d50) * 1e3:8.3f}   {pct(d, .99) * 1e3:10.3f} "
                          f"{pct(c, .99) * 1e3:8.3f} {(pct(c, .99) - pct(d, .99)) * 1e3:8.3f}")

                rates: dict[str, list[float]] = {}
                cpu: dict[str, float] = {}
                for _ in range(args.relay_rounds):  # in turn: drift hits every row alike
                    for base in BASELINES:
                        rates.setdefault(base.label, []).append(await relay(
                            up, base, args.relay_chunks, args.relay_parallel))
                    for route, _ in ROWS:
                        spent = cpu_seconds(chatd.pid)
                        rates.setdefault(route.label, []).append(await relay(
                            port, route, args.relay_chunks, args.relay_parallel))
                        cpu[route.label] = (cpu.get(route.label, 0.0)
                                            + cpu_seconds(chatd.pid) - spent)
                relayed = args.relay_rounds * args.relay_chunks * args.relay_parallel
                rate = {k: statistics.median(v) for k, v in rates.items()}
                print(f"\n{f'relay chunks/s (median of {args.relay_rounds})':32} {'direct':>8} "
                      f"{'chatd':>8} "
                      f"{'ratio':>8}   {'µs/chunk added':>14} {'chatd CPU µs/chunk':>18}")
                for route, base in ROWS:
                    rd, rc = rate[base.label], rate[route.label]
                    print(f"{route.label:32} {rd:8.0f} {rc:8.0f} {rc / rd:8.2f}   "
                          f"{1e6 / rc - 1e6 / rd:14.2f} "
                          f"{cpu[route.label] / relayed * 1e6:18.2f}")

                openai = OPENAI.label
                print(f"\n{'against the OpenAI door':32} {'TTFT added Δ ms':>16} "
                      f"{'relay ratio':>12} {'CPU/chunk ratio':>16}")
                for route, _ in ROWS[2:]:
                    print(f"{route.label:32} "
                          f"{(added[route.label] - added[openai]) * 1e3:16.3f} "
                          f"{rate[route.label] / rate[openai]:12.2f} "
                          f"{cpu[route.label] / cpu[openai]:16.2f}")

                before = peak_rss_mb(chatd.pid)
                ok, failed, elapsed = await concurrent(
                    port, args.streams, args.stream_chunks, args.stream_interval_ms)
                floor = args.stream_chunks * args.stream_interval_ms / 1000
                print(f"\n{args.streams} concurrent streams through /v1/chat: {ok} ok, "
                      f"{failed} failed, {elapsed:.2f} s (paced floor {floor:.2f} s); "
                      f"chatd peak RSS {peak_rss_mb(chatd.pid):.1f} MB "
                      f"(before: {before:.1f} MB)")

            asyncio.run(run())


if __name__ == "__main__":
    main()
