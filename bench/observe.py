"""What observing a request costs: chatd's CPU time per request with metrics and request
lines off and on, in one process, in one invocation.

Strategy: ``bench/serve.py --observe`` measures the same thing through real sockets, but on
a shared two-core machine two chatd processes differ by ±10 % for reasons of their own
(placement, neighbours), more than the cost looked for. Here one process runs the whole
app (routing, the native door, the service, the codec; no HTTP server, no sockets: the ASGI
interface is called directly and ``MockTransport`` answers as Ollama) under each setting
in turn, repeats interleaved and their order alternated, and reads ``process_time`` (CPU
spent by this process, whatever else the machine ran). The request lines go to a file, as
a real log does. The figure is the added CPU per request (the minimum of the runs, since
interference only ever adds); ``serve.py`` gives the whole request's CPU through a real
server to set it against.

Run: ``python3 bench/observe.py [--requests 3000] [--repeat 8]``.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.app import ChatdApp, create_app  # noqa: E402
from server.config import load_config  # noqa: E402
from server.logs import setup  # noqa: E402
from transports import MockResponse, MockTransport  # noqa: E402

BODY = orjson.dumps({
    "model": "ollama/qwen3:4b",
    "messages": [{"role": "system", "content": "You are terse."},
                 {"role": "user", "content": "Say hello."}],
    "max_tokens": 10,
})
ANSWER = orjson.dumps({
    "model": "qwen3:4b", "created_at": "2026-11-29T00:00:00Z",
    "message": {"role": "assistant", "content": "Hello! How can I help you today?"},
    "done": True, "done_reason": "stop", "prompt_eval_count": 12, "eval_count": 9,
})
SETTINGS = {
    "quiet": "metrics = false\nlog_requests = false\n",
    "metrics": "metrics = true\nlog_requests = false\n",
    "metrics+text": "metrics = true\nlog_requests = true\n",
    "metrics+json": 'metrics = true\nlog_requests = true\nlog_format = "json"\n',
}
SCOPE = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
         "scheme": "http", "path": "/v1/chat", "raw_path": b"/v1/chat", "query_string": b"",
         "root_path": "", "headers": [(b"content-type", b"application/json")]}


def make(settings: str) -> ChatdApp:
    transport = MockTransport(
        lambda request: MockResponse(200, [("content-type", "application/json")], (ANSWER,)))
    config = load_config('[chatd]\nollama_url = "http://ollama.test:11434"\n' + settings)
    return create_app(config, environ={}, transport=lambda: transport)


async def one(app: ChatdApp) -> None:
    done = anyio.Event()
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": BODY, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start" and message["status"] != 200:
            raise RuntimeError(f"status {message['status']}")
        if message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    await app(SCOPE, receive, send)


async def cpu_per_request(app: ChatdApp, requests: int) -> float:
    await app.startup()
    try:
        for _ in range(200):  # warm up
            await one(app)
        started = time.process_time()
        for _ in range(requests):
            await one(app)
        return (time.process_time() - started) / requests * 1e6
    finally:
        await app.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=3000, help="requests per measurement")
    ap.add_argument("--repeat", type=int, default=8, help="measurements per setting")
    args = ap.parse_args()
    runs: dict[str, list[float]] = {name: [] for name in SETTINGS}
    names = list(SETTINGS)
    with tempfile.TemporaryDirectory() as d, open(Path(d) / "chatd.log", "w") as log:
        for i in range(args.repeat):
            for name in (names if i % 2 == 0 else names[::-1]):
                setup(logging.INFO, log, json="json" in name)
                runs[name].append(anyio.run(cpu_per_request, make(SETTINGS[name]),
                                            args.requests))
    # The minimum is the primary figure: interference from the rest of the machine only
    # ever adds to a measurement; the median is shown beside it.
    base, base_median = min(runs["quiet"]), statistics.median(runs["quiet"])
    print(f"{'setting':14} {'min µs':>8} {'+µs':>7} {'+%':>6} {'median µs':>10} {'+%':>6}"
          f"   (CPU per request, {args.repeat} runs of {args.requests} requests)")
    for name, values in runs.items():
        low, median = min(values), statistics.median(values)
        print(f"{name:14} {low:8.1f} {low - base:7.1f} {(low / base - 1) * 100:6.1f} "
              f"{median:10.1f} {(median / base_median - 1) * 100:6.1f}")
    print("\nIn-process: no HTTP server and no sockets, so the whole request costs several "
          "times this through a real server (bench/serve.py); the added µs are what count.")


if __name__ == "__main__":
    main()
