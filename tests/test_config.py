"""lakehouse.toml parsing (SPEC §5) and key resolution (SPEC §2)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from server.config import (
    DEFAULT_CONFIG,
    ChatdConfig,
    ConfigError,
    ProviderConfig,
    find_config,
    load_config,
    parse_bind,
    read_config,
    register_providers,
    registered,
    resolve_auth_token,
)

REPO = Path(__file__).resolve().parent.parent
KEY = "sk-test-5f1b9c0e-never-print-me"


def test_defaults_equal_repository_lakehouse_toml() -> None:
    assert load_config((REPO / "lakehouse.toml").read_text()) == DEFAULT_CONFIG


def test_defaults_are_spec_values() -> None:
    d = DEFAULT_CONFIG
    assert d.chatd == ChatdConfig(
        bind="127.0.0.1:3220", ollama_url="http://127.0.0.1:11434", timeout_secs=120.0,
        connect_timeout_secs=5.0, max_body_bytes=8388608, auth_token_env="",
    )
    assert dict(d.providers) == {
        "ollama_cloud": ProviderConfig(base_url="https://ollama.com", key_env="OLLAMA_API_KEY",
                                       key_file="/etc/lakehouse/ollama_cloud.env"),
        "openrouter": ProviderConfig(base_url="https://openrouter.ai/api/v1",
                                     key_env="OPENROUTER_API_KEY",
                                     key_file="/etc/lakehouse/openrouter.env"),
        "opencode": ProviderConfig(base_url="https://opencode.ai/zen/v1",
                                   key_env="OPENCODE_API_KEY",
                                   key_file="/etc/lakehouse/opencode.env"),
        "kimi": ProviderConfig(base_url="https://api.kimi.com/coding/v1",
                               key_env="KIMI_API_KEY", key_file="/etc/lakehouse/kimi.env"),
    }
    assert dict(d.tiers) == {
        "fast": ("ollama/qwen3:4b",),
        "smart": ("kimi-k2.6:cloud", "openrouter/moonshotai/kimi-k2"),
    }


def test_none_and_empty_text_give_defaults() -> None:
    assert load_config(None) == DEFAULT_CONFIG
    assert load_config("") == DEFAULT_CONFIG


def test_values_override_and_provider_tables_merge_over_defaults() -> None:
    config = load_config(
        """
        [chatd]
        bind = "0.0.0.0:8080"
        ollama_url = "http://gpu-box:11434/"
        timeout_secs = 30.5
        max_body_bytes = 1024
        [chatd.providers.kimi]
        timeout_secs = 300
        headers = { "User-Agent" = "claude-code/1.0" }
        [chatd.providers.ollama]
        timeout_secs = 600
        [models]
        cheap = ["ollama/qwen3:4b", "kimi/k2"]
        """
    )
    assert config.chatd.bind == "0.0.0.0:8080"
    assert config.chatd.ollama_url == "http://gpu-box:11434"
    assert config.chatd.timeout_secs == 30.5
    assert config.chatd.connect_timeout_secs == 5.0
    assert config.chatd.max_body_bytes == 1024
    kimi = config.providers["kimi"]
    assert kimi.timeout_secs == 300.0
    assert kimi.headers == (("User-Agent", "claude-code/1.0"),)
    assert kimi.key_env == "KIMI_API_KEY"  # untouched fields keep their defaults
    assert kimi.base_url == "https://api.kimi.com/coding/v1"
    assert dict(config.tiers) == {"cheap": ("ollama/qwen3:4b", "kimi/k2")}
    ollama = registered(register_providers(config, {}))["ollama"]
    assert ollama.timeout_secs == 600.0
    assert ollama.base_url == "http://gpu-box:11434"


BAD = [
    ("top-level-key", "colour = 1", "colour: unknown key"),
    ("chatd-not-table", "chatd = 1", "chatd: expected a table, got integer"),
    ("chatd-key", "[chatd]\nport = 1", "chatd.port: unknown key"),
    ("bind-type", "[chatd]\nbind = 3220", "chatd.bind: expected a string, got integer"),
    ("bind-form", '[chatd]\nbind = "localhost"', "chatd.bind: expected HOST:PORT"),
    ("bind-port", '[chatd]\nbind = "h:70000"', "chatd.bind: expected HOST:PORT"),
    ("url-type", "[chatd]\nollama_url = true", "chatd.ollama_url: expected a string, got boolean"),
    ("url-scheme", '[chatd]\nollama_url = "ftp://x"', "chatd.ollama_url: expected an http://"),
    ("timeout-type", '[chatd]\ntimeout_secs = "120"',
     "chatd.timeout_secs: expected a number, got string"),
    ("timeout-bool", "[chatd]\ntimeout_secs = true",
     "chatd.timeout_secs: expected a number, got boolean"),
    ("timeout-zero", "[chatd]\ntimeout_secs = 0", "chatd.timeout_secs: must be a positive"),
    ("timeout-inf", "[chatd]\ntimeout_secs = inf", "chatd.timeout_secs: must be a positive"),
    ("connect-type", "[chatd]\nconnect_timeout_secs = [5]",
     "chatd.connect_timeout_secs: expected a number, got array"),
    ("body-float", "[chatd]\nmax_body_bytes = 1.5",
     "chatd.max_body_bytes: expected an integer, got float"),
    ("body-negative", "[chatd]\nmax_body_bytes = -1", "chatd.max_body_bytes: must be positive"),
    ("auth-type", "[chatd]\nauth_token_env = 1",
     "chatd.auth_token_env: expected a string, got integer"),
    ("providers-type", "[chatd]\nproviders = []",
     "chatd.providers: expected a table, got array"),
    ("provider-name", "[chatd.providers.openai]\nbase_url = 'https://x'",
     "chatd.providers.openai: unknown provider"),
    ("provider-not-table", "[chatd.providers]\nkimi = 'x'",
     "chatd.providers.kimi: expected a table, got string"),
    ("provider-key", "[chatd.providers.kimi]\napi_key = 'x'",
     "chatd.providers.kimi.api_key: unknown key"),
    ("provider-timeout", "[chatd.providers.kimi]\ntimeout_secs = 'x'",
     "chatd.providers.kimi.timeout_secs: expected a number, got string"),
    ("provider-base-url", "[chatd.providers.opencode]\nbase_url = 'opencode.ai'",
     "chatd.providers.opencode.base_url: expected an http://"),
    ("provider-key-env", "[chatd.providers.kimi]\nkey_env = 1",
     "chatd.providers.kimi.key_env: expected a string, got integer"),
    ("provider-key-file", "[chatd.providers.kimi]\nkey_file = false",
     "chatd.providers.kimi.key_file: expected a string, got boolean"),
    ("headers-type", "[chatd.providers.kimi]\nheaders = 'x'",
     "chatd.providers.kimi.headers: expected a table, got string"),
    ("header-value", "[chatd.providers.kimi.headers]\nX-A = 1",
     "chatd.providers.kimi.headers.X-A: expected a string, got integer"),
    ("header-name", '[chatd.providers.kimi.headers]\n"bad name" = "v"',
     "chatd.providers.kimi.headers.bad name: not a valid HTTP header name"),
    ("header-injection", '[chatd.providers.kimi.headers]\nX-A = "v\\r\\nX-B: w"',
     "chatd.providers.kimi.headers.X-A: header values are visible ASCII characters, "
     "with spaces and tabs only between them"),
    ("header-non-ascii", '[chatd.providers.kimi.headers]\nUser-Agent = "agent/\u00e9"',
     "chatd.providers.kimi.headers.User-Agent: header values are visible ASCII characters, "
     "with spaces and tabs only between them"),
    ("header-trailing-space", '[chatd.providers.kimi.headers]\nUser-Agent = "agent "',
     "chatd.providers.kimi.headers.User-Agent: header values are visible ASCII characters, "
     "with spaces and tabs only between them"),
    ("header-nul", '[chatd.providers.kimi.headers]\nX-A = "a\\u0000b"',
     "chatd.providers.kimi.headers.X-A: header values are visible ASCII characters, "
     "with spaces and tabs only between them"),
    ("header-authorization", '[chatd.providers.kimi.headers]\nAuthorization = "Bearer x"',
     "chatd.providers.kimi.headers.Authorization: chatd sets this header itself"),
    ("ollama-base-url", "[chatd.providers.ollama]\nbase_url = 'http://x'",
     "chatd.providers.ollama.base_url: unknown key"),
    ("models-type", "models = 1", "models: expected a table, got integer"),
    ("tier-type", "[models]\nfast = 1", "models.fast: must be a model name or a list"),
    ("tier-item", "[models]\nsmart = ['kimi/x', 2]", "models.smart[1]: must be a non-empty"),
    ("tier-grammar", "[models]\nsmart = ['openrouter/kimi']", "models.smart[0]: "),
    ("not-toml", "[chatd\n", "not valid TOML"),
]


@pytest.mark.parametrize(("text", "message"), [(t, m) for _, t, m in BAD],
                         ids=[i for i, _, _ in BAD])
def test_bad_config_names_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(text)
    assert str(info.value).startswith(message), str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:3220", ("127.0.0.1", 3220)), ("[::1]:0", ("::1", 0)),
     ("0.0.0.0:65535", ("0.0.0.0", 65535)), ("localhost:80", ("localhost", 80))],
    ids=["v4", "v6", "max-port", "name"],
)
def test_parse_bind(text: str, expected: tuple[str, int]) -> None:
    assert parse_bind(text) == expected


def test_read_config_prefixes_the_path(tmp_path: Path) -> None:
    path = tmp_path / "lakehouse.toml"
    path.write_text("[chatd]\nbogus = 1\n")
    with pytest.raises(ConfigError, match=r"lakehouse.toml: chatd.bogus: unknown key"):
        read_config(path)
    with pytest.raises(ConfigError, match="cannot read config"):
        read_config(tmp_path / "missing.toml")
    assert read_config(None) == DEFAULT_CONFIG


def test_find_config_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_config(None, {}) is None
    (tmp_path / "lakehouse.toml").write_text("")
    assert find_config(None, {}) == Path("lakehouse.toml")
    assert find_config(None, {"LAKEHOUSE_CONFIG": "/x.toml"}) == Path("/x.toml")
    assert find_config("/y.toml", {"LAKEHOUSE_CONFIG": "/x.toml"}) == Path("/y.toml")


# --- keys ---------------------------------------------------------------------------

def _config_with_key_file(path: Path) -> str:
    return f'[chatd.providers.kimi]\nkey_file = "{path}"\n'


def _kimi(text: str, environ: dict[str, str]) -> tuple[bool, str]:
    regs = {r.name: r for r in register_providers(load_config(text), environ)}
    kimi = regs["kimi"]
    return kimi.registered, kimi.source


def test_key_from_env_beats_file(tmp_path: Path) -> None:
    env_file = tmp_path / "kimi.env"
    env_file.write_text("KIMI_API_KEY=from-file\n")
    config = load_config(_config_with_key_file(env_file))
    providers = registered(register_providers(config, {"KIMI_API_KEY": KEY}))
    key = providers["kimi"].key
    assert key is not None and key.reveal() == KEY
    assert _kimi(_config_with_key_file(env_file), {"KIMI_API_KEY": KEY}) == (
        True, "env KIMI_API_KEY"
    )


@pytest.mark.parametrize("env_value", ["", "   "], ids=["empty", "blank"])
def test_empty_env_falls_back_to_file(tmp_path: Path, env_value: str) -> None:
    env_file = tmp_path / "kimi.env"
    env_file.write_text(f'# comment\nexport KIMI_API_KEY="{KEY}"\nOTHER=1\n')
    config = load_config(_config_with_key_file(env_file))
    providers = registered(register_providers(config, {"KIMI_API_KEY": env_value}))
    key = providers["kimi"].key
    assert key is not None and key.reveal() == KEY
    assert _kimi(_config_with_key_file(env_file), {}) == (True, f"file {env_file}")


def test_key_file_is_never_loaded_into_the_environment(tmp_path: Path) -> None:
    env_file = tmp_path / "kimi.env"
    env_file.write_text(f"KIMI_API_KEY={KEY}\nCHATD_TEST_SIDE_EFFECT=1\n")
    before = dict(os.environ)
    register_providers(load_config(_config_with_key_file(env_file)), {})
    assert dict(os.environ) == before


def test_interpolation_is_off(tmp_path: Path) -> None:
    env_file = tmp_path / "kimi.env"
    env_file.write_text("KIMI_API_KEY=${HOME}-suffix\n")
    config = load_config(_config_with_key_file(env_file))
    key = registered(register_providers(config, {}))["kimi"].key
    assert key is not None and key.reveal() == "${HOME}-suffix"


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ("missing", "KIMI_API_KEY is unset and {path} does not exist"),
        ("directory", "KIMI_API_KEY is unset and {path} cannot be read (IsADirectoryError)"),
        ("no-variable", "KIMI_API_KEY is unset and {path} does not set KIMI_API_KEY"),
        ("empty-value", "KIMI_API_KEY is unset and {path} does not set KIMI_API_KEY"),
        ("huge", "KIMI_API_KEY is unset and {path} is larger than 65536 bytes"),
        ("binary", "KIMI_API_KEY is unset and {path} cannot be read (UnicodeDecodeError)"),
    ],
)
def test_unusable_key_file_means_not_registered_with_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, setup: str, reason: str
) -> None:
    path = tmp_path / "kimi.env"
    if setup == "directory":
        path.mkdir()
    elif setup == "no-variable":
        path.write_text(f"OPENROUTER_API_KEY={KEY}\n")
    elif setup == "empty-value":
        path.write_text("KIMI_API_KEY=\n")
    elif setup == "huge":
        path.write_text("# " + "x" * 70_000 + f"\nKIMI_API_KEY={KEY}\n")
    elif setup == "binary":
        path.write_bytes(b"KIMI_API_KEY=\xff\xfe\n")
    text = _config_with_key_file(path)
    with caplog.at_level(logging.INFO, logger="chatd.config"):
        ok, source = _kimi(text, {})
    assert not ok
    assert source == reason.format(path=path)
    kimi_lines = [r.getMessage() for r in caplog.records if "kimi" in r.getMessage()]
    assert kimi_lines == [f"provider kimi not registered: {source}"]
    assert KEY not in caplog.text


def test_unreadable_key_file(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # root reads any file; a directory stands in for "unreadable" above.
        path = tmp_path / "dir.env"
        path.mkdir()
    else:  # pragma: no cover - depends on the user running the tests
        path = tmp_path / "kimi.env"
        path.write_text(f"KIMI_API_KEY={KEY}\n")
        path.chmod(0)
    ok, source = _kimi(_config_with_key_file(path), {})
    assert not ok and "cannot be read" in source


def test_no_key_env_or_file_configured() -> None:
    # SPEC §2: a provider "needs none (key_env = \"\")": registered, sending no key.
    assert _kimi("[chatd.providers.kimi]\nkey_env = ''", {"KIMI_API_KEY": KEY}) == (
        True, "no key needed"
    )
    assert _kimi("[chatd.providers.kimi]\nkey_file = ''", {}) == (
        False, "KIMI_API_KEY is unset and no key_file is configured"
    )


@pytest.mark.parametrize("key", ["sk-\u00e9t\u00e9", "sk-a\x01b"], ids=["non-ascii", "control"])
def test_key_an_http_header_cannot_carry_is_not_registered(key: str) -> None:
    """Every call would otherwise fail as a bad request; the reason never shows the key."""
    registered_, why = _kimi("", {"KIMI_API_KEY": key})
    assert not registered_
    assert why == "the key from env KIMI_API_KEY has characters an HTTP header cannot carry"
    assert key not in why


def test_registration_defaults_dev_mode() -> None:
    config = load_config(
        "\n".join(
            f'[chatd.providers.{name}]\nkey_file = "/nonexistent/{name}.env"'
            for name in ("ollama_cloud", "openrouter", "opencode", "kimi")
        )
    )
    regs = register_providers(config, {})
    assert [r.name for r in regs] == ["ollama", "ollama_cloud", "openrouter", "opencode", "kimi"]
    providers = registered(regs)
    assert list(providers) == ["ollama"]
    ollama = providers["ollama"]
    assert (ollama.api, ollama.base_url, ollama.key) == (
        "ollama_chat", "http://127.0.0.1:11434", None
    )


def test_registered_providers_carry_api_headers_and_timeout() -> None:
    config = load_config(
        '[chatd.providers.openrouter]\ntimeout_secs = 9\nheaders = { "X-Title" = "chatd" }'
    )
    env = {"OPENROUTER_API_KEY": KEY, "OLLAMA_API_KEY": KEY + "2"}
    providers = registered(register_providers(config, env))
    assert list(providers) == ["ollama", "ollama_cloud", "openrouter"]
    assert providers["ollama_cloud"].api == "ollama_generate"
    assert providers["openrouter"].api == "openai_chat"
    assert providers["openrouter"].headers == (("X-Title", "chatd"),)
    assert providers["openrouter"].timeout_secs == 9.0


def test_key_never_in_repr_or_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    env_file = tmp_path / "kimi.env"
    env_file.write_text(f"KIMI_API_KEY={KEY}\n")
    config = load_config(_config_with_key_file(env_file))
    with caplog.at_level(logging.DEBUG):
        regs = register_providers(config, {"OPENROUTER_API_KEY": KEY})
    assert KEY not in repr(regs)
    assert KEY not in str(regs)
    assert KEY not in repr(registered(regs))
    assert KEY not in caplog.text
    assert all(KEY not in r.source for r in regs)


def test_auth_token() -> None:
    assert resolve_auth_token(DEFAULT_CONFIG, {"X": "y"}) is None
    config = load_config('[chatd]\nauth_token_env = "CHATD_TOKEN"')
    token = resolve_auth_token(config, {"CHATD_TOKEN": KEY})
    assert token is not None and token.reveal() == KEY and KEY not in repr(token)
    # Fail closed: a named but missing token variable is a startup error, not open doors.
    for environ in ({}, {"CHATD_TOKEN": "  "}):
        with pytest.raises(ConfigError, match="CHATD_TOKEN, which is unset or empty"):
            resolve_auth_token(config, environ)


def test_operating_settings_and_provider_concurrency() -> None:
    config = load_config(
        """
        [chatd]
        log_format = "json"
        log_requests = false
        metrics = false
        [chatd.providers.ollama]
        max_concurrency = 2
        queue_timeout_secs = 0
        [chatd.providers.kimi]
        max_concurrency = 8
        [chatd.providers.vllm]
        api = "openai_chat"
        base_url = "http://127.0.0.1:8000/v1"
        key_env = ""
        max_concurrency = 4
        queue_timeout_secs = 2.5
        """
    )
    assert (config.chatd.log_format, config.chatd.log_requests, config.chatd.metrics) == (
        "json", False, False)
    providers = registered(register_providers(config, {"KIMI_API_KEY": "k" * 8}))
    assert (providers["ollama"].max_concurrency, providers["ollama"].queue_timeout_secs) == (
        2, 0.0)
    assert (providers["kimi"].max_concurrency, providers["kimi"].queue_timeout_secs) == (
        8, 10.0)
    assert (providers["vllm"].max_concurrency, providers["vllm"].queue_timeout_secs) == (
        4, 2.5)
    d = DEFAULT_CONFIG
    assert (d.chatd.log_format, d.chatd.log_requests, d.chatd.metrics) == ("text", True, True)
    assert all(p.max_concurrency is None for p in d.profiles)


OPS_BAD = [
    ('[chatd]\nlog_format = "xml"', "chatd.log_format: expected one of text, json, got 'xml'"),
    ("[chatd]\nlog_format = 1", "chatd.log_format: expected a string, got integer"),
    ('[chatd]\nlog_requests = "yes"', "chatd.log_requests: expected true or false, got string"),
    ("[chatd]\nmetrics = 1", "chatd.metrics: expected true or false, got integer"),
    ("[chatd.providers.kimi]\nmax_concurrency = 0",
     "chatd.providers.kimi.max_concurrency: must be positive"),
    ("[chatd.providers.kimi]\nmax_concurrency = 1.5",
     "chatd.providers.kimi.max_concurrency: expected an integer, got float"),
    ("[chatd.providers.ollama]\nmax_concurrency = true",
     "chatd.providers.ollama.max_concurrency: expected an integer, got boolean"),
    ("[chatd.providers.kimi]\nqueue_timeout_secs = -1",
     "chatd.providers.kimi.queue_timeout_secs: must be a finite number of seconds"),
    ("[chatd.providers.kimi]\nqueue_timeout_secs = nan",
     "chatd.providers.kimi.queue_timeout_secs: must be a finite number of seconds"),
    ('[chatd.providers.ollama]\nqueue_timeout_secs = "1"',
     "chatd.providers.ollama.queue_timeout_secs: expected a number, got string"),
]


@pytest.mark.parametrize(("text", "message"), OPS_BAD, ids=[m.split(":")[0] + str(i)
                                                           for i, (_, m) in enumerate(OPS_BAD)])
def test_bad_operating_settings_name_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(text)
    assert str(info.value).startswith(message), str(info.value)
