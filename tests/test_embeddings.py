"""Embeddings (SPEC §3): ``POST /v1/embeddings``, ``/api/embed``, ``/api/embeddings``.

The core's codecs table by table (door bodies, upstream requests and answers, base64), the
plan (routing, skipping a target without embeddings, falling back), then the official
clients (openai's ``embeddings.create``, ollama's ``embed`` and legacy ``embeddings``)
through a running chatd to both upstream families.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fake_ollama import vector_for
from test_front_doors import TOKEN, stack
from test_front_doors import pytestmark as _front_doors_marks

from chatproto import ChatError, EmbedPlan, EmbedRequest, EmbedResponse, Provider, Route, Secret
from chatproto.dialects.ollama import embed_codec as ollama_codec
from chatproto.dialects.ollama import parse_embed, parse_embeddings, render_embed, render_embeddings
from chatproto.dialects.openai_chat import decode_base64_vector, encode_base64_vector
from chatproto.dialects.openai_chat import embed_codec as openai_codec
from chatproto.dialects.openai_chat import parse_embeddings as parse_openai
from chatproto.dialects.openai_chat import render_embeddings as render_openai

OLLAMA = Provider(name="ollama", api="ollama_chat", base_url="http://o.test/", prefix="ollama/")
OPENROUTER = Provider(name="openrouter", api="openai_chat", base_url="https://or.test/v1",
                      prefix="openrouter/", key=Secret("sk-or"), vendor_model_ids=True)
ANTHROPIC = Provider(name="claude", api="anthropic_messages", base_url="https://a.test",
                     prefix="claude/", key=Secret("k"))
PROVIDERS = {p.name: p for p in (OLLAMA, OPENROUTER, ANTHROPIC)}
PROFILES = tuple(PROVIDERS.values())


# --- the doors' bodies ----------------------------------------------------------------------

@pytest.mark.parametrize(("body", "inputs", "encoding"), [
    ({"model": "m", "input": "hi"}, ("hi",), "float"),
    ({"model": "m", "input": ["a", "b"], "encoding_format": "base64"}, ("a", "b"), "base64"),
    ({"model": "m", "input": [1, 2, 3]}, ((1, 2, 3),), "float"),
    ({"model": "m", "input": [[1, 2], "x"]}, ((1, 2), "x"), "float"),
])
def test_openai_door_parses(body: dict[str, Any], inputs: tuple[object, ...],
                            encoding: str) -> None:
    call = parse_openai(orjson.dumps({**body, "user": "u-1", "dimensions": 8}))
    assert call.request.inputs == inputs
    assert call.encoding_format == encoding
    assert (call.request.dimensions, call.request.dialect) == (8, "openai_embed")
    assert call.request.extras["user"] == "u-1"


@pytest.mark.parametrize(("body", "field"), [
    (b"", "empty"), (b"[]", "object"), ({"input": "x"}, "model"), ({"model": "m"}, "input"),
    ({"model": "m", "input": []}, "empty"), ({"model": "m", "input": 3}, "input"),
    ({"model": "m", "input": [True]}, "input[0]"), ({"model": "m", "input": [[-1]]}, "input[0]"),
    ({"model": "m", "input": ["a", 1.5]}, "input[1]"),
    ({"model": "m", "input": "x", "encoding_format": "hex"}, "encoding_format"),
    ({"model": "m", "input": "x", "dimensions": 0}, "dimensions"),
    ({"model": "m", "input": ["x"] * 2049}, "2048"),
])
def test_openai_door_refuses(body: object, field: str) -> None:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    with pytest.raises(ChatError) as info:
        parse_openai(raw)
    assert info.value.status == 400 and field in info.value.message


def test_ollama_doors_parse() -> None:
    req = parse_embed(orjson.dumps({"model": "m", "input": ["a", "b"], "truncate": False,
                                    "options": {"num_ctx": 512}, "keep_alive": "5m",
                                    "dimensions": 3, "future": 1}))
    assert (req.inputs, req.truncate, req.dimensions, req.keep_alive) == (("a", "b"), False, 3,
                                                                         "5m")
    assert (dict(req.options), dict(req.extras)) == ({"num_ctx": 512}, {"future": 1})
    assert parse_embed(b'{"model": "m", "input": "one"}').inputs == ("one",)
    legacy = parse_embeddings(b'{"model": "m", "prompt": "p", "options": {"seed": 1}}')
    assert (legacy.inputs, dict(legacy.options)) == (("p",), {"seed": 1})


@pytest.mark.parametrize(("parse", "body"), [
    (parse_embed, {"model": "m"}), (parse_embed, {"model": "m", "input": [1]}),
    (parse_embed, {"model": "m", "input": "x", "options": []}),
    (parse_embed, {"model": "m", "input": "x", "truncate": "no"}),
    (parse_embeddings, {"model": "m"}), (parse_embeddings, {"model": "m", "prompt": ["x"]}),
])
def test_ollama_doors_refuse(parse: Any, body: dict[str, Any]) -> None:
    with pytest.raises(ChatError) as info:
        parse(orjson.dumps(body))
    assert info.value.status == 400


def test_renderers() -> None:
    resp = EmbedResponse(vectors=([0.5, -1.0], [0.25, 2]), prompt_tokens=4,
                         load_duration_ns=9)
    assert orjson.loads(render_embed(resp, model="m", total_duration_ns=7)) == {
        "model": "m", "embeddings": [[0.5, -1.0], [0.25, 2]], "total_duration": 7,
        "load_duration": 9, "prompt_eval_count": 4}
    assert orjson.loads(render_embeddings(resp)) == {"embedding": [0.5, -1.0]}
    plain = orjson.loads(render_openai(resp, model="x"))
    assert plain["data"][1] == {"object": "embedding", "index": 1, "embedding": [0.25, 2]}
    assert plain["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    b64 = orjson.loads(render_openai(resp, model="x", encoding_format="base64"))
    assert [decode_base64_vector(d["embedding"], "p", 0) for d in b64["data"]] == [
        [0.5, -1.0], [0.25, 2.0]]


def test_base64_is_little_endian_float32_as_numpy_reads_it() -> None:
    import base64
    import struct

    assert base64.b64decode(encode_base64_vector([1.0, -0.5])) == struct.pack("<2f", 1.0, -0.5)
    with pytest.raises(ChatError) as info:
        decode_base64_vector("AAA", "or", 0)
    assert info.value.type == "bad_upstream_response"


# --- the upstream calls --------------------------------------------------------------------

def test_ollama_upstream_request() -> None:
    req = parse_embed(orjson.dumps({"model": "ollama/m", "input": "a", "keep_alive": 0,
                                    "options": {"num_ctx": 9}, "future": True}))
    http = ollama_codec.build_request(req, Route(provider="ollama", upstream_model="m"), OLLAMA)
    assert (http.method, http.url) == ("POST", "http://o.test/api/embed")
    assert orjson.loads(http.body) == {"future": True, "model": "m", "input": ["a"],
                                       "options": {"num_ctx": 9}, "keep_alive": 0}
    cross = parse_openai(b'{"model": "m", "input": "a", "user": "u"}').request
    body = orjson.loads(ollama_codec.build_request(
        cross, Route(provider="ollama", upstream_model="m"), OLLAMA).body)
    assert body == {"model": "m", "input": ["a"]}  # OpenAI's extras mean nothing to Ollama


def test_openai_upstream_request() -> None:
    req = parse_openai(b'{"model": "x", "input": ["a", [1, 2]], "user": "u", '
                       b'"encoding_format": "base64"}').request
    route = Route(provider="openrouter", upstream_model="v/e")
    http = openai_codec.build_request(req, route, OPENROUTER)
    assert (http.url, dict(http.headers)["Authorization"]) == ("https://or.test/v1/embeddings",
                                                              "Bearer sk-or")
    assert orjson.loads(http.body) == {"user": "u", "encoding_format": "base64",
                                       "model": "v/e", "input": ["a", [1, 2]]}
    cross = parse_embed(b'{"model": "m", "input": "a", "options": {"x": 1}}')
    assert orjson.loads(openai_codec.build_request(cross, route, OPENROUTER).body) == {
        "model": "v/e", "input": "a"}


@pytest.mark.parametrize(("codec", "body", "count", "vectors", "tokens"), [
    (ollama_codec, {"embeddings": [[1, 2.5]], "prompt_eval_count": 3}, 1, [[1, 2.5]], 3),
    (openai_codec, {"data": [{"index": 1, "embedding": [2.0]}, {"index": 0, "embedding":
                    encode_base64_vector([0.5])}], "usage": {"prompt_tokens": 2}}, 2,
     [[0.5], [2.0]], 2),
])
def test_upstream_answers(codec: Any, body: dict[str, Any], count: int,
                          vectors: list[list[float]], tokens: int) -> None:
    resp = codec.parse_response("p", orjson.dumps(body), count)
    assert [list(v) for v in resp.vectors] == vectors
    assert resp.prompt_tokens == tokens


@pytest.mark.parametrize(("codec", "body"), [
    (ollama_codec, b"nope"), (ollama_codec, b'{"embeddings": [[1]]}'),
    (ollama_codec, b'{"embeddings": [["a"], [1]]}'), (ollama_codec, b'{"error": "boom"}'),
    (openai_codec, b'{"data": [{"embedding": [1]}]}'),
    (openai_codec, b'{"data": [{"index": 0, "embedding": [1]}, {"index": 0, "embedding": [1]}]}'),
    (openai_codec, b'{"data": [{"index": 0, "embedding": {}}, {"index": 1, "embedding": [1]}]}'),
    (openai_codec, b'{"data": [{"index": 0, "embedding": "!!"}, {"index": 1, "embedding": []}]}'),
])
def test_upstream_answers_refused(codec: Any, body: bytes) -> None:
    with pytest.raises(ChatError) as info:
        codec.parse_response("p", body, 2)
    assert info.value.status == 502 and info.value.provider == "p"


# --- the plan ---------------------------------------------------------------------------------

def plan(model: str, tiers: dict[str, tuple[str, ...]] | None = None) -> EmbedPlan:
    return EmbedPlan(EmbedRequest(model=model, inputs=("a",)), providers=PROVIDERS,
                     tiers=tiers or {}, profiles=PROFILES, now=0.0)


def test_plan_routes_by_model_name() -> None:
    assert plan("nomic-embed-text").next(now=0).http.url == "http://o.test/api/embed"
    attempt = plan("openrouter/openai/text-embedding-3-small").next(now=0)
    assert attempt.http.url == "https://or.test/v1/embeddings"
    assert orjson.loads(attempt.http.body)["model"] == "openai/text-embedding-3-small"


def test_plan_skips_a_target_without_embeddings_and_falls_back() -> None:
    p = plan("emb", {"emb": ("claude/c", "openrouter/v/e", "ollama/e")})
    first = p.next(now=0)
    assert first.provider.name == "openrouter"
    p.failed(first, ChatError("upstream_unavailable", "refused"))
    assert p.next(now=1).provider.name == "ollama"
    with pytest.raises(ChatError) as info:
        plan("claude/c").next(now=0)
    assert info.value.status == 400 and "cannot embed" in info.value.message
    with pytest.raises(ChatError) as refused:
        EmbedPlan(EmbedRequest(model="ollama/e", inputs=((1, 2),)), providers=PROVIDERS,
                  profiles=PROFILES).next(now=0)
    assert "token arrays" in refused.value.message


def test_plan_stops_on_the_request_s_own_error() -> None:
    p = plan("emb", {"emb": ("openrouter/v/e", "ollama/e")})
    with pytest.raises(ChatError):
        p.failed(p.next(now=0), ChatError("upstream_rejected", "bad input"))


# --- the official clients, through a running chatd -------------------------------------------

def _client_marks(f: Any) -> Any:
    for mark in _front_doors_marks:
        f = mark(f)
    return f


@_client_marks
@pytest.mark.parametrize(("model", "flavor"), [
    ("ollama/nomic-embed-text", "local"), ("openrouter/openai/text-embedding-3-small", "compat"),
])
async def test_openai_sdk_embeddings(tmp_path: Any, model: str, flavor: str) -> None:
    """The SDK asks base64 unless told otherwise, and decodes it: both must give the
    upstream's floats; ``dimensions`` reaches the upstream."""
    async with stack(tmp_path) as s, s.openai() as client:
        s.local.models.add("nomic-embed-text")
        plain = await client.embeddings.create(model=model, input=["a b", "c"])
        floats = await client.embeddings.create(model=model, input="a b", dimensions=6,
                                                encoding_format="float")
    assert [d.embedding for d in plain.data] == [vector_for("a b"), vector_for("c")]
    assert plain.model == model and plain.usage.prompt_tokens == 3
    assert floats.data[0].embedding == vector_for("a b", 6)
    fake = s.local if flavor == "local" else s.compat
    sent = [body for _, body in fake.embed_requests]
    assert sent[0]["model"] == model.split("/", 1)[1]
    assert sent[1]["dimensions"] == 6
    if flavor == "compat":  # same wire format: the SDK's base64 request is passed on
        assert [b.get("encoding_format") for b in sent] == ["base64", "float"]


