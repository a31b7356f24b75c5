"""lakehouse.toml: chatd's settings, and the provider keys they point at.

Strategy: two steps, each testable without touching the process. :func:`load_config` is
pure: TOML text in, a frozen :class:`Config` out, every key checked against one schema so
an unknown key or a wrong type fails at startup with its dotted name
(``chatd.providers.kimi.timeout_secs: expected a number, got string``) instead of being
ignored. A missing table or key takes the SPEC §5 default; :data:`DEFAULT_CONFIG` is those
defaults, and a test holds it equal to the repository's lakehouse.toml.
:func:`register_providers` then resolves keys from an environment *mapping passed in* (never
``os.environ`` implicitly, never written to) and the ``.env`` files the config names, and
turns what resolved into core :class:`~chatproto.Provider` objects. Keys live only inside
:class:`~chatproto.Secret`; log lines and reports name where a key came from, never the key.
"""

from __future__ import annotations

import io
import logging
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from chatproto import Provider, Secret
from chatproto._routing import DEFAULT_PROVIDER, PROVIDER_APIS, parse_tiers

__all__ = [
    "DEFAULT_CONFIG",
    "ChatdConfig",
    "Config",
    "ConfigError",
    "ProviderConfig",
    "Registration",
    "find_config",
    "load_config",
    "parse_bind",
    "read_config",
    "register_providers",
    "registered",
    "resolve_auth_token",
]

logger = logging.getLogger("chatd.config")

#: A .env key file larger than this is not a key file; refuse it rather than read
#: an arbitrary file (a misconfigured ``key_file = "/dev/zero"``) into memory.
MAX_KEY_FILE_BYTES = 64 * 1024


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the offending key."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderConfig:
    """One ``[chatd.providers.<name>]`` table, merged over its built-in defaults."""

    base_url: str
    key_env: str = ""
    """Environment variable holding the key; looked up first."""
    key_file: str = ""
    """A ``.env`` file defining the same variable; used when the environment has none."""
    headers: tuple[tuple[str, str], ...] = ()
    """Extra request headers (attribution, a User-Agent)."""
    timeout_secs: float | None = None
    """Whole-call timeout for this provider; None means ``chatd.timeout_secs``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatdConfig:
    """The scalar ``[chatd]`` settings (SPEC §5)."""

    bind: str = "127.0.0.1:3220"
    ollama_url: str = "http://127.0.0.1:11434"
    timeout_secs: float = 120.0
    """The whole upstream call (non-streamed), or until headers and per idle read (streamed)."""
    connect_timeout_secs: float = 5.0
    max_body_bytes: int = 8_388_608
    auth_token_env: str = ""
    """When non-empty and the variable resolves, clients must send that bearer token."""


def _frozen(mapping: dict[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(mapping)


#: SPEC §5's provider tables, exactly.
_DEFAULT_PROVIDERS: dict[str, ProviderConfig] = {
    "ollama_cloud": ProviderConfig(
        base_url="https://ollama.com",
        key_env="OLLAMA_API_KEY",
        key_file="/etc/lakehouse/ollama_cloud.env",
    ),
    "openrouter": ProviderConfig(
        base_url="https://openrouter.ai/api/v1",
        key_env="OPENROUTER_API_KEY",
        key_file="/etc/lakehouse/openrouter.env",
    ),
    "opencode": ProviderConfig(
        base_url="https://opencode.ai/zen/v1",
        key_env="OPENCODE_API_KEY",
        key_file="/etc/lakehouse/opencode.env",
    ),
    "kimi": ProviderConfig(
        base_url="https://api.kimi.com/coding/v1",
        key_env="KIMI_API_KEY",
        key_file="/etc/lakehouse/kimi.env",
    ),
}

#: SPEC §5's ``[models]`` tiers.
_DEFAULT_TIERS: dict[str, tuple[str, ...]] = {
    "fast": ("ollama/qwen3:4b",),
    "smart": ("kimi-k2.6:cloud", "openrouter/moonshotai/kimi-k2"),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The whole of lakehouse.toml, validated."""

    chatd: ChatdConfig = field(default_factory=ChatdConfig)
    providers: Mapping[str, ProviderConfig] = field(
        default_factory=lambda: _frozen(dict(_DEFAULT_PROVIDERS))
    )
    """Settings of the providers that need a key (``ollama`` is configured by
    ``chatd.ollama_url``), plus ``ollama`` itself if its table sets headers or a timeout."""
    tiers: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: _frozen(dict(_DEFAULT_TIERS))
    )
    """``[models]``: tier name -> fallback chain of model names."""


