"""Credentials in a base URL (``http://user:pass@host``): honoured where used, refused where
ambiguous, and redacted wherever a URL is shown (SPEC §3's providers route, ``chatd
providers``, a request's repr, a transport's error message)."""

from __future__ import annotations

import base64
from pathlib import Path

import anyio
import httpx
import orjson
import pytest
from chatd_served import served
from fake_ollama import FakeOllama

from chatproto import ChatError, HTTPRequest, redact_userinfo
from server.app import create_app
from server.cli import main
from server.config import ConfigError, load_config
from transports import H11Transport

PASSWORD = "pr0xy-SECRET-pw"


@pytest.mark.parametrize(
    ("url", "shown"),
    [("http://u:p@h:1/v1", "http://***@h:1/v1"),
     ("https://user@host", "https://***@host"),
     ("http://a:b@c@host/x@y", "http://***@host/x@y"),  # the last @ of the authority
     ("http://host/path@x", "http://host/path@x"),  # an @ in the path is not userinfo
     ("http://host:3", "http://host:3"),
     ("not a url", "not a url")],
    ids=["user-password", "user", "at-in-password", "at-in-path", "plain", "not-a-url"],
)
def test_redact_userinfo(url: str, shown: str) -> None:
    assert redact_userinfo(url) == shown


def test_request_repr_redacts_userinfo() -> None:
    request = HTTPRequest(method="POST", url=f"http://u:{PASSWORD}@h/x", headers=(), body=b"")
    assert PASSWORD not in repr(request) and "***@h" in repr(request)


def test_userinfo_with_a_key_is_a_startup_error() -> None:
    """Both would be the Authorization header: refused at startup, naming the key."""
    with pytest.raises(ConfigError) as info:
        load_config(f'[chatd.providers.kimi]\nbase_url = "https://u:{PASSWORD}@proxy/v1"\n')
    message = str(info.value)
    assert message.startswith("chatd.providers.kimi.base_url: has credentials")
    assert PASSWORD not in message


def test_userinfo_without_a_key_is_accepted() -> None:
    config = load_config(
        f'[chatd.providers.kimi]\nbase_url = "https://u:{PASSWORD}@proxy/v1"\nkey_env = ""\n'
    )
    assert config.providers["kimi"].base_url == f"https://u:{PASSWORD}@proxy/v1"


def test_chatd_providers_redacts_userinfo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "lakehouse.toml"
    path.write_text(f'[chatd]\nollama_url = "http://ops:{PASSWORD}@127.0.0.1:11434"\n')
    assert main(["providers", "--config", str(path)]) == 0
    out, err = capsys.readouterr()
    [ollama] = [line for line in out.splitlines() if line.startswith("ollama ")]
    assert "http://***@127.0.0.1:11434" in ollama
    assert PASSWORD not in out + err


@pytest.mark.anyio
async def test_served_userinfo_is_basic_auth_upstream_and_redacted_in_providers(
    anyio_backend: str,
) -> None:
    """``ollama_url`` names a basic-auth proxy: every upstream call carries the
    credentials as Basic auth; ``GET /v1/chat/providers`` shows ``***@`` instead."""
    fake = FakeOllama(models=["qwen3:4b"])
    async with anyio.create_task_group() as tg:
        port = await tg.start(fake.serve)
        config = load_config(
            f'[chatd]\nollama_url = "http://ops:{PASSWORD}@127.0.0.1:{port}"\n'
        )
        app = create_app(config, environ={}, transport=lambda: H11Transport())
        async with served(app) as chatd_port, httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{chatd_port}", trust_env=False
        ) as client:
            listed = await client.get("/v1/chat/providers")
            answer = await client.post("/v1/chat", content=orjson.dumps({
                "model": "qwen3:4b", "messages": [{"role": "user", "content": "hi"}],
            }))
        tg.cancel_scope.cancel()
    assert listed.status_code == 200
    [ollama] = listed.json()["providers"]
    assert ollama["base_url"] == f"http://***@127.0.0.1:{port}"
    assert PASSWORD not in listed.text
    assert answer.status_code == 200, answer.text
    [call] = [c for c in fake.calls if c.path == "/api/chat"]
    expected = base64.b64encode(f"ops:{PASSWORD}".encode()).decode()
    assert call.headers["authorization"] == f"Basic {expected}"


@pytest.mark.anyio
async def test_transport_error_message_redacts_userinfo(anyio_backend: str) -> None:
    async with H11Transport() as transport:
        request = HTTPRequest(method="GET", url=f"ftp://u:{PASSWORD}@h/", headers=(), body=b"")
        with pytest.raises(ChatError) as caught:
            async with transport.open(request):
                pass
    assert caught.value.type == "invalid_request"
    assert PASSWORD not in caught.value.message
