"""The frame recorder: a header code per frame on the hot path, a DataFrame on demand.

Cost. The session records a batch of received frames with `stage_rx` (a few C-level
`extend`s per batch: the reader already computed each frame's header code, and joined
small frames' payloads into one buffer) and each sent frame with `stage_tx` (a header
code and the payload appended; a timestamp only for the first frame of an event-loop
turn). Both take header codes as `rawws_nb.frames.header_code` packs them. Message
numbers are derived, vectorised, when rows are materialised (`_flush`, on any read and
every 32,768 frames) into compact chunks (`_Chunk`: per row 2 bytes of header bits and
2, 4 or 8 of length; timestamps once per run, as staged; message numbers only where
continuation frames make them irregular), read back as `ROW_DTYPE` rows (timestamp,
header bits, full length, message). Close codes, text previews and codec fields are
derived when the DataFrame is built; errors and codec results live in small side dicts.
`add`/`add_error` record one explicit row (errors, imports).

Importing this module loads numpy but not pandas or pyarrow: those are imported by the
methods that build DataFrames. The codec is not imported either: `set_decoder` takes a
function that decodes one Binary message.

Memory (measured by `python -m benchmarks.bench_timeline`: 58 bytes per frame plus its
payload for a row added with `add`, 25 for the row and the list slot alone; target <=
120). With the compiled stagers, a frame whose payload is at most 512 bytes and kept
whole (the common case: sent and received messages alike) has its payload copied into
the open packed batch (one buffer for many rows, growing by doubling up to 64 KiB), so
it costs its payload bytes and 4 bytes of row (plus 8 when it has a timestamp of its
own), and the frame's own payload object is freed as soon as the application drops it;
a received flood of small frames keeps about 21 bytes per frame, payload included.
Otherwise (`add`, the pure-Python stagers, a longer payload) the payload object is the
frame's own `bytes` (shared with the frame delivered to `incoming`, not copied) unless it
is longer than `payload_cap`, when a capped copy is kept instead: a `bytes` object costs
33 bytes of header, so such a frame costs its list slot (8), its row and 33 bytes (plus
allocator rounding) plus its kept payload.

Bounded memory. The recorder keeps at most `capacity` frames (the oldest are dropped
first, an eighth of the capacity at a time, and counted in `dropped`) and at most
`payload_cap` bytes of each data frame's payload (the full `length` is still recorded;
control frames, at most 125 bytes from a valid peer, are always kept whole). The bound
is about `capacity * (60 + min(payload, payload_cap))` bytes: with the defaults
(500,000 frames, 1,024 bytes) at worst about 540 MB (every frame 1 KiB or more), and
under 80 MB for a session of small frames (under 100 bytes): it fits a laptop;
`session.timeline_dropped` says when the ring has wrapped. Raise `timeline_capacity` /
`payload_cap` per session for more.

The DataFrame (`to_dataframe`, `tail`) is built from whole columns (numpy and Arrow, no
Python loop per row except for the rare rows that need one): about 0.12 s for a million
frames on the benchmark machine (target <= 0.5 s).
"""

from __future__ import annotations

import importlib
import os
import struct
import time
import weakref
from array import array
from bisect import bisect_right
from collections.abc import Callable, Sequence
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias, cast

import numpy as np

from ..frames import AUTOMATIC, COMPRESSED, RX, TX, Frame
from ._plain import DIRECTIONS, OPCODE_NAMES, TEXT_PREVIEW, last_value_lookup

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DEFAULT_CAPACITY",
    "DEFAULT_PAYLOAD_CAP",
    "RX",
    "TX",
    "Decoded",
    "Decoder",
    "RecentFrame",
    "Recorder",
    "codec_decoder",
    "decode_safely",
]

DEFAULT_CAPACITY = 500_000  # frames; see the module docstring for the memory bound
DEFAULT_PAYLOAD_CAP = 1024  # bytes kept per payload
# TX and RX (the direction bit of a header code) are `rawws_nb.frames`' own, re-exported here.

_LOOKBACK = 1 << 16  # rows per step when looking for the first frame of a message before a view

# What a decoder gives for one whole Binary message: (msg_type, fields, error).
Decoded: TypeAlias = tuple[str | None, dict[str, Any] | None, str | None]
Decoder: TypeAlias = Callable[[bytes], Decoded]


def decode_safely(decode: Decoder, data: bytes) -> Decoded:
    """`decode(data)`, with anything it raises (or a result that is not a triple) as the
    error text (`"TypeName: message"`): a decoder must never break a timeline."""
    try:
        # Typed loosely on purpose: a decoder may not keep to its signature.
        result: tuple[object, object, object] = decode(data)
        msg_type, fields, error = result
    except Exception as exc:
        return None, None, f"{type(exc).__name__}: {exc}"
    # The string columns need strings; `fields` (an object column) takes any value.
    return (
        None if msg_type is None else str(msg_type),
        cast("dict[str, Any] | None", fields),
        None if error is None else str(error),
    )


def codec_decoder(protocol: Any, version: Any = None) -> Decoder:
    """A `Decoder` over a codec used duck-typed (nothing here imports `rawws_nb.codec`):
    the protocol's own `timeline_decoder(version)` when it has one (a `rawws_nb.codec`
    protocol does: negotiation frames and several messages per frame recognised); else
    plain decoding: `protocol.decode(data)` (or `protocol.for_version(version).decode(data)`
    when `version` is given) returns a message with `name` and `fields`, and what it
    raises becomes the error text, with the exception's `msg_type` when it has one."""
    make = getattr(protocol, "timeline_decoder", None)
    if callable(make):
        made: Decoder = make(version)
        return made

    def decode(data: bytes) -> Decoded:
        codec = protocol if version is None else protocol.for_version(version)
        try:
            message = codec.decode(data)
        except Exception as exc:
            msg_type = getattr(exc, "msg_type", None)
            return msg_type if isinstance(msg_type, str) else None, None, f"{type(exc).__name__}: {exc}"
        return str(message.name), message.fields, None

    return decode


# One recorded frame's fixed-size part, packed: timestamp, code, full length, message.
_ROW = struct.Struct("<qHqq")
_PACK = _ROW.pack
ROW_SIZE = _ROW.size  # 26 bytes
ROW_DTYPE = np.dtype([("t", "<i8"), ("code", "<u2"), ("len", "<i8"), ("msg", "<i8")])
assert ROW_DTYPE.itemsize == ROW_SIZE


_DATA = attrgetter("data")


def _split_payloads_py(blob: Any, sizes: np.ndarray, pos: int) -> list[bytes]:
    """The payloads packed one after the other in `blob` from byte `pos`, one per length
    in `sizes` (`_speedups.split_payloads` is the compiled one)."""
    out: list[bytes] = []
    for n in sizes.tolist():
        out.append(bytes(blob[pos : pos + n]))
        pos += n
    return out


