"""The call plan (chatproto.CallPlan): attempts, skipping, budget, masking; no I/O.

Table-driven over requests and chains; the clock is a number passed in.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from chatproto import (
    PROFILES,
    CallPlan,
    ChatError,
    ChatRequest,
    ImagePart,
    Message,
    Provider,
    Secret,
    TextPart,
    ToolCall,
    mask_secret,
    profile,
)

ROWS = {row.name: row for row in PROFILES}
KEYED = {name: replace(row, key=Secret(f"sk-{name}-0123456789")) for name, row in ROWS.items()}
#: A configured provider that speaks only /api/generate (no tools, no image URLs).
GEN = Provider(name="gen", api="ollama_generate", base_url="http://gen.test", prefix="gen/")
PROFILE_ROWS = (*PROFILES, GEN)
PROVIDERS = {**KEYED, "gen": GEN}

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
HI = (Message(role="user", content="hi"),)
TOOL_RESULT = (
    Message(role="user", content="run f"),
    Message(role="assistant", tool_calls=(ToolCall(id="c1", name="f", arguments="{}"),)),
    Message(role="tool", content="42", tool_call_id="c1"),
)
IMAGE_URL = (Message(role="user", parts=(
    TextPart(text="what is this"), ImagePart(url="https://example.org/cat.png"))),)


def plan(model: str, messages: tuple[Message, ...] = HI, *, tiers: dict[str, tuple[str, ...]]
         | None = None, now: float = 0.0, **kw: object) -> CallPlan:
    request = ChatRequest(model=model, messages=messages,
                          tools=(TOOL,) if kw.pop("tools", False) else ())
    return CallPlan(request, providers=PROVIDERS, tiers=tiers or {}, profiles=PROFILE_ROWS,
                    now=now, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("model", "messages", "tools", "path"),
    [
        ("kimi-k2.6:cloud", HI, False, "/api/generate"),
        # SPEC §2: a request with tools or tool results goes to Ollama Cloud's /api/chat.
        ("kimi-k2.6:cloud", HI, True, "/api/chat"),
        ("kimi-k2.6:cloud", TOOL_RESULT, False, "/api/chat"),
        ("ollama_cloud/gpt-oss:120b", TOOL_RESULT, True, "/api/chat"),
        ("qwen3:4b", HI, False, "/api/chat"),
        ("opencode/glm-5.1", HI, False, "/chat/completions"),
    ],
    ids=["cloud-plain", "cloud-tools", "cloud-tool-result", "cloud-prefix-tools", "local",
         "zen-chat"],
)
def test_the_wire_format_follows_what_the_request_carries(
    model: str, messages: tuple[Message, ...], tools: bool, path: str
) -> None:
    attempt = plan(model, messages, tools=tools).next(now=0)
    assert attempt.http.url.endswith(path)


@pytest.mark.parametrize(
    ("upstream", "api"),
    [("claude-sonnet-4-6", "anthropic_messages"), ("gpt-5.1-codex", "openai_responses"),
     ("glm-5.1", "openai_chat"), ("kimi-k2", "openai_chat")],
)
def test_opencode_zen_serves_each_model_on_its_own_wire_format(upstream: str, api: str) -> None:
    """SPEC §2: claude-* on /messages, gpt-* on /responses, every other on /chat/completions."""
    assert ROWS["opencode"].api_for(upstream) == api


def test_a_chain_skips_a_target_that_cannot_carry_tools() -> None:
    """SPEC §1: a capability-aware chain answers with the first target that can."""
    p = plan("smart", tools=True, tiers={"smart": ("gen/llama3", "kimi/k2")})
    attempt = p.next(now=0)
    assert attempt.route.provider == "kimi"
    assert p.fallbacks == ["gen"]


def test_a_chain_skips_a_target_that_takes_no_image_urls() -> None:
    p = plan("vision", IMAGE_URL, tiers={"vision": ("ollama/llava", "openrouter/x/y")})
    assert p.next(now=0).route.provider == "openrouter"


def test_when_no_target_can_carry_the_first_targets_reason_is_the_answer() -> None:
    p = plan("local", IMAGE_URL, tiers={"local": ("ollama/llava", "gen/llava")})
    with pytest.raises(ChatError) as info:
        p.next(now=0)
    assert (info.value.status, info.value.type, info.value.provider) == (
        400, "invalid_request", "ollama")
    assert "URL" in info.value.message


def test_a_single_target_that_cannot_carry_the_request_is_a_clear_400() -> None:
    with pytest.raises(ChatError) as info:
        plan("gen/llama3", tools=True).next(now=0)
    assert info.value.status == 400 and "tools" in info.value.message


def test_a_retryable_failure_moves_along_the_chain_and_the_last_one_is_raised() -> None:
    p = plan("smart", tiers={"smart": ("kimi/a", "openrouter/b/c")})
    first = p.next(now=0)
    p.failed(first, ChatError("rate_limited", "slow down", upstream_status=429))
    second = p.next(now=1)
    assert second.route.provider == "openrouter"
    with pytest.raises(ChatError) as info:
        p.failed(second, ChatError("upstream_error", "boom", upstream_status=500))
    assert info.value.type == "upstream_error" and info.value.provider == "openrouter"
    assert p.fallbacks == ["kimi"]


def test_the_requests_own_error_stops_the_chain() -> None:
    p = plan("smart", tiers={"smart": ("kimi/a", "openrouter/b/c")})
    attempt = p.next(now=0)
    with pytest.raises(ChatError) as info:
        p.failed(attempt, ChatError("upstream_rejected", "bad field", upstream_status=400))
    assert info.value.type == "upstream_rejected"


def test_each_attempt_gets_what_is_left_of_the_chains_budget() -> None:
    p = plan("smart", tiers={"smart": ("kimi/a", "openrouter/b/c", "opencode/d")},
             timeout_secs=30.0, chain_timeout_secs=10.0, now=100.0)
    first = p.next(now=100.0)
    assert first.timeout_secs == 10.0
    p.failed(first, ChatError("upstream_timeout", "slow"))
    second = p.next(now=107.5)
    assert second.timeout_secs == pytest.approx(2.5)
    p.failed(second, ChatError("upstream_timeout", "slow"))
    with pytest.raises(ChatError) as info:
        p.next(now=110.0)
    # The budget is spent: the answer is the last real failure, not a third target's.
    assert (info.value.status, info.value.type, info.value.provider) == (
        504, "upstream_timeout", "openrouter")


def test_a_spent_budget_answers_with_the_real_failure_and_its_wait() -> None:
    p = plan("smart", tiers={"smart": ("kimi/k2", "openrouter/a/b")}, timeout_secs=10.0)
    first = p.next(now=0)
    p.failed(first, ChatError("rate_limited", "slow down", retry_after=30.0))
    with pytest.raises(ChatError) as info:
        p.next(now=10.5)
    assert (info.value.provider, info.value.retry_after) == ("kimi", 30.0)


def test_no_budget_at_all_is_a_504() -> None:
    p = plan("kimi/k2", chain_timeout_secs=1.0, now=0.0)
    with pytest.raises(ChatError) as info:
        p.next(now=2.0)
    assert (info.value.status, info.value.type) == (504, "upstream_timeout")
    assert "budget" in info.value.message


def test_the_first_targets_error_is_the_answer_when_no_target_can_serve() -> None:
    """SPEC §1: "Only when none can is the error returned (the first target's)": an
    unregistered first target is skipped in its place, and its 404 is the answer."""
    providers = {k: v for k, v in PROVIDERS.items() if k != "kimi"}
    request = ChatRequest(model="c", messages=HI, tools=(TOOL,))
    p = CallPlan(request, providers=providers, tiers={"c": ("kimi/k2", "gen/llama")},
                 profiles=PROFILE_ROWS)
    with pytest.raises(ChatError) as info:
        p.next(now=0)
    assert (info.value.status, info.value.type, info.value.provider) == (
        404, "provider_not_registered", "kimi")


@pytest.mark.parametrize("model", ["opencode/claude-sonnet-4-6", "opencode/gpt-5.1-codex",
                                   "opencode/glm-5.1"])
def test_a_wire_format_chatd_cannot_speak_is_a_clear_error_not_a_crash(model: str) -> None:
    """A row naming a wire format this build lacks (here: every one but Chat Completions,
    as before a dialect lands) is a target that cannot serve, never a KeyError (a 500)."""
    from chatproto import PROFILES as rows

    zen = next(r for r in rows if r.name == "opencode")
    missing = replace(zen, key=Secret("k"), model_apis=(("claude-", "no_such_api"),
                                                       ("gpt-", "no_such_api")))
    p = CallPlan(ChatRequest(model=model, messages=HI), providers={"opencode": missing})
    if model.endswith("glm-5.1"):
        assert p.next(now=0).api == "openai_chat"
        return
    with pytest.raises(ChatError) as info:
        p.next(now=0)
    assert info.value.status == 400 and "no_such_api" in info.value.message


def test_only_a_user_agent_a_header_can_carry_is_forwarded() -> None:
    request = ChatRequest(model="kimi/k2", messages=HI, headers=(("user-agent", "Caf\xe9/1"),))
    attempt = CallPlan(request, providers=PROVIDERS).next(now=0)
    assert all("Caf" not in v for k, v in attempt.http.headers)


def test_url_credentials_are_masked_like_a_key() -> None:
    from base64 import b64encode

    from chatproto import blame

    row = replace(GEN, base_url="http://alice:s3cret-pass-77@gen.test")
    basic = b64encode(b"alice:s3cret-pass-77").decode()
    exc = blame(ChatError("upstream_error", f"bad s3cret-pass-77 / Basic {basic}"), row)
    assert "s3cret" not in exc.message and basic not in exc.message


def test_a_short_key_is_still_masked_where_it_appears_whole() -> None:
    assert mask_secret("key abc refused", "abc") == "key *** refused"


def test_a_429_without_a_wait_gets_the_default_retry_after() -> None:
    p = plan("kimi/a", default_retry_after_secs=2.0)
    attempt = p.next(now=0)
    with pytest.raises(ChatError) as info:
        p.failed(attempt, ChatError("rate_limited", "slow down", upstream_status=429))
    assert info.value.retry_after == 2.0
    p = plan("kimi/a")
    attempt = p.next(now=0)
    exc = ChatError("rate_limited", "slow", upstream_status=429, retry_after=9.0)
    with pytest.raises(ChatError) as info:
        p.failed(attempt, exc)
    assert info.value.retry_after == 9.0


def test_the_clients_user_agent_is_forwarded_where_the_provider_asks() -> None:
    """SPEC §2: Kimi For Coding admits only coding agents; its row forwards the client's."""
    request = ChatRequest(model="kimi/k2", messages=HI,
                          headers=(("user-agent", "claude-cli/2.1.332 (external, sdk-cli)"),))
    attempt = CallPlan(request, providers=PROVIDERS).next(now=0)
    agents = [v for k, v in attempt.http.headers if k.lower() == "user-agent"]
    assert agents == ["claude-cli/2.1.332 (external, sdk-cli)"]
    other = CallPlan(replace(request, model="openrouter/a/b"), providers=PROVIDERS).next(now=0)
    assert "claude-cli" not in str([v for k, v in other.http.headers if k.lower() == "user-agent"])
    configured = {**PROVIDERS, "kimi": replace(PROVIDERS["kimi"],
                                               headers=(("User-Agent", "KimiCLI/1.51.0"),))}
    pinned = CallPlan(request, providers=configured).next(now=0)
    assert [v for k, v in pinned.http.headers if k.lower() == "user-agent"] == ["KimiCLI/1.51.0"]


