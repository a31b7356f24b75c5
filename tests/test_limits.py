"""SPEC §5's limits for hostile or careless clients: their settings, and each one held."""

from __future__ import annotations

import pytest

from server.config import DEFAULT_CONFIG, ConfigError, load_config

LIMITS = {
    "client_body_timeout_secs": 30.0, "max_connections": 2048, "max_in_flight": 1024,
    "stream_idle_secs": 120.0, "stream_max_secs": 1800.0, "shutdown_grace_secs": 30.0,
}


def test_limit_defaults_are_spec_values() -> None:
    assert {name: getattr(DEFAULT_CONFIG.chatd, name) for name in LIMITS} == LIMITS


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_limit_is_read(name: str) -> None:
    config = load_config(f"[chatd]\n{name} = 7\n")
    assert getattr(config.chatd, name) == 7


@pytest.mark.parametrize(
    ("text", "message"),
    [("client_body_timeout_secs = 0", "chatd.client_body_timeout_secs: must be a positive"),
     ("stream_idle_secs = 'x'", "chatd.stream_idle_secs: expected a number, got string"),
     ("stream_max_secs = inf", "chatd.stream_max_secs: must be a positive"),
     ("shutdown_grace_secs = -1", "chatd.shutdown_grace_secs: must be a positive"),
     ("max_connections = 1.5", "chatd.max_connections: expected an integer, got float"),
     ("max_in_flight = 0", "chatd.max_in_flight: must be positive"),
     ("max_in_flight = true", "chatd.max_in_flight: expected an integer, got boolean")],
    ids=["body-zero", "idle-type", "max-inf", "grace-negative", "conn-float", "inflight-zero",
         "inflight-bool"],
)
def test_bad_limit_names_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(f"[chatd]\n{text}\n")
    assert str(info.value).startswith(message), str(info.value)
