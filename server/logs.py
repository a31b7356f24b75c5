"""chatd's log output: one place where no client or upstream text can forge a line.

Strategy: log calls across chatd pass client- and upstream-supplied text as arguments
(a request path, an upstream's error message, a model name an upstream quotes), and a
``%0a`` in a path arrives decoded as a newline. Rather than trusting every call site to
escape its arguments, the one handler chatd installs formats records with
:class:`EscapingFormatter`: after the message is built, every control character in it
(C0, DEL, C1, and the Unicode line and paragraph separators) is written as a visible
escape (``\\n``, ``\\x1b``, ``\\u2028``), so a record is always exactly one line. A traceback
or stack attached to a record keeps its own line structure, but every one of its lines is
indented and escaped the same way: a line that starts at column 0 is always the start of
a record, whatever an exception message contains. Third-party loggers (hypercorn, asyncio,
trio) go through the same handler.

One more guard lives here because it is about the log's own health: when the process runs
out of file descriptors, asyncio's accept loop reports every failed ``accept()`` with a
traceback, up to a backlog's worth of times per wakeup (114 MB of log in 25 s were
measured), and trio's ``serve_listeners`` ten times a second. :class:`AcceptErrorThrottle`
lets one such report through per interval, without its traceback, saying how many it held
back.

``log_format = "json"`` (SPEC §5) swaps the formatter for :class:`JsonFormatter`: each
record is one JSON object on one line, its strings escaped by the same :func:`escape`
first (so even a decoded value holds no control character), a traceback a string field.
A record may carry structured fields (``extra={"fields": {...}}``, the request line of
:mod:`server.observe`), which become top-level keys beside ``ts``, ``level``, ``logger``,
``pid`` and ``msg``.

The request line is written once per request, so it has a short path of its own
(:class:`EventWriter`): while chatd's handler is the only one its records reach, the line
is formatted here exactly as the handler's formatter would format it, with the same
escaping, and written to the handler's stream under its lock, without a ``LogRecord`` and
the dispatch through the logger tree (measured at about half of what the line cost). A
test harness or an embedder that adds a handler of its own gets ordinary records again.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

import orjson

__all__ = ["AcceptErrorThrottle", "EscapingFormatter", "JsonFormatter", "escape", "setup"]

#: Control characters a log reader could take as a line break or a terminal command:
#: C0 (tab and newline included), DEL, C1 (NEL U+0085 included), and U+2028/U+2029.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_HANDLER_NAME = "chatd"
#: Prefix of each line of a traceback or stack attached to a record.
CONTINUATION = "    "


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: str) -> str:
    """``text`` with every control character written as a visible escape; one line."""
    if _UNSAFE.search(text) is None:  # the common case costs one scan
        return text
    return _UNSAFE.sub(_escape_one, text)


def _indented(block: str) -> str:
    # str.splitlines also splits at \x1c-\x1e, \x85 and \u2028/9, so no piece of an
    # exception message can start a line of its own at column 0.
    return "\n".join(CONTINUATION + escape(line) for line in block.splitlines())


class EscapingFormatter(logging.Formatter):
    """A :class:`logging.Formatter` whose output has one unindented line per record."""

    def format(self, record: logging.LogRecord) -> str:
        # Not Formatter.format: that reuses ``record.exc_text``, which another handler's
        # formatter may have cached unindented.
        record.message = escape(record.getMessage())
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        text = self.formatMessage(record)
        if record.exc_info:
            text += "\n" + _indented(self.formatException(record.exc_info))
        elif record.exc_text:
            text += "\n" + _indented(record.exc_text)
        if record.stack_info:
            text += "\n" + _indented(self.formatStack(record.stack_info))
        return text


#: The record attribute holding a record's structured fields (``extra={"fields": ...}``).
FIELDS = "fields"


_PLAIN = (int, float, bool, type(None))


def _safe(value: object) -> object:
    """``value`` with every string in it escaped; numbers, booleans and None as they are."""
    kind = type(value)
    if kind is str:
        return escape(value)  # type: ignore[arg-type]
    if kind in _PLAIN:
        return value
    if isinstance(value, Mapping):
        return {escape(str(k)): _safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_safe(v) for v in value]
    return escape(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: ``ts`` (UTC, ISO 8601, milliseconds),
    ``level``, ``logger``, ``msg``, any structured fields, and ``exc`` (a traceback)."""

    _second = -1
    _stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:  # one strftime a second, not one a record
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        out: dict[str, Any] = {
            "ts": f"{self._stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,  # which worker, with --workers N
            # A structured event (a message object with an ``event`` name, such as the
            # request line) is that name here; its facts are the fields.
            "msg": escape(
                str(event) if (event := getattr(record.msg, "event", None)) is not None
                and not record.args else record.getMessage()
            ),
        }
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, Mapping):
            for key, value in fields.items():
                if key not in out:
                    out[key] = _safe(value)
        if record.exc_info:
            out["exc"] = escape(self.formatException(record.exc_info))
        elif record.exc_text:
            out["exc"] = escape(record.exc_text)
        if record.stack_info:
            out["stack"] = escape(self.formatStack(record.stack_info))
        return orjson.dumps(out).decode()


