"""`check_roundtrip`: one message through every path of the codec layer, compared.

Use it in tests of your own protocols (or in a notebook cell) to catch a message type
whose encoding and decoding disagree somewhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import construct as cs

from .fields import to_plain, unwrap
from .framing import FieldFraming
from .message import Message, MessageType
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
    if isinstance(pv.framing, FieldFraming):
        return _check_with_header(pv, pv.framing, mt, fields)

    # build: plain construct, construct compiled, ours (compiled and reference); construct
    # itself needs None for conditional fields left out
    built_fields = {**{k: None for k in mt.codec.conditional if k not in fields}, **fields}
    plain = struct_.build(built_fields)
    ours = mt.codec.encode(dict(fields))
    reference = mt.codec.encode_reference(dict(fields))
    _check(ours == plain, "compiled encode differs from construct", ours=ours, construct=plain)
    _check(reference == plain, "reference encode differs from construct", ours=reference, construct=plain)
    try:
        compiled = struct_.compile()
    except SyntaxError:  # construct writes a lambda's repr into its generated code
        compiled = None
    if compiled is not None:
        built = compiled.build(built_fields)
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
    return _check_message(pv, mt, fields, data, parsed)


def _check_message(pv: ProtocolVersion, mt: MessageType, fields: dict[str, Any], data: bytes, parsed: Any) -> Message:
    name = mt.name
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


def _flatten(value: Any, out: dict[str, Any]) -> dict[str, Any]:
    for key, item in value.items():
        if isinstance(item, dict):
            _flatten(item, out)
        else:
            out[key] = item
    return out


def _nest(struct_: cs.Construct, flat: Mapping[str, Any]) -> dict[str, Any]:
    """Values for a header `Struct` (BitStructs and Structs nested) from flat field values."""
    inner = unwrap(struct_)[0]
    if isinstance(inner, cs.Transformed):
        inner = unwrap(inner.subcon)[0]
    out: dict[str, Any] = {}
    for sc in inner.subcons:
        sub = unwrap(sc)[0]
        nested = isinstance(sub, cs.Struct) or (
            isinstance(sub, cs.Transformed) and isinstance(unwrap(sub.subcon)[0], cs.Struct)
        )
        if sc.name and nested:
            out[sc.name] = _nest(sub, flat)
        elif sc.name and sc.name in flat:
            out[sc.name] = flat[sc.name]
    return out


def _check_with_header(pv: ProtocolVersion, framing: FieldFraming, mt: MessageType, fields: dict[str, Any]) -> Message:
    """`check_roundtrip` for framings with header fields: the header layout against
    construct's own header `Struct`, the payload against construct with the header
    fields as its context, the length against the framing's length construct."""
    layout = pv.layouts[mt.name]
    names = {leaf.name for leaf in layout.leaves if leaf.name and leaf.name != "type"}
    header = {k: v for k, v in fields.items() if k in names}
    rest = {k: v for k, v in fields.items() if k not in names}

    head, ctx = framing.encode_header(layout, mt.code, header)
    header_struct = framing.header_construct(dict(mt.header))
    built_head = header_struct.build(_nest(header_struct, {**ctx, "type": mt.code}))
    _check(built_head == head, "header bytes differ from construct's", ours=head, construct=built_head)
    parsed_head = _flatten(to_plain(header_struct.parse(head)), {})
    _check(parsed_head.get("type") == mt.code, "construct reads another type code from the header", got=parsed_head)
    for key, value in ctx.items():
        _check(same_value(parsed_head.get(key), value), f"header field {key} differs from construct's", got=value)
    ours_head = framing.decode_header(layout, head + b"\0" * 8)
    _check(same_value(ours_head, ctx), "decoded header fields differ from the encoded ones", got=ours_head, sent=ctx)

    codec = mt.codec
    plain = codec.encode_reference(dict(rest), ctx)
    ours = codec.encode(dict(rest), ctx)
    _check(ours == plain, "compiled encode differs from construct", ours=ours, construct=plain)
    parsed = to_plain(codec.struct.parse(plain, **ctx))
    for key in codec.context:
        parsed.pop(key, None)
    for label, value in (
        ("compiled decode", codec.decode(plain, 0, len(plain), ctx)),
        ("reference decode", codec.decode_reference(plain, 0, len(plain), ctx=ctx)),
    ):
        _check(same_value(value, parsed), f"{label} differs from construct parse", got=value, construct=parsed)

    length = framing.encode_length(len(plain))
    built_length = framing.length_construct.build(len(plain))
    _check(length == built_length, "length bytes differ from construct's", ours=length, construct=built_length)

    data = pv.encode_fields(mt.name, fields)
    _check(data == head + length + plain, "message bytes differ from header + length + payload", message=data)
    return _check_message(pv, mt, fields, data, {**ctx, **parsed})
