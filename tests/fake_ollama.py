"""A fake Ollama server for tests: real HTTP on 127.0.0.1, Ollama's exact wire format.

Strategy: a raw anyio listener with h11 per connection (deliberately not hypercorn, so the
server under test and the fake share no HTTP code); :class:`FakeServer` is that plumbing,
shared with ``fake_openai.py``. :class:`FakeOllama` speaks what providers.md §1 records:

- ``POST /api/chat``: a JSON answer when ``"stream": false``, otherwise (``stream`` omitted
  means streaming, OL ``api/types.go``) NDJSON lines ending with a ``"done": true`` object
  carrying ``done_reason``, ``prompt_eval_count`` and ``eval_count``. With ``tools`` in the
  request it calls the first tool (unless the last message is that tool's result: then it
  answers, closing a round trip): "Tool calls arrive as a complete ``tool_calls`` array
  inside a ``done:false`` chunk" (OL §1.5), so the call and the ``done`` line are separate
  chunks, the case a client's ``finish_reason`` must survive.
- ``POST /api/generate`` (what chatd sends Ollama Cloud, SPEC §2): the same with
  ``response`` instead of ``message``.
- ``GET /api/tags`` (OL §1.8) and ``GET /api/version``; ``POST /api/show`` (a minimal
  ShowResponse with ``capabilities``, 404 for a model it does not have); ``GET /api/ps``
  (the models it has answered with, as loaded); ``POST /api/embed`` and the legacy
  ``POST /api/embeddings``, with vectors :func:`vector_for` derives from each text.
- Errors as ``{"error": "<message>"}`` (OL §1.7): 404 ``model 'x' not found`` for a model it
  does not have, 400 for a bad body, 401 without the right bearer key when ``key`` is set
  (Ollama Cloud), any status for a model listed in ``failures``, and a mid-stream error
  line (OL §1.5) for a model in ``fail_midstream``.

Every request is recorded: bodies of chat/generate calls in :attr:`FakeOllama.requests`,
path and headers of every call in :attr:`FakeOllama.calls`. With ``awkward=True`` each
streamed line is sent in pieces cut every few bytes and inside every multi-byte UTF-8
character (one HTTP chunk each), so the client's parser meets every kind of split.

Runs in-process (``await task_group.start(fake.serve)`` returns the port) or as a
subprocess: ``python tests/fake_ollama.py [--model M ...] [--reply TEXT]`` prints
``listening on http://127.0.0.1:PORT`` and then one JSON line per request received.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from itertools import pairwise
from typing import Any, TypeVar

import anyio
import anyio.abc
import anyio.from_thread
import h11

__all__ = [
    "DEFAULT_REPLY", "Call", "FakeOllama", "FakeServer", "awkward_pieces", "in_thread",
    "vector_for",
]

DEFAULT_REPLY = "Hello from the fake Ollama, one word at a time."

Headers = Mapping[str, str]


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


def words(text: str) -> list[str]:
    """The reply as 'tokens': words keeping their leading space, like a tokenizer would."""
    out: list[str] = []
    for i, word in enumerate(text.split(" ")):
        out.append(word if i == 0 else " " + word)
    return out


def vector_for(text: str, dimensions: int = 4) -> list[float]:
    """The fakes' embedding of ``text``: ``dimensions`` eighths from its SHA-256, each exact
    in float32, so a vector survives OpenAI's base64 float32 encoding unchanged."""
    digest = hashlib.sha256(text.encode()).digest()
    return [(digest[i % len(digest)] % 16) / 8 for i in range(dimensions)]


def awkward_pieces(data: bytes, step: int = 7) -> list[bytes]:
    """``data`` cut every ``step`` bytes and inside every multi-byte UTF-8 character.

    The cuts land mid-line, mid-field-name, between the two newlines of an SSE event and
    between the bytes of one character: every split a stream parser must survive.
    """
    cuts = set(range(step, len(data), step))
    # Between the two newlines that end an SSE event (the parser must wait for the second).
    cuts.update(i + 1 for i in range(len(data) - 1) if data[i:i + 2] == b"\n\n")
    # A continuation byte (0b10xxxxxx) follows the first byte of a multi-byte character:
    # cutting before it splits that character.
    cuts.update(i for i in range(1, len(data)) if 0x80 <= data[i] < 0xC0
                and not 0x80 <= data[i - 1] < 0xC0)
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in pairwise(bounds) if b > a]


@dataclass(frozen=True, slots=True)
class Call:
    """One request as the fake received it."""

    method: str
    path: str
    headers: dict[str, str]
    """Lower-cased names."""
    body: bytes


