"""The model names a client can use (SPEC §3): the catalogue, the upstream lists, the cache.

Table-driven for the core (:mod:`chatproto._models`, the list parsers of each wire
format); the server's cached lister (:mod:`server.lister`) against a MockTransport whose
handler plays each upstream, with a fake clock for the TTL.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import anyio
import orjson
import pytest

from chatproto import (
    MAX_LISTED,
    CatalogEntry,
    ChatError,
    ListedModel,
    Provider,
    Route,
    Secret,
    catalog,
    find_model,
    model_list_request,
    name_for,
    parse_model_list,
    profile,
)
from server.lister import RETRY_SECS, ModelLister
from transports import MockResponse, MockTransport


def row(name: str, **changes: Any) -> Provider:
    found = profile(name)
    assert found is not None
    return replace(found, **changes)


OLLAMA = row("ollama", base_url="http://local.test")
CLOUD = row("ollama_cloud", key=Secret("k-cloud"))
OPENROUTER = row("openrouter", key=Secret("sk-or-secret"), base_url="https://or.test/api/v1/")
OPENCODE = row("opencode", key=Secret("sk-zen"))
KIMI = row("kimi", key=Secret("sk-kimi"), headers=(("User-Agent", "KimiCLI/1.30.0"),))


def listed(*ids: str) -> tuple[ListedModel, ...]:
    return tuple(ListedModel(id=i) for i in ids)


# --- the list request and its parsers ------------------------------------------------------

@pytest.mark.parametrize(("provider", "url", "auth"), [
    (OLLAMA, "http://local.test/api/tags", None),
    (OPENROUTER, "https://or.test/api/v1/models", "Bearer sk-or-secret"),
    (OPENCODE, "https://opencode.ai/zen/v1/models", "Bearer sk-zen"),
    (KIMI, "https://api.kimi.com/coding/v1/models", "Bearer sk-kimi"),
], ids=["ollama", "openrouter", "opencode", "kimi"])
def test_list_request(provider: Provider, url: str, auth: str | None) -> None:
    http = model_list_request(provider)
    assert http is not None
    assert (http.method, http.url, http.body) == ("GET", url, b"")
    headers = dict(http.headers)
    assert headers.get("Authorization") == auth
    if provider is KIMI:
        assert headers["User-Agent"] == "KimiCLI/1.30.0"  # configured headers ride along
    assert "sk-" not in repr(http)


@pytest.mark.parametrize("provider", [
    CLOUD,  # no list_models in its row
    row("kimi", api="anthropic_messages", key=Secret("k")),  # no Anthropic list yet
    Provider(name="vllm", api="openai_chat", base_url="http://v.test"),  # configured: no flag
], ids=["cloud", "anthropic", "configured"])
def test_no_list_request(provider: Provider) -> None:
    assert model_list_request(provider) is None


TAG = {"name": "qwen3:4b", "model": "qwen3:4b", "modified_at": "2025-05-01T10:00:00Z",
       "size": 5, "digest": "abc", "details": {"family": "qwen3", "families": ["qwen3"]}}


@pytest.mark.parametrize(("provider", "body", "ids"), [
    (OLLAMA, {"models": [TAG, {"name": "old-only-name"}, {"model": "m", "name": "n"}]},
     ["qwen3:4b", "old-only-name", "m"]),
    (OLLAMA, {"models": [TAG, 1, {}, {"name": 3}, {"name": " "}, {"name": "a\nb"},
                         {"name": "x" * 300}]}, ["qwen3:4b"]),
    (OPENROUTER, {"data": [{"id": "moonshotai/kimi-k2", "created": 7, "pricing": {}},
                           {"id": None}, "x", {"id": "openai/gpt-4o"}]},
     ["moonshotai/kimi-k2", "openai/gpt-4o"]),
    (OPENROUTER, {"object": "list", "data": []}, []),
], ids=["ollama", "ollama-bad-entries", "openai", "openai-empty"])
def test_parse_model_list(provider: Provider, body: object, ids: list[str]) -> None:
    models = parse_model_list(provider, orjson.dumps(body))
    assert [m.id for m in models] == ids
    if provider is OPENROUTER and ids:
        assert models[0].created == 7


@pytest.mark.parametrize(("provider", "body"), [
    (OLLAMA, b"<html>"), (OLLAMA, b"[]"), (OLLAMA, b'{"models": null}'),
    (OPENROUTER, b'{"models": []}'), (OPENROUTER, b"{"),
])
def test_parse_model_list_refuses_what_is_no_list(provider: Provider, body: bytes) -> None:
    with pytest.raises(ChatError) as info:
        parse_model_list(provider, body)
    assert info.value.type == "bad_upstream_response"


def test_parse_model_list_is_bounded() -> None:
    body = orjson.dumps({"data": [{"id": f"v/m{i}"} for i in range(MAX_LISTED + 50)]})
    assert len(parse_model_list(OPENROUTER, body)) == MAX_LISTED
    assert len(parse_model_list(OPENROUTER, body, limit=3)) == 3


# --- the catalogue ---------------------------------------------------------------------------

def names(entries: tuple[CatalogEntry, ...]) -> list[str]:
    return [e.name for e in entries]


ALL = {p.name: p for p in (OLLAMA, CLOUD, OPENROUTER, OPENCODE, KIMI)}


@pytest.mark.parametrize(("tiers", "providers", "lists", "expected"), [
    pytest.param({}, {"ollama": OLLAMA}, {"ollama": listed("qwen3:4b", "llama3")},
                 ["qwen3:4b", "llama3"], id="local-bare"),
    pytest.param({"qwen3:4b": ("ollama/llama3",)}, {"ollama": OLLAMA},
                 {"ollama": listed("qwen3:4b")},
                 ["qwen3:4b", "ollama/llama3", "ollama/qwen3:4b"], id="tier-shadows-local"),
    pytest.param({}, {"ollama": OLLAMA}, {"ollama": listed("kimi-k2.6:cloud", "gpt-oss:20b-cloud")},
                 ["ollama/kimi-k2.6:cloud", "gpt-oss:20b-cloud"],
                 id="local-cloud-stub-without-cloud"),
    pytest.param({}, {"ollama": OLLAMA}, {"ollama": listed("ollama/x", "openrouter/a/b")},
                 ["ollama/ollama/x", "ollama/openrouter/a/b"], id="local-names-like-prefixes"),
    pytest.param({}, {"ollama": OLLAMA, "ollama_cloud": CLOUD},
                 {"ollama": listed("kimi-k2.6:cloud")}, ["ollama/kimi-k2.6:cloud"],
                 id="local-cloud-stub-with-cloud"),
    pytest.param({"smart": ("kimi-k2.6:cloud", "openrouter/moonshotai/kimi-k2")},
                 {"ollama": OLLAMA, "openrouter": OPENROUTER},
                 {"openrouter": listed("moonshotai/kimi-k2", "openrouter/auto", "bare")},
                 ["smart", "openrouter/moonshotai/kimi-k2", "openrouter/openrouter/auto"],
                 id="tier-with-one-usable-target"),
    pytest.param({"smart": ("kimi-k2.6:cloud",)}, {"ollama": OLLAMA}, {}, [],
                 id="tier-without-registered-target"),
    pytest.param({}, ALL, {"opencode": listed("glm-5.1", "claude-x", "gpt-5"),
                           "kimi": listed("kimi-for-coding")},
                 ["opencode/glm-5.1", "kimi/kimi-for-coding"], id="unspoken-apis-left-out"),
    pytest.param({"fast": ("ollama/qwen3:4b",), "fast:latest": ("ollama/llama3",)},
                 {"ollama": OLLAMA}, {}, ["fast", "fast:latest", "ollama/qwen3:4b",
                                          "ollama/llama3"], id="latest-is-its-own-tier"),
])
def test_catalog(tiers: dict[str, tuple[str, ...]], providers: dict[str, Provider],
                 lists: dict[str, tuple[ListedModel, ...]], expected: list[str]) -> None:
    entries = catalog(tiers=tiers, providers=providers, listed=lists,
                      speaks=lambda api: api in ("ollama_chat", "ollama_generate",
                                                 "openai_chat"))
    assert names(entries) == expected
    assert len(set(names(entries))) == len(entries)


def test_every_catalog_entry_routes_where_it_claims() -> None:
    """The property behind the table: each name (and alias) resolves to its routes."""
    from chatproto import resolve

    tiers = {"fast": ("ollama/qwen3:4b",), "smart": ("kimi-k2.6:cloud", "openrouter/v/m")}
    lists = {"ollama": listed("qwen3:4b", "smart", "fast:latest", "x:cloud"),
             "openrouter": listed("v/m", "w/n"), "kimi": listed("kimi-for-coding")}
    entries = catalog(tiers=tiers, providers=ALL, listed=lists, speaks=lambda api: True)
    assert len(entries) > 8
    for entry in entries:
        for name in (entry.name, *entry.aliases):
            assert resolve(name, ALL, tiers) == entry.routes, name


def test_tier_alias_and_find_model() -> None:
    entries = catalog(tiers={"smart": ("ollama/q",)}, providers={"ollama": OLLAMA}, listed={},
                      speaks=lambda api: True)
    smart = find_model(entries, "smart:latest")
    assert smart is not None and smart.name == "smart" and smart.is_tier
    assert smart.routes == (Route(provider="ollama", upstream_model="q"),)
    assert find_model(entries, "nope") is None


@pytest.mark.parametrize(("provider", "model", "tiers", "expected"), [
    (OLLAMA, "qwen3:4b", {}, "qwen3:4b"),
    (OLLAMA, "qwen3:4b", {"qwen3:4b": ("kimi/x",)}, "ollama/qwen3:4b"),
    (OLLAMA, "k:cloud", {}, "ollama/k:cloud"),
    (OPENROUTER, "v/m", {}, "openrouter/v/m"),
    (OPENROUTER, "bare", {}, None),
])
def test_name_for(provider: Provider, model: str, tiers: dict[str, tuple[str, ...]],
                  expected: str | None) -> None:
    got = name_for(provider, model, providers=ALL, tiers=tiers, speaks=lambda api: True)
    assert got == expected


# --- the cached lister ---------------------------------------------------------------------

class Upstreams:
    """A MockTransport handler playing each provider's list endpoint."""

    def __init__(self) -> None:
        self.bodies: dict[str, bytes] = {
            "http://local.test/api/tags": orjson.dumps({"models": [TAG]}),
            "https://or.test/api/v1/models": orjson.dumps({"data": [{"id": "v/m"}]}),
        }
        self.status: dict[str, int] = {}
        self.fail: set[str] = set()
        self.stall: set[str] = set()
        self.gate: anyio.Event | None = None

    async def __call__(self, http: Any) -> MockResponse:
        if self.gate is not None:
            await self.gate.wait()
        if http.url in self.fail:
            raise ChatError("upstream_unavailable", "connection refused")
        if http.url in self.stall:
            await anyio.sleep(3600)
        return MockResponse(status=self.status.get(http.url, 200),
                            chunks=(self.bodies[http.url],))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


