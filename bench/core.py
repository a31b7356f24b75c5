"""Benchmark of chatd's sans-IO core: what each request and each stream chunk costs.

Run: ``python3 bench/core.py`` (add ``--quick`` for a fast, noisier pass).

Rows:
  request   build_request + parse_response of a non-streamed 3-message chat, per codec;
            baseline: orjson.dumps of the same upstream body + orjson.loads of the reply.
  chunk     one stream chunk through the codec's parser, per codec, for a realistic
            200-chunk stream fed two ways: in 1400-byte network reads (one TCP segment's
            payload, splitting events anywhere) and one event per feed (a live stream);
            baseline: a bare orjson.loads of the same chunk's JSON.
  import    ``import chatproto``: the cumulative time of the ``chatproto`` line of
            ``python -X importtime``; baseline: ``import json`` measured the same way.

Every figure is the median over repeated runs; ``ratio`` is figure / baseline in the same
invocation, so a slower machine moves both and the ratio stays comparable.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from chatproto import (
    ChatRequest,
    Codec,
    Message,
    Provider,
    Route,
    Secret,
    codec_for,
)

TARGET_REQUEST_US = 15.0
TARGET_CHUNK_US = 3.0
TARGET_IMPORT_MS = 30.0
STREAM_CHUNKS = 200
NETWORK_READ = 1400

PROVIDERS = {
    "ollama_chat": Provider(name="ollama", api="ollama_chat", base_url="http://127.0.0.1:11434"),
    "ollama_generate": Provider(
        name="ollama_cloud", api="ollama_generate", base_url="https://ollama.com",
        key=Secret("bench-not-a-key"),
    ),
    "openai_chat": Provider(
        name="openrouter", api="openai_chat", base_url="https://openrouter.ai/api/v1",
        key=Secret("bench-not-a-key"),
    ),
    "openai_responses": Provider(
        name="opencode", api="openai_responses", base_url="https://opencode.ai/zen/v1",
        key=Secret("bench-not-a-key"),
    ),
}
ROUTES = {
    "ollama_chat": Route(provider="ollama", upstream_model="qwen3:4b"),
    "ollama_generate": Route(provider="ollama_cloud", upstream_model="gpt-oss:120b"),
    "openai_chat": Route(provider="openrouter", upstream_model="moonshotai/kimi-k2"),
    "openai_responses": Route(provider="opencode", upstream_model="gpt-5.1"),
}

REQUEST = ChatRequest(
    model="ollama/qwen3:4b",
    messages=(
        Message(role="system", content="You are a concise assistant. Answer in one sentence."),
        Message(role="assistant", content="Hello! How can I help you today?"),
        Message(role="user", content="What is the capital of France, and why is it famous?"),
    ),
    max_tokens=256,
    temperature=0.2,
)

ANSWER = "Paris is the capital of France, famous for the Eiffel Tower, the Louvre and its cafés."
CREATED_AT = "2025-07-07T20:32:53.123456Z"
OLLAMA_TAIL = {
    "done": True, "done_reason": "stop", "total_duration": 3244883583,
    "load_duration": 21000000, "prompt_eval_count": 31, "prompt_eval_duration": 80000000,
    "eval_count": STREAM_CHUNKS - 1, "eval_duration": 3100000000,
}


def responses() -> dict[str, bytes]:
    """A non-streamed 2xx body per codec, shaped like the provider's (providers.md)."""
    return {
        "ollama_chat": orjson.dumps({
            "model": "qwen3:4b", "created_at": CREATED_AT,
            "message": {"role": "assistant", "content": ANSWER}, **OLLAMA_TAIL,
        }),
        "ollama_generate": orjson.dumps({
            "model": "gpt-oss:120b", "created_at": CREATED_AT, "response": ANSWER,
            **OLLAMA_TAIL,
        }),
        "openai_chat": orjson.dumps({
            "id": "gen-1753343279-abc", "object": "chat.completion", "created": 1753343279,
            "model": "moonshotai/kimi-k2", "provider": "Groq",
            "choices": [{"index": 0, "logprobs": None, "finish_reason": "stop",
                         "native_finish_reason": "stop",
                         "message": {"role": "assistant", "content": ANSWER,
                                     "refusal": None, "reasoning": None}}],
            "usage": {"prompt_tokens": 31, "completion_tokens": 22, "total_tokens": 53},
        }),
        "openai_responses": orjson.dumps({
            "id": "resp_0a1b", "object": "response", "created_at": 1753343279,
            "status": "completed", "error": None, "incomplete_details": None,
            "model": "gpt-5.1", "output": [{
                "id": "msg_0a1b", "type": "message", "status": "completed",
                "role": "assistant", "content": [{"type": "output_text", "text": ANSWER,
                                                  "annotations": [], "logprobs": []}]}],
            "usage": {"input_tokens": 31, "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens": 22, "output_tokens_details": {"reasoning_tokens": 0},
                      "total_tokens": 53},
        }),
    }