DEFAULT_CONFIG = Config()
"""The built-in defaults, which equal SPEC §5's block (and the repository's lakehouse.toml)."""


# --- validation helpers ---------------------------------------------------------------

def _toml_type(value: object) -> str:
    """The TOML name of a parsed value's type, for error messages."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    return "date/time"


def _expected(key: str, what: str, value: object) -> ConfigError:
    return ConfigError(f"{key}: expected {what}, got {_toml_type(value)}")


def _string(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise _expected(key, "a string", value)
    return value


def _positive_number(key: str, value: object) -> float:
    # bool is an int in Python but never a number in TOML.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _expected(key, "a number", value)
    if not value > 0 or value != value or value == float("inf"):
        raise ConfigError(f"{key}: must be a positive, finite number of seconds, got {value}")
    return float(value)


def _positive_int(key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _expected(key, "an integer", value)
    if value <= 0:
        raise ConfigError(f"{key}: must be positive, got {value}")
    return value


def _table(key: str, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _expected(key, "a table", value)
    return value


def _check_keys(where: str, table: Mapping[str, object], allowed: tuple[str, ...]) -> None:
    for name in table:
        if name not in allowed:
            prefix = f"{where}." if where else ""
            raise ConfigError(
                f"{prefix}{name}: unknown key (expected one of: {', '.join(allowed)})"
            )


def _url(key: str, value: object) -> str:
    text = _string(key, value)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{key}: expected an http:// or https:// URL, got {text!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ConfigError(f"{key}: bad port in URL {text!r}") from None
    return text.rstrip("/")


_BIND = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^\s:\[\]]+)):(?P<port>\d{1,5})")


def parse_bind(text: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (``"[::1]:3220"`` for IPv6) -> ``(host, port)``; ValueError if not."""
    m = _BIND.fullmatch(text)
    port = int(m.group("port")) if m else -1
    if m is None or not 0 <= port <= 65535:
        raise ValueError(f"expected HOST:PORT (e.g. 127.0.0.1:3220), got {text!r}")
    return (m.group("v6") or m.group("host")), port


# RFC 9110 §5.1 field-name is a token; §5.5 field-value is visible characters, spaces and
# tabs. obs-text (bytes 0x80-0xFF) is left out: the transports send header text as ASCII.
# Checked here so a bad value is a startup error naming the key, not a 400 on every call.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(r"[\x21-\x7e]([\x20-\x7e\t]*[\x21-\x7e])?|")


def _headers(key: str, value: object) -> tuple[tuple[str, str], ...]:
    table = _table(key, value)
    out: list[tuple[str, str]] = []
    for name, item in table.items():
        where = f"{key}.{name}"
        if not _TOKEN.fullmatch(name):
            raise ConfigError(f"{where}: not a valid HTTP header name")
        if name.lower() in ("host", "content-length", "transfer-encoding", "authorization"):
            raise ConfigError(f"{where}: chatd sets this header itself")
        text = _string(where, item)
        if not _FIELD_VALUE.fullmatch(text):
            raise ConfigError(
                f"{where}: header values are visible ASCII characters, with spaces and "
                "tabs only between them"
            )
        out.append((name, text))
    return tuple(out)


_CHATD_KEYS = (
    "bind", "ollama_url", "timeout_secs", "connect_timeout_secs", "max_body_bytes",
    "auth_token_env", "providers",
)
_PROVIDER_KEYS = ("base_url", "key_env", "key_file", "headers", "timeout_secs")
#: The local Ollama has no key and its URL is ``chatd.ollama_url``.
_OLLAMA_KEYS = ("headers", "timeout_secs")


