"""What an operator sees: ``/metrics`` per door, who-served-it headers, the request log line.

Known traffic goes through every door on the route table (each with a body in its own
dialect, :data:`BODIES`) against in-memory upstreams whose answers carry fixed token
counts, then ``/metrics`` is scraped and every counter compared with the exact value that
traffic must give. The log lines are formatted by the real JSON formatter and read back.
A door on the route table without a row in :data:`BODIES` fails the coverage test, so a
new door is never left uncounted silently.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import mock_stack
import orjson
import pytest
from canned import lab
from door_shapes import door_paths
from mock_stack import app_over
from test_server import Result, call, ollama_answer, ollama_lines, openai_error, running

from chatproto import HTTPRequest
from server.app import ChatdApp
from server.logs import setup
from server.observe import MAX_LOGGED_MODEL
from transports import MockResponse, MockTransport

KEY = "sk-kimi-observe-SECRET-5e1d0c9a"
CONTENT = "PROMPT-CONTENT-never-logged"
FORGED = "2031-01-01T00:00:00.000Z forged"
RAW_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")

MODELS = '[models]\nsmart = ["kimi/busy", "ollama/m"]\n'


def _messages(model: str, stream: bool) -> dict[str, Any]:
    return {"model": model, "stream": stream,
            "messages": [{"role": "user", "content": CONTENT}]}


#: A chat request in each door's own dialect: path -> (model, stream) -> body.
BODIES: dict[str, Any] = {
    "/v1/chat": _messages,
    "/v1/chat/completions": _messages,
    "/api/chat": _messages,
    "/api/generate": lambda model, stream: {"model": model, "stream": stream,
                                            "prompt": CONTENT},
    "/v1/responses": lambda model, stream: {"model": model, "stream": stream,
                                            "input": CONTENT},
    "/v1/messages": lambda model, stream: {**_messages(model, stream), "max_tokens": 16},
}


def test_every_door_has_a_request_here() -> None:
    missing = set(door_paths()) - set(BODIES)
    assert not missing, f"add a request body for {sorted(missing)} to BODIES"
    assert {"native", "openai", "ollama", "anthropic", "responses"} <= set(
        door_paths().values())


#: What kimi reports for every answer: cached and reasoning tokens, as OpenAI spells them.
KIMI_USAGE = {"prompt_tokens": 11, "completion_tokens": 6, "total_tokens": 17,
              "prompt_tokens_details": {"cached_tokens": 4},
              "completion_tokens_details": {"reasoning_tokens": 3}}


def kimi(body: dict[str, Any]) -> MockResponse:
    if not body.get("stream"):
        return MockResponse(200, [("content-type", "application/json")], (orjson.dumps({
            "id": "c", "object": "chat.completion", "created": 1, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "Hi there"}}],
            "usage": KIMI_USAGE}),))
    head = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": body["model"]}
    chunks = [
        {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"},
                              "finish_reason": None}]},
        {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {**head, "choices": [], "usage": KIMI_USAGE},
    ]
    return MockResponse(200, [("content-type", "text/event-stream")],
                        [b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks]
                        + [b"data: [DONE]\n\n"])


def upstream(request: HTTPRequest) -> MockResponse:
    """kimi: ``busy`` is a 429 quoting its key (the tier falls back), other models answer
    with :data:`KIMI_USAGE`; ollama by model name."""
    body = orjson.loads(request.body)
    model = body["model"]
    if request.host == "kimi.test":
        return openai_error(429, f"slow down, key {KEY}") if model == "busy" else kimi(body)
    if model == "broken":
        return MockResponse(500, [("content-type", "application/json")],
                            (orjson.dumps({"error": "boom"}),))
    if not body.get("stream", True):
        return ollama_answer("Hi there", prompt=7, completion=2)
    lines = ollama_lines("Hi", " there", prompt=5, completion=3)
    if model == "midway":
        lines = [lines[0], orjson.dumps({"error": "upstream fell over"}) + b"\n"]
    return MockResponse(200, [("content-type", "application/x-ndjson")], lines)


def make(extra: str = "") -> ChatdApp:
    return app_over(MockTransport(upstream), mock_stack.config(extra, models=MODELS),
                    {"KIMI_API_KEY": KEY})


#: (model, stream, status, provider label, error type): the traffic sent to every door.
TRAFFIC = [
    ("ollama/m", False, 200, "ollama", None),
    ("ollama/m", True, 200, "ollama", None),
    ("ollama/midway", True, 200, "ollama", "upstream_error"),
    ("ollama/broken", False, 502, "ollama", "upstream_error"),
    ("smart", False, 200, "ollama", None),  # kimi 429, then ollama
    ("kimi/k2", False, 200, "kimi", None),
    ("kimi/k2", True, 200, "kimi", None),
    ("nope:cloud", False, 404, "", "provider_not_registered"),
]


Row = tuple[str, bool, int, str, "str | None"]


async def send_traffic(app: ChatdApp) -> list[tuple[str, Row | None, Result]]:
    """Every row of :data:`TRAFFIC` through every door, then a body that is not JSON."""
    out: list[tuple[str, Row | None, Result]] = []
    for path in door_paths():
        for row in TRAFFIC:
            body = orjson.dumps(BODIES[path](row[0], row[1]))
            out.append((path, row, await call(app, "POST", path, body)))
        out.append((path, None, await call(app, "POST", path, b"{not json")))
    return out


def samples(text: str) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines() if line and not line.startswith("#")
    }


def label(name: str, **labels: str) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


@pytest.mark.anyio
async def test_metrics_after_known_traffic_through_every_door() -> None:
    app = make()
    async with running(app):
        results = await send_traffic(app)
        scraped = await call(app, "GET", "/metrics")
    assert scraped.status == 200
    got = samples(scraped.body.decode())
    for path, row, result in results:  # the traffic did what the table says
        assert result.status == (row[2] if row else 400), (path, row, result.body)

    paths = door_paths()
    per_door = Counter(paths.values())  # /api/chat and /api/generate are both "ollama"
    want: Counter[str] = Counter()
    for door, routes in per_door.items():
        for _, _, status, provider, error in TRAFFIC:
            want[label("chatd_requests_total", door=door, provider=provider,
                       status=str(status))] += routes
            if error:
                want[label("chatd_request_errors_total", door=door, type=error)] += routes
        want[label("chatd_requests_total", door=door, provider="", status="400")] += routes
        want[label("chatd_request_errors_total", door=door, type="invalid_request")] += routes
        want[label("chatd_overhead_seconds_count", door=door)] += routes * (len(TRAFFIC) + 1)
    doors = len(paths)
    # Upstream calls per door: 2 + 1 + 1 + 1 (after kimi's 429) = 5 to ollama, and
    # 1 (the 429) + 2 to kimi.
    want[label("chatd_upstream_requests_total", provider="ollama")] = 5 * doors
    want[label("chatd_upstream_requests_total", provider="kimi")] = 3 * doors
    want[label("chatd_upstream_errors_total", provider="ollama", type="upstream_error")] = (
        2 * doors)
    want[label("chatd_upstream_errors_total", provider="kimi", type="rate_limited")] = doors
    want[label("chatd_upstream_latency_seconds_count", provider="ollama")] = 5 * doors
    want[label("chatd_upstream_latency_seconds_count", provider="kimi")] = 3 * doors
    want[label("chatd_upstream_cancelled_total", provider="ollama")] = 0
    want[label("chatd_upstream_cancelled_total", provider="kimi")] = 0
    want[label("chatd_fallbacks_total", **{"from": "kimi", "to": "ollama"})] = doors
    # Tokens: ollama two whole answers (7 + 2) and one finished stream (5 + 3) per door;
    # kimi two answers of KIMI_USAGE (cached and reasoning are parts of the others).
    want[label("chatd_tokens_total", provider="ollama", kind="prompt")] = (2 * 7 + 5) * doors
    want[label("chatd_tokens_total", provider="ollama", kind="completion")] = (
        (2 * 2 + 3) * doors)
    for kind in ("cached", "cache_creation", "reasoning"):
        want[label("chatd_tokens_total", provider="ollama", kind=kind)] = 0
    for kind, n in (("prompt", 11), ("completion", 6), ("cached", 4), ("reasoning", 3),
                    ("cache_creation", 0)):
        want[label("chatd_tokens_total", provider="kimi", kind=kind)] = 2 * n * doors
    want["chatd_in_flight"] = 0
    want["chatd_open_streams"] = 0
    want["chatd_workers"] = 1
    for key, value in want.items():
        assert got.get(key) == value, (key, got.get(key), value)
    # Nothing counted that the traffic did not make.
    requests = {k: v for k, v in got.items() if k.startswith("chatd_requests_total")}
    assert requests == {k: v for k, v in want.items() if k.startswith("chatd_requests_total")}
    assert sum(requests.values()) == len(results)
    errors = {k: v for k, v in got.items() if k.startswith("chatd_request_errors_total")}
    assert errors == {k: v for k, v in want.items()
                      if k.startswith("chatd_request_errors_total")}
    fallbacks = {k for k in got if k.startswith("chatd_fallbacks_total")}
    assert fallbacks == {label("chatd_fallbacks_total", **{"from": "kimi", "to": "ollama"})}


@pytest.mark.anyio
async def test_who_served_it_headers() -> None:
    app = make()
    async with running(app):
        whole = await call(app, "POST", "/v1/chat/completions",
                           orjson.dumps(_messages("ollama/m", False)),
                           [("x-request-id", "client-id-1")])
        streamed = await call(app, "POST", "/v1/messages",
                              orjson.dumps(BODIES["/v1/messages"]("smart", True)))
        failed = await call(app, "POST", "/api/chat",
                            orjson.dumps(_messages("ollama/broken", False)))
        unrouted = await call(app, "POST", "/v1/chat",
                              orjson.dumps(_messages("nope:cloud", False)))
        refused = await call(app, "POST", "/v1/chat", b"[]")
    assert whole.status == 200
    assert whole.headers["x-request-id"] == "client-id-1"
    assert whole.headers["x-chatd-provider"] == "ollama"
    assert whole.headers["x-chatd-upstream-model"] == "m"
    assert 0 <= float(whole.headers["x-chatd-overhead-ms"]) < 10_000
    assert streamed.status == 200 and streamed.headers["x-chatd-provider"] == "ollama"
    assert streamed.headers["x-chatd-upstream-model"] == "m"
    assert float(streamed.headers["x-chatd-overhead-ms"]) >= 0
    assert failed.status == 502 and failed.headers["x-chatd-provider"] == "ollama"
    for result in (unrouted, refused):  # routing never chose a provider
        assert result.status in (400, 404)
        assert "x-chatd-provider" not in result.headers
        assert len(result.headers["x-request-id"]) == 32


@contextmanager
def json_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup(logging.INFO, stream, json=True)
        yield stream
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


#: The keys of a JSON request line: the record's own, then the request's.
REQUEST_FIELDS = {
    "ts", "level", "logger", "pid", "msg", "request_id", "door", "model", "stream", "provider",
    "upstream_model", "status", "error_type", "latency_ms", "upstream_ms", "queued_ms",
    "overhead_ms", "prompt_tokens", "completion_tokens", "cached_tokens",
    "reasoning_tokens", "fallbacks",
}


@pytest.mark.anyio
async def test_one_json_log_line_per_request() -> None:
    app = make('log_format = "json"')
    hostile = f"ollama/m\n{FORGED}\x1b[2J\u2028"
    with json_log() as stream:
        async with running(app):
            results = await send_traffic(app)
            forged = await call(app, "POST", "/v1/chat",
                                orjson.dumps(_messages(hostile, False)),
                                [("x-request-id", "forge-test")])
    text = stream.getvalue()
    assert forged.status == 200
    # The upstream model is the client's text: the header carries it percent-escaped.
    assert forged.headers["x-chatd-upstream-model"] == (
        "m%0A2031-01-01T00:00:00.000Z%20forged%1B%5B2J")
    assert RAW_CONTROL.search(text.replace("\n", "")) is None
    assert KEY not in text and CONTENT not in text
    records = [json.loads(line) for line in text.splitlines()]
    lines = [r for r in records if r["logger"] == "chatd.request"]
    assert len(lines) == len(results) + 1  # exactly one per request
    for line in lines:  # every field, always (null where it does not apply), nothing else
        assert set(line) == REQUEST_FIELDS, set(line) ^ REQUEST_FIELDS
        assert line["pid"] == os.getpid()  # which worker wrote it
    by_id = {r["request_id"]: r for r in lines}
    assert len(by_id) == len(lines)
    for path, row, result in results:
        line = by_id[result.headers["x-request-id"]]
        assert line["msg"] == "request"
        assert line["door"] == door_paths()[path]
        assert line["status"] == result.status
        if row is None:  # the body that is not JSON
            assert (line["model"], line["provider"], line["error_type"]) == (
                None, None, "invalid_request")
            continue
        model, stream_flag, _, provider, error = row
        assert line["model"] == model
        assert line["provider"] == (provider or None)
        assert line["upstream_model"] == (
            None if not provider else "m" if model == "smart" else model.partition("/")[2])
        assert line["error_type"] == error
        assert line["stream"] is (stream_flag and result.status == 200)
        assert line["latency_ms"] >= line["overhead_ms"] >= 0
        assert line["latency_ms"] >= line["upstream_ms"]
        assert line["queued_ms"] == 0  # no max_concurrency here
        assert line["fallbacks"] == (["kimi"] if model == "smart" else [])
        tokens = (line["prompt_tokens"], line["completion_tokens"], line["cached_tokens"],
                  line["reasoning_tokens"])
        if model == "ollama/m" or model == "smart":
            assert tokens == ((5, 3) if stream_flag else (7, 2)) + (None, None)
        elif model == "kimi/k2":
            assert tokens == (11, 6, 4, 3)
        else:  # failed: no usage reached chatd
            assert tokens == (None, None, None, None)
    line = by_id["forge-test"]
    assert line["model"] == "ollama/m\\n" + FORGED + "\\x1b[2J\\u2028"
    assert not any(r["msg"].startswith(FORGED) for r in records)


@pytest.mark.anyio
async def test_text_request_line(caplog: pytest.LogCaptureFixture) -> None:
    app = make()
    with caplog.at_level(logging.INFO, logger="chatd.request"):
        async with running(app):
            await call(app, "POST", "/v1/chat", orjson.dumps(_messages("smart", False)),
                       [("x-request-id", "text-1")])
    [record] = [r for r in caplog.records if r.name == "chatd.request"]
    line = record.getMessage()
    assert line.startswith("request text-1 door=native model=smart stream=false "
                           "provider=ollama upstream_model=m status=200 ")
    assert "fallbacks=kimi" in line and "prompt_tokens=7" in line


@pytest.mark.anyio
async def test_metrics_and_request_lines_can_be_turned_off(
    caplog: pytest.LogCaptureFixture
) -> None:
    app = make("metrics = false\nlog_requests = false")
    with caplog.at_level(logging.INFO, logger="chatd.request"):
        async with running(app):
            ok = await call(app, "POST", "/v1/chat", orjson.dumps(_messages("ollama/m", False)))
            scrape = await call(app, "GET", "/metrics")
    assert ok.status == 200 and ok.headers["x-chatd-provider"] == "ollama"
    assert scrape.status == 404
    assert [r for r in caplog.records if r.name == "chatd.request"] == []
    snap = app.telemetry.export()
    assert dict(snap.requests) == {} and snap.in_flight == 0


@pytest.mark.anyio
async def test_gauges_while_a_stream_is_open() -> None:
    release = anyio.Event()
    opened = anyio.Event()

    async def slow_lines() -> Any:
        first, *rest = ollama_lines("Hi", " there")
        yield first
        opened.set()
        await release.wait()
        for line in rest:
            yield line

    def handler(request: HTTPRequest) -> MockResponse:
        return MockResponse(200, [("content-type", "application/x-ndjson")], slow_lines())

    app = app_over(MockTransport(handler), mock_stack.config(models=MODELS), {})
    async with running(app), anyio.create_task_group() as tg:
        tg.start_soon(call, app, "POST", "/v1/chat",
                      orjson.dumps(_messages("ollama/m", True)))
        with anyio.fail_after(5):
            await opened.wait()
        during = samples((await call(app, "GET", "/metrics")).body.decode())
        release.set()
    assert (during["chatd_in_flight"], during["chatd_open_streams"]) == (1, 1)
    snap = app.telemetry.export()
    assert (snap.in_flight, snap.open_streams) == (0, 0)


def _readme_section(title: str) -> str:
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end]


def _table_rows(section: str, header: str) -> list[list[str]]:
    """The rows of the Markdown table in ``section`` whose header line starts ``header``,
    each a list of its cells."""
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def test_readme_documents_every_key_with_its_default() -> None:
    """The operators' reference in the README keeps up with the schema: every key
    server/config.py accepts is a row (none missing, none made up), and a default written
    as a TOML value is the default the code has."""
    import tomllib

    from server import config

    section = _readme_section("Operating chatd")
    chatd_rows = {r[0].strip("`"): r[1] for r in _table_rows(section, "| key |")}
    assert set(chatd_rows) == set(config._CHATD_KEYS), (
        "README's [chatd] table and server/config.py disagree: "
        f"{set(chatd_rows) ^ set(config._CHATD_KEYS)}")
    start = section.index("`[chatd.providers.NAME]`")
    provider_rows = {r[0].strip("`"): r[1]
                     for r in _table_rows(section[start:], "| key |")}
    assert set(provider_rows) == set(config._CONFIGURED_KEYS), (
        "README's provider table and server/config.py disagree: "
        f"{set(provider_rows) ^ set(config._CONFIGURED_KEYS)}")
    ollama = section[section.index("`[chatd.providers.ollama]` takes"):].split("\n\n")[0]
    assert set(re.findall(r"`([a-z_]+)`", ollama)) - {"ollama_url", "chatd"} == set(
        config._OLLAMA_KEYS)
    assert "`[chatd.cors]`: `allow_origins" in section  # its one key, config._origins
    checked = 0
    defaults = config.DEFAULT_CONFIG.chatd
    for key, cell in chatd_rows.items():
        try:
            value = tomllib.loads(f"v = {cell.strip('`')}")["v"]
        except tomllib.TOMLDecodeError:  # a default in words ("timeout_secs", "no bound")
            continue
        assert getattr(defaults, key) == value, (key, cell)
        checked += 1
    assert checked >= 15
    pc = config.ProviderConfig(base_url="")
    assert provider_rows["queue_timeout_secs"] == f"`{pc.queue_timeout_secs:g}`"
    assert provider_rows["key_header"] == '`"authorization"`'


def test_readme_lists_exactly_the_metrics_chatd_exposes() -> None:
    """README's metrics table is server/metrics.py's METRICS: names, types and labels."""
    from server.metrics import METRICS

    section = _readme_section("Operating chatd")
    documented = {
        r[0].strip("`"): (r[1], tuple(re.findall(r"`([a-z_]+)`", r[2])))
        for r in _table_rows(section, "| metric |")
    }
    assert documented == {name: (kind, labels) for name, kind, labels, _ in METRICS}


@pytest.mark.anyio
async def test_embeddings_are_counted_under_their_door_and_bounded_by_max_concurrency() -> None:
    gate = anyio.Event()
    arrived = anyio.Event()

    async def embed_upstream(request: HTTPRequest) -> MockResponse:
        assert request.url.endswith("/api/embed")
        arrived.set()
        await gate.wait()
        inputs = orjson.loads(request.body)["input"]
        body = {"model": "e", "embeddings": [[0.5, 0.25] for _ in inputs],
                "prompt_eval_count": 4}
        return MockResponse(200, [("content-type", "application/json")],
                            (orjson.dumps(body),))

    ollama = "[chatd.providers.ollama]\nmax_concurrency = 1\nqueue_timeout_secs = 0.1\n"
    app = app_over(MockTransport(embed_upstream),
                   mock_stack.config(models=MODELS, tables=ollama), {})
    results: dict[str, Result] = {}

    async def one(name: str, path: str, body: dict[str, Any]) -> None:
        results[name] = await call(app, "POST", path, orjson.dumps(body))

    async with running(app):
        async with anyio.create_task_group() as tg:
            tg.start_soon(one, "openai", "/v1/embeddings", {"model": "ollama/e", "input": "a"})
            with anyio.fail_after(5):
                await arrived.wait()
            await one("ollama", "/api/embed", {"model": "ollama/e", "input": ["a", "b"]})
            gate.set()
        await one("legacy", "/api/embeddings", {"model": "ollama/e", "prompt": "p"})
        got = samples((await call(app, "GET", "/metrics")).body.decode())
    assert results["openai"].status == 200
    assert results["openai"].headers["x-chatd-provider"] == "ollama"
    assert results["ollama"].status == 503  # the slot was taken: upstream_overloaded
    assert results["ollama"].headers["x-chatd-provider"] == "ollama"
    assert results["legacy"].status == 200
    assert got[label("chatd_requests_total", door="openai", provider="ollama", status="200")] == 1
    assert got[label("chatd_requests_total", door="ollama", provider="ollama", status="503")] == 1
    assert got[label("chatd_requests_total", door="ollama", provider="ollama", status="200")] == 1
    assert got[label("chatd_request_errors_total", door="ollama",
                     type="upstream_overloaded")] == 1
    assert got[label("chatd_upstream_saturated_total", provider="ollama")] == 1
    assert got[label("chatd_upstream_requests_total", provider="ollama")] == 2
    assert got[label("chatd_tokens_total", provider="ollama", kind="prompt")] == 8


def hanging(request: HTTPRequest, arrived: anyio.Event) -> MockResponse:
    """``ollama/hang``: a stream's first line then nothing, or no whole answer at all."""
    async def lines() -> Any:
        if orjson.loads(request.body).get("stream", True):
            yield ollama_lines("Hi")[0]
        arrived.set()
        await anyio.sleep_forever()
        yield b""  # never reached: the call is cancelled

    return MockResponse(200, [("content-type", "application/x-ndjson")], lines())


