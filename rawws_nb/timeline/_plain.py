"""The pandas-free part of the timeline: the schema's plain constants and a numpy helper.

The recorder imports only this (and `rawws_nb.frames`), so `import rawws_nb.timeline.recorder`
loads neither pandas nor pyarrow; `schema.py` documents the constants and re-exports them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DIRECTIONS", "OPCODE_NAMES", "TEXT_PREVIEW", "last_value_lookup"]

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


def last_value_lookup(keys: np.ndarray, values: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query, the value of the last entry with that key: `(values, found)`."""
    if len(keys) == 0 or len(queries) == 0:
        return np.zeros(len(queries), dtype=values.dtype), np.zeros(len(queries), dtype=bool)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    pos = np.searchsorted(sorted_keys, queries, side="right") - 1
    found = pos >= 0
    pos = np.where(found, pos, 0)
    found &= sorted_keys[pos] == queries
    return np.where(found, values[order][pos], 0).astype(values.dtype), found
