"""The codec layer: encoding, decoding, errors, versions, framings, metadata."""

from __future__ import annotations

import pickle

import pandas as pd
import pytest
from construct import Enum, Int8ub, Int16ub, PascalString, Struct, VarInt

from protocols import tlv, versioned
from rawws_nb.codec import (
    DecodeError,
    EncodeError,
    Message,
    MessageType,
    Protocol,
    decode_for_timeline,
    field_infos,
    hex_excerpt,
    parse_version,
)
from rawws_nb.frames import Frame

from .strategies import KITCHEN_PROTOCOL, LE_PROTOCOL, VARINT_PROTOCOL

V2 = versioned.PROTOCOL.for_version((2, 0))
V1 = versioned.PROTOCOL.for_version("1.0")


def test_seed_wire_format():
    # The seed's custom frame: [type:1][length:4 big-endian][payload:length].
    data = tlv.PROTOCOL.encode("chat", id=7, text="hi")
    assert data == bytes([0x02, 0, 0, 0, 8, 0, 0, 0, 7, 0, 2]) + b"hi"
    msg = tlv.PROTOCOL.decode(data)
    assert msg == Message("chat", 2, {"id": 7, "text": "hi"}, data, (1, 0))
    assert msg.fields == {"id": 7, "text": "hi"} and type(msg.fields) is dict
    assert msg.get("text") == "hi" and msg.get("missing", 1) == 1


def test_frame_and_decode_accept_frames():
    frame = tlv.PROTOCOL.frame("ack", id=3)
    assert isinstance(frame, Frame.Binary) and frame.fin
    assert tlv.PROTOCOL.decode(frame).fields == {"id": 3}
    assert tlv.PROTOCOL.decode(bytearray(frame.data)).name == "ack"
    assert tlv.PROTOCOL.decode(memoryview(frame.data)).name == "ack"
    assert tlv.PROTOCOL.decode(frame).frame() == frame


def test_fields_are_plain_values():
    msg = V2.decode(V2.encode("hello", name="n", features={"stats": True}))
    assert msg.fields == {"name": "n", "features": {"receipts": False, "samples": False, "stats": True}}
    assert type(msg.fields["features"]) is dict
    assert all(type(k) is str for k in msg.fields["features"])
    say = V2.decode(V2.encode("say", id=1, text="x", priority="high"))
    assert type(say.fields["priority"]) is str and say.fields["priority"] == "high"
    # an enum value without a name decodes as its int
    assert V2.decode(V2.encode("say", id=1, text="x", priority=9)).fields["priority"] == 9
    assert "_io" not in KITCHEN_PROTOCOL.decode(KITCHEN_PROTOCOL.encode("plain", n=1, i24=2, name="a", flags={})).fields


def test_versions_select_message_sets():
    assert versioned.PROTOCOL.versions == ((1, 0), (2, 0))
    assert versioned.PROTOCOL.latest == (2, 0)
    assert versioned.PROTOCOL.default is V2
    assert versioned.PROTOCOL.for_version(None) is V2
    assert versioned.PROTOCOL.for_version([1, 0]) is V1 and versioned.PROTOCOL.for_version(1) is V1
    assert "sample" in V2 and "sample" not in V1
    assert len(V1) == 5 and len(V2) == 8
    # v2 adds fields: the same bytes mean different things
    v1_ack = V1.encode("ack", id=5)
    assert V1.decode(v1_ack).fields == {"id": 5}
    with pytest.raises(DecodeError, match=r"truncated|stream read less"):
        V2.decode(v1_ack)
    with pytest.raises(EncodeError, match="no message type 'sample'"):
        V1.encode("sample", seq=1, t_us=2, value=0.5)
    with pytest.raises(ValueError, match=r"has no version 3\.0"):
        versioned.PROTOCOL.for_version((3, 0))
    assert versioned.PROTOCOL.supports("2.0") and not versioned.PROTOCOL.supports((2, 1))


def test_parse_version():
    assert parse_version((2, 1)) == parse_version("2.1") == parse_version([2, 1]) == (2, 1)
    assert parse_version("3") == parse_version(3) == (3, 0)
    for bad in ((1, 2, 3), (256, 0), "x.y", (-1, 0), True):
        with pytest.raises((ValueError, TypeError)):
            parse_version(bad)


def test_single_list_is_version_1_0():
    mt = MessageType("ping", 1, Struct("n" / Int8ub))
    proto = Protocol("p", [mt])
    assert proto.versions == ((1, 0),)
    assert proto.decode(proto.encode("ping", n=1)).version == (1, 0)


