"""The codecs, one module per upstream API family, loaded by name.

Strategy: ``Provider.api`` names a codec; :func:`codec_for` imports its module on first
use (so ``import chatproto`` stays cheap) and returns the module's ``codec`` object.
"""

from __future__ import annotations

from importlib import import_module

from .._codec import Codec

__all__ = ["APIS", "codec_for"]

#: api name -> module holding its ``codec``.
APIS: dict[str, str] = {
    "ollama_chat": "._ollama_chat",
    "ollama_generate": "._ollama_generate",
    "openai_chat": "._openai_chat",
    "openai_responses": "..dialects.openai_responses",
    "anthropic_messages": "..dialects.anthropic_messages",
}

_loaded: dict[str, Codec] = {}


def codec_for(api: str) -> Codec:
    """The codec for ``api``; KeyError for an api chatd does not speak."""
    try:
        return _loaded[api]
    except KeyError:
        codec: Codec = import_module(APIS[api], __name__).codec
        _loaded[api] = codec
        return codec