@_client_marks
@pytest.mark.parametrize("model", ["nomic-embed-text", "openrouter/openai/text-embedding-3-small"])
async def test_ollama_client_embed_and_legacy_embeddings(tmp_path: Any, model: str) -> None:
    async with stack(tmp_path) as s, s.ollama() as client:
        s.local.models.add("nomic-embed-text")
        r = await client.embed(model=model, input=["x y", "z"], truncate=True)
        legacy = await client.embeddings(model=model, prompt="x y")
    assert [list(v) for v in r.embeddings] == [vector_for("x y"), vector_for("z")]
    assert r.model == model and r.prompt_eval_count == 3
    assert list(legacy.embedding) == vector_for("x y")
    if model.startswith("openrouter/"):
        assert [b["input"] for _, b in s.compat.embed_requests] == [["x y", "z"], "x y"]
    else:
        assert [b["input"] for _, b in s.local.embed_requests] == [["x y", "z"], ["x y"]]
        assert s.local.embed_requests[0][1]["truncate"] is True


@_client_marks
async def test_embedding_errors_keep_each_door_s_shape(tmp_path: Any) -> None:
    async with stack(tmp_path, cloud=False) as s, s.http() as http:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        missing = await http.post("/v1/embeddings", headers=auth,
                                  json={"model": "no-such-model", "input": "x"})
        unregistered = await http.post("/api/embed", headers=auth,
                                       json={"model": "nope:cloud", "input": "x"})
        claude = await http.post("/v1/embeddings", headers=auth,
                                 json={"model": "opencode/claude-sonnet-4-6", "input": "x"})
    assert missing.status_code == 502  # the upstream's 404, as for chat (SPEC §4)
    assert missing.json()["error"]["code"] == "upstream_error"
    assert "not found" in missing.json()["error"]["message"]
    assert unregistered.status_code == 404  # provider_not_registered, Ollama's shape
    assert isinstance(unregistered.json()["error"], str)
    assert claude.status_code == 400
    assert "cannot embed" in claude.json()["error"]["message"]
    assert s.compat.embed_requests == []
