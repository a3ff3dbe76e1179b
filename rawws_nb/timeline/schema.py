"""The timeline schema: one documented place for its columns and their types.

| column | dtype | meaning |
|---|---|---|
| `t` | `datetime64[ns, UTC]` | when the frame was read from / written to the socket |
| `t_rel` | `float64` | seconds since the session opened |
| `dir` | category `tx`/`rx` | sent by us / received from the peer |
| `opcode` | category | wire opcode: continuation, text, binary, close, ping, pong, or `reserved-N` |
| `fin`, `rsv1`, `rsv2`, `rsv3` | `bool` | header bits as on the wire |
| `length` | `int64` | full payload length (even when `payload` is capped) |
| `payload` | `object` (bytes) | payload, at most `payload_cap` bytes |
| `text` | `string` | text preview for text messages (lossy, at most `TEXT_PREVIEW` chars) |
| `close_code` | `Int64` | code of a Close frame, else NA |
| `close_reason` | `string` | reason of a Close frame, else NA |
| `message` | `int64` | message index: the fragments of one message share it; a control frame is a message of its own |
| `error` | `string` | what was wrong with this frame (protocol violation, dropped connection, decode error), else NA |
| `msg_type` | `string` | codec message name (when a protocol is set), else NA |
| `fields` | `object` (dict) | codec message fields (when a protocol is set), else None |
"""

from __future__ import annotations

import pandas as pd

__all__ = ["COLUMNS", "OPCODE_NAMES", "DIRECTIONS", "TEXT_PREVIEW", "empty_timeline"]

OPCODE_NAMES: list[str] = [
    "continuation",
    "text",
    "binary",
    *(f"reserved-{i:x}" for i in range(3, 8)),
    "close",
    "ping",
    "pong",
    *(f"reserved-{i:x}" for i in range(0xB, 0x10)),
]
DIRECTIONS: list[str] = ["tx", "rx"]
TEXT_PREVIEW = 200

COLUMNS: dict[str, object] = {
    "t": pd.DatetimeTZDtype("ns", "UTC"),
    "t_rel": "float64",
    "dir": pd.CategoricalDtype(DIRECTIONS),
    "opcode": pd.CategoricalDtype(OPCODE_NAMES),
    "fin": "bool",
    "rsv1": "bool",
    "rsv2": "bool",
    "rsv3": "bool",
    "length": "int64",
    "payload": "object",
    "text": pd.StringDtype(),
    "close_code": "Int64",
    "close_reason": pd.StringDtype(),
    "message": "int64",
    "error": pd.StringDtype(),
    "msg_type": pd.StringDtype(),
    "fields": "object",
}


def empty_timeline() -> pd.DataFrame:
    """A timeline with no rows and every column typed."""
    return pd.DataFrame({name: pd.Series([], dtype=dtype) for name, dtype in COLUMNS.items()})