def test_a_tier_answers_to_its_latest_tag() -> None:
    """SPEC §1: Open WebUI appends ``:latest`` to every name without a tag."""
    assert plan("fast:latest", tiers={"fast": ("ollama/qwen3:4b",)}).routes[0].upstream_model == (
        "qwen3:4b")


KEY = "sk-kimi-0123456789abcdef"


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (f"invalid key {KEY} given", "invalid key *** given"),
        (f"{KEY} and {KEY}", "*** and ***"),
        ("key sk-kimi-0123 456789abcdef is wrong", "key *** is wrong"),
        ("key sk-kimi-01234\n56789abcdef", "key ***"),
        # Its first 13 characters, the first half and more, identify the key.
        ('"sk-kimi-\\u00301234\\/56789abcdef"', '"***\\/56789abcdef"'),
        ("quoted SK-KIMI-0123456789ABCDEF upper-cased", "quoted *** upper-cased"),
        ("url sk-kimi-0123456789abcdef%3D", "url ***%3D"),
        ("cut sk-kimi-0123456789ab... (truncated)", "cut ***... (truncated)"),
        ("sk-kimi- is every key's public prefix", "sk-kimi- is every key's public prefix"),
        ('{"key": "sk-kimi-\\u0030123456789abcdef"}', '{"key": "***"}'),
        ("x" * 20 + "Bearer sk-kimi-012…", "x" * 20 + "Bearer ***…"),
        ("ends with sk-k", "ends with ***"),
        ("ends with sk-", "ends with sk-"),
        ("no key here", "no key here"),
    ],
    ids=["whole", "twice", "split-by-space", "split-by-newline", "first-half",
         "upper-cased", "then-more", "cut-mid-message", "public-prefix", "json-escaped",
         "clipped", "clipped-four", "three-left", "none"],
)
def test_a_key_is_masked_however_the_upstream_quoted_it(message: str, expected: str) -> None:
    assert mask_secret(message, KEY) == expected


