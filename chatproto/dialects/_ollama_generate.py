"""The codec for Ollama's completion endpoint, ``POST /api/generate`` (provider
``ollama_cloud``, https://ollama.com).

Strategy: SPEC §2 sends Ollama Cloud requests to ``/api/generate`` with the conversation
flattened into ``system`` + ``prompt`` by :func:`flatten_messages`, a pure function tested on
its own. The request knobs, headers, errors and the final ``done`` object are the ones of
``/api/chat`` (ollama.com "acts as a remote Ollama host", providers.md OL §2.1) and come from
:mod:`._ollama_common`. Answers carry ``response`` and a top-level ``thinking`` instead of a
``message`` (OL §1.3, §1.4); the stream is the same NDJSON (OL §1.5).

Decisions, each with its reason:

- Tools are refused (``invalid_request``): ``/api/generate`` has no ``tools`` field (OL
  §1.2), and dropping them silently would answer a tool-using caller with prose.
- ``format`` is passed through although "Ollama's Cloud currently does not support
  structured outputs" (providers.md OL §2.1, ``structured-outputs.mdx``). Dropping it would
  hand a caller who asked for JSON free text as if it were JSON; refusing it here would
  outlive the day ollama.com adds support. Passed on, the upstream decides, and a refusal
  comes back as its 400 → ``upstream_rejected`` with its own message.
- An empty prompt is refused (``invalid_request``): Ollama treats one as "load the model"
  and answers ``done_reason: "load"`` with no text (OL §1.4), which would look like a
  successful empty answer.
- Images of every message go to the top-level ``images`` in order: the endpoint has no
  per-turn images (OL §1.2).
- After the ``done: true`` line the parser ignores what follows, as the chat codec does:
  both run the loop of :class:`._ollama_common.NDJSONStream`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._codec import Codec
from .._errors import ChatError, Headers
from .._events import Event, TextDelta, ThinkingDelta
from .._types import ChatRequest, ChatResponse, HTTPRequest, Message, Provider, Route
from . import ollama as common

__all__ = ["OllamaGenerateCodec", "codec", "flatten_messages"]

_LABELS = {"user": "User", "assistant": "Assistant", "tool": "Tool result"}


def _turn(message: Message, names: dict[str, str]) -> str:
    role = message.role
    label = _LABELS.get(role) or role.capitalize()
    text = message.content
    if message.tool_calls:
        calls = [f"[tool call: {call.name} {call.arguments}]" for call in message.tool_calls]
        text = "\n".join([text, *calls] if text else calls)
        names.update((call.id, call.name) for call in message.tool_calls if call.id is not None)
    elif role == "tool":
        name = message.name
        if name is None and message.tool_call_id is not None:
            name = names.get(message.tool_call_id)
        if name:
            label = f"{label} ({name})"
    return f"{label}: {text}" if text else f"{label}:"


def flatten_messages(messages: Sequence[Message]) -> tuple[str, str]:
    """A conversation as ``(system, prompt)`` for ``/api/generate``.

    ``system`` is every non-empty system message, in order, joined by a blank line: it
    goes to the ``system`` field, which the model's template places where a chat's system
    message would go.

    ``prompt`` is what the model continues. The template wraps it as one user turn, so:

    - a lone user message (the common case) is sent as is, exactly what ``/api/chat``
      would give the model, with no labels to confuse it;
    - otherwise each turn is rendered ``User: …``, ``Assistant: …``, ``Tool result
      (<name>): …`` (assistant tool calls as ``[tool call: <name> <arguments>]`` lines; a
      result without a name takes its call's, found by ``tool_call_id``),
      turns separated by a blank line, the transcript convention models follow best; it
      ends with ``Assistant:`` so the model answers as the assistant, unless the last turn
      already is the assistant's, which the model then continues (the prefill ``/api/chat``
      also honours). Earlier ``thinking`` is left out, as chat templates leave it out.

    No messages besides system ones give an empty prompt.
    """
    system = "\n\n".join(m.content for m in messages if m.role == "system" and m.content)
    turns = [m for m in messages if m.role != "system"]
    if not turns:
        return system, ""
    if len(turns) == 1 and turns[0].role == "user" and not turns[0].tool_calls:
        return system, turns[0].content
    names: dict[str, str] = {}  # tool call id -> function name, to label the results
    parts = [_turn(m, names) for m in turns]
    if turns[-1].role != "assistant":
        parts.append("Assistant:")
    return system, "\n\n".join(parts)


class _GenerateStream(common.NDJSONStream):
    """Parses ``/api/generate`` NDJSON into events: top-level ``thinking`` and
    ``response`` (OL §1.3, §1.4); the loop is :class:`._ollama_common.NDJSONStream`."""

    __slots__ = ()

    api = "ollama_generate"

    def _deltas(self, obj: dict[str, Any], out: list[Event]) -> None:
        thinking = obj.get("thinking")
        if thinking is not None:
            if type(thinking) is not str:
                raise common.bad_response(self._provider, "a non-string 'thinking'")
            if thinking:
                out.append(ThinkingDelta(text=thinking))
        text = obj.get("response")
        if text is not None:
            if type(text) is not str:
                raise common.bad_response(self._provider, "a non-string 'response'")
            if text:
                out.append(TextDelta(text=text))


class OllamaGenerateCodec:
    """Ollama ``/api/generate``; see the module docstring for the decisions it makes."""

    __slots__ = ()

    api = "ollama_generate"

    def build_request(self, request: ChatRequest, route: Route, provider: Provider) -> HTTPRequest:
        # route.upstream_model already has ":cloud"/"-cloud" removed: routing owns that
        # (SPEC §1 rules 4 and 8).
        if request.tools:
            raise ChatError(
                "invalid_request",
                f"provider {provider.name!r} calls Ollama's /api/generate, which takes no "
                "tools; send tool requests to a chat provider",
            )
        system, prompt = flatten_messages(request.messages)
        if not prompt:
            raise ChatError(
                "invalid_request",
                f"provider {provider.name!r} needs a non-empty user or assistant message: "
                "Ollama's /api/generate treats an empty prompt as a request to load the model",
            )
        body: dict[str, Any] = {"model": route.upstream_model, "prompt": prompt}
        if system:
            body["system"] = system
        images = [image for m in request.messages for image in m.images]
        if images:
            body["images"] = images
        common.request_fields(request, body)
        return common.http_request(provider, "/api/generate", body, request.stream)

    def parse_response(
        self, provider: str, body: bytes, *, passthrough: bool = False
    ) -> ChatResponse:
        obj = common.answer_object(body, provider)
        if type(obj.get("response")) is not str:
            raise common.bad_response(provider, "a body without a 'response' string")
        return ChatResponse(
            content=obj["response"],
            finish_reason=common.finish_reason(obj, provider, False),
            usage=common.usage(obj, provider),
            thinking=common.text_field(obj, "thinking", provider) or None,
            raw=obj if passthrough else None,
            dialect=self.api if passthrough else None,
        )

    def stream_parser(self, provider: str, *, passthrough: bool = False) -> _GenerateStream:
        return _GenerateStream(provider, passthrough=passthrough)

    def parse_error(
        self, provider: str, status: int, headers: Headers, body: bytes, *, now: float
    ) -> ChatError:
        return common.parse_error(provider, status, headers, body, now=now)


codec: Codec = OllamaGenerateCodec()
