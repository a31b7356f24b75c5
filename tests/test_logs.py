"""No client or upstream text can write a raw line into chatd's log (SPEC §5, log lines).

Unit tests hold the formatter and the accept-error throttle to their rules; one test runs a
real ``chatd serve`` and attacks it from both sides: a path with ``%0a`` (unauthenticated),
and an upstream whose error message carries newlines and an escape sequence.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from chatd_process import launch
from fake_ollama import FakeOllama, in_thread

from server.logs import (
    CONTINUATION,
    TEXT_FORMAT,
    AcceptErrorThrottle,
    EscapingFormatter,
    EventWriter,
    JsonFormatter,
    escape,
    event_writer,
    setup,
)

FORGED = "2031-01-01 00:00:00,000 INFO chatd: forged"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("plain text, é, 日本", "plain text, é, 日本"),
     ("a\nb", "a\\nb"), ("a\r\nb", "a\\r\\nb"), ("tab\there", "tab\\there"),
     ("\x1b[31mred", "\\x1b[31mred"), ("nul\x00", "nul\\x00"), ("del\x7f", "del\\x7f"),
     ("nel\x85", "nel\\x85"), ("ls\u2028ps\u2029", "ls\\u2028ps\\u2029"),
     ("fs\x1c", "fs\\x1c")],
    ids=["plain", "lf", "crlf", "tab", "esc", "nul", "del", "nel", "unicode-separators", "fs"],
)
def test_escape(text: str, expected: str) -> None:
    assert escape(text) == expected


def format_record(formatter: logging.Formatter, msg: str, *args: object,
                  exc: BaseException | None = None) -> str:
    record = logging.LogRecord("chatd.app", logging.INFO, __file__, 1, msg, args,
                               (type(exc), exc, exc.__traceback__) if exc else None)
    return formatter.format(record)


def test_a_record_is_one_line_whatever_its_arguments() -> None:
    formatter = EscapingFormatter("%(levelname)s %(name)s: %(message)s")
    out = format_record(formatter, "GET %s -> 404: %s", f"/x\n{FORGED}", f"m\r\n{FORGED}")
    assert out.splitlines() == [out]
    assert f"\\n{FORGED}" in out


def test_traceback_lines_are_indented_and_escaped() -> None:
    formatter = EscapingFormatter("%(levelname)s %(name)s: %(message)s")
    try:
        raise ValueError(f"upstream said\n{FORGED}\u2028{FORGED}\x1b[2J")
    except ValueError as caught:
        out = format_record(formatter, "unexpected error", exc=caught)
    first, *rest = out.splitlines()
    assert first == "INFO chatd.app: unexpected error"
    assert rest and all(line.startswith(CONTINUATION) for line in rest)
    assert not any(line.lstrip().startswith("\x1b") for line in rest)
    assert "\\x1b[2J" in out


def test_setup_escapes_every_logger_including_third_party() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup(logging.INFO, stream)
        logging.getLogger("hypercorn.error").warning("bad request %r", f"\n{FORGED}")
        logging.getLogger("chatd").info("model %s", f"m\n{FORGED}")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert not any(line.startswith(FORGED) for line in lines)


def test_accept_errors_are_throttled() -> None:
    now = [100.0]
    throttle = AcceptErrorThrottle(interval=10.0, clock=lambda: now[0])
    emfile = OSError(24, "Too many open files")

    def report(name: str, msg: str, *args: object) -> logging.LogRecord:
        return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args,
                                 (OSError, emfile, None))

    asyncio_msg = "socket.accept() out of system resource\nsocket: <socket fd=7>"
    passed = [r for r in (report("asyncio", asyncio_msg) for _ in range(1024))
              if throttle.filter(r)]
    assert len(passed) == 1 and passed[0].exc_info is None
    assert passed[0].getMessage().startswith("socket.accept() out of system resource")
    now[0] += 10.0
    [again] = [r for r in [report("trio.serve_listeners",
                                  "accept returned %s (%s); retrying in %s seconds",
                                  "EMFILE", "Too many open files", 0.1)]
               if throttle.filter(r)]
    assert "1023 more such reports held back" in again.getMessage()
    other = logging.LogRecord("asyncio", logging.ERROR, __file__, 1, "Task was destroyed",
                              None, None)
    assert throttle.filter(other)  # only accept failures are throttled


@pytest.fixture
def hostile_ollama() -> Iterator[FakeOllama]:
    """Answers every chat with a 500 whose message tries to forge lines."""
    message = f"boom\n{FORGED}\r\n\x1b[2J{FORGED}\u2028{FORGED}"
    with in_thread(FakeOllama(models=["m"], failures={"m": (500, message, {})})) as fake:
        yield fake


@pytest.mark.parametrize("worker_class", ["asyncio", "trio"])
def test_served_log_cannot_be_forged(
    tmp_path: Path, hostile_ollama: FakeOllama, worker_class: str
) -> None:
    config = f'[chatd]\nollama_url = "{hostile_ollama.url}"\nauth_token_env = "TOKEN"\n'
    with launch(tmp_path, config, "--worker-class", worker_class,
                env={"TOKEN": "t0ken"}) as chatd:
        # Unauthenticated: a 401, whose log line quotes the path.
        r = httpx.get(f"{chatd.url}/v1/%0a{FORGED.replace(' ', '%20')}", timeout=10)
        assert r.status_code == 401
        r = httpx.get(f"{chatd.url}/nope%0d%0a{FORGED.replace(' ', '%20')}",
                      headers={"Authorization": "Bearer t0ken"}, timeout=10)
        assert r.status_code == 404
        r = httpx.post(f"{chatd.url}/v1/chat", headers={"Authorization": "Bearer t0ken"},
                       json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
                       timeout=10)
        assert r.status_code == 502
        chatd.stop()
    log = chatd.text()
    assert chatd.code == 0, log
    record = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+: ")
    for line in log.splitlines():
        assert record.match(line) or line.startswith(CONTINUATION), line
    assert not any(line.startswith(FORGED) for line in log.splitlines())
    assert "\x1b" not in log and "\u2028" not in log
    assert f"\\n{FORGED}" in log  # the upstream's message, escaped, is still there


# --- log_format = "json" ----------------------------------------------------------------

HOSTILE = f"m\n{FORGED}\r\x1b[2J\x7f\x85\u2028\u2029\x00"
RAW_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def test_json_record_is_one_object_on_one_line_without_control_characters() -> None:
    out = format_record(JsonFormatter(), "model %s from %s", HOSTILE, "kimi")
    assert out.splitlines() == [out]
    assert RAW_CONTROL.search(out) is None
    record = json.loads(out)
    assert set(record) == {"ts", "level", "logger", "pid", "msg"}
    assert record["pid"] == os.getpid()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["ts"])
    assert (record["level"], record["logger"]) == ("INFO", "chatd.app")
    # Decoded, the value is the visible escape, never the control character itself.
    assert record["msg"] == f"model {escape(HOSTILE)} from kimi"
    assert RAW_CONTROL.search(record["msg"]) is None


def test_json_fields_become_keys_and_their_strings_are_escaped() -> None:
    record = logging.LogRecord("chatd.request", logging.INFO, __file__, 1, "request", None,
                               None)
    record.fields = {"model": HOSTILE, "status": 200, "stream": False, "provider": None,
                     "fallbacks": ["kimi", HOSTILE], "tokens": {HOSTILE: 1},
                     "level": "forged"}
    out = JsonFormatter().format(record)
    assert out.splitlines() == [out] and RAW_CONTROL.search(out) is None
    data = json.loads(out)
    assert data["model"] == escape(HOSTILE)
    assert (data["status"], data["stream"], data["provider"]) == (200, False, None)
    assert data["fallbacks"] == ["kimi", escape(HOSTILE)]
    assert data["tokens"] == {escape(HOSTILE): 1}
    assert data["level"] == "INFO"  # a field never overrides the record's own keys


def test_json_traceback_is_a_field_of_the_same_line() -> None:
    try:
        raise ValueError(f"upstream said\n{FORGED}\u2028")
    except ValueError as caught:
        out = format_record(JsonFormatter(), "unexpected error", exc=caught)
    assert out.splitlines() == [out] and RAW_CONTROL.search(out) is None
    data = json.loads(out)
    assert data["msg"] == "unexpected error"
    assert data["exc"].startswith("Traceback (most recent call last):\\n")
    assert f"ValueError: upstream said\\n{FORGED}\\u2028" in data["exc"]


def test_setup_json_covers_every_logger() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup(logging.INFO, stream, json=True)
        logging.getLogger("hypercorn.error").warning("bad request %r", f"\n{FORGED}")
        logging.getLogger("chatd").info("model %s", HOSTILE)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = stream.getvalue().splitlines()
    assert [json.loads(line)["logger"] for line in lines] == ["hypercorn.error", "chatd"]
    assert RAW_CONTROL.search(stream.getvalue().replace("\n", "")) is None


@pytest.mark.parametrize("worker_class", ["asyncio", "trio"])
def test_served_json_log_is_one_object_a_line(
    tmp_path: Path, hostile_ollama: FakeOllama, worker_class: str
) -> None:
    config = f'[chatd]\nollama_url = "{hostile_ollama.url}"\nlog_format = "json"\n'
    with launch(tmp_path, config, "--worker-class", worker_class) as chatd:
        r = httpx.get(f"{chatd.url}/nope%0d%0a{FORGED.replace(' ', '%20')}", timeout=10)
        assert r.status_code == 404
        r = httpx.post(f"{chatd.url}/v1/chat",
                       json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
                       timeout=10)
        assert r.status_code == 502
        chatd.stop()
    log = chatd.text()
    assert chatd.code == 0, log
    records = [json.loads(line) for line in log.splitlines()]
    assert RAW_CONTROL.search(log.replace("\n", "")) is None
    assert any("serving on" in r["msg"] for r in records)
    assert any(f"\\n{FORGED}" in r["msg"] for r in records)  # the upstream's, escaped


class _Event:
    """A structured event's message, as server/observe.py makes one."""

    event = "request"

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text


