"""Incremental framing decoders: NDJSON lines and Server-Sent Events.

Strategy: bytes arrive split anywhere (mid-line, mid-UTF-8 character). Each decoder keeps
one ``bytearray``, remembers how far it has already searched for a line end (so a long line
fed byte by byte costs linear, not quadratic, time), deletes consumed bytes in place, and
refuses to hold more than ``max_line_bytes`` of an unfinished line or event: past that the
upstream is misbehaving and the stream fails with ``bad_upstream_response`` instead of
growing memory without bound. ``feed(b"")`` means end of input.

The decoders keep the stream lifecycle's rule for errors (:mod:`._lifecycle`): the lines
or events completed before an over-long one are returned first and the error is raised by
the next feed, and then by every feed after; so what comes before the error never depends
on how the bytes were split. Feeding after the end raises
:class:`~chatproto._lifecycle.StreamClosedError`.

The default bound, 1 MiB, is far above any chunk a provider sends (an NDJSON chunk or SSE
event is a few hundred bytes; a whole Ollama tool call arrives in one line and stays in the
kilobytes) and keeps 1,000 concurrent streams within a bounded worst case.
"""

from __future__ import annotations

from typing import NamedTuple, TypeVar

import orjson

from ._errors import ChatError
from ._lifecycle import StreamClosedError

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "LineDecoder",
    "SSEDecoder",
    "SSEEvent",
    "dumps",
    "encode_body",
    "loads",
]

DEFAULT_MAX_LINE_BYTES = 1 << 20

_T = TypeVar("_T")


def loads(data: bytes | str, provider: str | None = None) -> object:
    """Decode JSON from an upstream; malformed input is ``bad_upstream_response``."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ChatError(
            "bad_upstream_response", f"upstream sent malformed JSON: {exc}", provider=provider
        ) from None


dumps = orjson.dumps
"""Encode JSON to compact UTF-8 bytes."""


def encode_body(body: object, provider: str) -> bytes:
    """An upstream request body as JSON; one that cannot be encoded (a tool or schema
    holding a non-JSON value, or nested past the 254 levels orjson writes) is the
    client's ``invalid_request``."""
    try:
        return dumps(body)
    except TypeError as exc:
        raise ChatError("invalid_request", f"request cannot be encoded as JSON: {exc}",
                        provider=provider) from None


def _too_long(limit: int, provider: str | None) -> ChatError:
    return ChatError(
        "bad_upstream_response",
        f"upstream sent a line or event longer than {limit} bytes",
        provider=provider,
    )


class _Lines:
    """Shared line splitting: linear time, bounded, any split point.

    Unfinished input is kept as a list of parts that contain no line end, joined only when a
    line end arrives, so a long line fed byte by byte is copied once, not once per byte.
    CR and CRLF line ends are normalised to LF when ``cr`` is set (SSE allows all three);
    a CR as the very last byte is held back, since it may be half of a split CRLF.
    """

    __slots__ = ("_cr", "_done", "_error", "_limit", "_parts", "_pending", "_provider")

    def __init__(self, limit: int, provider: str | None, cr: bool) -> None:
        self._parts: list[bytes] = []
        self._pending = 0
        self._limit = limit
        self._provider = provider
        self._cr = cr
        self._done = False
        """No more input is taken: the end was fed, or the stream failed (``_error``)."""
        self._error: ChatError | None = None

    def closed(self) -> Exception:
        """What a feed after :attr:`_done` raises: the failure again, or a caller bug."""
        if self._error is not None:
            return self._error.with_traceback(None)
        return StreamClosedError("feed() called after end of input")

    def fail(self, error: ChatError, found: list[_T]) -> list[_T]:
        """Fail the stream; ``found`` (complete lines before the failure) is returned
        first and the error raised by the next call, or at once if there are none."""
        self._done = True
        self._error = error
        self._parts.clear()
        if found:
            return found
        raise error

    def split(self, data: bytes) -> list[bytes]:
        """Complete lines in ``data`` (``b""`` = end: the unfinished tail is a line too)."""
        if self._done:
            raise self.closed()
        if not data:
            self._done = True
            tail = b"".join(self._parts)
            self._parts.clear()
            if self._cr and b"\r" in tail:
                tail = tail.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
                return tail.split(b"\n")
            return [tail] if tail else []
        if self._cr and (b"\r" in data or (self._parts and self._parts[-1][-1:] == b"\r")):
            if self._parts:
                data = b"".join(self._parts) + data
                self._parts.clear()
                self._pending = 0
            held = data[-1:] == b"\r"
            if held:
                data = data[:-1]
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if held:
                data += b"\r"
        if b"\n" not in data:
            self._parts.append(data)
            self._pending += len(data)
            if self._pending > self._limit:
                return self.fail(_too_long(self._limit, self._provider), [])
            return []
        if self._parts:
            self._parts.append(data)
            data = b"".join(self._parts)
            self._parts.clear()
        lines = data.split(b"\n")
        tail = lines.pop()
        # A complete line over the bound is refused too, so the outcome never depends on
        # how the bytes were split; the lines before it are still returned.
        limit = self._limit
        if len(data) > limit and max(map(len, lines)) > limit:
            first = next(i for i, line in enumerate(lines) if len(line) > limit)
            return self.fail(_too_long(limit, self._provider), lines[:first])
        if tail:
            if len(tail) > limit:
                return self.fail(_too_long(limit, self._provider), lines)
            self._parts.append(tail)
        self._pending = len(tail)
        return lines


