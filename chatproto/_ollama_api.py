"""Ollama's API beyond chat, both ends: ``/api/tags``, ``/api/show``, ``/api/ps``,
``/api/embed`` and the legacy ``/api/embeddings``.

Strategy: the same split as every codec. As a door, chatd parses what an Ollama client
sends and renders Ollama's answers; as a client of an upstream Ollama (local, or Ollama
Cloud, which "acts as a remote Ollama host", providers.md §2.1) it builds the request and
reads the answer. Pure: the server sends the requests and passes times in.

Shapes (OL ``docs/api.md``, ``api/types.go``; providers.md §1.8, demand.md "Ollama
api/types.go"):

- ``GET /api/tags`` -> ``{"models": [{"name", "model", "modified_at", "size", "digest",
  "details": {...}}]}``. Open WebUI merges lists by ``model`` and older clients read
  ``name``, so every entry chatd renders carries both.
- ``POST /api/show`` ``{"model"}`` (older clients: ``"name"``) -> ``{"modelfile",
  "parameters", "template", "details", "model_info", "capabilities", "modified_at"}``. For
  a model chatd routes elsewhere there is no Modelfile to show; the answer is synthesized
  from what chatd knows: ``capabilities`` (``completion``, and ``tools`` where the wire
  format carries tools), empty template and parameters, and ``details.family`` set to the
  provider, so Continue and litellm, which call it before chatting, go on to chat.
- ``GET /api/ps`` -> ``{"models": [{"name", "model", "size", "digest", "details",
  "expires_at", "size_vram"}]}``.
- ``POST /api/embed`` ``{"model", "input": str | [str], "truncate", "options",
  "keep_alive", "dimensions"}`` -> ``{"model", "embeddings": [[...]], "total_duration",
  "load_duration", "prompt_eval_count"}``; legacy ``POST /api/embeddings`` ``{"model",
  "prompt", "options", "keep_alive"}`` -> ``{"embedding": [...]}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._decoders import dumps, loads
from ._embed import MAX_INPUTS, EmbedRequest, EmbedResponse
from ._errors import ChatError, Headers
from ._models import ListedModel, usable_id
from ._request import boolean, decode_body, invalid, json_type, parse_model, positive_int
from ._types import JSON, HTTPRequest, Provider, Route

__all__ = [
    "ZERO_TIME",
    "capabilities",
    "embed_codec",
    "parse_embed",
    "parse_embeddings",
    "parse_ps",
    "parse_show",
    "parse_tags",
    "ps_request",
    "render_embed",
    "render_embeddings",
    "render_ps",
    "render_show",
    "show_request",
    "tag_entry",
]

#: Go's zero time, which Ollama writes for an unknown time.
ZERO_TIME = "0001-01-01T00:00:00Z"

_STR_DETAILS = ("parent_model", "format", "family", "parameter_size", "quantization_level")


def _details(value: object) -> dict[str, Any]:
    """An entry's ``details`` with only the documented fields, each of its type (an
    upstream's entry is re-encoded, so nothing deeper than these strings is kept)."""
    src = value if isinstance(value, dict) else {}
    out: dict[str, Any] = {k: src[k] if isinstance(src.get(k), str) else ""
                           for k in _STR_DETAILS}
    families = src.get("families")
    out["families"] = (
        [f for f in families if isinstance(f, str)] if isinstance(families, list) else None
    )
    return out


def _entry(name: str, src: Mapping[str, object], extra: Sequence[str] = ()) -> dict[str, Any]:
    """One model entry of a list: the documented fields of ``src``, named ``name``."""
    size = src.get("size")
    entry: dict[str, Any] = {
        "name": name,
        "model": name,
        "modified_at": src["modified_at"] if isinstance(src.get("modified_at"), str)
        else ZERO_TIME,
        "size": size if isinstance(size, int) and not isinstance(size, bool) else 0,
        "digest": src["digest"] if isinstance(src.get("digest"), str) else "",
        "details": _details(src.get("details")),
    }
    for key in extra:
        value = src.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool):
            entry[key] = value
    return entry


def tag_entry(name: str, listed: ListedModel | None = None) -> dict[str, Any]:
    """``name`` as an ``/api/tags`` entry: the upstream's own entry when it listed one
    (an Ollama's ``details``, ``size``), else the same shape with zero values, so
    ``ollama.list()`` validates it."""
    src = listed.entry if listed is not None and listed.entry is not None else {}
    return _entry(name, src)


# --- /api/tags -----------------------------------------------------------------------------

def _models(provider: str, body: bytes) -> list[object]:
    obj = loads(body, provider)
    models = obj.get("models") if isinstance(obj, dict) else None
    if not isinstance(models, list):
        raise ChatError("bad_upstream_response", "upstream model list has no \"models\" array",
                        provider=provider)
    return models


