"""Embeddings: one request and answer shape for every door, and the plan of upstream calls.

Strategy: the same as chat, smaller. A door (``POST /v1/embeddings``, ``/api/embed``,
``/api/embeddings``) parses its body into an :class:`EmbedRequest`; routing is SPEC §1's
:func:`~chatproto._routing.resolve`, unchanged (SPEC §3: "routed by the same model-name
rules"); the provider's chat api picks the embeddings wire format (Ollama ``/api/embed``
or an OpenAI-family ``/embeddings``, :data:`EMBED_APIS`); :class:`EmbedPlan` gives the
attempts and the decision after each failure exactly as :class:`~chatproto.CallPlan` does
for chat (skip a target that cannot carry the request, move on only after a retryable
upstream failure, one budget for the chain, :func:`~chatproto.blame` on every failure).
The codecs live in the dialect modules of their wire formats
(:mod:`chatproto.dialects.ollama`, :mod:`chatproto.dialects.openai_chat`), beside the doors.

Vectors stay the lists the JSON decoder made (no copy into tuples): an answer holds up to
thousands of floats per input and is only ever re-encoded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from ._errors import ChatError, Headers
from ._plan import SlotRules, blame
from ._profiles import PROFILES
from ._routing import resolve
from ._types import JSON, HTTPRequest, Provider, Route

__all__ = [
    "EMBED_APIS",
    "MAX_INPUTS",
    "EmbedAttempt",
    "EmbedCodec",
    "EmbedPlan",
    "EmbedRequest",
    "EmbedResponse",
    "embed_codec_for",
    "embed_vector",
]

_EMPTY: Mapping[str, JSON] = MappingProxyType({})
_NO_TIERS: Mapping[str, tuple[str, ...]] = MappingProxyType({})

#: Inputs in one request: OpenAI's documented limit ("any array must be 2048 dimensions or
#: less", OAI ``embedding_create_params.py``); Ollama documents none.
MAX_INPUTS = 2048

#: A provider's chat api -> the wire format of its embeddings endpoint. Ollama (local and
#: Cloud) serves ``POST /api/embed`` (OL ``docs/api.md``); the OpenAI family
#: ``POST /embeddings``. Anthropic Messages has no embeddings API.
EMBED_APIS: Mapping[str, str] = MappingProxyType({
    "ollama_chat": "ollama_embed",
    "ollama_generate": "ollama_embed",
    "openai_chat": "openai_embed",
    "openai_responses": "openai_embed",
})


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbedRequest:
    """A validated embeddings request, whichever door it came through.

    ``inputs`` are texts, or (OpenAI only) token arrays. Fields with a counterpart in both
    wire formats are named; the rest of a body rides in :attr:`extras`, sent only to an
    upstream of the same wire format (SPEC §2: the same dialect loses nothing).
    """

    model: str
    inputs: tuple[str | tuple[int, ...], ...]
    dimensions: int | None = None
    """Output size (OpenAI ``dimensions``; Ollama ``dimensions``)."""
    truncate: bool | None = None
    """Ollama: cut inputs to the context length instead of failing (default true)."""
    keep_alive: JSON = None
    """Ollama: how long the model stays loaded (providers.md §1.6)."""
    options: Mapping[str, JSON] = field(default_factory=lambda: _EMPTY)
    """Ollama's ``options`` (``num_ctx``...), sent to Ollama upstreams only."""
    dialect: str | None = None
    """The embeddings wire format the request came in (``"ollama_embed"``,
    ``"openai_embed"``)."""
    extras: Mapping[str, JSON] = field(default_factory=lambda: _EMPTY)
    """Top-level fields chatd does not interpret (OpenAI's ``user``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbedResponse:
    """The vectors, one per input and in input order, and what the upstream counted."""

    vectors: tuple[Sequence[float], ...]
    prompt_tokens: int | None = None
    """Input tokens, where the upstream says (OpenAI ``usage.prompt_tokens``, Ollama
    ``prompt_eval_count``)."""
    load_duration_ns: int | None = None
    """Ollama's ``load_duration``, passed on to Ollama clients."""


class EmbedCodec(Protocol):
    """One upstream embeddings wire format: build the call, read its answer or error."""

    api: str

    def build_request(
        self, request: EmbedRequest, route: Route, provider: Provider
    ) -> HTTPRequest: ...

    def parse_response(self, provider: str, body: bytes, count: int) -> EmbedResponse:
        """A 2xx body with ``count`` vectors; anything else is ``bad_upstream_response``."""
        ...

    def parse_error(
        self, provider: str, status: int, headers: Headers, body: bytes, *, now: float
    ) -> ChatError: ...