class LineDecoder:
    """Splits a byte stream into ``\\n``-terminated lines (NDJSON framing).

    Yields each non-blank line without its terminator or surrounding whitespace. At end of
    input a final unterminated line is yielded as well: Ollama's last object is
    newline-terminated, but a proxy in between may drop it.
    """

    __slots__ = ("_lines",)

    def __init__(
        self, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, provider: str | None = None
    ) -> None:
        self._lines = _Lines(max_line_bytes, provider, cr=False)

    @property
    def error(self) -> ChatError | None:
        """The failure, once the stream failed; every later feed raises it."""
        return self._lines._error

    def feed(self, data: bytes) -> list[bytes]:
        lines = self._lines
        if data[-1:] == b"\n" and not lines._parts and not lines._done \
                and data.count(b"\n") == 1 and len(data) <= lines._limit:
            # Fast path: one whole line, the common shape of an NDJSON chunk.
            line = data.strip()
            return [line] if line else []
        return [line for line in map(bytes.strip, lines.split(data)) if line]


class SSEEvent(NamedTuple):
    """One dispatched Server-Sent Event (WHATWG HTML §9.2.6).

    A named tuple rather than a dataclass: one is built per upstream chunk, and a tuple
    costs a third of a frozen dataclass to make (the stream budget is 3 us a chunk).
    """

    event: str
    data: bytes
    """The ``data:`` lines joined by ``\\n``; bytes, so JSON decoding needs no copy."""
    id: str | None = None


# Builds an SSEEvent without NamedTuple's Python-level __new__ (a third of the cost).
_new_event = tuple.__new__


_BOM = b"\xef\xbb\xbf"
"""U+FEFF in UTF-8."""


