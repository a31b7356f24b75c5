"""``GET /metrics``: the core's per-provider counters as Prometheus text.

Strategy: the counting happens in :class:`~chatproto._telemetry.Telemetry` (plain data, no
metrics library on the request path). This module is a custom prometheus_client
``Collector`` that reads a snapshot only when scraped, registered in a private
``CollectorRegistry`` (no process-global state, so two apps in one test process never
share counters). prometheus_client writes the exposition format, escaping included.
Imported on the first scrape: the library takes ~40 ms to import, which startup should not pay.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from chatproto._telemetry import Telemetry

__all__ = ["TelemetryCollector", "renderer"]


def _bound(value: float) -> str:
    """Bucket bound label as Prometheus clients write it (``0.5``, ``120.0``)."""
    return repr(float(value))


class TelemetryCollector(Collector):
    """Exposes a :class:`Telemetry` snapshot, per provider."""

    def __init__(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry

    def describe(self) -> list[Metric]:
        # Names are dynamic per snapshot; an empty description skips registry checks.
        return []

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "chatd_upstream_requests",
            "Upstream calls that ended: answered, failed or cancelled.",
            labels=["provider"],
        )
        errors = CounterMetricFamily(
            "chatd_upstream_errors",
            "Failed upstream calls by SPEC error type.",
            labels=["provider", "type"],
        )
        cancelled = CounterMetricFamily(
            "chatd_upstream_cancelled",
            "Upstream calls abandoned because the client went away.",
            labels=["provider"],
        )
        latency = HistogramMetricFamily(
            "chatd_upstream_latency_seconds",
            "Upstream round trip as chatd measured it.",
            labels=["provider"],
        )
        tokens = CounterMetricFamily(
            "chatd_tokens",
            "Tokens reported by upstreams.",
            labels=["provider", "kind"],
        )
        for name, stats in sorted(self._telemetry.snapshot().items()):
            requests.add_metric([name], stats.requests)
            cancelled.add_metric([name], stats.cancelled)
            for type_, count in sorted(stats.errors.items()):
                errors.add_metric([name, type_], count)
            buckets: list[tuple[str, float]] = [
                (_bound(b), float(c))
                for b, c in zip(stats.latency_buckets, stats.latency_counts, strict=True)
            ]
            buckets.append(("+Inf", float(stats.latency_count)))
            latency.add_metric([name], buckets, sum_value=stats.latency_sum)
            tokens.add_metric([name, "prompt"], stats.prompt_tokens)
            tokens.add_metric([name, "completion"], stats.completion_tokens)
        yield from (requests, errors, cancelled, latency, tokens)


def renderer(telemetry: Telemetry) -> Callable[[], tuple[bytes, bytes]]:
    """A function returning ``(content_type, body)`` for a scrape of ``telemetry``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TelemetryCollector(telemetry))
    content_type = CONTENT_TYPE_LATEST.encode()

    def render() -> tuple[bytes, bytes]:
        return content_type, generate_latest(registry)

    return render
