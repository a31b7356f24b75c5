"""chatproto: the sans-IO core of chatd.

It turns a chat request into a description of a provider's HTTP request and turns the
provider's response, stream and errors back into one shape; it routes a model name to its
provider (:func:`resolve`, :class:`CallPlan`), validates client requests
(:func:`parse_chat_request`, the doors of :func:`door_for`), folds streams
(:class:`Accumulator`) and counts calls (:class:`Telemetry`). It performs no I/O, runs no
event loop and reads no clock or environment: time and configuration are arguments.

Everything an embedder needs is importable from here; the ``chatproto._*`` modules are
private (ruff's TID251 refuses them outside the package). The errors are imported with
the package; the rest, the data model included, on first use (PEP 562), so ``import
chatproto`` stays cheap for a program that only needs a part: the frozen dataclasses of
the data model are most of what the core costs to import (about 15 ms of class creation
and 5 ms for ``dataclasses`` and ``inspect`` on Python 3.11).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._errors import ERROR_STATUS as ERROR_STATUS
from ._errors import MAX_RETRY_AFTER as MAX_RETRY_AFTER
from ._errors import ChatError as ChatError
from ._errors import Headers as Headers
from ._errors import error_from_upstream as error_from_upstream
from ._errors import header_value as header_value
from ._errors import parse_retry_after as parse_retry_after
from ._errors import retry_after_header as retry_after_header

if TYPE_CHECKING:
    from ._accumulate import Accumulator as Accumulator
    from ._codec import Codec as Codec
    from ._codec import StreamParser as StreamParser
    from ._decoders import LineDecoder as LineDecoder
    from ._decoders import SSEDecoder as SSEDecoder
    from ._decoders import SSEEvent as SSEEvent
    from ._door import Answer as Answer
    from ._door import CallContext as CallContext
    from ._door import Door as Door
    from ._door import DoorCall as DoorCall
    from ._door import DoorStream as DoorStream
    from ._door import Served as Served
    from ._door import keep_rendered as keep_rendered
    from ._door import rendered_before as rendered_before
    from ._embed import EMBED_APIS as EMBED_APIS
    from ._embed import EmbedAttempt as EmbedAttempt
    from ._embed import EmbedCodec as EmbedCodec
    from ._embed import EmbedPlan as EmbedPlan
    from ._embed import EmbedRequest as EmbedRequest
    from ._embed import EmbedResponse as EmbedResponse
    from ._embed import embed_codec_for as embed_codec_for
    from ._events import Event as Event
    from ._events import RawEvent as RawEvent
    from ._events import StreamEnded as StreamEnded
    from ._events import TextDelta as TextDelta
    from ._events import ThinkingDelta as ThinkingDelta
    from ._events import ToolCallDelta as ToolCallDelta
    from ._models import MAX_LISTED as MAX_LISTED
    from ._models import CatalogEntry as CatalogEntry
    from ._models import ListedModel as ListedModel
    from ._models import catalog as catalog
    from ._models import find_model as find_model
    from ._models import model_list_request as model_list_request
    from ._models import name_for as name_for
    from ._models import parse_model_list as parse_model_list
    from ._plan import Attempt as Attempt
    from ._plan import CallPlan as CallPlan
    from ._plan import SlotRules as SlotRules
    from ._plan import blame as blame
    from ._plan import cannot_carry as cannot_carry
    from ._plan import mask_secret as mask_secret
    from ._plan import mask_secrets as mask_secrets
    from ._profiles import DEFAULT_PROVIDER as DEFAULT_PROVIDER
    from ._profiles import PROFILES as PROFILES
    from ._profiles import profile as profile
    from ._request import parse_chat_request as parse_chat_request
    from ._routing import PROVIDER_APIS as PROVIDER_APIS
    from ._routing import check_prefixes as check_prefixes
    from ._routing import parse_tiers as parse_tiers
    from ._routing import resolve as resolve
    from ._telemetry import LATENCY_BUCKETS as LATENCY_BUCKETS
    from ._telemetry import OVERHEAD_BUCKETS as OVERHEAD_BUCKETS
    from ._telemetry import TOKEN_KINDS as TOKEN_KINDS
    from ._telemetry import Histogram as Histogram
    from ._telemetry import ProviderStats as ProviderStats
    from ._telemetry import Snapshot as Snapshot
    from ._telemetry import Telemetry as Telemetry
    from ._types import JSON as JSON
    from ._types import ChatRequest as ChatRequest
    from ._types import ChatResponse as ChatResponse
    from ._types import HTTPRequest as HTTPRequest
    from ._types import ImagePart as ImagePart
    from ._types import Message as Message
    from ._types import Part as Part
    from ._types import Provider as Provider
    from ._types import Route as Route
    from ._types import Secret as Secret
    from ._types import TextPart as TextPart
    from ._types import ThinkingPart as ThinkingPart
    from ._types import ToolCall as ToolCall
    from ._types import Usage as Usage
    from ._types import redact_userinfo as redact_userinfo
    from .dialects import codec_for as codec_for
    from .dialects import door_for as door_for

__version__ = "0.1.0"

#: Public name -> the module that defines it, imported on first use.
_LAZY: dict[str, str] = {
    "Accumulator": "._accumulate",
    "Codec": "._codec",
    "StreamParser": "._codec",
    "LineDecoder": "._decoders",
    "SSEDecoder": "._decoders",
    "SSEEvent": "._decoders",
    "Answer": "._door",
    "CallContext": "._door",
    "Door": "._door",
    "DoorCall": "._door",
    "DoorStream": "._door",
    "Served": "._door",
    "keep_rendered": "._door",
    "rendered_before": "._door",
    "Event": "._events",
    "RawEvent": "._events",
    "StreamEnded": "._events",
    "TextDelta": "._events",
    "ThinkingDelta": "._events",
    "ToolCallDelta": "._events",
    "JSON": "._types",
    "ChatRequest": "._types",
    "ChatResponse": "._types",
    "HTTPRequest": "._types",
    "ImagePart": "._types",
    "Message": "._types",
    "Part": "._types",
    "Provider": "._types",
    "Route": "._types",
    "Secret": "._types",
    "TextPart": "._types",
    "ThinkingPart": "._types",
    "ToolCall": "._types",
    "Usage": "._types",
    "redact_userinfo": "._types",
    "MAX_LISTED": "._models",
    "CatalogEntry": "._models",
    "ListedModel": "._models",
    "catalog": "._models",
    "find_model": "._models",
    "model_list_request": "._models",
    "name_for": "._models",
    "parse_model_list": "._models",
    "EMBED_APIS": "._embed",
    "EmbedAttempt": "._embed",
    "EmbedCodec": "._embed",
    "EmbedPlan": "._embed",
    "EmbedRequest": "._embed",
    "EmbedResponse": "._embed",
    "embed_codec_for": "._embed",
    "Attempt": "._plan",
    "CallPlan": "._plan",
    "SlotRules": "._plan",
    "blame": "._plan",
    "cannot_carry": "._plan",
    "mask_secret": "._plan",
    "mask_secrets": "._plan",
    "DEFAULT_PROVIDER": "._profiles",
    "PROFILES": "._profiles",
    "profile": "._profiles",
    "parse_chat_request": "._request",
    "PROVIDER_APIS": "._routing",
    "check_prefixes": "._routing",
    "parse_tiers": "._routing",
    "resolve": "._routing",
    "LATENCY_BUCKETS": "._telemetry",
    "OVERHEAD_BUCKETS": "._telemetry",
    "TOKEN_KINDS": "._telemetry",
    "Histogram": "._telemetry",
    "ProviderStats": "._telemetry",
    "Snapshot": "._telemetry",
    "Telemetry": "._telemetry",
    "codec_for": ".dialects",
    "door_for": ".dialects",
}

__all__ = [
    "DEFAULT_PROVIDER",
    "EMBED_APIS",
    "ERROR_STATUS",
    "JSON",
    "LATENCY_BUCKETS",
    "MAX_LISTED",
    "MAX_RETRY_AFTER",
    "OVERHEAD_BUCKETS",
    "PROFILES",
    "PROVIDER_APIS",
    "TOKEN_KINDS",
    "Accumulator",
    "Answer",
    "Attempt",
    "CallContext",
    "CallPlan",
    "CatalogEntry",
    "ChatError",
    "ChatRequest",
    "ChatResponse",
    "Codec",
    "Door",
    "DoorCall",
    "DoorStream",
    "EmbedAttempt",
    "EmbedCodec",
    "EmbedPlan",
    "EmbedRequest",
    "EmbedResponse",
    "Event",
    "HTTPRequest",
    "Headers",
    "Histogram",
    "ImagePart",
    "LineDecoder",
    "ListedModel",
    "Message",
    "Part",
    "Provider",
    "ProviderStats",
    "RawEvent",
    "Route",
    "SSEDecoder",
    "SSEEvent",
    "Secret",
    "Served",
    "SlotRules",
    "Snapshot",
    "StreamEnded",
    "StreamParser",
    "Telemetry",
    "TextDelta",
    "TextPart",
    "ThinkingDelta",
    "ThinkingPart",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
    "blame",
    "cannot_carry",
    "catalog",
    "check_prefixes",
    "codec_for",
    "door_for",
    "embed_codec_for",
    "error_from_upstream",
    "find_model",
    "header_value",
    "keep_rendered",
    "mask_secret",
    "mask_secrets",
    "model_list_request",
    "name_for",
    "parse_chat_request",
    "parse_model_list",
    "parse_retry_after",
    "parse_tiers",
    "profile",
    "redact_userinfo",
    "rendered_before",
    "resolve",
    "retry_after_header",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'chatproto' has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