def _token(i: int) -> str:
    words = ("The", " city", " of", " Paris", ",", " café", " 🌍", " and", " the", " Seine")
    return words[i % len(words)]


def streams() -> dict[str, tuple[list[bytes], list[bytes]]]:
    """Per codec: (the wire events/lines, the JSON payload of each for the baseline)."""
    out: dict[str, tuple[list[bytes], list[bytes]]] = {}
    n = STREAM_CHUNKS - 1
    chat = [orjson.dumps({"model": "qwen3:4b", "created_at": CREATED_AT,
                          "message": {"role": "assistant", "content": _token(i)},
                          "done": False}) for i in range(n)]
    chat.append(orjson.dumps({"model": "qwen3:4b", "created_at": CREATED_AT,
                              "message": {"role": "assistant", "content": ""},
                              **OLLAMA_TAIL}))
    out["ollama_chat"] = ([line + b"\n" for line in chat], chat)
    gen = [orjson.dumps({"model": "gpt-oss:120b", "created_at": CREATED_AT,
                         "response": _token(i), "done": False}) for i in range(n)]
    gen.append(orjson.dumps({"model": "gpt-oss:120b", "created_at": CREATED_AT,
                             "response": "", **OLLAMA_TAIL}))
    out["ollama_generate"] = ([line + b"\n" for line in gen], gen)
    head = {"id": "gen-1753343279-abc", "provider": "Groq", "model": "moonshotai/kimi-k2",
            "object": "chat.completion.chunk", "created": 1753343279}
    sse = [orjson.dumps({**head, "choices": [{"index": 0, "delta": {
        "role": "assistant", "content": _token(i)}, "finish_reason": None,
        "native_finish_reason": None, "logprobs": None}]}) for i in range(n - 1)]
    sse.append(orjson.dumps({**head, "choices": [{"index": 0, "delta": {
        "role": "assistant", "content": ""}, "finish_reason": "stop",
        "native_finish_reason": "stop", "logprobs": None}]}))
    sse.append(orjson.dumps({**head, "choices": [], "usage": {
        "prompt_tokens": 31, "completion_tokens": n, "total_tokens": 31 + n}}))
    wire = [b"data: " + payload + b"\n\n" for payload in sse]
    wire.insert(0, b": OPENROUTER PROCESSING\n\n")
    wire.append(b"data: [DONE]\n\n")
    out["openai_chat"] = (wire, sse)
    # OpenAI Responses (openai-python response_stream_event): typed events with an
    # ``event:`` line each; the envelope, one message item, the deltas, its end, completed.
    item = {"item_id": "msg_0a1b", "output_index": 0, "content_index": 0}
    events = [
        {"type": "response.created", "response": {"id": "resp_0a1b", "status": "in_progress"}},
        {"type": "response.output_item.added", "output_index": 0, "item": {
            "id": "msg_0a1b", "type": "message", "role": "assistant", "content": []}},
        *({"type": "response.output_text.delta", **item, "delta": _token(i),
           "logprobs": [], "obfuscation": "Zx4"} for i in range(n - 3)),
        {"type": "response.output_item.done", "output_index": 0, "item": {
            "id": "msg_0a1b", "type": "message", "role": "assistant", "content": []}},
        {"type": "response.completed", "response": {
            "id": "resp_0a1b", "status": "completed", "output": [],
            "usage": {"input_tokens": 31, "output_tokens": n, "total_tokens": 31 + n}}},
    ]
    typed = [orjson.dumps({"sequence_number": i, **e}) for i, e in enumerate(events)]
    out["openai_responses"] = ([b"event: " + orjson.loads(t)["type"].encode() + b"\ndata: "
                                + t + b"\n\n" for t in typed], typed)
    return out


