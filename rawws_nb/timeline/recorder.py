"""The frame recorder: column-wise appends on the hot path, a DataFrame on demand.

Per frame the recorder appends four machine ints to `array.array` columns and one
payload reference to a list (about 34 bytes plus the payload object), nothing else.
Close codes, text previews and codec fields are derived from the payload when the
DataFrame is built; errors and codec results live in small side dicts. The recorder
keeps at most `capacity` frames (oldest dropped first, counted in `dropped`) and at most
`payload_cap` bytes of each payload (the full length is still recorded).
"""

from __future__ import annotations

from array import array
from typing import Any

import numpy as np
import pandas as pd

from .schema import COLUMNS, DIRECTIONS, OPCODE_NAMES, TEXT_PREVIEW

__all__ = ["DEFAULT_CAPACITY", "DEFAULT_PAYLOAD_CAP", "RX", "TX", "Recorder", "flags"]

DEFAULT_CAPACITY = 1_000_000  # frames: ~40 MB of columns plus payloads (capped)
DEFAULT_PAYLOAD_CAP = 4096  # bytes kept per payload
TX = 0
RX = 1 << 8


def flags(direction: int, opcode: int, fin: bool, rsv: int = 0) -> int:
    """Pack direction (TX/RX), fin, rsv bits and opcode into the recorder's code."""
    return direction | (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0x0F)


