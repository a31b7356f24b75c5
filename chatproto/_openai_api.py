"""OpenAI's API beyond chat, both ends: the model list (``GET /models``) and embeddings
(``POST /embeddings``).

Strategy: as for every codec, the door side parses a client's body and renders chatd's
answer in OpenAI's shape, and the upstream side builds the call to an OpenAI-family
provider (OpenRouter, OpenCode Zen, Kimi, a configured vLLM...) and reads its answer. Pure.

Shapes (OAI ``types/embedding_create_params.py``, ``create_embedding_response.py``,
``model.py``):

- ``GET /models`` -> ``{"object": "list", "data": [{"id", "object": "model", "created",
  "owned_by"}]}``. OpenRouter's entries carry much more (pricing, context length); only
  the id and ``created`` are read.
- ``POST /embeddings`` ``{"model", "input": str | [str] | [int] | [[int]],
  "encoding_format": "float" | "base64", "dimensions", "user"}`` -> ``{"object": "list",
  "data": [{"object": "embedding", "index", "embedding": [...] | "<base64>"}], "model",
  "usage": {"prompt_tokens", "total_tokens"}}``.

Decisions:

- ``encoding_format`` defaults to ``float``, but the official SDKs (openai-python,
  openai-node) send ``base64`` whenever their caller did not choose, and decode it
  themselves: so chatd renders base64 as asked, little-endian float32 as OpenAI does (the
  SDKs decode with ``np.frombuffer(..., dtype="float32")`` / a ``Float32Array``). Upstream,
  the client's choice is passed on only on the same wire format; the answer is read in
  either form, since some compatible servers ignore the field and send floats.
- Usage is OpenAI's required object; when the upstream counted nothing (an Ollama that
  omits ``prompt_eval_count``) both counts are 0 rather than a made-up estimate.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Sequence
from typing import Any

from ._decoders import dumps, loads
from ._embed import MAX_INPUTS, EmbedRequest, EmbedResponse
from ._errors import ChatError, Headers
from ._models import ListedModel, usable_id
from ._ollama_api import vector
from ._request import decode_body, invalid, json_type, parse_model, positive_int, string
from ._types import JSON, HTTPRequest, Provider, Route

__all__ = [
    "ENCODINGS",
    "OpenAIEmbedCall",
    "decode_base64_vector",
    "embed_codec",
    "encode_base64_vector",
    "parse_embeddings",
    "parse_models",
    "render_embeddings",
]

#: The values ``encoding_format`` takes (OAI ``embedding_create_params.py``).
ENCODINGS = ("float", "base64")


# --- GET /models ------------------------------------------------------------------------

def parse_models(provider: str, body: bytes, *, limit: int) -> tuple[ListedModel, ...]:
    """An upstream's ``GET /models``: each entry's ``id`` (and ``created``), at most
    ``limit``; entries without a usable id are skipped."""
    obj = loads(body, provider)
    data = obj.get("data") if isinstance(obj, dict) else None
    if not isinstance(data, list):
        raise ChatError("bad_upstream_response", "upstream model list has no \"data\" array",
                        provider=provider)
    out: list[ListedModel] = []
    for item in data:
        if len(out) >= limit:
            break
        if not isinstance(item, dict):
            continue
        model_id = usable_id(item.get("id"))
        if model_id is None:
            continue
        created = item.get("created")
        out.append(ListedModel(
            id=model_id,
            created=created if isinstance(created, int) and not isinstance(created, bool)
            else None,
        ))
    return tuple(out)


# --- POST /embeddings: the door ------------------------------------------------------------

class OpenAIEmbedCall:
    """A parsed ``/v1/embeddings`` body: the request, and how the client wants vectors."""

    __slots__ = ("encoding_format", "request")

    def __init__(self, request: EmbedRequest, encoding_format: str) -> None:
        self.request = request
        self.encoding_format = encoding_format


def _token_array(value: list[object], field: str) -> tuple[int, ...]:
    for i, item in enumerate(value):
        if not isinstance(item, int) or isinstance(item, bool) or item < 0:
            raise invalid(f"{field}[{i}] must be a token id (a non-negative integer), not "
                          f"{json_type(item)}")
    return tuple(value)  # type: ignore[arg-type]  # checked: every item is an int


def _inputs(value: object) -> tuple[str | tuple[int, ...], ...]:
    """``input``: a string, an array of strings, one token array, or an array of them."""
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list):
        raise invalid(f"input must be a string or an array, not {json_type(value)}")
    if not value:
        raise invalid("input must not be empty")
    if len(value) > MAX_INPUTS:
        raise invalid(f"input has {len(value)} items; at most {MAX_INPUTS} are taken")
    if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return (_token_array(value, "input"),)
    out: list[str | tuple[int, ...]] = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, list) and item:
            out.append(_token_array(item, f"input[{i}]"))
        else:
            raise invalid(f"input[{i}] must be a string or a non-empty token array, not "
                          f"{json_type(item)}")
    return tuple(out)


_FIELDS = frozenset({"model", "input", "encoding_format", "dimensions"})


def parse_embeddings(body: bytes) -> OpenAIEmbedCall:
    """A client's ``POST /v1/embeddings`` body."""
    obj = decode_body(body)
    model = parse_model(obj)
    if obj.get("input") is None:
        raise invalid("input is required")
    encoding = string(obj.get("encoding_format"), "encoding_format") or "float"
    if encoding not in ENCODINGS:
        raise invalid(f"encoding_format must be one of {', '.join(ENCODINGS)}, not "
                      f"{encoding!r}")
    extras: dict[str, JSON] = {k: v for k, v in obj.items() if k not in _FIELDS}
    if "encoding_format" in obj:
        extras["encoding_format"] = encoding
    request = EmbedRequest(
        model=model,
        inputs=_inputs(obj["input"]),
        dimensions=positive_int(obj.get("dimensions"), "dimensions"),
        dialect="openai_embed",
        extras=extras,
    )
    return OpenAIEmbedCall(request, encoding)


