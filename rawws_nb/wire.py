"""The frame wire format: a fast writer, masking, and a sans-IO validating reader.

`encode_frame` builds any frame, valid or not (reserved opcodes, rsv bits, unmasked
client frames, oversized control frames): use it with `RawSession.send_raw` to test
peers. `FrameReader` turns received bytes into frames and reports the peer's protocol
violations as values (`Violation`), never as exceptions; it applies RFC 6455's checks
(the same ones wsproto applies: see tests/test_wire.py, which compares the two) plus
the size limits wsproto does not have.

The compiled fast path (`rawws_nb/_speedups.c`, built when a C compiler is there) masks
payloads and reads runs of the plainest frames (complete, final, unfragmented Text and
Binary frames without rsv bits): it never judges a frame, it stops at the first one of
any other shape and this module's Python reader takes it. `COMPILED` says whether it is
in use; `RAWWS_NB_PURE=1` in the environment turns it off, and `FrameReader(compiled=
False)` turns it off for one reader. The pure-Python path is the reference: the tests run
both and compare them.
"""

from __future__ import annotations

import codecs
import importlib
import os
import struct
from array import array
from dataclasses import dataclass
from typing import Any

import numpy as np

from .deflate import InflateError, Inflater, TooBig
from .frames import (
    COMPRESSED,
    FRAME_CLASSES,
    Frame,
    FrameType,
    header_code,
    is_valid_close_code,
    make_compressed_frame,
    make_frame,
)

__all__ = [
    "COMPILED",
    "CONTROL_MAX",
    "FrameReader",
    "Header",
    "RawFrame",
    "Violation",
    "apply_mask",
    "encode_frame",
    "frame_header",
    "header_bytes",
    "masked_frame",
    "parse_header",
    "split_frames",
]

_pack_h = struct.Struct("!BBH").pack
_pack_q = struct.Struct("!BBQ").pack
_unpack_h = struct.Struct("!H").unpack_from
_unpack_q = struct.Struct("!Q").unpack_from
_from_bytes = int.from_bytes
_NUMPY_MASK_THRESHOLD = 2048

CONTROL_MAX = 125

_read_simple: Any = None
_c_mask: Any = None
_c_masked_frame: Any = None
_PayloadBuffer: Any = None
_c_mask_in_place: Any = None
if not os.environ.get("RAWWS_NB_PURE"):
    try:
        # By name: an optional extension module (the import graph checks see no .py here).
        _c = importlib.import_module("rawws_nb._speedups")
    except ImportError:  # not built (no compiler): the pure-Python path does everything
        pass
    else:
        _c.configure(Frame.__dict__["data"], Frame.__dict__["fin"], Frame.__dict__["_ext"])
        _read_simple, _c_mask, _c_masked_frame = _c.read_simple, _c.mask, _c.masked_frame
        _PayloadBuffer, _c_mask_in_place = _c.PayloadBuffer, _c.mask_in_place
COMPILED: bool = _read_simple is not None

_BIG_FRAME = 65536  # pending frames from this size on are assembled without an extra copy


def apply_mask(
    data: bytes | bytearray | memoryview, mask: bytes, prefix: bytes = b"", *, compiled: bool = True
) -> bytes | memoryview:
    """XOR `data` with the 4-byte `mask` (RFC 6455 5.3), after `prefix` (e.g. the frame
    header) in the same buffer. Masking is its own inverse.

    The compiled fast path does it in one pass into one `bytes` (`compiled=False`: the
    pure-Python path). Small payloads use one big-int XOR; large ones use numpy on 8-byte words, writing
    into one buffer (prefix included) returned as a memoryview: no further copy.
    """
    if _c_mask is not None and compiled:
        return _c_mask(data, mask, prefix)  # type: ignore[no-any-return]
    n = len(data)
    if n < _NUMPY_MASK_THRESHOLD:
        if not n:
            return prefix
        key = (mask * ((n >> 2) + 1))[:n]
        masked = (_from_bytes(data, "little") ^ _from_bytes(key, "little")).to_bytes(n, "little")
        return prefix + masked if prefix else masked
    src = np.frombuffer(data, dtype=np.uint8)
    start = 16  # the payload starts 8-byte aligned; the prefix sits just before it
    buf = np.empty(start + n, dtype=np.uint8)
    out = buf[start:]
    n8 = n & ~7
    key64 = np.frombuffer(mask * 2, dtype=np.uint64)[0]
    np.bitwise_xor(src[:n8].view(np.uint64), key64, out=out[:n8].view(np.uint64))
    if n8 != n:
        out[n8:] = src[n8:] ^ np.frombuffer((mask * 2)[: n - n8], dtype=np.uint8)
    if prefix:
        buf[start - len(prefix) : start] = np.frombuffer(prefix, dtype=np.uint8)
    return buf.data[start - len(prefix) :]


