"""What the stream tests share: feeding a parser its input cut in every way that matters.

Strategy: SPEC's parser contract is ``feed(bytes) -> list[...]`` with ``b""`` meaning end,
and the same input must give the same output however the network cuts it. Every parser
test (decoders, codecs, the front doors read back by the codecs) checks that the same way:
the input whole, byte by byte, cut in two at every point, and cut at random points drawn by
Hypothesis. Those ways of cutting, and the one feeding loop, are written here once so that
each test file states only its cases and its assertions.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import pairwise
from typing import Any, Protocol, TypeVar

from hypothesis import strategies as st

from chatproto import ChatError

__all__ = [
    "WEATHER_TOOL",
    "Feedable",
    "bytewise",
    "cut_at",
    "cuts",
    "every_split",
    "feed",
    "json_values",
    "outcome",
    "steps",
]

T = TypeVar("T")

#: A Chat-shaped function tool, the one the codec and door tests send.
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


class Feedable(Protocol[T]):
    """Anything with the parser API: a decoder, a codec's stream parser."""

    def feed(self, data: bytes, /) -> list[T]: ...

    @property
    def error(self) -> ChatError | None: ...


def feed(parser: Feedable[T], chunks: Iterable[bytes]) -> list[T]:
    """Feed every non-empty chunk (an empty one would mean end), then the end; all output."""
    out: list[T] = []
    for chunk in chunks:
        if chunk:
            out.extend(parser.feed(chunk))
    out.extend(parser.feed(b""))
    return out


def outcome(
    parser: Feedable[T], chunks: Iterable[bytes]
) -> tuple[list[T], ChatError | None]:
    """Like :func:`feed`, but a ChatError ends the feeding and is returned with the output
    so far. A feed that completes events and then fails returns them and raises on the next
    feed (chatproto/_lifecycle.py); so after the end, a parser whose ``error`` is set is fed
    once more, as a relay would, and must raise that error."""
    out: list[T] = []
    try:
        for chunk in chunks:
            if chunk:
                out.extend(parser.feed(chunk))
        out.extend(parser.feed(b""))
        if parser.error is not None:
            parser.feed(b"")
            raise AssertionError("a failed parser's next feed did not raise")
    except ChatError as err:
        assert err is parser.error, "the error raised is not the parser's error"
        return out, err
    return out, None


def bytewise(data: bytes) -> list[bytes]:
    """``data`` one byte a chunk."""
    return [data[i : i + 1] for i in range(len(data))]


def steps(data: bytes, step: int) -> list[bytes]:
    """``data`` in chunks of ``step`` bytes (the last one shorter)."""
    return [data[i : i + step] for i in range(0, len(data), step)]


def every_split(data: bytes, *, stride: int = 1) -> Iterator[tuple[str, list[bytes]]]:
    """``(label, chunks)``: whole, byte by byte, then cut in two at every ``stride``-th
    point from 1; the label says which, for the assertion message."""
    yield "whole", [data]
    yield "bytewise", bytewise(data)
    for i in range(1, len(data), stride):
        yield f"split@{i}", [data[:i], data[i:]]


def cuts(max_size: int = 12) -> st.SearchStrategy[list[int]]:
    """Random cut points for :func:`cut_at` (any size: they are taken modulo the length)."""
    return st.lists(st.integers(min_value=0), max_size=max_size)


def cut_at(data: bytes, points: Iterable[int]) -> list[bytes]:
    """``data`` cut at ``points`` (each modulo ``len(data) + 1``), no piece empty."""
    bounds = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in pairwise(bounds)]


LEAVES: st.SearchStrategy[Any] = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
)


def json_values(
    keys: Iterable[str] | st.SearchStrategy[str],
    *,
    leaves: st.SearchStrategy[Any] = LEAVES,
    max_leaves: int = 8,
    max_size: int | None = None,
) -> st.SearchStrategy[Any]:
    """JSON-like values whose objects use ``keys``: the shapes a fuzz test throws at a
    parser, close enough to the real ones to reach past its first type check."""
    names = keys if isinstance(keys, st.SearchStrategy) else st.sampled_from(list(keys))
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=3)
        | st.dictionaries(names, inner, max_size=max_size),
        max_leaves=max_leaves,
    )

