"""Framing: where a message's type code and payload sit in the bytes.

The default (docs/architecture.md, "The codec's wire conventions") is
`[type:1][length:4 big-endian][payload:length]`, spelled as construct:
`"type"/Int8ub, "length"/Int32ub, "payload"/Bytes(this.length)`. Any `Struct` with a
`type` field and a `payload` bytes field works (a varint length, a 2-byte type, a magic
prefix...). Framings made of fixed-size `type`/`length` fields followed by
`Bytes(this.length)` use a `struct` fast path; others are parsed by construct.
"""

from __future__ import annotations

import io
import struct
from typing import Literal, overload

import construct as cs

from .errors import CONSTRUCT_BUILD_ERRORS, DecodeError, EncodeError, construct_error_path, construct_error_reason
from .fastpath import HeaderSpec
from .fields import unwrap

__all__ = ["DEFAULT_FRAMING", "ConstructFraming", "Framing", "HeaderFraming", "Split", "make_framing"]

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
    if "type" not in names or "payload" not in names:
        raise ValueError("framing needs a `type` field and a `payload` field")
    header = _header_spec(inner)
    if header is not None:
        return HeaderFraming(construct, header, max_payload)
    return ConstructFraming(construct, max_payload)


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
