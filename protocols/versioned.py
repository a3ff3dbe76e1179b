"""`versioned`: a small chat-and-telemetry protocol in two versions.

Version 2.0 adds fields to existing messages and new message types; both peers agree on
one version first (`await negotiate(session, PROTOCOL)`; the server prefers what the
client lists first). Framing: `[type:1][length:4 big-endian][payload:length]`.

| type | name        | 1.0 fields                       | 2.0 adds                         |
|------|-------------|----------------------------------|----------------------------------|
| 1    | hello       | name                             | features (FlagsEnum)             |
| 2    | welcome     | server, session                  | features (accepted)              |
| 3    | say         | id, text                         | priority (Enum, default normal)  |
| 4    | ack         | id                               | status (Enum, default ok)        |
| 5    | error       | code (Enum), message             |                                  |
| 6    | sample      | (2.0 only)                       | seq, t_us, value: 16 fixed bytes |
| 7    | stats       | (2.0 only) no fields             |                                  |
| 8    | stats_reply | (2.0 only)                       | messages, bytes                  |

Server: hello -> welcome; say -> ack, then the say echoed; sample -> the same sample
(for round-trip times); stats -> stats_reply (messages and bytes received so far).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from construct import Default, Enum, FlagsEnum, Float32b, Int8ub, Int16ub, Int32ub, Int64ub, PascalString, Struct

from rawws_nb.codec import Message, MessageType, Protocol, ProtocolVersion, SessionLike

from ._serving import Reply, serve_protocol

__all__ = ["PROTOCOL", "SERVER_NAME", "V1", "V2", "respond", "serve"]

SERVER_NAME = "rawws-nb"

NAME = PascalString(Int8ub, "utf8")
TEXT = PascalString(Int16ub, "utf8")
FEATURES = FlagsEnum(Int8ub, receipts=1, samples=2, stats=4)
PRIORITY = Enum(Int8ub, low=0, normal=1, high=2)
STATUS = Enum(Int8ub, ok=0, rejected=1)
ERROR_CODE = Enum(Int16ub, bad_message=1, unknown_type=2, unexpected_frame=3, unexpected_message=4)

ERROR = MessageType("error", 5, Struct("code" / ERROR_CODE, "message" / TEXT), doc="A message could not be handled.")

V1 = [
    MessageType("hello", 1, Struct("name" / NAME), doc="Client greeting."),
    MessageType("welcome", 2, Struct("server" / NAME, "session" / Int32ub), doc="Server greeting."),
    MessageType("say", 3, Struct("id" / Int32ub, "text" / TEXT), doc="A chat line."),
    MessageType("ack", 4, Struct("id" / Int32ub), doc="The say with this id arrived."),
    ERROR,
]

V2 = [
    MessageType("hello", 1, Struct("name" / NAME, "features" / Default(FEATURES, {})), doc="Client greeting."),
    MessageType(
        "welcome", 2, Struct("server" / NAME, "session" / Int32ub, "features" / FEATURES), doc="Server greeting."
    ),
    MessageType(
        "say", 3, Struct("id" / Int32ub, "priority" / Default(PRIORITY, "normal"), "text" / TEXT), doc="A chat line."
    ),
    MessageType("ack", 4, Struct("id" / Int32ub, "status" / Default(STATUS, "ok")), doc="The say arrived."),
    ERROR,
    MessageType(
        "sample",
        6,
        Struct("seq" / Int32ub, "t_us" / Int64ub, "value" / Float32b),
        doc="A telemetry sample (16 bytes); the server echoes it.",
    ),
    MessageType("stats", 7, Struct(), doc="Ask the server for its counters."),
    MessageType("stats_reply", 8, Struct("messages" / Int32ub, "bytes" / Int64ub), doc="Counters since negotiation."),
]

PROTOCOL = Protocol("versioned", {(1, 0): V1, (2, 0): V2}, doc=__doc__ or "")

_sessions = itertools.count(1)
_SERVER_ONLY = {"welcome", "stats_reply"}


def respond(message: Message, codec: ProtocolVersion, state: dict[str, Any]) -> Iterator[Reply]:
    """The server's replies to one message, for the negotiated version `codec`."""
    v2 = codec.version >= (2, 0)
    name, fields = message.name, message.fields
    if name == "hello":
        welcome: dict[str, Any] = {"server": SERVER_NAME, "session": next(_sessions)}
        if v2:
            welcome["features"] = fields["features"]
        yield "welcome", welcome
    elif name == "say":
        ack: dict[str, Any] = {"id": fields["id"]}
        if v2:
            ack["status"] = "ok" if fields["text"] else "rejected"
        yield "ack", ack
        yield "say", fields
    elif name == "sample":
        yield "sample", fields
    elif name == "stats":
        yield "stats_reply", {"messages": state["messages"], "bytes": state["bytes"]}
    elif name in _SERVER_ONLY:
        yield "error", {"code": "unexpected_message", "message": f"{name} is sent by the server, not to it"}


async def serve(session: SessionLike) -> None:
    """Server side of `/proto/versioned`: negotiate, then answer until the client closes."""
    await serve_protocol(session, PROTOCOL, respond, error_code=lambda kind: kind)
