"""`mqtt`: MQTT 3.1.1 (protocol level 4) over WebSocket, subprotocol `mqtt`.

Every packet is MQTT's fixed header, `[type:4 | flags:4][remaining length: varint, 1-4
bytes]`, then the variable header and payload; packets go in Binary frames, and a frame
may hold several packets or part of one (read them with `PROTOCOL.decoder()`).
The framing declares the flags nibble as `0000`; PUBLISH redeclares it as `dup`, `qos`,
`retain`, and PUBREL, SUBSCRIBE and UNSUBSCRIBE as the fixed `0010` (MQTT 3.1.1, 2.2.2).

| code | packet      | fields                                                                 |
|------|-------------|------------------------------------------------------------------------|
| 1    | connect     | protocol_name, protocol_level, connect_flags, keep_alive, client_id, (below) |
| 2    | connack     | session_present, return_code                                           |
| 3    | publish     | dup, qos, retain (header flags), topic, packet_id (when qos > 0), payload |
| 4-7  | puback, pubrec, pubrel, pubcomp | packet_id                                      |
| 8    | subscribe   | packet_id, topics [{topic, qos}]                                        |
| 9    | suback      | packet_id, return_codes [0, 1, 2 or 128 per topic]                      |
| 10   | unsubscribe | packet_id, topics [topic]                                               |
| 11   | unsuback    | packet_id                                                               |
| 12-14| pingreq, pingresp, disconnect | no fields                                        |

CONNECT: protocol_name is "MQTT", protocol_level 4; `connect_flags` holds username,
password, will_retain, will_qos, will, clean_session; will_topic and will_message follow
client_id when `will` is set, username and password when their flags are.

Builders return `Frame.Binary`: `connect(client_id, keep_alive=60, ...)`, `subscribe(
packet_id, topic, qos=0)`, `publish(topic, payload, qos=0, packet_id=None, retain=False)`,
`puback(packet_id)`, `unsubscribe(packet_id, topic)`, `pingreq()`, `disconnect()`.

```python
session = await rw.web_socket_raw_session(url, subprotocols=["mqtt"], protocol=mqtt.PROTOCOL)
await session.send(mqtt.connect("notebook"))
await session.send(mqtt.subscribe(1, "sensors/+/temp", qos=1))
await session.send(mqtt.publish("sensors/a/temp", b"21.5", qos=1, packet_id=2))
```

`serve(session)` is the small broker the embedded server runs at `/proto/mqtt` (no
version negotiation: MQTT's CONNECT comes first): CONNECT/CONNACK, SUBSCRIBE/SUBACK with
exact and `+`/`#` topic filters, UNSUBSCRIBE/UNSUBACK, PUBLISH at QoS 0, 1 (PUBACK) and
2 (PUBREC/PUBREL/PUBCOMP), retained messages, PINGREQ/PINGRESP, DISCONNECT. Sessions of
one server share one broker. It keeps no state across connections (every session is
clean), does not resend unacknowledged messages and does not enforce keep-alive.
Malformed packets close the WebSocket with 1002 and the `DecodeError` as the reason;
other frames than Binary with 1003.
"""

from __future__ import annotations

import itertools
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from construct import (
    BitsInteger,
    BitStruct,
    Bytes,
    Check,
    Const,
    Default,
    Enum,
    Flag,
    GreedyBytes,
    GreedyRange,
    If,
    Int8ub,
    Int16ub,
    Mapping,
    Nibble,
    PascalString,
    Prefixed,
    Struct,
    this,
)

from rawws_nb.codec import BoundedVarInt, DecodeError, Message, MessageType, Protocol, SessionLike
from rawws_nb.errors import RawWsError, SessionClosed
from rawws_nb.frames import CloseReason, Frame

__all__ = [
    "FRAMING",
    "NAMES",
    "PACKETS",
    "PROTOCOL",
    "SUBPROTOCOL",
    "Broker",
    "connack",
    "connect",
    "disconnect",
    "pingreq",
    "pingresp",
    "puback",
    "publish",
    "serve",
    "suback",
    "subscribe",
    "topic_matches",
    "unsubscribe",
]