class Recorder:
    """Columns of recorded frames. `add` is the hot path; `to_dataframe` builds the view."""

    __slots__ = (
        "_base",
        "_code",
        "_codecs",
        "_decoded",
        "_errors",
        "_len",
        "_msg",
        "_payload",
        "_t",
        "_t0",
        "capacity",
        "dropped",
        "payload_cap",
    )

    def __init__(self, capacity: int = DEFAULT_CAPACITY, payload_cap: int = DEFAULT_PAYLOAD_CAP, t0: int = 0) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.payload_cap = max(int(payload_cap), 125)  # control frames are always whole
        self.dropped = 0
        self._t = array("q")
        self._code = array("H")
        self._len = array("q")
        self._msg = array("q")
        self._payload: list[bytes] = []
        self._base = 0  # absolute index of the first kept row
        self._errors: dict[int, str] = {}
        self._codecs: list[tuple[int, Any, Any]] = []  # (first absolute row, protocol, version)
        self._decoded: dict[int, tuple[str | None, dict | None, str | None]] = {}
        self._t0 = t0

    def __len__(self) -> int:
        return len(self._t)

    @property
    def total(self) -> int:
        """Frames recorded since the start, dropped ones included."""
        return self._base + len(self._t)

    def add(self, t_ns: int, code: int, payload: bytes, message: int) -> int:
        """Record one frame; returns its absolute row number."""
        n = len(payload)
        self._t.append(t_ns)
        self._code.append(code)
        self._len.append(n)
        self._msg.append(message)
        self._payload.append(payload if n <= self.payload_cap else payload[: self.payload_cap])
        if len(self._payload) > self.capacity:
            self._trim()
        return self._base + len(self._t) - 1

    def add_error(self, t_ns: int, code: int, payload: bytes | None, length: int, message: int, error: str) -> int:
        """Record a frame (or partial frame) that something was wrong with."""
        data = payload or b""
        self._t.append(t_ns)
        self._code.append(code)
        self._len.append(length)
        self._msg.append(message)
        self._payload.append(data[: self.payload_cap])
        row = self._base + len(self._t) - 1
        self._errors[row] = error
        if len(self._payload) > self.capacity:
            self._trim()
        return row

    def set_error(self, row: int, error: str) -> None:
        if row >= self._base:
            self._errors[row] = error

    def set_codec(self, protocol: Any, version: Any = None) -> None:
        """Decode Binary frames recorded from now on with `protocol` (at `version`)."""
        self._codecs.append((self.total, protocol, version))

    def _trim(self) -> None:
        # Drop a slab at once (an eighth of capacity) so trimming is amortised.
        k = len(self._payload) - self.capacity + max(self.capacity // 8, 1) - 1
        k = min(k, len(self._payload))
        del self._t[:k], self._code[:k], self._len[:k], self._msg[:k], self._payload[:k]
        self._base += k
        self.dropped += k
        if self._errors:
            self._errors = {r: e for r, e in self._errors.items() if r >= self._base}
        if self._decoded:
            self._decoded = {r: d for r, d in self._decoded.items() if r >= self._base}

    def clear(self) -> None:
        """Forget every recorded frame (counted in `dropped`)."""
        self._base += len(self._t)
        self.dropped += len(self._t)
        for col in (self._t, self._code, self._len, self._msg):
            del col[:]
        self._payload.clear()
        self._errors.clear()
        self._decoded.clear()

    # -- the DataFrame view ---------------------------------------------------------

    def tail(self, n: int) -> pd.DataFrame:
        """The last `n` recorded frames as a timeline DataFrame (cheap for small `n`)."""
        return self.to_dataframe(since=max(self.total - n, self._base))

    def to_dataframe(self, since: int | None = None) -> pd.DataFrame:
        """Build the timeline DataFrame (schema in `rawws_nb.timeline.schema`).

        `since` is an absolute row number (the DataFrame's index): only rows from there on.
        """
        skip = 0 if since is None else min(max(since - self._base, 0), len(self._t))
        n = len(self._t) - skip
        t_ns = np.frombuffer(self._t, dtype=np.int64)[skip : skip + n].copy()
        code = np.frombuffer(self._code, dtype=np.uint16)[skip : skip + n].copy()
        length = np.frombuffer(self._len, dtype=np.int64)[skip : skip + n].copy()
        message = np.frombuffer(self._msg, dtype=np.int64)[skip : skip + n].copy()
        payload = np.empty(n, dtype=object)
        payload[:] = self._payload[skip : skip + n]
        opcode = (code & 0x0F).astype(np.int8)
        base = self._base + skip

        # Text previews for text frames and the continuations of text messages.
        is_text = opcode == 1
        cont = opcode == 0
        if cont.any():
            starts = (opcode == 1) | (opcode == 2)
            kind = pd.Series(opcode[starts], index=message[starts])
            kind = kind[~kind.index.duplicated(keep="last")]
            is_text = is_text | (cont & (kind.reindex(message).to_numpy() == 1))
        text = np.full(n, None, dtype=object)
        limit = TEXT_PREVIEW * 4
        for i in np.flatnonzero(is_text):
            text[i] = payload[i][:limit].decode("utf-8", "replace")[:TEXT_PREVIEW]

        close_code = pd.array([pd.NA] * n, dtype="Int64") if n else pd.array([], dtype="Int64")
        close_reason = np.full(n, None, dtype=object)
        for i in np.flatnonzero(opcode == 8):
            p = payload[i]
            if len(p) >= 2:
                close_code[i] = int.from_bytes(p[:2], "big")
                close_reason[i] = p[2:].decode("utf-8", "replace")

        error = np.full(n, None, dtype=object)
        for row, err in self._errors.items():
            if base <= row < base + n:
                error[row - base] = err

        msg_type = np.full(n, None, dtype=object)
        fields = np.full(n, None, dtype=object)
        if self._codecs:
            self._decode_binary(opcode, code, payload, length, base)
            for row, (name, flds, err) in self._decoded.items():
                i = row - base
                if 0 <= i < n:
                    msg_type[i] = name
                    fields[i] = flds
                    if err is not None and error[i] is None:
                        error[i] = err

        t0 = self._t0 or (int(self._t[0]) if len(self._t) else 0)
        data = {
            "t": pd.DatetimeIndex(t_ns.view("datetime64[ns]")).tz_localize("UTC"),
            "t_rel": (t_ns - t0) / 1e9,
            "dir": pd.Categorical.from_codes((code >> 8).astype(np.int8), dtype=COLUMNS["dir"]),
            "opcode": pd.Categorical.from_codes(opcode, dtype=COLUMNS["opcode"]),
            "fin": (code & 0x80).astype(bool),
            "rsv1": (code & 0x40).astype(bool),
            "rsv2": (code & 0x20).astype(bool),
            "rsv3": (code & 0x10).astype(bool),
            "length": length,
            "payload": payload,
            "text": pd.array(text, dtype=COLUMNS["text"]),
            "close_code": close_code,
            "close_reason": pd.array(close_reason, dtype=COLUMNS["close_reason"]),
            "message": message,
            "error": pd.array(error, dtype=COLUMNS["error"]),
            "msg_type": pd.array(msg_type, dtype=COLUMNS["msg_type"]),
            "fields": fields,
        }
        return pd.DataFrame(data, index=pd.RangeIndex(base, base + n, name="frame"))

    def _decode_binary(
        self, opcode: np.ndarray, code: np.ndarray, payload: np.ndarray, length: np.ndarray, n: int
    ) -> None:
        from ..codec import decode_for_timeline

        base = self._base
        epochs = self._codecs
        for i in np.flatnonzero((opcode == 2) & ((code & 0x80) != 0)):
            row = base + int(i)
            if row in self._decoded:
                continue
            proto = version = None
            for start, p, v in epochs:
                if start <= row:
                    proto, version = p, v
            if proto is None:
                continue
            if int(length[i]) > len(payload[i]):
                self._decoded[row] = (None, None, f"payload capped at {len(payload[i])} bytes; not decoded")
                continue
            self._decoded[row] = decode_for_timeline(proto, version, payload[i])


def direction_name(code: int) -> str:
    return DIRECTIONS[(code >> 8) & 1]


def opcode_name(code: int) -> str:
    return OPCODE_NAMES[code & 0x0F]