def _provider(name: str, raw: object, base: ProviderConfig | None) -> ProviderConfig:
    where = f"chatd.providers.{name}"
    table = _table(where, raw)
    _check_keys(where, table, _OLLAMA_KEYS if base is None else _PROVIDER_KEYS)
    values: dict[str, Any] = {}
    if "base_url" in table:
        values["base_url"] = _url(f"{where}.base_url", table["base_url"])
    for key in ("key_env", "key_file"):
        if key in table:
            values[key] = _string(f"{where}.{key}", table[key])
    if "headers" in table:
        values["headers"] = _headers(f"{where}.headers", table["headers"])
    if "timeout_secs" in table:
        values["timeout_secs"] = _positive_number(f"{where}.timeout_secs", table["timeout_secs"])
    if base is None:  # ollama: the URL is chatd.ollama_url, filled in at registration
        return ProviderConfig(base_url="", **values)
    merged = ProviderConfig(**{**_asdict(base), **values})
    if merged.key_env and "@" in urlsplit(merged.base_url).netloc:
        # Both would be the Authorization header (transports._base.userinfo_auth).
        raise ConfigError(
            f"{where}.base_url: has credentials (user:password@) and the provider sends a "
            f'key as well; remove them, or set key_env = "" to send only the URL\'s'
        )
    return merged


def _asdict(pc: ProviderConfig) -> dict[str, Any]:
    return {
        "base_url": pc.base_url, "key_env": pc.key_env, "key_file": pc.key_file,
        "headers": pc.headers, "timeout_secs": pc.timeout_secs,
    }


def load_config(text: str | None) -> Config:
    """Parse lakehouse.toml text (None: no file) into a :class:`Config`; pure.

    Raises:
        ConfigError: bad TOML, an unknown key or table, a wrong type or value; the message
            starts with the dotted key.
    """
    if text is None:
        return DEFAULT_CONFIG
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}") from None
    _check_keys("", doc, ("chatd", "models"))
    chatd = _table("chatd", doc.get("chatd", {}))
    _check_keys("chatd", chatd, _CHATD_KEYS)

    d = ChatdConfig()
    bind = _string("chatd.bind", chatd.get("bind", d.bind))
    try:
        parse_bind(bind)
    except ValueError as exc:
        raise ConfigError(f"chatd.bind: {exc}") from None
    settings = ChatdConfig(
        bind=bind,
        ollama_url=_url("chatd.ollama_url", chatd.get("ollama_url", d.ollama_url)),
        timeout_secs=_positive_number(
            "chatd.timeout_secs", chatd.get("timeout_secs", d.timeout_secs)
        ),
        connect_timeout_secs=_positive_number(
            "chatd.connect_timeout_secs",
            chatd.get("connect_timeout_secs", d.connect_timeout_secs),
        ),
        max_body_bytes=_positive_int(
            "chatd.max_body_bytes", chatd.get("max_body_bytes", d.max_body_bytes)
        ),
        auth_token_env=_string(
            "chatd.auth_token_env", chatd.get("auth_token_env", d.auth_token_env)
        ),
    )

    providers = dict(_DEFAULT_PROVIDERS)
    for name, raw in _table("chatd.providers", chatd.get("providers", {})).items():
        if name not in PROVIDER_APIS:
            raise ConfigError(
                f"chatd.providers.{name}: unknown provider (expected one of: "
                f"{', '.join(PROVIDER_APIS)})"
            )
        providers[name] = _provider(name, raw, _DEFAULT_PROVIDERS.get(name))

    if "models" in doc:
        models = _table("models", doc["models"])
        try:
            tiers = parse_tiers(models)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    else:
        tiers = dict(_DEFAULT_TIERS)
    return Config(chatd=settings, providers=_frozen(providers), tiers=_frozen(tiers))


def find_config(explicit: str | None, environ: Mapping[str, str]) -> Path | None:
    """SPEC §5's search: ``--config PATH``, else ``$LAKEHOUSE_CONFIG``, else
    ``./lakehouse.toml`` if present, else None (built-in defaults)."""
    if explicit:
        return Path(explicit)
    if environ.get("LAKEHOUSE_CONFIG"):
        return Path(environ["LAKEHOUSE_CONFIG"])
    local = Path("lakehouse.toml")
    return local if local.is_file() else None


def read_config(path: Path | None) -> Config:
    """Read and parse the file at ``path`` (None: defaults); errors name the file."""
    if path is None:
        return DEFAULT_CONFIG
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.__class__.__name__})") from None
    try:
        return load_config(text)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