def test_blame_masks_the_key_of_the_failing_provider() -> None:
    p = plan("kimi/a")
    attempt = p.next(now=0)
    key = PROVIDERS["kimi"].key
    assert key is not None
    secret = key.reveal()
    with pytest.raises(ChatError) as info:
        p.failed(attempt, ChatError("upstream_error", f"bad key {secret[:9]} {secret[9:]}"))
    assert secret[:9] not in info.value.message and info.value.provider == "kimi"


def test_profile_rows_name_no_unknown_api() -> None:
    from chatproto import codec_for

    for row in PROFILES:
        for api in {row.api, *(a for _, a in row.model_apis), row.tools_api} - {None}:
            assert codec_for(str(api)).api == api
    assert profile("nope") is None


def test_the_readme_routing_table_names_every_built_in_prefix() -> None:
    """The docs derive from the rows: a row added without its README line fails here."""
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    table = readme.split("## Routing", 1)[1].split("\n\n", 2)[1]
    for row in PROFILES:
        assert f"| `{row.prefix}<" in table, row.name


# --- a provider at its concurrency bound -----------------------------------------------

def _bounded(**kw: Any) -> dict[str, Provider]:
    return {**PROVIDERS, "kimi": replace(PROVIDERS["kimi"], max_concurrency=2, **kw)}


