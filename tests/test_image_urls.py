"""Remote image URLs (issue 10): carried to upstreams that take URLs, refused clearly by
Ollama, which takes base64 alone ("image URLs not supported", providers.md §1.9)."""

from __future__ import annotations

from pathlib import Path

from test_front_doors import TOKEN, stack
from test_front_doors import pytestmark as _front_doors_marks

pytestmark = _front_doors_marks
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_an_image_url_reaches_an_openai_family_upstream_and_is_refused_by_ollama(
    tmp_path: Path,
) -> None:
    url = "https://example.org/cat.png"
    content = [{"type": "text", "text": "what is this"},
               {"type": "image_url", "image_url": {"url": url}}]
    async with stack(tmp_path) as s, s.http() as client:
        ok = await client.post("/v1/chat/completions", headers=AUTH, json={
            "model": "openrouter/moonshotai/kimi-k2",
            "messages": [{"role": "user", "content": content}]})
        refused = await client.post("/v1/chat/completions", headers=AUTH, json={
            "model": "ollama/qwen3:4b", "messages": [{"role": "user", "content": content}]})
    assert ok.status_code == 200, ok.text
    [sent] = s.compat.bodies("openrouter")
    parts = sent["messages"][0]["content"]
    assert {"type": "image_url", "image_url": {"url": url}} in parts
    assert refused.status_code == 400
    assert "URL" in refused.json()["error"]["message"]
