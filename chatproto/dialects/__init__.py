"""The dialects chatd speaks, one module per wire format, both ends of it together.

Strategy: a module holds a wire format's server end (its :class:`~chatproto.Door`: parse
what a client sends, render answers, streams and errors) and, where an upstream speaks the
format, its client end (the :class:`~chatproto.Codec`). This registry names them;
:func:`codec_for` and :func:`door_for` import a module on first use, so
``import chatproto`` stays cheap.

Adding a dialect is one module here and one row in each table it serves.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._codec import Codec
    from .._door import Door

__all__ = ["CODECS", "DOORS", "codec_for", "door_for"]

#: ``Provider.api`` -> (module, attribute) of its codec.
CODECS: dict[str, tuple[str, str]] = {
    "ollama_chat": (".ollama", "chat_codec"),
    "ollama_generate": (".ollama", "generate_codec"),
    "openai_chat": (".openai_chat", "codec"),
    "openai_responses": (".openai_responses", "codec"),
    "anthropic_messages": (".anthropic_messages", "codec"),
}

#: door name -> (module, attribute) of its door. A door is named by its dialect's api
#: (``Door.api``), the native door ``native``.
DOORS: dict[str, tuple[str, str]] = {
    "native": (".native", "door"),
    "openai_chat": (".openai_chat", "door"),
    "ollama_chat": (".ollama", "chat_door"),
    "ollama_generate": (".ollama", "generate_door"),
    "openai_responses": (".openai_responses", "door"),
    "anthropic_messages": (".anthropic_messages", "door"),
}

_codecs: dict[str, Codec] = {}
_doors: dict[str, Door] = {}


def codec_for(api: str) -> Codec:
    """The codec for ``api``; KeyError for an api chatd does not speak."""
    try:
        return _codecs[api]
    except KeyError:
        module, name = CODECS[api]
        codec: Codec = getattr(import_module(module, __name__), name)
        _codecs[api] = codec
        return codec


def door_for(name: str) -> Door:
    """The door named ``name`` (:data:`DOORS`); KeyError for one chatd does not have."""
    try:
        return _doors[name]
    except KeyError:
        module, attribute = DOORS[name]
        door: Door = getattr(import_module(module, __name__), attribute)
        _doors[name] = door
        return door
