"""Framing: where a message's type code and payload sit in the bytes.

The default (docs/architecture.md, "The codec's wire conventions") is
`[type:1][length:4 big-endian][payload:length]`, spelled as construct:
`"type"/Int8ub, "length"/Int32ub, "payload"/Bytes(this.length)`. Any `Struct` with a
`type` field and a `payload` bytes field works (a varint length, a 2-byte type, a magic
prefix...). Three kinds, fastest first:

- `HeaderFraming`: fixed-size `type` and `length` fields, then `Bytes(this.length)`;
- `FieldFraming`: header fields before the length (unsigned integers and `BitStruct`s
  of bit fields, the type code among them, as in MQTT's `type` nibble and `flags`
  nibble), a fixed-size or varint (`VarInt`, `BoundedVarInt(n)`) length, then
  `Bytes(this.length)`. Message types may redeclare header fields (`MessageType(...,
  header={"flags": ...})`); header fields are part of the message's fields;
- `ConstructFraming`: anything else, parsed by construct.
"""

from __future__ import annotations

import dataclasses
import io
import struct
from collections.abc import Mapping
from typing import Any, Literal, overload

import construct as cs

from .errors import CONSTRUCT_BUILD_ERRORS, DecodeError, EncodeError, construct_error_path, construct_error_reason
from .fastpath import HeaderLayout, HeaderLeaf, HeaderSpec
from .fields import unwrap
from .varint import BoundedVarInt, VarIntError, encode_varint, read_varint

__all__ = [
    "DEFAULT_FRAMING",
    "ConstructFraming",
    "FieldFraming",
    "Framing",
    "HeaderFraming",
    "Split",
    "header_leaves",
    "make_framing",
]

DEFAULT_FRAMING = cs.Struct(
    "type" / cs.Int8ub,
    "length" / cs.Int32ub,
    "payload" / cs.Bytes(cs.this.length),
)

#: (code, payload_start, payload_end, end): offsets into the buffer that was split.
Split = tuple[int, int, int, int]
Buffer = bytes | bytearray


class Framing:
    """Splits byte streams into (type code, payload) and packs them back.

    `split(data, pos, final)` returns `(code, payload_start, payload_end, end)` for the
    message at `pos`, or None when more bytes are needed (with `final`, a short message
    raises `DecodeError` instead). Offsets in errors count from `pos`.

    `construct` is the framing `Struct`, `header` the `HeaderSpec` of a fixed header
    (None for other framings), `max_payload` the largest payload accepted, and
    `type_offset` where the type code starts in a message (for error offsets).
    """

    construct: cs.Construct
    header: HeaderSpec | None = None
    max_payload: int
    type_offset: int = 0

    def pack(self, code: int, payload: bytes) -> bytes:
        raise NotImplementedError

    @overload
    def split(self, data: Buffer, pos: int = 0, final: Literal[True] = True) -> Split: ...
    @overload
    def split(self, data: Buffer, pos: int = 0, *, final: bool) -> Split | None: ...
    @overload
    def split(self, data: Buffer, pos: int, final: bool) -> Split | None: ...
    def split(self, data: Buffer, pos: int = 0, final: bool = True) -> Split | None:
        raise NotImplementedError

    def check_code(self, code: int) -> None:
        """Raise ValueError when the framing cannot carry type code `code`."""
        try:
            self.pack(code, b"")
        except EncodeError as exc:
            raise ValueError(f"type code {code} does not fit the framing: {exc.reason}") from None


