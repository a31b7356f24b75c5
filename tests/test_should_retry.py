"""Every error response says whether to retry it (SPEC §4 ``x-should-retry``).

The OpenAI and Anthropic SDKs and Claude Code obey the header; without it an upstream's
401/402/403/404 (a 502) was retried three times by the openai SDK for nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_front_doors import TOKEN, stack
from test_front_doors import pytestmark as _front_doors_marks

pytestmark = _front_doors_marks

HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("model", "status", "should_retry"),
    [("", 400, "false"), ("kimi-k2.6:cloud", 404, "false"),
     ("busy:4b", 429, "true"), ("down:4b", 503, "true"), ("broken:4b", 502, "false"),
     ("refused:4b", 400, "false")],
)
@pytest.mark.parametrize("path", ["/v1/chat", "/v1/chat/completions", "/api/chat"])
async def test_every_error_says_whether_to_retry(
    tmp_path: Path, model: str, status: int, should_retry: str, path: str
) -> None:
    """SPEC §4 x-should-retry: an upstream 401/402/403/404/5xx (502) is not retried three
    times by the SDKs; 429, 503, 504 and an unreachable upstream are."""
    failures = {"busy:4b": (429, "slow down", {"Retry-After": "7"}),
                "down:4b": (503, "no capacity", {"Retry-After": "3"}),
                "broken:4b": (500, "internal upstream error", {}),
                "refused:4b": (400, "bad option", {})}
    async with stack(tmp_path, cloud=False, local_failures=failures) as s, \
            s.http() as client:
        resp = await client.post(path, headers={"Authorization": f"Bearer {TOKEN}"}, json={
            "model": model, "messages": HI, "stream": False})
    assert resp.status_code == status
    assert resp.headers["x-should-retry"] == should_retry
