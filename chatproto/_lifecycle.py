"""The one lifecycle every stream parser follows, as a small explicit state table.

Strategy: in the spirit of h11's ``_state.py``, the states and the moves between them are
data (:data:`TRANSITIONS`), and a move the table does not list is a bug, not a guess. Every
codec's stream parser derives from :class:`StreamLifecycle`, which owns ``feed`` and these
rules; the parser itself only turns bytes into events (:meth:`StreamLifecycle._parse`), so
the rules below cannot drift apart between dialects::

    state      what happens                         next state
    OPEN       bytes that parse into events         OPEN
    OPEN       the terminator (StreamEnded emitted) DRAINING
    OPEN       any failure (a ChatError)            FAILED
    DRAINING   more bytes (dropped unparsed)        DRAINING
    DRAINING   the end of the body (b"")            ENDED
    ENDED      any feed                             StreamClosedError (a caller bug)
    FAILED     any feed                             the same ChatError, raised again

DRAINING exists because upstreams write after their terminator: OpenCode Zen appends a
``{"choices":[],"cost":...}`` chunk after ``data: [DONE]`` (providers.md §5.3), and a
proxy may add bytes after Ollama's ``done: true`` line (OL §1.5); a finished answer is not
thrown away over them. A body that ends while still OPEN has lost its end: the parser
either finds the answer whole (OpenAI's ``finish_reason`` without ``[DONE]``) and
terminates, or fails.

Errors after events: a feed returns every event completed before a failure, even when the
failure is in the same bytes. If a feed completes events and then fails, it returns the
events, the parser is already FAILED (:attr:`StreamLifecycle.error` is set) and the next
feed raises the error; a feed that fails before completing any event raises at once. So
the caller sees the same events, then the same error, however the bytes were split.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Mapping

from ._errors import ChatError
from ._events import Event, StreamEnded

__all__ = [
    "DRAINING",
    "END",
    "ENDED",
    "ERROR",
    "FAILED",
    "OPEN",
    "TERMINATOR",
    "TRANSITIONS",
    "State",
    "StreamClosedError",
    "StreamLifecycle",
]


class State(enum.Enum):
    """Where a stream parser is in its lifecycle (see the module's table)."""

    OPEN = "open"
    """Reading events."""
    DRAINING = "draining"
    """The terminator was seen and StreamEnded emitted; bytes until the end are dropped."""
    ENDED = "ended"
    """The body ended after a terminator. Feeding again is a caller bug."""
    FAILED = "failed"
    """A ChatError was found; permanent: every later feed raises it again."""


OPEN, DRAINING, ENDED, FAILED = State.OPEN, State.DRAINING, State.ENDED, State.FAILED

#: What can happen to a parser, besides bytes that leave its state as it is.
TERMINATOR = "terminator"
END = "end"
ERROR = "error"

#: state -> {what happened: next state}. Anything missing cannot happen in that state.
TRANSITIONS: Mapping[State, Mapping[str, State]] = {
    OPEN: {TERMINATOR: DRAINING, ERROR: FAILED},
    DRAINING: {END: ENDED},
    ENDED: {},
    FAILED: {},
}


class StreamClosedError(RuntimeError):
    """``feed()`` after the body's end was already fed: the caller's bug, not the
    upstream's, so it is not a :class:`~chatproto.ChatError` (which would be answered as
    a 502 and hide the bug)."""


def _unfinished(provider: str) -> ChatError:
    return ChatError(
        "bad_upstream_response", "upstream stream ended before its finish marker",
        provider=provider,
    )


class StreamLifecycle(ABC):
    """Base of every codec's stream parser: ``feed`` and the lifecycle; see the module.

    A subclass implements :meth:`_parse`, which appends the events of ``data`` to ``out``,
    calls :meth:`_terminate` at the dialect's terminator (and then returns: the rest is
    dropped), and raises :class:`~chatproto.ChatError` on a failure. Events already in
    ``out`` when it raises still reach the caller, before the error.
    """

    __slots__ = ("_error", "_provider", "_state")

    #: Exceptions that mean "a chunk of the wrong shape" in :meth:`_parse` (a list where
    #: an object belongs, deep inside): a parser that reads fields without checking every
    #: type on the hot path lists them here, and they become ``bad_upstream_response``.
    _SHAPE_ERRORS: tuple[type[Exception], ...] = ()

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self._state = OPEN
        self._error: ChatError | None = None

    @property
    def state(self) -> State:
        return self._state

    @property
    def error(self) -> ChatError | None:
        """The failure, once FAILED: raised by the next feed (if this one returned events
        before it) and by every feed after."""
        return self._error

    def feed(self, data: bytes) -> list[Event]:
        """Take the next bytes of the body (``b""`` = its end); return the new events.

        Raises:
            ChatError: the stream failed (see the module: events before the failure are
                returned first, and the error is raised by the next feed).
            StreamClosedError: the end was already fed.
        """
        if self._state is not OPEN:
            return self._closed(data)
        out: list[Event] = []
        try:
            self._parse(data, out)
            if not data:
                if self._state is OPEN:
                    # A parser must terminate or fail at the end; a cut stream is never
                    # passed off as a whole one.
                    raise _unfinished(self._provider)
                self._state = TRANSITIONS[self._state][END]
        except ChatError as exc:
            return self._fail(exc, out)
        except self._SHAPE_ERRORS as exc:
            return self._fail(ChatError(
                "bad_upstream_response",
                f"upstream sent a stream chunk of the wrong shape ({type(exc).__name__})",
                provider=self._provider,
            ), out)
        return out

    @abstractmethod
    def _parse(self, data: bytes, out: list[Event]) -> None:
        """Append the events completed by ``data`` (``b""`` = end) to ``out``."""

    def _terminate(self, out: list[Event], event: StreamEnded) -> None:
        """The dialect's terminator: emit ``event`` (the one StreamEnded) and drain."""
        out.append(event)
        self._state = TRANSITIONS[self._state][TERMINATOR]

    def _fail(self, exc: ChatError, out: list[Event]) -> list[Event]:
        self._error = exc
        self._state = TRANSITIONS[self._state][ERROR]
        if out:
            return out
        raise exc

    def _closed(self, data: bytes) -> list[Event]:
        state = self._state
        if state is DRAINING:
            if not data:
                self._state = TRANSITIONS[state][END]
            return []
        if self._error is not None:
            raise self._error.with_traceback(None)
        raise StreamClosedError("feed() called after the end of the stream was fed")
