"""The ``chatd`` command: providers, resolve, --version, config errors (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.cli import main

KEY = "sk-cli-SECRET-77aa01-never-printed"
KEY_VARS = ("OLLAMA_API_KEY", "OPENROUTER_API_KEY", "OPENCODE_API_KEY", "KIMI_API_KEY")


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config whose key files do not exist, and an environment without keys."""
    for var in (*KEY_VARS, "LAKEHOUSE_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "lakehouse.toml"
    path.write_text("".join(
        f'[chatd.providers.{name}]\nkey_file = "{tmp_path}/{name}.env"\n'
        for name in ("ollama_cloud", "openrouter", "opencode", "kimi")
    ))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == "chatd 0.1.0"


def test_providers_says_where_keys_come_from_never_the_key(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", KEY)
    (config.parent / "kimi.env").write_text(f"KIMI_API_KEY={KEY}\n")
    code, out, err = run(capsys, "providers", "--config", str(config))
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines()}
    assert list(rows) == ["ollama", "ollama_cloud", "openrouter", "opencode", "kimi"]
    assert rows["ollama"].endswith("registered: no key needed")
    assert "http://127.0.0.1:11434" in rows["ollama"]
    assert rows["openrouter"].endswith("registered: env OPENROUTER_API_KEY")
    assert "https://openrouter.ai/api/v1" in rows["openrouter"]
    assert rows["kimi"].endswith(f"registered: file {config.parent}/kimi.env")
    assert "not registered: OLLAMA_API_KEY is unset and" in rows["ollama_cloud"]
    assert KEY not in out and KEY not in err


@pytest.mark.parametrize(
    ("model", "expected"),
    [("qwen3:4b", ["ollama\tqwen3:4b"]),
     ("ollama/qwen3:4b", ["ollama\tqwen3:4b"]),
     ("unknown/x", ["ollama\tunknown/x"]),
     ("fast", ["ollama\tqwen3:4b"]),
     ("smart", ["openrouter\tmoonshotai/kimi-k2"])],
    ids=["bare", "prefix", "unknown-prefix", "tier", "tier-skips-unregistered"],
)
def test_resolve(config: Path, capsys: pytest.CaptureFixture[str],
                 monkeypatch: pytest.MonkeyPatch, model: str, expected: list[str]) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", KEY)
    config.write_text(config.read_text()
                      + '[models]\nfast = "ollama/qwen3:4b"\n'
                        'smart = ["kimi-k2.6:cloud", "openrouter/moonshotai/kimi-k2"]\n')
    code, out, err = run(capsys, "resolve", model, "--config", str(config))
    assert (code, out.splitlines(), err) == (0, expected, "")


@pytest.mark.parametrize(
    ("model", "message"),
    [("kimi-k2.6:cloud", "provider_not_registered (404)"),
     ("kimi/k2", "provider_not_registered (404)"),
     ("", "invalid_request (400)"),
     ("ollama/", "invalid_request (400)")],
    ids=["cloud", "kimi", "empty", "empty-remainder"],
)
def test_resolve_errors_exit_1(config: Path, capsys: pytest.CaptureFixture[str],
                               model: str, message: str) -> None:
    code, out, err = run(capsys, "resolve", model, "--config", str(config))
    assert (code, out) == (1, "")
    assert err.startswith(f"chatd: {message}: ")
    assert len(err.splitlines()) == 1


def test_cli_resolve_routes_a_configured_provider_prefix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: "`chatd resolve MODEL` shows where a name goes"; SPEC §1: a configured
    provider adds the row ``<prefix><m>`` -> NAME. The server routes ``groq/m`` to groq,
    so resolve must say so too, not ``ollama``."""
    for var in (*KEY_VARS, "LAKEHOUSE_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GROQ_API_KEY", "sk-groq-review")
    config = tmp_path / "lakehouse.toml"
    config.write_text(
        "".join(f'[chatd.providers.{name}]\nkey_file = "{tmp_path}/{name}.env"\n'
                for name in ("ollama_cloud", "openrouter", "opencode", "kimi"))
        + '[chatd.providers.groq]\napi = "openai_chat"\n'
          'base_url = "http://127.0.0.1:9/v1"\nkey_env = "GROQ_API_KEY"\n')
    code = main(["resolve", "groq/llama-3.3-70b", "--config", str(config)])
    out, _ = capsys.readouterr()
    assert code == 0
    assert out.split() == ["groq", "llama-3.3-70b"]


@pytest.mark.parametrize(
    ("model", "code", "out", "err"),
    [("g:llama", 0, "groq\tllama\n", ""),
     ("groq/llama", 0, "ollama\tgroq/llama\n", ""),
     ("mist/large", 1, "", "chatd: provider_not_registered (404): "),
     ("fast", 0, "groq\tllama\n", "")],
    ids=["own-prefix", "default-prefix-replaced", "configured-not-registered",
         "tier-to-configured"],
)
def test_resolve_reads_the_same_rows_as_the_server(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    model: str, code: int, out: str, err: str,
) -> None:
    """``resolve`` reads the rows the server routes by (SPEC §1): the built-in ones and
    each configured provider's, under its own prefix, registered or not."""
    monkeypatch.setenv("GROQ_API_KEY", KEY)
    monkeypatch.delenv("MIST_API_KEY", raising=False)
    config.write_text(config.read_text()
                      + '[chatd.providers.groq]\napi = "openai_chat"\nprefix = "g:"\n'
                        'base_url = "http://127.0.0.1:9/v1"\nkey_env = "GROQ_API_KEY"\n'
                        '[chatd.providers.mist]\napi = "openai_chat"\n'
                        'base_url = "http://127.0.0.1:9/v1"\nkey_env = "MIST_API_KEY"\n'
                        '[models]\nfast = "g:llama"\n')
    got = run(capsys, "resolve", model, "--config", str(config))
    assert (got[0], got[1]) == (code, out)
    assert got[2].startswith(err) and len(got[2].splitlines()) == (1 if err else 0)


@pytest.mark.parametrize(
    ("argv", "text", "message"),
    [(["providers"], "[chatd]\ntimeout_secs = 'x'\n",
      "chatd.timeout_secs: expected a number, got string"),
     (["resolve", "m"], "[chatd.providers.kimi]\ntimeout_secs = 'x'\n",
      "chatd.providers.kimi.timeout_secs: expected a number, got string"),
     (["serve"], "[nope]\n", "nope: unknown key"),
     (["serve", "--bind", "localhost"], "", "--bind: expected HOST:PORT"),
     (["serve", "--workers", "0"], "", "--workers: must be at least 1")],
    ids=["providers", "resolve", "serve", "bad-bind", "no-workers"],
)
def test_config_errors_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], text: str,
    message: str
) -> None:
    path = tmp_path / "lakehouse.toml"
    path.write_text(text)
    code, out, err = run(capsys, *argv, "--config", str(path))
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith("chatd: config error: ") and message in err