class FakeServer:
    """HTTP/1.1 plumbing for fakes: listen on 127.0.0.1:0, h11 per connection, keep-alive.

    Subclasses implement :meth:`_respond` with the helpers below.
    """

    def __init__(self) -> None:
        self.port = 0
        self.calls: list[Call] = []
        """Every request received, in arrival order."""
        self.closed_at: list[float] = []
        """``anyio.current_time()`` whenever :meth:`_until_closed` saw the client leave."""

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

    async def _connection(self, stream: anyio.abc.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        async with stream:
            try:
                while True:
                    request, body = await self._read_request(conn, stream)
                    if request is None:
                        return
                    headers = {k.decode().lower(): v.decode() for k, v in request.headers}
                    self.calls.append(Call(request.method.decode(), request.target.decode(),
                                           headers, body))
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

    async def _respond(self, conn: h11.Connection, stream: anyio.abc.SocketStream,
                       request: h11.Request, body: bytes) -> None:
        raise NotImplementedError

    async def _until_closed(self, stream: anyio.abc.SocketStream) -> None:
        """Stall (a slow upstream) until the client closes the connection; record when.

        The request has been read whole, so anything but more bytes is the client going
        away: EOF (a clean close) or a reset.
        """
        try:
            while True:
                await stream.receive(65536)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError,
                ConnectionError):
            self.closed_at.append(anyio.current_time())

    async def _send(self, conn: h11.Connection, stream: anyio.abc.SocketStream,
                    event: h11.Event) -> None:
        data = conn.send(event)
        if data:
            await stream.send(data)

    async def _head(self, conn: h11.Connection, stream: anyio.abc.SocketStream,
                    status: int, headers: Iterable[tuple[str, str]]) -> None:
        reason = HTTPStatus(status).phrase.encode()
        await self._send(conn, stream, h11.Response(
            status_code=status, reason=reason,
            headers=[(k.encode(), v.encode()) for k, v in headers]))

    async def _chunk(self, conn: h11.Connection, stream: anyio.abc.SocketStream,
                     data: bytes, *, awkward: bool = False) -> None:
        """One piece of a streamed body; with ``awkward``, cut by :func:`awkward_pieces`."""
        for piece in awkward_pieces(data) if awkward else (data,):
            await self._send(conn, stream, h11.Data(data=piece))

    async def _whole(self, conn: h11.Connection, stream: anyio.abc.SocketStream,
                     status: int, body: bytes,
                     content_type: str = "application/json; charset=utf-8",
                     headers: Iterable[tuple[str, str]] = ()) -> None:
        await self._head(conn, stream, status, [
            ("content-type", content_type), ("content-length", str(len(body))), *headers])
        await self._send(conn, stream, h11.Data(data=body))
        await self._send(conn, stream, h11.EndOfMessage())


S = TypeVar("S", bound=FakeServer)


@contextmanager
def in_thread(fake: S) -> Iterator[S]:
    """``fake`` serving from a thread of this process (an anyio portal), for sync tests."""
    with anyio.from_thread.start_blocking_portal() as portal:
        future, _ = portal.start_task(fake.serve)
        try:
            yield fake
        finally:
            future.cancel()


