"""Per-provider counters: requests, errors, cancellations, latency, tokens.

Strategy: plain data, no clock and no metrics library. The caller measures latency with
its own clock and passes it in; the server renders :meth:`Telemetry.snapshot` as
Prometheus text. The hot path is a few dict and list updates and one ``bisect`` into fixed
bucket bounds; cumulative bucket counts are built only when a snapshot is taken, so a
request never pays for the exposition format.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ._types import Usage

__all__ = ["LATENCY_BUCKETS", "ProviderStats", "Telemetry"]

#: Histogram upper bounds in seconds. LLM calls span a 50 ms cached local reply to a
#: two-minute reasoning answer (the default whole-call timeout is 120 s, SPEC §5), so the
#: bounds are roughly logarithmic over that range instead of Prometheus' web-request
#: defaults, which stop at 10 s.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
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
    errors: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    """Error type (SPEC §4) -> count."""
    cancelled: int = 0
    """Calls abandoned because the client went away."""
    latency_buckets: tuple[float, ...] = LATENCY_BUCKETS
    latency_counts: tuple[int, ...] = (0,) * len(LATENCY_BUCKETS)
    latency_sum: float = 0.0
    latency_count: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _Counters:
    __slots__ = ("buckets", "cancelled", "completion", "errors", "prompt", "requests", "sum")

    def __init__(self, nbuckets: int) -> None:
        self.requests = 0
        self.cancelled = 0
        self.errors: dict[str, int] = {}
        # Non-cumulative: one slot per bound plus the +Inf overflow slot.
        self.buckets = [0] * (nbuckets + 1)
        self.sum = 0.0
        self.prompt = 0
        self.completion = 0


class Telemetry:
    """Counters for every provider, created on first use.

    Args:
        providers: names to report (with zeros) before their first call, so a dashboard
            sees every registered provider from startup.
        buckets: histogram upper bounds in seconds, increasing.
    """

    __slots__ = ("_buckets", "_by_provider")

    def __init__(
        self, providers: Iterable[str] = (), *, buckets: tuple[float, ...] = LATENCY_BUCKETS
    ) -> None:
        if list(buckets) != sorted(set(buckets)) or not all(map(math.isfinite, buckets)):
            raise ValueError("buckets must be finite, strictly increasing bounds")
        self._buckets = buckets
        self._by_provider: dict[str, _Counters] = {}
        for name in providers:
            self._counters(name)

    def _counters(self, provider: str) -> _Counters:
        counters = self._by_provider.get(provider)
        if counters is None:
            counters = self._by_provider[provider] = _Counters(len(self._buckets))
        return counters

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
        if not latency_s >= 0.0:  # also catches NaN
            latency_s = 0.0
        # bisect_left: a value equal to a bound belongs to that bound's bucket (le).
        c.buckets[bisect_left(self._buckets, latency_s)] += 1
        c.sum += latency_s
        if usage is not None:
            c.prompt += usage.prompt_tokens
            c.completion += usage.completion_tokens
        if error_type is not None:
            c.errors[error_type] = c.errors.get(error_type, 0) + 1

    def record_cancelled(self, provider: str) -> None:
        """Count a call abandoned because the client disconnected."""
        c = self._counters(provider)
        c.requests += 1
        c.cancelled += 1

    def snapshot(self) -> dict[str, ProviderStats]:
        """An immutable copy of every provider's counters."""
        out: dict[str, ProviderStats] = {}
        for name, c in self._by_provider.items():
            cumulative: list[int] = []
            running = 0
            for n in c.buckets[:-1]:
                running += n
                cumulative.append(running)
            out[name] = ProviderStats(
                requests=c.requests,
                errors=MappingProxyType(dict(c.errors)),
                cancelled=c.cancelled,
                latency_buckets=self._buckets,
                latency_counts=tuple(cumulative),
                latency_sum=c.sum,
                latency_count=running + c.buckets[-1],
                prompt_tokens=c.prompt,
                completion_tokens=c.completion,
            )
        return out
