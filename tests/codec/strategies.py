"""Hypothesis strategies built from the codec's field metadata, and test protocols."""

from __future__ import annotations

import struct
from typing import Any

from construct import (
    Array,
    Bytes,
    BytesInteger,
    Const,
    CString,
    Default,
    Enum,
    Flag,
    FlagsEnum,
    Float16b,
    Float32l,
    Float64b,
    GreedyBytes,
    GreedyString,
    Int8sb,
    Int8ub,
    Int16sl,
    Int16ub,
    Int16ul,
    Int32sb,
    Int32sl,
    Int32ub,
    Int64sl,
    Int64ub,
    PaddedString,
    Padding,
    PascalString,
    Prefixed,
    PrefixedArray,
    Struct,
    VarInt,
    this,
)
from hypothesis import strategies as st

from rawws_nb.codec import FieldInfo, MessageType, Protocol, ProtocolVersion

# -- strategies ---------------------------------------------------------------------------


def value_strategy(info: FieldInfo) -> st.SearchStrategy[Any]:
    """Valid values for one field."""
    kind = info.kind
    if kind == "int":
        return st.integers(info.min if info.min is not None else 0, info.max if info.max is not None else 2**32)
    if kind == "float":
        width = {2: 16, 4: 32}.get(info.size or 8, 64)
        return st.floats(width=width, allow_nan=False)
    if kind == "bool":
        return st.booleans()
    if kind == "bytes":
        if info.size is not None:
            return st.binary(min_size=info.size, max_size=info.size)
        return st.binary(max_size=min(info.max_length or 64, 64))
    if kind == "str":
        if info.size is not None:  # PaddedString: no trailing NULs, fits in size
            chars = st.characters(codec=info.encoding, exclude_characters="\0")
            return st.text(chars, max_size=info.size // 4)
        limit = min((info.max_length or 256) // 4, 40)
        exclude = "\0" if info.type.startswith("CString") else ""
        return st.text(st.characters(codec=info.encoding, exclude_characters=exclude), max_size=limit)
    if kind == "enum":
        named = st.sampled_from(info.choices) if info.choices else st.nothing()
        return named | st.integers(info.min or 0, info.max if info.max is not None else 255)
    if kind == "flags":
        return st.fixed_dictionaries({c: st.booleans() for c in info.choices})
    if kind == "struct":
        return fields_strategy(info.children)
    if kind == "array":
        assert info.item is not None
        size = info.count
        return st.lists(value_strategy(info.item), min_size=size or 0, max_size=size if size is not None else 4)
    raise NotImplementedError(f"no strategy for {info.kind} ({info.type})")


def fields_strategy(infos: tuple[FieldInfo, ...]) -> st.SearchStrategy[dict[str, Any]]:
    """Valid field dicts: required fields always, defaulted fields sometimes."""
    # Conditional fields always get a value: left out, they are valid only when their
    # condition is false, which the strategies cannot know (tests leave them out on purpose).
    required = {f.name: value_strategy(f) for f in infos if f.required or f.condition is not None}
    optional = {
        f.name: value_strategy(f)
        for f in infos
        if not f.required and f.condition is None and f.kind not in ("const", "padding")
    }
    return st.fixed_dictionaries(required, optional=optional)


def passes_checks(mt: MessageType, fields: dict[str, Any]) -> bool:
    """False when `fields` break one of the message type's `Check`s (MQTT: QoS 3)."""
    from construct import Check

    from rawws_nb.codec.fields import unwrap

    context = {f.name: f.default for f in mt.fields if f.default is not None} | fields  # left out: defaults
    for sc in unwrap(mt.struct)[0].subcons:
        inner = unwrap(sc)[0]
        if isinstance(inner, Check) and not inner.func(context):
            return False
    return True


def message_fields(mt: MessageType) -> st.SearchStrategy[dict[str, Any]]:
    """Valid field dicts of message type `mt`: `fields_strategy`, keeping to its checks."""
    return fields_strategy(mt.fields).filter(lambda fields: passes_checks(mt, fields))


@st.composite
def valid_messages(draw: Any, codec: ProtocolVersion) -> tuple[str, dict[str, Any]]:
    """(name, fields) of a random valid message of `codec`."""
    mt = draw(st.sampled_from(codec.message_types))
    return mt.name, draw(message_fields(mt))


@st.composite
def message_like_bytes(draw: Any, codec: ProtocolVersion) -> bytes:
    """Bytes that are often nearly valid: random, framed random payloads, or valid
    messages truncated, extended or with one byte changed."""
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return draw(st.binary(max_size=64))
    if choice == 1:
        mt = draw(st.sampled_from(codec.message_types))
        return codec.framing.pack(mt.code, draw(st.binary(max_size=48)))
    name, fields = draw(valid_messages(codec))
    data = codec.encode(name, **fields)
    if choice == 2:
        cut = draw(st.integers(0, len(data)))
        return data[:cut] + draw(st.binary(max_size=4))
    at = draw(st.integers(0, len(data) - 1))
    return data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]


def float_like(value: float, size: int) -> float:
    fmt = {2: ">e", 4: ">f", 8: ">d"}[size]
    return struct.unpack(fmt, struct.pack(fmt, value))[0]


# -- a protocol with every construct the compiler handles, and a few it does not -------------

COLOR = Enum(Int8ub, red=1, green=2, blue=3)
POINT = Struct("x" / Int16sl, "y" / Int16sl)

KITCHEN = [
    MessageType(
        "ints",
        1,
        Struct(
            "u8" / Int8ub,
            "s8" / Int8sb,
            "u16" / Int16ub,
            "s16l" / Int16sl,
            "u32" / Int32ub,
            "s32" / Int32sb,
            "u64" / Int64ub,
            "s64l" / Int64sl,
        ),
    ),
    MessageType("floats", 2, Struct("h" / Float16b, "f" / Float32l, "d" / Float64b)),
    MessageType(
        "strings",
        3,
        Struct(
            "pascal" / PascalString(Int8ub, "utf8"),
            "wide" / PascalString(Int16ul, "utf8"),
            "c" / CString("utf8"),
            "latin" / PascalString(Int8ub, "latin1"),
            "rest" / GreedyString("utf8"),
        ),
    ),
    MessageType(
        "blobs",
        4,
        Struct("fixed" / Bytes(4), "pre" / Prefixed(Int16ub, GreedyBytes), "flag" / Flag, "tail" / GreedyBytes),
    ),
    MessageType(
        "decorated",
        5,
        Struct(
            "magic" / Const(b"RW"),
            "color" / COLOR,
            "shade" / Default(COLOR, "blue"),
            "level" / Default(Int8ub, 7),
            Padding(2),
            "gap" / Padding(1),
            "count" / Default(Int32ub, 0),
        ),
    ),
    MessageType(
        "nested",
        6,
        Struct(
            "origin" / POINT,
            "path" / PrefixedArray(Int8ub, POINT),
            "triple" / Array(3, Int16ub),
            "tags" / PrefixedArray(Int16ub, PascalString(Int8ub, "utf8")),
            "mixed" / Struct("a" / Int32ub, "b" / Int32sl, "ok" / Flag),
        ),
    ),
    MessageType("empty", 7, Struct()),
    MessageType("single", 8, Struct("v" / Int64ub)),
    # Outside the compiled subset: plain construct does the work.
    MessageType(
        "plain",
        9,
        Struct(
            "n" / VarInt,
            "i24" / BytesInteger(3),
            "name" / PaddedString(6, "utf8"),
            "flags" / FlagsEnum(Int8ub, a=1, b=2, c=4),
        ),
    ),
    MessageType("allopt", 10, Struct("a" / Default(Int8ub, 1), "b" / Default(Int16ub, 2))),
]

KITCHEN_PROTOCOL = Protocol("kitchen", {(1, 0): KITCHEN})

# Other framings: length before a little-endian 2-byte type; a varint-prefixed payload.
LE_FRAMING = Struct("length" / Int16ul, "type" / Int16ul, "payload" / Bytes(this.length))
VARINT_FRAMING = Struct("type" / Int8ub, "payload" / Prefixed(VarInt, GreedyBytes))
MAGIC_FRAMING = Struct("magic" / Const(b"\xca\xfe"), "type" / Int8ub, "length" / Int8ub, "payload" / Bytes(this.length))

LE_PROTOCOL = Protocol("le", {(1, 0): KITCHEN}, framing=LE_FRAMING, max_payload=60000)
VARINT_PROTOCOL = Protocol("varint", {(1, 0): KITCHEN}, framing=VARINT_FRAMING)
MAGIC_PROTOCOL = Protocol("magic", {(1, 0): [KITCHEN[i] for i in (0, 1, 4, 6, 7, 9)]}, framing=MAGIC_FRAMING)


def rich_value(info: FieldInfo) -> Any:
    """A non-trivial valid value (non-empty strings, non-zero numbers) for exhaustive tests."""
    kind = info.kind
    if kind == "int":
        return (info.max if info.max is not None else 1000) // 3
    if kind == "float":
        return 1.5
    if kind == "bool":
        return True
    if kind == "bytes":
        return bytes(range(1, (info.size if info.size is not None else 5) + 1))
    if kind == "str":
        return "hé" if info.size is not None else "héllo"
    if kind == "enum":
        return info.choices[-1] if info.choices else 1
    if kind == "flags":
        return {c: True for c in info.choices}
    if kind == "struct":
        return rich_fields(info.children)
    if kind == "array":
        assert info.item is not None
        return [rich_value(info.item)] * (info.count if info.count is not None else 2)
    raise NotImplementedError(info.kind)


def rich_fields(infos: tuple[FieldInfo, ...]) -> dict[str, Any]:
    return {f.name: rich_value(f) for f in infos if f.kind not in ("const", "padding")}


def header_context(mt: MessageType) -> st.SearchStrategy[dict[str, Any]]:
    """Values of the header fields a message type's payload conditions may read (within
    its checks)."""
    values = st.fixed_dictionaries({f.name: value_strategy(f) for f in mt.header_fields})
    return values.filter(lambda ctx: passes_checks(mt, ctx))


def split_header(mt: MessageType, fields: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(payload fields, header context) of a message's fields (header defaults applied)."""
    header = {f.name: fields.get(f.name, f.default) for f in mt.header_fields}
    return {k: v for k, v in fields.items() if k not in header}, header