async def leave(app: ChatdApp, path: str, body: bytes, when: anyio.Event) -> list[Any]:
    """A request through the ASGI interface whose client goes away once ``when`` is set, or
    at its answer's first bytes; what was sent to it."""
    inbox = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        if inbox:
            return inbox.pop(0)
        await when.wait()
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(dict(message))
        if message["type"] == "http.response.body" and message.get("body"):
            when.set()

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "headers": []}
    with anyio.fail_after(5):
        await app(scope, receive, send)
    return sent


@pytest.mark.anyio
async def test_a_client_that_goes_away_is_counted_on_every_door() -> None:
    """Through every door, a client leaves mid-stream and one leaves while a whole answer
    is pending: each is a 499 ``client_closed`` request and a cancelled upstream call, and
    the gauges come back to 0."""
    arrived = anyio.Event()
    transport = MockTransport(lambda request: hanging(request, arrived))
    app = app_over(transport, mock_stack.config('log_format = "json"', models=MODELS), {})
    with json_log() as stream:
        async with running(app):
            for path in door_paths():
                for streamed in (True, False):
                    arrived = anyio.Event()
                    body = orjson.dumps(BODIES[path]("ollama/hang", streamed))
                    await leave(app, path, body, arrived)
            got = samples((await call(app, "GET", "/metrics")).body.decode())
    paths = door_paths()
    for door, routes in Counter(paths.values()).items():
        assert got[label("chatd_requests_total", door=door, provider="ollama",
                         status="499")] == 2 * routes
        assert got[label("chatd_request_errors_total", door=door,
                         type="client_closed")] == 2 * routes
    requests = {k: v for k, v in got.items() if k.startswith("chatd_requests_total")}
    assert sum(requests.values()) == 2 * len(paths)
    assert got[label("chatd_upstream_cancelled_total", provider="ollama")] == 2 * len(paths)
    assert got[label("chatd_upstream_requests_total", provider="ollama")] == 2 * len(paths)
    assert label("chatd_upstream_errors_total", provider="ollama",
                 type="upstream_error") not in got
    assert got[label("chatd_tokens_total", provider="ollama", kind="prompt")] == 0
    assert (got["chatd_in_flight"], got["chatd_open_streams"]) == (0, 0)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    requests_logged = [r for r in lines if r["logger"] == "chatd.request"]
    assert len(requests_logged) == 2 * len(paths)
    assert {(r["status"], r["error_type"], r["provider"]) for r in requests_logged} == {
        (499, "client_closed", "ollama")}