def embed_vector(value: object, provider: str, index: int) -> Sequence[float]:
    """One vector from an upstream: a list of numbers, else ``bad_upstream_response``."""
    if isinstance(value, list) and all(type(x) is float or type(x) is int for x in value):
        return value
    raise ChatError("bad_upstream_response",
                    f"upstream embedding {index} is not an array of numbers", provider=provider)


def embed_codec_for(api: str) -> EmbedCodec:
    """The codec of an embeddings wire format (a value of :data:`EMBED_APIS`)."""
    if api == "ollama_embed":
        from .dialects.ollama import embed_codec

        return embed_codec
    if api == "openai_embed":
        from .dialects.openai_chat import embed_codec as openai_codec

        return openai_codec
    raise KeyError(api)


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbedAttempt:
    """One upstream call to make: send :attr:`http` within :attr:`timeout_secs`."""

    route: Route
    provider: Provider
    codec: EmbedCodec
    http: HTTPRequest
    timeout_secs: float
    index: int


def cannot_embed(api: str | None, request: EmbedRequest) -> str | None:
    """Why an embeddings wire format cannot carry ``request``, or None if it can."""
    if api is None:
        return "its API has no embeddings endpoint"
    if api == "ollama_embed" and any(not isinstance(i, str) for i in request.inputs):
        return "Ollama embeds text only, not token arrays"
    return None


class EmbedPlan(SlotRules):
    """The attempts for one embeddings request, like :class:`~chatproto.CallPlan`.

    Raises:
        ChatError: from routing (400, 404) at construction.
    """

    __slots__ = ("_codec_for", "_first_error", "_next", "_providers", "_retry", "_timeout",
                 "deadline",
                 "request", "routes")

    def __init__(
        self,
        request: EmbedRequest,
        *,
        providers: Mapping[str, Provider],
        tiers: Mapping[str, tuple[str, ...]] = _NO_TIERS,
        profiles: Sequence[Provider] = PROFILES,
        timeout_secs: float = 120.0,
        chain_timeout_secs: float | None = None,
        default_retry_after_secs: float | None = 2.0,
        now: float = 0.0,
        codec_for: Callable[[str], EmbedCodec] = embed_codec_for,
    ) -> None:
        self.request = request
        self.routes = resolve(request.model, providers, tiers, profiles=profiles)
        self._providers = providers
        self._timeout = timeout_secs
        self._retry = default_retry_after_secs
        budget = chain_timeout_secs if chain_timeout_secs is not None else timeout_secs
        self.deadline = now + budget
        self._next = 0
        self._first_error: ChatError | None = None
        self._codec_for = codec_for

    def next(self, *, now: float) -> EmbedAttempt:
        """The next attempt; raises the final ChatError when none is left."""
        left = self.deadline - now
        while self._next < len(self.routes):
            index = self._next
            self._next += 1
            route = self.routes[index]
            if left <= 0:
                raise ChatError(
                    "upstream_timeout",
                    "the fallback chain's time budget was spent before a target answered",
                    provider=route.provider,
                )
            provider = self._providers[route.provider]
            api = EMBED_APIS.get(provider.api_for(route.upstream_model))
            try:
                why = cannot_embed(api, self.request)
                if why is not None or api is None:
                    raise ChatError(
                        "invalid_request",
                        f"model {route.upstream_model!r} on {provider.name} cannot embed: "
                        f"{why}",
                        provider=provider.name,
                    )
                codec = self._codec_for(api)
                http = codec.build_request(self.request, route, provider)
            except ChatError as exc:
                # SPEC §1: a target that cannot serve the request is skipped.
                blame(exc, provider)
                if self._first_error is None:
                    self._first_error = exc
                continue
            total = provider.timeout_secs if provider.timeout_secs is not None else self._timeout
            return EmbedAttempt(route=route, provider=provider, codec=codec, http=http,
                                timeout_secs=min(total, left), index=index)
        assert self._first_error is not None  # routes is never empty
        raise self._first_error

    def failed(self, attempt: EmbedAttempt, exc: ChatError) -> None:
        """Blame and mask the failure; re-raise it unless the chain moves on."""
        blame(exc, attempt.provider, default_retry_after_secs=self._retry)
        if exc.retryable and self._next < len(self.routes):
            self._first_error = exc
            return
        raise exc