class FakeOllama(FakeServer):
    """A fake Ollama daemon (or Ollama Cloud, with ``key``).

    Args:
        models: the model names it "has" (others get Ollama's 404).
        reply: the answer's text; each word is one token and one streamed chunk.
        thinking: returned as ``thinking`` when the request sets ``think`` truthy.
        key: when set, requests must carry ``Authorization: Bearer <key>`` (Ollama Cloud,
            providers.md OL §2.1); others get 401.
        tool_arguments: the arguments of the call made when the request offers tools.
        failures: model -> (status, message, extra headers) answered instead.
        fail_midstream: models whose streams break after the first line with an error line.
        awkward: send streamed lines in awkward pieces (:func:`awkward_pieces`).
    """

    def __init__(
        self,
        models: Iterable[str] = ("qwen3:4b",),
        reply: str = DEFAULT_REPLY,
        thinking: str = "Let me think.",
        *,
        echo: bool = False,
        key: str | None = None,
        tool_arguments: Mapping[str, object] | None = None,
        tool_trigger: str | None = None,
        failures: Mapping[str, tuple[int, str, Headers]] | None = None,
        fail_midstream: Iterable[str] = (),
        awkward: bool = False,
    ) -> None:
        super().__init__()
        self.models = set(models)
        self.reply = reply
        self.thinking = thinking
        self.echo = echo
        self.key = key
        self.tool_arguments = dict(tool_arguments or {"city": "Tōkyō", "days": 3})
        self.tool_trigger = tool_trigger
        """When set, tools are called only for a request whose user messages contain it
        (an agent always offers tools; a plain answer must be possible too)."""
        self.failures = dict(failures or {})
        self.fail_midstream = set(fail_midstream)
        self.awkward = awkward
        self.requests: list[dict[str, Any]] = []
        """Decoded JSON body of every /api/chat and /api/generate request, in arrival order."""
        self.embed_requests: list[tuple[str, dict[str, Any]]] = []
        """(path, decoded body) of every /api/embed and /api/embeddings request."""
        self.gate: anyio.Event | None = None
        """When set, streamed answers pause after their first line until the event fires."""

    async def _error(self, conn: h11.Connection, stream: anyio.abc.SocketStream,
                     status: int, message: str, headers: Headers | None = None) -> None:
        # OL errors.mdx: the body is always {"error": "<message>"}.
        await self._whole(conn, stream, status, json.dumps({"error": message}).encode(),
                          headers=(headers or {}).items())

    # --- Ollama -------------------------------------------------------------------------

    async def _respond(self, conn: h11.Connection, stream: anyio.abc.SocketStream,
                       request: h11.Request, body: bytes) -> None:
        target = request.target.decode()
        if self.key is not None:
            auth = dict(request.headers).get(b"authorization", b"").decode()
            if auth != f"Bearer {self.key}":
                await self._error(conn, stream, 401, "unauthorized")
                return
        if target == "/api/version" and request.method == b"GET":
            await self._whole(conn, stream, 200, b'{"version":"0.0.0-fake"}')
            return
        if target == "/api/tags" and request.method == b"GET":
            await self._whole(conn, stream, 200, json.dumps({"models": [
                {"name": m, "model": m, "modified_at": "2025-07-07T20:32:53.1Z",
                 "size": 2_600_000_000, "digest": "d" * 64,
                 "details": {"parent_model": "", "format": "gguf", "family": "qwen3",
                             "families": ["qwen3"], "parameter_size": "4.0B",
                             "quantization_level": "Q4_K_M"}}
                for m in sorted(self.models)]}).encode())
            return
        if target == "/api/ps" and request.method == b"GET":
            loaded = sorted({p["model"] for p in self.requests if p.get("model") in self.models})
            await self._whole(conn, stream, 200, json.dumps({"models": [
                {"name": m, "model": m, "size": 3_300_000_000, "digest": "d" * 64,
                 "details": {"parent_model": "", "format": "gguf", "family": "qwen3",
                             "families": ["qwen3"], "parameter_size": "4.0B",
                             "quantization_level": "Q4_K_M"},
                 "expires_at": "2031-01-01T00:05:00Z", "size_vram": 3_300_000_000}
                for m in loaded]}).encode())
            return
        if target in ("/api/show", "/api/embed", "/api/embeddings") \
                and request.method == b"POST":
            await self._extra(conn, stream, target, body)
            return
        if target not in ("/api/chat", "/api/generate"):
            # Ollama's router (Go net/http) answers unknown paths with a plain-text 404.
            await self._whole(conn, stream, 404, b"404 page not found", "text/plain")
            return
        if request.method != b"POST":
            await self._whole(conn, stream, 405, b"405 method not allowed", "text/plain")
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
        if model in self.failures:
            status, message, headers = self.failures[model]
            await self._error(conn, stream, status, message, headers)
            return
        if model not in self.models:
            await self._error(conn, stream, 404, f"model '{model}' not found")
            return
        await self._answer(conn, stream, payload, generate=target == "/api/generate")

    async def _extra(self, conn: h11.Connection, stream: anyio.abc.SocketStream,
                     target: str, body: bytes) -> None:
        """``/api/show``, ``/api/embed``, ``/api/embeddings`` (OL ``docs/api.md``)."""
        try:
            payload = json.loads(body)
        except ValueError:
            await self._error(conn, stream, 400, "invalid character in request body")
            return
        model = payload.get("model") or payload.get("name")
        if not model:
            await self._error(conn, stream, 400, "model is required")
            return
        if model in self.failures:
            status, message, headers = self.failures[model]
            await self._error(conn, stream, status, message, headers)
            return
        if model not in self.models:
            await self._error(conn, stream, 404, f"model '{model}' not found")
            return
        if target == "/api/show":
            answer: dict[str, Any] = {
                "modelfile": f"FROM {model}\n", "parameters": "num_ctx 8192",
                "template": "{{ .Prompt }}", "modified_at": "2025-07-07T20:32:53.1Z",
                "details": {"parent_model": "", "format": "gguf", "family": "qwen3",
                            "families": ["qwen3"], "parameter_size": "4.0B",
                            "quantization_level": "Q4_K_M"},
                "model_info": {"general.architecture": "qwen3", "qwen3.context_length": 40960},
                "capabilities": ["completion", "tools", "thinking"]}
            await self._whole(conn, stream, 200, json.dumps(answer).encode())
            return
        self.embed_requests.append((target, payload))
        dims = payload.get("dimensions") or 4
        if target == "/api/embeddings":  # legacy: one prompt, one vector
            answer = {"embedding": vector_for(str(payload.get("prompt", "")), dims)}
        else:
            inputs = payload.get("input")
            texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
            answer = {"model": model, "embeddings": [vector_for(t, dims) for t in texts],
                      "total_duration": 1_000_000, "load_duration": 100_000,
                      "prompt_eval_count": sum(len(t.split()) for t in texts)}
        await self._whole(conn, stream, 200, json.dumps(answer).encode())

    def _tool_call(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        tools = payload.get("tools")
        messages = payload.get("messages") or [{}]
        if not tools or messages[-1].get("role") == "tool":
            return None  # no tools, or the tool's result is in: the reply
        if self.tool_trigger is not None and not any(
                self.tool_trigger in str(m.get("content")) for m in messages
                if m.get("role") == "user"):
            return None
        name = tools[0]["function"]["name"]
        return {"function": {"name": name, "arguments": self.tool_arguments}}

    async def _answer(self, conn: h11.Connection, stream: anyio.abc.SocketStream,
                      payload: dict[str, Any], *, generate: bool) -> None:
        model = payload["model"]
        if generate:
            prompt_tokens = len(str(payload.get("prompt", "")).split()) or 1
        else:
            messages = payload.get("messages") or []
            prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages) or 1
        options = payload.get("options") or {}
        tokens = words(self.reply)
        call = None if generate else self._tool_call(payload)
        if call is not None:
            tokens = []
        done_reason = "stop"
        limit = options.get("num_predict")
        if isinstance(limit, int) and 0 <= limit < len(tokens):
            tokens, done_reason = tokens[:limit], "length"
        thinking = self.thinking if payload.get("think") else None
        metrics = {
            "total_duration": 1_000_000,
            "load_duration": 100_000,
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": 200_000,
            "eval_count": len(tokens) if call is None else 5,
            "eval_duration": 700_000,
        }

        def piece(content: str, think: str | None = None,
                  tool: dict[str, Any] | None = None) -> dict[str, Any]:
            if generate:
                out: dict[str, Any] = {"response": content}
                if think is not None:
                    out["thinking"] = think
                return out
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if think is not None:
                message["thinking"] = think
            if tool is not None:
                message["tool_calls"] = [tool]
            return {"message": message}

        if payload.get("stream", True) is False:
            answer = {"model": model, "created_at": _now(),
                      **piece("".join(tokens), thinking, call),
                      "done": True, "done_reason": done_reason, **metrics}
            await self._whole(conn, stream, 200, json.dumps(answer).encode())
            return
        await self._head(conn, stream, 200, [("content-type", "application/x-ndjson")])
        lines: list[dict[str, Any]] = []
        if thinking is not None:
            lines.append(piece("", thinking))
        lines.extend(piece(w) for w in tokens)
        if call is not None:  # its own chunk, before the separate done line (OL §1.5)
            lines.append(piece("", None, call))
        for i, fields in enumerate(lines):
            chunk = {"model": model, "created_at": _now(), **fields, "done": False}
            await self._line(conn, stream, chunk)
            if i == 0 and model in self.fail_midstream:
                # OL §1.5: a failure after the stream started is a last {"error"} line.
                await self._line(conn, stream, {"error": "the runner crashed mid-way"})
                await self._send(conn, stream, h11.EndOfMessage())
                return
            if i == 0 and self.gate is not None:
                await self.gate.wait()
        final = {"model": model, "created_at": _now(), **piece(""), "done": True,
                 "done_reason": done_reason, **metrics}
        await self._line(conn, stream, final)
        await self._send(conn, stream, h11.EndOfMessage())

    async def _line(self, conn: h11.Connection, stream: anyio.abc.SocketStream,
                    obj: dict[str, Any]) -> None:
        data = json.dumps(obj, ensure_ascii=False).encode() + b"\n"
        await self._chunk(conn, stream, data, awkward=self.awkward)


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
