"""Variable-length integers with a maximum size: `BoundedVarInt(max_bytes)`.

The encoding is construct's `VarInt` (base 128, least significant group first, the high
bit of each byte says "more follows"), which is also MQTT's Remaining Length. construct's
`VarInt` reads any number of bytes; `BoundedVarInt(4)` stops at four (MQTT's limit) and
says so, and refuses to build values that need more. Framings with a varint length use
`read_varint`/`encode_varint` on their fast paths (docs/architecture.md, "The codec's wire
conventions").
"""

from __future__ import annotations

from typing import Any

import construct as cs

__all__ = ["BoundedVarInt", "VarIntError", "encode_varint", "read_varint", "varint_max"]


class VarIntError(Exception):
    """A varint that is too long (`too_long`) or cut short (`truncated`); `offset` is
    where reading stopped, relative to the varint's first byte."""

    def __init__(self, reason: str, offset: int, *, truncated: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.offset = offset
        self.truncated = truncated


def varint_max(max_bytes: int) -> int:
    """The largest value `max_bytes` bytes hold (268,435,455 for 4)."""
    return (1 << (7 * max_bytes)) - 1


def read_varint(data: bytes | bytearray, pos: int, max_bytes: int | None) -> tuple[int, int]:
    """`(value, position after it)` of the varint at `pos`. Raises `VarIntError` when it
    needs more than `max_bytes` bytes (as soon as the last allowed byte says "more
    follows", without waiting for it) or when `data` ends inside it."""
    value = 0
    shift = 0
    at = pos
    end = len(data)
    while True:
        if max_bytes is not None and at - pos >= max_bytes:
            raise VarIntError(f"varint longer than {max_bytes} bytes", at - pos, truncated=False)
        if at >= end:
            raise VarIntError(f"truncated varint: {at - pos} bytes, more announced", at - pos, truncated=True)
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def encode_varint(value: int) -> bytes:
    """The shortest varint for `value` (>= 0)."""
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


class BoundedVarInt(cs.Construct):  # type: ignore[misc]  # construct has no type information
    """construct's `VarInt` encoding, at most `max_bytes` bytes long (MQTT: 4).

    Parsing a longer varint raises construct's `IntegerError` ("varint longer than 4
    bytes"); a value above `varint_max(max_bytes)` does not build.
    """

    def __init__(self, max_bytes: int) -> None:
        super().__init__()
        if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 1:
            raise ValueError(f"max_bytes must be a positive int, got {max_bytes!r}")
        self.max_bytes = max_bytes
        self.max_value = varint_max(max_bytes)

    def _parse(self, stream: Any, context: Any, path: str) -> int:
        value = 0
        for i in range(self.max_bytes):
            byte: int = cs.stream_read(stream, 1, path)[0]
            value |= (byte & 0x7F) << (7 * i)
            if byte < 0x80:
                return value
        raise cs.IntegerError(f"varint longer than {self.max_bytes} bytes", path=path)

    def _build(self, obj: Any, stream: Any, context: Any, path: str) -> int:
        if not isinstance(obj, int) or isinstance(obj, bool):
            raise cs.IntegerError(f"value {obj!r} is not an integer", path=path)
        if obj < 0 or obj > self.max_value:
            raise cs.IntegerError(
                f"value {obj} is outside 0..{self.max_value} ({self.max_bytes}-byte varint)", path=path
            )
        data = encode_varint(obj)
        cs.stream_write(stream, data, len(data), path)
        return obj

    def _sizeof(self, context: Any, path: str) -> int:
        raise cs.SizeofError("a varint has no fixed size", path=path)

    def __repr__(self) -> str:
        return f"BoundedVarInt({self.max_bytes})"
