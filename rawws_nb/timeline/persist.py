"""Timelines on disk: Parquet (pyarrow), lossless for every column.

```python
path = save_timeline(session, "run.parquet")     # or a timeline DataFrame, or a Recorder
df = read_timeline("run.parquet")                 # same columns, dtypes and index
df.attrs["url"], df.attrs["started_at"]           # session metadata
```

How each column is stored: `t` as `timestamp[ns, UTC]`; `dir` and `opcode` as
dictionaries (categoricals, all categories kept); `payload` as `binary` (the kept bytes,
exactly); string columns as `large_string`; `close_code` as nullable int64; `fields`
(codec dicts) as JSON text, with `bytes` values written as `{"$bytes": "<base64>"}`
(lists, str, int, float, bool and None round-trip exactly; a tuple comes back as a list;
other objects as `{"$repr": "..."}`); the index as column `frame`. Pandas' own metadata
is stored too, so `pd.read_parquet` also works (`fields` then stays JSON text).

Session metadata goes in the file's key-value metadata under `rawws_nb`, as JSON:
`url`, `subprotocol`, `client`, `started_at` (ISO 8601) and `started_at_ns`, `capacity`,
`payload_cap`, `dropped` (frames the ring dropped before the first saved one), `total`,
`protocol` / `protocol_version` (codec), `close_code` / `close_reason`, `frames`,
`schema_version`, `rawws_nb_version`, `saved_at`, plus whatever was in `df.attrs` and the
`metadata` argument. `read_timeline` puts it all back in `df.attrs`.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..version import __version__
from ._columns import sparse_strings
from .schema import COLUMNS, SCHEMA_VERSION, STRING, conform

__all__ = [
    "decode_fields",
    "encode_fields",
    "read_metadata",
    "read_timeline",
    "save_timeline",
    "timeline_metadata",
    "timeline_of",
    "to_arrow",
]

META_KEY = b"rawws_nb"


# -- the `fields` column as JSON --------------------------------------------------------------


def _default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    if isinstance(value, np.generic):
        return value.item()
    return {"$repr": repr(value)}


def _hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        if "$bytes" in obj:
            return base64.b64decode(obj["$bytes"])
    return obj


def encode_fields(value: Any) -> str | None:
    """One `fields` value as JSON text (None stays None)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return json.dumps(value, default=_default, ensure_ascii=False, separators=(",", ":"))


def decode_fields(text: str | None) -> Any:
    """The inverse of `encode_fields`."""
    if text is None:
        return None
    return json.loads(text, object_hook=_hook)


def _fields_column(values: np.ndarray) -> Any:
    present = np.flatnonzero(pd.notna(values)).tolist()
    return sparse_strings(len(values), present, [encode_fields(values[i]) for i in present])


# -- metadata ---------------------------------------------------------------------------------


def _iso(ns: int) -> str:
    return str(pd.Timestamp(ns, tz="UTC").isoformat())


def timeline_metadata(source: Any) -> dict[str, Any]:
    """Session metadata for a session (`RawSession`), a `Recorder`, or a DataFrame (its
    `attrs`)."""
    if isinstance(source, pd.DataFrame):
        return dict(source.attrs)
    meta: dict[str, Any] = {}
    rec: Any = getattr(source, "recorder", None) if not hasattr(source, "to_dataframe") else source
    if hasattr(source, "url"):
        meta["url"] = source.url
        meta["subprotocol"] = getattr(source, "subprotocol", None)
        meta["client"] = getattr(source, "client", None)
        started = getattr(source, "started_at", None)
        if started:
            meta["started_at_ns"] = int(started)
            meta["started_at"] = _iso(int(started))
        proto = getattr(source, "protocol", None)
        if proto is not None:
            meta["protocol"] = getattr(proto, "name", None) or repr(proto)
            version = getattr(source, "protocol_version", None)
            meta["protocol_version"] = None if version is None else ".".join(str(v) for v in version)
        reason = getattr(source, "close_reason", None)
        if reason is not None:
            meta["close_code"] = int(reason.code)
            meta["close_reason"] = reason.message
        state = getattr(source, "state", None)
        if state is not None:
            meta["state"] = getattr(state, "value", str(state))
        extensions = getattr(source, "extensions", None)
        if extensions:
            meta["extensions"] = list(extensions)
        handshake = getattr(source, "handshake", None)
        if handshake is not None and hasattr(handshake, "as_dict"):
            meta["handshake"] = handshake.as_dict()  # request and response heads, step timings
    if rec is not None:
        meta["capacity"] = rec.capacity
        meta["payload_cap"] = rec.payload_cap
        meta["dropped"] = rec.dropped
        meta["total"] = rec.total
        t0 = int(getattr(rec, "t0", None) or 0)
        if "started_at_ns" not in meta and t0:
            meta["started_at_ns"] = t0
            meta["started_at"] = _iso(t0)
    return meta


