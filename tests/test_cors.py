"""Browsers (SPEC §5 ``[chatd.cors] allow_origins``): preflight and CORS headers.

A real chatd with client auth on, in front of a fake local Ollama, asked as a browser asks:
a preflight ``OPTIONS`` (no credentials), then the call with an ``Origin``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx
import pytest
from chatd_served import served
from fake_ollama import FakeOllama

from server.app import create_app
from server.config import ConfigError, load_config

pytestmark = pytest.mark.anyio

TOKEN = "browser-token-1"
APP = "http://localhost:5173"


@pytest.mark.parametrize(("origins", "expected"), [
    ('["*"]', ("*",)), ('["https://A.example:8443", "http://localhost:5173"]',
                        ("https://a.example:8443", "http://localhost:5173")),
    ("[]", ()),
])
def test_config(origins: str, expected: tuple[str, ...]) -> None:
    config = load_config(f"[chatd.cors]\nallow_origins = {origins}\n")
    assert config.chatd.cors_allow_origins == expected
    assert load_config("").chatd.cors_allow_origins == ()


@pytest.mark.parametrize(("table", "message"), [
    ('allow_origins = "*"', "chatd.cors.allow_origins: expected a list"),
    ('allow_origins = ["https://a.example/app"]', "chatd.cors.allow_origins[0]"),
    ('allow_origins = ["a.example"]', "chatd.cors.allow_origins[0]"),
    ('allow_origins = [3]', "chatd.cors.allow_origins[0]"),
    ('origins = ["*"]', "chatd.cors.origins: unknown key"),
])
def test_config_refuses(table: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(f"[chatd.cors]\n{table}\n")
    assert message in str(info.value)


@asynccontextmanager
async def browser_chatd(origins: str | None) -> AsyncIterator[httpx.AsyncClient]:
    local = FakeOllama(["qwen3:4b"], "hi")
    async with anyio.create_task_group() as tg:
        await tg.start(local.serve)
        cors = "" if origins is None else f"[chatd.cors]\nallow_origins = {origins}\n"
        config = load_config(f'[chatd]\nollama_url = "{local.url}"\n'
                             f'auth_token_env = "TOKEN"\n{cors}')
        app = create_app(config, environ={"TOKEN": TOKEN})
        async with served(app) as port, httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client
        tg.cancel_scope.cancel()


PREFLIGHT = {"Origin": APP, "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization, content-type"}


async def test_preflight_then_the_call() -> None:
    async with browser_chatd(f'["{APP}"]') as client:
        pre = await client.options("/v1/chat/completions", headers=PREFLIGHT)
        call = await client.post("/v1/chat/completions", headers={
            "Origin": APP, "Authorization": f"Bearer {TOKEN}"},
            json={"model": "qwen3:4b", "messages": [{"role": "user", "content": "x"}]})
        denied = await client.post("/v1/chat/completions", headers={"Origin": APP},
                                   json={})
    assert pre.status_code == 204  # no credentials on a preflight, and none needed
    assert pre.headers["access-control-allow-origin"] == APP
    assert "POST" in pre.headers["access-control-allow-methods"]
    assert pre.headers["access-control-allow-headers"] == "authorization, content-type"
    assert "Origin" in pre.headers["vary"]
    assert call.status_code == 200
    assert call.headers["access-control-allow-origin"] == APP
    assert "x-request-id" in call.headers["access-control-expose-headers"]
    # An error is readable by the page too (a browser hides a body without the header).
    assert denied.status_code == 401
    assert denied.headers["access-control-allow-origin"] == APP


async def test_an_origin_not_listed_gets_no_cors_header() -> None:
    async with browser_chatd(f'["{APP}"]') as client:
        pre = await client.options("/v1/chat", headers={**PREFLIGHT,
                                                        "Origin": "https://evil.example"})
        call = await client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert pre.status_code == 204
    assert "access-control-allow-origin" not in pre.headers
    assert "access-control-allow-origin" not in call.headers


async def test_any_origin_and_odd_request_headers() -> None:
    async with browser_chatd('["*"]') as client:
        pre = await client.options("/api/chat", headers={
            **PREFLIGHT, "Origin": "https://x.example",
            "Access-Control-Request-Headers": "x-a, bad header"})
    assert pre.headers["access-control-allow-origin"] == "https://x.example"
    assert "access-control-allow-headers" not in pre.headers  # not echoed as sent


async def test_without_cors_nothing_changes() -> None:
    async with browser_chatd(None) as client:
        pre = await client.options("/v1/chat/completions", headers=PREFLIGHT)
        call = await client.get("/healthz", headers={"Origin": APP})
    assert pre.status_code == 401  # an ordinary request: auth first, as before
    assert "access-control-allow-origin" not in call.headers
