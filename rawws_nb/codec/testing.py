"""`check_roundtrip`: one message through every path of the codec layer, compared.

Use it in tests of your own protocols (or in a notebook cell) to catch a message type
whose encoding and decoding disagree somewhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import construct as cs

from .fields import to_plain
from .message import Message
from .protocol import Protocol, ProtocolVersion

__all__ = ["check_roundtrip", "same_value"]


def same_value(a: Any, b: Any) -> bool:
    """Equality for decoded values where NaN equals NaN (floats), recursively."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b) and type(a) is type(b)


def _check(condition: bool, what: str, **details: Any) -> None:
    if not condition:
        lines = "\n".join(f"  {k}: {v!r}" for k, v in details.items())
        raise AssertionError(f"round trip: {what}\n{lines}")


def check_roundtrip(codec: Protocol | ProtocolVersion, name: str, fields: Mapping[str, Any]) -> Message:
    """Encode and decode message `name` every way and check that all agree.

    Compares plain construct's `build`/`parse`, construct's `.compile()` (when it
    compiles), this package's compiled codec and its construct reference path, the
    fused header+payload path, `sizeof()` for fixed-size payloads, re-encoding the
    decoded fields, and the streaming decoder fed one byte at a time. Raises
    `AssertionError` saying what differs; returns the decoded `Message`.
    """
    pv = codec.default if isinstance(codec, Protocol) else codec
    mt = pv.message_type(name)
    struct_ = mt.struct
    fields = dict(fields)

    # build: plain construct, construct compiled, ours (compiled and reference)
    plain = struct_.build(fields)
    ours = mt.codec.encode(dict(fields))
    reference = mt.codec.encode_reference(dict(fields))
    _check(ours == plain, "compiled encode differs from construct", ours=ours, construct=plain)
    _check(reference == plain, "reference encode differs from construct", ours=reference, construct=plain)
    try:
        compiled = struct_.compile()
    except SyntaxError:  # construct writes a lambda's repr into its generated code
        compiled = None
    if compiled is not None:
        built = compiled.build(fields)
        _check(built == plain, "construct compiled build differs from plain", compiled=built, plain=plain)

    # parse: every path gives the same plain dict
    parsed = to_plain(struct_.parse(plain))
    for label, value in (
        ("compiled decode", mt.codec.decode(plain, 0, len(plain))),
        ("reference decode", mt.codec.decode_reference(plain, 0, len(plain))),
        ("construct compiled parse", to_plain(compiled.parse(plain)) if compiled is not None else parsed),
    ):
        _check(same_value(value, parsed), f"{label} differs from construct parse", got=value, construct=parsed)

    # sizeof, for fixed-size payloads
    try:
        size = struct_.sizeof()
    except cs.SizeofError:
        size = None
    if size is not None:
        _check(size == len(plain), "sizeof() differs from the built size", sizeof=size, built=len(plain))

    # whole messages: framing, fused paths, re-encoding, streaming
    data = pv.encode_fields(name, fields)
    _check(data == pv.framing.pack(mt.code, plain), "message bytes differ from framing + payload", message=data)
    msg = pv.decode(data)
    _check(msg.name == name and msg.code == mt.code and msg.raw == data, "decoded header differs", message=msg)
    _check(same_value(msg.fields, parsed), "decoded fields differ from parse", got=msg.fields, construct=parsed)
    general = pv.decode_general(data)
    _check(same_value(general.fields, parsed), "general decode path differs", got=general.fields, construct=parsed)
    again = pv.encode_fields(name, msg.fields)
    _check(again == data, "re-encoding the decoded fields gives other bytes", first=data, again=again)
    decoder = pv.decoder()
    streamed = [m for i in range(len(data)) for m in decoder.feed(data[i : i + 1])]
    _check(len(streamed) == 1 and decoder.pending == 0, "stream decoder byte by byte", messages=streamed)
    _check(same_value(streamed[0].fields, parsed), "streamed fields differ", got=streamed[0].fields)
    return msg