class HeaderFraming(Framing):
    """A fixed header of `type` and `length` fields, then the payload.

    Besides `Framing`'s attributes: `size` (header bytes), `unpack_header(data, pos=0)`
    (the header's values, in `header.names` order), `type_index`/`length_index` (where
    the type code and the length are in those values), `length_offset` (where the length
    starts in a message) and `type_first_byte` (the type code is the message's first
    byte, so a message can be dispatched on `data[0]`).
    """

    header: HeaderSpec

    def __init__(self, construct: cs.Construct, header: HeaderSpec, max_payload: int) -> None:
        self.construct = construct
        self.header = header
        self.max_payload = max_payload
        self.size = header.size
        fmt = struct.Struct(header.order + header.fmt)
        self._pack = fmt.pack
        self.unpack_header = fmt.unpack_from
        self.type_index = header.names.index("type")
        self.length_index = header.names.index("length")
        self.length_offset = struct.calcsize(header.order + header.fmt[: self.length_index])
        self.type_offset = struct.calcsize(header.order + header.fmt[: self.type_index])
        self._type_first = self.type_index == 0
        self.type_first_byte = self.type_index == 0 and header.fmt[0] == "B"

    def pack(self, code: int, payload: bytes) -> bytes:
        size = len(payload)
        try:
            head = self._pack(code, size) if self._type_first else self._pack(size, code)
        except struct.error as exc:
            bad_type = not _fits(self.header, self.type_index, code)
            path, value = ("type", code) if bad_type else ("length", size)
            raise EncodeError(f"{path} {value!r} does not fit the header ({exc})", path=path) from None
        return head + payload

    @overload
    def split(self, data: Buffer, pos: int = 0, final: Literal[True] = True) -> Split: ...
    @overload
    def split(self, data: Buffer, pos: int = 0, *, final: bool) -> Split | None: ...
    @overload
    def split(self, data: Buffer, pos: int, final: bool) -> Split | None: ...
    def split(self, data: Buffer, pos: int = 0, final: bool = True) -> Split | None:
        available = len(data) - pos
        if available < self.size:
            if not final:
                return None
            raise DecodeError(
                f"truncated header: {available} of {self.size} bytes",
                offset=available,
                path="header",
                data=bytes(data[pos:]),
            )
        values = self.unpack_header(data, pos)
        code: int = values[self.type_index]
        length: int = values[self.length_index]
        if length < 0 or length > self.max_payload:
            raise DecodeError(
                f"declared payload length {length} is outside 0..{self.max_payload}",
                offset=self.length_offset,
                path="length",
                data=bytes(data[pos : pos + self.size + 16]),
            )
        start = pos + self.size
        end = start + length
        if end > len(data):
            if not final:
                return None
            raise DecodeError(
                f"truncated payload: {len(data) - start} of {length} bytes",
                offset=len(data) - pos,
                path="payload",
                data=bytes(data[pos:]),
            )
        return code, start, end, end


def _fits(header: HeaderSpec, index: int, value: int) -> bool:
    try:
        struct.pack(header.order + header.fmt[index], value)
    except struct.error:
        return False
    return True


