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
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from chatproto import (
    DEFAULT_PROVIDER,
    MAX_RETRY_AFTER,
    PROFILES,
    Provider,
    Secret,
    check_prefixes,
    parse_tiers,
)

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
    forward_user_agent: bool | None = None
    """Send the client's User-Agent upstream; None means the provider row's default
    (true for ``kimi``, SPEC §2)."""
    api: str = ""
    """The wire format (SPEC §2's list): required for a provider defined in
    configuration; for a built-in one, empty means its row's (SPEC §2: Kimi may set
    ``api = "anthropic_messages"`` for its Anthropic endpoint)."""
    prefix: str = ""
    """For a provider defined in configuration: its model-name prefix (default
    ``NAME/``)."""
    max_concurrency: int | None = None
    """Calls in flight to this provider at most; None for no bound (SPEC §5)."""
    queue_timeout_secs: float = 10.0
    """How long a call past ``max_concurrency`` waits for a slot before a 503."""
    key_header: str = ""
    """Where the key goes (:attr:`chatproto.Provider.key_header`): ``"authorization"``
    (``Bearer <key>``), or ``"x-api-key"`` for an ``anthropic_messages`` provider
    (Anthropic's own API takes an API key only there); empty means the row's default."""


#: SPEC §2: the wire formats a provider defined in configuration may speak.
CONFIGURABLE_APIS = (
    "ollama_chat", "ollama_generate", "openai_chat", "anthropic_messages", "openai_responses",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatdConfig:
    """The scalar ``[chatd]`` settings (SPEC §5)."""

    bind: str = "127.0.0.1:3220"
    ollama_url: str = "http://127.0.0.1:11434"
    timeout_secs: float = 120.0
    """The whole upstream call (non-streamed), or a stream's wait for its first event."""
    connect_timeout_secs: float = 5.0
    max_body_bytes: int = 8_388_608
    auth_token_env: str = ""
    """When non-empty and the variable resolves, clients must send that bearer token."""
    chain_timeout_secs: float | None = None
    """A fallback chain's whole budget (SPEC §5); None means ``timeout_secs``."""
    default_retry_after_secs: float = 2.0
    """The Retry-After sent with an upstream 429/503 that names no wait (SPEC §4)."""
    # SPEC §5's limits for hostile or careless clients; built in, not in lakehouse.toml.
    client_body_timeout_secs: float = 30.0
    """A request body not fully received in this time is answered 408."""
    max_connections: int = 2048
    """Open client connections per process; past it a connection is answered 503."""
    max_in_flight: int = 1024
    """Requests being handled per process; past it a request is answered 503."""
    stream_idle_secs: float = 120.0
    """A stream with no upstream event, or a client reading nothing, this long is ended."""
    stream_max_secs: float = 1800.0
    """The longest a stream may run, first event to last."""
    shutdown_grace_secs: float = 30.0
    """On SIGTERM, how long in-flight calls may still finish before they are ended."""
    # What an operator sees of the process (SPEC §5 log_format; README "Operating chatd").
    log_format: str = "text"
    """``"text"`` or ``"json"``: how every log line is written (one JSON object a line)."""
    log_requests: bool = True
    """One log line per client request (id, door, model, provider, status, times, tokens;
    never content, never a key)."""
    metrics: bool = True
    """Count requests per door and serve ``GET /metrics``; false: no route, no per-request
    counting."""
    model_list_ttl_secs: float = 300.0
    """How long an upstream's model list is used before it is fetched again."""
    cors_allow_origins: tuple[str, ...] = ()
    """``[chatd.cors] allow_origins``: browser origins allowed to call chatd (``"*"`` for
    any); empty means no CORS headers at all (SPEC §5)."""


def _frozen(mapping: dict[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(mapping)


#: SPEC §5's provider tables, exactly: derived from the built-in rows (the local Ollama
#: is configured by ``chatd.ollama_url`` and has no table by default).
_DEFAULT_PROVIDERS: dict[str, ProviderConfig] = {
    row.name: ProviderConfig(base_url=row.base_url, key_env=row.key_env, key_file=row.key_file)
    for row in PROFILES
    if row.name != DEFAULT_PROVIDER
}
_ROWS: dict[str, Provider] = {row.name: row for row in PROFILES}

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

    @property
    def profiles(self) -> tuple[Provider, ...]:
        """Every provider chatd knows, registered or not, in routing order (the built-in
        rows with this configuration's settings, then those defined in configuration),
        without keys. Routing reads them so that an explicit prefix whose provider has no
        key is a 404, not a fall-through."""
        rows: list[Provider] = []
        for row in PROFILES:
            if row.name == DEFAULT_PROVIDER:
                pc = self.providers.get(row.name)
                rows.append(_row(row, pc, base_url=self.chatd.ollama_url))
            else:
                rows.append(_row(row, self.providers[row.name]))
        for name, pc in self.providers.items():
            if name not in _ROWS:
                rows.append(_row(Provider(name=name, api=pc.api, base_url=pc.base_url), pc))
        return tuple(rows)


def _row(base: Provider, pc: ProviderConfig | None, base_url: str | None = None) -> Provider:
    """``base`` with the settings of its table (a built-in row or a configured one)."""
    if pc is None:
        return replace(base, base_url=base_url or base.base_url)
    return replace(
        base,
        api=pc.api or base.api,
        base_url=base_url or pc.base_url,
        key_env=pc.key_env,
        key_file=pc.key_file,
        headers=pc.headers,
        timeout_secs=pc.timeout_secs,
        forward_user_agent=(
            base.forward_user_agent if pc.forward_user_agent is None else pc.forward_user_agent
        ),
        prefix=pc.prefix or base.prefix or f"{base.name}/",
        max_concurrency=pc.max_concurrency,
        queue_timeout_secs=pc.queue_timeout_secs,
        key_header=pc.key_header or base.key_header,
    )


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


def _seconds(key: str, value: object) -> float:
    """A wait that may be zero (no wait at all)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _expected(key, "a number", value)
    if not value >= 0 or value == float("inf"):
        raise ConfigError(f"{key}: must be a finite number of seconds, 0 or more, got {value}")
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


_LIMIT_KEYS = (
    "client_body_timeout_secs", "max_connections", "max_in_flight", "stream_idle_secs",
    "stream_max_secs", "shutdown_grace_secs",
)
_OPS_KEYS = ("log_format", "log_requests", "metrics")
#: SPEC §5: ``log_format`` is one of these.
LOG_FORMATS = ("text", "json")
_CHATD_KEYS = (
    "bind", "ollama_url", "timeout_secs", "connect_timeout_secs", "max_body_bytes",
    "auth_token_env", "chain_timeout_secs", "default_retry_after_secs", "providers",
    "model_list_ttl_secs", "cors", *_LIMIT_KEYS, *_OPS_KEYS,
)
_PROVIDER_KEYS = (
    "base_url", "key_env", "key_file", "headers", "timeout_secs", "forward_user_agent", "api",
    "max_concurrency", "queue_timeout_secs", "key_header",
)
#: ``key_header``: the headers a key can be sent in, and the wire format each needs (None:
#: any). Only the ``anthropic_messages`` codec sends a key elsewhere than Authorization.
KEY_HEADERS: dict[str, str | None] = {
    "authorization": None,
    "x-api-key": "anthropic_messages",
}
#: A provider defined in configuration also may set its prefix.
_CONFIGURED_KEYS = (*_PROVIDER_KEYS, "prefix")
#: The local Ollama has no key and its URL is ``chatd.ollama_url``.
_OLLAMA_KEYS = ("headers", "timeout_secs", "max_concurrency", "queue_timeout_secs")
#: A provider name: it becomes a metric label and the default prefix ``NAME/``.
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")


def _provider(name: str, raw: object, base: ProviderConfig | None) -> ProviderConfig:
    """One provider table: ``base`` is the built-in default (None for ``ollama``, and for a
    provider defined in configuration, which must then set ``api`` and ``base_url``)."""
    where = f"chatd.providers.{name}"
    table = _table(where, raw)
    configured = name not in _ROWS
    allowed: tuple[str, ...]
    if configured:
        if "api" not in table:
            raise ConfigError(
                f"{where}: unknown provider (expected one of: {', '.join(_ROWS)}; or set "
                f"api to define a provider, one of: {', '.join(CONFIGURABLE_APIS)})"
            )
        if not _NAME.fullmatch(name):
            raise ConfigError(
                f"{where}: a provider name is lower-case letters, digits, '_' and '-', "
                "starting with a letter"
            )
        allowed = _CONFIGURED_KEYS
    else:
        allowed = _OLLAMA_KEYS if base is None else _PROVIDER_KEYS
    _check_keys(where, table, allowed)
    values: dict[str, Any] = {}
    if "base_url" in table:
        values["base_url"] = _url(f"{where}.base_url", table["base_url"])
    elif configured:
        raise ConfigError(f"{where}.base_url: required for a provider defined here")
    for key in ("key_env", "key_file"):
        if key in table:
            values[key] = _string(f"{where}.{key}", table[key])
    if "headers" in table:
        values["headers"] = _headers(f"{where}.headers", table["headers"])
    if "timeout_secs" in table:
        values["timeout_secs"] = _positive_number(f"{where}.timeout_secs", table["timeout_secs"])
    if "max_concurrency" in table:
        values["max_concurrency"] = _positive_int(
            f"{where}.max_concurrency", table["max_concurrency"]
        )
    if "queue_timeout_secs" in table:
        values["queue_timeout_secs"] = _seconds(
            f"{where}.queue_timeout_secs", table["queue_timeout_secs"]
        )
    if "forward_user_agent" in table:
        flag = table["forward_user_agent"]
        if not isinstance(flag, bool):
            raise _expected(f"{where}.forward_user_agent", "true or false", flag)
        values["forward_user_agent"] = flag
    if "api" in table:
        values["api"] = _api(f"{where}.api", table["api"])
    if "key_header" in table:
        row = _ROWS.get(name)
        api = values.get("api") or (row.api if row is not None else "")
        values["key_header"] = _key_header(f"{where}.key_header", table["key_header"], api)
    if configured:
        prefix = _string(f"{where}.prefix", table.get("prefix", f"{name}/"))
        if not prefix.strip() or prefix != prefix.strip() or prefix[-1] not in "/:":
            raise ConfigError(
                f"{where}.prefix: must be non-empty, without spaces, and end in '/' or ':' "
                f"(so it cannot swallow other names, as 'kimi-' would 'kimi-k2.6:cloud')"
            )
        values["prefix"] = prefix
        merged = ProviderConfig(**values)
    elif base is None:  # ollama: the URL is chatd.ollama_url, filled in at registration
        return ProviderConfig(base_url="", **values)
    else:
        merged = ProviderConfig(**{**_asdict(base), **values})
    if merged.key_env and "@" in urlsplit(merged.base_url).netloc:
        # Both would be the Authorization header (transports._base.userinfo_auth).
        raise ConfigError(
            f"{where}.base_url: has credentials (user:password@) and the provider sends a "
            f'key as well; remove them, or set key_env = "" to send only the URL\'s'
        )
    if not merged.key_env and merged.key_file:
        if "key_file" not in table:
            # ``key_env = ""`` on a built-in table: keyless, its default key file unused.
            return replace(merged, key_file="")
        raise ConfigError(
            f"{where}.key_file: is read for the variable key_env names, and key_env is "
            "empty; set key_env too, or remove key_file"
        )
    return merged


def _key_header(key: str, value: object, api: str) -> str:
    """A header name (RFC 9110 token, compared lower-case) that the provider's wire format
    can send its key in (:data:`KEY_HEADERS`)."""
    name = _string(key, value)
    if not _TOKEN.fullmatch(name):
        raise ConfigError(f"{key}: not a valid HTTP header name: {name!r}")
    name = name.lower()
    if name not in KEY_HEADERS:
        raise ConfigError(
            f"{key}: chatd sends a key as one of: {', '.join(KEY_HEADERS)}; got {name!r}"
        )
    needs = KEY_HEADERS[name]
    if needs is not None and api != needs:
        raise ConfigError(
            f'{key}: {name!r} is read by the {needs} wire format only; this provider\'s '
            f"api is {api!r}"
        )
    return name


def _retry_after(value: object) -> float:
    """A wait of at most a day, as chatd caps an upstream's own (MAX_RETRY_AFTER)."""
    key = "chatd.default_retry_after_secs"
    seconds = _positive_number(key, value)
    if seconds > MAX_RETRY_AFTER:
        raise ConfigError(f"{key}: at most {MAX_RETRY_AFTER:g} seconds, got {value}")
    return seconds


def _api(key: str, value: object) -> str:
    """A wire format chatd speaks (SPEC §2's list, as far as this build has codecs)."""
    from chatproto import codec_for

    api = _string(key, value)
    try:
        codec_for(api)
    except KeyError:
        known = [a for a in CONFIGURABLE_APIS if _speaks(a)]
        raise ConfigError(
            f"{key}: unknown api {api!r} (expected one of: {', '.join(known)})"
        ) from None
    return api


def _speaks(api: str) -> bool:
    from chatproto import codec_for

    try:
        codec_for(api)
    except KeyError:
        return False
    return True


def _asdict(pc: ProviderConfig) -> dict[str, Any]:
    return {
        "base_url": pc.base_url, "key_env": pc.key_env, "key_file": pc.key_file,
        "headers": pc.headers, "timeout_secs": pc.timeout_secs,
        "forward_user_agent": pc.forward_user_agent, "api": pc.api, "prefix": pc.prefix,
        "max_concurrency": pc.max_concurrency, "queue_timeout_secs": pc.queue_timeout_secs,
        "key_header": pc.key_header,
    }


def _limits(chatd: Mapping[str, object], d: ChatdConfig) -> dict[str, Any]:
    """SPEC §5's limits: seconds are positive numbers, counts positive integers."""
    out: dict[str, Any] = {}
    for name in ("client_body_timeout_secs", "stream_idle_secs", "stream_max_secs",
                 "shutdown_grace_secs"):
        out[name] = _positive_number(f"chatd.{name}", chatd.get(name, getattr(d, name)))
    for name in ("max_connections", "max_in_flight"):
        out[name] = _positive_int(f"chatd.{name}", chatd.get(name, getattr(d, name)))
    return out


def _ops(chatd: Mapping[str, object], d: ChatdConfig) -> dict[str, Any]:
    """How the process reports: the log format, the request log line, metrics."""
    out: dict[str, Any] = {}
    fmt = _string("chatd.log_format", chatd.get("log_format", d.log_format))
    if fmt not in LOG_FORMATS:
        raise ConfigError(
            f"chatd.log_format: expected one of {', '.join(LOG_FORMATS)}, got {fmt!r}"
        )
    out["log_format"] = fmt
    for name in ("log_requests", "metrics"):
        flag = chatd.get(name, getattr(d, name))
        if not isinstance(flag, bool):
            raise _expected(f"chatd.{name}", "true or false", flag)
        out[name] = flag
    return out


def _origins(raw: object) -> tuple[str, ...]:
    """``[chatd.cors]``: ``allow_origins``, each ``"*"`` or an origin as a browser sends it
    (``scheme://host[:port]``, no path; RFC 6454 §6.1)."""
    table = _table("chatd.cors", raw)
    _check_keys("chatd.cors", table, ("allow_origins",))
    value = table.get("allow_origins", [])
    if not isinstance(value, list):
        raise _expected("chatd.cors.allow_origins", "a list of origins", value)
    origins: list[str] = []
    for i, item in enumerate(value):
        where = f"chatd.cors.allow_origins[{i}]"
        origin = _string(where, item)
        if origin != "*":
            parts = urlsplit(origin)
            if (parts.scheme not in ("http", "https") or not parts.hostname
                    or parts.path or parts.query or parts.fragment or "@" in parts.netloc
                    or origin != origin.strip()):
                raise ConfigError(
                    f"{where}: {origin!r} is not an origin (scheme://host[:port], no path), "
                    'nor "*"'
                )
            origin = origin.lower()
        origins.append(origin)
    return tuple(origins)


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
        chain_timeout_secs=(
            _positive_number("chatd.chain_timeout_secs", chatd["chain_timeout_secs"])
            if "chain_timeout_secs" in chatd else None
        ),
        default_retry_after_secs=_retry_after(
            chatd.get("default_retry_after_secs", d.default_retry_after_secs)
        ),
        model_list_ttl_secs=_positive_number(
            "chatd.model_list_ttl_secs", chatd.get("model_list_ttl_secs", d.model_list_ttl_secs)
        ),
        cors_allow_origins=_origins(chatd.get("cors", {})),
        **_limits(chatd, d),
        **_ops(chatd, d),
    )

    providers = dict(_DEFAULT_PROVIDERS)
    for name, raw in _table("chatd.providers", chatd.get("providers", {})).items():
        providers[name] = _provider(name, raw, _DEFAULT_PROVIDERS.get(name))
    config = Config(chatd=settings, providers=_frozen(providers))
    profiles = config.profiles
    try:
        check_prefixes(profiles)
    except ValueError as exc:
        raise ConfigError(f"chatd.providers: {exc}") from None

    if "models" in doc:
        models = _table("models", doc["models"])
        try:
            tiers = parse_tiers(models, profiles)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    else:
        tiers = dict(_DEFAULT_TIERS)
    return replace(config, tiers=_frozen(tiers))


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

    ``ollama`` is always registered (no key; ``chatd.ollama_url``), and so is a provider
    whose table sets ``key_env = ""`` (a keyless local server, or credentials in its
    URL). The others when their key resolves (SPEC §2). In routing order.
    """
    out: list[Registration] = []
    for row in config.profiles:
        if row.name == DEFAULT_PROVIDER or not row.key_env:
            out.append(Registration(name=row.name, provider=row, source="no key needed"))
            continue
        pc = config.providers[row.name]
        key, source = _resolve_key(pc, environ)
        if key is None:
            logger.info("provider %s not registered: %s", row.name, source)
            out.append(Registration(name=row.name, provider=None, source=source))
            continue
        provider = replace(row, key=Secret(key))
        out.append(Registration(name=row.name, provider=provider, source=source))
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