def header_bytes(b0: int, length: int, mask: bytes | None = None) -> bytes:
    """The 2-14 byte header of a frame whose first byte is `b0` (fin, rsv bits, opcode),
    with the shortest length form and, when `mask` is given, the mask bit and key. The one
    place frame headers are built (the connection's writer calls it for every frame)."""
    if mask is None:
        if length < 126:
            return bytes((b0, length))
        if length < 65536:
            return _pack_h(b0, 126, length)
        return _pack_q(b0, 127, length)
    if length < 126:
        return bytes((b0, 0x80 | length)) + mask
    if length < 65536:
        return _pack_h(b0, 254, length) + mask
    return _pack_q(b0, 255, length) + mask


def masked_frame(b0: int, payload: bytes, keys: bytes, pos: int, *, compiled: bool = True) -> bytes:
    """A whole masked frame in one buffer: `header_bytes(b0, len(payload), key)` and the
    payload masked with `key = keys[pos:pos + 4]` (a client's writer takes its keys from
    a pool of random bytes). One C call when the fast path is built."""
    if _c_masked_frame is not None and compiled:
        return _c_masked_frame(b0, payload, keys, pos)  # type: ignore[no-any-return]
    key = keys[pos : pos + 4]
    return bytes(apply_mask(payload, key, header_bytes(b0, len(payload), key), compiled=False))


def frame_header(opcode: int, length: int, fin: bool = True, rsv: int = 0, mask: bytes | None = None) -> bytes:
    """The 2-14 byte header of a frame. `rsv` is a 3-bit int (rsv1 = 4)."""
    return header_bytes(header_code(opcode, fin, rsv), length, mask)


def encode_frame(
    opcode: int,
    payload: bytes | str = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool | bytes = True,
) -> bytes:
    """One complete frame as bytes, with no validation at all.

    `opcode` may be any 4-bit value (reserved ones included); `mask=True` draws a random
    key, `mask=b"abcd"` uses that key, `mask=False` sends the payload unmasked (a
    protocol violation from a client). Meant for `RawSession.send_raw`.
    """
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    if mask is True:
        key: bytes | None = os.urandom(4)
    elif mask is False or mask is None:
        key = None
    else:
        key = bytes(mask)
        if len(key) != 4:
            raise ValueError("a mask key is 4 bytes")
    body = bytes(apply_mask(payload, key)) if key is not None else bytes(payload)
    return frame_header(opcode, len(payload), fin, rsv, key) + body


@dataclass(frozen=True, slots=True)
class Violation:
    """A protocol violation by the peer, found by `FrameReader`.

    `code` is the close code RFC 6455 prescribes (1002 protocol error, 1007 invalid
    data, 1009 too big). The header fields describe the offending frame as far as it
    was read; `payload` is None when the frame was rejected from its header alone.
    """

    code: int
    reason: str
    opcode: int | None = None
    fin: bool | None = None
    rsv: int = 0
    length: int | None = None
    payload: bytes | None = None


@dataclass(frozen=True, slots=True)
class Header:
    """A frame header as read from the wire: first byte, payload length, header size,
    mask key (None when unmasked). `None` from `parse_header` means incomplete."""

    b0: int
    length: int
    size: int
    mask: bytes | None

    @property
    def opcode(self) -> int:
        return self.b0 & 0x0F

    @property
    def fin(self) -> bool:
        return bool(self.b0 & 0x80)

    @property
    def rsv(self) -> int:
        return (self.b0 >> 4) & 7


