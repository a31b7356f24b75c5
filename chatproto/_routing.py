"""Routing: a model name to the provider that serves it and the name that provider sees.

Strategy: SPEC §1 is a first-match table, so :func:`resolve` is that table written out as
one straight sequence of checks, each returning a :class:`~chatproto.Route`. The result is
always a tuple (a fallback chain): length 1 for a plain name, one entry per usable target
for a tier. Registration is an argument (the names of the providers whose key resolved),
so the function is pure and the whole table is tested without configuration or I/O.

Prefixes are matched case-sensitively. Model ids are case-sensitive at every upstream
(OpenRouter ``vendor/model`` ids, Ollama ``model:tag`` names), so a name that merely looks
like a prefix in another case, such as ``OLLAMA/x``, is someone's model name and goes to
the default provider unchanged (rule 9) rather than being reinterpreted. The one
case-insensitive match is the ``:cloud`` tag, because Ollama itself reads it that way
(providers.md §2.2, OL ``internal/modelref/modelref.go``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from types import MappingProxyType

from ._errors import ChatError
from ._profiles import DEFAULT_PROVIDER, PROFILES
from ._request import json_type
from ._types import Provider, Route

__all__ = [
    "DEFAULT_PROVIDER",
    "PROVIDER_APIS",
    "check_prefixes",
    "not_registered",
    "parse_tiers",
    "resolve",
    "split_cloud_suffix",
]

#: Every built-in provider and the codec (``Provider.api``) of its default wire format.
PROVIDER_APIS: Mapping[str, str] = MappingProxyType({p.name: p.api for p in PROFILES})

_NO_TIERS: Mapping[str, tuple[str, ...]] = MappingProxyType({})

_COLON_CLOUD = ":cloud"
_DASH_CLOUD = "-cloud"


def split_cloud_suffix(name: str) -> tuple[str, str | None]:
    """Split an Ollama cloud tag off ``name``: ``(base, ":cloud" | "-cloud" | None)``.

    Ollama's own rule (providers.md §2.2, OL ``internal/modelref/modelref.go``): a last
    ``:`` segment equal to ``cloud`` (any case) marks a cloud model and the base is the text
    before it (``qwen3:cloud`` -> ``qwen3``, ``gpt-oss:20b:cloud`` -> ``gpt-oss:20b``); a
    *tag* ending in ``-cloud`` does too (``gpt-oss:120b-cloud`` -> ``gpt-oss:120b``), but
    only a tag, the part after the last ``:``, and only without a ``/`` in it, so
    ``my-cloud-model`` and ``qwen3-cloud`` are ordinary names. A ``-cloud`` tag that would
    leave the tag empty (``qwen3:-cloud``) is left alone. The base may be empty for
    ``:cloud`` (``":cloud"`` -> ``""``); callers reject that.

    Rule 4 strips either form; rule 8 routes on ``:cloud`` only, since a bare
    ``gpt-oss:120b-cloud`` is the name the *local* Ollama serves by proxying to the cloud.
    """
    if name[-len(_COLON_CLOUD) :].lower() == _COLON_CLOUD:
        return name[: -len(_COLON_CLOUD)], _COLON_CLOUD
    base, colon, tag = name.rpartition(":")
    if (
        colon
        and "/" not in tag
        and len(tag) > len(_DASH_CLOUD)
        and tag[-len(_DASH_CLOUD) :].lower() == _DASH_CLOUD
    ):
        return f"{base}:{tag[: -len(_DASH_CLOUD)]}", _DASH_CLOUD
    return name, None


def _invalid(message: str) -> ChatError:
    return ChatError("invalid_request", message)


#: How much of a client's model name an error message quotes.
SHOWN_NAME = 200


def _shown(name: str) -> str:
    """``name`` quoted for an error message, cut at :data:`SHOWN_NAME` characters: the
    message is the error body and a log line (server/app.py), and a client's 300 kB
    name must make neither 300 kB (SPEC §5: one bounded line per request)."""
    return repr(name if len(name) <= SHOWN_NAME else name[:SHOWN_NAME] + "…")


def not_registered(provider: str, model: str) -> ChatError:
    # Which setting registers a provider (an env var, a key file) is the server's business;
    # the core only knows the provider's name.
    return ChatError(
        "provider_not_registered",
        f"model {_shown(model)} needs provider {provider!r}, which is not registered (no key "
        f"was found for it); configure a key for {provider!r} to register it",
        provider=provider,
    )


def check_prefixes(profiles: Sequence[Provider]) -> None:
    """Refuse two providers whose prefixes collide (SPEC §1: "a startup error naming both").

    Two prefixes collide when one starts the other (``x/`` and ``x/y/``): a name under the
    longer one would be claimed by both.

    Raises:
        ValueError: naming both providers and their prefixes.
    """
    seen: list[Provider] = []
    for row in profiles:
        if not row.prefix:
            continue
        for other in seen:
            if row.prefix.startswith(other.prefix) or other.prefix.startswith(row.prefix):
                raise ValueError(
                    f"providers {other.name!r} and {row.name!r} have colliding model "
                    f"prefixes {other.prefix!r} and {row.prefix!r}"
                )
        seen.append(row)


def _grammar(name: str, profiles: Sequence[Provider] = PROFILES) -> Route:
    """SPEC §1 rules 3-9 for an already stripped, non-empty name, ignoring registration.

    Providers defined in configuration are rows of ``profiles`` after the built-in ones,
    so their prefixes are tried after rules 3-7 and before rule 8, as SPEC §1 orders.
    """
    cloud: Provider | None = None
    for row in profiles:
        if row.cloud_suffix and cloud is None:
            cloud = row
        prefix = row.prefix
        if not prefix or not name.startswith(prefix):
            continue
        provider = row.name
        rest = name[len(prefix) :]
        if not rest.strip():
            raise _invalid(
                f"model {_shown(name)} names provider {provider!r} but no model after it")
        if row.strip_cloud_tag:
            # Rule 4: ollama.com is called with the bare name (providers.md §2.2).
            rest, _ = split_cloud_suffix(rest)
            if not rest.strip():
                raise _invalid(
                    f"model {_shown(name)} has no model name before its cloud tag")
        elif row.vendor_model_ids and (
            "/" not in rest or any(not part for part in rest.split("/"))
        ):
            # Rule 5: "Model IDs are `vendor/model` ... router IDs `openrouter/auto`"
            # (providers.md §4); a bare id is refused upstream with a 400 anyway.
            raise _invalid(
                f"model {_shown(name)}: {provider} models are written {prefix}<vendor>/<model>"
            )
        return Route(provider=provider, upstream_model=rest)
    if cloud is not None:
        base, suffix = split_cloud_suffix(name)
        if suffix == _COLON_CLOUD:
            # Rule 8: ``<m>:cloud`` goes to Ollama Cloud, which wants the bare name.
            if not base.strip():
                raise _invalid(f"model {_shown(name)} has no model name before ':cloud'")
            return Route(provider=cloud.name, upstream_model=base)
    # Rule 9: bare names and unknown prefixes alike, unchanged.
    return Route(provider=DEFAULT_PROVIDER, upstream_model=name)


def _route(name: str, registered: Collection[str], profiles: Sequence[Provider]) -> Route:
    route = _grammar(name, profiles)
    if route.provider not in registered:
        # SPEC §1: never fall through to another provider silently.
        raise not_registered(route.provider, name)
    return route


def resolve(
    model: object,
    registered: Collection[str],
    tiers: Mapping[str, tuple[str, ...]] = _NO_TIERS,
    *,
    profiles: Sequence[Provider] = PROFILES,
) -> tuple[Route, ...]:
    """The fallback chain for ``model``: SPEC §1, first match wins.

    Args:
        model: the caller's ``model`` value, of any JSON type (rule 1 checks it).
        registered: names of the registered providers.
        tiers: the ``[models]`` table as :func:`parse_tiers` returns it.
        profiles: every provider chatd knows, registered or not (the built-in rows and
            those defined in configuration), in rule order.

    Returns:
        One :class:`Route` for a plain name; for a tier, a route for each target whose
        provider is registered, in the tier's order.

    Raises:
        ChatError: ``invalid_request`` (400) for a missing, non-string, blank or malformed
            name; ``provider_not_registered`` (404) when the provider a name asks for (or,
            for a tier, every target's provider) is not registered.
    """
    if model is None:
        raise _invalid("model is required")
    if not isinstance(model, str):
        raise _invalid(f"model must be a string, not {json_type(model)}")
    if not model.strip():
        raise _invalid("model must not be empty")
    name = model.strip()
    targets = tiers.get(name)
    if targets is None and name.endswith(":latest"):
        # SPEC §1: Ollama clients (Open WebUI) append ``:latest`` to a name without a tag.
        targets = tiers.get(name[: -len(":latest")])
    if targets is None:
        return (_route(name, registered, profiles),)
    # Rule 2: each target by rules 3-9 only; a target spelled like a tier is a model name.
    if not targets:
        raise _invalid(f"tier {name!r} has no targets")
    chain: list[Route] = []
    first_error: ChatError | None = None
    for target in targets:
        try:
            if not target.strip():
                raise _invalid(f"tier {name!r} has a blank target")
            chain.append(_route(target.strip(), registered, profiles))
        except ChatError as exc:
            if exc.type != "provider_not_registered":
                raise
            first_error = first_error or exc
    if chain:
        return tuple(chain)
    assert first_error is not None
    raise ChatError(
        first_error.type,
        f"tier {name!r}: no target's provider is registered; first target: "
        f"{first_error.message}",
        provider=first_error.provider,
    )


def parse_tiers(
    raw: Mapping[str, object], profiles: Sequence[Provider] = PROFILES
) -> dict[str, tuple[str, ...]]:
    """Validate the ``[models]`` table of lakehouse.toml (SPEC §5) into tier chains.

    A value is one model name or a non-empty list of them (a fallback chain, tried in
    order). Each target must be a non-blank name that SPEC §1 rules 3-9 accept, checked
    here, at startup, so a typo such as ``openrouter/kimi`` fails the config load instead
    of every request. Whether its provider is registered is left to :func:`resolve`: a
    chain exists precisely to survive a missing one.

    Raises:
        ValueError: naming the offending key, e.g. ``models.smart[1]``.
    """
    tiers: dict[str, tuple[str, ...]] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not key.strip():
            raise ValueError(f"models: tier name {key!r} must be a non-empty string")
        items: list[object]
        if isinstance(value, str):
            items = [value]
        elif isinstance(value, list | tuple):
            if not value:
                raise ValueError(f"models.{key}: a fallback list must not be empty")
            items = list(value)
        else:
            raise ValueError(
                f"models.{key}: must be a model name or a list of model names, "
                f"not {type(value).__name__}"
            )
        targets: list[str] = []
        for i, item in enumerate(items):
            where = f"models.{key}" if isinstance(value, str) else f"models.{key}[{i}]"
            if not isinstance(item, str) or not item.strip():
                raise ValueError(f"{where}: must be a non-empty model name, got {item!r}")
            try:
                _grammar(item.strip(), profiles)
            except ChatError as exc:
                raise ValueError(f"{where}: {exc.message}") from None
            targets.append(item.strip())
        tiers[key] = tuple(targets)
    return tiers