def encode_base64_vector(vec: Sequence[float]) -> str:
    """A vector as OpenAI's base64: little-endian float32, base64 (standard alphabet)."""
    return base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode("ascii")


def decode_base64_vector(text: str, provider: str, index: int) -> list[float]:
    """The inverse of :func:`encode_base64_vector`; a malformed one is the upstream's fault."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raw = b"\0"  # fails the length check below
    if len(raw) % 4:
        raise ChatError("bad_upstream_response",
                        f"upstream embedding {index} is not base64 float32 data",
                        provider=provider)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def render_embeddings(
    resp: EmbedResponse, *, model: str, encoding_format: str = "float"
) -> bytes:
    """The ``/v1/embeddings`` answer, vectors as floats or base64 as the client asked."""
    b64 = encoding_format == "base64"
    data: list[dict[str, Any]] = [
        {"object": "embedding", "index": i,
         "embedding": encode_base64_vector(v) if b64 else v}
        for i, v in enumerate(resp.vectors)
    ]
    tokens = resp.prompt_tokens or 0
    return dumps({"object": "list", "data": data, "model": model,
                  "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


# --- POST /embeddings: the upstream call -----------------------------------------------------

class OpenAIEmbedCodec:
    """``POST {base}/embeddings`` for the OpenAI family."""

    api = "openai_embed"

    def build_request(
        self, request: EmbedRequest, route: Route, provider: Provider
    ) -> HTTPRequest:
        body: dict[str, JSON] = {}
        if request.dialect == self.api:
            body.update(request.extras)
        body["model"] = route.upstream_model
        inputs = request.inputs
        body["input"] = (
            inputs[0] if len(inputs) == 1 and isinstance(inputs[0], str)
            else [list(i) if isinstance(i, tuple) else i for i in inputs]
        )
        if request.dimensions is not None:
            body["dimensions"] = request.dimensions
        headers = [("Content-Type", "application/json"), ("Accept", "application/json")]
        if provider.key is not None:
            headers.append(("Authorization", f"Bearer {provider.key.reveal()}"))
        if provider.headers:
            configured = {k.lower() for k, _ in provider.headers}
            headers = [h for h in headers if h[0].lower() not in configured]
            headers.extend(provider.headers)
        try:
            encoded = dumps(body)
        except TypeError as exc:
            raise ChatError("invalid_request", f"request cannot be encoded as JSON: {exc}",
                            provider=provider.name) from None
        return HTTPRequest(method="POST", url=provider.base_url.rstrip("/") + "/embeddings",
                           headers=tuple(headers), body=encoded)

    def parse_response(self, provider: str, body: bytes, count: int) -> EmbedResponse:
        obj = loads(body, provider)
        data = obj.get("data") if isinstance(obj, dict) else None
        if not isinstance(obj, dict) or not isinstance(data, list) or len(data) != count:
            raise ChatError(
                "bad_upstream_response",
                f"upstream embeddings answer has no \"data\" array of {count} embeddings",
                provider=provider,
            )
        vectors: list[Sequence[float] | None] = [None] * count
        for i, item in enumerate(data):
            index = item.get("index", i) if isinstance(item, dict) else None
            if not isinstance(index, int) or not 0 <= index < count \
                    or vectors[index] is not None:
                raise ChatError("bad_upstream_response",
                                f"upstream embedding {i} has no valid index", provider=provider)
            raw = item.get("embedding") if isinstance(item, dict) else None
            vectors[index] = (decode_base64_vector(raw, provider, i) if isinstance(raw, str)
                              else vector(raw, provider, i))
        usage = obj.get("usage")
        tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        return EmbedResponse(
            vectors=tuple(v for v in vectors if v is not None),
            prompt_tokens=tokens if isinstance(tokens, int) and not isinstance(tokens, bool)
            and tokens >= 0 else None,
        )

    def parse_error(
        self, provider: str, status: int, headers: Headers, body: bytes, *, now: float
    ) -> ChatError:
        from .dialects import codec_for

        return codec_for("openai_chat").parse_error(provider, status, headers, body, now=now)


embed_codec = OpenAIEmbedCodec()
