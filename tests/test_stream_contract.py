"""The stream-parser contract, over every dialect's parser (chatproto/_lifecycle.py).

Strategy: one table, :data:`DIALECTS`, holds a row per stream parser: how to make it, the
streams it is tested on (recorded fixtures and error-after-events cases) and, for the
failing ones, exactly which events must come before the error. Every test below runs over
every row, so a new dialect (Anthropic Messages, Responses) joins the contract by adding a
row. What is checked, for every stream and every way of cutting it (whole, byte by byte,
every 2-way split, random splits):

- the events, and the error, are the same as when the stream is fed whole;
- for a failing stream, the events before the error are the listed ones, all of them
  delivered before the error is raised (the bug where the events read together with an
  error line were dropped);
- the states a parser passes through follow :data:`~chatproto._lifecycle.TRANSITIONS`,
  ending ENDED after exactly one StreamEnded, or FAILED with ``error`` set; a FAILED
  parser raises the same error on every later feed, an ENDED one raises
  StreamClosedError, a DRAINING one drops what follows the terminator.

The server-level test at the end replays failing streams through a running chatd, with
the upstream's bytes written in different splits, and reads the same text before the same
error at the client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, cast

import anyio
import anyio.abc
import h11
import httpx
import orjson
import pytest
from chatd_served import served
from fake_ollama import FakeServer, awkward_pieces
from helpers import bytewise, cut_at, cuts, every_split
from hypothesis import given, settings
from hypothesis import strategies as st

from chatproto import ChatError, Event, RawEvent, StreamEnded, StreamParser, TextDelta, codec_for
from chatproto._lifecycle import (
    DRAINING,
    ENDED,
    FAILED,
    OPEN,
    TRANSITIONS,
    State,
    StreamClosedError,
    StreamLifecycle,
)
from server.app import create_app
from server.config import load_config

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@dataclass(frozen=True)
class Case:
    """One stream for a parser, and what it must give."""

    id: str
    data: bytes
    error: str | None = None
    """The ChatError type it fails with; None: it ends normally."""
    before: tuple[str, ...] | None = None
    """For a failing stream: the texts (TextDelta) that must reach the caller first."""


@dataclass(frozen=True)
class Dialect:
    """A row of the contract: one stream parser."""

    api: str
    """The codec's ``api``, also the RawEvent dialect under passthrough."""
    provider: str
    cases: tuple[Case, ...]
    terminator: bytes
    """A whole, normally ending stream (its terminator last), for the lifecycle tests."""
    content_type: str
    make: Callable[..., StreamParser] = field(init=False)

    def __post_init__(self) -> None:
        codec = codec_for(self.api)
        object.__setattr__(self, "make", lambda passthrough=False: codec.stream_parser(
            self.provider, passthrough=passthrough))


def ndjson(*objs: object) -> bytes:
    return b"".join(orjson.dumps(o) + b"\n" for o in objs)


def sse(*objs: object) -> bytes:
    return b"".join(b"data: " + (o if isinstance(o, bytes) else orjson.dumps(o)) + b"\n\n"
                    for o in objs)


OLLAMA_DONE = {"done": True, "done_reason": "stop", "prompt_eval_count": 3, "eval_count": 2}
OLLAMA_ERROR = {"error": "an error was encountered while running the model: unexpected EOF"}


def ollama_cases(field_of: Callable[[str], dict[str, Any]], prefix: str) -> tuple[Case, ...]:
    """The Ollama cases; ``field_of(text)`` is one line's delta in this endpoint's shape."""
    recorded = [Case(name, fixture(name)) for name in sorted(
        p.name for p in FIXTURES.glob(f"{prefix}_*.ndjson"))]
    return (*recorded, *[
        # The case: two lines then an error line, all in one read when whole.
        Case("yes-dot-error", ndjson(field_of(" Yes"), field_of("."), OLLAMA_ERROR),
             "upstream_error", (" Yes", ".")),
        Case("error-first", ndjson(OLLAMA_ERROR, field_of("x")), "upstream_error", ()),
        Case("malformed-after-text", ndjson(field_of("Hi")) + b"{oops\n",
             "bad_upstream_response", ("Hi",)),
        Case("cut-before-done", ndjson(field_of("Half"), field_of(" an")),
             "bad_upstream_response", ("Half", " an")),
        Case("bytes-after-done", ndjson(field_of("ok"), OLLAMA_DONE) + b"trailing junk"),
    ])