def test_the_readme_request_line_shows_every_field() -> None:
    section = _readme_section("Operating chatd")
    example = section[section.index('```json\n{"ts"') + len("```json\n"):]
    assert set(json.loads(example.split("\n", 1)[0])) == REQUEST_FIELDS


@pytest.mark.anyio
async def test_time_queued_for_a_slot_is_logged_and_not_overhead() -> None:
    """max_concurrency = 1: the second caller waits for the first one's slot; its line has
    that wait as ``queued_ms``, and neither the wait nor the upstream's time is overhead."""
    gate = anyio.Event()
    arrived = anyio.Event()

    async def held(request: HTTPRequest) -> MockResponse:
        if not arrived.is_set():
            arrived.set()
            await gate.wait()
        return ollama_answer("Hi there", prompt=7, completion=2)

    ollama = "[chatd.providers.ollama]\nmax_concurrency = 1\nqueue_timeout_secs = 30\n"
    app = app_over(MockTransport(held),
                   mock_stack.config('log_format = "json"', models=MODELS, tables=ollama), {})
    body = orjson.dumps(_messages("ollama/m", False))
    results: dict[str, Result] = {}

    async def one(name: str) -> None:
        results[name] = await call(app, "POST", "/v1/chat", body, [("x-request-id", name)])

    with json_log() as stream:
        async with running(app), anyio.create_task_group() as tg:
            tg.start_soon(one, "holder")
            with anyio.fail_after(5):
                await arrived.wait()
            tg.start_soon(one, "waiter")
            await anyio.sleep(0.2)  # the waiter is queued this long at least
            gate.set()
    assert {r.status for r in results.values()} == {200}
    lines = {r["request_id"]: r for r in map(json.loads, stream.getvalue().splitlines())
             if r["logger"] == "chatd.request"}
    waiter, holder = lines["waiter"], lines["holder"]
    assert waiter["queued_ms"] >= 150
    assert holder["queued_ms"] == 0 and holder["upstream_ms"] >= 150
    for line in (waiter, holder):
        assert line["latency_ms"] >= 150
        assert line["overhead_ms"] == pytest.approx(
            line["latency_ms"] - line["upstream_ms"] - line["queued_ms"], abs=0.01)
        assert line["overhead_ms"] < line["latency_ms"] / 2


