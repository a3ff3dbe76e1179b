"""`protocols.mqtt` in memory: every packet type through `check_roundtrip`, bytes from
the MQTT 3.1.1 spec's layouts, remaining-length boundaries, and malformed input."""

from __future__ import annotations

import pytest

from protocols import mqtt
from rawws_nb import Frame
from rawws_nb.codec import DecodeError, EncodeError, check_roundtrip

EXAMPLES = {
    "connect": [
        {"keep_alive": 60, "client_id": "c1"},
        {
            "protocol_level": 4,
            "connect_flags": {
                "username": True,
                "password": True,
                "will_retain": True,
                "will_qos": 1,
                "will": True,
                "clean_session": False,
            },
            "keep_alive": 0,
            "client_id": "",
            "will_topic": "last/will",
            "will_message": b"\x00gone",
            "username": "user",
            "password": b"s3cret",
        },
    ],
    "connack": [{"session_present": False, "return_code": "accepted"}, {"session_present": True, "return_code": 5}],
    "publish": [
        {"topic": "a/b", "payload": b"hello"},
        {"topic": "a/b", "payload": b"", "qos": 1, "packet_id": 1, "retain": True},
        {"topic": "ünï/cödé", "payload": bytes(200), "qos": 2, "packet_id": 65535, "dup": True},
    ],
    "puback": [{"packet_id": 1}],
    "pubrec": [{"packet_id": 2}],
    "pubrel": [{"packet_id": 3}],
    "pubcomp": [{"packet_id": 4}],
    "subscribe": [{"packet_id": 10, "topics": [{"topic": "a/+", "qos": 1}, {"topic": "#", "qos": 0}]}],
    "suback": [{"packet_id": 10, "return_codes": [1, 0, 128]}],
    "unsubscribe": [{"packet_id": 11, "topics": ["a/+", "#"]}],
    "unsuback": [{"packet_id": 11}],
    "pingreq": [{}],
    "pingresp": [{}],
    "disconnect": [{}],
}


def test_every_packet_type_has_examples():
    assert set(EXAMPLES) == set(mqtt.NAMES) and len(mqtt.NAMES) == 14


