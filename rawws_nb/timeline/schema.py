"""The timeline schema: the one documented place for its columns and their types.

A timeline is a `pandas.DataFrame` with one row per frame, both directions, in the
order the frames went over the wire. Its index (named `frame`) is the frame's absolute
number in the session: it keeps counting when old frames fall out of a bounded
recorder, so `timeline.loc[n]` names the same frame in every view and in saved files.

| column | dtype | meaning |
|---|---|---|
| `t` | `datetime64[ns, UTC]` | when the frame was read from / written to the socket |
| `t_rel` | `float64` | seconds since the session opened |
| `dir` | category `tx`/`rx` | sent by us / received from the peer |
| `opcode` | category (`OPCODE_NAMES`) | wire opcode: continuation, text, binary, close, ping, pong, or `reserved-N` |
| `fin`, `rsv1`, `rsv2`, `rsv3` | `bool` | header bits as on the wire |
| `length` | `int64` | full payload length on the wire (even when `payload` is capped) |
| `compressed` | `bool` | the frame belongs to a permessage-deflate compressed message |
| `inflated_length` | `Int64` | payload length after inflating (compressed frames), else NA |
| `automatic` | `bool` | sent by the session on its own, opted in (`auto_pong`, `ping_interval`) |
| `payload` | `object` (bytes) | payload (inflated when compressed), at most `payload_cap` bytes; control frames whole |
| `text` | `string` | text preview of each frame of a text message (continuations too), else NA |
| `close_code` | `Int64` | code of a Close frame, else NA |
| `close_reason` | `string` | reason of a Close frame with a code, else NA |
| `message` | `int64` | message index: the fragments of one message share it; a control frame is a message of its own |
| `error` | `string` | what was wrong with this frame (protocol violation, dropped connection, decode error), else NA |
| `msg_type` | `string` | codec message name (when a protocol is set), else NA |
| `fields` | `object` (dict) | codec message fields (when a protocol is set), else None |

A text preview is at most `TEXT_PREVIEW` characters, undecodable bytes shown as U+FFFD.
String columns use pandas' `StringDtype("pyarrow")` (missing values are `pd.NA`); the
codec columns are filled on the frame that completes a Binary message. `length` minus
`len(payload)` is what the payload cap cut off. `df.attrs` may carry session metadata
(`url`, `subprotocol`, `started_at`, `capacity`, `payload_cap`, `dropped`, ...; see
`rawws_nb.timeline.persist`). Parquet and HAR files keep exactly these columns (see
`persist.py` and `har.py` for how each is stored).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ._plain import DIRECTIONS, OPCODE_NAMES, TEXT_PREVIEW

__all__ = [
    "COLUMNS",
    "DIRECTIONS",
    "DIR_DTYPE",
    "OPCODE_NAMES",
    "OPCODES",
    "OPCODE_DTYPE",
    "REQUIRED",
    "SCHEMA_VERSION",
    "STRING",
    "TEXT_PREVIEW",
    "conform",
    "dir_codes",
    "empty_timeline",
    "opcode_codes",
    "rsv_codes",
    "t_ns",
]

SCHEMA_VERSION = 1

# `OPCODE_NAMES` (wire opcode -> name), `DIRECTIONS` and `TEXT_PREVIEW` live in `_plain.py`
# (no pandas there: the recorder imports them); they are part of this schema.
OPCODES: dict[str, int] = {name: i for i, name in enumerate(OPCODE_NAMES)}

STRING = pd.StringDtype("pyarrow")
DIR_DTYPE = pd.CategoricalDtype(DIRECTIONS)
OPCODE_DTYPE = pd.CategoricalDtype(OPCODE_NAMES)

COLUMNS: dict[str, Any] = {
    "t": pd.DatetimeTZDtype("ns", "UTC"),
    "t_rel": np.dtype("float64"),
    "dir": DIR_DTYPE,
    "opcode": OPCODE_DTYPE,
    "fin": np.dtype("bool"),
    "rsv1": np.dtype("bool"),
    "rsv2": np.dtype("bool"),
    "rsv3": np.dtype("bool"),
    "length": np.dtype("int64"),
    "compressed": np.dtype("bool"),
    "inflated_length": pd.Int64Dtype(),
    "automatic": np.dtype("bool"),
    "payload": np.dtype("object"),
    "text": STRING,
    "close_code": pd.Int64Dtype(),
    "close_reason": STRING,
    "message": np.dtype("int64"),
    "error": STRING,
    "msg_type": STRING,
    "fields": np.dtype("object"),
}

# What the `.rawws` accessor needs to work at all; the other columns are used when present.
REQUIRED: tuple[str, ...] = ("t", "dir", "opcode", "fin", "length", "payload", "message")


def empty_timeline() -> pd.DataFrame:
    """A timeline with no rows and every column typed."""
    df = pd.DataFrame({name: pd.Series([], dtype=dtype) for name, dtype in COLUMNS.items()})
    df.index = pd.RangeIndex(0, 0, name="frame")
    return df


def conform(df: pd.DataFrame) -> pd.DataFrame:
    """Cast the schema's columns of `df` to their schema dtypes (in place where needed).

    Columns that are missing stay missing; extra columns are left alone."""
    for name, dtype in COLUMNS.items():
        if name in df.columns and df[name].dtype != dtype:
            col = df[name]
            if name == "t":
                col = pd.to_datetime(col, utc=True).astype(dtype)
            elif dtype == np.dtype("object"):
                col = col.astype(object)
            else:
                col = col.astype(dtype)
            df[name] = col
    return df


def t_ns(col: pd.Series) -> np.ndarray:
    """A time column (`t`, or any tz-aware / naive-UTC datetime column) as int64 ns since
    the epoch (NaT as the minimum int64)."""
    if not isinstance(col.dtype, pd.DatetimeTZDtype):
        col = pd.to_datetime(col, utc=True)
    ns: np.ndarray = col.dt.tz_convert(None).to_numpy("datetime64[ns]").view(np.int64)
    return ns


def dir_codes(df: pd.DataFrame) -> np.ndarray:
    """`dir` as int8 codes (0 tx, 1 rx, -1 other), for a categorical or a plain column."""
    col = df["dir"]
    if isinstance(col.dtype, pd.CategoricalDtype) and list(col.dtype.categories) == DIRECTIONS:
        codes: np.ndarray = col.cat.codes.to_numpy(dtype=np.int8)
        return codes
    values = col.astype(object).to_numpy()
    return np.where(values == "tx", 0, np.where(values == "rx", 1, -1)).astype(np.int8)


def opcode_codes(df: pd.DataFrame) -> np.ndarray:
    """`opcode` as int8 wire opcodes (-1 unknown), for a categorical, names or ints."""
    col = df["opcode"]
    codes: np.ndarray
    if isinstance(col.dtype, pd.CategoricalDtype) and list(col.dtype.categories) == OPCODE_NAMES:
        codes = col.cat.codes.to_numpy(dtype=np.int8)
    elif pd.api.types.is_integer_dtype(col.dtype):
        codes = col.to_numpy(dtype=np.int8)
    else:
        codes = col.map(lambda v: OPCODES.get(v, -1) if isinstance(v, str) else -1).to_numpy(dtype=np.int8)
    return codes


def rsv_codes(df: pd.DataFrame) -> np.ndarray:
    """The rsv bits as one int per row (rsv1 = 4, rsv2 = 2, rsv3 = 1); missing columns are 0."""
    rsv = np.zeros(len(df), dtype=np.int64)
    for bit, name in ((4, "rsv1"), (2, "rsv2"), (1, "rsv3")):
        if name in df.columns:
            rsv |= np.where(df[name].to_numpy(dtype=bool), bit, 0)
    return rsv
