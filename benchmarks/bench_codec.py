"""Codec benchmark (issue 4, item 3): encode+decode round trips per second, one run.

The message: `versioned` v2 `sample` (seq Int32ub, t_us Int64ub, value Float32b), a
16-byte payload in a 21-byte `[type:1][length:4][payload]` message. Each iteration
encodes one message from field values and decodes it back to a type and a dict of
fields, the same work in every variant:

* rawws_nb: `codec.encode("sample", ...)` then `codec.decode(data)` (a `Message`), with
  `codec = PROTOCOL.for_version((2, 0))`; also through `PROTOCOL` itself;
* construct, compiled and plain: the framing `Struct` around the payload `Struct`;
* hand-written `struct`: header and payload packed with two precompiled `struct.Struct`s
  and unpacked with length and type checks, as one writes it by hand (the reference for
  the ratio), and the floor: one `struct.Struct` for the whole 21 bytes, no checks.

A variable-size message (`tlv` chat with a 16-byte text) is measured too, for context.

MQTT (issue 15): `protocols.mqtt` PUBLISH (QoS 1: flags in the header nibble, a varint
remaining length, topic, packet id, payload), decode and encode measured apart, against
the same fields in the default framing (`[type:1][length:4][payload]`), both messages 58
bytes; and a `[type:1][length: VarInt][payload]` framing for the same chat message as
`tlv`. Target: MQTT at least 0.5x the default framing's rate, each way.
`run(quick=False) -> dict`; `python -m benchmarks.bench_codec [--quick] [--json]`.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

import construct as cs

from protocols import mqtt, tlv, versioned
from rawws_nb.codec import DEFAULT_FRAMING, MessageType, Protocol

__all__ = ["run"]

TARGET = 0.5
SEQ_T_US, VALUE = 1_700_000_000_000_000, 0.5
TEXT = "sixteen bytes!!!"  # 16 bytes of UTF-8

Loop = Callable[[int], Any]  # runs n round trips, returns the last decoded result


# -- the sample message (16-byte payload) ------------------------------------------------------


def _rawws_loop() -> Loop:
    codec = versioned.PROTOCOL.for_version((2, 0))

    def loop(n: int) -> Any:
        encode, decode, out = codec.encode, codec.decode, None
        for i in range(n):
            out = decode(encode("sample", seq=i, t_us=SEQ_T_US, value=VALUE))
        return out

    return loop


def _rawws_protocol_loop() -> Loop:
    proto = versioned.PROTOCOL

    def loop(n: int) -> Any:
        encode, decode, out = proto.encode, proto.decode, None
        for i in range(n):
            out = decode(encode("sample", seq=i, t_us=SEQ_T_US, value=VALUE))
        return out

    return loop


def _construct_loop(compiled: bool) -> Loop:
    payload_struct = versioned.PROTOCOL.for_version((2, 0)).message_type("sample").struct
    framing = DEFAULT_FRAMING
    if compiled:
        payload_struct, framing = payload_struct.compile(), framing.compile()

    def loop(n: int) -> Any:
        build, parse = framing.build, framing.parse
        pbuild, pparse = payload_struct.build, payload_struct.parse
        out = None
        for i in range(n):
            payload = pbuild({"seq": i, "t_us": SEQ_T_US, "value": VALUE})
            data = build({"type": 6, "length": len(payload), "payload": payload})
            frame = parse(data)
            out = frame.type, dict(pparse(frame.payload))
        return out

    return loop


_HEADER = struct.Struct(">BI")
_SAMPLE = struct.Struct(">IQf")
_WHOLE = struct.Struct(">BIIQf")


def hand_encode(seq: int, t_us: int, value: float) -> bytes:
    payload = _SAMPLE.pack(seq, t_us, value)
    return _HEADER.pack(6, len(payload)) + payload


def hand_decode(data: bytes) -> tuple[int, dict[str, Any]]:
    code, length = _HEADER.unpack_from(data)
    if len(data) != 5 + length or code != 6 or length != 16:
        raise ValueError("not a sample message")
    seq, t_us, value = _SAMPLE.unpack_from(data, 5)
    return code, {"seq": seq, "t_us": t_us, "value": value}


def _hand_loop() -> Loop:
    def loop(n: int) -> Any:
        out = None
        for i in range(n):
            out = hand_decode(hand_encode(i, SEQ_T_US, VALUE))
        return out

    return loop


def _floor_loop() -> Loop:
    pack, unpack = _WHOLE.pack, _WHOLE.unpack

    def loop(n: int) -> Any:
        out = None
        for i in range(n):
            code, _, seq, t_us, value = unpack(pack(6, 16, i, SEQ_T_US, VALUE))
            out = code, {"seq": seq, "t_us": t_us, "value": value}
        return out

    return loop


# -- the chat message (variable size) ------------------------------------------------------------


def _rawws_chat() -> Loop:
    codec = tlv.PROTOCOL.for_version((1, 0))

    def loop(n: int) -> Any:
        encode, decode, out = codec.encode, codec.decode, None
        for i in range(n):
            out = decode(encode("chat", id=i, text=TEXT))
        return out

    return loop


def _construct_chat(compiled: bool) -> Loop:
    payload_struct, framing = tlv.CHAT.struct, DEFAULT_FRAMING
    if compiled:
        payload_struct, framing = payload_struct.compile(), framing.compile()

    def loop(n: int) -> Any:
        out = None
        for i in range(n):
            payload = payload_struct.build({"id": i, "text": TEXT})
            frame = framing.parse(framing.build({"type": 2, "length": len(payload), "payload": payload}))
            out = frame.type, dict(payload_struct.parse(frame.payload))
        return out

    return loop


_ID_LEN = struct.Struct(">IH")


def _hand_chat() -> Loop:
    def loop(n: int) -> Any:
        out = None
        for i in range(n):
            text = TEXT.encode("utf-8")
            payload = _ID_LEN.pack(i, len(text)) + text
            data = _HEADER.pack(2, len(payload)) + payload
            code, length = _HEADER.unpack_from(data)
            if len(data) != 5 + length:
                raise ValueError
            msg_id, size = _ID_LEN.unpack_from(data, 5)
            if 11 + size != len(data):
                raise ValueError
            out = code, {"id": msg_id, "text": data[11 : 11 + size].decode("utf-8")}
        return out

    return loop


# -- MQTT PUBLISH against the same fields in the default framing ----------------------------------

TOPIC = "sensors/kitchen/temp"  # 20 bytes
MQTT_PAYLOAD = b"x" * 32  # PUBLISH: 2 (header) + 22 (topic) + 2 (packet id) + 32 = 58 bytes
DEFAULT_PAYLOAD = b"x" * 29  # default framing: 5 + 22 + 2 + 29 = 58 bytes
SAME_FIELDS = Protocol(
    "publish-default-framing",
    [MessageType("publish", 3, cs.Struct("topic" / mqtt.UTF8, "packet_id" / cs.Int16ub, "payload" / cs.GreedyBytes))],
)
VARINT_TLV = Protocol(
    "tlv-varint",
    {(1, 0): tlv.PROTOCOL.message_types},
    framing=cs.Struct("type" / cs.Int8ub, "length" / cs.VarInt, "payload" / cs.Bytes(cs.this.length)),
)


def _encode_loop(codec: Any, name: str, **fields: Any) -> Loop:
    def loop(n: int) -> Any:
        encode, out = codec.encode, None
        for i in range(n):
            out = encode(name, packet_id=i & 0xFFFF, **fields)
        return out

    return loop


def _decode_loop(codec: Any, data: bytes) -> Loop:
    def loop(n: int) -> Any:
        decode, out = codec.decode, None
        for _ in range(n):
            out = decode(data)
        return out

    return loop


def _chat_decode_loop(codec: Any) -> Loop:
    return _decode_loop(codec, codec.encode("chat", id=1, text=TEXT))


def _mqtt_loops(n: int) -> dict[str, tuple[Loop, int]]:
    pub, same = mqtt.PROTOCOL.default, SAME_FIELDS.default
    mqtt_data = pub.encode("publish", qos=1, topic=TOPIC, packet_id=7, payload=MQTT_PAYLOAD)
    same_data = same.encode("publish", topic=TOPIC, packet_id=7, payload=DEFAULT_PAYLOAD)
    assert len(mqtt_data) == len(same_data) == 58
    return {
        "mqtt_decode": (_decode_loop(pub, mqtt_data), n),
        "default_decode": (_decode_loop(same, same_data), n),
        "mqtt_encode": (_encode_loop(pub, "publish", qos=1, topic=TOPIC, payload=MQTT_PAYLOAD), n),
        "default_encode": (_encode_loop(same, "publish", topic=TOPIC, payload=DEFAULT_PAYLOAD), n),
        "varint_chat_decode": (_chat_decode_loop(VARINT_TLV.default), n),
        "default_chat_decode": (_chat_decode_loop(tlv.PROTOCOL.default), n),
    }


# -- measuring -----------------------------------------------------------------------------------


def _rates(loops: dict[str, tuple[Loop, int]], repeats: int) -> dict[str, float]:
    """Best rate of each loop over `repeats` rounds; the loops take turns within each
    round, so a busy machine slows all of them alike and the ratios stay meaningful."""
    best = dict.fromkeys(loops, float("inf"))
    for loop, n in loops.values():
        loop(min(n, 2000))  # warm up
    for _ in range(repeats):
        for key, (loop, n) in loops.items():
            gc.collect()
            t0 = time.perf_counter()
            loop(n)
            best[key] = min(best[key], (time.perf_counter() - t0) / n)
    return {key: 1 / seconds for key, seconds in best.items()}


def _check_equivalence() -> None:
    codec = versioned.PROTOCOL.for_version((2, 0))
    data = codec.encode("sample", seq=5, t_us=SEQ_T_US, value=VALUE)
    assert data == hand_encode(5, SEQ_T_US, VALUE) == _WHOLE.pack(6, 16, 5, SEQ_T_US, VALUE)
    assert codec.decode(data).fields == hand_decode(data)[1]
    chat = tlv.PROTOCOL.encode("chat", id=1, text=TEXT)
    assert len(chat) - 5 - 6 == 16


def run(quick: bool = False) -> dict[str, Any]:
    """Measure every variant; return rates (messages/s) and the ratios."""
    _check_equivalence()
    n, slow_n, repeats = (20_000, 2_000, 3) if quick else (100_000, 10_000, 7)
    sample = _rates(
        {
            "rawws_nb": (_rawws_loop(), n),
            "rawws_nb_protocol": (_rawws_protocol_loop(), n),
            "construct_compiled": (_construct_loop(True), slow_n),
            "construct_plain": (_construct_loop(False), slow_n),
            "hand_struct": (_hand_loop(), n),
            "hand_struct_floor": (_floor_loop(), n),
        },
        repeats,
    )
    chat = _rates(
        {
            "rawws_nb": (_rawws_chat(), n),
            "construct_compiled": (_construct_chat(True), slow_n),
            "construct_plain": (_construct_chat(False), slow_n),
            "hand_struct": (_hand_chat(), n),
        },
        repeats,
    )
    mqtt_rates = _rates(_mqtt_loops(n), repeats)
    return {
        "mqtt": mqtt_rates,
        "ratio_mqtt_decode": mqtt_rates["mqtt_decode"] / mqtt_rates["default_decode"],
        "ratio_mqtt_encode": mqtt_rates["mqtt_encode"] / mqtt_rates["default_encode"],
        "ratio_varint_decode": mqtt_rates["varint_chat_decode"] / mqtt_rates["default_chat_decode"],
        "python": platform.python_version(),
        "construct": cs.__version__ if hasattr(cs, "__version__") else "?",
        "iterations": n,
        "sample": sample,
        "chat": chat,
        "ratio": sample["rawws_nb"] / sample["hand_struct"],
        "ratio_protocol": sample["rawws_nb_protocol"] / sample["hand_struct"],
        "ratio_floor": sample["rawws_nb"] / sample["hand_struct_floor"],
        "ratio_chat": chat["rawws_nb"] / chat["hand_struct"],
        "target": TARGET,
    }


LABELS = {
    "rawws_nb": "rawws_nb codec, for_version((2, 0))",
    "rawws_nb_protocol": "rawws_nb codec, via Protocol",
    "construct_compiled": "construct, .compile()",
    "construct_plain": "construct, plain",
    "hand_struct": "hand-written struct (header + payload)",
    "hand_struct_floor": "hand-written struct, one Struct, no checks",
}


def report(result: dict[str, Any]) -> str:
    lines = [
        f"codec encode+decode, Python {result['python']}, construct {result['construct']}",
        "16-byte payload (versioned v2 'sample', 21-byte message):",
    ]
    for key, rate in result["sample"].items():
        lines.append(f"  {LABELS[key]:<44} {rate:>12,.0f} msg/s")
    lines.append("variable size (tlv 'chat', 16-byte text):")
    for key, rate in result["chat"].items():
        label = "rawws_nb codec, for_version((1, 0))" if key == "rawws_nb" else LABELS[key]
        lines.append(f"  {label:<44} {rate:>12,.0f} msg/s")
    ok = "ok" if result["ratio"] >= result["target"] else "BELOW TARGET"
    lines += [
        f"ratio rawws_nb / hand-written struct: {result['ratio']:.2f} (target >= {result['target']}: {ok})",
        f"  via Protocol: {result['ratio_protocol']:.2f}; against the one-Struct floor: {result['ratio_floor']:.2f};"
        f" chat: {result['ratio_chat']:.2f}",
    ]
    lines.append("MQTT PUBLISH, QoS 1, 58-byte messages (the same fields in the default framing):")
    labels = {
        "mqtt_decode": "protocols.mqtt publish, decode",
        "default_decode": "default framing, same fields, decode",
        "mqtt_encode": "protocols.mqtt publish, encode",
        "default_encode": "default framing, same fields, encode",
        "varint_chat_decode": "tlv chat, [type][VarInt length], decode",
        "default_chat_decode": "tlv chat, default framing, decode",
    }
    for key, rate in result["mqtt"].items():
        lines.append(f"  {labels[key]:<44} {rate:>12,.0f} msg/s")
    for key, what in (("decode", "decode"), ("encode", "encode")):
        ratio = result[f"ratio_mqtt_{key}"]
        ok = "ok" if ratio >= result["target"] else "BELOW TARGET"
        lines.append(f"ratio MQTT / default framing, {what}: {ratio:.2f} (target >= {result['target']}: {ok})")
    lines.append(f"  varint length / default framing, chat decode: {result['ratio_varint_decode']:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument("--json", action="store_true", help="print the result as JSON too")
    args = parser.parse_args(argv)
    result = run(quick=args.quick)
    print(report(result))
    if args.json:
        print(json.dumps(result, indent=2))
    ratios = (result["ratio"], result["ratio_mqtt_decode"], result["ratio_mqtt_encode"])
    return 0 if min(ratios) >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