def test_definition_errors():
    a = MessageType("a", 1, Struct("x" / Int8ub))
    with pytest.raises(ValueError, match="type code 1 used by 'a' and 'b'"):
        Protocol("p", [a, MessageType("b", 1, Struct())])
    with pytest.raises(ValueError, match="two message types named 'a'"):
        Protocol("p", [a, MessageType("a", 2, Struct())])
    with pytest.raises(ValueError, match="does not fit the framing"):
        Protocol("p", [MessageType("big", 300, Struct())])
    with pytest.raises(ValueError, match="must not start with '_'"):
        MessageType("m", 1, Struct("_x" / Int8ub))
    with pytest.raises(TypeError, match="Struct"):
        MessageType("m", 1, Int8ub)
    with pytest.raises(ValueError, match="non-negative int"):
        MessageType("m", -1)
    with pytest.raises(ValueError, match="`type` field and a `payload` field"):
        Protocol("p", [a], framing=Struct("kind" / Int8ub, "payload" / Int8ub))


# -- errors --------------------------------------------------------------------------------


def test_unknown_type_code():
    with pytest.raises(DecodeError) as info:
        tlv.PROTOCOL.decode(b"\x09\x00\x00\x00\x00")
    err = info.value
    assert err.path == "type" and err.offset == 0
    assert "unknown type code 9" in str(err) and "hello=1" in str(err)
    assert err.excerpt == "| 09 00 00 00 00"


def test_truncated_field_reports_path_offset_and_hex():
    data = tlv.PROTOCOL.encode("chat", id=1, text="hello")
    # keep the declared length consistent but cut the string short: id + 2-byte length 5 + "ab"
    payload = b"\x00\x00\x00\x01\x00\x05ab"
    bad = b"\x02" + len(payload).to_bytes(4, "big") + payload
    with pytest.raises(DecodeError) as info:
        tlv.PROTOCOL.decode(bad)
    err = info.value
    assert err.path == "chat.text" and err.msg_type == "chat"
    assert err.offset == 9  # header 5 + id 4: where the text field starts
    assert "expected 5, found 2" in err.reason
    assert "| 00 05 61 62" in err.excerpt
    assert "chat.text" in str(err) and "offset 9" in str(err)
    assert data != bad


def test_truncated_and_overlong_messages():
    data = tlv.PROTOCOL.encode("ack", id=1)
    with pytest.raises(DecodeError, match="truncated payload: 3 of 4 bytes") as info:
        tlv.PROTOCOL.decode(data[:-1])
    assert info.value.path == "payload"
    with pytest.raises(DecodeError, match="truncated header: 2 of 5 bytes"):
        tlv.PROTOCOL.decode(data[:2])
    with pytest.raises(DecodeError, match="2 bytes after the end of the message") as info:
        tlv.PROTOCOL.decode(data + b"\x00\x00")
    assert info.value.offset == len(data)
    # payload longer than its fields
    payload = b"\x00\x00\x00\x01\xff"
    with pytest.raises(DecodeError, match="1 bytes left after the last field") as info:
        tlv.PROTOCOL.decode(b"\x03" + len(payload).to_bytes(4, "big") + payload)
    assert info.value.offset == 9 and info.value.msg_type == "ack"
    with pytest.raises(DecodeError, match="truncated header"):
        tlv.PROTOCOL.decode(b"")


def test_invalid_utf8_and_limits():
    payload = b"\x00\x00\x00\x01\x00\x02\xff\xfe"
    with pytest.raises(DecodeError) as info:
        tlv.PROTOCOL.decode(b"\x02" + len(payload).to_bytes(4, "big") + payload)
    assert info.value.path == "chat.text"
    small = Protocol("small", [MessageType("m", 1, Struct("b" / PascalString(Int16ub, "utf8")))], max_payload=10)
    with pytest.raises(DecodeError, match=r"outside 0\.\.10") as info:
        small.decode(b"\x01\x00\x00\x00\x20" + bytes(32))
    assert info.value.path == "length"
    with pytest.raises(EncodeError, match="exceeds max_payload=10"):
        small.encode("m", b="x" * 20)


