"""The model names a client can use: tiers, each provider's listed models, checked by routing.

Strategy: SPEC §3 asks ``GET /v1/models``, ``GET /v1/models/{id}`` and ``GET /api/tags`` for
"every name a client can use ... no entry that would be refused if used". So the list is
not written by hand per door: :func:`catalog` builds candidate names (the tiers, the names
the tiers point at, each registered provider's models as its upstream lists them) and keeps
exactly those that :func:`~chatproto._routing.resolve` sends where the entry claims, on a
wire format chatd speaks. A name routing rules would send elsewhere (a local model named
like a tier, a local ``m:cloud`` stub when Ollama Cloud is not registered) is tried with
its provider's prefix instead, and dropped when that fails too. The doors only render it.

The upstream lists themselves are fetched by the server (I/O, cached); this module builds
the request for one (:func:`model_list_request`) and parses the answer
(:func:`parse_model_list`), one parser per wire format.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from ._codec import request_headers
from ._decoders import loads
from ._errors import ChatError
from ._profiles import DEFAULT_PROVIDER, PROFILES
from ._routing import resolve
from ._types import JSON, HTTPRequest, Provider, Route

__all__ = [
    "MAX_LISTED",
    "CatalogEntry",
    "ListedModel",
    "catalog",
    "find_model",
    "list_entries",
    "model_list_request",
    "name_for",
    "parse_model_list",
]

#: Entries kept from one provider's list. OpenRouter lists a few hundred models; a list
#: far longer than that is not a menu anyone picks from, and it bounds memory per provider.
MAX_LISTED = 2000

#: Longest model id kept from an upstream list (an id is a name, not a document).
MAX_ID_CHARS = 256

_NO_TIERS: Mapping[str, tuple[str, ...]] = MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class ListedModel:
    """One model as its upstream lists it."""

    id: str
    """The upstream's own model id (what the upstream is called with)."""
    entry: Mapping[str, JSON] | None = None
    """The upstream's entry, for a door of the same wire format to show (Ollama's
    ``details``, ``size``, ``digest``); None when there is nothing worth keeping."""
    created: int | None = None
    """Unix seconds, where the upstream says (OpenAI's ``created``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CatalogEntry:
    """One usable name and what it reaches."""

    name: str
    provider: str | None
    """The provider it routes to; None for a tier (see :attr:`routes`)."""
    routes: tuple[Route, ...]
    """Where the name goes (one route, or a tier's chain of usable targets)."""
    listed: ListedModel | None = None
    """The upstream's entry, for a name that came from a provider's list."""
    aliases: tuple[str, ...] = ()
    """Other spellings that reach the same thing: ``<tier>:latest`` (SPEC §1: Ollama
    clients such as Open WebUI append ``:latest`` to a name without a tag)."""

    @property
    def is_tier(self) -> bool:
        return self.provider is None


# --- the upstream's list: request and parsers ------------------------------------------

#: The wire format of a provider's model list, by its chat api. Anthropic's list is left
#: out until chatd speaks Anthropic upstream (its auth headers are that codec's).
_LIST_FORMAT: Mapping[str, str] = MappingProxyType({
    "ollama_chat": "ollama",
    "ollama_generate": "ollama",
    "openai_chat": "openai",
    "openai_responses": "openai",
})


def model_list_request(provider: Provider) -> HTTPRequest | None:
    """The ``GET`` that lists ``provider``'s models, or None when it has no list chatd reads.

    Ollama: ``GET {base}/api/tags`` (providers.md §1.8; Ollama Cloud serves it too, §2.1).
    The OpenAI family: ``GET {base}/models`` (OpenRouter, OpenCode Zen ``GET
    https://opencode.ai/zen/v1/models``, providers.md §5.1; Kimi ``…/coding/v1/models``,
    §6.1). Auth is the chat call's: the Bearer key when the provider has one, and the
    configured headers (a configured header replaces a default of the same name).
    """
    if not provider.list_models:
        return None
    wire = _LIST_FORMAT.get(provider.api)
    if wire is None:
        return None
    path = "/api/tags" if wire == "ollama" else "/models"
    return HTTPRequest(
        method="GET", url=provider.base_url.rstrip("/") + path,
        headers=request_headers(provider, (("Accept", "application/json"),)), body=b"",
    )


def parse_model_list(
    provider: Provider, body: bytes, *, limit: int = MAX_LISTED
) -> tuple[ListedModel, ...]:
    """The models in ``provider``'s list body (from :func:`model_list_request`).

    Raises:
        ChatError: ``bad_upstream_response`` when the body is not a list at all (the
            caller then keeps what it had); single malformed entries are skipped.
    """
    wire = _LIST_FORMAT.get(provider.api)
    if wire == "ollama":
        from .dialects.ollama import parse_tags

        return parse_tags(provider.name, body, limit=limit)
    if wire == "openai":
        from .dialects.openai_chat import parse_models

        return parse_models(provider.name, body, limit=limit)
    raise ChatError(
        "bad_upstream_response", f"chatd reads no model list for api {provider.api!r}",
        provider=provider.name,
    )


def list_entries(provider: str, body: bytes, key: str) -> list[dict[str, JSON]]:
    """The object entries of the array ``key`` of an upstream's model list (anything else
    in the array is skipped); a body without that array is ``bad_upstream_response``."""
    obj = loads(body, provider)
    entries = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(entries, list):
        raise ChatError("bad_upstream_response", f'upstream model list has no "{key}" array',
                        provider=provider)
    return [item for item in entries if isinstance(item, dict)]


def usable_id(value: object) -> str | None:
    """``value`` when it can be a model id in a list: a short, printable, non-blank string."""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_ID_CHARS:
        return None
    if not value.isprintable():
        return None
    return value


# --- the catalogue ------------------------------------------------------------------------

def _usable(
    name: str,
    providers: Mapping[str, Provider],
    tiers: Mapping[str, tuple[str, ...]],
    profiles: Sequence[Provider],
    speaks: Callable[[str], bool],
) -> tuple[Route, ...] | None:
    """The routes of ``name`` when every one of them is on a wire format chatd speaks."""
    try:
        routes = resolve(name, providers, tiers, profiles=profiles)
    except ChatError:
        return None
    for route in routes:
        provider = providers[route.provider]
        if not speaks(provider.api_for(route.upstream_model)):
            return None
    return routes


def catalog(
    *,
    tiers: Mapping[str, tuple[str, ...]] = _NO_TIERS,
    providers: Mapping[str, Provider],
    profiles: Sequence[Provider] = PROFILES,
    listed: Mapping[str, Sequence[ListedModel]],
    speaks: Callable[[str], bool],
) -> tuple[CatalogEntry, ...]:
    """Every name a client can use now, each once, in menu order.

    In order: each tier with a usable target (and its ``:latest`` alias); the names the
    tiers point at; then, provider by provider (in ``providers`` order), the models its
    upstream listed (``listed``, by provider name). A listed model of the default provider
    is shown bare (``qwen3:4b``) when routing sends the bare name to it, else with its
    prefix (``ollama/qwen3:4b``); others always with their prefix. Every candidate is
    routed before it is kept, so an entry is never refused for its name.

    Args:
        tiers: the ``[models]`` tiers.
        providers: the registered providers by name.
        profiles: every provider chatd knows, for routing.
        listed: provider name -> what its upstream listed.
        speaks: whether chatd has a codec for an api (a route on a wire format chatd does
            not speak yet would be refused).
    """
    out: list[CatalogEntry] = []
    seen: set[str] = set()

    def add(entry: CatalogEntry) -> None:
        seen.add(entry.name)
        seen.update(entry.aliases)
        out.append(entry)

    targets: list[str] = []
    for tier, names in tiers.items():
        routes = _usable(tier, providers, tiers, profiles, speaks)
        if routes is None or tier in seen:
            continue
        alias = f"{tier}:latest"
        aliases = (alias,) if alias not in tiers and alias not in seen else ()
        add(CatalogEntry(name=tier, provider=None, routes=routes, aliases=aliases))
        targets.extend(n.strip() for n in names)
    for name in targets:
        if name in seen:
            continue
        routes = _usable(name, providers, tiers, profiles, speaks)
        if routes is not None and len(routes) == 1:
            add(CatalogEntry(name=name, provider=routes[0].provider, routes=routes))
    for provider in providers.values():
        for model in listed.get(provider.name, ()):
            want = (Route(provider=provider.name, upstream_model=model.id),)
            for name in _candidates(provider, model.id):
                if name in seen:
                    if any(e.name == name and e.routes == want for e in out):
                        break  # already listed (a tier's target): one entry is enough
                    continue
                if _usable(name, providers, tiers, profiles, speaks) == want:
                    add(CatalogEntry(name=name, provider=provider.name, routes=want,
                                     listed=model))
                    break
    return tuple(out)


def _candidates(provider: Provider, model_id: str) -> list[str]:
    """The names that could reach ``model_id`` on ``provider``, preferred first: the bare
    id for the default provider (rule 9), then the id under the provider's prefix."""
    names = [provider.prefix + model_id] if provider.prefix else []
    if provider.name == DEFAULT_PROVIDER:
        names.insert(0, model_id)
    return names


def name_for(
    provider: Provider,
    model_id: str,
    *,
    providers: Mapping[str, Provider],
    tiers: Mapping[str, tuple[str, ...]] = _NO_TIERS,
    profiles: Sequence[Provider] = PROFILES,
    speaks: Callable[[str], bool],
) -> str | None:
    """The name a client sends to reach ``model_id`` on ``provider`` (as :func:`catalog`
    lists it), or None when no name routes there."""
    want = (Route(provider=provider.name, upstream_model=model_id),)
    for name in _candidates(provider, model_id):
        if _usable(name, providers, tiers, profiles, speaks) == want:
            return name
    return None


def find_model(entries: Sequence[CatalogEntry], name: str) -> CatalogEntry | None:
    """The entry ``name`` is, by its name or an alias; None when it is not listed."""
    for entry in entries:
        if entry.name == name or name in entry.aliases:
            return entry
    return None
