"""WebSocket frames as immutable values: `Frame`, `FrameType`, `CloseReason`.

Nothing here does I/O. A `Frame` is what one wire frame carries (opcode, fin, rsv
bits, payload); it is the same object whether it was received or is about to be sent.

A received continuation frame surfaces as the type of the message it continues
(`Frame.Text` or `Frame.Binary`) with its own wire `fin`; the wire opcode is kept by
the timeline. Sending `Frame.Text(..., fin=False)` then more `Frame.Text` frames puts
TEXT then CONTINUATION on the wire: the session, not the frame, picks the opcode.
"""

from __future__ import annotations

import builtins
import enum
import html
import struct
from typing import Any, ClassVar, TypeVar

__all__ = [
    "AUTOMATIC",
    "COMPRESSED",
    "FRAME_CLASSES",
    "RX",
    "TX",
    "CloseReason",
    "Frame",
    "FrameType",
    "header_code",
    "hexdump",
    "is_valid_close_code",
    "make_compressed_frame",
    "make_frame",
    "parse_hex",
]

# -- the header code: one frame's header in one int ---------------------------------------
# bits 0-3 wire opcode, 4-6 rsv3/rsv2/rsv1 (rsv1 = 0x40), 7 fin, 8 direction (RX), 9
# compressed (the frame belongs to a compressed message), 10 automatic (sent by the
# session on its own, opted in), 16 and up the payload length on the wire. The reader
# reports it per frame, the recorder stores it. The low byte is the frame's first wire
# byte, so `length << 16 | direction | b0` is the same code.
TX = 0
RX = 1 << 8
COMPRESSED = 1 << 9  # bit 9: a frame of a permessage-deflate compressed message
AUTOMATIC = 1 << 10  # bit 10: sent by the session itself (auto_pong, ping_interval), not by a call



