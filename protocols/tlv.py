"""`tlv`: type/length/payload messages, a "custom frame" without hand-packing.

Every message is `[type:1][length:4 big-endian][payload:length]` (the default framing).

| type | name  | fields                                                  | server answers          |
|------|-------|---------------------------------------------------------|-------------------------|
| 0x01 | hello | name: PascalString(Int8ub, utf8)                        | hello(name="rawws-nb")  |
| 0x02 | chat  | id: Int32ub, text: PascalString(Int16ub, utf8)          | ack(id), then the chat  |
| 0x03 | ack   | id: Int32ub                                             | nothing                 |
| 0x04 | error | code: Enum(Int16ub), message: PascalString(Int16ub, utf8) | nothing               |

The protocol has one version, 1.0, and is still negotiated like every `/proto/<name>`
endpoint: the client's first Binary frame is `01 00` and the server answers `01 00`
(`await negotiate(session, PROTOCOL)`). Undecodable messages, unknown type codes and
Text frames get an `error` message back.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from construct import Enum, Int8ub, Int16ub, Int32ub, PascalString, Struct

from rawws_nb.codec import Message, MessageType, Protocol, ProtocolVersion, SessionLike

from ._serving import Reply, serve_protocol

__all__ = ["ACK", "CHAT", "ERROR", "ERROR_CODE", "HELLO", "PROTOCOL", "SERVER_NAME", "respond", "serve"]

SERVER_NAME = "rawws-nb"

ERROR_CODE = Enum(Int16ub, bad_message=1, unknown_type=2, unexpected_frame=3, internal=4)

HELLO = MessageType(
    "hello", 0x01, Struct("name" / PascalString(Int8ub, "utf8")), doc="Greeting; the server answers with its own."
)
CHAT = MessageType(
    "chat",
    0x02,
    Struct("id" / Int32ub, "text" / PascalString(Int16ub, "utf8")),
    doc="A chat line; the server acknowledges it, then echoes it.",
)
ACK = MessageType("ack", 0x03, Struct("id" / Int32ub), doc="Acknowledges the chat with this id.")
ERROR = MessageType(
    "error",
    0x04,
    Struct("code" / ERROR_CODE, "message" / PascalString(Int16ub, "utf8")),
    doc="Something the peer sent could not be handled.",
)

PROTOCOL = Protocol("tlv", {(1, 0): [HELLO, CHAT, ACK, ERROR]}, doc=__doc__ or "")


def respond(message: Message, codec: ProtocolVersion, state: dict[str, Any]) -> Iterator[Reply]:
    """The server's replies to one message."""
    if message.name == "hello":
        yield "hello", {"name": SERVER_NAME}
    elif message.name == "chat":
        yield "ack", {"id": message.fields["id"]}
        yield "chat", message.fields


async def serve(session: SessionLike) -> None:
    """Server side of `/proto/tlv`: negotiate (1.0), then answer until the client closes."""
    await serve_protocol(session, PROTOCOL, respond, error_code=lambda kind: kind)