# The flush in C when rawws_nb's compiled fast path is built (the numpy code below is the
# reference and the fallback; RAWWS_NB_PURE=1 or Recorder(compiled=False) uses it).
_c_flush: Any = None
_c_stage: Any = None  # ... and the staging of one frame (`Recorder._stage_tx` is the reference)
_c_stagers: Any = None  # ... both bound to a recorder (`Recorder._stage_rx` is the batch's reference)
_split_payloads: Callable[[Any, np.ndarray, int], list[bytes]] = _split_payloads_py  # a packed batch's payloads
_Q = struct.Struct("=q").pack  # one staged int64, native order (as the C stagers append them)
# The payload store's lists hold only payloads (bytes, views) and ints: they can be in no
# reference cycle, so, when compiled, they are made untracked by the garbage collector
# (which would otherwise walk every recorded payload in each collection that sees them).
_payload_list: Callable[[], list[Any]] = list
if not os.environ.get("RAWWS_NB_PURE"):
    try:
        _speedups = importlib.import_module("rawws_nb._speedups")
        _c_flush, _c_stage, _c_stagers = _speedups.flush_rows, _speedups.stage, _speedups.stagers
        _payload_list = _speedups.untracked_list
        _split_payloads = _speedups.split_payloads
    except (ImportError, AttributeError):
        _c_flush = _c_stage = _c_stagers = None
_EPOCH_START = itemgetter(0)
_time_ns = time.time_ns


_U32_MAX = 2**32 - 1
_I32 = np.iinfo(np.int32)


class _Chunk:
    """Rows kept compact (what a recorded flood of small frames keeps per frame, besides
    its payload, is 4 bytes): per row its code (`u2`) and length (`u2`, `u4` or `i8`: the
    narrowest that fits them all); message numbers as offsets from `msg_base` (`i4`, or
    `i8`), or none at all when the rows are messages `msg_base`, `msg_base + 1`, ... (no
    continuation frames); timestamps once per run of rows that share one (`t_at`: each
    run's first row, from 0; `t_val`: its timestamp), as the hot path stamps them (one
    per read, one per loop turn of sends), or one per row (`t_at` None) where runs would
    not be shorter (explicit rows). Read back as `ROW_DTYPE` columns."""

    __slots__ = ("code", "length", "msg", "msg_base", "t_at", "t_val")

    def __init__(
        self,
        t_at: np.ndarray | None,
        t_val: np.ndarray,
        code: np.ndarray,
        length: np.ndarray,
        msg_base: int,
        msg: np.ndarray | None,
    ) -> None:
        self.t_at = t_at
        self.t_val = t_val
        self.code = code
        self.length = length
        self.msg_base = msg_base
        self.msg = msg

    @classmethod
    def build(cls, t: np.ndarray, code: np.ndarray, length: np.ndarray, msg: np.ndarray) -> _Chunk:
        """A chunk of rows given as full `int64` columns (`t` per row)."""
        n = len(code)
        at = np.flatnonzero(np.diff(t)) + 1 if n > 1 else np.empty(0, dtype=np.int64)
        if 2 * (len(at) + 1) > n:  # runs would take more room than a timestamp per row
            return cls.compact(None, t.astype(np.int64), code, length, msg)
        t_at = np.concatenate(([0], at)).astype(np.int64)
        return cls.compact(t_at, t[t_at], code, length, msg)

    @classmethod
    def compact(
        cls, t_at: np.ndarray | None, t_val: np.ndarray, code: np.ndarray, length: np.ndarray, msg: np.ndarray
    ) -> _Chunk:
        """A chunk from timestamp runs and full columns, narrowed where they fit."""
        low, high = (int(length.min()), int(length.max())) if len(length) else (0, 0)
        width = np.uint16 if 0 <= low and high <= 0xFFFF else np.uint32 if 0 <= low and high <= _U32_MAX else np.int64
        base = int(msg[0]) if len(msg) else 0
        off: np.ndarray | None = msg.astype(np.int64) - base
        assert off is not None
        if not np.array_equal(off, np.arange(len(off))):
            if int(off.min()) >= _I32.min and int(off.max()) <= _I32.max:
                off = off.astype(np.int32)
        else:
            off = None  # messages base, base + 1, ...
        return cls(t_at, t_val, code.astype(np.uint16), length.astype(width), base, off)

    def __len__(self) -> int:
        return len(self.code)

    def cut(self, k: int) -> _Chunk:
        """The chunk without its first `k` rows (views, no copy of the columns)."""
        msg = self.msg
        msg_base = self.msg_base + k if msg is None else self.msg_base
        t_at, t_val = self.t_at, self.t_val[k:]
        if t_at is not None:
            j = int(np.searchsorted(t_at, k, side="right")) - 1
            t_at, t_val = t_at[j:] - k, self.t_val[j:]
            t_at[0] = 0
        return _Chunk(t_at, t_val, self.code[k:], self.length[k:], msg_base, None if msg is None else msg[k:])

    def column(self, name: str, a: int, b: int) -> np.ndarray:
        """Rows `a:b` of column `name` (`t`, `code`, `len`, `msg`), as `ROW_DTYPE` has it."""
        if name == "code":
            return self.code[a:b]
        if name == "len":
            return self.length[a:b].astype(np.int64)
        if name == "msg":
            if self.msg is None:
                return np.arange(self.msg_base + a, self.msg_base + b, dtype=np.int64)
            return self.msg[a:b].astype(np.int64) + self.msg_base
        if self.t_at is None:
            return self.t_val[a:b]
        if b - a == len(self):
            return np.repeat(self.t_val, np.diff(self.t_at, append=len(self)))
        return self.t_val[np.searchsorted(self.t_at, np.arange(a, b), side="right") - 1]

    def fill(self, out: np.ndarray, a: int, b: int) -> None:
        """Write rows `a:b` into `out` (`ROW_DTYPE`, `b - a` rows)."""
        for name in ("t", "code", "len", "msg"):
            out[name] = self.column(name, a, b)