PROVIDERS = {"ollama": OLLAMA, "openrouter": OPENROUTER, "ollama_cloud": CLOUD}


def ids(lists: dict[str, tuple[ListedModel, ...]]) -> dict[str, list[str]]:
    return {k: [m.id for m in v] for k, v in sorted(lists.items())}


@pytest.mark.anyio
async def test_lister_caches_for_the_ttl() -> None:
    up, clock = Upstreams(), Clock()
    transport = MockTransport(up)
    lister = ModelLister(transport, ttl_secs=60, clock=clock)
    first = await lister.lists(PROVIDERS)
    assert ids(first) == {"ollama": ["qwen3:4b"], "openrouter": ["v/m"]}  # no cloud list
    await lister.lists(PROVIDERS)
    assert len(transport.requests) == 2
    up.bodies["https://or.test/api/v1/models"] = orjson.dumps({"data": [{"id": "v/new"}]})
    clock.now += 61
    assert ids(await lister.lists(PROVIDERS))["openrouter"] == ["v/new"]
    assert len(transport.requests) == 4


@pytest.mark.anyio
@pytest.mark.parametrize("failure", ["unreachable", "status", "not-a-list"])
async def test_lister_keeps_the_last_good_list_when_a_refresh_fails(failure: str) -> None:
    up, clock = Upstreams(), Clock()
    transport = MockTransport(up)
    lister = ModelLister(transport, ttl_secs=60, clock=clock)
    await lister.lists(PROVIDERS)
    url = "https://or.test/api/v1/models"
    if failure == "unreachable":
        up.fail.add(url)
    elif failure == "status":
        up.status[url] = 500
    else:
        up.bodies[url] = b"<html>oops</html>"
    clock.now += 61
    assert ids(await lister.lists(PROVIDERS))["openrouter"] == ["v/m"]
    tries = len(transport.requests)
    clock.now += RETRY_SECS / 2
    await lister.lists(PROVIDERS)
    assert len(transport.requests) == tries  # not retried on every request
    clock.now += 3600
    assert ids(await lister.lists(PROVIDERS))["openrouter"] == []  # too stale to show


