"""The call plan: a request in, the upstream attempts to make and what to do after each.

Strategy: everything about a call that needs no I/O is decided here, so a server (or any
embedder) is a short loop around a transport::

    plan = CallPlan(request, providers=..., tiers=..., now=clock())
    while True:
        attempt = plan.next(now=clock())      # raises the final ChatError when none is left
        try:
            ... send attempt.http with attempt.timeout_secs; parse with attempt.codec ...
            break
        except ChatError as exc:
            plan.failed(attempt, exc)          # re-raises unless the chain moves on

Routing (:func:`~chatproto._routing.resolve`) gives the chain. A target whose wire format
cannot carry the request (SPEC §1: tools to an API without tools, a remote image to an API
that takes base64 only) is skipped before any I/O; only when no target can is an error
returned, the first target's. After a failure the chain moves on only when the failure is
the upstream's (:attr:`ChatError.retryable`) and a target and budget are left. The chain's
whole budget is ``chain_timeout_secs`` (SPEC §5): each attempt's timeout is clamped to what
is left of it, so a chain of hanging targets answers within the budget.

Every upstream failure passes :func:`blame` on its way out: the provider is named, a key
the upstream quoted back is masked (SPEC §4: a key never appears in any response or log
line), and a 429/503 that named no wait gets ``default_retry_after_secs`` (SPEC §4).
"""

from __future__ import annotations

import re
from base64 import b64encode
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Protocol, TypeVar
from urllib.parse import quote, unquote, urlsplit

from ._codec import Codec
from ._errors import ChatError
from ._profiles import PROFILES
from ._routing import not_registered, resolve
from ._types import ChatRequest, HTTPRequest, Provider, Route

__all__ = [
    "Attempt", "CallPlan", "SlotRules", "blame", "cannot_carry", "mask_secret", "mask_secrets",
]

_NO_TIERS: Mapping[str, tuple[str, ...]] = MappingProxyType({})
_VISIBLE = re.compile(r"[\x21-\x7e]([\x20-\x7e\t]*[\x21-\x7e])?")


# --- key masking ----------------------------------------------------------------------

_MASK = "***"
_WHITESPACE = frozenset(" \t\r\n\f\v")
_HEX = frozenset("0123456789abcdefABCDEF")


def _normalised(text: str) -> tuple[str, list[int], list[int]]:
    """``text`` without whitespace and with JSON escapes decoded, and for each character of
    the result the span ``[start, end)`` it came from in ``text``.

    An upstream may quote a key split across lines or spaces, or inside a JSON string it
    embeds in its message (``\\u0073k-…``, ``\\/``); matching on this form finds those."""
    chars: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in _WHITESPACE:
            i += 1
            continue
        if c == "\\" and i + 1 < n:
            nxt = text[i + 1]
            if nxt == "u" and i + 6 <= n and all(h in _HEX for h in text[i + 2 : i + 6]):
                chars.append(chr(int(text[i + 2 : i + 6], 16)))
                starts.append(i)
                ends.append(i + 6)
                i += 6
                continue
            if nxt in "/\\\"":
                chars.append(nxt)
                starts.append(i)
                ends.append(i + 2)
                i += 2
                continue
            if nxt in "nrt":  # an escaped newline splitting a key is whitespace too
                i += 2
                continue
        chars.append(c)
        starts.append(i)
        ends.append(i + 1)
        i += 1
    return "".join(chars), starts, ends


