"""The rest of Ollama's API that clients call (SPEC §3): ``POST /api/show``, ``GET /api/ps``.

Through a running chatd with the official ``ollama`` client: a local model's show is the
local Ollama's own answer; a routed one gets chatd's synthesized answer with
``capabilities``; ps lists what the local Ollama has loaded, under names that route.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ollama
import orjson
import pytest
from test_front_doors import LOCAL_MODEL, MESSAGES, TOKEN, free_port, stack
from test_front_doors import pytestmark as _front_doors_marks

from chatproto import Route, profile
from chatproto.dialects.ollama import capabilities, parse_ps, parse_show, render_show


def _marks(f: Any) -> Any:
    for mark in _front_doors_marks:
        f = mark(f)
    return f


@pytest.mark.parametrize(("body", "expected"), [
    (b'{"model": "m"}', ("m", False)), (b'{"name": "old"}', ("old", False)),
    (b'{"model": "m", "name": "n", "verbose": true}', ("m", True)),
])
def test_parse_show(body: bytes, expected: tuple[str, bool]) -> None:
    assert parse_show(body) == expected


@pytest.mark.parametrize(("name", "model", "caps"), [
    ("openrouter", "v/m", ["completion", "tools"]),
    ("ollama_cloud", "kimi-k2.6", ["completion", "tools"]),  # tools go to its /api/chat
    ("opencode", "claude-x", ["completion", "tools"]),
])
def test_synthesized_show(name: str, model: str, caps: list[str]) -> None:
    provider = profile(name)
    assert provider is not None
    assert capabilities(provider, model) == caps
    shown = ollama.ShowResponse.model_validate_json(
        render_show(provider=provider, route=Route(provider=name, upstream_model=model)))
    assert shown.capabilities == caps
    assert shown.details is not None and shown.details.family == name


def test_generate_only_api_has_no_tools() -> None:
    from dataclasses import replace

    row = profile("ollama_cloud")
    assert row is not None
    assert capabilities(replace(row, tools_api=None), "m") == ["completion"]


def test_parse_ps_keeps_expiry() -> None:
    body = orjson.dumps({"models": [{"name": "q:4b", "model": "q:4b", "size_vram": 9,
                                     "expires_at": "2031-01-01T00:00:00Z"}, {"x": 1}]})
    [model] = parse_ps("ollama", body, limit=10)
    assert model.entry is not None and model.entry["size_vram"] == 9


@_marks
async def test_show_of_a_local_model_is_the_local_ollama_s(tmp_path: Path) -> None:
    async with stack(tmp_path) as s, s.ollama() as client:
        bare = await client.show(LOCAL_MODEL)
        prefixed = await client.show(f"ollama/{LOCAL_MODEL}")
        with pytest.raises(ollama.ResponseError) as missing:
            await client.show("no-such-model")
    for shown in (bare, prefixed):
        assert shown.modelfile == f"FROM {LOCAL_MODEL}\n"
        assert shown.capabilities == ["completion", "tools", "thinking"]
        assert shown.modelinfo is not None
        assert shown.modelinfo["qwen3.context_length"] == 40960
    assert missing.value.status_code == 404
    assert "not found" in missing.value.error
    shows = [c for c in s.local.calls if c.path == "/api/show"]
    assert [orjson.loads(c.body)["model"] for c in shows] == [LOCAL_MODEL] * 2 + [
        "no-such-model"]


@_marks
async def test_show_of_a_routed_model_is_synthesized(tmp_path: Path) -> None:
    async with stack(tmp_path, cloud=False) as s, s.ollama() as client:
        routed = await client.show("openrouter/moonshotai/kimi-k2")
        tier = await client.show("smart:latest")  # its registered target is OpenRouter
        with pytest.raises(ollama.ResponseError) as unregistered:
            await client.show("kimi-k2.6:cloud")
    assert routed.capabilities == ["completion", "tools"]
    assert tier.capabilities == ["completion", "tools"]
    assert unregistered.value.status_code == 404
    assert [c.path for c in s.local.calls] == []
    assert s.compat.calls == []


@_marks
async def test_ps_lists_the_local_ollama_s_loaded_models(tmp_path: Path) -> None:
    async with stack(tmp_path) as s, s.ollama() as client:
        assert (await client.ps()).models == []
        await client.chat(model=LOCAL_MODEL, messages=MESSAGES, stream=False)
        loaded = await client.ps()
    [model] = loaded.models
    assert model.model == LOCAL_MODEL and model.size_vram == 3_300_000_000
    assert model.expires_at is not None


@_marks
async def test_ps_without_a_local_ollama_is_empty(tmp_path: Path) -> None:
    async with stack(tmp_path, local_url=f"http://127.0.0.1:{free_port()}") as s, \
            s.http() as http:
        r = await http.get("/api/ps", headers={"Authorization": f"Bearer {TOKEN}"})
    assert (r.status_code, r.json()) == (200, {"models": []})