SUBPROTOCOL = "mqtt"

UTF8 = PascalString(Int16ub, "utf8")
BINARY = Prefixed(Int16ub, GreedyBytes)
RESERVED_0010 = Const(0b0010, Nibble)

#: MQTT's fixed header: packet type and flags in one byte, then the remaining length.
FRAMING = Struct(
    "header" / BitStruct("type" / Nibble, "flags" / Const(0, Nibble)),
    "length" / BoundedVarInt(4),
    "payload" / Bytes(this.length),
)

RETURN_CODE = Enum(
    Int8ub,
    accepted=0,
    unacceptable_protocol_version=1,
    identifier_rejected=2,
    server_unavailable=3,
    bad_username_or_password=4,
    not_authorized=5,
)

CONNECT_FLAGS = BitStruct(
    "username" / Default(Flag, False),
    "password" / Default(Flag, False),
    "will_retain" / Default(Flag, False),
    "will_qos" / Default(BitsInteger(2), 0),
    "will" / Default(Flag, False),
    "clean_session" / Default(Flag, True),
    Const(0, BitsInteger(1)),
)

PUBLISH_FLAGS = Struct(
    "dup" / Default(Flag, False),
    "qos" / Default(BitsInteger(2), 0),
    "retain" / Default(Flag, False),
)

PACKET_ID = Struct("packet_id" / Int16ub)

PACKETS = [
    MessageType(
        "connect",
        1,
        Struct(
            "protocol_name" / Const("MQTT", UTF8),
            "protocol_level" / Default(Int8ub, 4),
            "connect_flags" / Default(CONNECT_FLAGS, {}),
            "keep_alive" / Int16ub,
            "client_id" / UTF8,
            "will_topic" / If(this.connect_flags.will, UTF8),
            "will_message" / If(this.connect_flags.will, BINARY),
            "username" / If(this.connect_flags.username, UTF8),
            "password" / If(this.connect_flags.password, BINARY),
        ),
        doc="Client to server: open an MQTT session (the first packet).",
    ),
    MessageType(
        "connack",
        2,
        Struct("session_present" / Mapping(Int8ub, {False: 0, True: 1}), "return_code" / RETURN_CODE),
        doc="Server to client: the answer to CONNECT.",
    ),
    MessageType(
        "publish",
        3,
        Struct(
            Check(this.qos != 3),  # MQTT-3.3.1-4: a PUBLISH with both QoS bits set is malformed
            "topic" / UTF8,
            "packet_id" / If(this.qos > 0, Int16ub),
            "payload" / GreedyBytes,
        ),
        header={"flags": PUBLISH_FLAGS},
        doc="Either way: an application message (packet_id only when qos > 0).",
    ),
    MessageType("puback", 4, PACKET_ID, doc="Acknowledges a QoS 1 PUBLISH."),
    MessageType("pubrec", 5, PACKET_ID, doc="QoS 2, step 1: publish received."),
    MessageType("pubrel", 6, PACKET_ID, header={"flags": RESERVED_0010}, doc="QoS 2, step 2: publish release."),
    MessageType("pubcomp", 7, PACKET_ID, doc="QoS 2, step 3: publish complete."),
    MessageType(
        "subscribe",
        8,
        Struct("packet_id" / Int16ub, "topics" / GreedyRange(Struct("topic" / UTF8, "qos" / Int8ub))),
        header={"flags": RESERVED_0010},
        doc="Client to server: topic filters with their requested QoS.",
    ),
    MessageType(
        "suback",
        9,
        Struct("packet_id" / Int16ub, "return_codes" / GreedyRange(Int8ub)),
        doc="Server to client: granted QoS per filter (128: failure).",
    ),
    MessageType(
        "unsubscribe",
        10,
        Struct("packet_id" / Int16ub, "topics" / GreedyRange(UTF8)),
        header={"flags": RESERVED_0010},
        doc="Client to server: topic filters to drop.",
    ),
    MessageType("unsuback", 11, PACKET_ID, doc="Acknowledges UNSUBSCRIBE."),
    MessageType("pingreq", 12, doc="Client to server: keep-alive."),
    MessageType("pingresp", 13, doc="Server to client: the answer to PINGREQ."),
    MessageType("disconnect", 14, doc="Client to server: clean end of the session."),
]

