"""Column builders shared by the recorder, the accessor and the file readers.

Everything here works on whole columns (numpy, Arrow): a timeline of a million frames
is built without a Python loop per row, except for the rare rows that need one (text
that is not valid UTF-8, fragmented messages, codec decoding).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

__all__ = ["decode_utf8", "payload_column", "sparse_strings", "string_array"]

_CHUNK = 4096


def string_array(arr: pa.Array | pa.ChunkedArray) -> pd.api.extensions.ExtensionArray:
    """A pandas `StringDtype("pyarrow")` array over an Arrow string array (no copy)."""
    if arr.type != pa.large_string():
        arr = arr.cast(pa.large_string())
    return pd.arrays.ArrowStringArray(arr)


def sparse_strings(n: int, positions: Sequence[int] | np.ndarray, values: Sequence[str | None]) -> Any:
    """A string column of `n` NAs with `values` at `positions`."""
    if len(positions) == 0:
        return string_array(pa.nulls(n, pa.large_string()))
    idx = np.full(n, -1, dtype=np.int64)
    idx[np.asarray(positions, dtype=np.int64)] = np.arange(len(positions))
    taken = pa.array(list(values), pa.large_string()).take(pa.array(idx, mask=idx < 0))
    return string_array(taken)


def _decode_slow(values: list[bytes | None], limit: int | None) -> list[str | None]:
    out: list[str | None] = []
    for v in values:
        if v is None:
            out.append(None)
        elif limit is None:
            out.append(v.decode("utf-8", "replace"))
        else:
            out.append(v[: limit * 4].decode("utf-8", "replace")[:limit])
    return out


def decode_utf8(
    payloads: Sequence[bytes] | np.ndarray, mask: np.ndarray | None = None, limit: int | None = None
) -> pa.Array:
    """Decode `payloads` as UTF-8 into an Arrow `large_string` array (invalid bytes as
    U+FFFD, like `bytes.decode("utf-8", "replace")`), at most `limit` characters each.

    Rows where `mask` is True are null. Valid UTF-8 goes through Arrow in one pass; only
    blocks of 4096 rows holding invalid bytes fall back to Python, row by row."""
    if isinstance(payloads, np.ndarray):
        payloads = payloads.tolist()
    n = len(payloads)
    if n == 0:
        return pa.array([], pa.large_string())
    if mask is not None and mask.all():
        return pa.nulls(n, pa.large_string())
    raw = pa.array(payloads, pa.large_binary(), mask=mask)
    try:
        out = raw.cast(pa.large_string())
    except pa.ArrowInvalid:
        parts = []
        for start in range(0, n, _CHUNK):
            piece = raw.slice(start, _CHUNK)
            try:
                parts.append(piece.cast(pa.large_string()))
            except pa.ArrowInvalid:
                parts.append(pa.array(_decode_slow(piece.to_pylist(), limit), pa.large_string()))
        out = pa.concat_arrays(parts)
    if limit is not None and n:
        import pyarrow.compute as pc

        longest = pc.max(pc.binary_length(raw)).as_py()
        if longest is not None and longest > limit:  # characters <= bytes: only then can a value be too long
            out = pc.utf8_slice_codeunits(out, 0, limit)
    return out


def payload_column(payloads: list[bytes]) -> np.ndarray:
    out = np.empty(len(payloads), dtype=object)
    out[:] = payloads
    return out