def parse_header(data: bytes | memoryview, pos: int = 0) -> Header | None:
    """Read the header of the frame at `data[pos:]` without judging it (any opcode, rsv,
    mask, non-minimal lengths), or None when the header is incomplete. The validating
    reader checks headers itself, inline, for speed; this is for everything else
    (incomplete frames, crafted bytes, captures)."""
    avail = len(data) - pos
    if avail < 2:
        return None
    b0, b1 = data[pos], data[pos + 1]
    length, size = b1 & 0x7F, 2
    if length == 126:
        if avail < 4:
            return None
        (length,), size = _unpack_h(data, pos + 2), 4
    elif length == 127:
        if avail < 10:
            return None
        (length,), size = _unpack_q(data, pos + 2), 10
    mask = None
    if b1 & 0x80:
        if avail < size + 4:
            return None
        mask = bytes(data[pos + size : pos + size + 4])
        size += 4
    return Header(b0, length, size, mask)


@dataclass(frozen=True, slots=True)
class RawFrame:
    """One frame found in crafted bytes (`split_frames`): `payload` unmasked, `error` set
    when the bytes end inside it (then `payload` is what there is of it)."""

    b0: int
    length: int
    payload: bytes
    error: str | None = None


def split_frames(data: bytes) -> list[RawFrame]:
    """Cut crafted bytes (what `send_raw` sends) into frames, without judging them; an
    incomplete last frame is reported with an `error`."""
    out: list[RawFrame] = []
    pos, end = 0, len(data)
    while pos < end:
        header = parse_header(data, pos)
        if header is None:
            out.append(RawFrame(data[pos], end - pos, data[pos:], "incomplete frame header"))
            break
        start = pos + header.size
        stop = start + header.length
        body = data[start:stop]
        if header.mask is not None:
            body = bytes(apply_mask(body, header.mask))
        if stop > end:
            out.append(RawFrame(header.b0, header.length, body, f"incomplete frame ({end - pos} bytes)"))
            break
        out.append(RawFrame(header.b0, header.length, body))
        pos = stop
    return out