def median_us(fn: Callable[[], object], loops: int, repeats: int) -> float:
    """Median over ``repeats`` of the mean time of one call, in microseconds."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        for _ in range(loops):
            fn()
        times.append((time.perf_counter_ns() - t0) / loops / 1000)
    return statistics.median(times)


def import_ms(module: str, runs: int) -> float | None:
    """Median cumulative import time of ``module`` from ``-X importtime``, in ms."""
    samples = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"],
            capture_output=True, text=True, check=False,
            cwd=Path(__file__).resolve().parent.parent,
        )
        for line in done.stderr.splitlines():
            # "import time: self [us] | cumulative | imported package"
            parts = line.split("|")
            if len(parts) == 3 and parts[2].strip() == module:
                samples.append(int(parts[1]) / 1000)
    return statistics.median(samples) if samples else None


def load_codecs() -> tuple[dict[str, Codec], list[str]]:
    codecs: dict[str, Codec] = {}
    notes: list[str] = []
    for api in PROVIDERS:
        try:
            codecs[api] = codec_for(api)
        except (KeyError, ImportError, AttributeError) as exc:
            notes.append(f"skipped {api}: codec not available ({type(exc).__name__}: {exc})")
    return codecs, notes


def row(name: str, value: float, unit: str, target: float, baseline: float | None) -> str:
    ok = "ok" if value <= target else "OVER"
    ratio = f"{value / baseline:6.1f}x" if baseline else "     -"
    base = f"{baseline:9.2f}" if baseline is not None else "        -"
    return f"{name:<38}{value:9.2f} {unit:<3}{f'<= {target:g}':>9} {ok:<5}{base} {ratio}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (noisier)")
    args = parser.parse_args()
    repeats, loops, stream_loops, import_runs = (5, 500, 5, 3) if args.quick else (15, 3000, 30, 5)

    codecs, notes = load_codecs()
    bodies = responses()
    wires = streams()
    print(f"chatproto core benchmark  (python {sys.version.split()[0]}, median of {repeats})")
    print(f"{'what':<38}{'median':>9} {'':<3}{'target':>9} {'':<5}{'baseline':>9} {'ratio':>7}")

    for api, codec in codecs.items():
        provider, route, body = PROVIDERS[api], ROUTES[api], bodies[api]
        name = provider.name

        def request_cycle(codec: Codec = codec, provider: Provider = provider,
                          route: Route = route, body: bytes = body, name: str = name) -> None:
            codec.build_request(REQUEST, route, provider)
            codec.parse_response(name, body)

        try:
            request_cycle()
        except Exception as exc:  # a codec bug must not hide the other rows
            notes.append(f"{api} request: {type(exc).__name__}: {exc}")
        else:
            upstream = orjson.loads(codec.build_request(REQUEST, route, provider).body)

            def bare(upstream: object = upstream, body: bytes = body) -> None:
                orjson.dumps(upstream)
                orjson.loads(body)

            print(row(f"request {api}", median_us(request_cycle, loops, repeats), "us",
                      TARGET_REQUEST_US, median_us(bare, loops, repeats)))

        wire, payloads = wires[api]
        whole = b"".join(wire)
        reads = [whole[i : i + NETWORK_READ] for i in range(0, len(whole), NETWORK_READ)]
        per = len(payloads)

        def baseline(payloads: list[bytes] = payloads) -> None:
            for p in payloads:
                orjson.loads(p)

        base_us = median_us(baseline, stream_loops, repeats) / per
        for label, chunks in (("net reads", reads), ("1 event/feed", wire)):

            def stream(chunks: list[bytes] = chunks, codec: Codec = codec,
                       name: str = name) -> None:
                feed = codec.stream_parser(name).feed
                for chunk in chunks:
                    feed(chunk)
                feed(b"")

            try:
                stream()
            except Exception as exc:
                notes.append(f"{api} stream ({label}): {type(exc).__name__}: {exc}")
                continue
            us = median_us(stream, stream_loops, repeats) / per
            print(row(f"chunk {api} ({label})", us, "us", TARGET_CHUNK_US, base_us))

    ms = import_ms("chatproto", import_runs)
    base_ms = import_ms("json", import_runs)
    if ms is None:
        notes.append("import: no chatproto line in -X importtime output")
    else:
        print(row("import chatproto", ms, "ms", TARGET_IMPORT_MS, base_ms))
    print(f"(chunk figures are per stream chunk: {STREAM_CHUNKS} chunks a stream, network "
          f"reads of {NETWORK_READ} bytes; import baseline is `import json`)")
    for note in notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