class ConstructFraming(Framing):
    """Any construct `Struct` with a `type` field and a `payload` bytes field."""

    def __init__(self, construct: cs.Construct, max_payload: int) -> None:
        self.construct = construct
        self.max_payload = max_payload
        inner = unwrap(construct)[0]
        subcons = list(inner.subcons)
        at = next(i for i, sc in enumerate(subcons) if sc.name == "payload")
        # The same struct with a Tell just after the payload: the payload's bytes end
        # there (true of Bytes, Prefixed, GreedyBytes...), so they start len(payload) earlier.
        self._parser = cs.Struct(*subcons[: at + 1], "_payload_end" / cs.Tell, *subcons[at + 1 :])

    def pack(self, code: int, payload: bytes) -> bytes:
        try:
            data: bytes = self.construct.build({"type": code, "length": len(payload), "payload": payload})
        except CONSTRUCT_BUILD_ERRORS as exc:
            path = construct_error_path(exc) or "framing"
            raise EncodeError(f"framing: {construct_error_reason(exc)}", path=path) from None
        return data

    @overload
    def split(self, data: Buffer, pos: int = 0, final: Literal[True] = True) -> Split: ...
    @overload
    def split(self, data: Buffer, pos: int = 0, *, final: bool) -> Split | None: ...
    @overload
    def split(self, data: Buffer, pos: int, final: bool) -> Split | None: ...
    def split(self, data: Buffer, pos: int = 0, final: bool = True) -> Split | None:
        stream = io.BytesIO(data if isinstance(data, bytes) else bytes(data))
        stream.seek(pos)
        try:
            obj = self._parser.parse_stream(stream)
        except cs.StreamError as exc:
            if not final and len(data) - pos <= self.max_payload + 64:
                return None
            reason = construct_error_reason(exc) if final else f"no complete message in {len(data) - pos} bytes"
            raise DecodeError(
                f"framing: {reason}", offset=len(data) - pos, path=construct_error_path(exc), data=bytes(data[pos:])
            ) from None
        except cs.ConstructError as exc:
            raise DecodeError(
                f"framing: {construct_error_reason(exc)}",
                offset=stream.tell() - pos,
                path=construct_error_path(exc),
                data=bytes(data[pos:]),
            ) from None
        code, payload = obj.get("type"), obj.get("payload")
        if not isinstance(code, int) or not isinstance(payload, bytes):
            raise DecodeError(
                "framing must parse an integer `type` and a bytes `payload`", offset=0, data=bytes(data[pos:])
            )
        end: int = obj["_payload_end"]
        if len(payload) > self.max_payload:
            raise DecodeError(
                f"payload length {len(payload)} exceeds {self.max_payload}",
                offset=end - len(payload) - pos,
                path="payload",
                data=bytes(data[pos:]),
            )
        return int(code), end - len(payload), end, stream.tell()


def make_framing(construct: cs.Construct | None = None, max_payload: int = 1 << 24) -> Framing:
    """A `Framing` for a construct `Struct` (the default framing when None)."""
    construct = DEFAULT_FRAMING if construct is None else construct
    inner = unwrap(construct)[0]
    if not isinstance(inner, cs.Struct):
        raise TypeError("framing must be a construct Struct")
    names = [sc.name for sc in inner.subcons]
    header = _header_spec(inner)
    if header is not None:
        return HeaderFraming(construct, header, max_payload)
    fields = _field_framing(construct, inner, max_payload)
    if fields is not None:
        return fields
    if "type" not in names or "payload" not in names:
        raise ValueError(
            "framing needs a `type` field and a `payload` field (the type may be a bit field in a BitStruct)"
        )
    return ConstructFraming(construct, max_payload)


# -- header fields: FieldFraming -------------------------------------------------------------


class _NotALeaf(Exception):
    """A construct that is not a header field the layout can describe."""


def _bitstruct(c: cs.Construct) -> tuple[cs.Struct, int] | None:
    """(the bit-level Struct, size in bytes) of a `BitStruct`, else None."""
    if isinstance(c, cs.Transformed) and c.decodefunc is cs.bytes2bits and isinstance(unwrap(c.subcon)[0], cs.Struct):
        return unwrap(c.subcon)[0], int(c.decodeamount)
    return None


def _bit_leaves(c: cs.Construct, name: str, byte: int, nbytes: int, at: int) -> list[HeaderLeaf]:
    """Leaves of bit-level construct `c` named `name`, starting `at` bits from the group's
    most significant bit."""
    inner = unwrap(c)[0]
    total = 8 * nbytes
    if isinstance(inner, cs.Struct):
        out: list[HeaderLeaf] = []
        for sc in inner.subcons:
            found = _bit_leaves(sc, sc.name or "", byte, nbytes, at)
            out += found
            at += sum(leaf.width for leaf in found)
        return out
    if isinstance(inner, cs.Const):
        (leaf,) = _bit_leaves(inner.subcon, name, byte, nbytes, at)
        value = inner.value
        if not isinstance(value, int) or not 0 <= int(value) <= leaf.mask:
            raise _NotALeaf(f"Const {value!r} in {leaf.width} bits")
        return [dataclasses.replace(leaf, const=int(value))]
    if isinstance(inner, cs.Default):
        (leaf,) = _bit_leaves(inner.subcon, name, byte, nbytes, at)
        if callable(inner.value):
            raise _NotALeaf("Default with a function")
        return [dataclasses.replace(leaf, default=inner.value, has_default=True)]
    if inner is cs.Flag:
        width, flag = 1, True
    elif isinstance(inner, cs.BitsInteger) and isinstance(inner.length, int) and not inner.signed and not inner.swapped:
        width, flag = inner.length, False
    elif isinstance(inner, cs.Padded) and inner.subcon is cs.Pass and isinstance(inner.length, int):
        if inner.pattern != b"\x00":
            raise _NotALeaf("padding with a pattern")
        width, flag, name = inner.length, False, ""
    else:
        raise _NotALeaf(type(inner).__name__)
    if at + width > total:
        raise _NotALeaf(f"bit fields wider than {total} bits")
    return [HeaderLeaf(name, byte, nbytes, total - at - width, width, flag=flag)]