@pytest.mark.anyio
async def test_a_huge_model_name_gives_a_bounded_log_line_and_a_readable_answer(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A client's 300 kB model name: the request log line cuts ``model=`` at 200
    characters (server/observe.py ``MAX_LOGGED_MODEL``) but writes ``upstream_model=``
    whole, and the answer carries it whole in ``x-chatd-upstream-model``, a header too
    big for HTTP clients (h11, which httpx uses, refuses heads over 64 KiB), so the caller
    cannot even read the 502. SPEC §5: the log is one bounded line per request."""
    caplog.set_level("INFO", logger="chatd")
    name = "m" * 300_000
    async with lab(tmp_path) as s, s.http() as client:
        try:
            r: httpx.Response | None = await client.post("/v1/chat", json={
                "model": f"oai/{name}", "messages": [{"role": "user", "content": "hi"}]})
        except httpx.RemoteProtocolError:
            r = None
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "chatd.request"]
    assert lines and max(len(line) for line in lines) < 10_000
    assert r is not None, "the answer's head could not be parsed"
    # Both names are cut alike, in the log and in the header (percent-escaped "…").
    clipped = "m" * MAX_LOGGED_MODEL
    assert r.status_code == 502
    assert r.headers["x-chatd-upstream-model"] == clipped + "%E2%80%A6"
    fields = [rec.__dict__["fields"] for rec in caplog.records if rec.name == "chatd.request"]
    assert fields[-1]["model"] == f"oai/{name}"[:MAX_LOGGED_MODEL] + "…"
    assert fields[-1]["upstream_model"] == clipped + "…"


@pytest.mark.anyio
@pytest.mark.parametrize("model", ["kimi/", "openrouter/", "oai/"], ids=lambda m: m[:-1])
async def test_a_huge_model_name_writes_no_huge_line_anywhere(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, model: str) -> None:
    """Refused at routing (404 ``provider_not_registered``, 400 ``invalid_request``) or
    by the upstream (502): no log record of chatd's and no answer quotes the 300 kB name
    whole (the error message is both a log line and the body)."""
    caplog.set_level("DEBUG", logger="chatd")
    async with lab(tmp_path) as s, s.http() as client:
        for stream in (False, True):
            r = await client.post("/v1/chat/completions", json={
                "model": model + "m" * 300_000, "stream": stream,
                "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code in (400, 404, 502)
            assert len(r.content) < 10_000
    records = [rec for rec in caplog.records if rec.name.startswith("chatd")]
    assert records and max(len(rec.getMessage()) for rec in records) < 10_000
