"""``GET /metrics``: the core's counters as Prometheus text, for one worker or several.

Strategy: the counting happens in :class:`~chatproto._telemetry.Telemetry` (plain data, no
metrics library on the request path). This module is a custom prometheus_client
``Collector`` that reads a :class:`~chatproto._telemetry.Snapshot` only when scraped,
registered in a private ``CollectorRegistry`` (no process-global state, so two apps in one
test process never share counters). prometheus_client writes the exposition format,
escaping included. Imported on the first scrape: the library takes ~40 ms to import, which
startup should not pay.

Several workers (``chatd serve --workers N``) are one scrape target: the kernel hands a
scrape to whichever worker it picks, so each answers for all. Every worker writes its
snapshot to a file in a directory its supervisor made (:class:`WorkerShare`), once a
second and whenever it is scraped, before it reads the others' files and adds them up. A
counter a scrape reports was therefore in its worker's file already, and files only grow:
whichever worker answers the next scrape, no counter goes backwards (Prometheus would read
that as a restart). Another worker's counts are at most :data:`PUBLISH_INTERVAL` old.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from chatproto import TOKEN_KINDS, Histogram, Snapshot

__all__ = ["METRICS", "PUBLISH_INTERVAL", "SnapshotCollector", "WorkerShare", "renderer"]

logger = logging.getLogger("chatd.metrics")

#: Seconds between a worker's snapshot writes when it is not scraped.
PUBLISH_INTERVAL = 1.0

#: Every metric chatd exposes: name, type, labels, help. The README's list is this table.
METRICS: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("chatd_requests_total", "counter", ("door", "provider", "status"),
     "Client requests answered, by door, the provider that served them (empty when "
     "routing failed) and HTTP status."),
    ("chatd_request_errors_total", "counter", ("door", "type"),
     "Client requests answered with an error, by SPEC error type."),
    ("chatd_overhead_seconds", "histogram", ("door",),
     "chatd's own time per request: the total minus the upstream's time and any wait "
     "for a provider's concurrency slot."),
    ("chatd_upstream_requests_total", "counter", ("provider",),
     "Upstream calls that ended: answered, failed or cancelled."),
    ("chatd_upstream_errors_total", "counter", ("provider", "type"),
     "Failed upstream calls by SPEC error type."),
    ("chatd_upstream_cancelled_total", "counter", ("provider",),
     "Upstream calls abandoned because the client went away."),
    ("chatd_upstream_latency_seconds", "histogram", ("provider",),
     "Upstream round trip as chatd measured it (a stream: to its last event)."),
    ("chatd_upstream_saturated_total", "counter", ("provider",),
     "Calls that found the provider at its max_concurrency: fell through to the next "
     "target of a chain, or waited past queue_timeout_secs (503)."),
    ("chatd_tokens_total", "counter", ("provider", "kind"),
     "Tokens reported by upstreams: prompt, completion, cached, cache_creation, "
     "reasoning (cached and reasoning are parts of prompt and completion)."),
    ("chatd_fallbacks_total", "counter", ("from", "to"),
     "Times a fallback chain moved from one target to the next."),
    ("chatd_in_flight", "gauge", (), "Client requests being handled now."),
    ("chatd_open_streams", "gauge", (), "Streamed answers being relayed now."),
    ("chatd_workers", "gauge", (), "Worker processes whose counters this scrape adds up."),
)
_HELP = {name: text for name, _, _, text in METRICS}


def _bound(value: float) -> str:
    """Bucket bound label as Prometheus clients write it (``0.5``, ``120.0``)."""
    return repr(float(value))


def _buckets(h: Histogram) -> list[tuple[str, float]]:
    out = [(_bound(b), float(c)) for b, c in zip(h.buckets, h.counts, strict=True)]
    out.append(("+Inf", float(h.count)))
    return out


def _counter(name: str, labels: list[str]) -> CounterMetricFamily:
    # CounterMetricFamily appends ``_total`` itself.
    return CounterMetricFamily(name.removesuffix("_total"), _HELP[name], labels=labels)


class SnapshotCollector(Collector):
    """Exposes the :class:`Snapshot` ``source`` returns at each scrape, with the number of
    workers it adds up."""

    def __init__(self, source: Callable[[], tuple[Snapshot, int]]) -> None:
        self._source = source

    def describe(self) -> list[Metric]:
        # Names are dynamic per snapshot; an empty description skips registry checks.
        return []

    def collect(self) -> Iterator[Metric]:
        snap, workers = self._source()
        requests = _counter("chatd_requests_total", ["door", "provider", "status"])
        for (door, provider, status), n in sorted(snap.requests.items()):
            requests.add_metric([door, provider, status], n)
        request_errors = _counter("chatd_request_errors_total", ["door", "type"])
        for (door, type_), n in sorted(snap.request_errors.items()):
            request_errors.add_metric([door, type_], n)
        overhead = HistogramMetricFamily(
            "chatd_overhead_seconds", _HELP["chatd_overhead_seconds"], labels=["door"]
        )
        for door, hist in sorted(snap.overhead.items()):
            overhead.add_metric([door], _buckets(hist), sum_value=hist.sum)

        upstream = _counter("chatd_upstream_requests_total", ["provider"])
        errors = _counter("chatd_upstream_errors_total", ["provider", "type"])
        cancelled = _counter("chatd_upstream_cancelled_total", ["provider"])
        saturated = _counter("chatd_upstream_saturated_total", ["provider"])
        latency = HistogramMetricFamily(
            "chatd_upstream_latency_seconds", _HELP["chatd_upstream_latency_seconds"],
            labels=["provider"],
        )
        tokens = _counter("chatd_tokens_total", ["provider", "kind"])
        for name, stats in sorted(snap.providers.items()):
            upstream.add_metric([name], stats.requests)
            cancelled.add_metric([name], stats.cancelled)
            saturated.add_metric([name], stats.saturated)
            for type_, count in sorted(stats.errors.items()):
                errors.add_metric([name, type_], count)
            latency.add_metric([name], _buckets(stats.latency), sum_value=stats.latency_sum)
            for kind in TOKEN_KINDS:
                tokens.add_metric([name, kind], stats.tokens(kind))
        fallbacks = _counter("chatd_fallbacks_total", ["from", "to"])
        for (from_, to), n in sorted(snap.fallbacks.items()):
            fallbacks.add_metric([from_, to], n)

        in_flight = GaugeMetricFamily("chatd_in_flight", _HELP["chatd_in_flight"])
        in_flight.add_metric([], snap.in_flight)
        open_streams = GaugeMetricFamily("chatd_open_streams", _HELP["chatd_open_streams"])
        open_streams.add_metric([], snap.open_streams)
        worker_gauge = GaugeMetricFamily("chatd_workers", _HELP["chatd_workers"])
        worker_gauge.add_metric([], workers)
        yield from (
            requests, request_errors, overhead, upstream, errors, cancelled, latency,
            saturated, tokens, fallbacks, in_flight, open_streams, worker_gauge,
        )


class WorkerShare:
    """The snapshot files of a supervisor's workers: ``<directory>/<pid>.json``, one each.

    A worker writes its own (atomically: a temporary file, then a rename) and reads every
    other; a file that is unreadable or half-written by a foreign process is skipped with a
    log line, never a failed scrape.
    """

    def __init__(self, directory: Path, pid: int | None = None) -> None:
        self.directory = directory
        self.pid = os.getpid() if pid is None else pid
        self._path = directory / f"{self.pid}.json"

    def publish(self, snap: Snapshot) -> None:
        """Write this worker's snapshot."""
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(snap.to_json(), separators=(",", ":")), encoding="utf-8")
        os.replace(tmp, self._path)

    def gather(self, own: Snapshot) -> tuple[Snapshot, int]:
        """Publish ``own``, then every worker's snapshot added up, and how many there are."""
        self.publish(own)
        total = own
        workers = 1
        for path in sorted(self.directory.glob("*.json")):
            if path == self._path:
                continue
            try:
                other = Snapshot.from_json(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                logger.warning("skipping worker metrics file %s: %s", path.name, exc)
                continue
            total = total.merge(other)
            workers += 1
        return total, workers


def renderer(source: Callable[[], tuple[Snapshot, int]]) -> Callable[[], tuple[bytes, bytes]]:
    """A function returning ``(content_type, body)`` for a scrape of ``source``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(source))
    content_type = CONTENT_TYPE_LATEST.encode()

    def render() -> tuple[bytes, bytes]:
        return content_type, generate_latest(registry)

    return render
