"""SPEC §4: upstream status -> error type and status; Retry-After; the error body."""

from __future__ import annotations

import calendar
import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatproto import ERROR_STATUS, ChatError, error_from_upstream, parse_retry_after

# upstream status -> (chatd status, type); by status alone, never by body text.
STATUS_TABLE = [
    (400, 400, "upstream_rejected"),
    (413, 400, "upstream_rejected"),
    (422, 400, "upstream_rejected"),
    (429, 429, "rate_limited"),
    (503, 503, "upstream_overloaded"),
    (401, 502, "upstream_error"),
    (402, 502, "upstream_error"),
    (403, 502, "upstream_error"),
    (404, 502, "upstream_error"),
    (408, 502, "upstream_error"),
    (500, 502, "upstream_error"),
    (502, 502, "upstream_error"),
    (504, 502, "upstream_error"),
    (599, 502, "upstream_error"),
]


@pytest.mark.parametrize(
    ("upstream", "status", "type_"), STATUS_TABLE, ids=[str(c[0]) for c in STATUS_TABLE]
)
def test_status_table(upstream: int, status: int, type_: str) -> None:
    err = error_from_upstream("kimi", upstream, "the upstream's words")
    assert (err.status, err.type, err.upstream_status, err.provider) == (
        status, type_, upstream, "kimi"
    )
    assert err.message == "the upstream's words"


@pytest.mark.parametrize(
    "message", ["rate limit exceeded", "model not found", "overloaded", "invalid api key"]
)
def test_body_text_never_changes_the_classification(message: str) -> None:
    assert error_from_upstream("p", 500, message).type == "upstream_error"
    assert error_from_upstream("p", 400, message).type == "upstream_rejected"


def test_empty_message_gets_a_default_naming_the_status() -> None:
    assert "429" in error_from_upstream("p", 429, "").message


@pytest.mark.parametrize("upstream", [429, 503])
def test_retry_after_passed_on_for_429_and_503(upstream: int) -> None:
    err = error_from_upstream("p", upstream, "x", [("Retry-After", "7")])
    assert err.retry_after == 7.0


@pytest.mark.parametrize("upstream", [400, 402, 500, 502])
def test_retry_after_not_carried_for_other_statuses(upstream: int) -> None:
    err = error_from_upstream("p", upstream, "x", [("Retry-After", "7"), ("retry-after-ms", "5")])
    assert err.retry_after is None


def test_retry_after_date_uses_the_given_now() -> None:
    headers = [("retry-after", "Sun, 06 Nov 1994 08:49:37 GMT")]
    err = error_from_upstream("p", 503, "x", headers, now=784111777.0 - 12)
    assert err.retry_after == 12.0


IMF_EPOCH = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT, the RFC 9110 example

