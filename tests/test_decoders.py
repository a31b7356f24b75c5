"""NDJSON lines and Server-Sent Events: same output however the bytes are split.

Every fixture is fed whole, byte by byte and split at every point; Hypothesis adds random
splits and random streams checked against a small, obviously correct reference parser
(whole input, ``re.split`` on line ends, WHATWG HTML §9.2.6 field rules) written below.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from helpers import Feedable, bytewise, cut_at, cuts, every_split, feed, outcome
from hypothesis import given, settings
from hypothesis import strategies as st

from chatproto import ChatError, LineDecoder, SSEDecoder, SSEEvent

T = TypeVar("T")

# ------------------------------------------------------------------ helpers


def assert_split_invariant(
    make: Callable[[], Feedable[Any]], data: bytes, expected: list[object]
) -> None:
    for how, chunks in every_split(data):
        assert feed(make(), chunks) == expected, how


def ref_lines(data: bytes) -> list[bytes]:
    """NDJSON: LF ends a line, surrounding whitespace is not content, blank lines skipped."""
    return [line.strip() for line in data.split(b"\n") if line.strip()]


def ref_sse(data: bytes) -> list[SSEEvent]:
    """The WHATWG event-stream algorithm over a whole input, lenient at end of input."""
    events: list[SSEEvent] = []
    buf: list[bytes] = []
    event = ""
    last_id: str | None = None
    if data.startswith(b"\xef\xbb\xbf"):  # UTF-8 decode strips one leading BOM
        data = data[3:]
    for line in [*re.split(rb"\r\n|\r|\n", data), b""]:
        if not line:
            if buf:
                events.append(SSEEvent(event or "message", b"\n".join(buf), last_id))
                buf = []
            event = ""
            continue
        if line.startswith(b":"):
            continue
        name, colon, value = line.partition(b":")
        if colon and value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            buf.append(value)
        elif name == b"event":
            event = value.decode("utf-8", "replace")
        elif name == b"id" and b"\0" not in value:
            last_id = value.decode("utf-8", "replace")
    return events


# ------------------------------------------------------------------ LineDecoder

LINE_FIXTURES = [
    (b'{"a":1}\n{"b":2}\n', [b'{"a":1}', b'{"b":2}'], "two-lines"),
    (b'{"a":1}\n{"b":2}', [b'{"a":1}', b'{"b":2}'], "last-unterminated"),
    (b'\n\n{"a":1}\n\n\n', [b'{"a":1}'], "blank-lines-skipped"),
    (b'{"a":1}\r\n{"b":2}\r\n', [b'{"a":1}', b'{"b":2}'], "crlf"),
    (b'  {"a":1} \t\n', [b'{"a":1}'], "whitespace-stripped"),
    (b'{"t":"a\rb"}\n', [b'{"t":"a\rb"}'], "lone-cr-is-not-a-line-end"),
    ('{"t":"é漢"}\n{"t":"🙂"}\n'.encode(), ['{"t":"é漢"}'.encode(), '{"t":"🙂"}'.encode()],
     "multibyte-utf8"),
    (b"", [], "empty"),
    (b"\n", [], "only-newline"),
]


@pytest.mark.parametrize(
    ("data", "expected"), [c[:2] for c in LINE_FIXTURES], ids=[c[2] for c in LINE_FIXTURES]
)
def test_lines_any_split(data: bytes, expected: list[bytes]) -> None:
    assert ref_lines(data) == expected  # the reference agrees with the fixture
    assert_split_invariant(LineDecoder, data, list(expected))


def test_lines_returned_as_they_complete() -> None:
    d = LineDecoder()
    assert d.feed(b'{"a"') == []
    assert d.feed(b":1}\n{") == [b'{"a":1}']
    assert d.feed(b"}\n") == [b"{}"]
    assert d.feed(b"") == []


def test_line_bound_is_exact() -> None:
    d = LineDecoder(max_line_bytes=16)
    assert d.feed(b"x" * 16) == []
    assert d.feed(b"\n") == [b"x" * 16]


@pytest.mark.parametrize("how", ["whole", "bytewise", "after-a-line"])
def test_long_unterminated_line_is_bad_upstream_response(how: str) -> None:
    d = LineDecoder(max_line_bytes=16, provider="ollama")
    data = b"x" * 17
    with pytest.raises(ChatError) as info:
        if how == "whole":
            d.feed(data)
        elif how == "bytewise":
            for i in range(len(data)):
                d.feed(data[i : i + 1])
        else:
            # The line before the over-long one is returned first; the next feed fails.
            assert d.feed(b"ok\n" + data) == [b"ok"]
            d.feed(b"more")
    err = info.value
    assert (err.type, err.status, err.provider) == ("bad_upstream_response", 502, "ollama")
    with pytest.raises(ChatError) as again:
        d.feed(b"")
    assert again.value is err


@pytest.mark.parametrize(
    "how",
    [
        "whole",
        "bytewise",
        "two-pieces",
    ],
)
def test_complete_line_over_the_bound_is_refused_however_it_arrives(how: str) -> None:
    data = b"x" * 20 + b"\n"
    chunks = {"whole": [data], "bytewise": [data[i : i + 1] for i in range(len(data))],
              "two-pieces": [data[:10], data[10:]]}[how]
    with pytest.raises(ChatError):
        feed(LineDecoder(max_line_bytes=8), chunks)


def test_lines_linear_time_on_a_long_line_fed_bytewise() -> None:
    """512 KiB in 1-byte chunks: quadratic rescanning would take minutes; this is ~0.3 s."""
    line = b"y" * (512 * 1024)
    d = LineDecoder()
    feed = d.feed
    for i in range(len(line)):
        assert not feed(line[i : i + 1])
    assert feed(b"\n") == [line]


# ------------------------------------------------------------------ SSEDecoder

def ev(data: bytes, event: str = "message", id: str | None = None) -> SSEEvent:
    return SSEEvent(event, data, id)


SSE_FIXTURES = [
    (b"data: hello\n\n", [ev(b"hello")], "one-event"),
    (b"data: a\n\ndata: b\n\n", [ev(b"a"), ev(b"b")], "two-events"),
    (b'data: {"x":1}\n\ndata: [DONE]\n\n', [ev(b'{"x":1}'), ev(b"[DONE]")], "openai-done"),
    (b"data: a\ndata: b\ndata: c\n\n", [ev(b"a\nb\nc")], "multi-line-data"),
    (b"data:x\n\n", [ev(b"x")], "no-space-after-colon"),
    (b"data:  x\n\n", [ev(b" x")], "only-one-space-removed"),
    (b"data\n\n", [ev(b"")], "data-without-colon-is-empty"),
    (b"data:\ndata:\n\n", [ev(b"\n")], "two-empty-data-lines"),
    (b": OPENROUTER PROCESSING\n\ndata: x\n\n", [ev(b"x")], "comment-keepalive"),
    (b"data: a\n: mid-event comment\ndata: b\n\n", [ev(b"a\nb")], "comment-inside-event"),
    (b"event: ping\ndata: x\n\ndata: y\n\n", [ev(b"x", "ping"), ev(b"y")],
     "event-name-resets-after-dispatch"),
    (b"event: error\ndata: {}\n\n", [ev(b"{}", "error")], "error-event"),
    (b"event: lonely\n\ndata: y\n\n", [ev(b"y")], "event-without-data-not-dispatched"),
    (b"id: 7\ndata: x\n\ndata: y\n\n", [ev(b"x", id="7"), ev(b"y", id="7")],
     "id-persists"),
    (b"id: 1\ndata: x\n\nid\ndata: y\n\n", [ev(b"x", id="1"), ev(b"y", id="")],
     "empty-id-resets"),
    (b"id: 1\ndata: x\n\nid: a\x00b\ndata: y\n\n", [ev(b"x", id="1"), ev(b"y", id="1")],
     "id-with-nul-ignored"),
    (b"retry: 500\nfoo: bar\ndata: x\n\n", [ev(b"x")], "retry-and-unknown-ignored"),
    (b"data: x", [ev(b"x")], "eof-dispatches-pending"),
    (b"data: x\n", [ev(b"x")], "eof-after-line-dispatches"),
    (b"\n\n\ndata: x\n\n\n\n", [ev(b"x")], "extra-blank-lines"),
    ("data: é漢🙂\n\n".encode(), [ev("é漢🙂".encode())], "multibyte-utf8"),
    (b"event: \xff\ndata: x\n\n", [ev(b"x", "\ufffd")], "bad-utf8-event-name-replaced"),
    # ``event:`` + one ``data:`` line, the Responses/Anthropic framing, in every variant
    (b"event: a.b\ndata: {}\n\nevent: c\ndata: [1]\n\n", [ev(b"{}", "a.b"), ev(b"[1]", "c")],
     "typed-events"),
    (b"event: \ndata: x\n\n", [ev(b"x")], "empty-event-name-is-message"),
    (b"event: a\n: comment\n\ndata: y\n\n", [ev(b"y")], "event-then-comment-not-dispatched"),
    (b"event: a\ndata:x\n\n", [ev(b"x", "a")], "event-then-data-without-space"),
    (b"event: a\nid: 3\n\ndata: y\n\n", [ev(b"y", id="3")], "event-then-id"),
    (b"", [], "empty"),
    (b": only a comment\n", [], "only-comment"),
    # A leading byte order mark (WHATWG HTML §9.2.6: UTF-8 decode strips one)
    (b"\xef\xbb\xbfdata: a\n\ndata: b\n\n", [ev(b"a"), ev(b"b")], "bom-then-events"),
    (b"\xef\xbb\xbfevent: e\ndata: a\n\n", [ev(b"a", "e")], "bom-then-typed-event"),
    (b"\xef\xbb\xbf: comment\ndata: a\n\n", [ev(b"a")], "bom-then-comment"),
    (b"\xef\xbb\xbf", [], "bom-only"),
    (b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\ndata: b\n\n", [ev(b"b")],
     "second-bom-is-a-field-name"),
    (b"data: \xef\xbb\xbfa\n\n", [ev(b"\xef\xbb\xbfa")], "bom-inside-data-kept"),
    (b"\xef\xbbdata: a\n\ndata: b\n\n", [ev(b"b")], "half-a-bom-is-content"),
    (b"\xef\xbb", [], "half-a-bom-then-end"),
]


def _with_line_ends(data: bytes, end: bytes) -> bytes:
    return data.replace(b"\n", end)


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
@pytest.mark.parametrize(
    ("data", "expected"), [c[:2] for c in SSE_FIXTURES], ids=[c[2] for c in SSE_FIXTURES]
)
def test_sse_any_split_any_line_end(data: bytes, expected: list[SSEEvent], end: bytes) -> None:
    data = _with_line_ends(data, end)
    assert ref_sse(data) == expected  # the reference agrees with the fixture
    assert_split_invariant(SSEDecoder, data, list(expected))


def test_sse_decoder_strips_a_leading_byte_order_mark() -> None:
    """WHATWG HTML §9.2.6: "The stream must then be decoded using UTF-8 decode", which
    strips one leading BOM. With a BOM before the first ``data:`` line, chatd reads the
    field name as ``\ufeffdata`` and silently drops the upstream's first event (its first
    words of text, or its ``message_start``), however the bytes are split."""
    data = b"\xef\xbb\xbfdata: one\n\ndata: two\n\n"
    for how, chunks in every_split(data):
        events = feed(SSEDecoder(), chunks)
        assert [e.data for e in events] == [b"one", b"two"], how


def test_sse_a_bom_split_across_feeds_then_the_end() -> None:
    """The BOM's first bytes held back while it may still be one are content when the
    body ends there, and a feed that completes a BOM alone returns nothing (not the end)."""
    d = SSEDecoder()
    assert d.feed(b"\xef") == []
    assert d.feed(b"\xbb\xbf") == []
    assert d.feed(b"data: x\n\n") == [ev(b"x")]
    d = SSEDecoder()
    assert d.feed(b"\xef") == []
    assert d.feed(b"") == []
    with pytest.raises(RuntimeError):
        d.feed(b"")


def test_sse_mixed_line_ends() -> None:
    data = b"data: a\r\ndata: b\rdata: c\n\r\nevent: e\rdata: d\r\r"
    expected = [ev(b"a\nb\nc"), ev(b"d", "e")]
    assert_split_invariant(SSEDecoder, data, list(expected))


def test_sse_cr_then_lf_across_chunks_is_one_line_end() -> None:
    d = SSEDecoder()
    assert d.feed(b"data: a\r") == []
    assert d.feed(b"\n\r") == []
    assert d.feed(b"\n") == [ev(b"a")]
    assert d.feed(b"") == []


def test_sse_events_returned_as_they_complete() -> None:
    d = SSEDecoder()
    assert d.feed(b"data: a\n") == []
    assert d.feed(b"\ndata: b\n\ndata: ") == [ev(b"a"), ev(b"b")]
    assert d.feed(b"c\n\n") == [ev(b"c")]


@pytest.mark.parametrize("how", ["whole", "bytewise"])
@pytest.mark.parametrize(
    "data",
    [b"data: " + b"x" * 100, b"data: xx\n" * 40, b"event: e\ndata: xx\r" * 40],
    ids=["long-unterminated-line", "many-data-lines", "many-data-lines-cr"],
)
def test_sse_bound_is_bad_upstream_response(data: bytes, how: str) -> None:
    d = SSEDecoder(max_event_bytes=64, provider="kimi")
    with pytest.raises(ChatError) as info:
        feed(d, [data] if how == "whole" else bytewise(data))
    err = info.value
    assert (err.type, err.status, err.provider) == ("bad_upstream_response", 502, "kimi")


@pytest.mark.parametrize("end", [b"\n", b"\r"], ids=["LF", "CR"])
def test_sse_complete_event_over_the_bound_is_refused(end: bytes) -> None:
    data = (b"data: " + b"x" * 100 + b"\n\n").replace(b"\n", end)
    for _how, chunks in every_split(data):
        with pytest.raises(ChatError):
            feed(SSEDecoder(max_event_bytes=64), chunks)


@pytest.mark.parametrize("size", range(20, 70, 3))
def test_sse_typed_event_near_the_bound_is_the_same_at_every_split(size: int) -> None:
    """``event:`` + ``data:`` blocks around the bound: the whole-block path and the
    line-by-line one agree on which are refused."""
    data = b"event: e\ndata: " + b"x" * size + b"\n\n"
    outcomes: set[tuple[Any, ...]] = set()
    for _how, chunks in every_split(data):
        try:
            outcomes.add(tuple(feed(SSEDecoder(max_event_bytes=64), chunks)))
        except ChatError:
            outcomes.add(("refused",))
    assert len(outcomes) == 1, outcomes


@pytest.mark.parametrize(
    ("make", "data", "before"),
    [
        (lambda: LineDecoder(max_line_bytes=16), b"a\nb\n" + b"x" * 20 + b"\nc\n",
         [b"a", b"b"]),
        (lambda: LineDecoder(max_line_bytes=16), b"a\nb\n" + b"x" * 20, [b"a", b"b"]),
        (lambda: SSEDecoder(max_event_bytes=16), b"data: a\n\ndata: b\n\ndata: "
         + b"x" * 20 + b"\n\ndata: c\n\n", [ev(b"a"), ev(b"b")]),
        (lambda: SSEDecoder(max_event_bytes=16), b"data: a\r\n\r\ndata: b\n\n"
         + b"data: xxxxxxxx\n" * 3, [ev(b"a"), ev(b"b")]),
    ],
    ids=["lines-complete", "lines-unterminated", "sse-lf", "sse-many-data-lines-crlf"],
)
def test_what_precedes_an_over_long_item_comes_first_at_every_split(
    make: Callable[[], Feedable[Any]], data: bytes, before: list[object]
) -> None:
    for how, chunks in every_split(data):
        d = make()
        got, err = outcome(d, chunks)
        assert got == before, how
        assert err is not None and err.type == "bad_upstream_response", how
        with pytest.raises(ChatError) as again:
            d.feed(b"x")
        assert again.value is err, how


def test_sse_bound_counts_one_event_not_the_stream() -> None:
    """Many small events add up to far more than the bound; each is fine on its own."""
    data = b"data: xxxxxxxx\n\n" * 100
    assert feed(SSEDecoder(max_event_bytes=64), [data]) == [ev(b"xxxxxxxx")] * 100


def test_sse_linear_time_on_a_long_event_fed_bytewise() -> None:
    payload = b"z" * (512 * 1024)
    data = b"data: " + payload + b"\n\n"
    d = SSEDecoder()
    out: list[SSEEvent] = []
    feed = d.feed
    for i in range(len(data)):
        out += feed(data[i : i + 1])
    assert out == [ev(payload)]


# ------------------------------------------------------------------ end of input

AFTER_EOF = [b"", b"x", b"x\n", b"data: x\n\n", b"a\r\n"]


@pytest.mark.parametrize(
    ("decoder", "data"),
    [
        pytest.param(cls, data, id=f"{cls.__name__}-{data!r}")
        for cls in (LineDecoder, SSEDecoder)
        for data in AFTER_EOF
    ],
)
def test_feed_after_end_is_runtime_error(
    decoder: type[LineDecoder] | type[SSEDecoder], data: bytes
) -> None:
    d = decoder()
    d.feed(b"data: a\n")
    d.feed(b"")
    with pytest.raises(RuntimeError):
        d.feed(data)


# ------------------------------------------------------------------ properties

SSE_LINES = st.sampled_from(
    [b"data: x", b"data: {\"k\": \"\xc3\xa9\"}", b"data:", b"data", b"data:  sp", b"event: e",
     b"event:", b"id: 1", b"id", b"id: \x00", b": keep-alive", b":", b"retry: 9", b"foo: bar",
     b"", b"", b"data: [DONE]"]
)
LINE_ENDS = st.sampled_from([b"\n", b"\r\n", b"\r"])
CUTS = cuts(40)


@st.composite
def sse_streams(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(st.tuples(SSE_LINES, LINE_ENDS), max_size=40))
    return b"".join(line + end for line, end in lines) + draw(st.sampled_from([b"", b"data: t"]))


@settings(max_examples=300, deadline=None)
@given(data=sse_streams(), cuts=CUTS)
def test_sse_random_streams_match_reference_at_random_splits(data: bytes, cuts: list[int]) -> None:
    assert feed(SSEDecoder(), cut_at(data, cuts)) == ref_sse(data)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=600), cuts=CUTS)
def test_sse_random_bytes_match_reference(data: bytes, cuts: list[int]) -> None:
    assert feed(SSEDecoder(), cut_at(data, cuts)) == ref_sse(data)


@settings(max_examples=300, deadline=None)
@given(
    data=st.lists(
        st.sampled_from([b'{"a":1}', b"", b" ", b"\r", b"\t{}", b"\xff", b"\n"]), max_size=60
    ).map(lambda parts: b"\n".join(parts)),
    cuts=CUTS,
)
def test_lines_random_streams_match_reference_at_random_splits(
    data: bytes, cuts: list[int]
) -> None:
    assert feed(LineDecoder(), cut_at(data, cuts)) == ref_lines(data)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=600), cuts=CUTS)
def test_lines_random_bytes_match_reference(data: bytes, cuts: list[int]) -> None:
    assert feed(LineDecoder(), cut_at(data, cuts)) == ref_lines(data)


def _lines_or_chat_error(make: Callable[[], T], feed: Callable[[T, list[bytes]], object],
                         chunks: list[bytes]) -> None:
    try:
        out = feed(make(), chunks)
    except ChatError as exc:
        assert exc.type == "bad_upstream_response"
    else:
        assert isinstance(out, list)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=400), cuts=CUTS, limit=st.integers(min_value=1, max_value=64))
def test_random_bytes_give_output_or_chat_error_only(
    data: bytes, cuts: list[int], limit: int
) -> None:
    """With a tiny bound, anything may be refused, but only ever as a ChatError."""
    chunks = cut_at(data, cuts)
    _lines_or_chat_error(lambda: LineDecoder(max_line_bytes=limit), feed, chunks)
    _lines_or_chat_error(lambda: SSEDecoder(max_event_bytes=limit), feed, chunks)
