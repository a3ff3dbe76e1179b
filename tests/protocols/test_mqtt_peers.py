"""MQTT 3.1.1 against real peers: Debian's mosquitto and the embedded `/proto/mqtt` broker
(every test runs against both), with paho-mqtt over websockets as the independent client
on the other side. What rawws_nb sends is checked where it arrives (paho's callbacks,
the broker's answers); what it receives is decoded by `protocols.mqtt`."""

from __future__ import annotations

import asyncio

import pytest

import rawws_nb as rw
from protocols import mqtt
from rawws_nb.codec import DecodeError

pytestmark = pytest.mark.timeout(60)


async def test_paho_publishes_and_rawws_receives_decoded_publish(broker, mqtt_factory, paho_factory):
    sub = await mqtt_factory("rawws-sub")
    await sub.send(mqtt.subscribe(11, "sensors/+/temp", qos=1))
    suback = await sub.expect("suback")
    assert suback.fields == {"packet_id": 11, "return_codes": [1]}

    pub = await paho_factory("paho-pub")
    info0 = pub.client.publish("sensors/kitchen/temp", b"21.5", qos=0)
    info1 = pub.client.publish("sensors/hall/temp", b"19.0", qos=1)
    pub.client.publish("sensors/hall/humidity", b"40", qos=0)  # does not match the filter
    info0.wait_for_publish(5)
    await asyncio.to_thread(info1.wait_for_publish, 5)

    first = await sub.expect("publish")
    assert first.fields["topic"] == "sensors/kitchen/temp" and first.fields["payload"] == b"21.5"
    assert (first.fields["qos"], first.fields["packet_id"], first.fields["retain"]) == (0, None, False)
    second = await sub.expect("publish")
    assert second.fields["topic"] == "sensors/hall/temp" and second.fields["payload"] == b"19.0"
    assert second.fields["qos"] == 1 and isinstance(second.fields["packet_id"], int)
    await sub.send(mqtt.puback(second.fields["packet_id"]))

    # The timeline decodes them too (the session's protocol is protocols.mqtt).
    await sub.send(mqtt.pingreq())
    await sub.expect("pingresp")
    types = list(sub.session.timeline["msg_type"])
    assert types[:3] == ["connect", "connack", "subscribe"] and types.count("publish") == 2


@pytest.mark.parametrize("qos", [0, 1])
async def test_rawws_publishes_and_paho_receives(broker, mqtt_factory, paho_factory, qos):
    listener = await paho_factory(f"paho-sub-{qos}")
    await listener.subscribe("rawws/#", qos=1)
    pub = await mqtt_factory(f"rawws-pub-{qos}")
    packet_id = 700 + qos if qos else None
    await pub.send(mqtt.publish("rawws/out", b"from rawws_nb", qos=qos, packet_id=packet_id))
    if qos:
        puback = await pub.expect("puback")
        assert puback.fields == {"packet_id": packet_id}
    msg = await listener.message()
    assert (msg.topic, msg.payload, msg.qos, msg.retain) == ("rawws/out", b"from rawws_nb", qos, False)


async def test_suback_carries_the_packet_id_and_granted_qos(broker, mqtt_factory):
    client = await mqtt_factory("rawws-suback")
    await client.send(mqtt.subscribe(4242, [("a/b", 0), ("a/+", 1), ("a/#", 2)]))
    suback = await client.expect("suback")
    assert suback.fields == {"packet_id": 4242, "return_codes": [0, 1, 2]}
    await client.send(mqtt.unsubscribe(4243, ["a/b", "a/+"]))
    assert (await client.expect("unsuback")).fields == {"packet_id": 4243}


async def test_300_kb_payload_with_a_three_byte_remaining_length(broker, mqtt_factory, paho_factory):
    payload = bytes(range(256)) * 1172  # 300,032 bytes
    listener = await paho_factory("paho-big")
    await listener.subscribe("big/one", qos=0)
    client = await mqtt_factory("rawws-big")
    await client.send(mqtt.subscribe(1, "big/one", qos=0))
    await client.expect("suback")

    frame = mqtt.publish("big/one", payload, qos=1, packet_id=3)
    remaining = len(frame.data) - 4  # fixed header: 1 byte + a 3-byte remaining length
    assert frame.data[1] & 0x80 and frame.data[2] & 0x80 and not frame.data[3] & 0x80
    assert mqtt.PROTOCOL.decode(frame).fields["payload"] == payload and remaining == 2 + 7 + 2 + len(payload)
    await client.send(frame)

    got = {}
    while len(got) < 2:
        packet = await client.packet()
        got[packet.name] = packet
    assert got["puback"].fields == {"packet_id": 3}
    assert got["publish"].fields["payload"] == payload and got["publish"].fields["topic"] == "big/one"
    msg = await listener.message()
    assert msg.payload == payload


