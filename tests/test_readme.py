"""The README's embedding example runs: routed through a tier, streamed, with no server.

The example is read out of README.md as written and run in a fresh interpreter against a
fake Ollama on 127.0.0.1:0 (its one change: that URL in place of the default). The tier's
first target is a model the fake does not have, so the example's fallback runs too.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import anyio
import pytest
from fake_ollama import DEFAULT_REPLY, FakeOllama

README = Path(__file__).resolve().parent.parent / "README.md"
DEFAULT_URL = "http://127.0.0.1:11434"


def example() -> str:
    text = README.read_text()
    section = text[text.index("Using the core without the server"):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "the README lost its embedding example"
    return match.group(1)


def test_the_example_uses_only_the_public_api() -> None:
    code = example()
    assert "chatproto._" not in code and "from chatproto import" in code
    assert code.count(DEFAULT_URL) == 1


@pytest.mark.anyio
async def test_the_readme_embedding_example_runs() -> None:
    fake = FakeOllama(models=("qwen3:4b",), awkward=True)
    async with anyio.create_task_group() as tg:
        port = await tg.start(fake.serve)
        code = example().replace(DEFAULT_URL, f"http://127.0.0.1:{port}")
        with anyio.fail_after(30):
            done = await anyio.run_process([sys.executable, "-c", code], check=False)
        tg.cancel_scope.cancel()
    assert done.returncode == 0, done.stderr.decode()
    out = done.stdout.decode()
    assert out.startswith(DEFAULT_REPLY), out
    assert out.rstrip().endswith("tokens")
    assert "ollama/qwen3:4b: stop" in out
    # The first target was tried and refused (404), then the chain moved on.
    assert [r["model"] for r in fake.requests] == ["qwen3:30b", "qwen3:4b"]
