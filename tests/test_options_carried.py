"""Nothing the client set is silently dropped: each option, from each door, reaches each
upstream family that has a field for it, under that upstream's name, and no other.

Table-driven over (door, option) -> what each upstream's body holds: the door's own parser
builds the canonical request, each codec builds its upstream request from it, exactly as
the call plan does. The upstreams are the built-in profiles (local Ollama, Ollama Cloud's
``/api/generate``, OpenRouter, Kimi, OpenCode Zen's chat) and one Anthropic Messages and
one Responses provider. The README's dialect section lists the same facts for users.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from chatproto import PROFILES, ChatError, ChatRequest, Provider, Route
from chatproto.dialects import anthropic_messages, codec_for, ollama, openai_chat
from chatproto.dialects import openai_responses as responses

ABSENT = object()
"""The upstream body has no such field."""

TARGETS: dict[str, Provider] = {p.name: p for p in PROFILES}
TARGETS["anthropic"] = Provider(name="anthropic", api="anthropic_messages",
                                base_url="https://claude.test/v1")
TARGETS["responses"] = Provider(name="responses", api="openai_responses",
                                base_url="https://responses.test/v1")

USER = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"],
          "additionalProperties": False}


def door_request(door: str, fields: dict[str, Any]) -> ChatRequest:
    """The canonical request the door makes of a minimal body plus ``fields``."""
    if door == "ollama":
        return ollama.parse_chat(orjson.dumps({"model": "m", "messages": USER, **fields}))
    if door == "openai":
        body = orjson.dumps({"model": "m", "messages": USER, **fields})
        return openai_chat.parse_request(body).chat
    if door == "anthropic":
        body = orjson.dumps({"model": "m", "max_tokens": 64, "messages": USER, **fields})
        return anthropic_messages.parse_request(body).chat
    assert door == "responses"
    return responses.parse_request(orjson.dumps({"model": "m", "input": "hi", **fields})).chat


def upstream_body(request: ChatRequest, target: str) -> dict[str, Any]:
    provider = TARGETS[target]
    api = provider.api_for("m", tools=bool(request.tools))
    http = codec_for(api).build_request(request, Route(provider=target, upstream_model="m"),
                                        provider)
    return dict(orjson.loads(http.body))


def at(body: dict[str, Any], path: str) -> object:
    value: Any = body
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return ABSENT
        value = value[key]
    return value


Expect = dict[str, dict[str, object]]
"""target -> {dotted path in its body: the value, or ABSENT}."""

ALL_OLLAMA = ("ollama", "ollama_cloud")
FAMILY = ("openrouter", "kimi", "opencode")


def each(targets: tuple[str, ...], path: str, value: object) -> Expect:
    return {t: {path: value} for t in targets}


def merge(*parts: Expect) -> Expect:
    out: Expect = {}
    for part in parts:
        for target, paths in part.items():
            out.setdefault(target, {}).update(paths)
    return out


ROWS: list[tuple[str, dict[str, Any], Expect, str]] = [
    # --- from an Ollama client ------------------------------------------------------------
    ("ollama", {"options": {"top_k": 20}}, merge(
        each(ALL_OLLAMA, "options.top_k", 20), {"openrouter": {"top_k": 20}},
        each(("kimi", "opencode", "responses"), "top_k", ABSENT),
        {"anthropic": {"top_k": 20}}), "ollama-top_k"),
    ("ollama", {"options": {"min_p": 0.05}}, merge(
        each(ALL_OLLAMA, "options.min_p", 0.05), {"openrouter": {"min_p": 0.05}},
        each(("kimi", "opencode", "anthropic", "responses"), "min_p", ABSENT)),
     "ollama-min_p"),
    ("ollama", {"options": {"repeat_penalty": 1.1}}, merge(
        each(ALL_OLLAMA, "options.repeat_penalty", 1.1),
        {"openrouter": {"repetition_penalty": 1.1}},
        each(("kimi", "opencode", "anthropic", "responses"), "repetition_penalty", ABSENT)),
     "ollama-repeat_penalty-is-openrouter-repetition_penalty"),
    ("ollama", {"options": {"num_ctx": 8192, "num_thread": 4, "typical_p": 0.9}}, merge(
        each(ALL_OLLAMA, "options.num_ctx", 8192), each(ALL_OLLAMA, "options.num_thread", 4),
        each(ALL_OLLAMA, "options.typical_p", 0.9),
        each((*FAMILY, "anthropic", "responses"), "num_ctx", ABSENT)),
     "ollama-only-options"),
    ("ollama", {"options": {"presence_penalty": 0.5, "frequency_penalty": 0.25}}, merge(
        each(ALL_OLLAMA, "options.presence_penalty", 0.5),
        each(ALL_OLLAMA, "options.frequency_penalty", 0.25),
        each(FAMILY, "presence_penalty", 0.5), each(FAMILY, "frequency_penalty", 0.25),
        each(("anthropic", "responses"), "presence_penalty", ABSENT)), "ollama-penalties"),
    ("ollama", {"keep_alive": "10m"}, merge(
        each(ALL_OLLAMA, "keep_alive", "10m"),
        each((*FAMILY, "anthropic", "responses"), "keep_alive", ABSENT)), "ollama-keep_alive"),
    ("ollama", {"keep_alive": 0}, each(ALL_OLLAMA, "keep_alive", 0), "ollama-keep_alive-zero"),
    ("ollama", {"logprobs": True, "top_logprobs": 3}, merge(
        each(ALL_OLLAMA, "logprobs", True), each(ALL_OLLAMA, "top_logprobs", 3),
        each(FAMILY, "logprobs", True), each(FAMILY, "top_logprobs", 3),
        {"responses": {"top_logprobs": 3, "logprobs": ABSENT}},
        {"anthropic": {"logprobs": ABSENT, "top_logprobs": ABSENT}}), "ollama-logprobs"),
    ("ollama", {"truncate": False, "shift": False}, merge(
        {"ollama": {"truncate": False, "shift": False}},
        each(("ollama_cloud", *FAMILY, "anthropic"), "truncate", ABSENT)),
     "ollama-extras-same-endpoint-only"),
    # --- from an OpenAI client ------------------------------------------------------------
    ("openai", {"presence_penalty": 0.5, "frequency_penalty": -0.5}, merge(
        each(FAMILY, "presence_penalty", 0.5), each(FAMILY, "frequency_penalty", -0.5),
        each(ALL_OLLAMA, "options.presence_penalty", 0.5),
        each(ALL_OLLAMA, "options.frequency_penalty", -0.5),
        each(("anthropic", "responses"), "frequency_penalty", ABSENT)), "openai-penalties"),
    ("openai", {"tools": [TOOL], "parallel_tool_calls": False}, merge(
        each((*FAMILY, "responses"), "parallel_tool_calls", False),
        {"anthropic": {"tool_choice.disable_parallel_tool_use": True}},
        {"ollama": {"parallel_tool_calls": ABSENT}}), "openai-parallel_tool_calls"),
    ("openai", {"logprobs": True, "top_logprobs": 5}, merge(
        each(FAMILY, "logprobs", True), each(FAMILY, "top_logprobs", 5),
        each(ALL_OLLAMA, "logprobs", True), each(ALL_OLLAMA, "top_logprobs", 5),
        {"responses": {"top_logprobs": 5}}, {"anthropic": {"top_logprobs": ABSENT}}),
     "openai-logprobs"),
    ("openai", {"user": "u-1"}, merge(
        each((*FAMILY, "responses"), "user", "u-1"), {"anthropic": {"metadata.user_id": "u-1"}},
        each(ALL_OLLAMA, "user", ABSENT)), "openai-user"),
    ("openai", {"seed": 7}, merge(
        each(FAMILY, "seed", 7), each(ALL_OLLAMA, "options.seed", 7),
        each(("anthropic", "responses"), "seed", ABSENT)), "openai-seed"),
    ("openai", {"top_k": 40, "min_p": 0.1, "repetition_penalty": 1.2}, merge(
        # The same dialect: what the client sent, to any OpenAI-family upstream.
        each(FAMILY, "top_k", 40), each(FAMILY, "min_p", 0.1),
        each(FAMILY, "repetition_penalty", 1.2),
        each(ALL_OLLAMA, "options.top_k", 40), each(ALL_OLLAMA, "options.min_p", 0.1),
        each(ALL_OLLAMA, "options.repeat_penalty", 1.2),
        {"anthropic": {"top_k": 40, "min_p": ABSENT}}, {"responses": {"top_k": ABSENT}}),
     "openai-openrouter-sampling"),
    ("openai", {"response_format": {"type": "json_schema", "json_schema": {
        "name": "answer", "strict": True, "schema": SCHEMA}}}, merge(
        each(FAMILY, "response_format", {"type": "json_schema", "json_schema": {
            "name": "answer", "schema": SCHEMA, "strict": True}}),
        each(ALL_OLLAMA, "format", SCHEMA),
        {"responses": {"text.format": {"type": "json_schema", "name": "answer",
                                       "schema": SCHEMA, "strict": True}}}),
     "openai-json_schema-name-and-strict"),
    ("openai", {"reasoning_effort": "minimal"}, merge(
        {"opencode": {"reasoning_effort": "minimal"}},
        {"openrouter": {"reasoning": {"enabled": False}, "reasoning_effort": ABSENT}},
        {"kimi": {"thinking": {"type": "disabled"}, "reasoning_effort": ABSENT}},
        each(ALL_OLLAMA, "think", False)), "openai-reasoning_effort-reaches-opencode"),
    ("openai", {"reasoning_effort": "high"}, merge(
        {"opencode": {"reasoning_effort": "high"}},
        {"openrouter": {"reasoning": {"effort": "high"}}}, each(ALL_OLLAMA, "think", "high"),
        {"responses": {"reasoning.effort": "high"}}), "openai-reasoning_effort-high"),
    ("openai", {"provider": {"order": ["groq", "together"], "allow_fallbacks": False},
                "transforms": ["middle-out"], "service_tier": "flex"}, merge(
        each(FAMILY, "provider", {"order": ["groq", "together"], "allow_fallbacks": False}),
        each(FAMILY, "transforms", ["middle-out"]), each(FAMILY, "service_tier", "flex"),
        each((*ALL_OLLAMA, "anthropic", "responses"), "provider", ABSENT)),
     "openai-extras-reach-the-openai-family-unchanged"),
    # --- from an Anthropic client ---------------------------------------------------------
    ("anthropic", {"top_k": 5}, merge(
        {"anthropic": {"top_k": 5}}, each(ALL_OLLAMA, "options.top_k", 5),
        {"openrouter": {"top_k": 5}}, each(("kimi", "opencode", "responses"), "top_k", ABSENT)),
     "anthropic-top_k"),
    ("anthropic", {"metadata": {"user_id": "u-2"}}, merge(
        each((*FAMILY, "responses"), "user", "u-2"), {"anthropic": {"metadata.user_id": "u-2"}},
        each(ALL_OLLAMA, "user", ABSENT)), "anthropic-user"),
    # --- from a Responses client ----------------------------------------------------------
    ("responses", {"tools": [{"type": "function", "name": "f", "parameters": {}}],
                   "parallel_tool_calls": False, "user": "u-3", "top_logprobs": 2}, merge(
        each(FAMILY, "parallel_tool_calls", False), each(FAMILY, "user", "u-3"),
        each(FAMILY, "top_logprobs", 2), each(ALL_OLLAMA, "top_logprobs", 2),
        {"anthropic": {"metadata.user_id": "u-3",
                       "tool_choice.disable_parallel_tool_use": True}},
        {"responses": {"parallel_tool_calls": False, "user": "u-3", "top_logprobs": 2}}),
     "responses-options"),
    ("responses", {"text": {"format": {"type": "json_schema", "name": "answer",
                                       "strict": True, "schema": SCHEMA}}}, merge(
        each(FAMILY, "response_format", {"type": "json_schema", "json_schema": {
            "name": "answer", "schema": SCHEMA, "strict": True}}),
        each(ALL_OLLAMA, "format", SCHEMA)), "responses-json_schema-name-and-strict"),
]


@pytest.mark.parametrize(("door", "fields", "expect"), [r[:3] for r in ROWS],
                         ids=[r[3] for r in ROWS])
def test_each_option_reaches_each_upstream_that_has_it(
        door: str, fields: dict[str, Any], expect: Expect) -> None:
    request = door_request(door, fields)
    for target, paths in expect.items():
        body = upstream_body(request, target)
        got = {path: at(body, path) for path in paths}
        assert got == paths, target


def test_an_option_of_the_wrong_type_is_a_400_naming_it() -> None:
    with pytest.raises(ChatError) as caught:
        door_request("ollama", {"options": {"num_ctx": "8k"}})
    assert caught.value.status == 400
    assert "options.num_ctx" in caught.value.message
    with pytest.raises(ChatError) as caught:
        door_request("openai", {"presence_penalty": "high"})
    assert "presence_penalty" in caught.value.message
    with pytest.raises(ChatError) as caught:
        door_request("ollama", {"keep_alive": [1]})
    assert "keep_alive" in caught.value.message


def test_chatd_fields_win_over_same_dialect_extras() -> None:
    """An extra can never replace what chatd itself sends (the routed model, the stream
    flag): extras are what chatd did not interpret, applied first."""
    request = door_request("ollama", {"truncate": True})
    body = upstream_body(request, "ollama")
    assert (body["model"], body["truncate"]) == ("m", True)


# --- through a running chatd, with the clients' own SDKs --------------------------------

@pytest.mark.anyio
@pytest.mark.filterwarnings(
    "ignore:Async generator '(openai|httpx|httpcore)[0-9]*[.]"
    ".*' was garbage collected:ResourceWarning")
async def test_openrouter_provider_object_reaches_openrouter_unchanged(tmp_path: Any) -> None:
    """OpenRouter's routing preferences, sent with the openai SDK's ``extra_body``, reach
    OpenRouter exactly as the client wrote them, next to the options chatd reads."""
    from test_front_doors import stack

    provider = {"order": ["deepinfra", "together"], "allow_fallbacks": False,
                "sort": "throughput", "max_price": {"prompt": 1, "completion": 2}}
    async with stack(tmp_path) as s, s.openai() as client:
        await client.chat.completions.create(
            model="openrouter/moonshotai/kimi-k2", messages=[{"role": "user", "content": "hi"}],
            presence_penalty=0.5, user="u-9", extra_body={"provider": provider, "top_k": 7})
    [body] = s.upstream_bodies("openrouter")
    assert body["provider"] == provider
    assert (body["presence_penalty"], body["user"], body["top_k"]) == (0.5, "u-9", 7)


@pytest.mark.anyio
async def test_ollama_client_options_reach_ollama_and_openrouter(tmp_path: Any) -> None:
    """The ``ollama`` package's options: all of them reach the local Ollama, the ones
    OpenRouter has reach OpenRouter under its names."""
    from test_front_doors import stack

    options = {"num_ctx": 8192, "top_k": 20, "repeat_penalty": 1.1, "min_p": 0.05,
               "temperature": 0.3}
    async with stack(tmp_path) as s, s.ollama() as client:
        for model in ("ollama/qwen3:4b", "openrouter/moonshotai/kimi-k2"):
            await client.chat(model=model, messages=[{"role": "user", "content": "hi"}],
                              options=options, keep_alive="10m", stream=False)
    [local] = s.upstream_bodies("ollama")
    assert local["options"] == {**options} and local["keep_alive"] == "10m"
    [routed] = s.upstream_bodies("openrouter")
    assert {k: routed.get(k) for k in ("top_k", "min_p", "repetition_penalty", "num_ctx",
                                       "keep_alive", "temperature")} == {
        "top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1, "num_ctx": None,
        "keep_alive": None, "temperature": 0.3}