# --- keys and registration ------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class Registration:
    """What became of one provider: registered (with where its key came from) or why not."""

    name: str
    provider: Provider | None
    """The core provider, or None when no key resolved."""
    source: str
    """``"env KIMI_API_KEY"``, ``"file /etc/lakehouse/kimi.env"``, ``"no key needed"``, or
    the reason it is not registered. Never the key."""

    @property
    def registered(self) -> bool:
        return self.provider is not None


def _read_key_file(path: str, variable: str) -> tuple[str | None, str]:
    """(key or None, why) from the ``.env`` file at ``path``; never raises for a bad file.

    python-dotenv parses the .env grammar (quotes, ``export``, comments); the values go
    into the returned tuple only, never into ``os.environ``. Interpolation is off so a
    key file cannot pull in other variables of this process.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(MAX_KEY_FILE_BYTES + 1)
    except FileNotFoundError:
        return None, f"{path} does not exist"
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"{path} cannot be read ({exc.__class__.__name__})"
    if len(text) > MAX_KEY_FILE_BYTES:
        return None, f"{path} is larger than {MAX_KEY_FILE_BYTES} bytes"
    from dotenv import dotenv_values  # only needed when a key file exists

    value = dotenv_values(stream=io.StringIO(text), interpolate=False).get(variable)
    if value is None or not value.strip():
        return None, f"{path} does not set {variable}"
    return value.strip(), f"file {path}"


def _resolve_key(pc: ProviderConfig, environ: Mapping[str, str]) -> tuple[str | None, str]:
    """SPEC §2: the variable ``key_env`` from the environment if set and non-empty, else the
    same variable in the .env file ``key_file``."""
    if not pc.key_env:
        return None, "no key_env is configured"
    value = environ.get(pc.key_env, "").strip()
    if value:
        key, source = value, f"env {pc.key_env}"
    elif not pc.key_file:
        return None, f"{pc.key_env} is unset and no key_file is configured"
    else:
        found, why = _read_key_file(pc.key_file, pc.key_env)
        if found is None:
            return None, f"{pc.key_env} is unset and {why}"
        key, source = found, why
    if not _FIELD_VALUE.fullmatch(key):
        # It goes into an Authorization header; every call would fail as a bad request.
        return None, f"the key from {source} has characters an HTTP header cannot carry"
    return key, source


def register_providers(
    config: Config, environ: Mapping[str, str] = os.environ
) -> tuple[Registration, ...]:
    """Resolve every provider's key; one log line for each provider left unregistered.

    ``ollama`` is always registered (no key; ``chatd.ollama_url``). The others in
    :data:`~chatproto._routing.PROVIDER_APIS` order.
    """
    out: list[Registration] = []
    for name, api in PROVIDER_APIS.items():
        if name == DEFAULT_PROVIDER:
            local = config.providers.get(name)
            provider = Provider(
                name=name,
                api=api,
                base_url=config.chatd.ollama_url,
                headers=local.headers if local else (),
                timeout_secs=local.timeout_secs if local else None,
            )
            out.append(Registration(name=name, provider=provider, source="no key needed"))
            continue
        pc = config.providers[name]
        key, source = _resolve_key(pc, environ)
        if key is None:
            logger.info("provider %s not registered: %s", name, source)
            out.append(Registration(name=name, provider=None, source=source))
            continue
        provider = Provider(
            name=name,
            api=api,
            base_url=pc.base_url,
            key=Secret(key),
            headers=pc.headers,
            timeout_secs=pc.timeout_secs,
        )
        out.append(Registration(name=name, provider=provider, source=source))
    return tuple(out)


def registered(registrations: tuple[Registration, ...]) -> dict[str, Provider]:
    """The registered providers by name, in registration order."""
    return {r.name: r.provider for r in registrations if r.provider is not None}


def resolve_auth_token(config: Config, environ: Mapping[str, str]) -> Secret | None:
    """The client bearer token when ``auth_token_env`` is set and resolves, else None."""
    name = config.chatd.auth_token_env
    if not name:
        return None
    value = environ.get(name, "").strip()
    if not value:
        # Fail closed: a variable lost from a service unit must not open the router (and
        # the keys behind it) to every client.
        raise ConfigError(
            f"chatd.auth_token_env names {name}, which is unset or empty; set it, or set "
            'auth_token_env = "" to serve without client auth'
        )
    return Secret(value)
