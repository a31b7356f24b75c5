"""SPEC §1: model name -> (provider, upstream model), rule by rule and edge by edge."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatproto import ChatError, Route
from chatproto._routing import (
    DEFAULT_PROVIDER,
    PROVIDER_APIS,
    SHOWN_NAME,
    parse_tiers,
    resolve,
    split_cloud_suffix,
)

ALL = frozenset(PROVIDER_APIS)
LOCAL_ONLY = frozenset({"ollama"})

# (model, upstream provider, upstream model) with every provider registered.
OK_CASES = [
    # rule 3: ollama/<m>, tags with ':' kept; a :cloud tag is the local Ollama's business
    ("ollama/qwen3:4b", "ollama", "qwen3:4b", "r3-tag"),
    ("ollama/llama3", "ollama", "llama3", "r3-plain"),
    ("ollama/library/qwen3:4b", "ollama", "library/qwen3:4b", "r3-namespace"),
    ("ollama/qwen3:cloud", "ollama", "qwen3:cloud", "r3-beats-r8"),
    ("ollama/gpt-oss:120b-cloud", "ollama", "gpt-oss:120b-cloud", "r3-dash-cloud-kept"),
    # rule 4: ollama_cloud/<m>, :cloud / -cloud tag removed (any case)
    ("ollama_cloud/gpt-oss:120b-cloud", "ollama_cloud", "gpt-oss:120b", "r4-dash-cloud"),
    ("ollama_cloud/qwen3:cloud", "ollama_cloud", "qwen3", "r4-colon-cloud"),
    ("ollama_cloud/QWEN3:CLOUD", "ollama_cloud", "QWEN3", "r4-colon-cloud-upper"),
    ("ollama_cloud/kimi-k2:1t-Cloud", "ollama_cloud", "kimi-k2:1t", "r4-dash-cloud-mixed"),
    ("ollama_cloud/gpt-oss:20b:cloud", "ollama_cloud", "gpt-oss:20b", "r4-tag-then-cloud"),
    ("ollama_cloud/gpt-oss:120b", "ollama_cloud", "gpt-oss:120b", "r4-no-suffix"),
    ("ollama_cloud/kimi-k2.6", "ollama_cloud", "kimi-k2.6", "r4-no-tag"),
    ("ollama_cloud/my-cloud-model", "ollama_cloud", "my-cloud-model", "r4-cloud-inside"),
    ("ollama_cloud/qwen3-cloud", "ollama_cloud", "qwen3-cloud", "r4-dash-not-a-tag"),
    ("ollama_cloud/qwen3:-cloud", "ollama_cloud", "qwen3:-cloud", "r4-dash-empty-tag"),
    # rule 5: openrouter/<v>/<m> -> <v>/<m>
    ("openrouter/openrouter/auto", "openrouter", "openrouter/auto", "r5-router-id"),
    ("openrouter/moonshotai/kimi-k2", "openrouter", "moonshotai/kimi-k2", "r5-vendor"),
    ("openrouter/meta/llama:free", "openrouter", "meta/llama:free", "r5-variant"),
    ("openrouter/a/b/c", "openrouter", "a/b/c", "r5-deeper"),
    ("openrouter/x/qwen:cloud", "openrouter", "x/qwen:cloud", "r5-beats-r8"),
    # rule 6, 7
    ("opencode/claude-sonnet-4-5", "opencode", "claude-sonnet-4-5", "r6"),
    ("opencode/a/b", "opencode", "a/b", "r6-slash"),
    ("kimi/kimi-for-coding", "kimi", "kimi-for-coding", "r7"),
    ("kimi/k2:cloud", "kimi", "k2:cloud", "r7-beats-r8"),
    # rule 8: <m>:cloud, case-insensitive, bare or with an unknown prefix
    ("kimi-k2.6:cloud", "ollama_cloud", "kimi-k2.6", "r8-lower"),
    ("KIMI-K2.6:CLOUD", "ollama_cloud", "KIMI-K2.6", "r8-upper-keeps-case"),
    ("qwen3:Cloud", "ollama_cloud", "qwen3", "r8-mixed"),
    ("gpt-oss:20b:cloud", "ollama_cloud", "gpt-oss:20b", "r8-tag-then-cloud"),
    ("unknown/x:cloud", "ollama_cloud", "unknown/x", "r8-unknown-prefix"),
    ("OLLAMA/x:cloud", "ollama_cloud", "OLLAMA/x", "r8-upper-prefix"),
    # rule 9: everything else -> default, unchanged
    ("gpt-oss:120b-cloud", "ollama", "gpt-oss:120b-cloud", "r9-dash-cloud-bare"),
    ("qwen3:4b", "ollama", "qwen3:4b", "r9-bare-tag"),
    ("llama3", "ollama", "llama3", "r9-bare"),
    ("unknown/x", "ollama", "unknown/x", "r9-unknown-prefix"),
    ("OLLAMA/x", "ollama", "OLLAMA/x", "r9-prefix-case-sensitive"),
    ("Kimi/k2", "ollama", "Kimi/k2", "r9-kimi-case-sensitive"),
    ("ollama", "ollama", "ollama", "r9-prefix-word-no-slash"),
    ("ollamax/y", "ollama", "ollamax/y", "r9-near-prefix"),
    ("qwen3:cloudy", "ollama", "qwen3:cloudy", "r9-not-cloud-tag"),
    ("cloud", "ollama", "cloud", "r9-word-cloud"),
    ("/x", "ollama", "/x", "r9-leading-slash"),
    # rule 1: surrounding whitespace is stripped, inner text untouched
    ("  ollama/qwen3:4b\n", "ollama", "qwen3:4b", "r1-strip"),
    ("\tkimi-k2.6:cloud ", "ollama_cloud", "kimi-k2.6", "r1-strip-cloud"),
    ("  llama3  ", "ollama", "llama3", "r1-strip-bare"),
]


@pytest.mark.parametrize(
    ("model", "provider", "upstream"),
    [c[:3] for c in OK_CASES],
    ids=[c[3] for c in OK_CASES],
)
def test_resolves(model: str, provider: str, upstream: str) -> None:
    assert resolve(model, ALL) == (Route(provider=provider, upstream_model=upstream),)


BAD_CASES = [
    (None, "model is required", "r1-none"),
    (42, "must be a string", "r1-int"),
    (True, "must be a string", "r1-bool"),
    (["ollama/x"], "must be a string", "r1-list"),
    ({"name": "x"}, "must be a string", "r1-object"),
    ("", "must not be empty", "r1-empty"),
    ("   \t\n", "must not be empty", "r1-whitespace"),
    ("ollama/", "no model", "r3-empty"),
    ("ollama/   ", "no model", "r3-whitespace"),
    ("ollama_cloud/", "no model", "r4-empty"),
    ("ollama_cloud/:cloud", "before its cloud tag", "r4-only-cloud"),
    ("ollama_cloud/ :CLOUD", "before its cloud tag", "r4-blank-before-cloud"),
    ("openrouter/", "no model", "r5-empty"),
    ("openrouter/auto", "openrouter/<vendor>/<model>", "r5-no-slash"),
    ("openrouter/vendor/", "openrouter/<vendor>/<model>", "r5-empty-model"),
    ("openrouter//model", "openrouter/<vendor>/<model>", "r5-empty-vendor"),
    ("openrouter/a//b", "openrouter/<vendor>/<model>", "r5-empty-middle"),
    ("opencode/", "no model", "r6-empty"),
    ("kimi/", "no model", "r7-empty"),
    ("kimi/  ", "no model", "r7-whitespace"),
    (":cloud", "before ':cloud'", "r8-only-suffix"),
    (" :CLOUD", "before ':cloud'", "r8-only-suffix-upper"),
]


@pytest.mark.parametrize(
    ("model", "fragment"), [c[:2] for c in BAD_CASES], ids=[c[2] for c in BAD_CASES]
)
def test_invalid(model: object, fragment: str) -> None:
    with pytest.raises(ChatError) as info:
        resolve(model, ALL)
    assert info.value.type == "invalid_request"
    assert info.value.status == 400
    assert fragment in info.value.message


HUGE = "m" * 300_000


@pytest.mark.parametrize(
    ("model", "registered", "status"),
    [(f"kimi/{HUGE}", LOCAL_ONLY, 404), (f"{HUGE}:cloud", LOCAL_ONLY, 404),
     (f"openrouter/{HUGE}", ALL, 400), (f"ollama_cloud/{HUGE}", LOCAL_ONLY, 404)],
    ids=["not-registered", "cloud-not-registered", "bad-grammar", "prefix-not-registered"],
)
def test_an_error_quotes_a_huge_name_cut_short(
        model: str, registered: frozenset[str], status: int) -> None:
    """The message is the error body and a log line (server/app.py): a client's 300 kB
    name is quoted up to SHOWN_NAME characters and an ellipsis, not whole (SPEC §5)."""
    with pytest.raises(ChatError) as info:
        resolve(model, registered)
    message = info.value.message
    assert info.value.status == status
    assert len(message) < SHOWN_NAME + 300
    assert repr(model[:SHOWN_NAME] + "…") in message


NOT_REGISTERED = [
    ("ollama_cloud/gpt-oss:120b", "ollama_cloud", "r4"),
    ("openrouter/openrouter/auto", "openrouter", "r5"),
    ("opencode/x", "opencode", "r6"),
    ("kimi/kimi-for-coding", "kimi", "r7"),
    ("kimi-k2.6:cloud", "ollama_cloud", "r8-seed-case-4"),
    ("KIMI-K2.6:CLOUD", "ollama_cloud", "r8-upper"),
]


@pytest.mark.parametrize(
    ("model", "provider"), [c[:2] for c in NOT_REGISTERED], ids=[c[2] for c in NOT_REGISTERED]
)
def test_unregistered_provider_is_404_never_a_fallthrough(model: str, provider: str) -> None:
    with pytest.raises(ChatError) as info:
        resolve(model, LOCAL_ONLY)
    err = info.value
    assert (err.type, err.status, err.provider) == ("provider_not_registered", 404, provider)
    assert repr(provider) in err.message
    assert "register" in err.message


@pytest.mark.parametrize(
    "model", ["ollama/qwen3:4b", "llama3", "unknown/x", "gpt-oss:120b-cloud"]
)
def test_local_names_resolve_with_only_the_default_registered(model: str) -> None:
    (route,) = resolve(model, LOCAL_ONLY)
    assert route.provider == DEFAULT_PROVIDER


def test_default_provider_itself_unregistered_is_404() -> None:
    with pytest.raises(ChatError) as info:
        resolve("llama3", frozenset({"kimi"}))
    assert info.value.type == "provider_not_registered"


def test_registration_is_exact_name() -> None:
    """Registering 'ollama' does not register 'ollama_cloud' (no prefix matching)."""
    with pytest.raises(ChatError):
        resolve("qwen3:cloud", ["ollama", "openrouter"])
    assert resolve("qwen3:cloud", ["ollama_cloud"]) == (
        Route(provider="ollama_cloud", upstream_model="qwen3"),
    )


# ---------------------------------------------------------------- tiers (rule 2)

TIERS = {
    "fast": ("ollama/qwen3:4b",),
    "smart": ("kimi-k2.6:cloud", "openrouter/moonshotai/kimi-k2"),
    "chain": ("kimi/kimi-for-coding", "ollama_cloud/gpt-oss:120b-cloud", "llama3"),
    "loop": ("fast", "smart"),
    "cloudy": ("kimi-k2.6:cloud", "openrouter/moonshotai/kimi-k2"),
    "ollama/qwen3:4b": ("kimi/k2",),
}

TIER_CASES = [
    ("fast", ALL, [("ollama", "qwen3:4b")], "single"),
    ("  fast ", ALL, [("ollama", "qwen3:4b")], "stripped-name"),
    (
        "smart", ALL,
        [("ollama_cloud", "kimi-k2.6"), ("openrouter", "moonshotai/kimi-k2")],
        "chain-all-registered",
    ),
    ("smart", {"ollama", "openrouter"}, [("openrouter", "moonshotai/kimi-k2")], "skip-first"),
    ("smart", {"ollama", "ollama_cloud"}, [("ollama_cloud", "kimi-k2.6")], "skip-last"),
    (
        "chain", {"ollama", "ollama_cloud"},
        [("ollama_cloud", "gpt-oss:120b"), ("ollama", "llama3")],
        "skip-middle-keeps-order",
    ),
    ("chain", LOCAL_ONLY, [("ollama", "llama3")], "only-default-left"),
    # A target spelled like a tier is a plain model name (no tier-of-tier): rule 9.
    ("loop", ALL, [("ollama", "fast"), ("ollama", "smart")], "tier-target-is-a-model-name"),
    # Rule 2 comes first: a tier may shadow a name that would otherwise route.
    ("ollama/qwen3:4b", ALL, [("kimi", "k2")], "tier-shadows-prefix"),
    ("FAST", ALL, [("ollama", "FAST")], "tier-name-case-sensitive"),
]


@pytest.mark.parametrize(
    ("model", "registered", "expected"),
    [c[:3] for c in TIER_CASES],
    ids=[c[3] for c in TIER_CASES],
)
def test_tiers(model: str, registered: frozenset[str], expected: list[tuple[str, str]]) -> None:
    chain = resolve(model, registered, TIERS)
    assert chain == tuple(Route(provider=p, upstream_model=m) for p, m in expected)


def test_tier_with_no_registered_target_raises_first_targets_error() -> None:
    with pytest.raises(ChatError) as info:
        resolve("cloudy", LOCAL_ONLY, TIERS)
    err = info.value
    assert (err.type, err.status, err.provider) == ("provider_not_registered", 404, "ollama_cloud")
    assert "'cloudy'" in err.message
    assert "kimi-k2.6:cloud" in err.message


def test_tier_with_invalid_target_is_not_skipped() -> None:
    with pytest.raises(ChatError) as info:
        resolve("bad", ALL, {"bad": ("kimi/",)})
    assert info.value.type == "invalid_request"


def test_empty_tier_is_invalid() -> None:
    with pytest.raises(ChatError) as info:
        resolve("none", ALL, {"none": ()})
    assert info.value.type == "invalid_request"


# ---------------------------------------------------------------- split_cloud_suffix

SPLIT_CASES = [
    ("qwen3:cloud", ("qwen3", ":cloud")),
    ("qwen3:CLOUD", ("qwen3", ":cloud")),
    ("gpt-oss:20b:cloud", ("gpt-oss:20b", ":cloud")),
    ("gpt-oss:120b-cloud", ("gpt-oss:120b", "-cloud")),
    ("gpt-oss:120b-CLOUD", ("gpt-oss:120b", "-cloud")),
    ("ns/gpt-oss:120b-cloud", ("ns/gpt-oss:120b", "-cloud")),
    ("my-cloud-model", ("my-cloud-model", None)),
    ("qwen3-cloud", ("qwen3-cloud", None)),
    ("qwen3:-cloud", ("qwen3:-cloud", None)),
    ("x:a/b-cloud", ("x:a/b-cloud", None)),
    (":cloud", ("", ":cloud")),
    ("cloud", ("cloud", None)),
    ("qwen3:4b", ("qwen3:4b", None)),
]


@pytest.mark.parametrize(("name", "expected"), SPLIT_CASES, ids=[c[0] for c in SPLIT_CASES])
def test_split_cloud_suffix(name: str, expected: tuple[str, str | None]) -> None:
    assert split_cloud_suffix(name) == expected


# ---------------------------------------------------------------- parse_tiers

def test_parse_tiers_accepts_spec_example() -> None:
    raw = {"fast": "ollama/qwen3:4b", "smart": ["kimi-k2.6:cloud", "openrouter/moonshotai/kimi-k2"]}
    assert parse_tiers(raw) == {
        "fast": ("ollama/qwen3:4b",),
        "smart": ("kimi-k2.6:cloud", "openrouter/moonshotai/kimi-k2"),
    }


def test_parse_tiers_strips_targets_and_feeds_resolve() -> None:
    tiers = parse_tiers({"t": [" kimi/k2 ", "llama3"]})
    assert tiers == {"t": ("kimi/k2", "llama3")}
    assert resolve("t", LOCAL_ONLY, tiers) == (Route(provider="ollama", upstream_model="llama3"),)


PARSE_TIER_ERRORS = [
    ({"fast": 3}, "models.fast", "int"),
    ({"fast": None}, "models.fast", "none"),
    ({"fast": {"a": "b"}}, "models.fast", "table"),
    ({"fast": []}, "models.fast", "empty-list"),
    ({"fast": ""}, "models.fast", "empty-string"),
    ({"fast": "  "}, "models.fast", "blank-string"),
    ({"smart": ["ok", 3]}, "models.smart[1]", "list-item-int"),
    ({"smart": ["ok", ""]}, "models.smart[1]", "list-item-empty"),
    ({"smart": ["openrouter/kimi"]}, "models.smart[0]", "target-bad-grammar"),
    ({"fast": "kimi/"}, "models.fast", "target-empty-remainder"),
    ({"": "x"}, "tier name", "empty-key"),
]


@pytest.mark.parametrize(
    ("raw", "where"), [c[:2] for c in PARSE_TIER_ERRORS], ids=[c[2] for c in PARSE_TIER_ERRORS]
)
def test_parse_tiers_errors_name_the_key(raw: dict[str, object], where: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_tiers(raw)
    assert where in str(info.value)


def test_parse_tiers_does_not_require_registration() -> None:
    """Whether a provider is registered is a runtime fact; the chain exists to survive it."""
    assert parse_tiers({"x": ["kimi/a", "opencode/b"]}) == {"x": ("kimi/a", "opencode/b")}


def test_provider_apis_cover_every_codec_family() -> None:
    assert PROVIDER_APIS["ollama"] == "ollama_chat"
    assert PROVIDER_APIS["ollama_cloud"] == "ollama_generate"
    assert {PROVIDER_APIS[p] for p in ("openrouter", "opencode", "kimi")} == {"openai_chat"}
    assert DEFAULT_PROVIDER in PROVIDER_APIS


# ---------------------------------------------------------------- properties

NAME_PARTS = st.sampled_from(
    ["ollama/", "ollama_cloud/", "openrouter/", "opencode/", "kimi/", "OLLAMA/", "/", ":",
     ":cloud", "-cloud", ":CLOUD", "qwen3", "4b", " ", "\t", "é", "fast", ""]
)


@given(
    parts=st.lists(NAME_PARTS | st.text(max_size=5), max_size=8),
    registered=st.sets(st.sampled_from(sorted(ALL))),
)
def test_any_name_routes_or_is_a_clear_chat_error(parts: list[str], registered: set[str]) -> None:
    name = "".join(parts)
    try:
        chain = resolve(name, registered, TIERS)
    except ChatError as exc:
        assert exc.type in ("invalid_request", "provider_not_registered")
    else:
        assert chain
        for route in chain:
            assert route.provider in registered
            assert route.upstream_model.strip()
