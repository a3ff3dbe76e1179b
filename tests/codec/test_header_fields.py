"""Framings with header fields (bit fields included), varint lengths, and conditional
fields that may be left out: the codec features MQTT needs, tested on their own."""

from __future__ import annotations

import pytest
from construct import (
    BitsInteger,
    BitStruct,
    Bytes,
    Const,
    Default,
    Flag,
    If,
    IfThenElse,
    Int8ub,
    Int16ub,
    Int32ub,
    Nibble,
    PascalString,
    Struct,
    VarInt,
    this,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import mqtt, tlv
from rawws_nb.codec import (
    BoundedVarInt,
    DecodeError,
    EncodeError,
    FieldFraming,
    MessageType,
    Protocol,
    check_roundtrip,
)

VARINT_FRAMING = Struct("type" / Int8ub, "length" / VarInt, "payload" / Bytes(this.length))


def test_varint_length_framing_is_compiled_both_ways():
    proto = Protocol("tlv-varint", {(1, 0): tlv.PROTOCOL.message_types}, framing=VARINT_FRAMING)
    assert isinstance(proto.framing, FieldFraming)
    codec = proto.default
    for mt in codec.message_types:
        assert codec.fast_paths(mt.name) == (True, True), mt.name
    data = proto.encode("chat", id=7, text="x" * 200)
    assert data[:3] == bytes([2, 0xCE, 0x01])  # 206 = 0b1_1001110: two varint bytes
    assert VARINT_FRAMING.parse(data).payload == tlv.PROTOCOL.encode("chat", id=7, text="x" * 200)[5:]
    assert proto.decode(data).fields == {"id": 7, "text": "x" * 200}
    check_roundtrip(proto, "chat", {"id": 1, "text": "héllo"})
    check_roundtrip(proto, "ack", {"id": 1})


def test_an_unbounded_varint_is_bounded_by_max_payload():
    proto = Protocol("v", [tlv.ACK], framing=VARINT_FRAMING, max_payload=1000)
    assert proto.framing.varint == 2  # 1000 needs 10 bits: two varint bytes
    with pytest.raises(DecodeError, match="varint longer than 2 bytes") as info:
        proto.decoder().feed(b"\x03\x80\x80")
    assert info.value.offset == 3 and info.value.path == "length"


BYTE_FLAGS = Struct(
    "type" / Int16ub,
    "flags" / Default(Int8ub, 0),
    "length" / Int32ub,
    "payload" / Bytes(this.length),
)


def test_byte_level_header_fields_are_message_fields():
    plain = MessageType("plain", 1, Struct("n" / Int8ub))
    bits = MessageType(
        "bits",
        2,
        Struct("n" / Int8ub, "extra" / If(this.urgent, Int32ub)),
        header={"flags": BitStruct("urgent" / Flag, "level" / BitsInteger(3), Const(0, Nibble))},
    )
    proto = Protocol("bytes", [plain, bits], framing=BYTE_FLAGS)
    assert proto.encode("plain", n=5) == b"\x00\x01\x00\x00\x00\x00\x01\x05"
    assert proto.encode("plain", n=5, flags=9) == b"\x00\x01\x09\x00\x00\x00\x01\x05"
    assert proto.decode(b"\x00\x01\x09\x00\x00\x00\x01\x05").fields == {"flags": 9, "n": 5}
    data = proto.encode("bits", n=1, urgent=True, level=5, extra=99)
    assert data == b"\x00\x02\xd0\x00\x00\x00\x05\x01\x00\x00\x00\x63"
    assert proto.decode(data).fields == {"urgent": True, "level": 5, "n": 1, "extra": 99}
    assert proto.encode("bits", n=1, urgent=False, level=0) == b"\x00\x02\x00\x00\x00\x00\x01\x01"
    with pytest.raises(DecodeError, match="must be 0") as info:
        proto.decode(b"\x00\x02\xd1\x00\x00\x00\x05\x01\x00\x00\x00\x63")
    assert (info.value.path, info.value.offset) == ("bits.flags", 2)
    for name, fields in [("plain", {"n": 1, "flags": 200}), ("bits", {"n": 2, "urgent": True, "level": 7, "extra": 1})]:
        check_roundtrip(proto, name, fields)
    assert [f.name for f in proto.message_type("bits").fields] == ["urgent", "level", "n", "extra"]
    assert [f.name for f in proto.message_type("plain").fields] == ["flags", "n"]


def test_conditional_fields_may_be_left_out():
    mt = MessageType(
        "opt",
        1,
        Struct(
            "has" / Flag,
            "x" / If(this.has, Int32ub),
            "kind" / Int8ub,
            "y" / IfThenElse(this.kind == 1, Int16ub, PascalString(Int8ub, "utf8")),
        ),
    )
    proto = Protocol("opt", [mt])
    assert proto.default.fast_paths("opt") == (True, True)
    assert proto.encode("opt", has=False, kind=1, y=3) == b"\x01\x00\x00\x00\x04\x00\x01\x00\x03"
    assert proto.encode("opt", has=False, kind=1, y=3)[5:] == mt.codec.encode_reference(
        {"has": False, "kind": 1, "y": 3}
    )
    assert proto.decode(proto.encode("opt", has=True, x=5, kind=2, y="s")).fields == {
        "has": True,
        "x": 5,
        "kind": 2,
        "y": "s",
    }
    with pytest.raises(EncodeError, match="missing field 'x': its condition this\\['has'\\] is true"):
        proto.encode("opt", has=True, kind=1, y=3)
    with pytest.raises(EncodeError, match="missing field 'y'"):
        proto.encode("opt", has=False, kind=1)  # both branches need a value
    check_roundtrip(proto, "opt", {"has": False, "kind": 1, "y": 1})
    check_roundtrip(proto, "opt", {"has": True, "x": 1, "kind": 0, "y": "é"})
    info = {f.name: f for f in mt.fields}
    assert (info["x"].kind, info["x"].required, info["x"].condition) == ("int", False, "this['has']")


NIBBLES = Struct(
    "h" / BitStruct("type" / Nibble, "flags" / Nibble), "length" / BoundedVarInt(4), "payload" / Bytes(this.length)
)


def test_definition_errors():
    with pytest.raises(ValueError, match="no header field 'flagz'"):
        Protocol("x", [MessageType("m", 1, header={"flagz": Nibble})], framing=NIBBLES)
    with pytest.raises(ValueError, match="is 4 bits; its redeclaration is 3"):
        Protocol(
            "x", [MessageType("m", 1, header={"flags": Struct("a" / Flag, "b" / BitsInteger(2))})], framing=NIBBLES
        )
    with pytest.raises(ValueError, match="the framing has none"):
        Protocol("x", [MessageType("m", 1, header={"flags": Nibble})])
    with pytest.raises(ValueError, match="header and payload both have field 'a'"):
        MessageType("m", 1, Struct("a" / Int8ub), header={"flags": Struct("a" / Flag, BitsInteger(3))})
    with pytest.raises(ValueError, match="header and payload both have field 'flags'"):
        Protocol("x", [MessageType("m", 1, Struct("flags" / Int8ub))], framing=NIBBLES)
    with pytest.raises(ValueError, match="type code 16 does not fit the framing: the type is 4 bits"):
        Protocol("x", [MessageType("m", 16)], framing=NIBBLES)
    with pytest.raises(ValueError, match="cannot redeclare header field 'type'"):
        MessageType("m", 1, header={"type": Nibble})


def test_a_plain_header_field_is_required_and_range_checked():
    proto = Protocol("n", [MessageType("m", 1, Struct("v" / Int8ub))], framing=NIBBLES)
    assert proto.decode(b"\x1f\x01\x07").fields == {"flags": 15, "v": 7}
    with pytest.raises(EncodeError, match="missing header field 'flags'"):
        proto.encode("m", v=1)
    with pytest.raises(EncodeError, match="flags 16 does not fit 4 bits"):
        proto.encode("m", v=1, flags=16)
    check_roundtrip(proto, "m", {"flags": 3, "v": 1})


def test_bounded_varint():
    v4 = BoundedVarInt(4)
    assert v4.build(268_435_455) == b"\xff\xff\xff\x7f" and v4.parse(b"\xff\xff\xff\x7f") == 268_435_455
    assert v4.build(0) == b"\x00" and v4.build(128) == b"\x80\x01" == VarInt.build(128)
    with pytest.raises(Exception, match="varint longer than 4 bytes"):
        v4.parse(b"\xff\xff\xff\xff\x01")
    with pytest.raises(Exception, match=r"outside 0\.\.268435455"):
        v4.build(268_435_456)
    with pytest.raises(ValueError):
        BoundedVarInt(0)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=40))
def test_fast_and_reference_decoding_agree_on_any_bytes(data):
    codec = mqtt.PROTOCOL.default
    try:
        fast = codec.decode(data)
    except DecodeError as exc:
        fast_error = str(exc)
        with pytest.raises(DecodeError) as info:
            codec.decode_general(data)
        assert str(info.value) == fast_error
        return
    general = codec.decode_general(data)
    assert fast == general
    assert codec.encode_fields(fast.name, fast.fields) == data or fast.name == "connack"
