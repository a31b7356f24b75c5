"""A fake Anthropic Messages upstream for tests: what OpenCode Zen's ``claude-*`` models and
Kimi's Anthropic endpoint speak, on 127.0.0.1, recording what chatd sent.

Strategy: the h11 plumbing of :class:`fake_ollama.FakeServer` (not hypercorn, so chatd and
its fake share no HTTP code). ``POST <any prefix>/messages`` answers a message, or streams
SSE with every ``event:`` line in Anthropic's order (``message_start`` with usage, ``ping``,
then each block's start, deltas and stop, ``message_delta``, ``message_stop``); ``POST
<prefix>/messages/count_tokens`` counts words. It is as strict as the real API where chatd
must adapt a body: a ``role`` other than user and assistant, a ``thinking`` block without
a signature and a missing ``max_tokens`` are 400 ``invalid_request_error``, so a test
passes only if chatd rewrote what Claude Code sends.

What it answers (the same rule the agent tests give the other fakes):

- the last turn holds ``tool_result`` blocks -> text (``reply``);
- tools are offered and the last user text holds ``trigger`` (or ``trigger`` is None) ->
  a ``tool_use`` of the tool named ``tool_name`` (the first offered when absent) with
  ``tool_arguments``, streamed as three ``input_json_delta`` fragments;
- otherwise text, one ``text_delta`` per word.

``thinking`` of type ``enabled`` or ``adaptive`` adds a thinking block with a signature
before; a body with ``cache_control`` anywhere reports cache reads and writes in its usage.
Under a path starting ``/zen`` a ``ping`` with a ``cost`` follows ``message_stop``, as
OpenCode Zen appends (providers.md §5.3). Models in ``failures`` answer that status in
Anthropic's error envelope; in ``fail_midstream`` they send ``event: error`` after the first
text delta; in ``stall`` they never answer. Streamed bodies go out in awkward pieces
(:func:`fake_ollama.awkward_pieces`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import anyio.abc
import h11
from fake_ollama import FakeServer, words

__all__ = ["REPLY", "SIGNATURE", "THINKING", "FakeAnthropic"]

REPLY = "Claude says grüß Gott — 東京 🙂 fine."
THINKING = "Let me think about 東京."
SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds="


def _event(name: str, obj: object) -> bytes:
    return f"event: {name}\ndata: {json.dumps(obj, ensure_ascii=False)}\n\n".encode()


def _has_cache_control(value: object) -> bool:
    if isinstance(value, dict):
        return "cache_control" in value or any(_has_cache_control(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_cache_control(v) for v in value)
    return False


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(b.get("text", "") for b in content
                        if isinstance(b, dict) and b.get("type") == "text")
    return ""


class FakeAnthropic(FakeServer):
    """Anthropic Messages at ``<prefix>/messages``; see the module docstring.

    Args:
        key: the key it accepts, as ``x-api-key`` or ``Authorization: Bearer``.
        key_header: accept the key in this header only: ``"x-api-key"`` is Anthropic's
            own API, which takes an API key there (``Authorization: Bearer`` carries
            OAuth tokens, not keys).
        reply: the answer's text; each word is one streamed delta.
        trigger: the text that makes it call a tool (None: any request with tools).
        tool_name: the tool it calls when offered (else the first tool offered).
        tool_arguments: that call's ``input``.
        failures: model -> (status, error type, message, extra headers).
        fail_midstream: models whose streams fail after the first text delta.
        stall: models that never answer (until the client closes the connection).
    """

    def __init__(
        self,
        *,
        key: str,
        reply: str = REPLY,
        trigger: str | None = None,
        tool_name: str | None = None,
        tool_arguments: Mapping[str, object] | None = None,
        failures: Mapping[str, tuple[int, str, str, Mapping[str, str]]] | None = None,
        fail_midstream: Iterable[str] = (),
        stall: Iterable[str] = (),
        key_header: str | None = None,
    ) -> None:
        super().__init__()
        self.key = key
        self.key_header = key_header
        self.reply = reply
        self.trigger = trigger
        self.tool_name = tool_name
        self.tool_arguments = dict(tool_arguments or {"city": "Tōkyō", "days": 3})
        self.failures = dict(failures or {})
        self.fail_midstream = set(fail_midstream)
        self.stall = set(stall)
        self.requests: list[dict[str, Any]] = []
        """Decoded body of every messages call, in arrival order."""
        self.counts: list[dict[str, Any]] = []
        """Decoded body of every count_tokens call."""
        self._calls = 0

    async def _head(self, conn: h11.Connection, stream: anyio.abc.SocketStream,
                    status: int, headers: Iterable[tuple[str, str]]) -> None:
        if status != 529:
            await super()._head(conn, stream, status, headers)
            return
        # Anthropic's own status for "overloaded", which http.HTTPStatus does not know.
        await self._send(conn, stream, h11.Response(
            status_code=529, reason=b"Overloaded",
            headers=[(k.encode(), v.encode()) for k, v in headers]))

    async def _error(self, conn: h11.Connection, stream: anyio.abc.SocketStream,
                     status: int, kind: str, message: str,
                     headers: Mapping[str, str] | None = None) -> None:
        body = {"type": "error", "error": {"type": kind, "message": message},
                "request_id": "req_fake"}
        await self._whole(conn, stream, status, json.dumps(body).encode(),
                          headers=(headers or {}).items())

    def _authorised(self, request: h11.Request) -> bool:
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        if self.key_header == "x-api-key":
            return headers.get("x-api-key") == self.key
        return (headers.get("x-api-key") == self.key
                or headers.get("authorization") == f"Bearer {self.key}")

    async def _respond(self, conn: h11.Connection, stream: anyio.abc.SocketStream,
                       request: h11.Request, body: bytes) -> None:
        path = request.target.decode().partition("?")[0]
        if request.method != b"POST" or not path.endswith(("/messages",
                                                          "/messages/count_tokens")):
            await self._error(conn, stream, 404, "not_found_error", f"no route {path}")
            return
        if not self._authorised(request):
            await self._error(conn, stream, 401, "authentication_error", "invalid x-api-key")
            return
        try:
            payload = json.loads(body)
        except ValueError:
            await self._error(conn, stream, 400, "invalid_request_error", "body is not JSON")
            return
        problem = self._invalid(payload, count=path.endswith("/count_tokens"))
        if problem:
            await self._error(conn, stream, 400, "invalid_request_error", problem)
            return
        if path.endswith("/count_tokens"):
            self.counts.append(payload)
            tokens = sum(len(_text_of(m.get("content")).split()) for m in payload["messages"])
            await self._whole(conn, stream, 200, json.dumps({"input_tokens": tokens}).encode())
            return
        self.requests.append(payload)
        model = payload["model"]
        if model in self.failures:
            status, kind, message, headers = self.failures[model]
            await self._error(conn, stream, status, kind, message, headers)
            return
        if model in self.stall:
            await self._until_closed(stream)
            return
        answer = self._message(payload)
        if payload.get("stream"):
            await self._stream(conn, stream, payload, answer, zen=path.startswith("/zen"))
        else:
            await self._whole(conn, stream, 200,
                              json.dumps(answer, ensure_ascii=False).encode())

    @staticmethod
    def _invalid(payload: object, *, count: bool) -> str | None:
        """What the real API refuses and chatd must therefore never send."""
        if not isinstance(payload, dict):
            return "body must be an object"
        if not isinstance(payload.get("model"), str):
            return "model: Field required"
        if not count and not isinstance(payload.get("max_tokens"), int):
            return "max_tokens: Field required"
        messages = payload.get("messages")
        if not isinstance(messages, list) or not messages:
            return "messages: Field required"
        for i, message in enumerate(messages):
            if message.get("role") not in ("user", "assistant"):
                return f"messages.{i}.role: Input should be 'user' or 'assistant'"
            content = message.get("content")
            for j, block in enumerate(content if isinstance(content, list) else ()):
                if block.get("type") == "thinking" and not block.get("signature"):
                    return f"messages.{i}.content.{j}.thinking.signature: Field required"
                if block.get("type") == "text" and not block.get("text"):
                    return f"messages.{i}.content.{j}.text: text content blocks must be " \
                           "non-empty"
        return None

    def _decision(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        """The tool call to make, or None for text."""
        last = payload["messages"][-1]
        content = last.get("content")
        if isinstance(content, list) and any(
                isinstance(b, dict) and b.get("type") == "tool_result" for b in content):
            return None
        tools = [t for t in payload.get("tools") or () if "input_schema" in t]
        if not tools:
            return None
        if self.trigger is not None and self.trigger not in _text_of(content):
            return None
        names = [t["name"] for t in tools]
        name = self.tool_name if self.tool_name in names else names[0]
        self._calls += 1
        return {"type": "tool_use", "id": f"toolu_fake_{self._calls:04d}", "name": name,
                "input": self.tool_arguments}

    def _message(self, payload: dict[str, Any]) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        thinking = payload.get("thinking") or {}
        if thinking.get("type") in ("enabled", "adaptive"):
            content.append({"type": "thinking", "thinking": THINKING, "signature": SIGNATURE})
        call = self._decision(payload)
        if call is None:
            content.append({"type": "text", "text": self.reply})
        else:
            content.append(call)
        prompt = sum(len(_text_of(m.get("content")).split()) for m in payload["messages"])
        usage = {"input_tokens": prompt, "output_tokens": len(words(self.reply)),
                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        if _has_cache_control(payload):
            usage.update(cache_creation_input_tokens=20, cache_read_input_tokens=100)
        return {"id": "msg_fake_01", "type": "message", "role": "assistant",
                "model": payload["model"], "content": content,
                "stop_reason": "end_turn" if call is None else "tool_use",
                "stop_sequence": None, "usage": usage}

    async def _stream(self, conn: h11.Connection, stream: anyio.abc.SocketStream,
                      payload: dict[str, Any], message: dict[str, Any], *, zen: bool) -> None:
        usage = message["usage"]
        start = {**message, "content": [], "stop_reason": None,
                 "usage": {**usage, "output_tokens": 1}}
        out = bytearray(_event("message_start", {"type": "message_start", "message": start}))
        failing = payload["model"] in self.fail_midstream
        for index, block in enumerate(message["content"]):
            kind = block["type"]
            opened = ({"type": "thinking", "thinking": "", "signature": ""}
                      if kind == "thinking" else {"type": "text", "text": ""}
                      if kind == "text" else {**block, "input": {}})
            out += _event("content_block_start", {"type": "content_block_start",
                                                  "index": index, "content_block": opened})
            if index == 0:
                out += _event("ping", {"type": "ping"})

            def delta(d: dict[str, Any], index: int = index) -> bytes:
                return _event("content_block_delta", {"type": "content_block_delta",
                                                      "index": index, "delta": d})

            if kind == "thinking":
                out += delta({"type": "thinking_delta", "thinking": block["thinking"]})
                out += delta({"type": "signature_delta", "signature": block["signature"]})
            elif kind == "text":
                for i, token in enumerate(words(block["text"])):
                    out += delta({"type": "text_delta", "text": token})
                    if i == 0 and failing:
                        out += _event("error", {"type": "error", "error": {
                            "type": "overloaded_error", "message": "Overloaded"}})
                        await self._send_stream(conn, stream, bytes(out))
                        return
            else:
                arguments = json.dumps(block["input"], ensure_ascii=False)
                third = max(1, len(arguments) // 3)
                for piece in (arguments[:third], arguments[third:2 * third],
                              arguments[2 * third:]):
                    out += delta({"type": "input_json_delta", "partial_json": piece})
            out += _event("content_block_stop", {"type": "content_block_stop", "index": index})
        out += _event("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": usage["output_tokens"]}})
        out += _event("message_stop", {"type": "message_stop"})
        if zen:
            out += _event("ping", {"type": "ping", "cost": "0.00042"})
        await self._send_stream(conn, stream, bytes(out))

    async def _send_stream(self, conn: h11.Connection, stream: anyio.abc.SocketStream,
                           body: bytes) -> None:
        await self._head(conn, stream, 200, [("content-type", "text/event-stream")])
        await self._chunk(conn, stream, body, awkward=True)
        await self._send(conn, stream, h11.EndOfMessage())
