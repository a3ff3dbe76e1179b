"""Timelines as HAR: Chrome DevTools' `_webSocketMessages`, both ways.

Chrome's HAR export ("Save all as HAR") puts a WebSocket's messages in its entry's
`_webSocketMessages` list: `{"type": "send" | "receive", "time": <epoch seconds, float>,
"opcode": <int>, "data": <str>}`, where `data` is the text for opcode 1 and base64 for
every other opcode (Chrome DevTools Protocol's `payloadData` rule). Chrome records whole
messages (opcodes 1 and 2); a rawws timeline has every frame, so `to_har` writes one
entry per frame with its wire opcode (0 continuation, 8 close, 9 ping, 10 pong too) and
keeps what Chrome's fields cannot say in underscore extension keys, which Chrome and HAR
viewers ignore:

| key | when | meaning |
|---|---|---|
| `_fin` | always | the frame's fin bit |
| `_rsv` | when set | rsv bits as an int (rsv1 = 4) |
| `_length` | when capped or compressed | full payload length on the wire (`data` holds the kept bytes) |
| `_compressed`, `_inflated_length` | compressed frames | permessage-deflate: `data` is inflated |
| `_automatic` | when set | sent by the session on its own (`auto_pong`, `ping_interval`) |
| `_encoding` | `"base64"` for a text frame that is not valid UTF-8 on its own | |
| `_t_ns` | always | exact timestamp (ns since the epoch); `time` is rounded to ~0.2 µs |
| `_message`, `_frame` | always | message index and frame number |
| `_error` | when set | the row's `error` |
| `_msg_type`, `_fields` | when set | codec columns (`fields` as in Parquet: bytes as `{"$bytes": base64}`) |

The entry also carries `_rawws` (session metadata) besides the usual `request` /
`response` (101) / `startedDateTime`. `read_har` reads both: a file written here comes
back equal frame by frame (`t`, every column, the index); a file from Chrome gives one
frame per message (fin set, message numbers counted as a session would).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..frames import AUTOMATIC, RX, TX, header_code
from ..version import __version__
from ._columns import sparse_strings
from .persist import decode_fields, encode_fields, timeline_metadata, timeline_of
from .recorder import Recorder
from .schema import dir_codes, opcode_codes, rsv_codes, t_ns

__all__ = ["read_har", "to_har"]


def _iso(ns: int) -> str:
    return str(pd.Timestamp(ns, tz="UTC").isoformat()).replace("+00:00", "Z")


def _headers(items: Any) -> list[dict[str, str]]:
    return [{"name": str(k), "value": str(v)} for k, v in (items or [])]


def to_har(
    timeline: Any,
    path: str | Path | None = None,
    *,
    url: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The timeline (a session, a `Recorder` or a timeline DataFrame) as a HAR log with
    one WebSocket entry; written to `path` (JSON) when given. Returns the HAR dict."""
    df = timeline_of(timeline)
    meta = {**timeline_metadata(df), **(timeline_metadata(timeline) if timeline is not df else {})}
    meta.update(metadata or {})
    url = url or meta.get("url") or "ws://unknown/"
    t = t_ns(df["t"])
    started = meta.get("started_at_ns")
    if started is None and len(t):  # `t_rel` counts from the start: recover it (exact to the ns)
        started = int(t[0]) - round(float(df["t_rel"].iloc[0]) * 1e9) if "t_rel" in df.columns else int(t[0])
    started = int(started or 0)
    meta["started_at_ns"] = started
    direction = dir_codes(df)
    opcode = opcode_codes(df)
    fin = df["fin"].to_numpy(dtype=bool)
    rsv = rsv_codes(df)
    length = df["length"].to_numpy(dtype=np.int64)
    message = df["message"].to_numpy(dtype=np.int64)
    errors = df["error"].to_numpy(dtype=object, na_value=None) if "error" in df.columns else [None] * len(df)
    msg_types = df["msg_type"].to_numpy(dtype=object, na_value=None) if "msg_type" in df.columns else None
    fields = df["fields"].to_numpy(dtype=object) if "fields" in df.columns else None
    compressed = df["compressed"].to_numpy(dtype=bool) if "compressed" in df.columns else np.zeros(len(df), bool)
    automatic = df["automatic"].to_numpy(dtype=bool) if "automatic" in df.columns else np.zeros(len(df), bool)
    inflated = (
        df["inflated_length"].to_numpy(dtype=object, na_value=None)
        if "inflated_length" in df.columns
        else [None] * len(df)
    )
    msgs = []
    for i, (label, payload) in enumerate(zip(df.index.tolist(), df["payload"].tolist(), strict=True)):
        op = int(opcode[i])
        data = bytes(payload)
        item: dict[str, Any] = {"type": "send" if direction[i] == 0 else "receive", "time": int(t[i]) / 1e9}
        item["opcode"] = op
        if op == 1:
            try:
                item["data"] = data.decode("utf-8")
            except UnicodeDecodeError:
                item["data"] = base64.b64encode(data).decode("ascii")
                item["_encoding"] = "base64"
        else:
            item["data"] = base64.b64encode(data).decode("ascii")
        item["_fin"] = bool(fin[i])
        if rsv[i]:
            item["_rsv"] = int(rsv[i])
        if length[i] != len(data):
            item["_length"] = int(length[i])
        if automatic[i]:
            item["_automatic"] = True
        if compressed[i]:
            item["_compressed"] = True
            inflated_length = inflated[i]
            if inflated_length is not None:
                item["_inflated_length"] = int(inflated_length)
        item["_t_ns"] = int(t[i])
        item["_message"] = int(message[i])
        item["_frame"] = int(label)
        if errors[i] is not None:
            item["_error"] = errors[i]
        if msg_types is not None and msg_types[i] is not None:
            item["_msg_type"] = msg_types[i]
        encoded = encode_fields(fields[i]) if fields is not None else None
        if encoded is not None:
            item["_fields"] = json.loads(encoded)
        msgs.append(item)
    end = int(t[-1]) if len(t) else started
    entry = {
        "startedDateTime": _iso(started),
        "time": max(end - started, 0) / 1e6,
        "request": {
            "method": "GET",
            "url": url,
            "httpVersion": "HTTP/1.1",
            "headers": _headers(getattr(timeline, "request_headers", None)),
            "queryString": [],
            "cookies": [],
            "headersSize": -1,
            "bodySize": 0,
        },
        "response": {
            "status": 101,
            "statusText": "Switching Protocols",
            "httpVersion": "HTTP/1.1",
            "headers": _headers(getattr(timeline, "response_headers", None)),
            "cookies": [],
            "content": {"size": 0, "mimeType": "x-unknown"},
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": 0,
        },
        "cache": {},
        "timings": {"blocked": -1, "dns": -1, "connect": -1, "send": 0, "wait": 0, "receive": 0, "ssl": -1},
        "_resourceType": "websocket",
        "_rawws": {k: v for k, v in meta.items() if _is_json(v)},
        "_webSocketMessages": msgs,
    }
    har = {
        "log": {
            "version": "1.2",
            "creator": {"name": "rawws_nb", "version": __version__},
            "pages": [],
            "entries": [entry],
        }
    }
    if path is not None:
        Path(path).write_text(json.dumps(har, ensure_ascii=False, indent=1), encoding="utf-8")
    return har