class FrameType(enum.IntEnum):
    """Wire opcodes (RFC 6455 section 5.2)."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA

    @property
    def is_control(self) -> bool:
        return self >= 0x8


def header_code(
    opcode: int, fin: bool = True, rsv: int = 0, length: int = 0, direction: int = TX, compressed: bool = False
) -> int:
    """Pack a frame's header (see the comment above): `rsv` is the 3-bit int (rsv1 = 4),
    `direction` `TX` or `RX`."""
    flags = direction | (COMPRESSED if compressed else 0) | (0x80 if fin else 0) | (rsv & 7) << 4
    return length << 16 | flags | (opcode & 0x0F)


class _Codes(enum.IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    CANNOT_ACCEPT = 1003
    NOT_CONSISTENT = 1007
    VIOLATED_POLICY = 1008
    TOO_BIG = 1009
    NO_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013


# Codes that may appear in a Close frame on the wire (RFC 6455 7.4, IANA registry).
# 1004, 1005, 1006 and 1015 are reserved and must never be sent.
_SENDABLE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})


def is_valid_close_code(code: int) -> bool:
    """True when `code` may be carried by a Close frame on the wire."""
    return code in _SENDABLE_CODES or 3000 <= code <= 4999


class CloseReason:
    """A close code and message, as in Ktor's `CloseReason`.

    `code` is an int; well-known codes are in `CloseReason.Codes` (an `IntEnum`), and
    `known_reason` gives the enum member when there is one. 1005 (no status) and 1006
    (connection dropped) are never on the wire; they describe how a session ended.
    """

    __slots__ = ("code", "message")
    Codes: ClassVar[type[_Codes]] = _Codes
    code: int
    message: str

    def __init__(self, code: int = 1000, message: str = "") -> None:
        object.__setattr__(self, "code", int(code))
        object.__setattr__(self, "message", message)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("CloseReason is immutable")

    @property
    def known_reason(self) -> _Codes | None:
        try:
            return _Codes(self.code)
        except ValueError:
            return None

    def __eq__(self, other: object) -> bool:
        if isinstance(other, CloseReason):
            return self.code == other.code and self.message == other.message
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.code, self.message))

    def __repr__(self) -> str:
        known = self.known_reason
        name = f" ({known.name})" if known is not None else ""
        return f"CloseReason({self.code}{name}, {self.message!r})"

    def encode(self) -> bytes:
        """The Close frame payload: 2-byte big-endian code, then the UTF-8 message."""
        return struct.pack("!H", self.code) + self.message.encode("utf-8")


class Frame:
    """One WebSocket frame. Use the subclasses: `Frame.Text`, `Frame.Binary`,
    `Frame.Ping`, `Frame.Pong`, `Frame.Close`.

    Frames are immutable. `data` is always `bytes`. `fin` and the `rsv1..3` bits are
    sent exactly as given (set rsv bits only to test a peer: without a negotiated
    extension they are a protocol violation).
    """

    # The rsv bits and the compressed flag share one slot, always set (`_ext`: rsv in
    # bits 0-2, compressed in bit 3): reading `rsv` never raises, which made it cost as
    # much as the rest of a send.
    __slots__ = ("_ext", "data", "fin")
    __match_args__ = ("data", "fin")

    type: ClassVar[FrameType]
    _ext: int
    data: bytes
    fin: bool

    # Filled in below, after the subclasses exist.
    Text: ClassVar[builtins.type[Text]]
    Binary: ClassVar[builtins.type[Binary]]
    Ping: ClassVar[builtins.type[Ping]]
    Pong: ClassVar[builtins.type[Pong]]
    Close: ClassVar[builtins.type[Close]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if type(self) is Frame:
            raise TypeError("use Frame.Text, Frame.Binary, Frame.Ping, Frame.Pong or Frame.Close")
        raise NotImplementedError  # pragma: no cover - every subclass defines __init__

    def _set(self, data: bytes, fin: bool, rsv1: bool, rsv2: bool, rsv3: bool) -> None:
        _set_data(self, data)
        _set_fin(self, fin)
        _set_ext(self, rsv1 << 2 | rsv2 << 1 | rsv3)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} frames are immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} frames are immutable")

    @property
    def opcode(self) -> FrameType:
        """The frame's type (a continuation frame reports its message's type)."""
        return self.type

    @property
    def compressed(self) -> bool:
        """True for a received frame of a compressed (permessage-deflate) message: `data`
        is inflated, `rsv1` is as on the wire (set on the message's first frame only)."""
        return self._ext > 7

    @property
    def rsv(self) -> int:
        """The three rsv bits as an int (rsv1 = 4, rsv2 = 2, rsv3 = 1)."""
        return self._ext & 7

    @property
    def rsv1(self) -> bool:
        return bool(self.rsv & 4)

    @property
    def rsv2(self) -> bool:
        return bool(self.rsv & 2)

    @property
    def rsv3(self) -> bool:
        return bool(self.rsv & 1)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Frame):
            return (
                type(self) is type(other)
                and self.data == other.data
                and self.fin == other.fin
                and self.rsv == other.rsv
            )
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.type, self.data, self.fin, self.rsv))

    def __len__(self) -> int:
        return len(self.data)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.data, self.fin, self.rsv1, self.rsv2, self.rsv3, self.compressed))

    def _preview(self) -> str:
        return _preview_bytes(self.data)

    def __repr__(self) -> str:
        flags = []
        if not self.fin:
            flags.append("fin=False")
        for bit in ("rsv1", "rsv2", "rsv3"):
            if getattr(self, bit):
                flags.append(f"{bit}=True")
        extra = ", " + ", ".join(flags) if flags else ""
        preview = self._preview()
        sep = " " if preview else ""
        return f"{self.type.name}{sep}{preview} [{len(self.data)} bytes{extra}]"

    __str__ = __repr__

    def _repr_html_(self) -> str:
        return (
            "<div class='rawws-frame'><code>"
            + html.escape(repr(self))
            + "</code>"
            + (f"<pre style='margin:2px 0'>{html.escape(hexdump(self.data))}</pre>" if self.data else "")
            + "</div>"
        )


F = TypeVar("F", bound=Frame)