def test_encode_errors():
    with pytest.raises(EncodeError, match="unknown field 'txt'") as info:
        tlv.PROTOCOL.encode("chat", id=1, txt="x")
    assert info.value.path == "chat.txt"
    with pytest.raises(EncodeError, match="missing field 'text'") as info:
        tlv.PROTOCOL.encode("chat", id=1)
    assert info.value.path == "chat.text" and info.value.offset == 4
    with pytest.raises(EncodeError, match="error during building, given value -1") as info:
        tlv.PROTOCOL.encode("chat", id=-1, text="x")
    assert info.value.path == "chat.id" and info.value.offset == 0
    with pytest.raises(EncodeError, match="no mapping for 'urgent'") as info:
        V2.encode("say", id=1, text="x", priority="urgent")
    assert info.value.path == "say.priority" and info.value.offset == 4
    assert info.value.excerpt == "00 00 00 01 |"
    with pytest.raises(EncodeError, match="expected unicode string"):
        tlv.PROTOCOL.encode("chat", id=1, text=b"bytes")
    with pytest.raises(EncodeError, match="no message type 'nope'"):
        tlv.PROTOCOL.encode("nope")
    with pytest.raises(EncodeError):
        tlv.PROTOCOL.encode("hello", name="x" * 300)  # more than Int8ub can prefix
    with pytest.raises(EncodeError):
        V2.encode("sample", seq=1, t_us=2, value="NaN-ish")


def test_errors_are_value_errors_and_pickle():
    with pytest.raises(ValueError):
        tlv.PROTOCOL.decode(b"\x09")
    try:
        tlv.PROTOCOL.encode("chat", id=1)
    except EncodeError as exc:
        again = pickle.loads(pickle.dumps(exc))
        assert str(again) == str(exc) and again.path == exc.path and isinstance(again, EncodeError)


def test_hex_excerpt():
    assert hex_excerpt(b"", None) == "(empty)"
    assert hex_excerpt(bytes(range(4)), 2) == "00 01 | 02 03"
    assert hex_excerpt(bytes(range(40)), 20, radius=2) == "… 12 13 | 14 15 …"
    assert hex_excerpt(b"\x01", 3) == "01 | (…2 missing)"


def test_encode_falls_back_to_construct_semantics():
    # construct builds Bytes(n) from an int; the compiled path defers to it.
    from construct import Bytes

    proto = Protocol("b", [MessageType("m", 1, Struct("b" / Bytes(2)))])
    assert proto.decode(proto.encode("m", b=258)).fields == {"b": b"\x01\x02"}
    assert proto.encode("m", b=bytearray(b"ab")) == proto.encode("m", b=b"ab")
    with pytest.raises(EncodeError, match="expected 2, found 3"):
        proto.encode("m", b=b"abc")


def test_encode_fields_mapping_and_name_field():
    proto = Protocol("n", [MessageType("m", 1, Struct("name" / PascalString(Int8ub, "utf8"), "class" / Int8ub))])
    data = proto.encode_fields("m", {"name": "x", "class": 2})
    assert proto.decode(data).fields == {"name": "x", "class": 2}
    assert proto.encode("m", name="x", **{"class": 2}) == data


# -- other framings --------------------------------------------------------------------------


def test_little_endian_length_first_framing():
    data = LE_PROTOCOL.encode("single", v=1)
    assert data[:4] == b"\x08\x00\x08\x00"
    assert LE_PROTOCOL.decode(data).fields == {"v": 1}
    with pytest.raises(DecodeError, match="unknown type code 99"):
        LE_PROTOCOL.decode(b"\x00\x00\x63\x00")


def test_varint_framing():
    data = VARINT_PROTOCOL.encode("blobs", fixed=b"abcd", pre=b"", flag=True, tail=b"x" * 200)
    assert data[0] == 4 and data[1:3] == b"\xcf\x01"  # varint 207 = 4 + 2 + 1 + 200
    assert VARINT_PROTOCOL.decode(data).fields["tail"] == b"x" * 200
    with pytest.raises(DecodeError, match="framing"):
        VARINT_PROTOCOL.decode(data[:-1])
    with pytest.raises(DecodeError, match="after the end of the message"):
        VARINT_PROTOCOL.decode(data + b"\x00")


def test_framing_that_cannot_carry_payloads_fails_at_definition():
    with pytest.raises(ValueError, match="does not fit the framing"):
        Protocol(
            "vt",
            [MessageType("m", 1, Struct("x" / Int8ub))],
            framing=Struct("type" / VarInt, "length" / Int8ub, "payload" / PascalString(Int8ub, "utf8")),
        )


# -- metadata --------------------------------------------------------------------------------