NAMES: tuple[str, ...] = tuple(mt.name for mt in PACKETS)

PROTOCOL = Protocol("mqtt", {(3, 1): PACKETS}, framing=FRAMING, doc=__doc__ or "")

_codec = PROTOCOL.default


# -- builders ----------------------------------------------------------------------------------


def connect(
    client_id: str,
    keep_alive: int = 60,
    *,
    clean_session: bool = True,
    username: str | None = None,
    password: bytes | str | None = None,
    will_topic: str | None = None,
    will_message: bytes | str = b"",
    will_qos: int = 0,
    will_retain: bool = False,
    protocol_level: int = 4,
) -> Frame:
    """CONNECT; a will is set when `will_topic` is given."""
    flags = {
        "username": username is not None,
        "password": password is not None,
        "will_retain": will_retain if will_topic is not None else False,
        "will_qos": will_qos if will_topic is not None else 0,
        "will": will_topic is not None,
        "clean_session": clean_session,
    }
    fields: dict[str, Any] = {
        "protocol_level": protocol_level,
        "connect_flags": flags,
        "keep_alive": keep_alive,
        "client_id": client_id,
    }
    if will_topic is not None:
        fields["will_topic"] = will_topic
        fields["will_message"] = _bytes(will_message)
    if username is not None:
        fields["username"] = username
    if password is not None:
        fields["password"] = _bytes(password)
    return _codec.frame("connect", **fields)


def connack(return_code: str | int = "accepted", session_present: bool = False) -> Frame:
    return _codec.frame("connack", session_present=session_present, return_code=return_code)


def publish(
    topic: str,
    payload: bytes | str = b"",
    qos: int = 0,
    packet_id: int | None = None,
    retain: bool = False,
    dup: bool = False,
) -> Frame:
    """PUBLISH; `packet_id` is needed (and only written) when `qos` is 1 or 2."""
    fields: dict[str, Any] = {"dup": dup, "qos": qos, "retain": retain, "topic": topic, "payload": _bytes(payload)}
    if packet_id is not None:
        fields["packet_id"] = packet_id
    return _codec.frame("publish", **fields)


def puback(packet_id: int) -> Frame:
    return _codec.frame("puback", packet_id=packet_id)


def subscribe(packet_id: int, topic: str | list[tuple[str, int]], qos: int = 0) -> Frame:
    """SUBSCRIBE to one filter (`topic`, `qos`), or to several `[(filter, qos), ...]`."""
    pairs = [(topic, qos)] if isinstance(topic, str) else list(topic)
    return _codec.frame("subscribe", packet_id=packet_id, topics=[{"topic": t, "qos": q} for t, q in pairs])


def suback(packet_id: int, return_codes: list[int]) -> Frame:
    return _codec.frame("suback", packet_id=packet_id, return_codes=list(return_codes))


def unsubscribe(packet_id: int, topic: str | list[str]) -> Frame:
    return _codec.frame("unsubscribe", packet_id=packet_id, topics=[topic] if isinstance(topic, str) else list(topic))


def pingreq() -> Frame:
    return _codec.frame("pingreq")


def pingresp() -> Frame:
    return _codec.frame("pingresp")


def disconnect() -> Frame:
    return _codec.frame("disconnect")


def _bytes(value: bytes | str) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