def test_a_saturated_target_with_a_target_left_waits_not_at_all() -> None:
    p = CallPlan(ChatRequest(model="smart", messages=HI), providers=_bounded(),
                 tiers={"smart": ("kimi/a", "openrouter/b/c")}, profiles=PROFILE_ROWS)
    first = p.next(now=0)
    assert p.queue_wait(first, now=0) == 0.0
    p.failed(first, p.saturated(first, 0.0))  # retryable: the chain moves on
    second = p.next(now=0)
    assert second.route.provider == "openrouter"
    assert p.fallbacks == ["kimi"]


@pytest.mark.parametrize(
    ("queue_timeout", "now", "chain_budget", "wait"),
    [(10.0, 0.0, None, 10.0), (10.0, 115.0, None, 5.0), (10.0, 0.0, 3.0, 3.0),
     (0.0, 0.0, None, 0.0), (10.0, 200.0, None, 0.0)],
    ids=["queue-timeout", "clamped-to-budget", "chain-budget", "zero", "budget-spent"],
)
def test_the_last_target_waits_up_to_its_queue_timeout_within_the_budget(
    queue_timeout: float, now: float, chain_budget: float | None, wait: float
) -> None:
    p = CallPlan(ChatRequest(model="kimi/a", messages=HI),
                 providers=_bounded(queue_timeout_secs=queue_timeout), profiles=PROFILE_ROWS,
                 timeout_secs=120.0, chain_timeout_secs=chain_budget)
    attempt = p.next(now=0)
    assert p.queue_wait(attempt, now=now) == wait


def test_saturation_is_a_503_with_the_default_retry_after() -> None:
    p = CallPlan(ChatRequest(model="kimi/a", messages=HI), providers=_bounded(),
                 profiles=PROFILE_ROWS, default_retry_after_secs=7.0)
    attempt = p.next(now=0)
    exc = p.saturated(attempt, 1.25)
    assert (exc.status, exc.type, exc.provider, exc.retryable) == (
        503, "upstream_overloaded", "kimi", True)
    assert "max_concurrency" in exc.message and "1.25 s" in exc.message
    with pytest.raises(ChatError) as info:
        p.failed(attempt, exc)  # no target left: raised, with the default wait
    assert info.value.retry_after == 7.0


def test_resume_clamps_the_attempt_to_the_budget_left() -> None:
    p = CallPlan(ChatRequest(model="kimi/a", messages=HI), providers=_bounded(),
                 profiles=PROFILE_ROWS, timeout_secs=120.0)
    attempt = p.next(now=0)
    assert p.resume(attempt, now=0.0) is attempt  # no time went by
    assert p.resume(attempt, now=1.0).timeout_secs == 119.0
    assert p.resume(attempt, now=100.0).timeout_secs == 20.0
    with pytest.raises(ChatError) as info:
        p.resume(attempt, now=120.0)
    assert info.value.type == "upstream_timeout"