class _RowStore:
    """The fixed-size part of the kept rows (read as `ROW_DTYPE`: t, code, len, msg), in
    compact chunks (`_Chunk`): a flush adds its rows as one chunk, single rows gather in
    a small tail, and dropping the oldest rows drops whole chunks (and the front of the
    first one, as views): no buffer ever grows by copying or is moved to drop its front."""

    __slots__ = ("_chunks", "_starts", "_tail", "n")

    def __init__(self) -> None:
        self._chunks: list[_Chunk] = []
        # Per chunk: direction -> (message, opcode) of the last data message started in
        # it, when known (None: found when needed).
        self._starts: list[dict[int, tuple[int, int]] | None] = []
        self._tail = bytearray()  # single rows (`add`, `add_error`), packed as `ROW_DTYPE`
        self.n = 0

    def extend(self, chunk: _Chunk, starts: dict[int, tuple[int, int]] | None = None) -> None:
        self._seal()
        if len(chunk):
            self._chunks.append(chunk)
            self._starts.append(starts)
            self.n += len(chunk)

    def append(self, t: int, code: int, length: int, msg: int) -> None:
        self._tail += _PACK(t, code, length, msg)
        self.n += 1
        if len(self._tail) >= _TAIL_ROWS * ROW_SIZE:
            self._seal()

    def _seal(self) -> None:
        if self._tail:
            rows = np.frombuffer(bytes(self._tail), dtype=ROW_DTYPE)
            self._chunks.append(_Chunk.build(rows["t"], rows["code"], rows["len"], rows["msg"]))
            self._starts.append(None)
            self._tail = bytearray()

    def drop_front(self, k: int) -> dict[int, tuple[int, int]]:
        """Forget the first `k` rows; returns, per direction, (message, opcode) of the
        last data message started in them."""
        self._seal()
        chunks, starts = self._chunks, self._starts
        self.n -= k
        found: dict[int, tuple[int, int]] = {}
        i = 0
        while k and k >= len(chunks[i]):
            known = starts[i]
            found.update(_last_starts(chunks[i], len(chunks[i])) if known is None else known)
            k -= len(chunks[i])
            i += 1
        del chunks[:i], starts[:i]
        if k:
            found.update(_last_starts(chunks[0], k))
            chunks[0] = chunks[0].cut(k)
            starts[0] = None
        return found

    def clear(self) -> dict[int, tuple[int, int]]:
        found = self.drop_front(self.n) if self.n else {}
        self._chunks.clear()
        self._starts.clear()
        self._tail = bytearray()
        self.n = 0
        return found

    def _pieces(self, start: int, stop: int) -> list[tuple[_Chunk, int, int]]:
        """(chunk, a, b): where rows `start:stop` are, in order."""
        self._seal()
        out = []
        pos = 0
        for chunk in self._chunks:
            end = pos + len(chunk)
            if end > start and pos < stop:
                out.append((chunk, max(start - pos, 0), min(stop, end) - pos))
            if end >= stop:
                break
            pos = end
        return out

    def rows(self, start: int, stop: int) -> np.ndarray:
        """A copy of rows `start:stop` (structured: `t`, `code`, `len`, `msg`)."""
        pieces = self._pieces(start, stop)
        out = np.empty(sum(b - a for _, a, b in pieces), dtype=ROW_DTYPE)
        pos = 0
        for chunk, a, b in pieces:
            chunk.fill(out[pos : pos + b - a], a, b)
            pos += b - a
        return out

    def field(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows `start:stop` of one column (`int64`; `code`: `uint16`)."""
        parts = [chunk.column(name, a, b) for chunk, a, b in self._pieces(start, stop)]
        if not parts:
            return np.empty(0, dtype=ROW_DTYPE[name])
        return np.concatenate(parts) if len(parts) > 1 else np.ascontiguousarray(parts[0])

    def row(self, i: int) -> tuple[int, int, int, int]:
        """Row `i` as (t, code, len, msg)."""
        r = self.rows(i, i + 1)[0]
        return int(r["t"]), int(r["code"]), int(r["len"]), int(r["msg"])


_TAIL_ROWS = 4096  # single rows gathered before they become a chunk


def _last_starts(chunk: _Chunk, k: int) -> dict[int, tuple[int, int]]:
    """Per direction, (message, opcode) of the last data message started in the first
    `k` rows of `chunk`."""
    code = chunk.code[:k]
    op = code & 0x0F
    starts = (op == 1) | (op == 2)
    found: dict[int, tuple[int, int]] = {}
    if starts.any():
        for d in (0, 1):
            at = np.flatnonzero(starts & (((code >> 8) & 1) == d))
            if len(at):
                i = int(at[-1])
                found[d] = (int(chunk.column("msg", i, i + 1)[0]), int(op[i]))
    return found


class RecentFrame(NamedTuple):
    """One frame as `Recorder.recent` gives it (the timeline's columns, as Python values)."""

    row: int
    t_rel: float
    dir: str
    opcode: str
    fin: bool
    rsv: int
    length: int
    payload: bytes
    text: str | None
    close_code: int | None
    close_reason: str | None
    message: int
    msg_type: str | None
    fields: Any
    error: str | None


class _PackedRun:
    """Consecutive batches of rows whose small payloads were copied into one buffer per
    batch (the reader's `joined` for a batch of received frames; the compiled stagers copy
    sent and received payloads into the open batch as they come), so the frames' own
    payload objects can be freed as soon as the application drops them: keeping them
    alive was most of what recording cost. One object for all the run's rows, one buffer
    and one end per batch: no entry per row. Where each payload ends in its buffer is
    worked out from the rows' lengths when asked (`payloads`)."""

    __slots__ = ("blobs", "ends")

    def __init__(self) -> None:
        self.blobs: list[Any] = _payload_list()  # per batch: its payloads, joined (bytes, or a view once cut)
        self.ends: list[int] = _payload_list()  # per batch: the store position after its last row

    def add(self, blob: Any, n: int, start: int) -> None:
        """A batch of `n` rows from store position `start` on (the run's end)."""
        self.blobs.append(blob)
        self.ends.append(start + n)

    def payloads(self, start: int, lo: int, hi: int, lengths: Callable[[int, int], np.ndarray]) -> list[bytes]:
        """The payloads of store positions `lo:hi` (inside this run, which starts at
        `start`); `lengths(a, b)`: the recorded lengths of positions `a:b`."""
        ends = self.ends
        j = bisect_right(ends, lo)
        out: list[bytes] = []
        while lo < hi:
            first = ends[j - 1] if j else start
            end = min(ends[j], hi)
            sizes = lengths(first, end)
            pos = int(sizes[: lo - first].sum()) if lo > first else 0
            out += _split_payloads(self.blobs[j], sizes[lo - first :], pos)
            lo = end
            j += 1
        return out

    def drop_front(self, start: int, cut: int, lengths: Callable[[int, int], np.ndarray]) -> None:
        """Forget the positions before `cut` (the run starts at `start`, ends after it)."""
        ends = self.ends
        j = bisect_right(ends, cut)
        first = ends[j - 1] if j else start
        del self.blobs[:j], ends[:j]
        if cut > first:  # the first batch kept loses its first rows
            skip = int(lengths(first, cut).sum())
            self.blobs[0] = memoryview(self.blobs[0])[skip:]


class _PayloadStore:
    """The kept rows' payloads, in runs: a run of single payloads (a list, one entry per
    row) or of packed batches (one `_PackedRun`). The last run is always a list, the
    tail, which `holder[0]` also holds for the compiled stagers to append to;
    `holder[1]` is how many rows the tail may hold before the recorder must trim (its
    capacity less the rows in the other runs, the sealed ones); `holder[2]` is the run
    of packed batches that the next one may join, while the tail is empty (else None);
    `holder[3]` is the open batch, the last of that run, a bytearray the compiled stagers
    copy small payloads into while the tail is empty, and `holder[4]` that run's ends
    (else both None: whatever changes the runs closes it). The stagers count the rows
    they copy in and add them to the batch's end and to `holder[1]` when the store calls
    `_sync`, which every method here does first. Positions count rows since the start
    (dropped ones included)."""

    __slots__ = ("_capacity", "_off", "_segs", "_starts", "_sync", "holder")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._off = 0  # the position of the first kept row
        self._segs: list[Any] = []  # the sealed runs, oldest first
        self._starts: list[int] = []  # the position of each sealed run's first kept row
        self.holder: list[Any] = [_payload_list(), capacity, None, None, None]
        self._sync: Callable[[], None] | None = None  # the compiled stagers' `sync`, when they copy payloads in

    def count_with(self, sync: Callable[[], None]) -> None:
        """The compiled stagers' `sync` (which adds the rows they copied into the open batch to
        its end and to the room): called first by every method here."""
        self._sync = sync

    @property
    def _sealed(self) -> int:
        if self._sync is not None:
            self._sync()
        room: int = self.holder[1]
        return self._capacity - room

    def __len__(self) -> int:
        if self._sync is not None:
            self._sync()
        holder = self.holder
        room: int = holder[1]
        return self._capacity - room + len(holder[0])

    def set_capacity(self, capacity: int) -> None:
        self.holder[1] = capacity - self._sealed
        self._capacity = capacity

    def append(self, payload: Any) -> None:
        if self._sync is not None:
            self._sync()
        self.holder[0].append(payload)

    def extend(self, payloads: Any) -> None:
        if self._sync is not None:
            self._sync()
        self.holder[0].extend(payloads)

    def add_packed(self, blob: Any, n: int) -> None:
        """`n` rows whose payloads are joined in `blob`."""
        run, end = self._run()
        run.add(blob, n, end)
        holder = self.holder
        holder[1] -= n
        holder[3] = holder[4] = None  # the open batch, if any, is no longer the last

    def open_batch(self) -> None:
        """Open a batch for the compiled stagers to copy payloads into (`holder[3]`)."""
        run, end = self._run()
        blob = bytearray()
        run.add(blob, 0, end)
        self.holder[3], self.holder[4] = blob, run.ends

    def _run(self) -> tuple[_PackedRun, int]:
        """The run a new batch joins (the open one while the tail is empty, else a new
        one after the tail, which is sealed) and the batch's first position (synced)."""
        holder = self.holder
        end = self._off + len(self)
        tail, run = holder[0], holder[2]
        if tail or run is None:
            if tail:  # the tail is sealed; a new one follows the run
                self._segs.append(tail)
                self._starts.append(end - len(tail))
                holder[1] -= len(tail)
                holder[0] = _payload_list()
            run = holder[2] = _PackedRun()
            self._segs.append(run)
            self._starts.append(end)
        return run, end

    def _end(self, j: int) -> int:
        """The position after sealed run `j`."""
        seg = self._segs[j]
        return self._starts[j] + len(seg) if type(seg) is list else seg.ends[-1]

    def pieces(self, start: int, stop: int) -> list[tuple[Any, int, int, int]]:
        """The runs holding kept rows `start:stop`: (run, its first position, lo, hi)
        with `lo:hi` the positions wanted from it (the tail last)."""
        stop = min(stop, len(self))  # (synced)
        if start >= stop:
            return []
        lo, hi = self._off + start, self._off + stop
        out = []
        starts, segs = self._starts, self._segs
        j = max(bisect_right(starts, lo) - 1, 0)
        while j < len(segs) and starts[j] < hi:
            first, end = starts[j], self._end(j)
            if end > lo:
                out.append((segs[j], first, max(lo, first), min(hi, end)))
            j += 1
        tail_start = self._off + self._sealed
        if hi > tail_start:
            out.append((self.holder[0], tail_start, max(lo, tail_start), hi))
        return out

    def drop_front(self, k: int, lengths: Callable[[int, int], np.ndarray]) -> None:
        """Forget the first `k` kept rows (`lengths(a, b)`: the recorded lengths of
        positions `a:b`, which a packed batch cut in two needs)."""
        k = min(k, len(self))  # (synced)
        cut = self._off + k
        segs, starts = self._segs, self._starts
        while segs and self._end(0) <= cut:
            del segs[0], starts[0]
        if segs and cut > starts[0]:
            seg = segs[0]
            if type(seg) is list:
                del seg[: cut - starts[0]]
            else:
                seg.drop_front(starts[0], cut, lengths)
            starts[0] = cut
        tail_start = self._off + self._sealed
        sealed = sum(self._end(j) - starts[j] for j in range(len(segs)))
        holder = self.holder
        if cut > tail_start:
            del holder[0][: cut - tail_start]
        if not segs:
            holder[2] = None
        holder[3] = holder[4] = None  # a batch cut in two is a view now: none stays open
        self._off = cut
        holder[1] = self._capacity - sealed

    def clear(self) -> None:
        self._segs.clear()
        self._starts.clear()
        self._off += len(self)  # (synced)
        self.holder[:] = [_payload_list(), self._capacity, None, None, None]


_FLUSH_AT = 32768  # staged frames materialised at once (their temporaries stay in cache)
_PACK_MIN = 8  # frames read at once from which a batch's payloads are packed
_PACK_MAX_LENGTH = 512  # ... when none of them is longer than this


class Recorder:
    """Recorded frames. `stage_tx` / `stage_rx` are the hot path; `to_dataframe` builds the view.

    A frame's `code` is its header code (`rawws_nb.frames.header_code`: direction `TX`/`RX`,
    fin, rsv bits, opcode, and the payload length from bit 16 up); `message` groups the
    fragments of one message. Row numbers (`add`'s return value, the DataFrame's index)
    are absolute: they keep counting when old rows are dropped.
    """

    __slots__ = (
        "__weakref__",
        "_base",
        "_c_flush",
        "_capacity",
        "_compiled",
        "_decoded",
        "_decoders",
        "_errors",
        "_inflated_len",
        "_inflated_row",
        "_last_t",
        "_next_msg",
        "_open_kinds",
        "_open_msg",
        "_payload_cap",
        "_rows",
        "_stage",
        "_stager",
        "_store",
        "_t0",
        "_tpos",
        "_tval",
        "dropped",
        "stage_rx",
        "stage_tx",
    )

    stage_tx: Callable[[int | None, int, bytes], None]
    stage_rx: Callable[..., None]

    def __init__(
        self,
        capacity: int = DEFAULT_CAPACITY,
        payload_cap: int = DEFAULT_PAYLOAD_CAP,
        t0: int = 0,
        *,
        compiled: bool = True,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._c_flush: Any = _c_flush if compiled else None
        self._capacity = int(capacity)
        self._payload_cap = max(int(payload_cap), 0)
        self.dropped = 0
        self._rows = _RowStore()  # per frame: t, code, length, message
        # The hot path (`stage_rx`, `stage_tx`) appends only a header code per frame here;
        # timestamps are kept per batch (`_tpos`: stage index, `_tval`: ns) and message
        # numbers are derived, vectorised, when the rows are materialised (`_flush`).
        # Native int64s in bytearrays (what the compiled stagers append to with a copy;
        # extending by the reader's array of codes is one copy too); `_staged` counts them.
        self._stage = bytearray()
        self._tpos = bytearray()
        self._tval = bytearray()
        self._last_t = t0
        self._next_msg = 0  # the next message number
        self._open_msg: dict[int, int] = {}  # direction -> number of its last data message
        self._store = _PayloadStore(self._capacity)  # the kept rows' payloads
        self._base = 0  # absolute index of the first kept row
        self._errors: dict[int, str] = {}
        # Frames of compressed messages: absolute row and inflated payload length (the
        # row's `len` is the wire length); nothing for sessions without compression.
        self._inflated_row = array("q")
        self._inflated_len = array("q")
        self._decoders: list[tuple[int, Decoder | None]] = []  # (first absolute row, decoder)
        self._decoded: dict[int, Decoded] = {}
        # direction -> (message, opcode) of the last data message started in dropped rows:
        # its continuations may still be kept.
        self._open_kinds: dict[int, tuple[int, int]] = {}
        self._t0 = t0
        self._compiled = compiled
        self._stager: Any = None  # the compiled stagers' Stager, when in use
        self._bind_stage_tx()

    def _bind_stage_tx(self) -> None:
        """`stage_tx(t_ns, code, payload)`: record one sent frame (or one received
        alone); `stage_rx(...)`: a batch. In C when the fast path is built: one call, no
        Python frame (`_stage_tx` and `_stage_rx` are the reference; the C side calls
        back into them for what it does not do itself). Bound once: the compiled ones are
        methods of a Stager, whose payload cap `payload_cap` sets in place."""
        if self._compiled and _c_stage is not None:
            state = (
                self._stage,
                self._tpos,
                self._tval,
                self._store.holder,  # [tail for singles, its room, the open run, its open batch, its ends]
                self._payload_cap,
                _FLUSH_AT,
                weakref.proxy(self),  # no reference cycle: a dropped recorder is freed at once
                _PACK_MIN,
            )
            tx, rx = _c_stagers(state)
            self.stage_tx, self.stage_rx, self._stager = tx, rx, tx.__self__
            self._store.count_with(self._stager.sync)  # the rows the Stager copies in
        else:
            self.stage_tx = self._stage_tx
            self.stage_rx = self._stage_rx

    @property
    def capacity(self) -> int:
        """The most frames kept (lowering it drops the oldest now)."""
        return self._capacity

    @capacity.setter
    def capacity(self, value: int) -> None:
        if value < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = int(value)
        self._store.set_capacity(self._capacity)
        if len(self._store) > self._capacity:
            self._trim()

    @property
    def payload_cap(self) -> int:
        """The bytes kept of a data frame's payload (from the next frame on when changed)."""
        return self._payload_cap

    @payload_cap.setter
    def payload_cap(self, value: int) -> None:
        self._payload_cap = max(int(value), 0)
        if self._stager is not None:  # (the reference reads _payload_cap each time)
            self._stager.set_payload_cap(self._payload_cap)  # in place: a session's lane sees it

    def __len__(self) -> int:
        return len(self._store)

    def __repr__(self) -> str:
        return (
            f"<Recorder {len(self._store):,} frames kept, {self.dropped:,} dropped, "
            f"capacity {self._capacity:,}, payload_cap {self._payload_cap:,}>"
        )

    @property
    def total(self) -> int:
        """Frames recorded since the start, dropped ones included."""
        return self._base + len(self._store)

    @property
    def first(self) -> int:
        """Absolute row number of the oldest kept frame."""
        return self._base

    @property
    def t0(self) -> int:
        """The session's start (ns since the epoch) that `t_rel` counts from."""
        return self._t0

    # -- the hot path ----------------------------------------------------------------

    def _stage_tx(self, t_ns: int | None, code: int, payload: bytes) -> None:
        """`stage_tx`: record one sent frame (or one received alone: `stage_rx` hands it here): `code`
        is its header code (`length << 16 | b0`, as `rawws_nb.frames.header_code` packs it,
        direction `TX`, or `RX`), `payload` its payload
        (kept as is, or capped at `payload_cap` for a data frame). `t_ns` None: the same
        timestamp as the frame recorded before it (the session stamps the first write of
        each event-loop turn only). The send path's whole recording cost: a few appends."""
        if t_ns is not None:
            if len(self._stage) >> 3 >= _FLUSH_AT:
                self._flush()
            self._tpos += _Q(len(self._stage) >> 3)
            self._tval += _Q(t_ns)
        self._stage += _Q(code)
        kept = self._store
        if code & COMPRESSED:  # `payload` is the message data before compression
            self._inflated_row.append(self._base + len(kept))
            self._inflated_len.append(len(payload))
            kept.append(payload if len(payload) <= self._payload_cap else payload[: self._payload_cap])
        else:
            # Control frames (opcode bit 3) are kept whole: at most 125 bytes.
            kept.append(payload if code >> 16 <= self._payload_cap or code & 8 else payload[: self._payload_cap])
        if len(kept) > self._capacity:
            self._trim()

    def _open_batch(self) -> None:
        """For the compiled stagers: the store opens a batch to copy payloads into."""
        self._store.open_batch()

    @property
    def join_max(self) -> int:
        """The longest payload of a batch that `stage_rx` takes `joined` for (the payload
        cap, at most 512 bytes): a reader joining its frames' payloads up to this length
        saves the recorder touching each frame."""
        return min(self._payload_cap, _PACK_MAX_LENGTH)

    def _stage_rx(
        self,
        t_ns: int,
        codes: Sequence[int],
        frames: Sequence[Frame],
        compressed: int = 0,
        joined: bytes | bytearray | None = None,
    ) -> None:
        """`stage_rx`: record frames read at once, all at `t_ns`: `codes` are their header codes (as
        `rawws_nb.frames.header_code` packs them, direction `RX`), `frames` the frames, in
        the same order (payloads are kept as `stage_tx` keeps them). `compressed`: how
        many of them belong to compressed messages (their payloads are inflated, their
        codes' lengths the wire lengths). `joined`: all the frames' payloads in one buffer,
        when none is longer than `join_max` (a reader's `joined`): then the frames are not
        touched at all. A few C-level calls per batch, whatever its size."""
        n = len(codes)
        if n == 1 and not compressed:  # one frame (a request's answer): no batch work
            self.stage_tx(t_ns, codes[0], frames[0].data)
            return
        if not n:
            return
        stage = self._stage
        self._tpos += _Q(len(stage) >> 3)
        self._tval += _Q(t_ns)
        stage += codes if type(codes) is array else array("q", codes)
        payload = self._store
        cap = self._payload_cap
        if compressed:
            start = self._base + len(payload)
            for i, (c, f) in enumerate(zip(codes, frames, strict=True)):
                data = f.data
                if c & COMPRESSED:
                    self._inflated_row.append(start + i)
                    self._inflated_len.append(len(data))
                    payload.append(data if len(data) <= cap else data[:cap])
                else:
                    payload.append(data if c >> 16 <= cap or c & 8 else data[:cap])
        elif joined is not None and len(codes) >= _PACK_MIN and max(codes) >> 16 <= cap:
            # Small frames whose payloads the reader already joined: no per-frame work.
            payload.add_packed(joined, n)  # the reader's buffer, handed over (a new one per read)
        else:
            longest = max(codes) >> 16
            if longest > cap:
                payload.extend(
                    f.data if c >> 16 <= cap or c & 8 else f.data[:cap] for c, f in zip(codes, frames, strict=True)
                )
            elif len(codes) >= _PACK_MIN and longest <= _PACK_MAX_LENGTH:
                # Small frames, all kept whole: one joined copy of their payloads.
                payload.add_packed(b"".join([f.data for f in frames]), n)
            else:
                payload.extend(map(_DATA, frames))
        if len(payload) > self._capacity:
            self._trim()
        elif len(stage) >> 3 >= _FLUSH_AT:
            self._flush()

    def _flush(self) -> None:
        """Materialise staged frames into packed rows (timestamps and message numbers)."""
        if not self._stage:
            return
        if self._c_flush is None or not self._flush_compiled():
            self._flush_numpy()

    def _flush_numpy(self) -> None:
        """`_flush` (the reference, and the fallback)."""
        stage = self._stage
        codes = np.frombuffer(stage, dtype=np.int64).copy()
        t_at, t_val = self._take_stamps()
        del stage[:]
        code = codes & 0xFFFF
        last: dict[int, tuple[int, int]] = {}
        msg = self._numbers(code & 0x0F, (code >> 8) & 1, last)
        self._rows.extend(_Chunk.compact(t_at, t_val, code, codes >> 16, msg), last)

    def _take_stamps(self) -> tuple[np.ndarray, np.ndarray]:
        """The staged timestamps as runs over the staged frames (each run's first stage
        index, its value; frames before the first stamp keep the last timestamp); emptied."""
        t_at = np.frombuffer(self._tpos, dtype=np.int64).copy()
        t_val = np.frombuffer(self._tval, dtype=np.int64).copy()
        del self._tpos[:], self._tval[:]
        if not len(t_at) or t_at[0]:
            t_at = np.concatenate(([0], t_at)).astype(np.int64)
            t_val = np.concatenate(([self._last_t], t_val)).astype(np.int64)
        self._last_t = int(t_val[-1])
        return t_at, t_val

    def _flush_compiled(self) -> bool:
        """`_flush` in C (`rawws_nb._speedups.flush_rows`): the same columns, in one pass;
        False (nothing done) when one does not fit its narrow type (a length over 4 GiB,
        or a continuation of a message 2**31 messages back): the numpy code does those."""
        base = self._next_msg
        done = self._c_flush(self._stage, base, self._open_msg.get(0, -1), self._open_msg.get(1, -1))
        if done is None:
            return False
        code, length, msg, self._next_msg, open0, open1, last0, last1 = done
        t_at, t_val = self._take_stamps()
        del self._stage[:]
        for d, value in ((0, open0), (1, open1)):
            if value >= 0:
                self._open_msg[d] = value
        chunk = _Chunk(
            t_at,
            t_val,
            np.frombuffer(code, dtype=np.uint16),
            np.frombuffer(length, dtype=np.uint16 if len(length) == len(code) else np.uint32),
            base,
            None if msg is None else np.frombuffer(msg, dtype=np.int32),
        )
        last = {d: (int(v[0]), int(v[1])) for d, v in ((0, last0), (1, last1)) if v is not None}
        self._rows.extend(chunk, last)
        return True

    def _numbers(
        self, opcode: np.ndarray, direction: np.ndarray, last: dict[int, tuple[int, int]] | None = None
    ) -> np.ndarray:
        """Message numbers, in order: every frame but a continuation starts a message;
        a continuation belongs to its direction's last data message. `last` receives, per
        direction, (message, opcode) of the last data message started here."""
        new = opcode != 0
        starts = (opcode == 1) | (opcode == 2)
        if new.all():  # no continuation here (the common case): one message per frame
            number = np.arange(self._next_msg, self._next_msg + len(opcode), dtype=np.int64)
            for d in (0, 1):
                mine = starts & (direction == d)
                if mine.any():
                    i = len(mine) - 1 - int(np.argmax(mine[::-1]))  # the last start of d
                    self._open_msg[d] = int(number[i])
                    if last is not None:
                        last[d] = (self._open_msg[d], int(opcode[i]))
            self._next_msg += len(opcode)
            return number
        number = self._next_msg + np.cumsum(new) - 1
        for d in (0, 1):
            mine = direction == d
            first = np.flatnonzero(starts & mine)
            cont = np.flatnonzero(~new & mine)
            if len(cont):
                before = self._open_msg.get(d, -1)
                if len(first):
                    at = np.searchsorted(first, cont, side="right") - 1
                    number[cont] = np.where(at >= 0, number[first[np.maximum(at, 0)]], before)
                else:  # no message starts here: every continuation continues the last one
                    number[cont] = before
            if len(first):
                self._open_msg[d] = int(number[first[-1]])
                if last is not None:
                    last[d] = (self._open_msg[d], int(opcode[first[-1]]))
        self._next_msg += int(np.count_nonzero(new))
        return number

    def _number(self, code: int, message: int | None) -> int:
        """The message number of one explicitly added row (after `_flush`)."""
        opcode, d = code & 0x0F, (code >> 8) & 1
        if message is None:
            message = self._next_msg if opcode else self._open_msg.get(d, -1)
        self._next_msg = max(self._next_msg, message + 1)
        if opcode in (1, 2):
            self._open_msg[d] = message
        return message

    # -- explicit rows (errors, imports, tests) -----------------------------------------

    def add(
        self, t_ns: int, code: int, payload: bytes, message: int | None = None, *, wire_length: int | None = None
    ) -> int:
        """Record one frame; returns its absolute row number. `code` is its header code
        (its length bits are ignored: `len(payload)` is recorded). `message` None numbers
        it as the hot path does. A frame of a compressed message (`code` with
        `frames.COMPRESSED`): `payload` inflated, `wire_length` its length on the wire."""
        code &= 0xFFFF
        if code & COMPRESSED:
            return self.add_error(
                t_ns,
                code,
                payload,
                len(payload) if wire_length is None else wire_length,
                message,
                None,
                inflated=len(payload),
            )
        self._flush()
        message = self._number(code, message)
        self._last_t = t_ns
        n = len(payload)
        self._rows.append(t_ns, code, n, message)
        kept = self._store
        # Control frames (opcode bit 3) are kept whole: at most 125 bytes from a valid peer.
        kept.append(payload if n <= self._payload_cap or code & 8 else payload[: self._payload_cap])
        row = self._base + len(kept) - 1  # a trim drops rows from the front: the same row
        if row - self._base >= self._capacity:
            self._trim()
        return row

    def add_error(
        self,
        t_ns: int,
        code: int,
        payload: bytes | None,
        length: int,
        message: int | None,
        error: str | None,
        *,
        inflated: int | None = None,
    ) -> int:
        """Record a frame (or partial frame) that something was wrong with: `code` is its
        header code (length bits ignored), `length` the length it announced, `payload`
        what arrived. `error` None records no error text (for a frame whose kept payload
        is shorter than `length` for another reason). `inflated`: for a frame of a
        compressed message, its inflated length (`length` is then the wire length)."""
        code &= 0xFFFF
        data = payload or b""
        self._flush()
        message = self._number(code, message)
        self._last_t = t_ns
        self._rows.append(t_ns, code, length, message)
        keep = len(data) <= self._payload_cap or (code & 8 and len(data) <= 125)
        self._store.append(data if keep else data[: self._payload_cap])
        row = self._base + len(self._store) - 1
        if inflated is not None and code & COMPRESSED:
            self._inflated_row.append(row)
            self._inflated_len.append(inflated)
        if error is not None:
            self._errors[row] = error
        if len(self._store) > self._capacity:
            self._trim()
        return row

    def set_decoder(self, decode: Decoder | None) -> None:
        """Decode each Binary message that completes from the next recorded frame on with
        `decode(payload) -> (msg_type, fields, error)` (the whole message, fragments
        joined), filling `msg_type`, `fields` and `error`; None stops decoding. Messages
        completed earlier keep the decoder that was set then. `decode` should never raise:
        if it does, the exception's text is the row's error. The session passes
        `functools.partial(rawws_nb.codec.decode_for_timeline, protocol, version)`."""
        self._decoders.append((self.total, decode))

    def _payloads(self, start: int, stop: int) -> list[bytes]:
        """The kept payloads of rows `start:stop` (positions in the kept rows), as bytes
        (after a flush: packed batches need the rows' lengths)."""
        out: list[bytes] = []
        for run, first, lo, hi in self._store.pieces(start, stop):
            if type(run) is list:
                out += run[lo - first : hi - first]
            else:
                out += run.payloads(first, lo, hi, self._lengths)
        return out

    def _payload_at(self, i: int) -> bytes:
        return bytes(self._payloads(i, i + 1)[0])

    def _lengths(self, start: int, stop: int) -> np.ndarray:
        """The recorded lengths of absolute rows `start:stop` (kept, flushed)."""
        return self._rows.field("len", start - self._base, stop - self._base)

    def _trim(self) -> None:
        # Drop a slab at once (an eighth of capacity) so trimming is amortised; deleting
        # from the front of a bytearray or a list is cheap.
        self._flush()
        k = len(self._store) - self._capacity + max(self._capacity // 8, 1) - 1
        k = min(k, len(self._store))
        # The last data message each direction started in the dropped rows: continuations
        # kept after them still know their type.
        self._store.drop_front(k, self._lengths)  # first: a packed batch cut in two needs the lengths
        self._open_kinds.update(self._rows.drop_front(k))
        self._base += k
        self.dropped += k
        if self._errors:
            self._errors = {r: e for r, e in self._errors.items() if r >= self._base}
        if self._decoded:
            self._decoded = {r: d for r, d in self._decoded.items() if r >= self._base}
        self._drop_inflated()

    def clear(self) -> None:
        """Forget every recorded frame (counted in `dropped`)."""
        self._flush()
        n = len(self._store)
        self._open_kinds.update(self._rows.clear())
        self._base += n
        self.dropped += n
        self._store.clear()
        self._errors.clear()
        self._decoded.clear()
        self._drop_inflated()

    def _drop_inflated(self) -> None:
        """Forget the inflated lengths of rows that were dropped."""
        rows = self._inflated_row
        if rows and rows[0] < self._base:
            keep = [i for i, r in enumerate(rows) if r >= self._base]
            self._inflated_row = array("q", (rows[i] for i in keep))
            self._inflated_len = array("q", (self._inflated_len[i] for i in keep))

    # -- the DataFrame view ---------------------------------------------------------

    def tail(self, n: int) -> pd.DataFrame:
        """The last `n` recorded frames as a timeline DataFrame (cheap for small `n`)."""
        return self.to_dataframe(since=max(self.total - max(n, 0), self._base))

    def recent(self, n: int) -> list[RecentFrame]:
        """The last `n` frames as plain tuples, oldest first: what live views need,
        without building a DataFrame (a few hundred microseconds for 50 rows)."""
        self._flush()
        kept = len(self._store)
        skip = max(kept - max(n, 0), 0)
        if skip >= kept:
            return []
        rows = self._rows.rows(skip, kept)
        code = np.ascontiguousarray(rows["code"])
        opcode = (code & 0x0F).astype(np.int8)
        message = np.ascontiguousarray(rows["msg"])
        kind = self.message_kinds(opcode, message, skip).tolist()
        payloads = self._payloads(skip, kept)
        if self._decoders:
            self._decode_binary(
                opcode, code, np.asarray(kind), np.ascontiguousarray(rows["len"]), message, payloads, skip
            )
        t0 = self._t0 or int(rows["t"][0])
        base = self._base + skip
        limit = TEXT_PREVIEW * 4
        out: list[RecentFrame] = []
        for i, (t, c, length, msg) in enumerate(rows.tolist()):
            row = base + i
            p = payloads[i]
            op = c & 0x0F
            text = p[:limit].decode("utf-8", "replace")[:TEXT_PREVIEW] if kind[i] == 1 else None
            close_code = close_reason = None
            if op == 8 and len(p) >= 2:
                close_code, close_reason = int.from_bytes(p[:2], "big"), p[2:].decode("utf-8", "replace")
            msg_type, fields, error = self._decoded.get(row, (None, None, None))
            out.append(
                RecentFrame(
                    row,
                    (t - t0) / 1e9,
                    DIRECTIONS[(c >> 8) & 1],
                    OPCODE_NAMES[op],
                    bool(c & 0x80),
                    (c >> 4) & 7,
                    length,
                    p,
                    text,
                    close_code,
                    close_reason,
                    msg,
                    msg_type,
                    fields,
                    self._errors.get(row, error),
                )
            )
        return out

    def message_kinds(self, opcode: np.ndarray, message: np.ndarray, skip: int = 0) -> np.ndarray:
        """The opcode of the message each row belongs to, for rows `skip:` of the kept
        columns (given as `opcode`, `message`): a data frame's own opcode for the first
        frame of a message, the first frame's for a continuation (found before the view
        when needed, or in dropped rows), 0 when unknown; control frames their own."""
        kind = opcode.copy()
        cont = np.flatnonzero(opcode == 0)
        if len(cont) == 0:
            return kind
        starts = (opcode == 1) | (opcode == 2)
        ids = message[cont]
        found_kind, found = last_value_lookup(message[starts], opcode[starts], ids)
        kind[cont] = found_kind
        if found.all():
            return kind
        missing = np.unique(ids[~found])
        known: dict[int, int] = {}
        end = skip
        while len(missing) and end > 0:
            start = max(0, end - _LOOKBACK)
            rows = self._rows.rows(start, end)
            op = (rows["code"] & 0x0F).astype(np.int8)
            sel = (op == 1) | (op == 2)
            values, ok = last_value_lookup(rows["msg"][sel], op[sel], missing)
            known.update(zip(missing[ok].tolist(), values[ok].tolist(), strict=True))
            missing = missing[~ok]
            end = start
        for msg, op_ in self._open_kinds.values():
            known.setdefault(msg, op_)
        if known:
            lost = cont[~found]
            kind[lost] = [known.get(m, 0) for m in message[lost].tolist()]
        return kind

    def to_dataframe(self, since: int | None = None) -> pd.DataFrame:
        """Build the timeline DataFrame (schema in `rawws_nb.timeline.schema`).

        `since` is an absolute row number (the DataFrame's index): only rows from there on.
        """
        import pandas as pd
        import pyarrow as pa

        from ._columns import decode_utf8, payload_column, sparse_strings, string_array
        from .schema import DIR_DTYPE, OPCODE_DTYPE

        self._flush()
        kept = len(self._store)
        skip = 0 if since is None else min(max(since - self._base, 0), kept)
        n = kept - skip
        rows = self._rows.rows(skip, kept)
        t_ns = np.ascontiguousarray(rows["t"])
        code = np.ascontiguousarray(rows["code"])
        length = np.ascontiguousarray(rows["len"])
        message = np.ascontiguousarray(rows["msg"])
        del rows
        payloads = self._payloads(skip, kept)
        payload = payload_column(payloads)
        opcode = (code & 0x0F).astype(np.int8)
        base = self._base + skip

        # Text previews for the frames of text messages, continuations included.
        kind = self.message_kinds(opcode, message, skip)
        is_text = kind == 1
        if is_text.all():
            text = string_array(decode_utf8(payloads, None, TEXT_PREVIEW))
        elif is_text.any():
            text = string_array(decode_utf8(payloads, ~is_text, TEXT_PREVIEW))
        else:
            text = string_array(pa.nulls(n, pa.large_string()))

        # Close code and reason for Close frames with a code.
        closes = np.flatnonzero((opcode == 8) & (length >= 2))
        codes = np.zeros(n, dtype=np.int64)
        if len(closes):
            heads = [payloads[i] for i in closes.tolist()]
            codes[closes] = [int.from_bytes(p[:2], "big") for p in heads]
            reasons = decode_utf8([p[2:] for p in heads])
            close_reason = sparse_strings(n, closes, reasons.to_pylist())
        else:
            close_reason = string_array(pa.nulls(n, pa.large_string()))
        has_code = np.zeros(n, dtype=bool)
        has_code[closes] = True
        close_code = pd.arrays.IntegerArray(codes, ~has_code)

        errors: dict[int, str] = {row - base: err for row, err in self._errors.items() if base <= row < base + n}
        fields = np.full(n, None, dtype=object)
        msg_type_pos: list[int] = []
        msg_type_val: list[str | None] = []
        if self._decoders:
            self._decode_binary(opcode, code, kind, length, message, payloads, skip)
            for row, (name, flds, err) in self._decoded.items():
                i = row - base
                if 0 <= i < n:
                    if name is not None:
                        msg_type_pos.append(i)
                        msg_type_val.append(name)
                    fields[i] = flds
                    if err is not None and i not in errors:
                        errors[i] = err
        error = sparse_strings(n, list(errors), list(errors.values()))
        msg_type = sparse_strings(n, msg_type_pos, msg_type_val)

        t0 = self._t0 or (self._rows.row(0)[0] if len(self._store) else 0)
        data = {
            "t": pd.array(t_ns.view("datetime64[ns]")).tz_localize("UTC"),
            "t_rel": (t_ns - t0) / 1e9,
            "dir": pd.Categorical.from_codes(((code >> 8) & 1).astype(np.int8), dtype=DIR_DTYPE, validate=False),
            "opcode": pd.Categorical.from_codes(opcode, dtype=OPCODE_DTYPE, validate=False),
            "fin": (code & 0x80).astype(bool),
            "rsv1": (code & 0x40).astype(bool),
            "rsv2": (code & 0x20).astype(bool),
            "rsv3": (code & 0x10).astype(bool),
            "length": length,
            "compressed": (code & COMPRESSED).astype(bool),
            "inflated_length": self._inflated_column(base, n),
            "automatic": (code & AUTOMATIC).astype(bool),
            "payload": payload,
            "text": text,
            "close_code": close_code,
            "close_reason": close_reason,
            "message": message,
            "error": error,
            "msg_type": msg_type,
            "fields": fields,
        }
        df = pd.DataFrame(data, index=pd.RangeIndex(base, base + n, name="frame"), copy=False)
        df.attrs = self.metadata()
        return df

    def _inflated_column(self, base: int, n: int) -> Any:
        """`inflated_length` for rows `base:base + n`: NA except frames of compressed messages."""
        import pandas as pd

        values = np.zeros(n, dtype=np.int64)
        missing = np.ones(n, dtype=bool)
        if len(self._inflated_row):
            rows = np.frombuffer(self._inflated_row, dtype=np.int64) - base
            lens = np.frombuffer(self._inflated_len, dtype=np.int64)
            inside = (rows >= 0) & (rows < n)
            values[rows[inside]] = lens[inside]
            missing[rows[inside]] = False
        return pd.arrays.IntegerArray(values, missing)

    def metadata(self) -> dict[str, Any]:
        """What the recorder knows about the timeline (goes in `DataFrame.attrs`)."""
        meta: dict[str, Any] = {}
        if self._t0:
            import pandas as pd

            meta["started_at_ns"] = self._t0
            meta["started_at"] = pd.Timestamp(self._t0, tz="UTC").isoformat()
        meta.update(capacity=self._capacity, payload_cap=self._payload_cap, dropped=self.dropped, total=self.total)
        return meta

    def count(self, since: int = 0) -> tuple[int, int]:
        """`(tx, rx)`: kept frames recorded from absolute row `since` on (for live counters)."""
        self._flush()
        kept = len(self._store)
        start = min(max(since - self._base, 0), kept)
        rx = int(np.count_nonzero((self._rows.field("code", start, kept) >> 8) & 1))
        return kept - start - rx, rx

    def _decode_binary(
        self,
        opcode: np.ndarray,
        code: np.ndarray,
        kind: np.ndarray,
        length: np.ndarray,
        message: np.ndarray,
        payloads: list[bytes],
        skip: int,
    ) -> None:
        """Decode, once, each Binary message that completes in the view (cached by row)."""
        base = self._base + skip
        epochs = self._decoders
        first_epoch = epochs[0][0]
        ends = np.flatnonzero((kind == 2) & ((code & 0x80) != 0) & ((opcode == 2) | (opcode == 0)))
        todo = [i for i in ends.tolist() if base + i >= first_epoch and base + i not in self._decoded]
        if not todo:
            return
        # The frames of fragmented messages, found once in the kept columns (rows up to the view's end).
        fragments: dict[int, list[int]] = {}
        fragmented = [i for i in todo if opcode[i] == 0]
        if fragmented:
            whole = self._rows.field("msg", 0, skip + len(payloads))
            ids = message[fragmented]
            for r in np.flatnonzero(np.isin(whole, ids)).tolist():
                fragments.setdefault(int(whole[r]), []).append(r)
        for i in todo:
            row = base + i
            decode = epochs[bisect_right(epochs, row, key=_EPOCH_START) - 1][1]  # the last set at or before row
            if decode is None:
                continue
            if opcode[i] == 2:
                parts, lengths = [payloads[i]], [int(length[i])]
            else:
                rows = [r for r in fragments.get(int(message[i]), ()) if r <= skip + i]
                if not rows or self._rows.row(rows[0])[1] & 0x0F != 2:
                    self._decoded[row] = (None, None, "first frames of the message were dropped; not decoded")
                    continue
                parts = [self._payload_at(r) for r in rows]
                lengths = [self._rows.row(r)[2] for r in rows]
            if any(len(p) < n for p, n in zip(parts, lengths, strict=True)):
                self._decoded[row] = (None, None, f"payload capped at {self._payload_cap} bytes; not decoded")
                continue
            self._decoded[row] = decode_safely(decode, b"".join(parts) if len(parts) > 1 else parts[0])
