"""Per-provider counters: what /metrics is rendered from."""

from __future__ import annotations

import json
import math

import pytest

from chatproto import (
    LATENCY_BUCKETS,
    TOKEN_KINDS,
    Histogram,
    ProviderStats,
    Snapshot,
    Telemetry,
    Usage,
)


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


# --- per door, fallbacks, gauges, and adding up workers ----------------------------------

def test_requests_per_door_provider_and_status() -> None:
    t = Telemetry(["ollama"])
    t.record_request("openai", provider="ollama", status=200, overhead_s=0.0004)
    t.record_request("openai", provider="ollama", status=200, overhead_s=0.002)
    t.record_request("openai", provider="", status=400, error_type="invalid_request",
                     overhead_s=0.0001)
    t.record_request("native", provider="kimi", status=200, error_type="upstream_timeout")
    snap = t.export()
    assert dict(snap.requests) == {
        ("openai", "ollama", "200"): 2, ("openai", "", "400"): 1, ("native", "kimi", "200"): 1,
    }
    assert dict(snap.request_errors) == {
        ("openai", "invalid_request"): 1, ("native", "upstream_timeout"): 1,
    }
    overhead = snap.overhead["openai"]
    assert overhead.count == 3
    assert overhead.sum == pytest.approx(0.0025)
    # 0.0001 and 0.0004 at most 0.0005; 0.002 at most 0.0025
    assert dict(zip(overhead.buckets, overhead.counts, strict=True))[0.0005] == 2
    assert dict(zip(overhead.buckets, overhead.counts, strict=True))[0.0025] == 3
    assert "native" not in snap.overhead  # not measured, not observed


def test_tokens_of_every_kind() -> None:
    t = Telemetry()
    t.record("p", latency_s=0.1, usage=Usage(prompt_tokens=100, completion_tokens=40,
                                             cached_tokens=60, cache_creation_tokens=5,
                                             reasoning_tokens=30))
    t.record("p", latency_s=0.1, usage=Usage(prompt_tokens=1, completion_tokens=2))
    stats = t.snapshot()["p"]
    assert {k: stats.tokens(k) for k in TOKEN_KINDS} == {
        "prompt": 101, "completion": 42, "cached": 60, "cache_creation": 5, "reasoning": 30,
    }


def test_fallbacks_saturation_and_gauges() -> None:
    t = Telemetry()
    t.record_fallback("kimi", "openrouter")
    t.record_fallback("kimi", "openrouter")
    t.record_fallback("openrouter", "ollama")
    t.record_saturated("kimi")
    t.in_flight += 3
    t.open_streams += 1
    snap = t.export()
    assert dict(snap.fallbacks) == {("kimi", "openrouter"): 2, ("openrouter", "ollama"): 1}
    assert snap.providers["kimi"].saturated == 1
    assert (snap.in_flight, snap.open_streams) == (3, 1)


def _busy() -> Telemetry:
    t = Telemetry(["ollama"])
    t.record("ollama", latency_s=0.3, usage=Usage(prompt_tokens=5, completion_tokens=2,
                                                  reasoning_tokens=1))
    t.record("kimi", latency_s=2.0, error_type="rate_limited")
    t.record_cancelled("kimi")
    t.record_saturated("kimi")
    t.record_request("openai", provider="ollama", status=200, overhead_s=0.001)
    t.record_request("ollama", provider="", status=404, error_type="provider_not_registered",
                     overhead_s=0.0002)
    t.record_fallback("kimi", "ollama")
    t.in_flight = 2
    return t


def test_snapshot_survives_json() -> None:
    snap = _busy().export()
    assert Snapshot.from_json(json.loads(json.dumps(snap.to_json()))) == snap


def test_snapshots_add_up() -> None:
    a, b = _busy().export(), _busy().export()
    other = Telemetry()
    other.record_request("anthropic", provider="kimi", status=200, overhead_s=0.0003)
    total = a.merge(b).merge(other.export())
    assert total.providers["ollama"].requests == 2
    assert total.providers["ollama"].tokens("reasoning") == 2
    assert total.providers["ollama"].latency_count == 2
    assert dict(total.providers["kimi"].errors) == {"rate_limited": 2}
    assert (total.providers["kimi"].cancelled, total.providers["kimi"].saturated) == (2, 2)
    assert total.requests[("openai", "ollama", "200")] == 2
    assert total.requests[("anthropic", "kimi", "200")] == 1
    assert total.request_errors[("ollama", "provider_not_registered")] == 2
    assert total.overhead["openai"].count == 2
    assert total.overhead["anthropic"].count == 1
    assert total.fallbacks[("kimi", "ollama")] == 2
    assert total.in_flight == 4
    # Merging is a sum: order does not matter.
    assert b.merge(a) == a.merge(b)


def test_histograms_with_other_bounds_do_not_add() -> None:
    with pytest.raises(ValueError):
        _ = Histogram.empty((1.0,)) + Histogram.empty((2.0,))


@pytest.mark.parametrize(
    "data",
    [{}, {"providers": {"p": {"requests": 1}}},
     {**_busy().export().to_json(), "overhead": {"x": {"buckets": [1.0], "counts": [],
                                                        "sum": 0, "count": 0}}}],
    ids=["empty", "partial-provider", "bucket-count-mismatch"],
)
def test_a_bad_snapshot_is_refused(data: dict[str, object]) -> None:
    with pytest.raises((KeyError, TypeError, ValueError)):
        Snapshot.from_json(data)
