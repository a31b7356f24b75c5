"""A fake Ollama server for tests: real HTTP on 127.0.0.1, Ollama's exact /api/chat format.

Strategy: a raw anyio listener with h11 per connection (deliberately not hypercorn, so the
server under test and the fake share no HTTP code). It speaks what providers.md §1 records
of ``POST /api/chat``: a JSON answer when ``"stream": false``, otherwise (``stream`` omitted
means streaming, OL ``api/types.go``) NDJSON lines ending with a ``"done": true`` object
carrying ``done_reason``, ``prompt_eval_count`` and ``eval_count``; ``{"error": "model 'x'
not found"}`` with 404 for a model it does not have, ``{"error": "..."}`` with 400 for a bad
body. Every request body is recorded (decoded) in :attr:`FakeOllama.requests`.

Runs in-process (``await task_group.start(fake.serve)`` returns the port) or as a
subprocess: ``python tests/fake_ollama.py [--model M ...] [--reply TEXT]`` prints
``listening on http://127.0.0.1:PORT`` and then one JSON line per request received.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

import anyio
import anyio.abc
import h11

__all__ = ["DEFAULT_REPLY", "FakeOllama"]

DEFAULT_REPLY = "Hello from the fake Ollama, one word at a time."


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


def _words(text: str) -> list[str]:
    """The reply as 'tokens': words keeping their leading space, like a tokenizer would."""
    out: list[str] = []
    for i, word in enumerate(text.split(" ")):
        out.append(word if i == 0 else " " + word)
    return out


class FakeOllama:
    """A fake Ollama daemon.

    Args:
        models: the model names it "has" (others get Ollama's 404).
        reply: the answer's text; each word is one token and one streamed chunk.
        thinking: returned as ``message.thinking`` when the request sets ``think`` truthy.
    """

    def __init__(
        self,
        models: Iterable[str] = ("qwen3:4b",),
        reply: str = DEFAULT_REPLY,
        thinking: str = "Let me think.",
        *,
        echo: bool = False,
    ) -> None:
        self.models = set(models)
        self.reply = reply
        self.thinking = thinking
        self.echo = echo
        self.port = 0
        self.requests: list[dict[str, Any]] = []
        """Decoded JSON body of every /api/chat request, in arrival order."""
        self.gate: anyio.Event | None = None
        """When set, streamed answers pause after their first line until the event fires."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen on 127.0.0.1:0; report the port through ``task_status``; serve forever."""
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        async with listener:
            self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
            task_status.started(self.port)
            await listener.serve(self._connection)

    # --- HTTP plumbing ------------------------------------------------------------------

    async def _connection(self, stream: anyio.abc.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        async with stream:
            try:
                while True:
                    request, body = await self._read_request(conn, stream)
                    if request is None:
                        return
                    await self._respond(conn, stream, request, body)
                    if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                        return
                    conn.start_next_cycle()
            except (h11.ProtocolError, anyio.BrokenResourceError, anyio.ClosedResourceError,
                    ConnectionError):
                return

    async def _read_request(
        self, conn: h11.Connection, stream: anyio.abc.SocketStream
    ) -> tuple[h11.Request | None, bytes]:
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = await stream.receive(65536)
                except anyio.EndOfStream:
                    data = b""
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return request, bytes(body)
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None, b""

    async def _send(self, conn: h11.Connection, stream: anyio.abc.SocketStream,
                    event: h11.Event) -> None:
        data = conn.send(event)
        if data:
            await stream.send(data)

    async def _whole(self, conn: h11.Connection, stream: anyio.abc.SocketStream,
                     status: int, body: bytes,
                     content_type: bytes = b"application/json; charset=utf-8") -> None:
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        reason = HTTPStatus(status).phrase.encode()
        await self._send(
            conn, stream, h11.Response(status_code=status, headers=headers, reason=reason)
        )
        await self._send(conn, stream, h11.Data(data=body))
        await self._send(conn, stream, h11.EndOfMessage())

    async def _error(self, conn: h11.Connection, stream: anyio.abc.SocketStream,
                     status: int, message: str) -> None:
        # OL errors.mdx: the body is always {"error": "<message>"}.
        await self._whole(conn, stream, status, json.dumps({"error": message}).encode())

    # --- Ollama -------------------------------------------------------------------------

    async def _respond(self, conn: h11.Connection, stream: anyio.abc.SocketStream,
                       request: h11.Request, body: bytes) -> None:
        target = request.target.decode()
        if target == "/api/version" and request.method == b"GET":
            await self._whole(conn, stream, 200, b'{"version":"0.0.0-fake"}')
            return
        if target != "/api/chat":
            # Ollama's router (Go net/http) answers unknown paths with a plain-text 404.
            await self._whole(conn, stream, 404, b"404 page not found", b"text/plain")
            return
        if request.method != b"POST":
            await self._whole(conn, stream, 405, b"405 method not allowed", b"text/plain")
            return
        try:
            payload = json.loads(body)
        except ValueError:
            await self._error(conn, stream, 400, "invalid character in request body")
            return
        if not isinstance(payload, dict):
            await self._error(conn, stream, 400, "json: cannot unmarshal into ChatRequest")
            return
        self.requests.append(payload)
        if self.echo:
            print(json.dumps(payload), flush=True)
        model = payload.get("model")
        if not model:
            await self._error(conn, stream, 400, "model is required")
            return
        if model not in self.models:
            await self._error(conn, stream, 404, f"model '{model}' not found")
            return
        await self._chat(conn, stream, payload)

    async def _chat(self, conn: h11.Connection, stream: anyio.abc.SocketStream,
                    payload: dict[str, Any]) -> None:
        model = payload["model"]
        messages = payload.get("messages") or []
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages) or 1
        options = payload.get("options") or {}
        words = _words(self.reply)
        done_reason = "stop"
        limit = options.get("num_predict")
        if isinstance(limit, int) and 0 <= limit < len(words):
            words, done_reason = words[:limit], "length"
        thinking = self.thinking if payload.get("think") else None
        metrics = {
            "total_duration": 1_000_000,
            "load_duration": 100_000,
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": 200_000,
            "eval_count": len(words),
            "eval_duration": 700_000,
        }
        if payload.get("stream", True) is False:
            message: dict[str, Any] = {"role": "assistant", "content": "".join(words)}
            if thinking is not None:
                message["thinking"] = thinking
            answer = {"model": model, "created_at": _now(), "message": message, "done": True,
                      "done_reason": done_reason, **metrics}
            await self._whole(conn, stream, 200, json.dumps(answer).encode())
            return
        headers = [(b"content-type", b"application/x-ndjson")]
        await self._send(
            conn, stream, h11.Response(status_code=200, headers=headers, reason=b"OK")
        )
        lines: list[dict[str, Any]] = []
        if thinking is not None:
            lines.append({"role": "assistant", "content": "", "thinking": thinking})
        lines.extend({"role": "assistant", "content": w} for w in words)
        for i, message in enumerate(lines):
            chunk = {"model": model, "created_at": _now(), "message": message, "done": False}
            await self._send(conn, stream, h11.Data(data=json.dumps(chunk).encode() + b"\n"))
            if i == 0 and self.gate is not None:
                await self.gate.wait()
        final = {"model": model, "created_at": _now(),
                 "message": {"role": "assistant", "content": ""}, "done": True,
                 "done_reason": done_reason, **metrics}
        await self._send(conn, stream, h11.Data(data=json.dumps(final).encode() + b"\n"))
        await self._send(conn, stream, h11.EndOfMessage())


async def _main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="A fake Ollama for chatd's tests.")
    parser.add_argument("--model", action="append", default=None)
    parser.add_argument("--reply", default=DEFAULT_REPLY)
    args = parser.parse_args(argv)
    fake = FakeOllama(args.model or ("qwen3:4b",), args.reply, echo=True)
    async with anyio.create_task_group() as tg:
        await tg.start(fake.serve)
        print(f"listening on {fake.url}", flush=True)


if __name__ == "__main__":
    anyio.run(_main, sys.argv[1:])
