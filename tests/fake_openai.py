"""A fake OpenAI-compatible upstream for tests: OpenRouter, OpenCode Zen and Kimi on one port.

Strategy: the h11 plumbing of :class:`fake_ollama.FakeServer` (not hypercorn, so chatd and
its fake share no HTTP code), serving ``POST /<flavor>/chat/completions`` for each flavor in
:data:`FLAVORS`; a provider's ``base_url`` is ``fake.base_url(flavor)``. Each flavor streams
with the quirk providers.md records for it, so chatd's one ``openai_chat`` codec meets all
of them through a real connection:

- ``openrouter``: ``: OPENROUTER PROCESSING`` SSE comments before and between events
  (providers.md §4.3: "skip lines starting with ``:``"), usage in a last chunk with
  ``choices: []``; a mid-stream failure is a chunk with a top-level ``error`` and
  ``finish_reason: "error"`` (providers.md §4.3, OR mirror 178).
- ``opencode``: usage on the finish chunk, and a ``{"choices":[],"cost":"…"}`` chunk *after*
  ``data: [DONE]`` (providers.md §5.3: "Clients that read to EOF must tolerate it").
- ``kimi``: usage nested in ``choices[0].usage`` on the finish chunk (providers.md §6.1:
  "usage may appear in ``chunk.usage`` or nested in ``choices[0].usage``").

Every streamed body is sent in pieces cut every few bytes and inside every multi-byte UTF-8
character (:func:`fake_ollama.awkward_pieces`), one HTTP chunk each. A request offering
``tools`` gets a call of the first tool, its arguments streamed in fragments, unless its
last message is the tool's result (then the reply, closing a round trip). Each flavor
checks its own bearer key (401 in OpenAI's error shape otherwise). Models listed in
``failures`` answer that status; in ``fail_midstream`` they break after the first delta;
in ``stall`` they never answer (until the client closes the connection). ``usage_details``
adds fields to every usage object (OpenRouter's ``cost`` and detail objects).

Besides chat, each flavor serves ``GET /<flavor>/models`` (OpenAI's list shape, the ids in
``models``) and ``POST /<flavor>/embeddings`` (floats, or base64 float32 when asked, with
:func:`fake_ollama.vector_for`'s vectors). A tool conversation is checked as OpenAI checks
it (OAI API reference, "messages"): an assistant ``tool_calls`` entry needs its ``id`` and
``type``, and a ``tool`` message a ``tool_call_id`` naming a call of an earlier assistant
turn, else a 400 in OpenAI's shape; a turn ending in a tool result is answered with text.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterable, Mapping
from typing import Any

import anyio.abc
import h11
from fake_ollama import Call, FakeServer, Headers, vector_for, words

__all__ = ["FLAVORS", "MODELS", "REPLY", "FakeOpenAI"]

FLAVORS = ("openrouter", "opencode", "kimi")

#: Multi-byte text on purpose: the awkward splits then cut characters in half.
REPLY = "Grüße aus Tōkyō — 東京から 🙂 done."

_COMMENT = b": OPENROUTER PROCESSING\n\n"

#: What each flavor's ``GET /models`` lists by default.
MODELS: Mapping[str, tuple[str, ...]] = {
    "openrouter": ("moonshotai/kimi-k2", "openai/gpt-4o-mini",
                   "openai/text-embedding-3-small"),
    "opencode": ("glm-5.1", "claude-sonnet-4-6", "gpt-5.4"),
    "kimi": ("kimi-for-coding",),
}


def _event(obj: object) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\n\n"


class FakeOpenAI(FakeServer):
    """OpenAI-compatible Chat Completions, one path prefix per flavor.

    Args:
        keys: flavor -> the bearer key it accepts (a flavor without one takes none).
        reply: the answer; each word is one streamed delta.
        tool_arguments: the arguments of the call made when the request offers tools.
        failures: upstream model -> (status, message, extra headers) answered instead.
        fail_midstream: models whose streams fail after the first delta.
        stall: models that never answer; the fake records when the client gave up.
    """

    def __init__(
        self,
        *,
        keys: Mapping[str, str],
        reply: str = REPLY,
        tool_arguments: Mapping[str, object] | None = None,
        tool_trigger: str | None = None,
        failures: Mapping[str, tuple[int, str, Headers]] | None = None,
        fail_midstream: Iterable[str] = (),
        stall: Iterable[str] = (),
        flavors: Iterable[str] = FLAVORS,
        models: Mapping[str, Iterable[str]] | None = None,
        usage_details: Mapping[str, object] | None = None,
        usage_on_error: bool = False,
    ) -> None:
        super().__init__()
        self.keys = dict(keys)
        self.flavors = tuple(flavors)
        """Path prefixes served; a flavor without an entry in ``keys`` takes no key (a
        keyless local server such as vLLM)."""
        self.reply = reply
        self.tool_arguments = dict(tool_arguments or {"path": "README.md", "lines": [1, 2]})
        self.tool_trigger = tool_trigger
        """When set, tools are called only for a request whose user messages contain it
        (an agent always offers tools; a plain answer must be possible too)."""
        self.failures = dict(failures or {})
        self.fail_midstream = set(fail_midstream)
        self.stall = set(stall)
        self.requests: list[tuple[str, dict[str, Any]]] = []
        """(flavor, decoded body) of every chat call, in arrival order."""
        self.models = {f: tuple(ids) for f, ids in (MODELS if models is None
                                                     else models).items()}
        """flavor -> the ids its ``GET /models`` lists."""
        self.embed_requests: list[tuple[str, dict[str, Any]]] = []
        """(flavor, decoded body) of every embeddings call."""
        self.usage_details = dict(usage_details or {})
        """Fields added to every usage object beside the three counts (OpenRouter's
        ``cost``, ``cost_details``, ``prompt_tokens_details``..., providers.md §4.2)."""
        self.usage_on_error = usage_on_error
        """The mid-stream error chunk carries the call's usage, as OpenRouter's last
        message does (providers.md §4.2: usage "in the last SSE message")."""

    def base_url(self, flavor: str) -> str:
        return f"{self.url}/{flavor}"

    def bodies(self, flavor: str) -> list[dict[str, Any]]:
        return [body for f, body in self.requests if f == flavor]

    def last_call(self, flavor: str) -> Call:
        return [c for c in self.calls if c.path.startswith(f"/{flavor}/")][-1]

    async def _error(self, conn: h11.Connection, stream: anyio.abc.SocketStream,
                     status: int, message: str, headers: Headers | None = None) -> None:
        # providers.md §3.4: {"error": {"message", "type", "param", "code"}}.
        body = {"error": {"message": message, "type": "error", "param": None, "code": status}}
        await self._whole(conn, stream, status, json.dumps(body).encode(),
                          headers=(headers or {}).items())

    async def _respond(self, conn: h11.Connection, stream: anyio.abc.SocketStream,
                       request: h11.Request, body: bytes) -> None:
        flavor, _, rest = request.target.decode().lstrip("/").partition("/")
        routes = {"chat/completions": b"POST", "embeddings": b"POST", "models": b"GET"}
        if flavor not in self.flavors or rest not in routes:
            await self._error(conn, stream, 404, "no such route")
            return
        if request.method != routes[rest]:
            await self._error(conn, stream, 405, "method not allowed")
            return
        auth = dict(request.headers).get(b"authorization", b"").decode()
        if flavor in self.keys and auth != f"Bearer {self.keys[flavor]}":
            await self._error(conn, stream, 401, "invalid api key")
            return
        if rest == "models":
            data = [{"id": m, "object": "model", "created": 1753343279, "owned_by": flavor}
                    for m in self.models.get(flavor, ())]
            await self._whole(conn, stream, 200,
                              json.dumps({"object": "list", "data": data}).encode())
            return
        try:
            payload = json.loads(body)
        except ValueError:
            await self._error(conn, stream, 400, "body is not JSON")
            return
        model = payload.get("model")
        if rest == "embeddings":
            self.embed_requests.append((flavor, payload))
            if model in self.failures:
                status, message, headers = self.failures[model]
                await self._error(conn, stream, status, message, headers)
                return
            await self._embeddings(conn, stream, payload)
            return
        self.requests.append((flavor, payload))
        if model in self.failures:
            status, message, headers = self.failures[model]
            await self._error(conn, stream, status, message, headers)
            return
        problem = self._tool_history_problem(payload.get("messages") or [])
        if problem is not None:
            await self._error(conn, stream, 400, problem)
            return
        if model in self.stall:
            await self._until_closed(stream)
            return
        if payload.get("stream"):
            await self._stream(conn, stream, flavor, payload)
        else:
            await self._completion(conn, stream, payload)

    @staticmethod
    def _tool_history_problem(messages: list[dict[str, Any]]) -> str | None:
        """OpenAI's refusal of a tool history it cannot pair up, or None."""
        ids: set[str] = set()
        for i, m in enumerate(messages):
            for call in m.get("tool_calls") or () if m.get("role") == "assistant" else ():
                if not call.get("id") or call.get("type") != "function":
                    return (f"Missing required parameter: 'messages[{i}].tool_calls[0].id'."
                            if not call.get("id") else
                            f"Missing required parameter: 'messages[{i}].tool_calls[0].type'.")
                ids.add(call["id"])
            if m.get("role") == "tool":
                if not m.get("tool_call_id"):
                    return f"Missing required parameter: 'messages[{i}].tool_call_id'."
                if m["tool_call_id"] not in ids:
                    return ("Invalid parameter: messages with role 'tool' must be a response "
                            "to a preceeding message with 'tool_calls'.")
        return None

    async def _embeddings(self, conn: h11.Connection, stream: anyio.abc.SocketStream,
                          payload: dict[str, Any]) -> None:
        inputs = payload.get("input")
        if isinstance(inputs, str):
            texts = [inputs]
        elif isinstance(inputs, list) and inputs and all(isinstance(i, int) for i in inputs):
            texts = [" ".join(map(str, inputs))]  # one token array
        else:
            texts = [i if isinstance(i, str) else " ".join(map(str, i)) for i in inputs or []]
        dims = payload.get("dimensions") or 4
        b64 = payload.get("encoding_format") == "base64"
        data = []
        for i, text in enumerate(texts):
            vec = vector_for(text, dims)
            data.append({"object": "embedding", "index": i, "embedding": base64.b64encode(
                struct.pack(f"<{len(vec)}f", *vec)).decode() if b64 else vec})
        tokens = sum(len(t.split()) for t in texts)
        body = {"object": "list", "data": data, "model": payload.get("model"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        await self._whole(conn, stream, 200, json.dumps(body).encode())

    def _call(self, payload: dict[str, Any]) -> tuple[str, str] | None:
        tools = payload.get("tools")
        messages = payload.get("messages") or [{}]
        if not tools or messages[-1].get("role") == "tool":
            return None  # no tools, or the tool's result is in: the reply
        if self.tool_trigger is not None and not any(
                self.tool_trigger in str(m.get("content")) for m in messages
                if m.get("role") == "user"):
            return None
        return tools[0]["function"]["name"], json.dumps(self.tool_arguments)

    def _usage(self, payload: dict[str, Any], completion: int) -> dict[str, Any]:
        prompt = sum(len(str(m.get("content") or "").split()) for m in payload["messages"])
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion, **self.usage_details}

    async def _completion(self, conn: h11.Connection, stream: anyio.abc.SocketStream,
                          payload: dict[str, Any]) -> None:
        call = self._call(payload)
        message: dict[str, Any] = {"role": "assistant", "content": self.reply}
        finish = "stop"
        if call is not None:
            name, arguments = call
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_fake_1", "type": "function",
                 "function": {"name": name, "arguments": arguments}}]}
            finish = "tool_calls"
        body = {"id": "chatcmpl-fake", "object": "chat.completion", "created": 1753343279,
                "model": payload["model"],
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": self._usage(payload, len(words(self.reply)))}
        await self._whole(conn, stream, 200, json.dumps(body, ensure_ascii=False).encode())

    async def _stream(self, conn: h11.Connection, stream: anyio.abc.SocketStream,
                      flavor: str, payload: dict[str, Any]) -> None:
        model = payload["model"]
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                "created": 1753343279, "model": model}

        def chunk(delta: dict[str, Any], finish: str | None = None,
                  **extra: Any) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "delta": delta,
                                         "finish_reason": finish}], **extra}

        deltas: list[dict[str, Any]] = [chunk({"role": "assistant", "content": ""})]
        call = self._call(payload)
        if call is None:
            tokens = words(self.reply)
            deltas.extend(chunk({"content": t}) for t in tokens)
            finish = "stop"
        else:
            name, arguments = call
            tokens = [arguments]
            deltas.append(chunk({"tool_calls": [{"index": 0, "id": "call_fake_1",
                                                 "type": "function",
                                                 "function": {"name": name, "arguments": ""}}]}))
            third = max(1, len(arguments) // 3)
            for piece in (arguments[:third], arguments[third:2 * third], arguments[2 * third:]):
                deltas.append(chunk({"tool_calls": [{"index": 0,
                                                     "function": {"arguments": piece}}]}))
            finish = "tool_calls"
        usage = self._usage(payload, len(tokens))

        out = bytearray()
        if flavor == "openrouter":
            out += _COMMENT + _COMMENT
        for i, delta in enumerate(deltas):
            out += _event(delta)
            if flavor == "openrouter" and i % 2:
                out += _COMMENT
            if i == 1 and model in self.fail_midstream:
                # providers.md §4.3: HTTP stays 200; an error chunk with finish_reason "error".
                extra = {"usage": self._usage(payload, i)} if self.usage_on_error else {}
                out += _event(chunk({"content": ""}, "error", error={
                    "code": "server_error", "message": "Provider disconnected"}, **extra))
                await self._send_stream(conn, stream, bytes(out))
                return
        if flavor == "kimi":  # providers.md §6.1: usage nested in the choice
            end = chunk({}, finish)
            end["choices"][0]["usage"] = usage
            out += _event(end)
        elif flavor == "opencode":
            out += _event(chunk({}, finish, usage=usage))
        else:
            out += _event(chunk({}, finish)) + _event({**base, "choices": [], "usage": usage})
        out += b"data: [DONE]\n\n"
        if flavor == "opencode":  # providers.md §5.3: a cost chunk after [DONE]
            out += _event({"choices": [], "cost": "0.00001234"})
        await self._send_stream(conn, stream, bytes(out))

    async def _send_stream(self, conn: h11.Connection, stream: anyio.abc.SocketStream,
                           body: bytes) -> None:
        await self._head(conn, stream, 200, [("content-type", "text/event-stream")])
        await self._chunk(conn, stream, body, awkward=True)
        await self._send(conn, stream, h11.EndOfMessage())