def test_config_from_environment_variable(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "elsewhere.toml"
    path.write_text('[models]\nfast = "ollama/llama3"\n')
    monkeypatch.setenv("LAKEHOUSE_CONFIG", str(path))
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "resolve", "fast")
    assert (code, out) == (0, "ollama\tllama3\n")


def test_missing_config_file_is_exit_2(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "providers", "--config", str(tmp_path / "nope.toml"))
    assert code == 2 and "cannot read config" in err


@pytest.mark.parametrize("worker_class", ["asyncio", "trio"])
def test_serve_exits_1_when_startup_fails(
    config: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    worker_class: str
) -> None:
    """The transport cannot be opened: the app answers lifespan.startup.failed, hypercorn
    stops, and ``chatd serve`` says why in one line and exits 1 instead of a traceback."""
    import server.app

    def broken(name: str) -> object:
        raise OSError("no sockets today")

    monkeypatch.setattr(server.app, "make_transport", broken)
    code = main(["serve", "--bind", "127.0.0.1:0", "--config", str(config),
                 "--worker-class", worker_class])
    assert code == 1
    [line] = [r.getMessage() for r in caplog.records if r.name == "chatd"
              and r.levelname == "ERROR"]
    assert line.startswith("chatd could not serve: ") and "no sockets today" in line
