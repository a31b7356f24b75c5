"""Per-provider counters: what /metrics is rendered from."""

from __future__ import annotations

import math

import pytest

from chatproto import Usage
from chatproto._telemetry import LATENCY_BUCKETS, ProviderStats, Telemetry


def test_fresh_providers_report_zeros() -> None:
    snap = Telemetry(["ollama", "kimi"]).snapshot()
    assert set(snap) == {"ollama", "kimi"}
    assert snap["ollama"] == ProviderStats()
    assert snap["ollama"].latency_counts == (0,) * len(LATENCY_BUCKETS)


def test_counts_requests_errors_and_tokens_per_provider() -> None:
    t = Telemetry()
    t.record("ollama", latency_s=0.2, usage=Usage(prompt_tokens=12, completion_tokens=9))
    t.record("ollama", latency_s=0.3, usage=Usage(prompt_tokens=1, completion_tokens=2))
    t.record("ollama", latency_s=1.0, error_type="upstream_error")
    t.record("kimi", latency_s=4.0, error_type="rate_limited")
    t.record("kimi", latency_s=4.0, error_type="rate_limited")
    t.record("kimi", latency_s=0.01, error_type="upstream_timeout")
    snap = t.snapshot()
    ollama, kimi = snap["ollama"], snap["kimi"]
    assert (ollama.requests, ollama.prompt_tokens, ollama.completion_tokens) == (3, 13, 11)
    assert dict(ollama.errors) == {"upstream_error": 1}
    assert kimi.requests == 3
    assert dict(kimi.errors) == {"rate_limited": 2, "upstream_timeout": 1}
    assert (kimi.prompt_tokens, kimi.completion_tokens) == (0, 0)


# (latency, index of the first bucket (le) that counts it; len = only +Inf)
BUCKET_CASES = [
    (0.0, 0),
    (0.05, 0),  # equal to a bound: counted in that bound's bucket (Prometheus "le")
    (0.0500001, 1),
    (1.0, 4),
    (119.9, 11),
    (120.0, 11),
    (120.1, 12),
    (1e9, 12),
    (-1.0, 0),  # a stepped clock is counted as 0, never raised
    (math.nan, 0),
]


@pytest.mark.parametrize(("latency", "first"), BUCKET_CASES, ids=[str(c[0]) for c in BUCKET_CASES])
def test_histogram_is_cumulative_with_le_bounds(latency: float, first: int) -> None:
    t = Telemetry()
    t.record("p", latency_s=latency)
    stats = t.snapshot()["p"]
    expected = tuple(0 if i < first else 1 for i in range(len(LATENCY_BUCKETS)))
    assert stats.latency_counts == expected
    assert stats.latency_count == 1
    assert stats.latency_sum == (latency if latency >= 0 else 0.0)


def test_histogram_sum_and_counts_accumulate() -> None:
    t = Telemetry(buckets=(1.0, 10.0))
    for latency in (0.5, 0.5, 2.0, 50.0):
        t.record("p", latency_s=latency)
    stats = t.snapshot()["p"]
    assert stats.latency_buckets == (1.0, 10.0)
    assert stats.latency_counts == (2, 3)
    assert stats.latency_count == 4
    assert stats.latency_sum == pytest.approx(53.0)


def test_cancelled_counts_as_a_request_without_latency() -> None:
    t = Telemetry()
    t.record_cancelled("ollama")
    t.record_cancelled("ollama")
    stats = t.snapshot()["ollama"]
    assert (stats.requests, stats.cancelled, stats.latency_count) == (2, 2, 0)
    assert dict(stats.errors) == {}


def test_snapshot_is_a_frozen_copy() -> None:
    t = Telemetry()
    t.record("p", latency_s=1.0, error_type="upstream_error")
    before = t.snapshot()["p"]
    t.record("p", latency_s=1.0, error_type="upstream_error")
    assert before.requests == 1
    assert before.errors["upstream_error"] == 1
    with pytest.raises(TypeError):
        before.errors["x"] = 1  # type: ignore[index]


@pytest.mark.parametrize("buckets", [(2.0, 1.0), (1.0, 1.0), (1.0, math.inf)], ids=str)
def test_bad_buckets_refused(buckets: tuple[float, ...]) -> None:
    with pytest.raises(ValueError):
        Telemetry(buckets=buckets)