class FrameReader:
    """Sans-IO frame parser with RFC 6455 validation and size limits.

    `feed(data)` returns `(frames, codes, violation)`: the frames completed by `data`
    in order, their `header_code`s (wire opcode, fin, length: a continuation frame is a
    `Frame.Text`/`Frame.Binary` whose code says opcode 0), and the first violation
    (after which the reader accepts nothing more), or None. Partial frames are kept
    until complete; one wire frame gives exactly one `Frame`.

    `client=True` parses what a server sends (frames must be unmasked); `client=False`
    parses what a client sends (frames must be masked). Checked: reserved opcodes,
    rsv bits (no extension is negotiated), control frames fragmented or over 125 bytes,
    continuation without a message and a new message inside one, UTF-8 of text
    messages (incrementally, across fragments, so a bad sequence is reported at the
    frame that contains it), Close payloads (length 1, invalid code, invalid UTF-8),
    and `max_frame_size`/`max_message_size` (checked from the header, before the
    payload is buffered).
    """

    __slots__ = (
        "_big",
        "_chunks",
        "_chunks_len",
        "_fast",
        "_held",
        "_held_pos",
        "_into",
        "_into_at",
        "_into_head",
        "_into_view",
        "_longest",
        "_msg_cls",
        "_msg_compressed",
        "_msg_size",
        "_need",
        "_pending_text",
        "_rsv_reject",
        "_utf8",
        "_validated",
        "client",
        "compressed",
        "controls",
        "failed",
        "inflater",
        "join_max",
        "joined",
        "limited",
        "max_frame_size",
        "max_message_size",
        "receiving_large",
        "tag",
    )

    def __init__(
        self,
        *,
        client: bool = True,
        max_frame_size: int | None = None,
        max_message_size: int | None = None,
        tag: int = 0,
        inflater: Inflater | None = None,
        compiled: bool = True,
    ) -> None:
        self.client = client
        # The compiled fast path for runs of plain frames (module docstring), if built.
        self._fast = _read_simple if compiled else None
        # For a recorder: when join_max >= 0, `joined` is, after each `feed`, the payloads
        # of all its frames in one buffer, if none is longer than join_max (else None).
        self.join_max = -1
        self.joined: bytearray | None = None
        self._longest = -1
        self._held: bytes | None = None  # a read whose rest a limit left unparsed ...
        self._held_pos = 0  # ... from here
        # permessage-deflate, when negotiated: rsv1 marks a compressed message's first frame.
        self.inflater = inflater
        self._rsv_reject = 0x70 if inflater is None else 0x30
        self._msg_compressed = False
        self.compressed = 0  # frames of compressed messages completed by the last `feed`
        self.tag = tag  # OR-ed into every header code (the recorder's direction bit)
        self.controls = 0  # control frames completed by the last `feed`
        self.limited = False  # the last `feed` stopped at its `limit` (more may be buffered)
        self.max_message_size = max_message_size
        self.max_frame_size = max_frame_size
        self._chunks: list[bytes] = []
        self._chunks_len = 0
        self._need = 2
        self._msg_cls: type[Frame] | None = None  # type of the fragmented message in progress
        self._msg_size = 0
        self._utf8: Any = None
        self._validated = 0  # payload bytes of the pending text frame already UTF-8-checked
        self._pending_text: tuple[int, bool] | None = None  # (opcode, fin) of a pending unmasked text frame
        self._big: tuple[Any, ...] | None = None  # header of a pending large frame (and its mask key)
        # Receiving into (`receive_buffer`): True while a large frame's payload is still to
        # come; once a front end asks for the buffer, the payload so far is in `_into`
        # (`_into_view` on it, the header in `_into_head`) instead of `_chunks`.
        self.receiving_large = False
        self._into: Any = None
        self._into_view: memoryview | None = None
        self._into_at = 0
        self._into_head = b""
        self.failed: Violation | None = None

    def use_inflater(self, inflater: Inflater | None) -> None:
        """Accept compressed messages (rsv1 on a data message's first frame) from now on,
        inflating them with `inflater` (permessage-deflate negotiated); None: refuse rsv1."""
        self.inflater = inflater
        self._rsv_reject = 0x70 if inflater is None else 0x30

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame (or not parsed yet)."""
        if self._into is not None:
            return len(self._into_head) + self._into_at
        return self._chunks_len

    # -- receiving a large frame's payload straight into its buffer --------------------

    def receive_buffer(self) -> memoryview:
        """Where the rest of a large frame's payload may be read straight into, while
        `receiving_large` is True (with the compiled fast path: a frame of 64 KiB or more
        whose header is read; a masked one is unmasked in place once complete): a writable view on exactly the
        bytes still to come, in the buffer the frame's `data` will be. Read into it
        (`recv_into`, asyncio's `BufferedProtocol`) and call `received_into(n)`: the
        payload then takes no copy after the socket's. `feed` may still be called
        instead; what was read into the buffer is kept."""
        if not self.receiving_large:
            raise RuntimeError("receive_buffer(): no large frame is being received")
        if self._into is None:
            assert self._big is not None
            head, length = self._big[2], self._big[3]
            chunk = b"".join(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
            self._into_head = chunk[:head]
            self._into = _PayloadBuffer(length)
            view = self._into_view = memoryview(self._into)
            self._into_at = len(chunk) - head
            view[: self._into_at] = memoryview(chunk)[head:]
            self._chunks = []
            self._chunks_len = 0
        assert self._into_view is not None
        return self._into_view[self._into_at :]

    def received_into(self, n: int, limit: int | None = None) -> tuple[list[Frame], array[int], Violation | None]:
        """`n` bytes were read into `receive_buffer()`: returns what `feed` returns (the
        large frame once its payload is complete, checked as `feed` checks it)."""
        self.joined = None
        self.controls = 0
        self.compressed = 0
        self.limited = False
        view = self._into_view
        if n <= 0 or view is None or self.failed is not None:
            return [], array("q"), None
        at = self._into_at
        if self._pending_text is not None:
            # Fail fast, as `feed` does: the UTF-8 of a text frame is checked as it arrives.
            v = self._validate_partial(bytes(view[at : at + n]), *self._pending_text)
            if v is not None:
                self._fail(v)
                return [], array("q"), v
        at = self._into_at = at + n
        assert self._big is not None
        b0, cls, _head, length, compressed, key = self._big
        if at < length:
            return [], array("q"), None
        self._big = None
        self.receiving_large = False
        buf = self._into
        if key is not None:
            _c_mask_in_place(view, key)  # a client's frame: unmasked where it lies
        view.release()
        self._into = self._into_view = None
        self._into_head = b""
        payload = buf.take()
        out: list[Frame] = []
        codes: array[int] = array("q")
        violation = self._parse(b"", out, codes, (b0, cls, payload, length, compressed), limit)
        if violation is not None:
            self._fail(violation)
        return out, codes, violation

    def _leave_into(self) -> None:
        """Back from the payload buffer to buffered chunks (bytes came through `feed`)."""
        view = self._into_view
        if view is not None:
            chunk = self._into_head + bytes(view[: self._into_at])
            view.release()
            self._into = self._into_view = None
            self._into_head = b""
            self._chunks = [chunk]
            self._chunks_len = len(chunk)

    def _fail(self, violation: Violation) -> None:
        self.failed = violation
        self._chunks = []
        self._chunks_len = 0
        self._big = None
        self.receiving_large = False
        if self._into_view is not None:
            self._into_view.release()
        self._into = self._into_view = None

    @property
    def in_message(self) -> bool:
        """True while a fragmented message is incomplete."""
        return self._msg_cls is not None

    def partial(self) -> Violation | None:
        """The incomplete frame still buffered (when the connection ended mid-frame),
        described as a 1006 `Violation`, or None when nothing is buffered."""
        self._leave_into()
        if not self._chunks_len:
            return None
        self._unhold()
        data = b"".join(self._chunks)
        header = parse_header(data)
        if header is None:
            b0 = data[0]
            why = f"connection dropped inside a frame header ({len(data)} byte{'s' if len(data) > 1 else ''})"
            if len(data) < 2:
                return Violation(1006, why, None, None, 0, None, data)
            return Violation(1006, why, b0 & 0x0F, bool(b0 & 0x80), (b0 >> 4) & 7, None, data)
        got = len(data) - header.size
        return Violation(
            1006,
            f"connection dropped in the middle of a frame ({got} of {header.length} payload bytes received)",
            header.opcode,
            header.fin,
            header.rsv,
            header.length,
            data[header.size :],
        )

    def feed(self, data: bytes, limit: int | None = None) -> tuple[list[Frame], array[int], Violation | None]:
        """Parse `data` (after what is buffered): at most `limit` frames (None: all); the
        rest stays buffered, unparsed, and `limited` says so: `feed(b"", n)` goes on.
        The codes come as an `array("q")`."""
        self.joined = None
        if self._into is not None:  # a large frame's payload was being read into its buffer
            if not data:
                self.controls = self.compressed = 0
                self.limited = False
                return [], array("q"), None
            self._leave_into()
        fast = self._fast
        size = len(data)
        out: list[Frame] = []
        codes: array[int] = array("q")
        start = 0
        if (
            fast is not None
            and size < _JOIN_MIN_BYTES
            and not self._chunks
            and self._held is None
            and self._msg_cls is None
            and self.failed is None
            and (limit is None or limit > 0)
        ):
            # A short read with nothing buffered (a request's answer): the compiled path
            # straight away; the general path below goes on from where it stopped, if it did.
            mf = self.max_frame_size
            mm = self.max_message_size
            pos, longest = fast(
                data,
                0,
                not self.client,
                -1 if mf is None else mf,
                -1 if mm is None else mm,
                _NO_LIMIT if limit is None else limit,
                _Text,
                _Binary,
                self.tag,
                out,
                codes,
                None,
                -1,
            )
            if pos == size or (limit is not None and len(out) >= limit and size - pos >= 2):
                self.controls = self.compressed = 0
                self._longest = longest
                self._pending_text = None
                self._need = 2
                if pos == size:
                    self.limited = False
                else:  # as `_parse` keeps the rest of a read that the limit stopped
                    self.limited = True
                    self._held, self._held_pos = data, pos
                    self._chunks_len = size - pos
                return out, codes, None
            start = pos  # nothing is buffered: the general path parses on from here
        elif self.failed is not None:
            return out, codes, None
        self.controls = 0
        self.compressed = 0
        self.limited = False
        if self._held is not None:
            # The rest of a read that a limit stopped: go on in it where the limit was
            # (no copy), unless more bytes came (then they are joined as usual).
            if data or (limit is not None and limit <= 0):
                self._unhold()
            else:
                data, start = self._held, self._held_pos
                self._held = None
                self._chunks_len = 0
        if limit is not None and limit <= 0 and self._pending_text is None and self._big is None:
            if data:
                self._chunks.append(data)
                self._chunks_len += len(data)
            self.limited = self._chunks_len >= 2
            return [], array("q"), None
        if self._chunks:
            if self._pending_text is not None:
                # Fail fast: check the UTF-8 of a text frame's payload as it arrives.
                room = self._need - self._chunks_len
                v = self._validate_partial(data if room >= len(data) else data[:room], *self._pending_text)
                if v is not None:
                    self._fail(v)
                    return [], array("q"), v
            self._chunks.append(data)
            self._chunks_len += len(data)
            if self._chunks_len < self._need:
                return [], array("q"), None
            first = None
            if self._big is not None:
                # A large frame is complete: join its payload straight out of the chunks
                # (one copy), without first joining the header and the next frame's bytes.
                b0, cls, head, length, compressed, key = self._big
                self._big = None
                self.receiving_large = False
                chunks = self._chunks
                last = chunks[-1]
                k = len(last) - (self._chunks_len - self._need)
                payload = b"".join([memoryview(chunks[0])[head:], *chunks[1:-1], memoryview(last)[:k]])
                if key is not None:
                    payload = bytes(apply_mask(payload, key))
                first = (b0, cls, payload, length, compressed)
                data = last[k:]
            else:
                data = b"".join(self._chunks)
            self._chunks = []
            self._chunks_len = 0
            violation = self._parse(data, out, codes, first, limit)
        else:
            violation = self._parse(data, out, codes, None, limit, start)
        if violation is not None:
            self._fail(violation)
        if self._longest > self.join_max:
            self.joined = None
        return out, codes, violation

    def _parse(
        self,
        data: bytes,
        out: list[Frame],
        codes: array[int],
        first: tuple[Any, ...] | None,
        limit: int | None,
        pos: int = 0,
    ) -> Violation | None:
        end = len(data)
        client = self.client
        max_frame = self.max_frame_size
        max_msg = self.max_message_size
        append = out.append
        code_append = codes.append
        tag = self.tag
        rsv_reject = self._rsv_reject
        inflater = self.inflater
        compressed = False
        fast = self._fast
        join_max = self.join_max
        # Joined only for reads that can hold a batch worth packing (a recorder packs 8+).
        self.joined = joined = bytearray() if join_max >= 0 and end - pos >= _JOIN_MIN_BYTES else None
        self._longest = -1
        if fast is not None:
            c_frame = -1 if max_frame is None else max_frame
            c_msg = -1 if max_msg is None else max_msg
            c_masked = not client
        while True:
            if first is not None:  # a large frame whose payload feed() assembled
                b0, cls, payload, length, compressed = first
                opcode = b0 & 0x0F
                fin = b0 & 0x80
                first = None
                self._pending_text = None
            else:
                if fast is not None and self._msg_cls is None and not self._validated:
                    # Plain frames, as many as there are in a row, in C (they need no judgement).
                    taken = len(out)
                    pos, took_longest = fast(
                        data,
                        pos,
                        c_masked,
                        c_frame,
                        c_msg,
                        _NO_LIMIT if limit is None else limit - taken,
                        _Text,
                        _Binary,
                        tag,
                        out,
                        codes,
                        joined if self._longest <= join_max else None,
                        join_max,
                    )
                    if len(out) != taken:
                        self._pending_text = None
                        if took_longest > self._longest:
                            self._longest = took_longest
                avail = end - pos
                if avail < 2:
                    break
                if limit is not None and len(out) >= limit:
                    self.limited = True
                    self._held, self._held_pos = data, pos  # kept as is: `feed(b"")` goes on here
                    self._chunks = []
                    self._chunks_len = end - pos
                    self._need = 2
                    return None
                b0 = data[pos]
                b1 = data[pos + 1]
                length = b1 & 0x7F
                opcode = b0 & 0x0F
                fin = b0 & 0x80
                masked = b1 & 0x80
                # Checks on the first two bytes: fail fast, before the rest of the header.
                if b0 & rsv_reject or (masked if client else not masked) or opcode in _BAD_OPCODES:
                    return self._header_violation(b0, b1)
                if opcode >= 8:
                    if not fin or length > CONTROL_MAX:
                        return self._header_violation(b0, b1)
                    cls = FRAME_CLASSES[opcode]
                elif opcode == 0:
                    cls = self._msg_cls
                    if cls is None:
                        return self._header_violation(b0, b1)
                else:
                    if self._msg_cls is not None:
                        return self._header_violation(b0, b1)
                    cls = FRAME_CLASSES[opcode]
                if inflater is not None:
                    if b0 & 0x40 and (opcode == 0 or opcode >= 8):
                        return self._header_violation(b0, b1)
                    compressed = bool(b0 & 0x40) if opcode else self._msg_compressed
                head = 2
                if length == 126:
                    if avail < 4:
                        self._keep(data, pos, 4)
                        return None
                    (length,) = _unpack_h(data, pos + 2)
                    head = 4
                    if length < 126:
                        return Violation(
                            1002, f"non-minimal 16-bit length encoding of {length}", opcode, bool(fin), 0, length
                        )
                elif length == 127:
                    if avail < 10:
                        self._keep(data, pos, 10)
                        return None
                    (length,) = _unpack_q(data, pos + 2)
                    head = 10
                    if length >> 63:
                        return Violation(
                            1002, "64-bit payload length has its most significant bit set", opcode, bool(fin), 0, length
                        )
                    if length < 65536:
                        return Violation(
                            1002, f"non-minimal 64-bit length encoding of {length}", opcode, bool(fin), 0, length
                        )
                if masked:
                    head += 4
                if opcode < 8:
                    if opcode:
                        self._msg_size = 0
                    if max_frame is not None and length > max_frame:
                        return Violation(
                            1009,
                            f"frame of {length} bytes exceeds max_frame_size={max_frame}",
                            opcode,
                            bool(fin),
                            0,
                            length,
                        )
                    if max_msg is not None and self._msg_size + length > max_msg:
                        size = f"{self._msg_size + length}{'' if fin else '+'}"
                        return Violation(
                            1009,
                            f"message of {size} bytes exceeds max_message_size={max_msg}",
                            opcode,
                            bool(fin),
                            0,
                            length,
                        )
                stop = pos + head + length
                if stop > end:
                    self._keep(data, pos, head + length)
                    if length >= _BIG_FRAME and end - pos >= head:  # the header whole, mask key included
                        key = data[pos + head - 4 : pos + head] if masked else None
                        self._big = (b0, cls, head, length, compressed, key)
                        # Read into its buffer only with the compiled path's PayloadBuffer:
                        # its pages are committed as they are written, so a peer's header
                        # alone commits no memory (a bytearray would be zero-filled at once).
                        self.receiving_large = self._fast is not None
                    if cls is _Text and not masked and not compressed:
                        self._pending_text = (opcode, fin != 0)
                        start = pos + head + self._validated
                        if end > start:
                            return self._validate_partial(data[start:end], opcode, fin != 0)
                    return None
                self._pending_text = None
                if masked:
                    payload = bytes(apply_mask(data[pos + head : stop], data[pos + head - 4 : pos + head]))
                else:
                    payload = data[pos + head : stop]
                pos = stop
            if opcode < 8:
                if compressed:
                    assert inflater is not None
                    room = None if max_msg is None else max_msg - self._msg_size
                    try:
                        payload = inflater.inflate(payload, fin != 0, room)
                    except TooBig:
                        return Violation(
                            1009,
                            f"message inflates to more than max_message_size={max_msg} bytes",
                            opcode,
                            bool(fin),
                            (b0 >> 4) & 7,
                            length,
                        )
                    except InflateError as exc:
                        return Violation(1002, str(exc), opcode, bool(fin), (b0 >> 4) & 7, length, payload)
                if cls is _Text and not (compressed and inflater is not None and inflater.raw):
                    if self._validated:
                        v = self._check_text(payload[self._validated :], opcode, bool(fin))
                        self._validated = 0
                        if v is not None:
                            return v
                    elif fin and self._utf8 is None:
                        # A whole text message in one frame (the common case): decode inline.
                        try:
                            payload.decode("utf-8")
                        except UnicodeDecodeError:
                            return self._check_text(payload, opcode, True)
                    else:
                        v = self._check_text(payload, opcode, bool(fin))
                        if v is not None:
                            return v
                if fin:
                    self._msg_cls = None
                else:
                    self._msg_cls = cls
                    self._msg_compressed = compressed
                    self._msg_size += len(payload) if compressed else length
                if compressed:
                    append(make_compressed_frame(cls, payload, fin != 0, bool(b0 & 0x40)))
                    if joined is not None:
                        self._join(joined, payload)
                    code_append(length << 16 | tag | COMPRESSED | b0)
                    self.compressed += 1
                else:
                    append(make_frame(cls, payload, fin != 0))
                    if joined is not None:
                        self._join(joined, payload)
                    code_append(length << 16 | tag | b0)  # = header_code(...): b0 is the low byte
            else:
                if opcode == 8:
                    v = _check_close(payload)
                    if v is not None:
                        return v
                append(make_frame(cls, payload))
                if joined is not None:
                    self._join(joined, payload)
                code_append(length << 16 | tag | b0)
                self.controls += 1
        self._keep(data, pos, 2)
        return None

    def _join(self, joined: bytearray, payload: bytes) -> None:
        n = len(payload)
        if n > self._longest:
            self._longest = n
        if self._longest <= self.join_max:
            joined += payload

    def _header_violation(self, b0: int, b1: int) -> Violation:
        """Describe what is wrong with a frame, judged from its first two bytes."""
        opcode, fin, rsv, masked = b0 & 0x0F, bool(b0 & 0x80), (b0 >> 4) & 7, bool(b1 & 0x80)
        short = b1 & 0x7F
        length = short if short < 126 else None
        if rsv and self.inflater is not None and not rsv & 3:
            what = "control frame" if opcode >= 8 else "continuation frame"
            reason = f"rsv1 set on a {what} (permessage-deflate marks only a message's first frame)"
        elif rsv & 3 and self.inflater is not None:
            reason = "rsv2/rsv3 set: no extension using them was negotiated"
        elif rsv:
            reason = "rsv bits set but no extension was negotiated"
        elif masked and self.client:
            reason = "the server sent a masked frame"
        elif not masked and not self.client:
            reason = "the client sent an unmasked frame"
        elif 3 <= opcode <= 7:
            reason = f"reserved data opcode 0x{opcode:x}"
        elif opcode > 0xA:
            reason = f"reserved control opcode 0x{opcode:x}"
        elif opcode >= 8 and not fin:
            reason = "fragmented control frame"
        elif opcode >= 8:
            reason = "control frame payload of 126 bytes or more (max 125)"
        elif opcode == 0:
            reason = "continuation frame without a message to continue"
        else:
            reason = "new data frame inside a fragmented message (expected continuation)"
        return Violation(1002, reason, opcode, fin, rsv, length)

    def _unhold(self) -> None:
        """Make the held rest of a read an ordinary buffered chunk."""
        if self._held is not None:
            self._chunks = [self._held[self._held_pos :]]
            self._held = None

    def _keep(self, data: bytes, pos: int, need: int) -> None:
        if pos < len(data):
            rest = data[pos:] if pos else data
            self._chunks = [rest]
            self._chunks_len = len(rest)
        self._need = need

    def _validate_partial(self, chunk: bytes, opcode: int, fin: bool) -> Violation | None:
        decoder = self._utf8
        if decoder is None:
            decoder = self._utf8 = _utf8_decoder()
        try:
            decoder.decode(chunk, False)
        except UnicodeDecodeError as exc:
            self._utf8 = None
            return Violation(
                1007,
                f"invalid UTF-8 in text message: {exc.reason} (before the frame was complete)",
                opcode,
                fin,
                0,
                None,
                chunk,
            )
        self._validated += len(chunk)
        return None

    def _check_text(self, payload: bytes, opcode: int, fin: bool) -> Violation | None:
        decoder = self._utf8
        try:
            if decoder is None:
                if fin:
                    payload.decode("utf-8")
                    return None
                decoder = self._utf8 = _utf8_decoder()
            decoder.decode(payload, fin)
        except UnicodeDecodeError as exc:
            self._utf8 = None
            return Violation(
                1007,
                f"invalid UTF-8 in text message: {exc.reason} at byte {exc.start}",
                opcode,
                fin,
                0,
                len(payload),
                payload,
            )
        if fin:
            self._utf8 = None
        return None


_utf8_decoder = codecs.getincrementaldecoder("utf-8")
_Text = FRAME_CLASSES[FrameType.TEXT]
_Binary = FRAME_CLASSES[FrameType.BINARY]
_NO_LIMIT = 1 << 62
_JOIN_MIN_BYTES = 128
_BAD_OPCODES = frozenset((3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF))


def _check_close(payload: bytes) -> Violation | None:
    n = len(payload)
    if n == 0:
        return None
    if n == 1:
        return Violation(1002, "close frame with a 1-byte payload", FrameType.CLOSE, True, 0, 1, payload)
    (code,) = _unpack_h(payload, 0)
    if not is_valid_close_code(code):
        return Violation(1002, f"close frame with invalid code {code}", FrameType.CLOSE, True, 0, n, payload)
    try:
        payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        return Violation(1007, "close reason is not valid UTF-8", FrameType.CLOSE, True, 0, n, payload)
    return None
