"""``ChatRequest.options``: the sampling and control settings by chatd's name, and what
JSON each takes.

Strategy: a door reads each setting its dialect has into ``options`` under chatd's name
(the name most dialects share: ``presence_penalty``, ``top_k``...; Ollama's for the ones
only Ollama has: ``num_ctx``, ``repeat_penalty``...), and a codec sends each one its API
has, under the API's own name. The types are checked once, at the door (a 400 naming the
field); values are kept as the client wrote them (an integer stays an integer), since they
go back out as JSON. Ranges are the upstream's to refuse, as for ``temperature``.

The README's dialect section lists, per option, which upstreams have no counterpart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ._request import invalid, json_type
from ._types import JSON

__all__ = ["KINDS", "OLLAMA_OPTIONS", "read_options", "schema_naming"]

#: chatd's option names and the JSON each takes: ``number`` (integer or not), ``integer``,
#: ``boolean``, ``string``, ``duration`` (Ollama's ``keep_alive``: a string such as
#: ``"5m"`` or a number of seconds, providers.md §1.6).
KINDS: Mapping[str, str] = {
    "presence_penalty": "number",
    "frequency_penalty": "number",
    "repeat_penalty": "number",
    "min_p": "number",
    "typical_p": "number",
    "top_k": "integer",
    "top_logprobs": "integer",
    "num_ctx": "integer",
    "repeat_last_n": "integer",
    "num_keep": "integer",
    "num_batch": "integer",
    "num_gpu": "integer",
    "main_gpu": "integer",
    "num_thread": "integer",
    "parallel_tool_calls": "boolean",
    "logprobs": "boolean",
    "use_mmap": "boolean",
    "user": "string",
    "reasoning_effort": "string",
    "keep_alive": "duration",
}

#: The keys of Ollama's ``options`` object besides the five chatd has fields for
#: (``num_predict``, ``temperature``, ``top_p``, ``stop``, ``seed``): providers.md §1.2
#: (OL ``api/types.go`` ``Options``, ``docs/modelfile.mdx``). Both Ollama codecs send each
#: of them that a request holds, and the Ollama doors read them.
OLLAMA_OPTIONS = (
    "top_k", "min_p", "typical_p", "repeat_penalty", "repeat_last_n", "presence_penalty",
    "frequency_penalty", "num_ctx", "num_keep", "num_batch", "num_gpu", "main_gpu",
    "use_mmap", "num_thread",
)


def _check(kind: str, value: object, field: str) -> JSON:
    if kind == "number" or kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise invalid(f"{field} must be a number, not {json_type(value)}")
        if kind == "integer" and not (isinstance(value, int) or value.is_integer()):
            raise invalid(f"{field} must be an integer, not {value!r}")
        return int(value) if kind == "integer" else value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise invalid(f"{field} must be true or false, not {json_type(value)}")
        return value
    if kind == "string":
        if not isinstance(value, str):
            raise invalid(f"{field} must be a string, not {json_type(value)}")
        return value
    # duration
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise invalid(f"{field} must be a duration string or a number of seconds, not "
                      f"{json_type(value)}")
    return value


def read_options(
    obj: Mapping[str, object], names: Iterable[str], out: dict[str, JSON], *,
    prefix: str = "", rename: Mapping[str, str] | None = None,
) -> dict[str, JSON]:
    """Add to ``out`` each of ``names`` that ``obj`` sets (``null`` is not set), checked
    by its kind and stored under chatd's name (``rename`` maps a dialect's name to it:
    OpenRouter's ``repetition_penalty`` is Ollama's ``repeat_penalty``). ``prefix`` names
    the object in an error (``options.``). Returns ``out``.

    Raises:
        ChatError: ``invalid_request`` naming the field of the wrong type.
    """
    for name in names:
        value = obj.get(name)
        if value is None:
            continue
        key = rename.get(name, name) if rename else name
        out[key] = _check(KINDS[key], value, prefix + name)
    return out


def schema_naming(options: Mapping[str, JSON]) -> dict[str, JSON]:
    """The ``name`` and ``strict`` a client gave its JSON schema format
    (``options.format_name`` / ``format_strict``), for a wire format whose schema
    format carries them (OpenAI Chat's ``json_schema``, Responses' ``text.format``)."""
    out: dict[str, JSON] = {}
    name = options.get("format_name")
    if isinstance(name, str):
        out["name"] = name
    strict = options.get("format_strict")
    if isinstance(strict, bool):
        out["strict"] = strict
    return out
