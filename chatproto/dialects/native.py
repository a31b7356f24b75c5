"""chatd's own API, ``POST /v1/chat`` (SPEC §3): the native door.

Strategy: the request is the canonical one (:func:`~chatproto._request.parse_chat_request`
validates it field by field), so parsing adds nothing; rendering adds what only the server
knows: who answered (provider and upstream model) and the upstream round trip. A stream is
NDJSON, one line per event, and a last ``{"done": true, ...}`` line with the finish reason,
usage and the same facts; a failure after the first line is a last ``{"done": true,
"error": {...}}`` line (SPEC §4). Text and thinking lines, the per-chunk path, splice the
encoded text into constant bytes: the same bytes ``dumps({"content": text})`` gives.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._decoders import dumps
from .._door import Answer, CallContext, DoorCall, Served, keep_rendered
from .._errors import ChatError, Headers
from .._events import Event, StreamEnded, TextDelta, ThinkingDelta, ToolCallDelta
from .._request import parse_chat_request
from .._types import ToolCall, Usage

__all__ = ["NativeDoor", "NativeStream", "door"]

JSON_TYPE = b"application/json"
NDJSON_TYPE = b"application/x-ndjson"


def _usage(usage: Usage | None) -> dict[str, int]:
    return (usage or Usage()).to_dict()


def _tool_call(call: ToolCall, derived: str) -> dict[str, object]:
    """A call of an answer; one the upstream gave no id (Ollama) gets ``derived``,
    ``call_<answer id>_<index>``, unique across the turns of a conversation."""
    return {"id": call.id or derived, "name": call.name, "arguments": call.arguments}


class NativeStream:
    """One native NDJSON stream (SPEC §3). The first fragment of a call without an id
    gets ``call_<answer id>_<index>``, as a whole answer's would."""

    __slots__ = ("_id", "_seen")

    def __init__(self, id: str = "") -> None:
        self._id = id
        self._seen: set[int] = set()

    def start(self) -> bytes:
        return b""

    def events(self, batch: Sequence[Event], served: Served) -> bytes:
        lines: list[bytes] = []
        try:
            self._lines(batch, served, lines)
        except Exception as exc:
            keep_rendered(exc, lines)  # the lines before the failure go first (SPEC §4)
            raise
        return b"".join(lines)

    def _lines(self, batch: Sequence[Event], served: Served, lines: list[bytes]) -> None:
        for event in batch:
            # ``type(e) is``: the events are final, and this is the per-chunk path.
            if type(event) is TextDelta:
                lines.append(b'{"content":' + dumps(event.text) + b"}\n")
            elif type(event) is ThinkingDelta:
                lines.append(b'{"thinking":' + dumps(event.text) + b"}\n")
            elif type(event) is ToolCallDelta:
                call_id = event.id
                if event.index not in self._seen:
                    self._seen.add(event.index)
                    if call_id is None:
                        call_id = f"call_{self._id}_{event.index}"
                lines.append(dumps({"tool_calls": [{
                    "index": event.index, "id": call_id, "name": event.name,
                    "arguments": event.arguments,
                }]}) + b"\n")
            elif type(event) is StreamEnded:
                lines.append(dumps({
                    "done": True,
                    "finish_reason": event.finish_reason,
                    "usage": _usage(event.usage),
                    "latency_ms": served.latency_ms,
                    "provider": served.route.provider,
                    "upstream_model": served.route.upstream_model,
                }) + b"\n")
            # Other events (RawEvent) have no native line.

    def error(self, exc: ChatError) -> bytes:
        out: dict[str, object] = {"done": True, "error": exc.to_dict()}
        if exc.usage is not None:
            # What the upstream reported spending before it failed (OpenRouter).
            out["usage"] = _usage(exc.usage)
        return dumps(out) + b"\n"


class NativeDoor:
    """``POST /v1/chat``."""

    name = "native"
    api = None
    content_type = JSON_TYPE
    stream_content_type = NDJSON_TYPE
    stream_headers = ((b"cache-control", b"no-cache"),)

    def parse(self, body: bytes, headers: Headers) -> DoorCall:
        return DoorCall(chat=parse_chat_request(body))

    def render(self, call: DoorCall, answer: Answer, ctx: CallContext) -> bytes:
        r = answer.response
        out: dict[str, object] = {
            "id": f"chat-{ctx.id}",
            "model": call.chat.model,
            "provider": answer.route.provider,
            "upstream_model": answer.route.upstream_model,
            "content": r.content,
            "thinking": r.thinking,
            "finish_reason": r.finish_reason,
            "usage": _usage(r.usage),
            "latency_ms": answer.latency_ms,
        }
        if r.tool_calls:
            out["tool_calls"] = [_tool_call(c, f"call_chat-{ctx.id}_{i}")
                                 for i, c in enumerate(r.tool_calls)]
        return dumps(out)

    def stream(self, call: DoorCall, ctx: CallContext) -> NativeStream:
        return NativeStream(f"chat-{ctx.id}")

    def render_error(self, exc: ChatError) -> bytes:
        """SPEC §4's one error shape: ``{"error": {"type", "message", ...}}``."""
        return dumps({"error": exc.to_dict()})


door = NativeDoor()
