"""How each door says "error", whole and mid-stream: one reader per door, for tests that
run the same failure through every door (the fault matrix, the limits).

Each reader checks the door's shape (SPEC §3, §4) strictly and returns the SPEC §4 type
the body carries, so a table can compare that with the type the failure must have. A
door on the route table without a reader here fails :func:`door_names`' check.
"""

from __future__ import annotations

from typing import Any

import orjson

from server.app import DOOR_ROUTES
from server.relay import DoorEndpoint

__all__ = ["door_api", "door_paths", "error_type", "request_body", "stream_error_type"]


def door_paths() -> dict[str, str]:
    """Every chat path on the route table -> its door's name."""
    out: dict[str, str] = {}
    for path, methods in DOOR_ROUTES.items():
        endpoint = methods.get("POST")
        if isinstance(endpoint, DoorEndpoint):
            out[path] = endpoint.door.name
    missing = set(out.values()) - set(_WHOLE)
    assert not missing, f"add a reader for the {sorted(missing)} door to door_shapes.py"
    missing_paths = set(out) - set(_BODIES)
    assert not missing_paths, f"add a request body for {sorted(missing_paths)}"
    return out


def door_api(path: str) -> str | None:
    """The upstream API the door at ``path`` speaks (same-dialect passthrough), if any."""
    endpoint = DOOR_ROUTES[path]["POST"]
    assert isinstance(endpoint, DoorEndpoint)
    return endpoint.door.api


def _messages(model: str, stream: bool) -> dict[str, Any]:
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}


_BODIES: dict[str, Any] = {
    "/v1/chat": _messages,
    "/v1/chat/completions": _messages,
    "/api/chat": _messages,
    "/api/generate": lambda model, stream: {"model": model, "stream": stream, "prompt": "hi"},
    "/v1/responses": lambda model, stream: {"model": model, "stream": stream, "input": "hi"},
    "/v1/messages": lambda model, stream: {**_messages(model, stream), "max_tokens": 16},
}


def request_body(path: str, model: str, stream: bool) -> bytes:
    """A chat request for ``model`` in the dialect of the door at ``path``."""
    return orjson.dumps(_BODIES[path](model, stream))


# -- whole error bodies ---------------------------------------------------------------------

#: Anthropic's error types by status (SPEC §4: "On /v1/messages the types are Anthropic's").
ANTHROPIC_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 408: "invalid_request_error", 413: "request_too_large",
    429: "rate_limit_error", 500: "api_error", 502: "api_error",
    503: "overloaded_error", 504: "api_error",
}


def _native(status: int, obj: Any) -> str:
    assert set(obj) == {"error"}, obj
    error = obj["error"]
    assert isinstance(error["message"], str) and error["message"], obj
    return str(error["type"])


def _openai(status: int, obj: Any) -> str:
    assert set(obj) == {"error"}, obj
    error = obj["error"]
    assert {"message", "type", "param", "code"} <= set(error), obj
    assert isinstance(error["message"], str) and error["message"], obj
    return str(error["code"])


def _responses(status: int, obj: Any) -> str:
    code = _openai(status, obj)
    if code == "model_not_found":  # the Responses door's one renamed code (Codex stops)
        return "provider_not_registered" if status == 404 else "upstream_error"
    return code


def _ollama(status: int, obj: Any) -> str:
    assert isinstance(obj["error"], str) and obj["error"], obj
    return str(obj["type"])


def _anthropic(status: int, obj: Any) -> str:
    assert obj["type"] == "error", obj
    error = obj["error"]
    assert error["type"] == ANTHROPIC_TYPES[status], (status, obj)
    assert isinstance(error["message"], str) and error["message"], obj
    return str(error["code"])


_WHOLE = {"native": _native, "openai": _openai, "responses": _responses,
          "ollama": _ollama, "anthropic": _anthropic}


def error_type(path: str, status: int, body: bytes) -> str:
    """The SPEC §4 type of a whole error answer from the door at ``path``."""
    return _WHOLE[door_paths()[path]](status, orjson.loads(body))


# -- the end of a stream --------------------------------------------------------------------


def _sse(body: bytes) -> list[tuple[str, bytes]]:
    """(event name, data) of every SSE event; the name is "" without an ``event:`` line."""
    out: list[tuple[str, bytes]] = []
    for block in body.split(b"\n\n"):
        name, data = "", b""
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip().decode()
            elif line.startswith(b"data:"):
                data = line[5:].strip()
        if data:
            out.append((name, data))
    return out


def _lines(body: bytes) -> list[Any]:
    assert body.endswith(b"\n"), body[-200:]
    return [orjson.loads(line) for line in body.splitlines() if line]


def _stream_native(body: bytes) -> str | None:
    last = _lines(body)[-1]
    assert last["done"] is True, last
    return None if "error" not in last else str(last["error"]["type"])


def _stream_ollama(body: bytes) -> str | None:
    last = _lines(body)[-1]
    if "error" in last:
        assert isinstance(last["error"], str), last
        return str(last["type"])
    assert last["done"] is True, last
    return None


def _stream_openai(body: bytes) -> str | None:
    events = [data for _, data in _sse(body)]
    assert body.endswith(b"data: [DONE]\n\n"), body[-200:]  # SPEC §4, error or not
    assert events.count(b"[DONE]") == 1, body[-200:]
    last = orjson.loads(events[-2])
    return str(last["error"]["code"]) if "error" in last else None  # an error chunk, then [DONE]


def _stream_anthropic(body: bytes) -> str | None:
    name, data = _sse(body)[-1]
    obj = orjson.loads(data)
    if name == "message_stop":
        return None
    assert name == "error" and obj["type"] == "error", (name, obj)
    return str(obj["error"]["code"])


def _stream_responses(body: bytes) -> str | None:
    name, data = _sse(body)[-1]
    obj = orjson.loads(data)
    if name == "response.completed":
        return None
    assert name == "response.failed", (name, obj)
    assert obj["response"]["status"] == "failed", obj
    error = obj["response"]["error"]
    if "type" in error:
        return str(error["type"])
    # A same-dialect upstream's own response.failed, relayed: its code says which.
    return _RESPONSES_CODES[error["code"]]


#: Responses ``response.error.code`` (``response_error.py``) -> SPEC §4 type.
_RESPONSES_CODES = {"server_error": "upstream_error", "rate_limit_exceeded": "rate_limited",
                    "invalid_prompt": "upstream_rejected"}


_STREAM = {"native": _stream_native, "openai": _stream_openai, "ollama": _stream_ollama,
           "anthropic": _stream_anthropic, "responses": _stream_responses}


def stream_error_type(path: str, body: bytes) -> str | None:
    """The SPEC §4 type a streamed answer from ``path`` ended with, None if it ended well;
    the body must end the dialect's way either way."""
    return _STREAM[door_paths()[path]](body)