@pytest.mark.parametrize("json_mode", [True, False], ids=["json", "text"])
def test_the_short_path_writes_what_the_handler_would(json_mode: bool) -> None:
    """EventWriter (the request line's path) and the handler's formatter agree on every
    byte but the timestamp's, hostile text included."""
    fields = {"request_id": "r-1", "model": HOSTILE, "status": 200, "stream": True,
              "provider": None, "fallbacks": ["kimi", HOSTILE], "latency_ms": 1.5}
    text = f"request r-1 model={HOSTILE} status=200"
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if json_mode else EscapingFormatter(TEXT_FORMAT))
    writer = EventWriter(handler, json=json_mode)
    writer.write("chatd.request", "request", fields, lambda: text)
    record = logging.LogRecord("chatd.request", logging.INFO, __file__, 0, _Event(text), (),
                               None)
    record.fields = fields
    expected = handler.format(record)
    [line] = stream.getvalue().splitlines()
    assert RAW_CONTROL.search(line) is None
    if json_mode:
        got, want = json.loads(line), json.loads(expected)
        assert got.pop("ts")[:13] == want.pop("ts")[:13]  # the same hour, at least
        assert got == want
    else:
        stamp = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")
        assert stamp.match(line) and stamp.match(expected)
        assert stamp.sub("", line) == stamp.sub("", expected)


def test_the_short_path_steps_aside_for_another_handler() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        root.handlers[:] = []
        handler = setup(logging.INFO, stream, json=True)
        writer = event_writer()
        assert writer is not None and writer.handler is handler
        request = logging.getLogger("chatd.request")
        assert writer.reaches_only_this(request)
        extra = logging.NullHandler()
        request.addHandler(extra)
        assert not writer.reaches_only_this(request)  # a test's or an embedder's handler
        request.removeHandler(extra)
        root.addHandler(extra)
        assert not writer.reaches_only_this(request)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