class AcceptErrorThrottle(logging.Filter):
    """At most one report of a failing ``accept()`` per ``interval`` seconds.

    Matches asyncio's "socket.accept() out of system resource" and trio's "accept returned
    ...; retrying" reports. The one let through loses its traceback (always the same
    EMFILE) and says how many were held back since the last one.
    """

    _PREFIXES = (
        ("asyncio", "socket.accept() out of system resource"),
        ("trio.serve_listeners", "accept returned"),
    )

    def __init__(
        self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.interval = interval
        self._clock = clock
        self._last = -float("inf")
        self._held = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._matches(record):
            return True
        now = self._clock()
        if now - self._last < self.interval:
            self._held += 1
            return False
        self._last = now
        first_line = record.getMessage().partition("\n")[0]
        held, self._held = self._held, 0
        record.msg = (
            f"{first_line} (out of file descriptors?); {held} more such reports held back, "
            f"at most one is logged every {self.interval:g} s"
        )
        record.args = None
        record.exc_info = None
        record.exc_text = None
        return True

    def _matches(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return False
        message = record.msg if isinstance(record.msg, str) else ""
        return any(
            record.name == name and message.startswith(prefix)
            for name, prefix in self._PREFIXES
        )


class EventWriter:
    """Writes a structured INFO event as the installed handler would, without a record."""

    __slots__ = ("_json", "_pid", "_second", "_stamp", "_stream", "handler")

    def __init__(self, handler: logging.StreamHandler[Any], *, json: bool) -> None:
        self.handler = handler
        self._stream = handler.stream
        self._json = json
        self._pid = os.getpid()
        self._second = -1
        self._stamp = ""

    def reaches_only_this(self, logger: logging.Logger) -> bool:
        """Whether ``logger``'s INFO records would reach this handler and no other."""
        root = logging.root
        if len(root.handlers) != 1 or root.handlers[0] is not self.handler:
            return False
        node: logging.Logger | None = logger
        while node is not None and node is not root:
            if node.handlers or not node.propagate:
                return False
            node = node.parent
        return self.handler.level <= logging.INFO

    def write(self, name: str, event: str, fields: Mapping[str, object],
              text: Callable[[], str]) -> None:
        """One line: under JSON, ``msg`` is ``event`` and the fields are keys (as
        :class:`JsonFormatter`); as text, the ``TEXT_FORMAT`` prefix and ``text()``."""
        now = time.time()
        second = int(now)
        millis = int((now - second) * 1000)
        if self._json:
            if second != self._second:
                self._second = second
                self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            out: dict[str, Any] = {
                "ts": f"{self._stamp}.{millis:03d}Z", "level": "INFO",
                "logger": name, "pid": self._pid, "msg": escape(event),
            }
            for key, value in fields.items():
                if key not in out:
                    kind = type(value)  # _safe, inline for the common kinds
                    out[key] = (escape(value) if kind is str  # type: ignore[arg-type]
                                else value if kind in _PLAIN else _safe(value))
            line = orjson.dumps(out).decode()
        else:
            if second != self._second:
                self._second = second
                self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
            line = f"{self._stamp},{millis:03d} INFO {name}: {escape(text())}"
        self.handler.acquire()
        try:
            self._stream.write(line + "\n")
            self._stream.flush()
        finally:
            self.handler.release()


_writer: EventWriter | None = None


def event_writer() -> EventWriter | None:
    """The short path for structured events, when :func:`setup` installed chatd's handler."""
    return _writer


def setup(
    level: int = logging.INFO, stream: TextIO | None = None, *, json: bool = False
) -> logging.Handler:
    """Send every logger's records to ``stream`` (default stderr), escaped and throttled;
    one JSON object a line with ``json`` (``log_format = "json"``).

    Idempotent: a handler an earlier call installed is replaced, so no record is written
    twice. Handlers someone else put on the root logger (a test harness's) stay.
    """
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter() if json else EscapingFormatter(TEXT_FORMAT))
    handler.addFilter(AcceptErrorThrottle())
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == _HANDLER_NAME:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    global _writer
    _writer = EventWriter(handler, json=json)
    return handler