class SSEDecoder:
    """The WHATWG event-stream parser, incremental and bounded.

    Lines end in CRLF, LF or CR; a line starting with ``:`` is a comment (OpenRouter sends
    ``: OPENROUTER PROCESSING`` keep-alives, per openrouter.ai/docs/api-reference/streaming);
    ``data``, ``event`` and ``id`` fields accumulate until a blank line dispatches the event;
    unknown fields and ``retry`` are ignored; an event with no data is not dispatched.
    At end of input a pending event is dispatched even without its blank line (lenient:
    some servers close right after the last ``data:`` line). One byte order mark at the
    very start is dropped: WHATWG HTML §9.2.6 says "the stream must then be decoded using
    UTF-8 decode", which strips a leading U+FEFF, so ``\ufeffdata: ...`` is a ``data``
    line, not an unknown field that loses the first event.
    """

    __slots__ = ("_data", "_event", "_head", "_id", "_limit", "_lines", "_provider", "_size")

    def __init__(
        self, *, max_event_bytes: int = DEFAULT_MAX_LINE_BYTES, provider: str | None = None
    ) -> None:
        self._lines = _Lines(max_event_bytes, provider, cr=True)
        self._limit = max_event_bytes
        self._provider = provider
        self._data: list[bytes] = []
        self._size = 0
        self._event = ""
        self._id: str | None = None
        self._head: bytes | None = b""
        """The stream's first bytes while they may still be a BOM; None once past it."""

    @property
    def error(self) -> ChatError | None:
        """The failure, once the stream failed; every later feed raises it."""
        return self._lines._error

    def feed(self, data: bytes) -> list[SSEEvent]:
        lines = self._lines
        if lines._done:
            raise lines.closed()
        if self._head is not None:  # only the first feeds; one check per feed after them
            begun = self._begin(data)
            if isinstance(begun, list):
                return begun
            data = begun
        fast = data and not (lines._parts or self._data or self._event) and b"\r" not in data
        # Fast paths, at an event boundary with LF-only framing. Most feeds are exactly one
        # ``data: ...`` event; otherwise each block between blank lines usually is.
        if fast and data.count(b"\n") == 2 and data[-2:] == b"\n\n" and data[:6] == b"data: ":
            if len(data) > self._limit:
                return lines.fail(_too_long(self._limit, self._provider), [])
            return [_new_event(SSEEvent, ("message", data[6:-2], self._id))]
        out: list[SSEEvent] = []
        try:
            if fast:
                blocks = data.split(b"\n\n")
                tail = blocks.pop()
                half = self._limit >> 1
                for block in blocks:
                    if block[:6] == b"data: " and b"\n" not in block:
                        if len(block) > self._limit:
                            raise _too_long(self._limit, self._provider)
                        out.append(_new_event(SSEEvent, ("message", block[6:], self._id)))
                    elif block[:7] == b"event: " and block.count(b"\n") == 1 \
                            and len(block) <= half:
                        # ``event: <name>`` then one ``data:`` line: how OpenAI Responses
                        # and Anthropic frame every event. Short enough that no bound
                        # can apply, so the outcome is the line-by-line path's.
                        name, _, line = block.partition(b"\n")
                        if line[:6] == b"data: ":
                            kind = name[7:].decode("utf-8", "replace") or "message"
                            out.append(_new_event(SSEEvent, (kind, line[6:], self._id)))
                        else:
                            self._lines_in(lines.split(block + b"\n\n"), out)
                    else:
                        self._lines_in(lines.split(block + b"\n\n"), out)
                if tail:
                    self._lines_in(lines.split(tail), out)
                return out
            found = lines.split(data)
            if not data:
                found.append(b"")
            self._lines_in(found, out)
        except ChatError as exc:
            # The events dispatched before the failure are returned first (see the module).
            self._data = []
            return lines.fail(exc, out)
        return out

    def _begin(self, data: bytes) -> bytes | list[SSEEvent]:
        """The stream's first bytes without a leading BOM (which may be split across
        feeds), or the events when there is nothing more to feed yet (``[]`` while the
        bytes so far are a BOM's prefix)."""
        assert self._head is not None
        head = self._head + data
        if data and len(head) < len(_BOM) and _BOM.startswith(head):
            self._head = head
            return []
        self._head = None
        if head[:3] == _BOM:
            head = head[3:]
        if data:
            return head or []  # b"" would mean the end
        if not head:
            return b""
        # The body ended on one or two bytes of what looked like a BOM: they are content.
        out = self.feed(head)
        return out if self.error is not None else out + self.feed(b"")

    def _lines_in(self, found: list[bytes], out: list[SSEEvent]) -> None:
        for line in found:
            if not line:
                if self._data:
                    data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
                    out.append(SSEEvent(self._event or "message", data, self._id))
                    self._data = []
                    self._size = 0
                self._event = ""
            elif line[0] != 58:  # b":" starts a comment
                self._field(line)

    def _field(self, line: bytes) -> None:
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
            self._size += len(value) + 1
            if self._size > self._limit:
                raise _too_long(self._limit, self._provider)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id" and b"\0" not in value:
            self._id = value.decode("utf-8", "replace")
