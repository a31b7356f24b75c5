"""Counters for ``/metrics``: per provider (upstream calls) and per door (client requests).

Strategy: plain data, no clock and no metrics library. The caller measures latency with
its own clock and passes it in; the server renders :meth:`Telemetry.export` as Prometheus
text. The hot path is a few dict and list updates and one ``bisect`` into fixed bucket
bounds; cumulative bucket counts are built only when a snapshot is taken, so a request
never pays for the exposition format.

Two views are kept because they answer different questions. Per provider: every upstream
call that ended (a fallback chain makes several for one request), its latency, its error
type and the tokens it reported. Per door: every client request, by the door it came
through, the provider that served it (the last one tried; empty when routing failed) and
the HTTP status it got, and chatd's own share of its time (the overhead: total minus the
upstream's time). A :class:`Snapshot` is plain data that survives a JSON round trip and
adds up (:meth:`Snapshot.merge`), so several worker processes can report as one.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ._types import Usage

__all__ = [
    "LATENCY_BUCKETS",
    "OVERHEAD_BUCKETS",
    "TOKEN_KINDS",
    "Histogram",
    "ProviderStats",
    "Snapshot",
    "Telemetry",
]

#: Histogram upper bounds in seconds. LLM calls span a 50 ms cached local reply to a
#: two-minute reasoning answer (the default whole-call timeout is 120 s, SPEC §5), so the
#: bounds are roughly logarithmic over that range instead of Prometheus' web-request
#: defaults, which stop at 10 s.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
)
#: chatd's own time per request: parsing, routing, encoding, relaying. Measured at a few
#: hundred microseconds per call on loopback; the bounds resolve that range and flag the
#: pathological (a blocked event loop shows up past 100 ms).
OVERHEAD_BUCKETS: tuple[float, ...] = (
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)
#: The ``kind`` label of ``chatd_tokens_total``, each a :class:`Usage` count.
TOKEN_KINDS = ("prompt", "completion", "cached", "cache_creation", "reasoning")

def _empty() -> Mapping[Any, Any]:
    return MappingProxyType({})


def _check_buckets(buckets: tuple[float, ...]) -> None:
    if list(buckets) != sorted(set(buckets)) or not all(map(math.isfinite, buckets)):
        raise ValueError("buckets must be finite, strictly increasing bounds")


@dataclass(frozen=True, slots=True, kw_only=True)
class Histogram:
    """A Prometheus-shaped histogram: ``counts[i]`` observations were at most
    ``buckets[i]`` (cumulative), ``count`` is the ``+Inf`` bucket."""

    buckets: tuple[float, ...]
    counts: tuple[int, ...]
    sum: float = 0.0
    count: int = 0

    @classmethod
    def empty(cls, buckets: tuple[float, ...]) -> Histogram:
        return cls(buckets=buckets, counts=(0,) * len(buckets))

    def __add__(self, other: Histogram) -> Histogram:
        if other.buckets != self.buckets:
            raise ValueError("histograms with different bucket bounds do not add up")
        return Histogram(
            buckets=self.buckets,
            counts=tuple(a + b for a, b in zip(self.counts, other.counts, strict=True)),
            sum=self.sum + other.sum,
            count=self.count + other.count,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderStats:
    """One provider's counters at the moment of a snapshot.

    ``requests`` counts every upstream call that ended: answered, failed or cancelled.
    The latency histogram is Prometheus-shaped: ``latency_counts[i]`` is the number of
    calls that took at most ``latency_buckets[i]`` seconds (cumulative), and
    ``latency_count`` is the ``+Inf`` bucket. Cancelled calls have no latency.
    """

    requests: int = 0
    errors: Mapping[str, int] = field(default_factory=_empty)
    """Error type (SPEC §4) -> count."""
    cancelled: int = 0
    """Calls abandoned because the client went away."""
    latency_buckets: tuple[float, ...] = LATENCY_BUCKETS
    latency_counts: tuple[int, ...] = (0,) * len(LATENCY_BUCKETS)
    latency_sum: float = 0.0
    latency_count: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_creation_tokens: int = 0
    reasoning_tokens: int = 0
    saturated: int = 0
    """Calls that found the provider at its ``max_concurrency``: they fell through to the
    chain's next target, or waited past ``queue_timeout_secs`` (503)."""

    @property
    def latency(self) -> Histogram:
        return Histogram(
            buckets=self.latency_buckets, counts=self.latency_counts,
            sum=self.latency_sum, count=self.latency_count,
        )

    def tokens(self, kind: str) -> int:
        """The count of one of :data:`TOKEN_KINDS`."""
        return int(getattr(self, f"{kind}_tokens"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """Every counter at one moment; immutable, JSON-able, and additive across processes."""

    providers: Mapping[str, ProviderStats] = field(
        default_factory=lambda: MappingProxyType({})
    )
    requests: Mapping[tuple[str, str, str], int] = field(default_factory=_empty)
    """``(door, provider, status)`` -> client requests answered so."""
    request_errors: Mapping[tuple[str, str], int] = field(default_factory=_empty)
    """``(door, error type)`` -> client requests answered with that error."""
    overhead: Mapping[str, Histogram] = field(default_factory=_empty)
    """door -> chatd's own time per request (total minus upstream), in seconds."""
    fallbacks: Mapping[tuple[str, str], int] = field(default_factory=_empty)
    """``(from, to)`` -> times a chain moved from one target to the next."""
    in_flight: int = 0
    """Client requests being handled now."""
    open_streams: int = 0
    """Streamed answers being relayed now."""

    def merge(self, other: Snapshot) -> Snapshot:
        """The sum of two processes' counters (gauges add up too)."""
        providers = dict(self.providers)
        for name, theirs in other.providers.items():
            mine = providers.get(name)
            providers[name] = theirs if mine is None else _add_stats(mine, theirs)
        overhead = dict(self.overhead)
        for door, hist in other.overhead.items():
            overhead[door] = hist if door not in overhead else overhead[door] + hist
        return Snapshot(
            providers=MappingProxyType(providers),
            requests=_add_counts(self.requests, other.requests),
            request_errors=_add_counts(self.request_errors, other.request_errors),
            overhead=MappingProxyType(overhead),
            fallbacks=_add_counts(self.fallbacks, other.fallbacks),
            in_flight=self.in_flight + other.in_flight,
            open_streams=self.open_streams + other.open_streams,
        )

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values (tuple keys as lists), for :meth:`from_json`."""
        return {
            "providers": {
                name: {
                    "requests": s.requests, "errors": dict(s.errors),
                    "cancelled": s.cancelled, "latency": _hist_json(s.latency),
                    "tokens": {kind: s.tokens(kind) for kind in TOKEN_KINDS},
                    "saturated": s.saturated,
                }
                for name, s in self.providers.items()
            },
            "requests": [[*k, v] for k, v in self.requests.items()],
            "request_errors": [[*k, v] for k, v in self.request_errors.items()],
            "overhead": {door: _hist_json(h) for door, h in self.overhead.items()},
            "fallbacks": [[*k, v] for k, v in self.fallbacks.items()],
            "in_flight": self.in_flight,
            "open_streams": self.open_streams,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Snapshot:
        """The inverse of :meth:`to_json`; KeyError/TypeError/ValueError on a bad shape."""
        providers: dict[str, ProviderStats] = {}
        for name, s in data["providers"].items():
            latency = _hist_from(s["latency"])
            tokens = s["tokens"]
            providers[str(name)] = ProviderStats(
                requests=int(s["requests"]),
                errors=MappingProxyType({str(k): int(v) for k, v in s["errors"].items()}),
                cancelled=int(s["cancelled"]),
                latency_buckets=latency.buckets, latency_counts=latency.counts,
                latency_sum=latency.sum, latency_count=latency.count,
                prompt_tokens=int(tokens["prompt"]),
                completion_tokens=int(tokens["completion"]),
                cached_tokens=int(tokens["cached"]),
                cache_creation_tokens=int(tokens["cache_creation"]),
                reasoning_tokens=int(tokens["reasoning"]),
                saturated=int(s["saturated"]),
            )
        return cls(
            providers=MappingProxyType(providers),
            requests=MappingProxyType(
                {(str(d), str(p), str(s)): int(n) for d, p, s, n in data["requests"]}
            ),
            request_errors=MappingProxyType(
                {(str(d), str(t)): int(n) for d, t, n in data["request_errors"]}
            ),
            overhead=MappingProxyType(
                {str(door): _hist_from(h) for door, h in data["overhead"].items()}
            ),
            fallbacks=MappingProxyType(
                {(str(a), str(b)): int(n) for a, b, n in data["fallbacks"]}
            ),
            in_flight=int(data["in_flight"]),
            open_streams=int(data["open_streams"]),
        )


def _hist_json(h: Histogram) -> dict[str, Any]:
    return {"buckets": list(h.buckets), "counts": list(h.counts), "sum": h.sum,
            "count": h.count}


def _hist_from(data: Mapping[str, Any]) -> Histogram:
    buckets = tuple(float(b) for b in data["buckets"])
    counts = tuple(int(c) for c in data["counts"])
    if len(buckets) != len(counts):
        raise ValueError("a histogram needs one count per bucket")
    return Histogram(buckets=buckets, counts=counts, sum=float(data["sum"]),
                     count=int(data["count"]))


def _add_counts(a: Mapping[Any, int], b: Mapping[Any, int]) -> Mapping[Any, int]:
    out = dict(a)
    for key, n in b.items():
        out[key] = out.get(key, 0) + n
    return MappingProxyType(out)


def _add_stats(a: ProviderStats, b: ProviderStats) -> ProviderStats:
    latency = a.latency + b.latency
    return ProviderStats(
        requests=a.requests + b.requests,
        errors=_add_counts(a.errors, b.errors),
        cancelled=a.cancelled + b.cancelled,
        latency_buckets=latency.buckets, latency_counts=latency.counts,
        latency_sum=latency.sum, latency_count=latency.count,
        prompt_tokens=a.prompt_tokens + b.prompt_tokens,
        completion_tokens=a.completion_tokens + b.completion_tokens,
        cached_tokens=a.cached_tokens + b.cached_tokens,
        cache_creation_tokens=a.cache_creation_tokens + b.cache_creation_tokens,
        reasoning_tokens=a.reasoning_tokens + b.reasoning_tokens,
        saturated=a.saturated + b.saturated,
    )


class _Hist:
    """Non-cumulative: one slot per bound plus the +Inf overflow slot."""

    __slots__ = ("bounds", "slots", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.slots = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        if not value >= 0.0:  # also catches NaN
            value = 0.0
        # bisect_left: a value equal to a bound belongs to that bound's bucket (le).
        self.slots[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def snapshot(self) -> Histogram:
        cumulative: list[int] = []
        running = 0
        for n in self.slots[:-1]:
            running += n
            cumulative.append(running)
        return Histogram(buckets=self.bounds, counts=tuple(cumulative), sum=self.sum,
                         count=running + self.slots[-1])


class _Counters:
    __slots__ = ("cancelled", "errors", "latency", "requests", "saturated", "tokens")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.requests = 0
        self.cancelled = 0
        self.saturated = 0
        self.errors: dict[str, int] = {}
        self.latency = _Hist(bounds)
        # prompt, completion, cached, cache_creation, reasoning (TOKEN_KINDS' order)
        self.tokens = [0, 0, 0, 0, 0]


class Telemetry:
    """Counters for every provider and door, created on first use.

    Args:
        providers: names to report (with zeros) before their first call, so a dashboard
            sees every registered provider from startup.
        buckets: upstream latency histogram bounds in seconds, increasing.
        overhead_buckets: the overhead histogram's bounds.

    ``in_flight`` and ``open_streams`` are gauges the server moves itself.
    """

    __slots__ = (
        "_buckets", "_by_provider", "_errors", "_fallbacks", "_overhead", "_overhead_buckets",
        "_requests", "in_flight", "open_streams",
    )

    def __init__(
        self,
        providers: Iterable[str] = (),
        *,
        buckets: tuple[float, ...] = LATENCY_BUCKETS,
        overhead_buckets: tuple[float, ...] = OVERHEAD_BUCKETS,
    ) -> None:
        _check_buckets(buckets)
        _check_buckets(overhead_buckets)
        self._buckets = buckets
        self._overhead_buckets = overhead_buckets
        self._by_provider: dict[str, _Counters] = {}
        self._requests: dict[tuple[str, str, str], int] = {}
        self._errors: dict[tuple[str, str], int] = {}
        self._overhead: dict[str, _Hist] = {}
        self._fallbacks: dict[tuple[str, str], int] = {}
        self.in_flight = 0
        self.open_streams = 0
        for name in providers:
            self._counters(name)

    def _counters(self, provider: str) -> _Counters:
        counters = self._by_provider.get(provider)
        if counters is None:
            counters = self._by_provider[provider] = _Counters(self._buckets)
        return counters

    # --- upstream calls ------------------------------------------------------------------

    def record(
        self,
        provider: str,
        *,
        latency_s: float,
        usage: Usage | None = None,
        error_type: str | None = None,
    ) -> None:
        """Count one finished upstream call.

        A negative or NaN latency (a caller's clock stepping) is counted as 0 rather than
        raised: metrics must never turn a served request into a failure.
        """
        c = self._counters(provider)
        c.requests += 1
        c.latency.observe(latency_s)
        if usage is not None:
            tokens = c.tokens
            tokens[0] += usage.prompt_tokens
            tokens[1] += usage.completion_tokens
            if usage.cached_tokens:
                tokens[2] += usage.cached_tokens
            if usage.cache_creation_tokens:
                tokens[3] += usage.cache_creation_tokens
            if usage.reasoning_tokens:
                tokens[4] += usage.reasoning_tokens
        if error_type is not None:
            c.errors[error_type] = c.errors.get(error_type, 0) + 1

    def record_cancelled(self, provider: str) -> None:
        """Count a call abandoned because the client disconnected."""
        c = self._counters(provider)
        c.requests += 1
        c.cancelled += 1

    def record_saturated(self, provider: str) -> None:
        """Count a call that found ``provider`` at its concurrency bound."""
        self._counters(provider).saturated += 1

    def record_fallback(self, from_: str, to: str) -> None:
        """Count a chain moving on from target ``from_`` to target ``to``."""
        key = (from_, to)
        self._fallbacks[key] = self._fallbacks.get(key, 0) + 1

    # --- client requests -----------------------------------------------------------------

    def record_request(
        self,
        door: str,
        *,
        provider: str,
        status: int,
        error_type: str | None = None,
        overhead_s: float | None = None,
    ) -> None:
        """Count one client request through ``door``, answered with ``status``.

        ``provider`` is the one that served it (or was tried last); empty when routing
        failed. ``overhead_s`` is chatd's own time (None: not measured).
        """
        key = (door, provider, str(status))
        self._requests[key] = self._requests.get(key, 0) + 1
        if error_type is not None:
            ekey = (door, error_type)
            self._errors[ekey] = self._errors.get(ekey, 0) + 1
        if overhead_s is not None:
            hist = self._overhead.get(door)
            if hist is None:
                hist = self._overhead[door] = _Hist(self._overhead_buckets)
            hist.observe(overhead_s)

    # --- snapshots -----------------------------------------------------------------------

    def snapshot(self) -> dict[str, ProviderStats]:
        """An immutable copy of every provider's counters."""
        out: dict[str, ProviderStats] = {}
        for name, c in self._by_provider.items():
            latency = c.latency.snapshot()
            out[name] = ProviderStats(
                requests=c.requests,
                errors=MappingProxyType(dict(c.errors)),
                cancelled=c.cancelled,
                latency_buckets=latency.buckets,
                latency_counts=latency.counts,
                latency_sum=latency.sum,
                latency_count=latency.count,
                prompt_tokens=c.tokens[0],
                completion_tokens=c.tokens[1],
                cached_tokens=c.tokens[2],
                cache_creation_tokens=c.tokens[3],
                reasoning_tokens=c.tokens[4],
                saturated=c.saturated,
            )
        return out

    def export(self) -> Snapshot:
        """Every counter, providers and doors, as one immutable :class:`Snapshot`."""
        return Snapshot(
            providers=MappingProxyType(self.snapshot()),
            requests=MappingProxyType(dict(self._requests)),
            request_errors=MappingProxyType(dict(self._errors)),
            overhead=MappingProxyType(
                {door: h.snapshot() for door, h in self._overhead.items()}
            ),
            fallbacks=MappingProxyType(dict(self._fallbacks)),
            in_flight=self.in_flight,
            open_streams=self.open_streams,
        )