@pytest.mark.anyio
async def test_lister_never_listed_provider_that_fails_is_empty_not_an_error() -> None:
    up = Upstreams()
    up.fail.add("http://local.test/api/tags")
    lister = ModelLister(MockTransport(up), ttl_secs=60)
    assert ids(await lister.lists(PROVIDERS)) == {"ollama": [], "openrouter": ["v/m"]}


@pytest.mark.anyio
async def test_lister_bounds_a_stalled_upstream_in_time() -> None:
    from transports import Timeouts

    up = Upstreams()
    up.stall.add("https://or.test/api/v1/models")
    lister = ModelLister(MockTransport(up), timeouts=Timeouts(connect=0.1, read=0.2, total=0.2))
    with anyio.fail_after(2):
        lists = await lister.lists(PROVIDERS)
    assert ids(lists) == {"ollama": ["qwen3:4b"], "openrouter": []}


@pytest.mark.anyio
async def test_concurrent_routes_share_one_fetch() -> None:
    up = Upstreams()
    up.gate = anyio.Event()
    transport = MockTransport(up)
    lister = ModelLister(transport, ttl_secs=60)
    results: list[dict[str, list[str]]] = []

    async def one() -> None:
        results.append(ids(await lister.lists(PROVIDERS)))

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(one)
        await anyio.sleep(0.05)
        up.gate.set()
    assert len(transport.requests) == 2  # one per provider, not one per route
    assert all(r == results[0] for r in results) and len(results) == 5