RETRY_AFTER = [
    ([("Retry-After", "120")], 0.0, 120.0, "seconds"),
    ([("Retry-After", " 3 ")], 0.0, 3.0, "seconds-padded"),
    ([("Retry-After", "0")], 0.0, 0.0, "zero"),
    ([("RETRY-AFTER", "5")], 0.0, 5.0, "name-case-insensitive"),
    ([("Retry-After", "1"), ("Retry-After", "9")], 0.0, 1.0, "first-value-wins"),
    ([("Retry-After", "Sun, 06 Nov 1994 08:49:37 GMT")], IMF_EPOCH - 30, 30.0, "imf-fixdate"),
    ([("Retry-After", "Sunday, 06-Nov-94 08:49:37 GMT")], IMF_EPOCH - 30, 30.0, "rfc850"),
    ([("Retry-After", "Sun Nov  6 08:49:37 1994")], IMF_EPOCH - 30, 30.0, "asctime"),
    ([("Retry-After", "Sun, 06 Nov 1994 08:49:37 GMT")], IMF_EPOCH + 100, 0.0, "date-past"),
    ([("retry-after-ms", "1500")], 0.0, 1.5, "ms"),
    ([("Retry-After", "9"), ("retry-after-ms", "250")], 0.0, 0.25, "ms-wins"),
    ([("retry-after-ms", "soon"), ("Retry-After", "4")], 0.0, 4.0, "bad-ms-falls-back"),
    ([("retry-after-ms", "-1"), ("Retry-After", "4")], 0.0, 4.0, "negative-ms-falls-back"),
    ([("retry-after-ms", "nan"), ("Retry-After", "4")], 0.0, 4.0, "nan-ms-falls-back"),
    ([("retry-after-ms", "inf")], 0.0, None, "inf-ms"),
    ([], 0.0, None, "absent"),
    ([("Retry-After", "")], 0.0, None, "empty"),
    ([("Retry-After", "soon")], 0.0, None, "garbage"),
    ([("Retry-After", "-5")], 0.0, None, "negative"),
    ([("Retry-After", "1.5")], 0.0, None, "fraction-not-delay-seconds"),
    ([("Retry-After", "1e3")], 0.0, None, "exponent"),
    ([("Retry-After", "Sun, 06 Nov 1994 25:49:37 GMT")], 0.0, None, "hour-25"),
    ([("Retry-After", "Sun, 06 Foo 1994 08:49:37 GMT")], 0.0, None, "bad-month"),
    ([("Retry-After", "Sun, 06 Nov 1994 08:49:37 PST")], 0.0, None, "not-gmt"),
    ([("Retry-After", "\u0661\u0662")], 0.0, None, "arabic-indic-digits"),
    ([("Retry-After", "\u00b2")], 0.0, None, "superscript-digit"),
    ([("Retry-After", "Sun, 31 Feb 1994 08:49:37 GMT")], 0.0, None, "feb-31"),
    ([("Retry-After", "9" * 400)], 0.0, 86400.0, "huge-seconds-capped-at-a-day"),
    ([("retry-after-ms", "1e308")], 0.0, 86400.0, "huge-ms-capped-at-a-day"),
    ([("Retry-After", "Fri, 31 Dec 9999 23:59:59 GMT")], 0.0, 86400.0, "far-date-capped"),
]

@pytest.mark.parametrize(
    ("headers", "now", "expected"),
    [
        pytest.param(*c[:3], id=c[3]) for c in RETRY_AFTER
    ],
)
def test_parse_retry_after(
    headers: list[tuple[str, str]], now: float, expected: float | None
) -> None:
    assert parse_retry_after(headers, now) == expected


def test_to_dict_minimal_and_full() -> None:
    assert ChatError("invalid_request", "bad").to_dict() == {
        "type": "invalid_request", "message": "bad"
    }
    err = ChatError("rate_limited", "slow down", provider="kimi", upstream_status=429,
                    retry_after=3.0)
    assert err.to_dict() == {
        "type": "rate_limited", "message": "slow down", "provider": "kimi",
        "upstream_status": 429,
    }
    assert err.status == 429
    assert str(err) == "slow down"


@pytest.mark.parametrize(("type_", "status"), sorted(ERROR_STATUS.items()))
def test_every_type_has_its_spec_status(type_: str, status: int) -> None:
    assert ChatError(type_, "m").status == status


def test_unknown_type_is_a_bug_not_a_status() -> None:
    with pytest.raises(KeyError):
        ChatError("no_such_type", "m")


@pytest.mark.parametrize(
    ("type_", "retryable"),
    [("rate_limited", True), ("upstream_timeout", True), ("upstream_error", True),
     ("invalid_request", False), ("upstream_rejected", False),
     ("provider_not_registered", False)],
)
def test_retryable_types(type_: str, retryable: bool) -> None:
    assert ChatError(type_, "m").retryable is retryable


@given(st.datetimes(min_value=datetime.datetime(1970, 1, 1),
                    max_value=datetime.datetime(9999, 12, 31)))
def test_http_date_epoch_matches_the_calendar(when: datetime.datetime) -> None:
    """The hand-written date arithmetic agrees with calendar.timegm on every date."""
    raw = when.strftime("%a, %d %b %Y %H:%M:%S GMT")
    expected = calendar.timegm(when.replace(microsecond=0).timetuple())
    # "now" 30 s before the date: the wait is exactly 30 s only if the epochs agree.
    assert parse_retry_after([("Retry-After", raw)], now=expected - 30.0) == 30.0


@pytest.mark.parametrize("raw", ["Sun, \u0660\u0666 Nov 1994 08:49:37 GMT",
                                 "Sun, 06 Nov \u0661\u0669\u0669\u0664 08:49:37 GMT"],
                         ids=["arabic-indic-day", "arabic-indic-year"])
def test_http_date_digits_are_ascii(raw: str) -> None:
    assert parse_retry_after([("Retry-After", raw)], now=0.0) is None