def _is_json(v: Any) -> bool:
    try:
        json.dumps(v)
    except TypeError:
        return False
    return True


def _entries(har: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in har.get("log", {}).get("entries", []) if "_webSocketMessages" in e]


def read_har(source: str | Path | dict[str, Any], *, url: str | None = None, entry: int = 0) -> pd.DataFrame:
    """A timeline from a HAR file (path, JSON text or dict) with `_webSocketMessages`.

    Picks the `entry`-th WebSocket entry, or the first whose URL contains `url`. Chrome's
    `error` messages (opcode -1) are left out (counted in `attrs["har_errors"]`). The
    result has the timeline schema and `attrs` (`url`, `started_at`, ... and `source`)."""
    if isinstance(source, dict):
        har = source
    else:
        text = str(source)
        if not text.lstrip().startswith("{"):
            text = Path(source).read_text(encoding="utf-8")
        har = json.loads(text)
    entries = _entries(har)
    if url is not None:
        entries = [e for e in entries if url in e.get("request", {}).get("url", "")]
    if len(entries) <= entry:
        raise ValueError(
            f"no WebSocket entry {entry}" + (f" with a URL containing {url!r}" if url else "") + " in this HAR"
        )
    e = entries[entry]
    meta = dict(e.get("_rawws") or {})
    meta.setdefault("url", e.get("request", {}).get("url"))
    messages = e["_webSocketMessages"]
    started = meta.get("started_at_ns")
    if started is None and e.get("startedDateTime"):
        started = pd.Timestamp(e["startedDateTime"]).tz_convert("UTC").value
        meta["started_at_ns"] = int(started)
    rec = Recorder(capacity=max(len(messages), 1), payload_cap=1 << 62, t0=int(started or 0))
    frames: list[int] = []
    open_msg = {TX: -1, RX: -1}
    seq = -1
    skipped = 0
    decoded: dict[int, tuple[str | None, Any]] = {}
    for m in messages:
        kind = m.get("type")
        op = int(m.get("opcode", 1))
        if kind not in ("send", "receive") or not 0 <= op < 16:
            skipped += 1
            continue
        d = TX if kind == "send" else RX
        raw = m.get("data", "") or ""
        if op == 1 and m.get("_encoding") != "base64":
            data = raw.encode("utf-8")
        else:
            data = base64.b64decode(raw)
        # Chrome's `time` is a float (~0.2 us resolution at today's epoch): read to the microsecond.
        t_ns = int(m["_t_ns"]) if "_t_ns" in m else round(float(m.get("time", 0)) * 1e6) * 1000
        fin = bool(m.get("_fin", True))
        if "_message" in m:
            msg = int(m["_message"])
        elif op == 0:
            msg = open_msg[d]
        else:
            seq += 1
            msg = seq
            if op < 8:
                open_msg[d] = msg
        compressed = bool(m.get("_compressed", False))
        code = header_code(op, fin, int(m.get("_rsv", 0)), direction=d, compressed=compressed)
        if m.get("_automatic"):
            code |= AUTOMATIC
        length = int(m.get("_length", len(data)))
        if compressed:
            inflated = int(m.get("_inflated_length", len(data)))
            rec.add_error(t_ns, code, data, length, msg, m.get("_error"), inflated=inflated)
        elif "_error" in m or length != len(data):
            rec.add_error(t_ns, code, data, length, msg, m.get("_error"))  # error None: only `length` differs
        else:
            rec.add(t_ns, code, data, msg)
        if "_msg_type" in m or "_fields" in m:
            decoded[len(frames)] = (m.get("_msg_type"), m.get("_fields"))
        frames.append(int(m["_frame"]) if "_frame" in m else len(frames))
    df = rec.to_dataframe()
    if decoded:
        pos = list(decoded)
        df["msg_type"] = sparse_strings(len(df), pos, [decoded[i][0] for i in pos])
        values = df["fields"].to_numpy(dtype=object).copy()
        for i in pos:
            raw = decoded[i][1]
            values[i] = None if raw is None else decode_fields(json.dumps(raw))
        df["fields"] = values
    if frames and frames != list(range(len(frames))):
        idx = np.asarray(frames, dtype=np.int64)
        if (np.diff(idx) == 1).all():
            df.index = pd.RangeIndex(int(idx[0]), int(idx[0]) + len(idx), name="frame")
        else:
            df.index = pd.Index(idx, name="frame")
    if started:
        meta["started_at"] = pd.Timestamp(int(started), tz="UTC").isoformat()
    meta["har_errors"] = skipped
    meta["source"] = "har"
    df.attrs = meta
    return df