# -- topic filters ------------------------------------------------------------------------------


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether `topic` matches `topic_filter` (MQTT 3.1.1, 4.7): `+` is one level, a
    final `#` any number of levels (the parent included); filters starting with a
    wildcard do not match topics starting with `$`."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    want = topic_filter.split("/")
    have = topic.split("/")
    for i, part in enumerate(want):
        if part == "#":
            return i == len(want) - 1
        if i >= len(have):
            return False
        if part != "+" and part != have[i]:
            return False
    return len(want) == len(have)


def _valid_filter(topic_filter: str) -> bool:
    if not topic_filter:
        return False
    parts = topic_filter.split("/")
    for i, part in enumerate(parts):
        if "#" in part and (part != "#" or i != len(parts) - 1):
            return False
        if "+" in part and part != "+":
            return False
    return True


# -- the broker ---------------------------------------------------------------------------------


@dataclass
class _Client:
    session: SessionLike
    client_id: str = ""
    subscriptions: dict[str, int] = field(default_factory=dict)
    connected: bool = False
    ids: Iterator[int] = field(default_factory=lambda: itertools.cycle(range(1, 65536)))
    incoming_qos2: set[int] = field(default_factory=set)


class Broker:
    """The state `serve` shares between the sessions of one server: connected clients
    by client id and retained messages by topic."""

    def __init__(self) -> None:
        self.clients: dict[str, _Client] = {}
        self.retained: dict[str, tuple[bytes, int]] = {}
        self._anonymous = itertools.count(1)

    async def handle(self, client: _Client, packet: Message) -> bool:
        """Act on one packet from `client`; False when the connection must end."""
        name, f = packet.name, packet.fields
        session = client.session
        if not client.connected:
            if name != "connect":
                return False  # MQTT 3.1.1, 3.1: the first packet must be CONNECT
            return await self._connect(client, f)
        if name == "connect":
            return False  # a second CONNECT is a protocol violation (3.1)
        if name == "publish":
            await self._publish(client, f)
        elif name == "pubrel":
            client.incoming_qos2.discard(f["packet_id"])
            await session.send(_codec.frame("pubcomp", packet_id=f["packet_id"]))
        elif name == "pubrec":
            await session.send(_codec.frame("pubrel", packet_id=f["packet_id"]))
        elif name in ("puback", "pubcomp"):
            pass  # a subscriber's acknowledgement: nothing is resent, so nothing to do
        elif name == "subscribe":
            await self._subscribe(client, f)
        elif name == "unsubscribe":
            for topic_filter in f["topics"]:
                client.subscriptions.pop(topic_filter, None)
            await session.send(_codec.frame("unsuback", packet_id=f["packet_id"]))
        elif name == "pingreq":
            await session.send(pingresp())
        elif name == "disconnect":
            return False
        else:
            return False  # packets only a server sends (connack, suback, ...)
        return True

    async def _connect(self, client: _Client, f: dict[str, Any]) -> bool:
        session = client.session
        if f["protocol_level"] != 4:
            await session.send(connack("unacceptable_protocol_version"))
            return False
        client_id = f["client_id"]
        if not client_id:
            if not f["connect_flags"]["clean_session"]:
                await session.send(connack("identifier_rejected"))
                return False
            client_id = f"rawws-nb-{next(self._anonymous)}"
        old = self.clients.get(client_id)
        if old is not None and old.session is not session:
            old.connected = False
            await _close(old.session, CloseReason.Codes.NORMAL, "another client connected with this client id")
        client.client_id = client_id
        client.connected = True
        self.clients[client_id] = client
        await session.send(connack("accepted", session_present=False))
        return True

    async def _publish(self, client: _Client, f: dict[str, Any]) -> None:
        qos, topic, payload = f["qos"], f["topic"], f["payload"]
        if qos == 1:
            await client.session.send(puback(f["packet_id"]))
        elif qos == 2:
            first = f["packet_id"] not in client.incoming_qos2
            client.incoming_qos2.add(f["packet_id"])
            await client.session.send(_codec.frame("pubrec", packet_id=f["packet_id"]))
            if not first:
                return  # a resent QoS 2 message is delivered once
        if f["retain"]:
            if payload:
                self.retained[topic] = (payload, qos)
            else:
                self.retained.pop(topic, None)
        for other in list(self.clients.values()):
            granted = [q for flt, q in other.subscriptions.items() if topic_matches(flt, topic)]
            if granted and other.connected:
                await self._deliver(other, topic, payload, min(qos, max(granted)), retain=False)

    async def _deliver(self, client: _Client, topic: str, payload: bytes, qos: int, *, retain: bool) -> None:
        packet_id = next(client.ids) if qos else None
        try:
            await client.session.send(publish(topic, payload, qos=qos, packet_id=packet_id, retain=retain))
        except RawWsError:  # that subscriber's connection is closing or gone
            client.connected = False

    async def _subscribe(self, client: _Client, f: dict[str, Any]) -> None:
        codes = []
        for item in f["topics"]:
            topic_filter, qos = item["topic"], item["qos"]
            if not _valid_filter(topic_filter) or qos > 2:
                codes.append(0x80)
                continue
            client.subscriptions[topic_filter] = qos
            codes.append(qos)
        await client.session.send(suback(f["packet_id"], codes))
        for item, code in zip(f["topics"], codes, strict=True):
            if code == 0x80:
                continue
            for topic, (payload, qos) in list(self.retained.items()):
                if topic_matches(item["topic"], topic):
                    await self._deliver(client, topic, payload, min(qos, code), retain=True)

    def remove(self, client: _Client) -> None:
        if self.clients.get(client.client_id) is client:
            del self.clients[client.client_id]