def openai_chunk(text: str | None = None, finish: str | None = None) -> dict[str, Any]:
    delta = {} if text is None else {"content": text}
    return {"id": "c", "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


#: fixture -> (error type, texts before it) for the recorded failing streams.
OPENAI_FAILING = {
    "openai_eof_before_done.sse": ("bad_upstream_response", ("Half an ans",)),
    "openai_error_midstream.sse": ("upstream_error", ("Par",)),
    "openai_openrouter_error_midstream.sse": ("upstream_error", ("Once",)),
    "openai_openrouter_rate_limited_midstream.sse": ("rate_limited", ()),
}

OPENAI_CASES = (
    *[Case(name, fixture(name), *OPENAI_FAILING.get(name, (None, None)))
      for name in sorted(p.name for p in FIXTURES.glob("openai_*.sse"))],
    Case("texts-then-error-chunk",
         sse(openai_chunk(" Yes"), openai_chunk("."), {"error": {"message": "boom"}}),
         "upstream_error", (" Yes", ".")),
    Case("texts-then-event-error",
         sse(openai_chunk("a")) + b"event: error\ndata: {\"message\": \"overloaded\"}\n\n",
         "upstream_error", ("a",)),
    Case("text-then-finish-error", sse(openai_chunk("a"), openai_chunk(finish="error")),
         "upstream_error", ("a",)),
    Case("text-then-malformed", sse(openai_chunk("a"), b"{bad"),
         "bad_upstream_response", ("a",)),
    Case("text-then-wrong-shape", sse(openai_chunk("a"), {"choices": [{"delta": [1]}]}),
         "bad_upstream_response", ("a",)),
)

def responses_event(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, **fields}


RESPONSES_USAGE = {"input_tokens": 3, "input_tokens_details": {"cached_tokens": 0},
                   "output_tokens": 2, "output_tokens_details": {"reasoning_tokens": 0},
                   "total_tokens": 5}


def responses_text(text: str) -> dict[str, Any]:
    return responses_event("response.output_text.delta", item_id="msg_1", output_index=0,
                           content_index=0, delta=text)


def responses_done(status: str = "completed") -> dict[str, Any]:
    return responses_event(f"response.{status}", response={
        "id": "resp_1", "status": status, "output": [], "usage": RESPONSES_USAGE})


def responses_sse(*objs: object) -> bytes:
    """As OpenAI writes it: ``event: <type>`` before each ``data:``."""
    return b"".join(
        b"event: " + o["type"].encode() + b"\n" + sse(o) if isinstance(o, dict) else sse(o)
        for o in objs)


RESPONSES_OPEN = (responses_event("response.created", response={"id": "resp_1"}),
                  responses_event("response.output_item.added", output_index=0, item={
                      "id": "msg_1", "type": "message", "role": "assistant",
                      "content": []}))
RESPONSES_CASES = (
    Case("text", responses_sse(*RESPONSES_OPEN, responses_text("Hel"), responses_text("lo"),
                               responses_done())),
    Case("incomplete", responses_sse(*RESPONSES_OPEN, responses_text("cut"),
                                     responses_done("incomplete"))),
    Case("ping-after-completed", responses_sse(
        responses_text("ok"), responses_done(), {"type": "ping", "cost": "0.0001"})
        + b"trailing junk"),
    Case("texts-then-failed", responses_sse(
        *RESPONSES_OPEN, responses_text(" Yes"), responses_text("."),
        responses_event("response.failed", response={
            "id": "resp_1", "status": "failed",
            "error": {"code": "server_error", "message": "backend went away"}})),
         "upstream_error", (" Yes", ".")),
    Case("failed-first", responses_sse(RESPONSES_OPEN[0], responses_event(
        "response.failed", response={"error": {"code": "rate_limit_exceeded",
                                                "message": "Slow down."}})),
         "rate_limited", ()),
    Case("text-then-error-event", responses_sse(
        *RESPONSES_OPEN, responses_text("a"),
        responses_event("error", code="server_error", message="overloaded")),
         "upstream_error", ("a",)),
    Case("text-then-malformed", responses_sse(responses_text("a")) + b"data: {bad\n\n",
         "bad_upstream_response", ("a",)),
    Case("text-then-wrong-shape", responses_sse(
        responses_text("a"), responses_event("response.output_item.done", item=[1])),
         "bad_upstream_response", ("a",)),
    Case("cut-before-completed", responses_sse(*RESPONSES_OPEN, responses_text("Half"),
                                               responses_text(" an")),
         "bad_upstream_response", ("Half", " an")),
)


def anthropic(*events: tuple[str, object]) -> bytes:
    """Anthropic SSE: every event with its ``event:`` line (a bytes payload as it is)."""
    return b"".join(b"event: " + name.encode() + b"\ndata: "
                    + (o if isinstance(o, bytes) else orjson.dumps(o)) + b"\n\n"
                    for name, o in events)


def anthropic_text(text: str) -> tuple[str, object]:
    return ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                    "delta": {"type": "text_delta", "text": text}})


