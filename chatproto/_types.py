"""The data chatd's core speaks: requests in, HTTP descriptions out, responses back.

Strategy: everything here is a frozen, keyword-only dataclass with tuples for sequences, so
values can be shared across tasks without copying and compared in tests. JSON-shaped
payloads that chatd passes through without interpreting (tool schemas, a JSON-schema
``format``) stay as plain JSON values (:data:`JSON`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "JSON",
    "ChatRequest",
    "ChatResponse",
    "HTTPRequest",
    "ImagePart",
    "Message",
    "Part",
    "Provider",
    "Route",
    "Secret",
    "TextPart",
    "ThinkingPart",
    "ToolCall",
    "Usage",
    "redact_userinfo",
]

JSON = Any
"""A decoded JSON value passed through untouched (a tool schema, a ``format`` schema)."""

_EMPTY: Mapping[str, Any] = MappingProxyType({})


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


def redact_userinfo(url: str) -> str:
    """``url`` with credentials in its authority (``user:pass@``) shown as ``***@``.

    A base URL may name a basic-auth proxy that way; wherever a URL is shown (the
    providers route and command, a request's repr, an error message) the password must
    not be, while the ``***@`` still tells the operator that credentials are configured.
    """
    scheme, sep, rest = url.partition("://")
    authority, slash, tail = rest.partition("/")
    if not sep or "@" not in authority:
        return url
    return f"{scheme}://***@{authority.rpartition('@')[2]}{slash}{tail}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Provider:
    """A provider: where to call, how to authenticate, and its quirks as named flags.

    One value is both a profile row (:data:`chatproto.PROFILES`, or a table in
    configuration that sets ``api``) and, once its key resolved, a registered provider
    (the same row with :attr:`key` set). Routing, configuration defaults, the codecs and
    the docs all read these fields; no code branches on a provider's name.

    ``api`` names the codec of its default wire format: ``"ollama_chat"``,
    ``"ollama_generate"``, ``"openai_chat"``, ``"anthropic_messages"``,
    ``"openai_responses"``.
    """

    name: str
    api: str
    base_url: str
    key: Secret | None = None
    headers: tuple[tuple[str, str], ...] = ()
    """Extra request headers from configuration (attribution, User-Agent)."""
    timeout_secs: float | None = None
    """Whole-call timeout for this provider; None means the global one."""
    prefix: str = ""
    """The model-name prefix that routes here (SPEC §1 rules 3-7): ``"kimi/"``.
    Empty for none (a provider reached only as the default)."""
    key_env: str = ""
    """The environment variable holding the key; empty for a provider that needs none."""
    key_file: str = ""
    """A ``.env`` file defining :attr:`key_env`, read when the environment has none."""
    model_apis: tuple[tuple[str, str], ...] = ()
    """``(model-name prefix, api)`` rows for a provider that serves each model on one wire
    format; the first row whose prefix starts the upstream model wins, else :attr:`api`."""
    tools_api: str | None = None
    """The api to use instead of :attr:`api` when the request carries tools or tool
    results (Ollama Cloud: /api/generate takes no tools, its /api/chat does)."""
    paths: tuple[tuple[str, str], ...] = ()
    """``(api, path)``: the path appended to :attr:`base_url` where it differs from the
    codec's default (OpenCode Zen's Anthropic endpoint is ``/messages``)."""
    strip_cloud_tag: bool = False
    """SPEC §1 rule 4: a trailing ``:cloud``/``-cloud`` tag is removed from the model."""
    vendor_model_ids: bool = False
    """SPEC §1 rule 5: model ids are ``vendor/model``; a bare id is a 400."""
    cloud_suffix: bool = False
    """SPEC §1 rule 8: a bare ``<m>:cloud`` routes here (Ollama Cloud), as ``<m>``."""
    reasoning_control: str = ""
    """How an OpenAI-chat body carries ``think``: ``"reasoning"`` (OpenRouter's
    ``reasoning`` object), ``"thinking"`` (Kimi's ``thinking`` object), ``"effort"``
    (``reasoning_effort``, OpenCode Zen), or ``""`` (no documented control: nothing is
    sent)."""
    extra_sampling: bool = False
    """An OpenAI-chat upstream that takes ``top_k``, ``min_p`` and ``repetition_penalty``
    besides OpenAI's sampling fields (OpenRouter, openrouter.ai/docs/api-reference/
    parameters)."""
    echo_reasoning: bool = False
    """Send an assistant turn's earlier thinking back as ``reasoning_content`` (Kimi
    refuses a tool-call history without it)."""
    forward_user_agent: bool = False
    """Send the calling client's User-Agent upstream instead of chatd's (SPEC §2: Kimi For
    Coding admits only coding agents)."""
    list_models: bool = False
    """The upstream has a model list chatd may show clients (``GET /models``)."""
    key_header: str = "authorization"
    """Where the key goes: ``"authorization"`` (``Bearer <key>``, SPEC §2's default) or
    ``"x-api-key"`` (Anthropic's own header, which its API wants for an API key; the
    ``anthropic_messages`` codec reads it)."""
    max_concurrency: int | None = None
    """Calls in flight to this provider at most (SPEC §5); None for no bound. A call past
    it waits up to :attr:`queue_timeout_secs` for a slot, in arrival order, then is a 503
    ``upstream_overloaded``; in a chain with a target left, it falls through at once."""
    queue_timeout_secs: float = 10.0
    """How long a call waits for a slot when the provider is at :attr:`max_concurrency`."""

    def api_for(self, upstream_model: str, *, tools: bool = False) -> str:
        """The wire format this provider speaks for ``upstream_model``."""
        for prefix, api in self.model_apis:
            if upstream_model.startswith(prefix):
                return api
        if tools and self.tools_api is not None:
            return self.tools_api
        return self.api

    def path(self, api: str, default: str) -> str:
        for name, path in self.paths:
            if name == api:
                return path
        return default

    @property
    def url_for_display(self) -> str:
        """:attr:`base_url` with any ``user:password@`` replaced by ``***@``."""
        parts = urlsplit(self.base_url)
        if "@" not in parts.netloc:
            return self.base_url
        host = parts.netloc.rpartition("@")[2]
        return parts._replace(netloc=f"***@{host}").geturl()


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
            f"HTTPRequest(method={self.method!r}, url={redact_userinfo(self.url)!r}, "
            f"headers=[{names}], "
            f"body=<{len(self.body)} bytes>, stream={self.stream})"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TextPart:
    """A piece of text in a message's content."""

    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ImagePart:
    """An image: inline base64 ``data`` (with its ``media_type`` when known) or a ``url``.

    Exactly one of ``data`` and ``url`` is set. Ollama takes base64 only; the OpenAI family
    and Anthropic take either, so a URL is refused only where the upstream cannot take it.
    """

    data: str | None = None
    media_type: str | None = None
    url: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ThinkingPart:
    """The model's reasoning, as an earlier turn produced it.

    ``signature`` is Anthropic's thinking signature; ``encrypted`` is opaque reasoning an
    upstream asked to have echoed back (Anthropic ``redacted_thinking.data``, Responses
    ``reasoning.encrypted_content``). Both must come back on the next turn unchanged:
    upstreams refuse a tool turn whose thinking lost its signature.
    """

    text: str = ""
    signature: str | None = None
    encrypted: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCall:
    """A complete tool call; ``arguments`` is JSON text (OpenAI's form)."""

    id: str | None
    name: str
    arguments: str


Part = TextPart | ImagePart | ThinkingPart | ToolCall
"""A typed piece of a message's content, in the order the message holds them."""


@dataclass(frozen=True, slots=True, init=False)
class Message:
    """One chat message. Roles: ``system``, ``user``, ``assistant``, ``tool``.

    The content is :attr:`parts`, typed and in order (an Anthropic assistant turn
    interleaves thinking, text and tool calls; an OpenAI one cannot, and its codec reads the
    flat views :attr:`content`, :attr:`thinking`, :attr:`tool_calls`, :attr:`images`).

    A tool result is a message of role ``tool`` naming the call it answers in
    :attr:`tool_call_id`; its parts are the result (text, images). Anthropic's
    ``tool_result`` blocks inside a user turn become one such message each, in order.

    The keyword arguments ``content``, ``thinking``, ``tool_calls`` and ``images`` build the
    parts for the common flat case (thinking, text, images, tool calls, in that order);
    ``parts`` given directly wins over them.
    """

    role: str
    parts: tuple[Part, ...]
    tool_call_id: str | None
    """For ``role == "tool"``: the call this message answers."""
    name: str | None
    """For ``role == "tool"``: the tool's name (Ollama's ``tool_name``)."""
    is_error: bool
    """For ``role == "tool"``: the tool failed (Anthropic's ``tool_result.is_error``)."""

    def __init__(
        self,
        *,
        role: str,
        content: str = "",
        thinking: str | None = None,
        tool_calls: tuple[ToolCall, ...] = (),
        tool_call_id: str | None = None,
        name: str | None = None,
        images: tuple[str, ...] = (),
        parts: tuple[Part, ...] | None = None,
        is_error: bool = False,
    ) -> None:
        if parts is None:
            built: list[Part] = []
            if thinking:
                built.append(ThinkingPart(text=thinking))
            if content:
                built.append(TextPart(text=content))
            built.extend(ImagePart(data=image) for image in images)
            built.extend(tool_calls)
            parts = tuple(built)
        set_ = object.__setattr__
        set_(self, "role", role)
        set_(self, "parts", parts)
        set_(self, "tool_call_id", tool_call_id)
        set_(self, "name", name)
        set_(self, "is_error", is_error)

    @property
    def content(self) -> str:
        """The text parts as one string, each on its own line (``""`` when there are none).

        Where a wire has one string for a message (Chat Completions and Ollama content, a
        system prompt), separate blocks must stay apart: Claude Code's first ``system``
        block is its billing header (``x-anthropic-billing-header: ...;``), which joined
        with nothing runs into the prompt's first words. A dialect that has blocks sends
        :attr:`parts` instead."""
        parts = self.parts
        if len(parts) == 1:
            only = parts[0]
            return only.text if type(only) is TextPart else ""
        return "\n".join(p.text for p in parts if type(p) is TextPart and p.text)

    @property
    def thinking(self) -> str | None:
        """The thinking parts' text, joined; None when there is none."""
        text = "".join(p.text for p in self.parts if type(p) is ThinkingPart)
        return text or None

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple(p for p in self.parts if type(p) is ToolCall)

    @property
    def images(self) -> tuple[str, ...]:
        """The base64 payloads of the inline images (Ollama's ``images``)."""
        return tuple(p.data for p in self.parts if type(p) is ImagePart and p.data is not None)

    @property
    def image_parts(self) -> tuple[ImagePart, ...]:
        return tuple(p for p in self.parts if type(p) is ImagePart)

    @property
    def thinking_parts(self) -> tuple[ThinkingPart, ...]:
        return tuple(p for p in self.parts if type(p) is ThinkingPart)


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
    options: Mapping[str, JSON] = field(default_factory=lambda: _EMPTY)
    """Sampling and control settings with a counterpart in more than one dialect, by
    chatd's name for them (``presence_penalty``, ``frequency_penalty``, ``top_k``,
    ``min_p``, ``repeat_penalty``, ``num_ctx``, ``parallel_tool_calls``, ``user``,
    ``logprobs``, ``top_logprobs``, ``keep_alive``...). A codec sends the ones its API
    has and leaves the rest out."""
    dialect: str | None = None
    """The wire format the request came in (a front door's ``api`` name, e.g.
    ``"openai_chat"``); None for the native door."""
    extras: Mapping[str, JSON] = field(default_factory=lambda: _EMPTY)
    """Top-level fields of the client's body that chatd did not interpret. A codec whose
    ``api`` equals :attr:`dialect` sends them upstream unchanged (SPEC §2 "Dialects": the
    same dialect loses nothing); across dialects they have no meaning and are dropped."""
    headers: tuple[tuple[str, str], ...] = ()
    """Client request headers to carry upstream, lower-case names (``anthropic-beta``
    on the same dialect; ``user-agent`` where the provider forwards it)."""
    raw: JSON = None
    """The client's decoded body, kept by a door whose dialect is also an upstream API
    when the canonical fields cannot say everything it held (OpenAI Responses: item ids,
    reasoning ids, namespace and hosted tools; Anthropic Messages: ``cache_control`` on any
    block, citations, server-tool blocks in the history). A codec whose ``api`` equals
    :attr:`dialect` sends it with only ``model`` and ``stream`` rewritten, so the same
    dialect loses nothing (SPEC §2 "Dialects"); every other codec ignores it. OpenAI Chat
    Completions keeps it too, and its codec reads from it what the canonical fields drop
    (each message's other fields and content parts, the whole ``response_format``), while
    its top level is still built from the canonical fields and ``extras``, where each
    provider's quirks apply. The counterpart of :attr:`ChatResponse.raw`; None
    otherwise."""
    dialect_only: str | None = None
    """Why only an upstream of :attr:`dialect` can take this request, when :attr:`raw`
    holds what the canonical fields cannot say at all (an OpenAI ``file`` part, a PDF):
    another wire format would get the request without it. The call plan skips a target
    of any other wire format with this as the reason; None when any can take it."""


#: The largest token count chatd reports: the largest integer orjson writes (2^64 - 1).
MAX_TOKEN_COUNT = 2**64 - 1


_USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "cached_tokens",
                 "cache_creation_tokens", "reasoning_tokens", "total_duration_ns",
                 "load_duration_ns", "prompt_eval_duration_ns", "eval_duration_ns")


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """Token counts as the upstream reported them, never estimated; and the time it
    reported spending, where it does.

    ``prompt_tokens`` counts every input token, cached ones included (OpenAI's convention;
    Anthropic reports cache reads and writes apart from ``input_tokens``, and its codec
    adds them in). ``cached_tokens`` are input tokens read from a prompt cache,
    ``cache_creation_tokens`` input tokens written to one, ``reasoning_tokens`` the part of
    ``completion_tokens`` spent thinking. None means the upstream did not say.

    The ``*_duration_ns`` are Ollama's own measures, in nanoseconds (``total_duration``,
    ``load_duration``, ``prompt_eval_duration``, ``eval_duration``, providers.md OL §1.4),
    which both Ollama codecs read: Ollama clients compute tokens per second from
    ``eval_count / eval_duration``, which chatd cannot measure from outside. They belong
    with the counts they time, on the one object that reaches every door with the answer
    and is built once per call; None elsewhere.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int | None = None
    cache_creation_tokens: int | None = None
    reasoning_tokens: int | None = None
    total_duration_ns: int | None = None
    load_duration_ns: int | None = None
    prompt_eval_duration_ns: int | None = None
    eval_duration_ns: int | None = None

    def __post_init__(self) -> None:
        # Counts come from upstream JSON, which orjson reads up to 2^64 - 1 and writes no
        # further: a codec's sum of two (or an absurd count) must not fail the answer when a
        # door encodes it, so every count saturates at MAX_TOKEN_COUNT.
        for name in _USAGE_FIELDS:
            value = getattr(self, name)
            if value is not None and value > MAX_TOKEN_COUNT:
                object.__setattr__(self, name, MAX_TOKEN_COUNT)

    @property
    def total_tokens(self) -> int:
        return min(self.prompt_tokens + self.completion_tokens, MAX_TOKEN_COUNT)

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
    thinking_parts: tuple[ThinkingPart, ...] = ()
    """The reasoning with its signatures, when the upstream gave any (Anthropic thinking
    blocks, Responses reasoning items); :attr:`thinking` is their text, joined."""
    stop_sequence: str | None = None
    """With ``finish_reason == "stop"``: the stop sequence that matched, where known."""
    raw: JSON = None
    """The upstream's decoded body, kept when the request's dialect equals the upstream's
    (the door renders it with only the model name rewritten); None otherwise."""
    dialect: str | None = None
    """The upstream API that produced :attr:`raw`."""