def timeline_of(source: Any) -> pd.DataFrame:
    """The timeline DataFrame of a session, a `Recorder` or a timeline DataFrame (itself)."""
    if isinstance(source, pd.DataFrame):
        return source
    if hasattr(source, "to_dataframe"):  # a Recorder
        return source.to_dataframe()
    if hasattr(source, "timeline"):  # a session
        return source.timeline
    raise TypeError(f"expected a session, a Recorder or a timeline DataFrame, not {type(source).__name__}")


def _jsonable(meta: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in meta.items():
        if isinstance(v, pd.Timestamp):
            v = v.isoformat()
        try:
            json.dumps(v)
        except TypeError:
            v = repr(v)
        out[str(k)] = v
    return out


# -- save / read ------------------------------------------------------------------------------


def to_arrow(df: pd.DataFrame, metadata: dict[str, Any] | None = None) -> pa.Table:
    """The Arrow table `save_timeline` writes (see the module docstring)."""
    out = df.copy(deep=False)
    if "fields" in out.columns:
        out["fields"] = _fields_column(out["fields"].to_numpy(dtype=object))
    if "payload" in out.columns and len(out):
        out["payload"] = pd.arrays.ArrowExtensionArray(pa.array(out["payload"].tolist(), pa.binary()))
    if out.index.name is None:
        out.index = out.index.rename("frame")
    table = pa.Table.from_pandas(out, preserve_index=True)
    meta = {
        **_jsonable(metadata or {}),
        "frames": len(df),
        "schema_version": SCHEMA_VERSION,
        "rawws_nb_version": __version__,
        "saved_at": _iso(time.time_ns()),
    }
    return table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: json.dumps(meta).encode()})


def save_timeline(source: Any, path: str | Path, *, metadata: dict[str, Any] | None = None, **options: Any) -> Path:
    """Save a timeline as Parquet: `source` is a session, a `Recorder` or a timeline
    DataFrame. Session metadata (see the module docstring) and `metadata` go in the file.
    `options` go to `pyarrow.parquet.write_table` (default `compression="zstd"`)."""
    df = timeline_of(source)
    meta = {**timeline_metadata(df), **(timeline_metadata(source) if source is not df else {}), **(metadata or {})}
    table = to_arrow(df, meta)
    options.setdefault("compression", "zstd")
    path = Path(path)
    pq.write_table(table, path, **options)
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The session metadata of a saved timeline, without reading its rows."""
    schema = pq.read_schema(path)
    raw = (schema.metadata or {}).get(META_KEY)
    return json.loads(raw) if raw else {}


def read_timeline(path: str | Path) -> pd.DataFrame:
    """Read a timeline saved by `save_timeline`: the same columns, dtypes and index
    (`frame`), session metadata in `df.attrs`. A Parquet file with the timeline's columns
    written by something else is read and cast to the schema as far as it goes."""
    table = pq.read_table(path)
    meta_raw = (table.schema.metadata or {}).get(META_KEY)
    meta = json.loads(meta_raw) if meta_raw else {}
    fields = None
    if "fields" in table.column_names:
        col = table.column("fields")
        fields = col if pa.types.is_string(col.type) or pa.types.is_large_string(col.type) else None
    payload = table.column("payload") if "payload" in table.column_names else None
    drop = [c for c in ("fields", "payload") if c in table.column_names]
    df = table.drop_columns(drop).to_pandas(types_mapper=_types_mapper)
    if payload is not None:
        df["payload"] = payload.to_numpy() if len(payload) else np.empty(0, dtype=object)
    if "fields" in drop:
        if fields is not None:
            values = np.full(len(df), None, dtype=object)
            for i, text in _present(fields):
                values[i] = decode_fields(text)
        else:
            values = np.asarray(table.column("fields").to_pylist(), dtype=object)
        df["fields"] = values
    order = [c for c in COLUMNS if c in df.columns] + [c for c in df.columns if c not in COLUMNS]
    df = conform(df[order])
    idx = df.index
    if len(idx) and idx.dtype.kind == "i" and (np.diff(idx.to_numpy()) == 1).all():
        df.index = pd.RangeIndex(int(idx[0]), int(idx[0]) + len(idx), name=idx.name)
    elif not len(idx):
        df.index = pd.RangeIndex(0, 0, name=idx.name or "frame")
    df.attrs = meta
    return df


def _present(col: pa.ChunkedArray) -> list[tuple[int, str]]:
    import pyarrow.compute as pc

    idx = pc.indices_nonzero(pc.is_valid(col)).to_numpy()
    if not len(idx):
        return []
    return list(zip(idx.tolist(), col.take(pa.array(idx)).to_pylist(), strict=True))


def _types_mapper(t: pa.DataType) -> Any:
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return STRING
    return None