ANTHROPIC_START = ("message_start", {"type": "message_start", "message": {
    "id": "m", "type": "message", "role": "assistant", "content": [], "model": "c",
    "usage": {"input_tokens": 3, "output_tokens": 1}}})
ANTHROPIC_STOP = ("message_stop", {"type": "message_stop"})
ANTHROPIC_OVERLOADED = ("error", {"type": "error", "error": {"type": "overloaded_error",
                                                             "message": "Overloaded"}})

#: fixture -> (error type, texts before it) for the recorded failing streams.
ANTHROPIC_FAILING = {
    "anthropic_error_midstream.sse": ("upstream_overloaded", ("Hallo ", "Wélt")),
}

ANTHROPIC_CASES = (
    *[Case(name, fixture(name), *ANTHROPIC_FAILING.get(name, (None, None)))
      for name in sorted(p.name for p in FIXTURES.glob("anthropic_*.sse"))],
    Case("texts-then-error", anthropic(ANTHROPIC_START, anthropic_text(" Yes"),
                                       anthropic_text("."), ANTHROPIC_OVERLOADED),
         "upstream_overloaded", (" Yes", ".")),
    Case("error-first", anthropic(ANTHROPIC_OVERLOADED, anthropic_text("x")),
         "upstream_overloaded", ()),
    Case("text-then-malformed", anthropic(anthropic_text("a"), ("content_block_delta", b"{bad")),
         "bad_upstream_response", ("a",)),
    Case("text-then-wrong-shape", anthropic(anthropic_text("a"), (
        "content_block_delta", {"type": "content_block_delta", "delta": [1]})),
         "bad_upstream_response", ("a",)),
    Case("cut-before-stop", anthropic(ANTHROPIC_START, anthropic_text("Half")),
         "bad_upstream_response", ("Half",)),
    Case("bytes-after-stop", anthropic(anthropic_text("ok"), ANTHROPIC_STOP) + b"junk"),
)

DIALECTS = (
    Dialect("ollama_chat", "ollama",
            ollama_cases(lambda t: {"message": {"role": "assistant", "content": t},
                                    "done": False}, "ollama_chat"),
            ndjson({"message": {"content": "ok"}, "done": False}, OLLAMA_DONE),
            "application/x-ndjson"),
    Dialect("ollama_generate", "ollama_cloud",
            ollama_cases(lambda t: {"response": t, "done": False}, "ollama_generate"),
            ndjson({"response": "ok", "done": False}, OLLAMA_DONE),
            "application/x-ndjson"),
    Dialect("openai_chat", "openrouter", OPENAI_CASES,
            sse(openai_chunk("ok"), openai_chunk(finish="stop"), b"[DONE]"),
            "text/event-stream"),
    Dialect("openai_responses", "responses", RESPONSES_CASES,
            sse(responses_text("ok"), responses_done()), "text/event-stream"),
    Dialect("anthropic_messages", "opencode", ANTHROPIC_CASES,
            anthropic(anthropic_text("ok"), ANTHROPIC_STOP), "text/event-stream"),
)

CASES = [pytest.param(d, c, id=f"{d.api}-{c.id}") for d in DIALECTS for c in d.cases]
ROWS = [pytest.param(d, id=d.api) for d in DIALECTS]


# --- running a parser and checking its lifecycle ----------------------------------------