def _rebuild(
    cls: type[Frame], data: bytes, fin: bool, rsv1: bool, rsv2: bool, rsv3: bool, compressed: bool = False
) -> Frame:
    frame = make_frame(cls, data, fin, rsv1, rsv2, rsv3)
    if compressed:
        _set_ext(frame, frame.rsv | _EXT_COMPRESSED)
    return frame


_EXT_COMPRESSED = 8
_set_data = Frame.__dict__["data"].__set__
_set_fin = Frame.__dict__["fin"].__set__
_set_ext = Frame.__dict__["_ext"].__set__


def make_frame(
    cls: type[F], data: bytes, fin: bool = True, rsv1: bool = False, rsv2: bool = False, rsv3: bool = False
) -> F:
    """Build a frame of class `cls` from `bytes` without checking or converting anything:
    the fast path of readers (the core, the capture reader), which already did."""
    frame = object.__new__(cls)
    _set_data(frame, data)
    _set_fin(frame, fin)
    _set_ext(frame, rsv1 << 2 | rsv2 << 1 | rsv3)
    return frame


def make_compressed_frame(cls: type[F], data: bytes, fin: bool, rsv1: bool) -> F:
    """`make_frame` for a frame of a compressed message: `data` inflated, `rsv1` as on
    the wire, `compressed` True."""
    frame = object.__new__(cls)
    _set_data(frame, data)
    _set_fin(frame, fin)
    _set_ext(frame, (4 if rsv1 else 0) | _EXT_COMPRESSED)
    return frame


def _as_bytes(data: Any, what: str) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"{what} payload must be bytes or str, not {type(data).__name__}")


def _split_args(args: tuple[Any, ...], data: Any, fin: bool | None) -> tuple[Any, bool]:
    """Accept both `Frame.Binary(b"..", fin=True)` and Ktor's `Frame.Binary(True, b"..")`."""
    if len(args) > 2:
        raise TypeError("expected at most two positional arguments: data and fin (or fin and data)")
    if args and isinstance(args[0], bool):
        if fin is not None:
            raise TypeError("fin given twice")
        fin = args[0]
        args = args[1:]
    elif len(args) == 2:
        if fin is not None:
            raise TypeError("fin given twice")
        if not isinstance(args[1], bool):
            raise TypeError("second positional argument must be fin (a bool)")
        fin = args[1]
        args = args[:1]
    if args:
        if data is not None:
            raise TypeError("data given twice")
        data = args[0]
    return (b"" if data is None else data), (True if fin is None else fin)


class _DataFrame(Frame):
    __slots__ = ()

    def __init__(
        self,
        *args: Any,
        data: Any = None,
        fin: bool | None = None,
        rsv1: bool = False,
        rsv2: bool = False,
        rsv3: bool = False,
    ) -> None:
        payload, fin_ = _split_args(args, data, fin)
        self._set(_as_bytes(payload, self.type.name), bool(fin_), bool(rsv1), bool(rsv2), bool(rsv3))


class Text(_DataFrame):
    """A text frame. `data` is the UTF-8 payload; a fragment may end mid-character."""

    __slots__ = ()
    type = FrameType.TEXT

    def read_text(self) -> str:
        """The payload decoded as UTF-8 (strict)."""
        return self.data.decode("utf-8")

    def _preview(self) -> str:
        text = self.data[:60].decode("utf-8", "replace")
        return repr(text if len(self.data) <= 60 else text + "…")


class Binary(_DataFrame):
    """A binary frame."""

    __slots__ = ()
    type = FrameType.BINARY


class _ControlFrame(Frame):
    __slots__ = ()

    def __init__(
        self,
        data: Any = b"",
        *,
        fin: bool = True,
        rsv1: bool = False,
        rsv2: bool = False,
        rsv3: bool = False,
    ) -> None:
        self._set(_as_bytes(data, self.type.name), bool(fin), bool(rsv1), bool(rsv2), bool(rsv3))


class Ping(_ControlFrame):
    """A ping. Nothing answers it automatically: the peer decides, and so do you."""

    __slots__ = ()
    type = FrameType.PING


