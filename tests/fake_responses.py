"""A fake OpenAI Responses upstream for tests: ``POST /v1/responses``, OpenAI's exact wire.

Strategy: the h11 plumbing of :class:`fake_ollama.FakeServer` (no HTTP code shared with
chatd), and one builder, :func:`answer`, that writes a Responses answer the way
api.openai.com does (openai-python ``types/responses``: the ``response`` object, and the
typed SSE events with ``event:`` lines, ``sequence_number``, ``item_id`` /
``output_index``). The codec tests read the same builder's output as fixtures, so what the
fake serves and what the parser is tested on cannot drift apart.

Behaviour, chosen so a real agent can run a whole tool round trip against it:

- a request offering function tools (top level or inside a ``namespace``) whose ``input``
  does not end with a ``function_call_output`` gets a call of the first function tool,
  its arguments streamed in three fragments (with ``tool_trigger`` set, only when the
  user's input contains it);
- otherwise the answer is :attr:`FakeResponses.reply`;
- a request with ``reasoning`` gets a reasoning item first (a summary and an
  ``encrypted_content`` that names the request's position), as ``include:
  ["reasoning.encrypted_content"]`` asks;
- every message item carries a field chatd does not know (``x_fake``), and every stream
  a ``ping`` event after ``response.completed`` (OpenCode Zen appends one with the cost,
  providers.md §5.3): the same dialect must pass the first and survive the second;
- errors in OpenAI's shape (providers.md §3.4); ``failures`` answer a status,
  ``fail_midstream`` models send ``response.failed`` after the first delta, ``stall``
  models never answer; the first ``rate_limited`` requests get a 429 naming no wait.

Every request body is kept in :attr:`FakeResponses.requests`; every streamed body is cut
at awkward points (:func:`fake_ollama.awkward_pieces`), one HTTP chunk each.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import anyio.abc
import h11
from fake_ollama import FakeServer, Headers, words

__all__ = ["REPLY", "THINKING", "FakeResponses", "answer", "sse"]

REPLY = "Grüße aus Tōkyō — 東京から 🙂 done."
THINKING = "The user wants a greeting; I will answer in German."


def sse(events: Iterable[Mapping[str, Any]]) -> bytes:
    """Events as OpenAI sends them: ``event: <type>`` then ``data: <json>``."""
    out = bytearray()
    for event in events:
        out += f"event: {event['type']}\n".encode()
        out += b"data: " + json.dumps(event, ensure_ascii=False).encode() + b"\n\n"
    return bytes(out)


def answer(
    *,
    model: str,
    text: str | None = REPLY,
    reasoning: str | None = None,
    encrypted: str | None = None,
    call: tuple[str, str, str | None] | None = None,
    usage: Mapping[str, Any] | None = None,
    rid: str = "resp_fake1",
    status: str = "completed",
    fail_after: int | None = None,
    ping: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(stream events, the whole ``response`` object) of one answer.

    ``call`` is (name, arguments JSON text, namespace or None). ``status="incomplete"``
    ends with ``response.incomplete`` (``max_output_tokens``). ``fail_after`` ends the
    stream with ``response.failed`` after that many text deltas.
    """
    events: list[dict[str, Any]] = []
    output: list[dict[str, Any]] = []
    usage = dict(usage or {
        "input_tokens": 21, "input_tokens_details": {"cached_tokens": 8, "cache_write_tokens": 0},
        "output_tokens": 9, "output_tokens_details": {"reasoning_tokens": 4},
        "total_tokens": 30})
    base = {"id": rid, "object": "response", "created_at": 1760000000, "error": None,
            "incomplete_details": None, "instructions": None, "max_output_tokens": None,
            "model": model, "parallel_tool_calls": True, "previous_response_id": None,
            "reasoning": {"effort": "low", "summary": "auto"}, "store": False,
            "temperature": 1.0, "text": {"format": {"type": "text"}}, "tool_choice": "auto",
            "tools": [], "top_p": 1.0, "truncation": "disabled", "metadata": {}}

    def emit(kind: str, **fields: Any) -> None:
        events.append({"type": kind, "sequence_number": len(events), **fields})

    emit("response.created", response={**base, "status": "in_progress", "output": [],
                                       "usage": None})
    emit("response.in_progress", response={**base, "status": "in_progress", "output": [],
                                           "usage": None})
    if reasoning is not None or encrypted is not None:
        item_id = "rs_fake1"
        index = len(output)
        emit("response.output_item.added", output_index=index,
             item={"id": item_id, "type": "reasoning", "summary": []})
        summary = []
        if reasoning:
            ids = {"item_id": item_id, "output_index": index, "summary_index": 0}
            emit("response.reasoning_summary_part.added", **ids,
                 part={"type": "summary_text", "text": ""})
            for piece in words(reasoning):
                emit("response.reasoning_summary_text.delta", **ids, delta=piece)
            emit("response.reasoning_summary_text.done", **ids, text=reasoning)
            emit("response.reasoning_summary_part.done", **ids,
                 part={"type": "summary_text", "text": reasoning})
            summary = [{"type": "summary_text", "text": reasoning}]
        item = {"id": item_id, "type": "reasoning", "summary": summary}
        if encrypted is not None:
            item["encrypted_content"] = encrypted
        emit("response.output_item.done", output_index=index, item=item)
        output.append(item)
    if text is not None:
        item_id = "msg_fake1"
        index = len(output)
        ids = {"item_id": item_id, "output_index": index, "content_index": 0}
        emit("response.output_item.added", output_index=index, item={
            "id": item_id, "type": "message", "status": "in_progress", "content": [],
            "role": "assistant", "x_fake": "kept"})
        emit("response.content_part.added", **ids,
             part={"type": "output_text", "annotations": [], "logprobs": [], "text": ""})
        for i, piece in enumerate(words(text)):
            if fail_after is not None and i == fail_after:
                emit("response.failed", response={
                    **base, "status": "failed", "output": [], "usage": None,
                    "error": {"code": "server_error",
                              "message": "The model backend went away mid-answer."}})
                return events, {}
            emit("response.output_text.delta", **ids, delta=piece, logprobs=[],
                 obfuscation="Zx")
        emit("response.output_text.done", **ids, text=text, logprobs=[])
        part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
        emit("response.content_part.done", **ids, part=part)
        item = {"id": item_id, "type": "message",
                "status": "incomplete" if status == "incomplete" else "completed",
                "content": [part], "role": "assistant", "x_fake": "kept"}
        emit("response.output_item.done", output_index=index, item=item)
        output.append(item)
    if call is not None:
        name, arguments, namespace = call
        item_id = "fc_fake1"
        index = len(output)
        item = {"id": item_id, "type": "function_call", "status": "in_progress",
                "arguments": "", "call_id": "call_fake1", "name": name}
        if namespace is not None:
            item["namespace"] = namespace
        emit("response.output_item.added", output_index=index, item=dict(item))
        third = max(1, len(arguments) // 3)
        for piece in (arguments[:third], arguments[third:2 * third], arguments[2 * third:]):
            emit("response.function_call_arguments.delta", item_id=item_id,
                 output_index=index, delta=piece)
        emit("response.function_call_arguments.done", item_id=item_id, output_index=index,
             name=name, arguments=arguments)
        item = {**item, "status": "completed", "arguments": arguments}
        emit("response.output_item.done", output_index=index, item=item)
        output.append(item)
    whole = {**base, "status": status, "output": output, "usage": usage}
    if status == "incomplete":
        whole["incomplete_details"] = {"reason": "max_output_tokens"}
        emit("response.incomplete", response=whole)
    else:
        emit("response.completed", response=whole)
    if ping:
        events.append({"type": "ping", "cost": "0.00001234"})
    return events, whole


def _first_function(tools: list[Any]) -> tuple[str, str | None] | None:
    """(name, namespace) of the first function tool, looking inside namespaces."""
    for tool in tools:
        if not isinstance(tool, dict):
            continue
        if tool.get("type") == "function":
            return tool["name"], None
        if tool.get("type") == "namespace":
            for sub in tool.get("tools") or ():
                if sub.get("type") == "function":
                    return sub["name"], tool["name"]
    return None


class FakeResponses(FakeServer):
    """``POST /v1/responses``; a provider's ``base_url`` is ``f"{fake.url}/v1"``.

    Args:
        key: the bearer key it accepts.
        reply: the answer's text; each word is one delta.
        tool_arguments: the arguments of the call made when the request offers tools.
        tool_trigger: when set, tools are called only for a request whose user input
            contains it (an agent always offers tools; a plain answer must be possible).
        rate_limited: how many of the first requests get a 429 that names no wait.
        failures: upstream model -> (status, message, extra headers) answered instead.
        fail_midstream: models whose streams fail after the first delta.
        stall: models that never answer (until the client closes the connection).
    """

    def __init__(
        self,
        *,
        key: str,
        reply: str = REPLY,
        tool_arguments: Mapping[str, object] | None = None,
        tool_trigger: str | None = None,
        rate_limited: int = 0,
        failures: Mapping[str, tuple[int, str, Headers]] | None = None,
        fail_midstream: Iterable[str] = (),
        stall: Iterable[str] = (),
    ) -> None:
        super().__init__()
        self.key = key
        self.reply = reply
        self.tool_arguments = dict(tool_arguments or {"path": "README.md", "lines": [1, 2]})
        self.tool_trigger = tool_trigger
        self.rate_limited = rate_limited
        self.failures = dict(failures or {})
        self.fail_midstream = set(fail_midstream)
        self.stall = set(stall)
        self.requests: list[dict[str, Any]] = []
        """Decoded body of every /v1/responses call, in arrival order."""

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    async def _error(self, conn: h11.Connection, stream: anyio.abc.SocketStream,
                     status: int, message: str, code: str | None = None,
                     headers: Headers | None = None) -> None:
        body = {"error": {"message": message, "type": "invalid_request_error",
                          "param": None, "code": code}}
        await self._whole(conn, stream, status, json.dumps(body).encode(),
                          headers=(headers or {}).items())

    async def _respond(self, conn: h11.Connection, stream: anyio.abc.SocketStream,
                       request: h11.Request, body: bytes) -> None:
        if request.target != b"/v1/responses":
            await self._error(conn, stream, 404, "no such route")
            return
        if request.method != b"POST":
            await self._error(conn, stream, 405, "method not allowed")
            return
        auth = dict(request.headers).get(b"authorization", b"").decode()
        if auth != f"Bearer {self.key}":
            await self._error(conn, stream, 401, "Incorrect API key provided.",
                              "invalid_api_key")
            return
        try:
            payload = json.loads(body)
        except ValueError:
            await self._error(conn, stream, 400, "We could not parse the JSON body.")
            return
        self.requests.append(payload)
        if len(self.requests) <= self.rate_limited:
            await self._error(conn, stream, 429, "Rate limit reached. Slow down.",
                              "rate_limit_exceeded")
            return
        model = payload.get("model")
        if model in self.failures:
            status, message, headers = self.failures[model]
            await self._error(conn, stream, status, message,
                              "model_not_found" if status == 404 else None, headers)
            return
        if model in self.stall:
            await self._until_closed(stream)
            return
        events, whole = self._answer(payload)
        if payload.get("stream"):
            await self._head(conn, stream, 200, [("content-type", "text/event-stream")])
            await self._chunk(conn, stream, sse(events), awkward=True)
            await self._send(conn, stream, h11.EndOfMessage())
        else:
            await self._whole(conn, stream, 200, json.dumps(whole, ensure_ascii=False).encode())

    def _answer(self, payload: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        items = payload.get("input")
        answered = isinstance(items, list) and bool(items) and isinstance(items[-1], dict) \
            and items[-1].get("type") == "function_call_output"
        asked = self.tool_trigger is None or self.tool_trigger in json.dumps(
            [i for i in items if isinstance(i, dict) and i.get("role") == "user"]
            if isinstance(items, list) else items, ensure_ascii=False)
        tool = None if answered or not asked else _first_function(payload.get("tools") or [])
        call = None
        if tool is not None:
            call = (tool[0], json.dumps(self.tool_arguments), tool[1])
        reasoning = None
        encrypted = None
        if payload.get("reasoning"):
            reasoning = THINKING
            encrypted = f"gAAAA-fake-encrypted-{len(self.requests)}"
        model = str(payload.get("model"))
        return answer(model=model, text=None if call else self.reply, reasoning=reasoning,
                      encrypted=encrypted, call=call,
                      fail_after=1 if model in self.fail_midstream else None)