async def test_pingreq_pingresp(broker, mqtt_factory):
    client = await mqtt_factory("rawws-ping")
    for _ in range(3):
        await client.send(mqtt.pingreq())
        assert (await client.expect("pingresp")).raw == b"\xd0\x00"


async def test_two_packets_in_one_frame_and_one_packet_across_frames(broker, mqtt_factory, paho_factory):
    listener = await paho_factory("paho-split")
    await listener.subscribe("split/#", qos=0)
    client = await mqtt_factory("rawws-split")

    # Two packets in one Binary frame: both are answered.
    await client.send(rw.Frame.Binary(mqtt.subscribe(9, "split/x", qos=0).data + mqtt.pingreq().data))
    assert (await client.expect("suback")).fields == {"packet_id": 9, "return_codes": [0]}
    await client.expect("pingresp")

    # One PUBLISH cut into three Binary frames (inside the remaining length, then inside
    # the topic): the broker reassembles it; paho and rawws_nb both receive it.
    data = mqtt.publish("split/x", b"reassembled " * 20, qos=1, packet_id=21).data
    for part in (data[:2], data[2:6], data[6:]):
        await client.send(rw.Frame.Binary(part))
    got = {}
    while len(got) < 2:
        packet = await client.packet()
        got[packet.name] = packet
    assert got["puback"].fields == {"packet_id": 21}
    assert got["publish"].fields["payload"] == b"reassembled " * 20
    msg = await listener.message()
    assert msg.payload == b"reassembled " * 20 and msg.topic == "split/x"


MALFORMED = {
    # a remaining length of five bytes (MQTT allows four)
    "5-byte length": (b"\x30\xff\xff\xff\xff\x01", "length", 5),
    # SUBSCRIBE with flags 0000 instead of the reserved 0010
    "reserved flags": (b"\x80\x08\x00\x01\x00\x03a/b\x00", "subscribe.flags", 0),
    # DISCONNECT with a flag bit set (mosquitto 2.0.11 drops this one, but answers a
    # PINGREQ with the same bit set: it does not check every packet's reserved flags)
    "reserved flags (disconnect)": (b"\xe1\x00", "disconnect.flags", 0),
    # PUBLISH with both QoS bits set (MQTT-3.3.1-4: the server closes the connection)
    "qos 3": (b"\x36\x06\x00\x01a\x00\x01x", "publish", 2),
}


@pytest.mark.parametrize("kind", list(MALFORMED))
async def test_malformed_packets_raise_decode_error_and_the_broker_drops_them(broker, mqtt_factory, kind):
    data, path, offset = MALFORMED[kind]
    with pytest.raises(DecodeError) as info:
        mqtt.PROTOCOL.decode(data)
    assert info.value.path == path and info.value.offset == offset

    client = await mqtt_factory(f"rawws-bad-{len(data)}")
    await client.send(rw.Frame.Binary(data))
    await client.send(mqtt.pingreq())  # never answered: the broker ended the connection
    ended = await client.ended()
    if broker.name == "embedded":
        assert ended is not None and ended.read_reason().code == rw.CloseReason.Codes.PROTOCOL_ERROR
    assert not client.pending  # nothing was answered, not even the PINGREQ


async def test_truncated_packet_is_a_decode_error_at_its_end(broker, mqtt_factory):
    data = mqtt.publish("t/x", b"abcdef", qos=1, packet_id=1).data
    with pytest.raises(DecodeError) as info:
        mqtt.PROTOCOL.decode(data[:-2])
    assert info.value.path == "payload" and info.value.offset == len(data) - 2
    decoder = mqtt.PROTOCOL.decoder()
    assert decoder.feed(data[:-2]) == [] and decoder.pending == len(data) - 2
    with pytest.raises(DecodeError, match="truncated payload"):
        decoder.close()

    # The broker waits for the rest of a truncated packet (no answer, no error), then
    # takes it whole.
    client = await mqtt_factory("rawws-trunc")
    await client.send(rw.Frame.Binary(data[:-2]))
    with pytest.raises(TimeoutError):
        await client.packet(timeout=0.5)
    await client.send(rw.Frame.Binary(data[-2:]))
    assert (await client.expect("puback")).fields == {"packet_id": 1}


async def test_disconnect_ends_the_connection(broker, mqtt_factory):
    client = await mqtt_factory("rawws-bye")
    await client.send(mqtt.disconnect())
    ended = await client.ended()
    if broker.name == "mosquitto":
        assert ended is None  # mosquitto drops TCP without a Close frame (1006)
        assert client.session.close_reason.code == 1006
    else:
        assert ended is not None and ended.read_reason().code == rw.CloseReason.Codes.NORMAL