def _spans(message: str, secret: str) -> list[tuple[int, int]]:
    """Where ``secret`` (or enough of it to identify it) appears in ``message``."""
    spans: list[tuple[int, int]] = []
    n = len(secret)
    # The key in another case (an upstream that upper-cases what it quotes).
    lower, key = message.lower(), secret.lower()
    at = lower.find(key)
    while at >= 0:
        spans.append((at, at + n))
        at = lower.find(key, at + n)
    # Split by whitespace or written with JSON escapes.
    flat, starts, ends = _normalised(message)
    at = flat.find(secret)
    while at >= 0:
        spans.append((starts[at], ends[at + n - 1]))
        at = flat.find(secret, at + n)
    # Enough of it to identify it: a run of its first half or more (at least 8
    # characters, past the public ``sk-or-v1-`` style prefix) anywhere, as a quote that
    # was cut ("sk-or-v1-0123456789ab... (truncated)"), or its first four or more at the
    # very end, before a clip's ellipsis.
    least = max(8, n // 2)
    for k in range(n - 1, least - 1, -1):
        at = flat.find(secret[:k])
        if at >= 0:
            spans.append((starts[at], ends[at + k - 1]))
            break
    tail = flat.removesuffix("…")
    for k in range(min(n - 1, len(tail), least - 1), 3, -1):
        if tail.endswith(secret[:k]):
            spans.append((starts[len(tail) - k], ends[len(tail) - 1]))
            break
    return spans


def mask_secrets(message: str, secrets: Iterable[str]) -> str:
    """``message`` with every appearance of each secret replaced by ``***``; the same
    object back when there is nothing to mask.

    An appearance may be in another case, split by whitespace, written with JSON or URL
    escapes, or cut short (see :func:`_spans`). A secret shorter than 8 characters is
    masked only where it appears whole: its parts would match ordinary text.
    """
    spans: list[tuple[int, int]] = []
    for secret in secrets:
        if not secret:
            continue
        quoted = quote(secret, safe="")
        if quoted != secret and quoted in message:
            message = message.replace(quoted, _MASK)
        if len(secret) < 8:
            if secret in message:
                message = message.replace(secret, _MASK)
            continue
        spans.extend(_spans(message, secret))
    if not spans:
        return message
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    out: list[str] = []
    last = 0
    for start, end in merged:
        out.append(message[last:start])
        out.append(_MASK)
        last = end
    out.append(message[last:])
    return "".join(out)


def mask_secret(message: str, secret: str) -> str:
    """:func:`mask_secrets` for one secret."""
    return mask_secrets(message, (secret,))


def _secrets(provider: Provider) -> list[str]:
    """What of ``provider``'s credentials an upstream could quote back: its key, and the
    password of a ``user:password@`` base URL with the Basic credentials made of it."""
    out = [provider.key.reveal()] if provider.key is not None else []
    if "@" in provider.base_url:
        userinfo = urlsplit(provider.base_url).netloc.rpartition("@")[0]
        if userinfo:
            user, _, password = userinfo.partition(":")
            decoded = unquote(user) + ":" + unquote(password)
            out.append(b64encode(decoded.encode()).decode("ascii"))
            if password:
                out.append(unquote(password))
    return out


def blame(
    exc: ChatError, provider: Provider, *, default_retry_after_secs: float | None = None
) -> ChatError:
    """Name ``provider`` in ``exc`` (transports raise with none), mask its key out of the
    message, and give a 429/503 that names no wait ``default_retry_after_secs``.

    SPEC §4 passes the upstream's own message on, and also says a key never appears in
    any response or log line; some upstreams quote the key they refused ("invalid key
    sk-…"). Codex CLI gives up at once on a 429 without Retry-After, while every client
    backs off when it has one (SPEC §4). Returns ``exc``, changed in place.
    """
    if exc.provider is None:
        exc.provider = provider.name
    secrets = _secrets(provider)
    if secrets:
        masked = mask_secrets(exc.message, secrets)
        if masked is not exc.message:
            exc.message = masked
            exc.args = (masked,)
    if (
        default_retry_after_secs is not None
        and exc.retry_after is None
        and exc.status in (429, 503)
    ):
        exc.retry_after = default_retry_after_secs
    return exc


# --- capabilities ---------------------------------------------------------------------

def _uses_tools(request: ChatRequest) -> bool:
    if request.tools:
        return True
    return any(m.role == "tool" or m.tool_calls for m in request.messages)


def _has_image_url(request: ChatRequest) -> bool:
    return any(p.url is not None for m in request.messages for p in m.image_parts)


#: Wire formats that take images as base64 only (Ollama: "images: a list of base64-encoded
#: images", providers.md §1.2; "image URLs not supported" on its /v1, §1.9).
_BASE64_IMAGES_ONLY = frozenset({"ollama_chat", "ollama_generate"})
#: Wire formats with no tools (Ollama's /api/generate takes none, providers.md §1.2).
_NO_TOOLS = frozenset({"ollama_generate"})


def _why_not(api: str, *, tools: bool, image_url: Callable[[], bool],
             request: ChatRequest) -> str | None:
    if api in _NO_TOOLS and tools:
        return f"{api} takes no tools or tool results"
    if api in _BASE64_IMAGES_ONLY and image_url():
        return f"{api} takes images as base64 data only, not URLs"
    if request.dialect_only is not None and api != request.dialect:
        return request.dialect_only  # a part only the client's own wire format has
    return None


def cannot_carry(api: str, request: ChatRequest) -> str | None:
    """Why the wire format ``api`` cannot carry ``request`` at all, or None if it can."""
    return _why_not(api, tools=_uses_tools(request), image_url=lambda: _has_image_url(request),
                    request=request)


# --- the plan ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """One upstream call to make: send :attr:`http`, within :attr:`timeout_secs`."""

    route: Route
    provider: Provider
    api: str
    """The wire format of this call (the provider's, for this model and request)."""
    codec: Codec
    http: HTTPRequest
    timeout_secs: float
    """The whole call's limit: the provider's timeout, clamped to the chain's budget."""
    passthrough: bool
    """The client's door speaks :attr:`api`: keep the upstream's own events and body."""
    index: int
    """Position in the chain (0 for the first target)."""


def _forward_user_agent(http: HTTPRequest, request: ChatRequest) -> HTTPRequest:
    """``http`` with the calling client's User-Agent in place of any other.

    SPEC §2: "Kimi For Coding admits only coding agents and checks the User-Agent; a
    provider table with ``forward_user_agent = true`` sends the calling client's
    User-Agent upstream instead of chatd's." A User-Agent set in the provider's
    ``headers`` is the operator's explicit choice and is not replaced (the caller checks);
    without a client User-Agent, ``http`` is left as the codec built it.
    """
    agent = next((v for k, v in request.headers if k == "user-agent"), None)
    if agent is None or not _VISIBLE.fullmatch(agent):
        # Only a value an HTTP/1.1 header can carry as ASCII (RFC 9110 §5.5 without
        # obs-text): the transports refuse anything else, which would fail the call.
        return http
    headers = tuple(h for h in http.headers if h[0].lower() != "user-agent")
    return replace(http, headers=(*headers, ("User-Agent", agent)))


def _codec(api: str) -> Codec:
    """The codec of ``api``; an api this build does not speak is a target that cannot
    serve (a ChatError, skipped in a chain), never a KeyError."""
    from .dialects import CODECS, codec_for


    if api not in CODECS:
        raise ChatError(
            "invalid_request", f"chatd does not speak the {api!r} wire format"
        )
    return codec_for(api)


class _Slotted(Protocol):
    """An attempt whose provider may be at its ``max_concurrency`` (chat or embeddings)."""

    @property
    def provider(self) -> Provider: ...

    @property
    def timeout_secs(self) -> float: ...


_A = TypeVar("_A", bound=_Slotted)


class SlotRules:
    """What a plan decides about a provider at its concurrency bound (SPEC §5
    ``max_concurrency``), shared by :class:`CallPlan` and the embeddings plan: both keep
    ``routes``, the index ``_next`` of the next target and the chain's ``deadline``."""

    __slots__ = ()
    routes: tuple[Route, ...]
    deadline: float
    _next: int

    def queue_wait(self, attempt: _Slotted, *, now: float) -> float:
        """How long a call may wait for a slot of ``attempt``'s provider, found at its
        ``max_concurrency``: 0 when a target is left after it (SPEC §5: in a chain a
        saturated target falls through to the next), else the provider's
        ``queue_timeout_secs`` clamped to what is left of the chain's budget."""
        if self._next < len(self.routes):
            return 0.0
        return max(0.0, min(attempt.provider.queue_timeout_secs, self.deadline - now))

    @staticmethod
    def saturated(attempt: _Slotted, waited_secs: float) -> ChatError:
        """The error of a call that got no slot: 503 ``upstream_overloaded``, retryable,
        so ``failed`` moves the chain on (its Retry-After is the default one)."""
        provider = attempt.provider
        waited = f"; waited {waited_secs:.3g} s for a slot" if waited_secs > 0 else ""
        return ChatError(
            "upstream_overloaded",
            f"{provider.name} has {provider.max_concurrency} calls in flight, its "
            f"max_concurrency{waited}",
            provider=provider.name,
        )

    def resume(self, attempt: _A, *, now: float) -> _A:
        """``attempt`` after a wait for a slot: its timeout clamped to the budget left."""
        left = self.deadline - now
        if left <= 0:
            raise ChatError(
                "upstream_timeout",
                "the fallback chain's time budget was spent waiting for a slot",
                provider=attempt.provider.name,
            )
        if left >= attempt.timeout_secs:
            return attempt
        return replace(attempt, timeout_secs=left)  # type: ignore[type-var]


class CallPlan(SlotRules):
    """The attempts for one request and the decision after each outcome; no I/O, no clock
    (``now`` is passed in, monotonic seconds).

    Args:
        request: the validated request; its ``stream`` flag is what the upstream is asked.
        providers: the registered providers by name.
        tiers: the ``[models]`` tiers.
        profiles: every known provider (built-in and configured), for routing.
        timeout_secs: the whole-call timeout of a provider that sets none.
        chain_timeout_secs: the whole chain's budget (default: ``timeout_secs``).
        default_retry_after_secs: the wait a 429/503 without one is given.
        now: when the call started.
        codec_for: api name -> codec (default: chatd's codecs).

    Raises:
        ChatError: from routing (400, 404) at construction.
    """

    __slots__ = (
        "_codec_for", "_default_retry", "_error", "_failed", "_has_image_url", "_next",
        "_providers", "_timeout", "_uses_tools", "deadline", "fallbacks", "request", "routes",
    )

    def __init__(
        self,
        request: ChatRequest,
        *,
        providers: Mapping[str, Provider],
        tiers: Mapping[str, tuple[str, ...]] = _NO_TIERS,
        profiles: Sequence[Provider] = PROFILES,
        timeout_secs: float = 120.0,
        chain_timeout_secs: float | None = None,
        default_retry_after_secs: float | None = 2.0,
        now: float = 0.0,
        codec_for: Callable[[str], Codec] | None = None,
    ) -> None:
        self.request = request
        # Routed over every known provider, registered or not, so that an unregistered
        # target is skipped in its place in the chain and, when no target can serve,
        # the first target's own error is the answer (SPEC §1).
        known = {row.name for row in profiles} | set(providers)
        self.routes: tuple[Route, ...] = resolve(request.model, known, tiers, profiles=profiles)
        self._providers = providers
        self._timeout = timeout_secs
        budget = chain_timeout_secs if chain_timeout_secs is not None else timeout_secs
        self.deadline = now + budget
        self._default_retry = default_retry_after_secs
        self._codec_for = codec_for if codec_for is not None else _codec
        self._next = 0
        self._error: ChatError | None = None
        """The answer when no target is left: the first target's reason for being
        skipped, replaced by the latest real failure once a target was tried."""
        self._failed = False
        self._uses_tools = _uses_tools(request)
        self._has_image_url: bool | None = None
        self.fallbacks: list[str] = []
        """The providers of the registered targets left behind, in order: skipped (their
        wire format cannot carry the request) or tried and failed. Once an attempt
        succeeds, they are the fallbacks taken before the provider that answered."""

    def next(self, *, now: float) -> Attempt:
        """The next attempt to make.

        Raises:
            ChatError: when no target is left: the latest real failure if a target was
                tried, else the first target's reason it could not serve the request;
                ``upstream_timeout`` when the budget was spent before any target answered.
        """
        left = self.deadline - now
        while self._next < len(self.routes):
            if left <= 0:
                if self._failed and self._error is not None:
                    raise self._error
                raise ChatError(
                    "upstream_timeout",
                    "the fallback chain's time budget was spent before a target answered",
                    provider=self.routes[self._next - 1 if self._next else 0].provider,
                )
            index = self._next
            self._next += 1
            attempt = self._attempt(index, left)
            if attempt is not None:
                return attempt
        assert self._error is not None  # every target was skipped or failed, with a reason
        raise self._error

    def _skip(self, route: Route, exc: ChatError, *, registered: bool = True) -> None:
        if self._error is None:
            self._error = exc
        if registered:  # an unregistered target is configuration, not a fallback taken
            self.fallbacks.append(route.provider)

    def _attempt(self, index: int, left: float) -> Attempt | None:
        route = self.routes[index]
        provider = self._providers.get(route.provider)
        if provider is None:
            self._skip(route, not_registered(route.provider, self.request.model),
                       registered=False)
            return None
        request = self.request
        api = provider.api_for(route.upstream_model, tools=self._uses_tools)
        try:
            why = _why_not(api, tools=self._uses_tools, image_url=self._image_url,
                           request=request)
            if why is not None:
                raise ChatError(
                    "invalid_request",
                    f"model {route.upstream_model!r} on {provider.name}: {why}",
                    provider=provider.name,
                )
            codec = self._codec_for(api)
            passthrough = request.dialect == api
            http = codec.build_request(request, route, provider)
            if provider.forward_user_agent and not any(
                k.lower() == "user-agent" for k, _ in provider.headers
            ):
                http = _forward_user_agent(http, request)
        except ChatError as exc:
            # SPEC §1: a target that cannot serve the request at all is skipped; only when
            # none can is the error returned, the first target's.
            self._skip(route, blame(exc, provider))
            return None
        total = provider.timeout_secs if provider.timeout_secs is not None else self._timeout
        return Attempt(
            route=route, provider=provider, api=api, codec=codec, http=http,
            timeout_secs=min(total, left), passthrough=passthrough, index=index,
        )

    def _image_url(self) -> bool:
        """Whether the request holds an image by URL; looked at once, when first asked."""
        if self._has_image_url is None:
            self._has_image_url = _has_image_url(self.request)
        return self._has_image_url


    def failed(self, attempt: Attempt, exc: ChatError) -> None:
        """Take the outcome of a failed attempt: blame and mask it, then re-raise it
        unless the chain moves on (the failure is the upstream's and a target is left)."""
        blame(exc, attempt.provider, default_retry_after_secs=self._default_retry)
        # A real failure is a better answer than any target's reason for being skipped.
        self._error = exc
        self._failed = True
        if exc.retryable and self._next < len(self.routes):
            self.fallbacks.append(attempt.provider.name)
            return
        raise exc
