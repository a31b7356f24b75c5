"""The upstream model lists, fetched and cached: the I/O half of chatd's model list.

Strategy: the core builds each provider's list request and parses the answer
(:func:`chatproto._models.model_list_request`, :func:`~chatproto._models.parse_model_list`);
this module sends them and keeps the result, per provider:

- cached for ``ttl_secs`` (``chatd.model_list_ttl_secs``): a model list changes in days,
  and a client's menu is asked for far more often;
- bounded in size (at most :data:`~chatproto._models.MAX_LISTED` models and
  :data:`MAX_LIST_BYTES` per provider) and in time (each fetch within
  :data:`LIST_TIMEOUTS`, all providers fetched at once, so a route waits for the slowest
  one at most once per TTL);
- failure-tolerant: a list that cannot be fetched (unreachable, an error status, a body
  that is not a list) never fails the route; the last good list is kept for up to
  :data:`MAX_STALE_SECS` and the fetch is tried again after :data:`RETRY_SECS`, not on
  every request;
- one fetch per provider at a time: concurrent routes wait for the fetch in flight instead
  of each sending their own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import anyio

from chatproto import (
    CatalogEntry,
    ChatError,
    ListedModel,
    Provider,
    catalog,
    model_list_request,
    parse_model_list,
)
from chatproto.dialects import CODECS
from transports import Timeouts, Transport

from .config import Config

__all__ = [
    "LIST_TIMEOUTS",
    "MAX_LIST_BYTES",
    "MAX_STALE_SECS",
    "RETRY_SECS",
    "ModelLister",
    "speaks",
    "usable_names",
]

logger = logging.getLogger("chatd.models")

#: One list fetch. The list only fills a menu: a slow upstream must not hold it up long.
LIST_TIMEOUTS = Timeouts(connect=1.0, read=3.0, total=3.0)
#: OpenRouter's list, with descriptions and pricing for every model, is a few megabytes.
MAX_LIST_BYTES = 16 * 1024 * 1024
#: After a failed fetch, the next try waits this long (or the TTL, if shorter).
RETRY_SECS = 30.0
#: A list that could not be refreshed is shown for this long after it was fetched.
MAX_STALE_SECS = 3600.0


@dataclass(frozen=True, slots=True)
class _Cached:
    models: tuple[ListedModel, ...]
    fetched_at: float | None
    """When :attr:`models` was fetched (None: never successfully)."""
    fresh_until: float


class ModelLister:
    """Each provider's upstream model list, cached.

    Args:
        transport: the app's open transport.
        ttl_secs: how long a fetched list is used before it is fetched again.
        timeouts: one fetch's limits.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        ttl_secs: float = 300.0,
        timeouts: Timeouts = LIST_TIMEOUTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._transport = transport
        self._ttl = ttl_secs
        self._timeouts = timeouts
        self._clock = clock
        self._cache: dict[str, _Cached] = {}
        self._locks: dict[str, anyio.Lock] = {}

    async def lists(self, providers: Mapping[str, Provider]) -> dict[str, tuple[ListedModel, ...]]:
        """Provider name -> its listed models, for every provider with a list (fetched
        concurrently where due; never raises for an upstream's failure)."""
        out: dict[str, tuple[ListedModel, ...]] = {}
        due = [p for p in providers.values() if model_list_request(p) is not None]
        if not due:
            return out
        async with anyio.create_task_group() as tg:
            for provider in due:
                tg.start_soon(self._one, provider, out)
        return out

    def _fresh(self, name: str) -> _Cached | None:
        cached = self._cache.get(name)
        if cached is not None and self._clock() < cached.fresh_until:
            return cached
        return None

    async def _one(self, provider: Provider, out: dict[str, tuple[ListedModel, ...]]) -> None:
        name = provider.name
        cached = self._fresh(name)
        if cached is None:
            lock = self._locks.get(name)
            if lock is None:
                lock = self._locks[name] = anyio.Lock()
            async with lock:
                cached = self._fresh(name)  # another route may have fetched it meanwhile
                if cached is None:
                    cached = await self._refresh(provider)
        out[name] = cached.models

    async def _refresh(self, provider: Provider) -> _Cached:
        started = self._clock()
        models = await self._fetch(provider)
        now = self._clock()
        if models is not None:
            cached = _Cached(models, started, now + self._ttl)
        else:
            old = self._cache.get(provider.name)
            keep = (old is not None and old.fetched_at is not None
                    and now - old.fetched_at < MAX_STALE_SECS)
            cached = _Cached(old.models if keep and old else (),
                             old.fetched_at if keep and old else None,
                             now + min(self._ttl, RETRY_SECS))
        self._cache[provider.name] = cached
        return cached

    async def _fetch(self, provider: Provider) -> tuple[ListedModel, ...] | None:
        """The provider's list now, or None (logged) when it cannot be had."""
        http = model_list_request(provider)
        if http is None:  # pragma: no cover - lists() asks only providers with one
            return ()
        body = b""
        with anyio.move_on_after(self._timeouts.total) as scope:
            try:
                async with self._transport.open(http, self._timeouts) as resp:
                    if not 200 <= resp.status < 300:
                        logger.info("model list of %s: upstream answered %d; not listed",
                                    provider.name, resp.status)
                        return None
                    body = await resp.aread(MAX_LIST_BYTES)
            except ChatError as exc:
                logger.info("model list of %s failed (%s: %s); not listed",
                            provider.name, exc.type, exc.message)
                return None
        if scope.cancelled_caught:
            logger.info("model list of %s: no answer within %.0f s; not listed",
                        provider.name, self._timeouts.total)
            return None
        try:
            return parse_model_list(provider, body)
        except ChatError as exc:
            logger.info("model list of %s is not one (%s); not listed", provider.name,
                        exc.message)
            return None


def speaks(api: str) -> bool:
    """Whether chatd has a codec for the chat api ``api`` (a name routed to a wire format
    chatd does not speak would be refused, so it is not listed)."""
    return api in CODECS


async def usable_names(
    lister: ModelLister, *, config: Config, providers: Mapping[str, Provider]
) -> tuple[CatalogEntry, ...]:
    """Every name a client can use now (SPEC §3), upstream lists included."""
    lists = await lister.lists(providers)
    return catalog(tiers=config.tiers, providers=providers, profiles=config.profiles,
                   listed=lists, speaks=speaks)