def parse_tags(provider: str, body: bytes, *, limit: int) -> tuple[ListedModel, ...]:
    """An upstream Ollama's ``/api/tags``: each entry's ``model`` (else ``name``), at most
    ``limit`` of them; an entry without a usable name is skipped."""
    out: list[ListedModel] = []
    for item in _models(provider, body):
        if len(out) >= limit:
            break
        if not isinstance(item, dict):
            continue
        name = usable_id(item.get("model")) or usable_id(item.get("name"))
        if name is not None:
            out.append(ListedModel(id=name, entry=_entry(name, item)))
    return tuple(out)


# --- /api/show -----------------------------------------------------------------------------

def parse_show(body: bytes) -> tuple[str, bool]:
    """A client's ``/api/show`` body: ``(model, verbose)``. ``model`` wins over the older
    ``name`` (OL ``api/types.go`` ``ShowRequest``: ``Name`` is deprecated)."""
    obj = decode_body(body)
    if obj.get("model") is None and obj.get("name") is not None:
        obj = {**obj, "model": obj["name"]}
    return parse_model(obj), bool(boolean(obj.get("verbose"), "verbose"))


def show_request(provider: Provider, route: Route, *, verbose: bool) -> HTTPRequest:
    """``POST {base}/api/show`` for the routed model."""
    body: dict[str, JSON] = {"model": route.upstream_model}
    if verbose:
        body["verbose"] = True
    headers = [("Content-Type", "application/json"), ("Accept", "application/json"),
               *provider.headers]
    if provider.key is not None:
        headers.append(("Authorization", f"Bearer {provider.key.reveal()}"))
    return HTTPRequest(method="POST", url=provider.base_url.rstrip("/") + "/api/show",
                       headers=tuple(headers), body=dumps(body))


def capabilities(provider: Provider, upstream_model: str) -> list[str]:
    """What chatd can say a routed model does, from its wire format alone: it completes
    text, and it takes tools unless its only API has none (Ollama's ``/api/generate``)."""
    api = provider.api_for(upstream_model, tools=True)
    caps = ["completion"]
    if api != "ollama_generate":
        caps.append("tools")
    return caps


def render_show(*, provider: Provider, route: Route) -> bytes:
    """The synthesized ``/api/show`` answer for a model served by ``provider``."""
    return dumps({
        "license": "",
        "modelfile": "",
        "parameters": "",
        "template": "",
        "details": {"parent_model": "", "format": "", "family": provider.name,
                    "families": [provider.name], "parameter_size": "",
                    "quantization_level": ""},
        "model_info": {"general.architecture": provider.name,
                       "general.basename": route.upstream_model},
        "capabilities": capabilities(provider, route.upstream_model),
        "remote_model": route.upstream_model,
        "modified_at": ZERO_TIME,
    })


# --- /api/ps ------------------------------------------------------------------------------

def ps_request(provider: Provider) -> HTTPRequest:
    """``GET {base}/api/ps``: the models the local Ollama has loaded."""
    return HTTPRequest(method="GET", url=provider.base_url.rstrip("/") + "/api/ps",
                       headers=(("Accept", "application/json"), *provider.headers), body=b"")


def parse_ps(provider: str, body: bytes, *, limit: int) -> tuple[ListedModel, ...]:
    """An upstream's ``/api/ps`` entries (``expires_at`` and ``size_vram`` kept)."""
    out: list[ListedModel] = []
    for item in _models(provider, body):
        if len(out) >= limit:
            break
        if not isinstance(item, dict):
            continue
        name = usable_id(item.get("model")) or usable_id(item.get("name"))
        if name is not None:
            out.append(ListedModel(id=name,
                                   entry=_entry(name, item, ("expires_at", "size_vram"))))
    return tuple(out)


def render_ps(entries: Sequence[tuple[str, ListedModel]]) -> bytes:
    """``{"models": [...]}``, each loaded model under the name a client uses for it."""
    models = []
    for name, model in entries:
        src = model.entry or {}
        models.append(_entry(name, src, ("expires_at", "size_vram")))
    return dumps({"models": models})


# --- /api/embed and /api/embeddings: the door ---------------------------------------------

def _options(value: object) -> Mapping[str, JSON]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid(f"options must be an object, not {json_type(value)}")
    return value


def _texts(value: object, field: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list):
        raise invalid(f"{field} must be a string or an array of strings, not "
                      f"{json_type(value)}")
    if not value:
        raise invalid(f"{field} must not be empty")
    if len(value) > MAX_INPUTS:
        raise invalid(f"{field} has {len(value)} items; at most {MAX_INPUTS} are taken")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise invalid(f"{field}[{i}] must be a string, not {json_type(item)}")
    return tuple(value)


_EMBED_FIELDS = frozenset({"model", "input", "truncate", "options", "keep_alive",
                           "dimensions"})