class Pong(_ControlFrame):
    """A pong. Send `Frame.Pong(ping.data)` to answer a ping."""

    __slots__ = ()
    type = FrameType.PONG


class Close(_ControlFrame):
    """A close frame: `Frame.Close(CloseReason(...))`, `Frame.Close()` (no code), or
    `Frame.Close(b"raw payload")`. Nothing replies to a received Close automatically."""

    __slots__ = ()
    type = FrameType.CLOSE

    def __init__(
        self,
        reason: CloseReason | bytes | str | None = None,
        *,
        fin: bool = True,
        rsv1: bool = False,
        rsv2: bool = False,
        rsv3: bool = False,
    ) -> None:
        if reason is None:
            payload = b""
        elif isinstance(reason, CloseReason):
            payload = reason.encode()
        else:
            payload = _as_bytes(reason, "CLOSE")
        self._set(payload, bool(fin), bool(rsv1), bool(rsv2), bool(rsv3))

    def read_reason(self) -> CloseReason | None:
        """The code and message, or None for an empty Close (no status code).

        A payload of one byte, or a message that is not valid UTF-8, is read leniently
        (the session's reader already rejected such frames from a peer).
        """
        if len(self.data) < 2:
            return None
        (code,) = struct.unpack_from("!H", self.data)
        return CloseReason(code, self.data[2:].decode("utf-8", "replace"))

    def _preview(self) -> str:
        reason = self.read_reason()
        if reason is None:
            return ""
        known = reason.known_reason
        name = f" ({known.name})" if known is not None else ""
        return f"{reason.code}{name} {reason.message!r}"


Frame.Text = Text
Frame.Binary = Binary
Frame.Ping = Ping
Frame.Pong = Pong
Frame.Close = Close

# The one opcode -> class map (a continuation has no class of its own: it takes its message's).
FRAME_CLASSES: dict[int, type[Frame]] = {
    FrameType.TEXT: Text,
    FrameType.BINARY: Binary,
    FrameType.PING: Ping,
    FrameType.PONG: Pong,
    FrameType.CLOSE: Close,
}


def _preview_bytes(data: bytes, limit: int = 24) -> str:
    """Printable ASCII payloads as a quoted string, others as hex (websockets' style)."""
    if not data:
        return ""
    head = data[:limit]
    if all(32 <= b < 127 for b in head):
        text = head.decode("ascii")
        return repr(text if len(data) <= limit else text + "…")
    hexed = head.hex(" ")
    return hexed + (" …" if len(data) > limit else "")


def parse_hex(text: str) -> bytes:
    """Hex digits as bytes (whitespace, colons and a leading 0x allowed). ValueError says
    what is wrong: "'z' at position 0 is not a hex digit", "odd number of hex digits (3)"."""
    digits = "".join(text.split()).replace(":", "")
    if digits[:2].lower() == "0x":
        digits = digits[2:]
    for i, ch in enumerate(digits):
        if ch not in "0123456789abcdefABCDEF":
            raise ValueError(f"{ch!r} at position {i} is not a hex digit")
    if len(digits) % 2:
        raise ValueError(f"odd number of hex digits ({len(digits)})")
    return bytes.fromhex(digits)


def hexdump(
    data: bytes, width: int = 16, limit: int | None = 4096, *, indent: int = 0, bars: bool = False
) -> str:
    """A classic offset / hex / ASCII dump of `data` (first `limit` bytes; None: all),
    each line indented by `indent` spaces, the ASCII column between `|` with `bars`."""
    shown = data if limit is None else data[:limit]
    pad = " " * indent
    lines = []
    for offset in range(0, len(shown), width):
        chunk = shown[offset : offset + width]
        hexed = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        if bars:
            text = f"|{text}|"
        lines.append(f"{pad}{offset:08x}  {hexed:<{width * 3 - 1}}  {text}")
    if limit is not None and len(data) > limit:
        lines.append(f"… {len(data) - limit} more bytes")
    return "\n".join(lines)