def test_field_metadata_for_forms():
    say = V2.message_type("say")
    by_name = {f.name: f for f in say.fields}
    assert [f.name for f in say.fields] == ["id", "priority", "text"]
    assert by_name["id"].type == "Int32ub" and by_name["id"].kind == "int"
    assert (by_name["id"].min, by_name["id"].max, by_name["id"].size) == (0, 2**32 - 1, 4)
    assert by_name["priority"].kind == "enum" and by_name["priority"].choices == ("low", "normal", "high")
    assert by_name["priority"].default == "normal" and not by_name["priority"].required
    assert by_name["text"].type == "PascalString(Int16ub, 'utf8')" and by_name["text"].max_length == 65535
    assert by_name["text"].encoding == "utf8"
    hello = V2.message_type("hello")
    assert hello.fields[1].kind == "flags" and hello.fields[1].choices == ("receipts", "samples", "stats")
    assert say.example() == {"id": 0, "priority": "normal", "text": ""}
    assert V2.message_type(6).name == "sample"
    nested = KITCHEN_PROTOCOL.message_type("nested").fields
    assert nested[0].kind == "struct" and [c.name for c in nested[0].children] == ["x", "y"]
    assert nested[1].kind == "array" and nested[1].item is not None and nested[1].item.kind == "struct"
    assert nested[2].count == 3 and nested[2].type == "Array(3, Int16ub)"
    deco = {f.name: f for f in KITCHEN_PROTOCOL.message_type("decorated").fields}
    assert deco["magic"].kind == "const" and deco["gap"].kind == "padding"
    assert field_infos(Struct("e" / Enum(Int8ub, a=1)))[0].initial == "a"


def test_describe():
    df = versioned.PROTOCOL.describe()
    assert isinstance(df, pd.DataFrame)
    assert set(df["version"]) == {"1.0", "2.0"}
    row = df[(df.version == "2.0") & (df.message == "say") & (df.field == "priority")].iloc[0]
    assert row.type == "Enum(Int8ub)" and row.choices == "low, normal, high" and row.default == "normal"
    stats = df[(df.message == "stats")]
    assert len(stats) == 1 and pd.isna(stats.iloc[0].field)
    assert list(V1.describe().message.unique()) == ["hello", "welcome", "say", "ack", "error"]


# -- timeline hook ------------------------------------------------------------------------------


def test_decode_for_timeline():
    data = V2.encode("say", id=1, text="hi")
    assert decode_for_timeline(versioned.PROTOCOL, (2, 0), data) == (
        "say",
        {"id": 1, "priority": "normal", "text": "hi"},
        None,
    )
    assert decode_for_timeline(versioned.PROTOCOL, None, data)[0] == "say"
    assert decode_for_timeline(V2, None, data)[0] == "say"
    assert decode_for_timeline(None, None, data) == (None, None, None)
    name, fields, error = decode_for_timeline(versioned.PROTOCOL, (1, 0), data)
    assert name == "say" and fields is None and "say" in error
    name, fields, error = decode_for_timeline(versioned.PROTOCOL, (1, 0), b"\x01\x00")
    assert (name, fields) == (None, None) and "truncated header" in error
    assert decode_for_timeline(versioned.PROTOCOL, (7, 0), data)[2].startswith("ValueError")
    # several whole messages in one frame
    two = data + V2.encode("stats")
    assert decode_for_timeline(versioned.PROTOCOL, (2, 0), two) == (
        "say+stats",
        {
            "messages": [
                {"name": "say", "fields": {"id": 1, "priority": "normal", "text": "hi"}},
                {"name": "stats", "fields": {}},
            ]
        },
        None,
    )
    assert decode_for_timeline(versioned.PROTOCOL, (2, 0), two[:-1])[2] is not None
    # negotiation frames, before a version is set
    assert decode_for_timeline(versioned.PROTOCOL, None, b"\x02\x00\x01\x00") == (
        "negotiation",
        {"versions": ["2.0", "1.0"]},
        None,
    )
    assert decode_for_timeline(versioned.PROTOCOL, (2, 0), b"\x02\x00")[2] is not None
    assert decode_for_timeline(versioned.PROTOCOL, None, b"\x07\x07")[2] is not None
    assert decode_for_timeline(versioned.PROTOCOL, (2, 0), "not bytes")[2].startswith("TypeError")


def test_repr():
    assert repr(V2).startswith("<versioned v2.0: hello=1")
    assert repr(versioned.PROTOCOL) == "<Protocol 'versioned' versions 1.0, 2.0>"
    msg = tlv.PROTOCOL.decode(tlv.PROTOCOL.encode("ack", id=1))
    assert repr(msg) == "ack(id=1) [v1.0, 9 bytes]"
    assert "Int32ub" in repr(tlv.ACK)