_brokers: dict[str, tuple[Broker, set[int]]] = {}


def _broker_for(session: SessionLike) -> tuple[Broker, str]:
    """The broker of the server `session` belongs to (by the server's address)."""
    url = getattr(session, "url", None) or ""
    key = urllib.parse.urlsplit(str(url)).netloc
    if key not in _brokers:
        _brokers[key] = (Broker(), set())
    broker, members = _brokers[key]
    members.add(id(session))
    return broker, key


def _release(session: SessionLike, key: str) -> None:
    entry = _brokers.get(key)
    if entry is None:
        return
    entry[1].discard(id(session))
    if not entry[1]:
        del _brokers[key]


def _reason(text: str) -> str:
    return text.encode("utf-8")[:123].decode("utf-8", "ignore")


async def _close(session: SessionLike, code: int, text: str) -> None:
    try:
        await session.close(CloseReason(code, _reason(text)))
    except RawWsError:  # already closed
        pass


async def serve(session: SessionLike) -> None:
    """Server side of `/proto/mqtt`: a broker for the sessions of this server."""
    broker, key = _broker_for(session)
    client = _Client(session)
    decoder = PROTOCOL.decoder()
    try:
        await _loop(session, broker, client, decoder)
    except SessionClosed:
        pass
    finally:
        client.connected = False
        broker.remove(client)
        _release(session, key)


async def _loop(session: SessionLike, broker: Broker, client: _Client, decoder: Any) -> None:
    codes = CloseReason.Codes
    while True:
        frame = await session.incoming.receive()
        if isinstance(frame, Frame.Ping):
            await session.send(Frame.Pong(frame.data))
            continue
        if isinstance(frame, Frame.Pong):
            continue
        if isinstance(frame, Frame.Close):
            reason = frame.read_reason()
            await session.close(CloseReason(reason.code if reason is not None else codes.NORMAL, ""))
            return
        if not isinstance(frame, Frame.Binary):
            await _close(session, codes.CANNOT_ACCEPT, "MQTT packets travel in Binary frames")
            return
        error: DecodeError | None = None
        try:
            packets = decoder.feed(frame.data)
        except DecodeError as exc:
            packets, error = exc.messages, exc
        for packet in packets:
            if not await broker.handle(client, packet):
                await _close(session, codes.NORMAL, f"{packet.name}: connection ends")
                return
        if error is not None:
            await _close(session, codes.PROTOCOL_ERROR, f"malformed packet: {error}")
            return