@dataclass
class Run:
    events: list[Event]
    error: ChatError | None
    states: list[State]


def run(parser: StreamParser, chunks: list[bytes]) -> Run:
    """Feed ``chunks`` then the end, as a relay does: deliver what each feed returns; once
    ``error`` is set, the next feed must raise it. Checks the lifecycle on the way."""
    assert isinstance(parser, StreamLifecycle)
    events: list[Event] = []
    states = [parser.state]
    try:
        for chunk in [*filter(None, chunks), b""]:
            got = parser.feed(chunk)
            states.append(parser.state)
            if parser.error is not None:
                # Failed in this feed yet returned: only to hand over the events first.
                assert got and parser.state is FAILED
                events += got
                parser.feed(b"x")
                raise AssertionError("a failed parser's next feed did not raise")
            events += got
    except ChatError as exc:
        assert exc is parser.error and parser.state is FAILED
        states.append(parser.state)
        return Run(events, exc, states)
    return Run(events, None, states)


def reachable(state: State) -> set[State]:
    seen: set[State] = set()
    todo = list(TRANSITIONS[state].values())
    while todo:
        s = todo.pop()
        if s not in seen:
            seen.add(s)
            todo.extend(TRANSITIONS[s].values())
    return seen


def test_the_table() -> None:
    """OPEN reaches an end both ways; ENDED and FAILED are final; nothing leads back."""
    assert reachable(OPEN) == {DRAINING, ENDED, FAILED}
    assert reachable(DRAINING) == {ENDED}
    assert reachable(ENDED) == reachable(FAILED) == set()
    assert set(TRANSITIONS) == set(State)


def check_lifecycle(r: Run, parser: StreamParser) -> None:
    """The path through the states is the table's, and the end state behaves."""
    assert isinstance(parser, StreamLifecycle)
    path = [s for i, s in enumerate(r.states) if i == 0 or s is not r.states[i - 1]]
    assert path[0] is OPEN
    for a, b in pairwise(path):
        # One feed may take more than one step (a terminator in the final flush: OPEN ->
        # DRAINING -> ENDED), so b must be reachable from a through the table.
        assert b in reachable(a), f"{a} -> {b} is not in the table"
    ends = [e for e in r.events if isinstance(e, StreamEnded)]
    if r.error is None:
        assert path[-1] is ENDED and parser.error is None
        assert len(ends) == 1 and r.events[-1] is ends[0]
        with pytest.raises(StreamClosedError):
            parser.feed(b"data: more\n\n")
    else:
        assert path[-1] is FAILED and not ends
        for data in (b"", b"{}\n", b"data: [DONE]\n\n"):
            with pytest.raises(ChatError) as again:
                parser.feed(data)
            assert again.value is r.error


def texts(events: list[Event]) -> tuple[str, ...]:
    return tuple(e.text for e in events if isinstance(e, TextDelta))


def check_case(dialect: Dialect, case: Case, chunks: list[bytes], whole: Run, how: str) -> None:
    parser = dialect.make()
    r = run(parser, chunks)
    check_lifecycle(r, parser)
    assert r.events == whole.events, how
    if case.error is None:
        assert r.error is None, (how, r.error)
    else:
        assert r.error is not None, how
        assert (r.error.type, r.error.message, r.error.provider) == (
            case.error, whole.error.message if whole.error else None, dialect.provider), how
        assert texts(r.events) == case.before, how


# --- the contract -------------------------------------------------------------------------


@pytest.mark.parametrize(("dialect", "case"), CASES)
def test_same_events_then_same_error_at_every_split(dialect: Dialect, case: Case) -> None:
    parser = dialect.make()
    whole = run(parser, [case.data])
    check_lifecycle(whole, parser)
    if case.error is None:
        assert whole.error is None and isinstance(whole.events[-1], StreamEnded)
    else:
        assert whole.error is not None and whole.error.type == case.error
        assert texts(whole.events) == case.before
    for how, chunks in every_split(case.data):
        check_case(dialect, case, chunks, whole, how)
    # As the upstream wrote it: one line or event a read.
    sep = b"\n" if dialect.content_type == "application/x-ndjson" else b"\n\n"
    pieces = [p + sep for p in case.data.split(sep)]
    check_case(dialect, case, pieces, whole, "as-written")


