"""The codec layer: binary protocols defined with construct, on top of Binary frames.

```python
from construct import Int16ub, Int32ub, PascalString, Struct
from rawws_nb.codec import MessageType, Protocol

chat = MessageType("chat", 2, Struct("id" / Int32ub, "text" / PascalString(Int16ub, "utf8")))
proto = Protocol("demo", {(1, 0): [chat]})
await session.send(proto.frame("chat", id=1, text="hi"))
msg = proto.decode(frame)            # Message(name='chat', code=2, fields={...}, raw=..., version=(1, 0))
```

Pure and synchronous, except `negotiate`/`accept_negotiation`, which talk through a
session. See `Protocol`, `StreamDecoder`, `negotiation` and docs/architecture.md ("The codec's wire conventions").
"""

from .errors import CodecError, DecodeError, EncodeError, hex_excerpt
from .fields import FieldInfo, field_info, field_infos, to_plain, type_name
from .framing import DEFAULT_FRAMING, FieldFraming, Framing, make_framing
from .message import Message, MessageType, Version
from .negotiation import (
    FrameSource,
    NegotiationError,
    NegotiationTimeout,
    SessionLike,
    accept_negotiation,
    choose_version,
    decode_choice,
    decode_offer,
    encode_choice,
    encode_offer,
    negotiate,
)
from .protocol import Protocol, ProtocolVersion, VersionLike, decode_for_timeline, format_version, parse_version
from .stream import StreamDecoder
from .testing import check_roundtrip
from .varint import BoundedVarInt

__all__ = [
    "DEFAULT_FRAMING",
    "BoundedVarInt",
    "CodecError",
    "DecodeError",
    "EncodeError",
    "FieldFraming",
    "FieldInfo",
    "FrameSource",
    "Framing",
    "Message",
    "MessageType",
    "NegotiationError",
    "NegotiationTimeout",
    "Protocol",
    "ProtocolVersion",
    "SessionLike",
    "StreamDecoder",
    "Version",
    "VersionLike",
    "accept_negotiation",
    "check_roundtrip",
    "choose_version",
    "decode_choice",
    "decode_for_timeline",
    "decode_offer",
    "encode_choice",
    "encode_offer",
    "field_info",
    "field_infos",
    "format_version",
    "hex_excerpt",
    "make_framing",
    "negotiate",
    "parse_version",
    "to_plain",
    "type_name",
]
