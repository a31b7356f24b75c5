"""The data chatd's core speaks: requests in, HTTP descriptions out, responses back.

Strategy: everything here is a frozen, keyword-only dataclass with tuples for sequences, so
values can be shared across tasks without copying and compared in tests. JSON-shaped
payloads that chatd passes through without interpreting (tool schemas, a JSON-schema
``format``) stay as plain JSON values (:data:`JSON`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "JSON",
    "ChatRequest",
    "ChatResponse",
    "HTTPRequest",
    "Message",
    "Provider",
    "Route",
    "Secret",
    "ToolCall",
    "Usage",
]

JSON = Any
"""A decoded JSON value passed through untouched (a tool schema, a ``format`` schema)."""


class Secret:
    """A key that never shows itself: ``repr``/``str`` print a mask, not the value.

    The only way to the value is :meth:`reveal`, called where the Authorization header is
    built. That keeps keys out of tracebacks, logs and ``repr`` of any config that holds one.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Provider:
    """A registered provider: where to call and how to authenticate.

    ``api`` names the codec: ``"ollama_chat"``, ``"ollama_generate"`` or ``"openai_chat"``.
    """

    name: str
    api: str
    base_url: str
    key: Secret | None = None
    headers: tuple[tuple[str, str], ...] = ()
    """Extra request headers from configuration (attribution, User-Agent)."""
    timeout_secs: float | None = None
    """Whole-call timeout for this provider; None means the global one."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """Where one model name goes: the provider and the model name the upstream sees."""

    provider: str
    upstream_model: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HTTPRequest:
    """A description of the HTTP request to make; transports execute it.

    ``headers`` are (name, value) pairs, Host excluded (the transport derives it from url).
    ``stream`` tells the transport the response will be read incrementally.
    """

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    stream: bool = False

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (443 if parts.scheme == "https" else 80)

    @property
    def target(self) -> str:
        """The request-target: path plus query, ``/`` when empty."""
        parts = urlsplit(self.url)
        path = parts.path or "/"
        return f"{path}?{parts.query}" if parts.query else path

    def __repr__(self) -> str:
        # Never print header values: Authorization holds a key.
        names = ", ".join(k for k, _ in self.headers)
        return (
            f"HTTPRequest(method={self.method!r}, url={self.url!r}, headers=[{names}], "
            f"body=<{len(self.body)} bytes>, stream={self.stream})"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCall:
    """A complete tool call; ``arguments`` is JSON text (OpenAI's form)."""

    id: str | None
    name: str
    arguments: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """One chat message. Roles: ``system``, ``user``, ``assistant``, ``tool``."""

    role: str
    content: str = ""
    thinking: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    """For ``role == "tool"``: the call this message answers."""
    name: str | None = None
    """For ``role == "tool"``: the tool's name (Ollama's ``tool_name``)."""
    images: tuple[str, ...] = ()
    """Base64 images (Ollama's ``images``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatRequest:
    """A validated chat request, independent of which front door it came through.

    ``model`` is the name the caller gave (before routing). ``format`` is None, ``"json"``
    or a JSON-schema object. ``think`` is None (the provider default: chatd sends false to
    Ollama), a bool, or a level string (``low``/``medium``/``high``/``max``).
    """

    model: str
    messages: tuple[Message, ...]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    format: JSON = None
    think: bool | str | None = None
    stream: bool = False
    tools: tuple[JSON, ...] = ()
    """OpenAI-shaped tool definitions: ``{"type": "function", "function": {...}}``."""
    tool_choice: JSON = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatResponse:
    """A whole answer, as every codec reduces it (before the server adds id and latency)."""

    content: str
    finish_reason: str
    usage: Usage = field(default_factory=Usage)
    thinking: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