def _byte_leaves(c: cs.Construct, name: str, byte: int) -> list[HeaderLeaf]:
    """Leaves of a byte-level header field (an unsigned integer, a `BitStruct`, or
    either under `Const`/`Default`) at `byte`."""
    inner = unwrap(c)[0]
    bits = _bitstruct(inner)
    if bits is not None:
        struct_, nbytes = bits
        leaves = [dataclasses.replace(leaf, part=name) for leaf in _bit_leaves(struct_, name, byte, nbytes, 0)]
        if sum(leaf.width for leaf in leaves) != 8 * nbytes:
            raise _NotALeaf("a BitStruct of whole bytes")
        return leaves
    if isinstance(inner, (cs.Const, cs.Default)):
        (leaf,) = _byte_leaves(inner.subcon, name, byte)
        if isinstance(inner, cs.Default):
            return [dataclasses.replace(leaf, default=inner.value, has_default=True)]
        value = inner.value
        if not isinstance(value, int) or not 0 <= int(value) <= leaf.mask:
            raise _NotALeaf(f"Const {value!r}")
        return [dataclasses.replace(leaf, const=int(value))]
    if isinstance(inner, cs.FormatField) and len(inner.fmtstr) == 2 and inner.fmtstr[1] in "BHILQ":
        order = "<" if inner.fmtstr[0] == "<" else ">"
        return [HeaderLeaf(name, byte, inner.length, 0, 8 * inner.length, order=order)]
    raise _NotALeaf(type(inner).__name__)


def header_leaves(c: cs.Construct, name: str, like: HeaderLeaf) -> list[HeaderLeaf]:
    """The leaves of `c` when it takes the place of header field `like` (a message
    type's redeclaration of a framing field): bit-level constructs for a bit field,
    byte-level ones for a whole field. ValueError when `c` does not fit in its bits."""
    whole = like.shift == 0 and like.width == 8 * like.nbytes
    try:
        if whole:
            try:
                leaves = _byte_leaves(c, name, like.byte)
            except _NotALeaf:
                leaves = _bit_leaves(c, name, like.byte, like.nbytes, 0)
        else:
            leaves = _bit_leaves(c, name, like.byte, like.nbytes, 8 * like.nbytes - like.shift - like.width)
    except _NotALeaf as exc:
        raise ValueError(f"header field {like.name!r}: {exc} is not a header field construct") from None
    width = sum(leaf.width for leaf in leaves)
    if width != like.width:
        raise ValueError(f"header field {like.name!r} is {like.width} bits; its redeclaration is {width}")
    return [dataclasses.replace(leaf, order=like.order, part=like.name) for leaf in leaves]


