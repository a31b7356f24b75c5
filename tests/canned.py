"""A canned upstream for tests that must hand chatd the exact bytes a provider sends.

:class:`Canned`, an upstream on 127.0.0.1:0 built on the fakes' h11 plumbing
(:class:`fake_ollama.FakeServer`), records every body it gets and answers what the test
put in :attr:`Canned.answers` (per upstream model), so a test can hand chatd exactly the
wire bytes a real provider sends. chatd is served in-process (:func:`chatd_served.served`)
with one keyless provider per wire format pointing at it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import h11
import httpx
from chatd_served import served
from fake_ollama import FakeServer

from server.app import ChatdApp, create_app
from server.config import load_config

KEY_VARS = ("OLLAMA_API_KEY", "OPENROUTER_API_KEY", "OPENCODE_API_KEY", "KIMI_API_KEY")


@dataclass
class Answer:
    """One canned upstream answer: a status, a content type and the body's pieces (each
    sent as one HTTP chunk)."""

    status: int = 200
    content_type: str = "application/json"
    pieces: tuple[bytes, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()


def whole(obj: object, status: int = 200) -> Answer:
    return Answer(status, "application/json", (json.dumps(obj).encode(),))


def sse(events: Iterable[object], *, done: bool = True, named: bool = False) -> Answer:
    out = []
    for ev in events:
        data = json.dumps(ev).encode()
        name = f"event: {ev['type']}\n".encode() if named and isinstance(ev, dict) else b""
        out.append(name + b"data: " + data + b"\n\n")
    if done:
        out.append(b"data: [DONE]\n\n")
    return Answer(200, "text/event-stream", tuple(out))


def ndjson(lines: Iterable[object]) -> Answer:
    return Answer(200, "application/x-ndjson",
                  tuple(json.dumps(line).encode() + b"\n" for line in lines))


class Canned(FakeServer):
    """An upstream that answers what the test set for the request's model."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: dict[str, Answer] = {}
        self.bodies: list[tuple[str, dict[str, Any]]] = []
        """(path, decoded JSON body) of every request."""

    async def _respond(self, conn: h11.Connection, stream: anyio.abc.SocketStream,
                       request: h11.Request, body: bytes) -> None:
        payload = json.loads(body) if body else {}
        self.bodies.append((request.target.decode(), payload))
        answer = self.answers.get(str(payload.get("model")))
        if answer is None:
            await self._whole(conn, stream, 404, b'{"error": "no canned answer"}')
            return
        if len(answer.pieces) == 1 and answer.content_type == "application/json":
            await self._whole(conn, stream, answer.status, answer.pieces[0],
                              headers=answer.headers)
            return
        await self._head(conn, stream, answer.status,
                         [("content-type", answer.content_type), *answer.headers])
        for piece in answer.pieces:
            await self._chunk(conn, stream, piece)
        await self._send(conn, stream, h11.EndOfMessage())

    def last(self) -> dict[str, Any]:
        return self.bodies[-1][1]


@dataclass
class Lab:
    port: int
    app: ChatdApp
    up: Canned
    extra: dict[str, Any] = field(default_factory=dict)

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=10)


@asynccontextmanager
async def lab(tmp_path: Path, extra_config: str = "") -> AsyncIterator[Lab]:
    """chatd with providers ``oai/`` (openai_chat), ``oll/`` (ollama_chat), ``ant/``
    (anthropic_messages) and ``rsp/`` (openai_responses), all keyless, all served by one
    :class:`Canned`; the local Ollama is that fake too."""
    up = Canned()
    failure: Exception | None = None
    async with anyio.create_task_group() as tg:
        await tg.start(up.serve)
        config = load_config(f"""
[chatd]
ollama_url = "{up.url}"
timeout_secs = 5
""" + "".join(f'[chatd.providers.{n}]\nkey_file = "{tmp_path}/missing.env"\n'
               for n in ("ollama_cloud", "openrouter", "opencode", "kimi")) + f"""
[chatd.providers.oai]
api = "openai_chat"
base_url = "{up.url}/v1"
key_env = ""
[chatd.providers.oll]
api = "ollama_chat"
base_url = "{up.url}"
key_env = ""
[chatd.providers.ant]
api = "anthropic_messages"
base_url = "{up.url}"
key_env = ""
[chatd.providers.rsp]
api = "openai_responses"
base_url = "{up.url}/v1"
key_env = ""
""" + extra_config)
        app = create_app(config, environ={})
        async with served(app) as port:
            try:
                yield Lab(port, app, up)
            except Exception as exc:  # re-raised once the servers are down, so a failed
                failure = exc         # assertion is reported alone, not as a group
        tg.cancel_scope.cancel()
    if failure is not None:
        raise failure


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    """One OpenAI Chat Completions stream chunk carrying ``delta``."""
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """``(event name, decoded data)`` of each SSE block in a whole stream's text."""
    out = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in lines:
            out.append((lines.get("event", ""), json.loads(lines["data"])))
    return out
