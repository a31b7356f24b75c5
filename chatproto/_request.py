"""The native request body (``POST /v1/chat``, SPEC §3) to a validated ChatRequest.

Strategy: the body is decoded once, then every field is checked by a small validator that
takes the decoded value and the field's path (``messages[2].role``) and either returns the
typed value or raises ``ChatError("invalid_request")`` naming that path. The validators are
public within the package so the other front doors (OpenAI- and Ollama-compatible), which
share most fields, reuse them instead of growing their own idea of what is valid.

Decisions:

- Only types are checked here, not provider ranges (a temperature of 3 is the upstream's
  to refuse, as ``upstream_rejected``); emptiness of ``model`` belongs to
  :func:`~chatproto._routing.resolve`, which owns every model-name rule.
- ``null`` means "not given" for every optional field: many clients serialise unset
  options as ``null``.
- Unknown top-level fields are ignored, not refused: clients built for other APIs send
  extras (``user``, ``n``, ``keep_alive``) and refusing them would break them for nothing.
- JSON ``true``/``false`` are never numbers here, although Python's ``bool`` is an ``int``.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from ._errors import ChatError
from ._types import JSON, ChatRequest, Message, ToolCall

__all__ = [
    "ROLES",
    "THINK_LEVELS",
    "boolean",
    "decode_body",
    "integer",
    "invalid",
    "json_object",
    "json_type",
    "number",
    "parse_chat_object",
    "parse_chat_request",
    "parse_format",
    "parse_message",
    "parse_messages",
    "parse_stop",
    "parse_think",
    "parse_tool_calls",
    "parse_tool_choice",
    "parse_tools",
    "positive_int",
    "string",
]

#: SPEC §3: the message roles chatd accepts.
ROLES = ("system", "user", "assistant", "tool")

#: Ollama's ``think`` levels: "Accepted JSON: true, false, "low", "medium", "high", "max""
#: (providers.md §1.3, OL ``api/types.go`` ``ThinkValue.UnmarshalJSON``).
THINK_LEVELS = ("low", "medium", "high", "max")


def invalid(message: str) -> ChatError:
    """The 400 every validation failure raises."""
    return ChatError("invalid_request", message)


def json_type(value: object) -> str:
    """The JSON name of a decoded value's type, for messages such as "not an array"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def decode_body(body: bytes) -> dict[str, object]:
    """Decode a request body that must be one JSON object.

    Malformed JSON here is the *client's* fault, so it is ``invalid_request`` (400), unlike
    :func:`chatproto._decoders.loads`, which blames the upstream (502).
    """
    if not body.strip():
        raise invalid("request body is empty; expected a JSON object")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise invalid(f"request body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise invalid(f"request body must be a JSON object, not {json_type(value)}")
    return value


def string(value: object, field: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise invalid(f"{field} must be a string, not {json_type(value)}")


def json_object(value: object, field: str) -> dict[str, JSON]:
    """``value``, which must be a JSON object (``field`` names it in the error)."""
    if isinstance(value, dict):
        return value
    raise invalid(f"{field} must be an object, not {json_type(value)}")


def boolean(value: object, field: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise invalid(f"{field} must be true or false, not {json_type(value)}")


def integer(value: object, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise invalid(f"{field} must be an integer, not {_describe(value)}")


def positive_int(value: object, field: str) -> int | None:
    n = integer(value, field)
    if n is not None and n < 1:
        raise invalid(f"{field} must be a positive integer, not {n}")
    return n


def number(value: object, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise invalid(f"{field} must be a number, not {json_type(value)}")


def _describe(value: object) -> str:
    if isinstance(value, float):
        return repr(value)
    return json_type(value)


def parse_stop(value: object, field: str = "stop") -> tuple[str, ...]:
    """``stop``: one string or a list of strings, normalised to a tuple."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise invalid(f"{field}[{i}] must be a string, not {json_type(item)}")
        return tuple(value)
    raise invalid(f"{field} must be a string or an array of strings, not {json_type(value)}")


def parse_format(value: object, field: str = "format") -> JSON:
    """``format``: ``"json"`` or a JSON-schema object (SPEC §2), passed on untouched."""
    if value is None or value == "json" or isinstance(value, dict):
        return value
    raise invalid(f'{field} must be "json" or a JSON schema object, not {value!r}')


def parse_think(value: object, field: str = "think") -> bool | str | None:
    """``think``: a bool, or a level (``low``/``medium``/``high``/``max``)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value in THINK_LEVELS:
        return value
    levels = ", ".join(f'"{level}"' for level in THINK_LEVELS)
    raise invalid(f"{field} must be true, false or one of {levels}, not {value!r}")


def parse_tools(value: object, field: str = "tools") -> tuple[JSON, ...]:
    """``tools``: a list of OpenAI-shaped tool objects, passed on untouched."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise invalid(f"{field} must be an array of tool objects, not {json_type(value)}")
    for i, item in enumerate(value):
        item = json_object(item, f"{field}[{i}]")
    return tuple(value)


def parse_tool_choice(value: object, field: str = "tool_choice") -> JSON:
    """``tool_choice``: ``"auto"``/``"none"``/``"required"`` or an object, passed on."""
    if value is None or isinstance(value, str | dict):
        return value
    raise invalid(f"{field} must be a string or an object, not {json_type(value)}")


def parse_tool_calls(value: object, field: str) -> tuple[ToolCall, ...]:
    """Tool calls on an assistant message, OpenAI's shape (Ollama's is the same minus id).

    ``{"id"?, "type"?: "function", "function": {"name", "arguments"?}}``; ``arguments`` is
    JSON text (OpenAI) or an object (Ollama) and is normalised to JSON text, ``"{}"`` when
    absent.
    """
    if value is None:
        return ()
    if not isinstance(value, list):
        raise invalid(f"{field} must be an array, not {json_type(value)}")
    calls: list[ToolCall] = []
    for i, item in enumerate(value):
        where = f"{field}[{i}]"
        item = json_object(item, where)
        kind = item.get("type")
        if kind is not None and kind != "function":
            raise invalid(f'{where}.type must be "function", not {kind!r}')
        fn = item.get("function")
        fn = json_object(fn, f"{where}.function")
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            raise invalid(f"{where}.function.name must be a non-empty string")
        args = fn.get("arguments")
        if args is None:
            arguments = "{}"
        elif isinstance(args, str):
            arguments = args
        elif isinstance(args, dict):
            try:
                arguments = orjson.dumps(args).decode()
            except TypeError:  # orjson reads 1,024 levels of nesting but writes 254
                raise invalid(f"{where}.function.arguments nests too deeply") from None
        else:
            raise invalid(
                f"{where}.function.arguments must be a JSON string or an object, "
                f"not {json_type(args)}"
            )
        calls.append(
            ToolCall(id=string(item.get("id"), f"{where}.id"), name=name, arguments=arguments)
        )
    return tuple(calls)


def parse_message(value: object, field: str) -> Message:
    """One message: ``role`` and ``content`` plus the optional tool and image fields.

    ``content`` may be null or absent only on an assistant message that carries
    ``tool_calls`` (OpenAI sends exactly that). ``name`` may also be spelled
    ``tool_name`` (Ollama's field for a tool result).
    """
    value = json_object(value, field)
    role = value.get("role")
    if role not in ROLES:
        roles = ", ".join(ROLES)
        shown = "missing" if role is None else repr(role)
        raise invalid(f"{field}.role must be one of {roles}; got {shown}")
    tool_calls = parse_tool_calls(value.get("tool_calls"), f"{field}.tool_calls")
    if tool_calls and role != "assistant":
        raise invalid(f"{field}.tool_calls is only allowed on assistant messages")
    content = value.get("content")
    if content is None and not tool_calls:
        raise invalid(f"{field}.content is required")
    content = string(content, f"{field}.content") or ""
    images_raw = value.get("images")
    images: tuple[str, ...] = ()
    if images_raw is not None:
        if not isinstance(images_raw, list) or not all(isinstance(x, str) for x in images_raw):
            raise invalid(f"{field}.images must be an array of base64 strings")
        images = tuple(images_raw)
    name = value.get("name")
    if name is None:
        name = value.get("tool_name")
    assert isinstance(role, str)
    return Message(
        role=role,
        content=content,
        thinking=string(value.get("thinking"), f"{field}.thinking"),
        tool_calls=tool_calls,
        tool_call_id=string(value.get("tool_call_id"), f"{field}.tool_call_id"),
        name=string(name, f"{field}.name"),
        images=images,
    )


def parse_messages(value: object, field: str = "messages") -> tuple[Message, ...]:
    """A non-empty array of messages."""
    if value is None:
        raise invalid(f"{field} is required")
    if not isinstance(value, list):
        raise invalid(f"{field} must be an array of messages, not {json_type(value)}")
    if not value:
        raise invalid(f"{field} must not be empty")
    return tuple(parse_message(item, f"{field}[{i}]") for i, item in enumerate(value))


def parse_model(obj: Mapping[str, object]) -> str:
    """``model`` must be present and a string; its emptiness and routing are
    :func:`~chatproto._routing.resolve`'s (SPEC §1). Shared by every front door."""
    model = obj.get("model")
    if model is None:
        raise invalid("model is required")
    if not isinstance(model, str):
        raise invalid(f"model must be a string, not {json_type(model)}")
    return model


def parse_chat_object(obj: Mapping[str, object]) -> ChatRequest:
    """Validate an already decoded native request object (SPEC §3)."""
    return ChatRequest(
        model=parse_model(obj),
        messages=parse_messages(obj.get("messages")),
        max_tokens=positive_int(obj.get("max_tokens"), "max_tokens"),
        temperature=number(obj.get("temperature"), "temperature"),
        top_p=number(obj.get("top_p"), "top_p"),
        stop=parse_stop(obj.get("stop")),
        seed=integer(obj.get("seed"), "seed"),
        format=parse_format(obj.get("format")),
        think=parse_think(obj.get("think")),
        stream=bool(boolean(obj.get("stream"), "stream")),
        tools=parse_tools(obj.get("tools")),
        tool_choice=parse_tool_choice(obj.get("tool_choice")),
    )


def parse_chat_request(body: bytes) -> ChatRequest:
    """Parse and validate a ``POST /v1/chat`` body.

    Raises:
        ChatError: ``invalid_request`` (400), its message naming the offending field.
    """
    return parse_chat_object(decode_body(body))
