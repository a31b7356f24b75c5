"""chatproto: the sans-IO core of chatd.

It turns a chat request into a description of a provider's HTTP request and turns the
provider's response, stream and errors back into one shape. It performs no I/O, runs no
event loop and reads no clock or environment: time and configuration are arguments.
"""

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
from ._errors import ChatError as ChatError
from ._errors import error_from_upstream as error_from_upstream
from ._errors import parse_retry_after as parse_retry_after
from ._errors import retry_after_header as retry_after_header
from ._events import Event as Event
from ._events import RawEvent as RawEvent
from ._events import StreamEnded as StreamEnded
from ._events import TextDelta as TextDelta
from ._events import ThinkingDelta as ThinkingDelta
from ._events import ToolCallDelta as ToolCallDelta
from ._plan import Attempt as Attempt
from ._plan import CallPlan as CallPlan
from ._plan import blame as blame
from ._plan import cannot_carry as cannot_carry
from ._plan import mask_secret as mask_secret
from ._profiles import DEFAULT_PROVIDER as DEFAULT_PROVIDER
from ._profiles import PROFILES as PROFILES
from ._profiles import profile as profile
from ._routing import check_prefixes as check_prefixes
from ._routing import parse_tiers as parse_tiers
from ._routing import resolve as resolve
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
from .dialects import codec_for as codec_for

__version__ = "0.1.0"