def _field_framing(construct: cs.Construct, inner: cs.Struct, max_payload: int) -> FieldFraming | None:
    subcons = list(inner.subcons)
    if len(subcons) < 3 or subcons[-1].name != "payload" or subcons[-2].name != "length":
        return None
    payload = unwrap(subcons[-1])[0]
    if not isinstance(payload, cs.Bytes) or repr(payload.length) != "this['length']":
        return None
    length = unwrap(subcons[-2])[0]
    varint: int | None = None
    length_fmt: str | None = None
    if isinstance(length, BoundedVarInt):
        varint = length.max_bytes
    elif length is cs.VarInt:
        varint = max(1, -(-max_payload.bit_length() // 7))
    elif isinstance(length, cs.FormatField) and len(length.fmtstr) == 2 and length.fmtstr[1] in "BHILQ":
        length_fmt = length.fmtstr
    else:
        return None
    leaves: list[HeaderLeaf] = []
    byte = 0
    try:
        for sc in subcons[:-2]:
            found = _byte_leaves(sc, sc.name or "", byte)
            if not found:
                return None
            leaves += found
            byte += found[0].nbytes
    except _NotALeaf:
        return None
    names = [leaf.name for leaf in leaves if leaf.name]
    if names.count("type") != 1 or len(set(names)) != len(names) or "length" in names or "payload" in names:
        return None
    layout = HeaderLayout(byte, tuple(leaves), varint=varint, length_fmt=length_fmt)
    return FieldFraming(construct, layout, max_payload)


class FieldFraming(Framing):
    """Header fields (bit fields included) before the length, a fixed-size or varint
    length, then the payload: MQTT's `[type:4 flags:4][remaining length: varint]`.

    `layout` describes the framing's own header (`HeaderLayout`); `header_names` are its
    fields besides the type code (constants excluded). Messages whose type redeclares
    header fields use `layout_for(overrides)`; `decode_header`, `encode_header` and
    `pack_message` read and write a header with a given layout (the reference the
    compiled paths are checked against). `varint` is the varint length's maximum size
    in bytes (None for a fixed-size length).
    """

    layout: HeaderLayout

    def __init__(self, construct: cs.Construct, layout: HeaderLayout, max_payload: int) -> None:
        self.construct = construct
        self.layout = layout
        self.max_payload = max_payload
        self.size = layout.size
        self.varint = layout.varint
        self.header_names = layout.field_names
        self._type = next(leaf for leaf in layout.leaves if leaf.name == "type")
        self.type_offset = self._type.byte
        self.type_first_byte = self._type.byte == 0 and self._type.nbytes == 1
        self._length = struct.Struct(layout.length_fmt) if layout.length_fmt else None
        self.max_varint_value = (1 << (7 * self.varint)) - 1 if self.varint else 0

    # -- layouts

    def field_construct(self, name: str) -> cs.Construct:
        """The construct the framing declares for header field `name` (a bit-level one
        for a field inside a `BitStruct`)."""
        for sc in unwrap(self.construct)[0].subcons:
            if sc.name == name:
                return sc
            bits = _bitstruct(unwrap(sc)[0])
            if bits is not None:
                for sub in bits[0].subcons:
                    if sub.name == name:
                        return sub
        raise KeyError(f"the framing has no header field {name!r}")

    def header_construct(self, overrides: Mapping[str, cs.Construct]) -> cs.Struct:
        """The framing's header (the fields before the length) as a construct `Struct`,
        with `overrides` in place of the fields they redeclare: the construct reference
        `check_roundtrip` compares the layout with."""
        parts: list[cs.Construct] = []
        for sc in list(unwrap(self.construct)[0].subcons)[:-2]:
            if sc.name in overrides:
                parts.append(sc.name / overrides[sc.name])
                continue
            bits = _bitstruct(unwrap(sc)[0])
            if bits is not None and any(sub.name in overrides for sub in bits[0].subcons):
                subs = [sub.name / overrides[sub.name] if sub.name in overrides else sub for sub in bits[0].subcons]
                parts.append((sc.name / cs.BitStruct(*subs)) if sc.name else cs.BitStruct(*subs))
            else:
                parts.append(sc)
        return cs.Struct(*parts)

    @property
    def length_construct(self) -> cs.Construct:
        return list(unwrap(self.construct)[0].subcons)[-2]

    def layout_for(self, overrides: dict[str, cs.Construct]) -> HeaderLayout:
        """The header layout with some fields redeclared (a message type's `header`)."""
        by_name = {leaf.name: leaf for leaf in self.layout.leaves if leaf.name}
        for key in overrides:
            if key not in by_name or key == "type":
                known = ", ".join(n for n in by_name if n != "type") or "none"
                raise ValueError(f"the framing has no header field {key!r} to redeclare (has: {known})")
        leaves: list[HeaderLeaf] = []
        for leaf in self.layout.leaves:
            if leaf.name in overrides:
                leaves += header_leaves(overrides[leaf.name], leaf.name, leaf)
            else:
                leaves.append(leaf)
        names = [leaf.name for leaf in leaves if leaf.name]
        if len(set(names)) != len(names):
            raise ValueError(f"header fields with the same name: {names}")
        return dataclasses.replace(self.layout, leaves=tuple(leaves))

    def _group(self, leaf: HeaderLeaf, data: Buffer, pos: int) -> int:
        if leaf.nbytes == 1:
            return data[pos + leaf.byte]
        chunk = bytes(data[pos + leaf.byte : pos + leaf.byte + leaf.nbytes])
        return int.from_bytes(chunk, "little" if leaf.order == "<" else "big")

    def type_code(self, data: Buffer, pos: int = 0) -> int:
        leaf = self._type
        return (self._group(leaf, data, pos) >> leaf.shift) & leaf.mask

    # -- the header

    def decode_header(self, layout: HeaderLayout, data: Buffer, pos: int = 0) -> dict[str, Any]:
        """The header fields of the message at `pos` (which holds at least the header);
        `DecodeError` when a constant does not match."""
        out: dict[str, Any] = {}
        for leaf in layout.leaves:
            value = (self._group(leaf, data, pos) >> leaf.shift) & leaf.mask
            if leaf.const is not None and value != leaf.const:
                raise DecodeError(
                    f"header field {leaf.name or leaf.part or 'bits'} is {value:#0{leaf.width + 2}b}"
                    f" ({value}); must be {leaf.const}",
                    offset=leaf.byte,
                    path=leaf.name or leaf.part or "header",
                    data=bytes(data[pos : pos + self.size + 16]),
                )
            if leaf.reported:
                out[leaf.name] = value != 0 if leaf.flag else value
        return out

    def encode_header(self, layout: HeaderLayout, code: int, values: Mapping[str, Any]) -> tuple[bytes, dict[str, Any]]:
        """`(header bytes, the header fields as decoding reads them)` for type `code`;
        `EncodeError` for a missing or out-of-range value."""
        groups = {byte: 0 for byte, _, _ in layout.groups}
        normal: dict[str, Any] = {}
        for leaf in layout.leaves:
            if leaf.name == "type":
                value: Any = code
            elif leaf.const is not None:
                value = values.get(leaf.name) if leaf.name else None
                if value is not None and value != leaf.const:
                    raise EncodeError(f"{leaf.name} must be {leaf.const}, got {value!r}", path=leaf.name)
                value = leaf.const
            elif not leaf.name:
                value = 0
            else:
                value = values.get(leaf.name)
                if value is None:
                    if not leaf.has_default:
                        raise EncodeError(f"missing header field {leaf.name!r}", path=leaf.name)
                    value = leaf.default
                if leaf.flag:
                    value = bool(value)
                normal[leaf.name] = value
            if not isinstance(value, int) or not 0 <= value <= leaf.mask:
                raise EncodeError(
                    f"{leaf.name or 'header'} {value!r} does not fit {leaf.width} bits (0..{leaf.mask})",
                    path=leaf.name or "header",
                )
            groups[leaf.byte] |= int(value) << leaf.shift
        head = b"".join(
            groups[byte].to_bytes(nbytes, "little" if order == "<" else "big") for byte, nbytes, order in layout.groups
        )
        return head, normal

    def encode_length(self, size: int) -> bytes:
        if size < 0 or size > self.max_payload:
            raise EncodeError(f"payload of {size} bytes exceeds max_payload={self.max_payload}", path="length")
        if self._length is not None:
            try:
                return self._length.pack(size)
            except struct.error as exc:
                raise EncodeError(f"length {size} does not fit the header ({exc})", path="length") from None
        if size > self.max_varint_value:
            raise EncodeError(f"length {size} does not fit a {self.varint}-byte varint", path="length")
        return encode_varint(size)

    def pack_message(self, layout: HeaderLayout, code: int, values: Mapping[str, Any], payload: bytes) -> bytes:
        head, _ = self.encode_header(layout, code, values)
        return head + self.encode_length(len(payload)) + payload

    def pack(self, code: int, payload: bytes) -> bytes:
        return self.pack_message(self.layout, code, {}, payload)

    def check_code(self, code: int) -> None:
        if not 0 <= code <= self._type.mask:
            raise ValueError(f"type code {code} does not fit the framing: the type is {self._type.width} bits")

    # -- splitting

    @overload
    def split(self, data: Buffer, pos: int = 0, final: Literal[True] = True) -> Split: ...
    @overload
    def split(self, data: Buffer, pos: int = 0, *, final: bool) -> Split | None: ...
    @overload
    def split(self, data: Buffer, pos: int, final: bool) -> Split | None: ...
    def split(self, data: Buffer, pos: int = 0, final: bool = True) -> Split | None:
        size = self.size
        available = len(data) - pos
        if available <= size:
            if not final:
                return None
            raise DecodeError(
                f"truncated header: {available} bytes, the header and length need at least {size + 1}",
                offset=available,
                path="header" if available < size else "length",
                data=bytes(data[pos:]),
            )
        code = self.type_code(data, pos)
        if self._length is not None:
            if available < size + self._length.size:
                if not final:
                    return None
                raise DecodeError(
                    f"truncated length: {available - size} of {self._length.size} bytes",
                    offset=available,
                    path="length",
                    data=bytes(data[pos:]),
                )
            (length,) = self._length.unpack_from(data, pos + size)
            start = pos + size + self._length.size
        else:
            try:
                length, start = read_varint(data, pos + size, self.varint)
            except VarIntError as exc:
                if exc.truncated and not final:
                    return None
                raise DecodeError(
                    exc.reason,
                    offset=size + exc.offset,
                    path="length",
                    data=bytes(data[pos : pos + size + 16]),
                ) from None
        if length > self.max_payload:
            raise DecodeError(
                f"declared payload length {length} is outside 0..{self.max_payload}",
                offset=size,
                path="length",
                data=bytes(data[pos : pos + size + 16]),
            )
        end = start + length
        if end > len(data):
            if not final:
                return None
            raise DecodeError(
                f"truncated payload: {len(data) - start} of {length} bytes",
                offset=len(data) - pos,
                path="payload",
                data=bytes(data[pos:]),
            )
        return code, start, end, end


def _header_spec(inner: cs.Struct) -> HeaderSpec | None:
    """HeaderSpec when the framing is `type`+`length` format fields then `Bytes(this.length)`."""
    subcons = list(inner.subcons)
    if len(subcons) != 3 or subcons[2].name != "payload":
        return None
    payload = unwrap(subcons[2])[0]
    if not isinstance(payload, cs.Bytes) or repr(payload.length) != "this['length']":
        return None
    codes: list[str] = []
    orders: set[str] = set()
    names: list[str] = []
    for sc in subcons[:2]:
        field = unwrap(sc)[0]
        if sc.name not in ("type", "length") or not isinstance(field, cs.FormatField):
            return None
        fmt: str = field.fmtstr
        if len(fmt) != 2 or fmt[0] not in "<>=" or fmt[1] not in "bBhHiIlLqQ":
            return None
        if fmt[1] not in "bB":
            orders.add(fmt[0])
        codes.append(fmt[1])
        names.append(sc.name)
    if len(orders) > 1:
        return None
    order = orders.pop() if orders else ">"
    return HeaderSpec(order, "".join(codes), tuple(names))
