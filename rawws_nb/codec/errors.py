"""Codec errors: `DecodeError` and `EncodeError`, with offset, field path and hex context.

Also how construct's own exceptions are read (`construct_error_reason`,
`construct_error_path`) and which ones mean "these values do not build"
(`CONSTRUCT_BUILD_ERRORS`), shared by the framing and the message codecs.
"""

from __future__ import annotations

from typing import Any

import construct as cs

from ..errors import RawWsError

__all__ = [
    "CONSTRUCT_BUILD_ERRORS",
    "CodecError",
    "DecodeError",
    "EncodeError",
    "construct_error_path",
    "construct_error_reason",
    "hex_excerpt",
]

#: What building values with construct raises when the values do not fit: its own
#: `ConstructError`s, and what it lets through from the values themselves: `KeyError` (a
#: missing key of a nested struct), `TypeError`/`ValueError` (a value of the wrong kind,
#: such as a list where a struct or an int goes), `AttributeError` (a struct with
#: optional fields given a non-mapping). Parsing bytes raises only `ConstructError`.
CONSTRUCT_BUILD_ERRORS: tuple[type[Exception], ...] = (
    cs.ConstructError,
    KeyError,
    TypeError,
    ValueError,
    AttributeError,
)


def hex_excerpt(data: bytes, offset: int | None, radius: int = 8) -> str:
    """Hex bytes around `offset`, with `|` marking the offset (`… 00 07 | 00 05 61 62`).

    Without an offset, the first `2 * radius` bytes. Empty data gives `(empty)`.
    """
    if not data:
        return "(empty)" if offset in (None, 0) else f"(empty) | @{offset}"
    if offset is None:
        head = data[: 2 * radius].hex(" ")
        return head + (" …" if len(data) > 2 * radius else "")
    at = max(0, min(offset, len(data)))
    lo, hi = max(0, at - radius), min(len(data), at + radius)
    before, after = data[lo:at].hex(" "), data[at:hi].hex(" ")
    text = " ".join(part for part in (before, "|", after) if part)
    if offset > len(data):
        text += f" (…{offset - len(data)} missing)"
    return ("… " if lo else "") + text + (" …" if hi < len(data) else "")


class CodecError(RawWsError, ValueError):
    """Base class: what went wrong (`reason`), where (`offset` into the message, field
    `path` such as `chat.text`), the message type when known, and a hex `excerpt`.

    A `rawws_nb.RawWsError`, and a `ValueError` (bytes or values that do not fit)."""

    def __init__(
        self,
        reason: str,
        *,
        offset: int | None = None,
        path: str = "",
        msg_type: str | None = None,
        data: bytes = b"",
    ) -> None:
        self.reason = reason
        self.offset = offset
        self.path = path
        self.msg_type = msg_type
        self.excerpt = hex_excerpt(bytes(data[:65536]), offset)
        # StreamDecoder: the `Message`s completed before the error (typed loosely: the
        # message module builds on this one).
        self.messages: list[Any] = []
        self.stream_offset: int | None = None  # StreamDecoder: where the message starts in the stream
        super().__init__(self._format())

    def _format(self) -> str:
        where = f"{self.path}: " if self.path else (f"{self.msg_type}: " if self.msg_type else "")
        at = f" at offset {self.offset}" if self.offset is not None else ""
        return f"{where}{self.reason}{at} [{self.excerpt}]"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (type(self), self.__dict__.copy(), str(self)))


def _restore(cls: type[CodecError], state: dict[str, Any], text: str) -> CodecError:
    err = cls.__new__(cls)
    Exception.__init__(err, text)
    err.__dict__.update(state)
    return err


class DecodeError(CodecError):
    """Bytes that do not form a valid message: truncated or over-long data, an unknown
    type code, a field that does not parse. `offset` counts from the start of the message."""


class EncodeError(CodecError):
    """Fields that cannot be encoded: unknown message name, missing or unknown field, a
    value that does not fit its construct. `offset` is where the field would start."""


def construct_error_reason(exc: BaseException) -> str:
    """The reason in an exception from construct, without construct's path line
    (`KeyError`s read "missing key 'x'"; other exceptions "TypeError: ...")."""
    if isinstance(exc, cs.ConstructError):
        text = str(exc)
        return text.split("\n", 1)[1] if exc.path is not None and "\n" in text else text
    if isinstance(exc, KeyError):
        return f"missing key {exc.args[0]!r}"
    return f"{type(exc).__name__}: {exc}"


def construct_error_path(exc: BaseException) -> str:
    """The field path of a `ConstructError` as dotted names (`origin.x`), or ""."""
    path = exc.path if isinstance(exc, cs.ConstructError) else None
    if not path:
        return ""
    parts = [p.strip() for p in str(path).split("->")]
    return ".".join(p for p in parts if p and not p.startswith("("))
