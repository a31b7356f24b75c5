"""The one error type of chatd, and the mapping from an upstream status to it.

Strategy: every failure chatd reports, whether the caller's request was bad or a provider
misbehaved, is a :class:`ChatError` that already knows the HTTP status and the SPEC §4
``type`` it maps to. Layers above (transports, server) never decide a status themselves;
they raise or pass on a ``ChatError``. Classification is by upstream status first and never
by a substring of a body: bodies are free text that providers reword at will.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._types import Usage

__all__ = [
    "ERROR_STATUS",
    "ChatError",
    "Headers",
    "clip_message",
    "error_from_upstream",
    "header_value",
    "parse_retry_after",
    "retry_after_header",
]

Headers = Iterable[tuple[str, str]]
"""Response headers as (name, value) pairs; names compared case-insensitively."""

#: SPEC §4: the status each error type is answered with.
ERROR_STATUS: Mapping[str, int] = {
    "invalid_request": 400,
    "unauthorized": 401,
    "provider_not_registered": 404,
    "not_found": 404,
    "method_not_allowed": 405,
    "request_too_large": 413,
    "rate_limited": 429,
    "upstream_rejected": 400,
    "upstream_error": 502,
    "upstream_unavailable": 502,
    "bad_upstream_response": 502,
    "upstream_overloaded": 503,
    "upstream_timeout": 504,
    # chatd's own limits (SPEC §4, §5) and its last resort.
    "request_timeout": 408,
    "overloaded": 503,
    "shutting_down": 503,
    "internal_error": 500,
}

#: Types that another provider in a fallback chain may well answer: the failure is about
#: this upstream, not about the request.
RETRYABLE_TYPES = frozenset(
    {"rate_limited", "upstream_overloaded", "upstream_timeout", "upstream_unavailable",
     "upstream_error", "bad_upstream_response"}
)


class ChatError(Exception):
    """A failure with everything the server needs to answer it.

    Args:
        type: the SPEC §4 error type, e.g. ``"rate_limited"``; it fixes :attr:`status`.
        message: human-readable text; an upstream's own message is passed on verbatim.
        provider: the provider that failed, when one did.
        upstream_status: the upstream's HTTP status, when it answered with one.
        retry_after: seconds the caller should wait, from the upstream's headers.
    """

    __slots__ = ("message", "provider", "retry_after", "status", "type", "upstream_status",
                 "usage")

    def __init__(
        self,
        type: str,
        message: str,
        *,
        provider: str | None = None,
        upstream_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.type = type
        self.status = ERROR_STATUS[type]
        self.message = message
        self.provider = provider
        self.upstream_status = upstream_status
        self.retry_after = retry_after
        self.usage: Usage | None = None
        """What the upstream reported having spent before it failed (OpenRouter's error
        chunk carries the call's usage), for a door to show beside the error."""

    @property
    def retryable(self) -> bool:
        """True when the next target of a fallback chain should be tried."""
        return self.type in RETRYABLE_TYPES

    @property
    def should_retry(self) -> bool:
        """Whether a client should send the same request again (SPEC §4 ``x-should-retry``).

        True for a wait that may end: 429, 503 and 504, and an upstream that could not be
        reached (502 ``upstream_unavailable``). False for everything else, so an upstream's
        401/402/403/404 (a 502 ``upstream_error``) is not retried three times by the OpenAI
        and Anthropic SDKs, which obey the header (providers.md §3.4).
        """
        return self.status in (429, 503, 504) or self.type == "upstream_unavailable"

    def to_dict(self) -> dict[str, object]:
        """The SPEC §4 body's inner object: ``{"type", "message", "provider"?, ...}``."""
        out: dict[str, object] = {"type": self.type, "message": self.message}
        if self.provider is not None:
            out["provider"] = self.provider
        if self.upstream_status is not None:
            out["upstream_status"] = self.upstream_status
        return out

    def __repr__(self) -> str:
        return (
            f"ChatError({self.type!r}, {self.message!r}, provider={self.provider!r}, "
            f"upstream_status={self.upstream_status!r}, retry_after={self.retry_after!r})"
        )


#: The longest wait passed on, in seconds: one day. Rate limits and quota windows that
#: matter here are minutes to hours; anything beyond a day is an upstream's nonsense.
MAX_RETRY_AFTER = 86400.0


def header_value(headers: Headers, name: str) -> str | None:
    """The first value of header ``name`` (case-insensitive), or None."""
    name = name.lower()
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def parse_retry_after(headers: Headers, now: float) -> float | None:
    """Seconds to wait, from ``retry-after-ms``, else ``Retry-After`` (seconds or HTTP date).

    ``retry-after-ms`` is OpenAI's millisecond form and wins when present (the OpenAI SDK
    reads it first: openai-python ``_base_client.py``). ``Retry-After`` is RFC 9110 §10.2.3:
    ``delay-seconds / HTTP-date``. ``now`` is the caller's wall clock (epoch seconds), needed
    only for the date form. Unparseable or negative values give None, never an error;
    a wait longer than :data:`MAX_RETRY_AFTER` is capped to it (400 digits of
    delay-seconds are a float infinity, which no caller can round).
    """
    raw_ms = header_value(headers, "retry-after-ms")
    if raw_ms is not None:
        try:
            ms = float(raw_ms)
        except ValueError:
            ms = math.nan
        if math.isfinite(ms) and ms >= 0:
            return min(ms / 1000.0, MAX_RETRY_AFTER)
    raw = header_value(headers, "retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    if raw.isascii() and raw.isdigit():  # RFC 9110 delay-seconds: 1*DIGIT, ASCII only
        return min(float(raw), MAX_RETRY_AFTER)
    when = _parse_http_date(raw)
    return None if when is None else min(max(0.0, when - now), MAX_RETRY_AFTER)


def retry_after_header(exc: ChatError) -> str | None:
    """The ``Retry-After`` value to answer ``exc`` with: :func:`parse_retry_after`'s inverse.

    SPEC §4 passes a wait on for 429 and 503 only, as whole seconds rounded up (RFC 9110
    delay-seconds is an integer, and rounding down would invite a retry that is too early).
    """
    if exc.retry_after is None or exc.status not in (429, 503):
        return None
    return str(max(0, math.ceil(exc.retry_after)))


_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
# RFC 9110 §5.6.7: IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), and the obsolete
# rfc850-date ("Sunday, 06-Nov-94 08:49:37 GMT") and asctime-date
# ("Sun Nov  6 08:49:37 1994") that recipients must also accept.
# Digits are [0-9], not \d: \d also matches other scripts' digits, which int() accepts.
# Compiled by the first :func:`_parse_http_date`, not by ``import chatproto``.
_IMF = r"[A-Za-z]{3}, ([0-9]{2}) ([A-Za-z]{3}) ([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT"
_RFC850 = r"[A-Za-z]+, ([0-9]{2})-([A-Za-z]{3})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT"
_ASCTIME = r"[A-Za-z]{3} ([A-Za-z]{3}) +([0-9]{1,2}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([0-9]{4})"
_compiled: list[re.Pattern[str]] = []
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _days_since_epoch(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's days_from_civil).

    Written out rather than ``calendar.timegm``: importing calendar (with datetime and
    locale) was 4 ms of chatproto's import time.
    """
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


def _parse_http_date(raw: str) -> float | None:
    """Epoch seconds of an HTTP-date, or None. (email.utils would pull in socket.)"""
    if not _compiled:
        _compiled.extend(re.compile(p) for p in (_IMF, _RFC850, _ASCTIME))
    imf, rfc850, asctime = _compiled
    if m := imf.fullmatch(raw):
        day, mon, year, hh, mm, ss = m.groups()
    elif m := rfc850.fullmatch(raw):
        day, mon, yy, hh, mm, ss = m.groups()
        year = str(1900 + int(yy) if int(yy) >= 70 else 2000 + int(yy))
    elif m := asctime.fullmatch(raw):
        mon, day, hh, mm, ss, year = m.groups()
    else:
        return None
    month = _MONTHS.get(mon.lower())
    if month is None:
        return None
    y, d, h, mi, sec = int(year), int(day), int(hh), int(mm), int(ss)
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    days_in_month = 29 if month == 2 and leap else _DAYS_IN_MONTH[month - 1]
    # An impossible date (31 Feb) is refused, not rolled over to 3 Mar.
    if not (1 <= d <= days_in_month and h < 24 and mi < 60 and sec < 61):
        return None
    return float(_days_since_epoch(y, month, d) * 86400 + h * 3600 + mi * 60 + sec)


def _type_for_status(status: int) -> str:
    if status in (400, 413, 422):
        return "upstream_rejected"
    if status == 429:
        return "rate_limited"
    if status == 503:
        return "upstream_overloaded"
    return "upstream_error"


#: Longest upstream error text passed on; bodies can be whole HTML pages.
MAX_MESSAGE = 500


def clip_message(text: str) -> str:
    """An upstream's error text on one line and at most :data:`MAX_MESSAGE` characters."""
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def error_from_upstream(
    provider: str,
    status: int,
    message: str,
    headers: Headers = (),
    *,
    now: float = 0.0,
) -> ChatError:
    """Map an upstream non-2xx answer to the SPEC §4 error, by status alone.

    Retry-After is carried only where SPEC §4 passes it on (429 and 503).
    """
    type_ = _type_for_status(status)
    retry_after = parse_retry_after(headers, now) if status in (429, 503) else None
    if not message:
        message = f"upstream answered HTTP {status}"
    return ChatError(
        type_, message, provider=provider, upstream_status=status, retry_after=retry_after
    )