@pytest.mark.parametrize(
    ("name", "fields"),
    [(n, f) for n, fs in EXAMPLES.items() for f in fs],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_roundtrip(name, fields):
    msg = check_roundtrip(mqtt.PROTOCOL, name, fields)
    assert msg.code == mqtt.PROTOCOL.message_type(name).code


def test_bytes_match_the_spec_layouts():
    # MQTT 3.1.1 figures 3.1 ff.: fixed header, then variable header and payload.
    assert mqtt.pingreq().data == b"\xc0\x00"
    assert mqtt.pingresp().data == b"\xd0\x00"
    assert mqtt.disconnect().data == b"\xe0\x00"
    assert mqtt.connect("c1", keep_alive=60).data == b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02c1"
    assert mqtt.connack().data == b"\x20\x02\x00\x00"
    assert mqtt.publish("a/b", b"hi").data == b"\x30\x07\x00\x03a/bhi"
    assert mqtt.publish("a/b", b"hi", qos=1, packet_id=10, retain=True).data == b"\x33\x09\x00\x03a/b\x00\x0ahi"
    assert mqtt.publish("t", qos=2, packet_id=1, dup=True).data == b"\x3c\x05\x00\x01t\x00\x01"
    assert mqtt.subscribe(1, "a/#", qos=1).data == b"\x82\x08\x00\x01\x00\x03a/#\x01"
    assert mqtt.unsubscribe(2, "a/#").data == b"\xa2\x07\x00\x02\x00\x03a/#"
    assert mqtt.PROTOCOL.encode("pubrel", packet_id=7) == b"\x62\x02\x00\x07"
    assert isinstance(mqtt.pingreq(), Frame.Binary)


def test_spec_field_names():
    pub = mqtt.PROTOCOL.decode(mqtt.publish("x", b"1", qos=1, packet_id=5))
    assert list(pub.fields) == ["dup", "qos", "retain", "topic", "packet_id", "payload"]
    conn = mqtt.PROTOCOL.decode(mqtt.connect("me", keep_alive=30, clean_session=False))
    assert conn.fields["client_id"] == "me" and conn.fields["keep_alive"] == 30
    assert conn.fields["connect_flags"]["clean_session"] is False
    ack = mqtt.PROTOCOL.decode(b"\x20\x02\x01\x00")
    assert ack.fields == {"session_present": True, "return_code": "accepted"}
    # The form metadata lists the header fields too, and packet_id as conditional.
    infos = {f.name: f for f in mqtt.PROTOCOL.message_type("publish").fields}
    assert [infos["qos"].kind, infos["qos"].max, infos["dup"].kind] == ["int", 3, "bool"]
    assert infos["packet_id"].condition == "(this['qos'] > 0)" and not infos["packet_id"].required


@pytest.mark.parametrize(
    ("size", "length_bytes"),
    [(0, 1), (127, 1), (128, 2), (16_383, 2), (16_384, 3), (300_000, 3), (2_097_151, 3), (2_097_152, 4)],
)
def test_remaining_length_boundaries(size, length_bytes):
    # topic "t" takes 3 bytes of the remaining length
    frame = mqtt.publish("t", bytes(max(0, size - 3))) if size >= 3 else None
    if frame is None:
        data = mqtt.PROTOCOL.encode("pingreq")
        assert data == b"\xc0\x00"
        return
    assert len(frame.data) == 1 + length_bytes + size
    assert mqtt.PROTOCOL.decode(frame).fields["payload"] == bytes(size - 3)


def test_publish_needs_a_packet_id_only_above_qos_0():
    with pytest.raises(EncodeError, match=r"missing field 'packet_id'.*qos'\] > 0") as info:
        mqtt.publish("t", b"x", qos=1)
    assert info.value.path == "publish.packet_id"
    assert mqtt.publish("t", b"x", qos=0, packet_id=9).data == mqtt.publish("t", b"x").data  # not written
    with pytest.raises(EncodeError, match="qos 4 does not fit 2 bits"):
        mqtt.publish("t", b"x", qos=4, packet_id=1)
    with pytest.raises(EncodeError, match="flags must be 2"):
        mqtt.PROTOCOL.encode("subscribe", flags=0, packet_id=1, topics=[])


@pytest.mark.parametrize(
    ("data", "path", "offset", "reason"),
    [
        (b"\x30\xff\xff\xff\xff\x01\x00", "length", 5, "varint longer than 4 bytes"),
        (b"\x30\x80\x80\x80\x80", "length", 5, "varint longer than 4 bytes"),
        (b"\x80\x08\x00\x01\x00\x03a/b\x00", "subscribe.flags", 0, "must be 2"),
        (b"\x10\x0e\x00\x04MQTX\x04\x02\x00\x3c\x00\x02c1", "connect.protocol_name", 2, "expected 'MQTT'"),
        (b"\x21\x02\x00\x00", "connack.flags", 0, "must be 0"),
        (b"\x20\x02\x02\x00", "connack.session_present", 2, "no decoding mapping for 2"),
        (b"\x30\x07\x00\x03a/", "payload", 6, "truncated payload: 4 of 7 bytes"),
        (b"\x30", "length", 1, "truncated header"),
        (b"\x00\x00", "type", 0, "unknown type code 0"),
        (b"\xf0\x00", "type", 0, "unknown type code 15"),
        (b"\x82\x05\x00\x01\x00\x05a", "subscribe", 4, "bytes left after the last field"),
        (b"\xc0\x01\x00", "pingreq", 2, "1 bytes left after the last field"),
        (b"\x36\x05\x00\x01a\x00\x01", "publish", 2, "check failed"),  # QoS 3 (both QoS bits)
    ],
)
def test_malformed_input_raises_a_specific_decode_error(data, path, offset, reason):
    with pytest.raises(DecodeError) as info:
        mqtt.PROTOCOL.decode(data)
    err = info.value
    assert (err.path, err.offset) == (path, offset), str(err)
    assert reason in str(err) and "[" in str(err)  # the hex context
    assert mqtt.PROTOCOL.timeline_decoder()(data)[2] is not None  # the timeline shows it, never raises


def test_stream_decoder_rejects_an_oversize_length_as_soon_as_it_is_known():
    decoder = mqtt.PROTOCOL.decoder()
    with pytest.raises(DecodeError, match="varint longer than 4 bytes"):
        decoder.feed(b"\x30\xff\xff\xff\xff")  # the fifth length byte is not even needed
    assert decoder.broken

    from rawws_nb.codec import Protocol

    small = Protocol("mqtt-small", {(3, 1): mqtt.PACKETS}, framing=mqtt.FRAMING, max_payload=1000)
    decoder = small.decoder()
    assert decoder.feed(b"\x30\xe8") == []  # 1000 may still come: wait
    decoder = small.decoder()
    with pytest.raises(DecodeError, match=r"declared payload length 1001 is outside 0\.\.1000") as info:
        decoder.feed(b"\x30\xe9\x07")  # three bytes in, and the length is known to be too big
    assert info.value.path == "length" and info.value.offset == 1


def test_stream_decoder_packets_across_and_within_chunks():
    data = b"".join(f.data for f in (mqtt.publish("a", b"1" * 300), mqtt.pingresp(), mqtt.puback(7)))
    decoder = mqtt.PROTOCOL.decoder()
    got = [m.name for i in range(0, len(data), 7) for m in decoder.feed(data[i : i + 7])]
    assert got == ["publish", "pingresp", "puback"] and decoder.pending == 0
    name, _, error = mqtt.PROTOCOL.timeline_decoder()(mqtt.pingresp().data + mqtt.puback(7).data)
    assert (name, error) == ("pingresp+puback", None)


def test_fast_paths():
    codec = mqtt.PROTOCOL.default
    # PUBLISH and the fixed-size packets encode and decode on compiled paths.
    for name in ("publish", "puback", "pubrel", "pingreq", "disconnect"):
        assert codec.fast_paths(name) == (True, True), name


def test_topic_filters():
    match = mqtt.topic_matches
    assert match("a/b", "a/b") and not match("a/b", "a/c")
    assert match("a/+", "a/b") and not match("a/+", "a/b/c") and match("+/+", "a/b")
    assert match("a/#", "a") and match("a/#", "a/b/c") and match("#", "x/y")
    assert not match("#", "$SYS/x") and not match("+/x", "$SYS/x") and match("$SYS/#", "$SYS/x")
    assert match("a/+/c", "a//c") and not match("a/b/c", "a/b")