@settings(max_examples=300, deadline=None)
@given(index=st.integers(min_value=0, max_value=len(CASES) - 1), points=cuts(30))
def test_same_events_then_same_error_at_random_splits(index: int, points: list[int]) -> None:
    dialect, case = cast(tuple[Dialect, Case], CASES[index].values)
    whole = run(dialect.make(), [case.data])
    check_case(dialect, case, cut_at(case.data, points), whole, f"cuts {points}")


@pytest.mark.parametrize("dialect", ROWS)
def test_drains_after_the_terminator(dialect: Dialect) -> None:
    """After the terminator: StreamEnded once, more bytes (even past the decoders' 1 MiB
    bound) dropped unparsed, ENDED at b"", then feeding is a caller bug."""
    parser = dialect.make()
    events = parser.feed(dialect.terminator)
    assert isinstance(events[-1], StreamEnded)
    assert isinstance(parser, StreamLifecycle) and parser.state is DRAINING
    assert parser.feed(b"x" * (2 << 20)) == []
    assert parser.feed(b'{"error": "late"}\n\ndata: {"error": "late"}\n\n') == []
    assert parser.feed(b"") == [] and parser.state is ENDED
    for data in (b"", b"more"):
        with pytest.raises(StreamClosedError):
            parser.feed(data)


@pytest.mark.parametrize("dialect", ROWS)
def test_the_terminator_in_the_final_flush(dialect: Dialect) -> None:
    """A terminator without its line end, completed by the end of the body."""
    parser = dialect.make()
    data = dialect.terminator.rstrip(b"\n")
    events = parser.feed(data) + parser.feed(b"")
    assert isinstance(events[-1], StreamEnded)
    assert isinstance(parser, StreamLifecycle) and parser.state is ENDED


@pytest.mark.parametrize("dialect", ROWS)
def test_an_empty_body_fails(dialect: Dialect) -> None:
    parser = dialect.make()
    with pytest.raises(ChatError) as info:
        parser.feed(b"")
    assert info.value.type == "bad_upstream_response"
    assert parser.error is info.value
    with pytest.raises(ChatError) as again:
        parser.feed(b"")
    assert again.value is info.value


@pytest.mark.parametrize(("dialect", "case"), CASES)
def test_passthrough_adds_raw_events_and_changes_nothing_else(
    dialect: Dialect, case: Case
) -> None:
    """passthrough=True: the canonical events (and error) are the same; each RawEvent
    names the dialect, carries a decoded object and comes before that chunk's events."""
    plain = run(dialect.make(), bytewise(case.data))
    parser = dialect.make(passthrough=True)
    raw = run(parser, bytewise(case.data))
    check_lifecycle(raw, parser)
    assert [e for e in raw.events if type(e) is not RawEvent] == plain.events
    assert (raw.error is None) is (plain.error is None)
    raws = [e for e in raw.events if type(e) is RawEvent]
    assert all(e.dialect == dialect.api and isinstance(e.data, dict) for e in raws)
    if plain.events and not isinstance(plain.events[0], StreamEnded):
        assert type(raw.events[0]) is RawEvent
    whole = run(dialect.make(passthrough=True), [case.data])
    assert whole.events == raw.events


@pytest.mark.parametrize(("api", "body"), [
    ("openai_chat", {"id": "x", "choices": [{"message": {"content": "hi"},
                                             "finish_reason": "stop"}], "extra": [1]}),
    ("ollama_chat", {"message": {"role": "assistant", "content": "hi"}, "done": True,
                     "extra": [1]}),
    ("ollama_generate", {"response": "hi", "done": True, "extra": [1]}),
    ("openai_responses", {"id": "r", "status": "completed", "output": [
        {"type": "message", "content": [{"type": "output_text", "text": "hi"}]}],
        "extra": [1]}),
])
def test_parse_response_keeps_the_decoded_body_only_under_passthrough(
    api: str, body: dict[str, Any]
) -> None:
    codec = codec_for(api)
    plain = codec.parse_response("p", orjson.dumps(body))
    assert (plain.content, plain.raw, plain.dialect) == ("hi", None, None)
    kept = codec.parse_response("p", orjson.dumps(body), passthrough=True)
    assert (kept.content, kept.raw, kept.dialect) == ("hi", body, api)