def parse_embed(body: bytes) -> EmbedRequest:
    """A client's ``POST /api/embed`` body."""
    obj = decode_body(body)
    model = parse_model(obj)
    if obj.get("input") is None:
        raise invalid("input is required")
    return EmbedRequest(
        model=model,
        inputs=_texts(obj["input"], "input"),
        dimensions=positive_int(obj.get("dimensions"), "dimensions"),
        truncate=boolean(obj.get("truncate"), "truncate"),
        keep_alive=obj.get("keep_alive"),
        options=_options(obj.get("options")),
        dialect="ollama_embed",
        extras={k: v for k, v in obj.items() if k not in _EMBED_FIELDS},
    )


def parse_embeddings(body: bytes) -> EmbedRequest:
    """A client's legacy ``POST /api/embeddings`` body: one ``prompt``."""
    obj = decode_body(body)
    model = parse_model(obj)
    prompt = obj.get("prompt")
    if not isinstance(prompt, str):
        raise invalid(f"prompt must be a string, not {json_type(prompt)}")
    return EmbedRequest(
        model=model, inputs=(prompt,), keep_alive=obj.get("keep_alive"),
        options=_options(obj.get("options")), dialect="ollama_embed",
    )


def render_embed(resp: EmbedResponse, *, model: str, total_duration_ns: int) -> bytes:
    """``/api/embed``'s answer."""
    out: dict[str, Any] = {"model": model, "embeddings": list(resp.vectors),
                           "total_duration": total_duration_ns}
    if resp.load_duration_ns is not None:
        out["load_duration"] = resp.load_duration_ns
    if resp.prompt_tokens is not None:
        out["prompt_eval_count"] = resp.prompt_tokens
    return dumps(out)


def render_embeddings(resp: EmbedResponse) -> bytes:
    """The legacy ``/api/embeddings`` answer: the one vector."""
    return dumps({"embedding": resp.vectors[0] if resp.vectors else []})


# --- /api/embed: the upstream call ----------------------------------------------------------

def vector(value: object, provider: str, index: int) -> Sequence[float]:
    """One vector from an upstream: a list of numbers, else ``bad_upstream_response``."""
    if isinstance(value, list) and all(
        type(x) is float or (type(x) is int) for x in value
    ):
        return value
    raise ChatError("bad_upstream_response",
                    f"upstream embedding {index} is not an array of numbers",
                    provider=provider)


def _count(obj: Mapping[str, object], key: str) -> int | None:
    value = obj.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 \
        else None


class OllamaEmbedCodec:
    """``POST {base}/api/embed`` (OL ``docs/api.md``), for local Ollama and Ollama Cloud."""

    api = "ollama_embed"

    def build_request(
        self, request: EmbedRequest, route: Route, provider: Provider
    ) -> HTTPRequest:
        body: dict[str, JSON] = {}
        if request.dialect == self.api:
            body.update(request.extras)
        body["model"] = route.upstream_model
        body["input"] = list(request.inputs)
        if request.truncate is not None:
            body["truncate"] = request.truncate
        if request.dimensions is not None:
            body["dimensions"] = request.dimensions
        if request.options:
            body["options"] = dict(request.options)
        if request.keep_alive is not None:
            body["keep_alive"] = request.keep_alive
        headers = [("Content-Type", "application/json"), ("Accept", "application/json"),
                   *provider.headers]
        if provider.key is not None:
            headers.append(("Authorization", f"Bearer {provider.key.reveal()}"))
        try:
            encoded = dumps(body)
        except TypeError as exc:
            raise ChatError("invalid_request", f"request cannot be encoded as JSON: {exc}",
                            provider=provider.name) from None
        return HTTPRequest(method="POST", url=provider.base_url.rstrip("/") + "/api/embed",
                           headers=tuple(headers), body=encoded)

    def parse_response(self, provider: str, body: bytes, count: int) -> EmbedResponse:
        obj = loads(body, provider)
        if not isinstance(obj, dict):
            raise ChatError("bad_upstream_response", "upstream embed answer is not an object",
                            provider=provider)
        if obj.get("error"):
            from .dialects.ollama import _upstream_error_in_body

            raise _upstream_error_in_body(provider, obj["error"])
        embeddings = obj.get("embeddings")
        if not isinstance(embeddings, list) or len(embeddings) != count:
            raise ChatError(
                "bad_upstream_response",
                f"upstream embed answer has no \"embeddings\" array of {count} vectors",
                provider=provider,
            )
        return EmbedResponse(
            vectors=tuple(vector(v, provider, i) for i, v in enumerate(embeddings)),
            prompt_tokens=_count(obj, "prompt_eval_count"),
            load_duration_ns=_count(obj, "load_duration"),
        )

    def parse_error(
        self, provider: str, status: int, headers: Headers, body: bytes, *, now: float
    ) -> ChatError:
        from .dialects import codec_for

        return codec_for("ollama_chat").parse_error(provider, status, headers, body, now=now)


embed_codec = OllamaEmbedCodec()