@pytest.mark.parametrize("dialect", ROWS)
def test_raw_events_come_before_the_events_of_their_chunk(dialect: Dialect) -> None:
    events = dialect.make(passthrough=True).feed(dialect.terminator)
    # OpenAI: text chunk, finish chunk, then [DONE] (no RawEvent of its own); Ollama:
    # text line, then the done line (its RawEvent, then StreamEnded); Anthropic: a text
    # delta, then message_stop (its RawEvent, then StreamEnded).
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["RawEvent", "TextDelta", "RawEvent", "StreamEnded"]
    first = events[0]
    assert isinstance(first, RawEvent) and isinstance(first.data, dict)
    assert orjson.dumps(first.data) in dialect.terminator


# --- through a running chatd ----------------------------------------------------------


class Replay(FakeServer):
    """Answers every POST with 200 and a recorded body, written in the given pieces: each
    piece is one HTTP chunk, flushed with a pause after it so chatd reads it alone."""

    def __init__(self, content_type: str) -> None:
        super().__init__()
        self.content_type = content_type
        self.pieces: list[bytes] = []

    async def _respond(self, conn: h11.Connection, stream: anyio.abc.SocketStream,
                       request: h11.Request, body: bytes) -> None:
        await self._head(conn, stream, 200, [("content-type", self.content_type),
                                             ("transfer-encoding", "chunked")])
        for piece in self.pieces:
            await self._send(conn, stream, h11.Data(data=piece))
            if len(self.pieces) < 64:
                await anyio.sleep(0.003)
        await self._send(conn, stream, h11.EndOfMessage())


def writes(data: bytes, sep: bytes) -> Iterator[tuple[str, list[bytes]]]:
    yield "one-write", [data]
    yield "as-written", [p + sep for p in data.split(sep) if p]
    yield "awkward", awkward_pieces(data, 5)
    yield "bytewise", bytewise(data)


#: dialect -> model to ask chatd for; the replayed failing cases come from the table.
MODELS = {"ollama_chat": "ollama/qwen3:4b", "openai_chat": "openrouter/moonshotai/kimi-k2",
          "openai_responses": "responses/gpt-x",
          "anthropic_messages": "opencode/claude-sonnet-4-6"}
SERVED = [pytest.param(d, c, id=f"{d.api}-{c.id}") for d in DIALECTS if d.api in MODELS
          for c in d.cases if c.error is not None and c.before]


@pytest.mark.anyio
@pytest.mark.parametrize(("dialect", "case"), SERVED)
async def test_chatd_relays_the_text_then_the_error_whatever_the_split(
    dialect: Dialect, case: Case, tmp_path: Path
) -> None:
    replay = Replay(dialect.content_type)
    async with anyio.create_task_group() as tg:
        await tg.start(replay.serve)
        config = load_config(f"""
[chatd]
ollama_url = "{replay.url}"
timeout_secs = 5
[chatd.providers.openrouter]
base_url = "{replay.url}/v1"
key_file = "{tmp_path / 'missing.env'}"
[chatd.providers.responses]
api = "openai_responses"
base_url = "{replay.url}/v1"
[chatd.providers.opencode]
base_url = "{replay.url}/zen/v1"
key_file = "{tmp_path / 'missing.env'}"
""")
        app = create_app(config, environ={"OPENROUTER_API_KEY": "sk-or-test",
                                          "OPENCODE_API_KEY": "sk-zen-test"})
        async with served(app) as port, httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=10
        ) as client:
            sep = b"\n" if dialect.content_type == "application/x-ndjson" else b"\n\n"
            for how, pieces in writes(case.data, sep):
                replay.pieces = pieces
                body = {"model": MODELS[dialect.api], "stream": True,
                        "messages": [{"role": "user", "content": "Is it?"}]}
                r = await client.post("/v1/chat", json=body)
                assert r.status_code == 200, (how, r.text)
                lines = [orjson.loads(line) for line in r.content.splitlines()]
                got = tuple(line["content"] for line in lines if "content" in line)
                assert got == case.before, how
                last = lines[-1]
                assert last["done"] is True and last["error"]["type"] == case.error, how
                assert all("error" not in line for line in lines[:-1]), how
        tg.cancel_scope.cancel()
