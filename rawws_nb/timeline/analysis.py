"""Timeline analysis: plain functions on a timeline DataFrame (the `.rawws` accessor's
implementation). Each takes any DataFrame with the schema's columns (`REQUIRED` at
least), live or loaded from a file, and returns a new DataFrame; none modifies its input.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ._columns import decode_utf8, sparse_strings, string_array
from ._plain import last_value_lookup
from .recorder import Decoded, Decoder, codec_decoder, decode_safely
from .schema import COLUMNS, DIR_DTYPE, OPCODE_DTYPE, OPCODE_NAMES, REQUIRED, dir_codes, opcode_codes, t_ns

__all__ = [
    "HexDump",
    "check_columns",
    "decode",
    "hexdump",
    "latency",
    "message_kinds",
    "messages",
    "rtt",
    "summary",
]


def check_columns(df: pd.DataFrame, needed: Iterable[str] = REQUIRED) -> None:
    """Raise `AttributeError` naming the missing columns when `df` is not a timeline."""
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise AttributeError(
            f"not a rawws timeline: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"(a timeline has {', '.join(COLUMNS)}; see rawws_nb.timeline.schema)"
        )


def _t_ns(df: pd.DataFrame) -> np.ndarray:
    return t_ns(df["t"])


_NAT = np.iinfo(np.int64).min  # NaT as int64 ns (no unitless `np.datetime64("NaT")`: deprecated)


def _utc(ns: np.ndarray, missing: np.ndarray | None = None) -> pd.api.extensions.ExtensionArray:
    values = ns.astype(np.int64)  # a copy
    if missing is not None:
        values[missing] = _NAT
    return pd.array(values.view("datetime64[ns]")).tz_localize("UTC")


def message_kinds(df: pd.DataFrame) -> np.ndarray:
    """The opcode of the message each row belongs to: continuation frames get their first
    frame's (text 1 / binary 2), found in `df`, else guessed from the `text` column (a
    preview is only recorded for text messages), else 0 (unknown)."""
    opcode = opcode_codes(df)
    kind = opcode.copy()
    cont = np.flatnonzero(opcode == 0)
    if len(cont):
        message = df["message"].to_numpy(dtype=np.int64)
        starts = (opcode == 1) | (opcode == 2)
        found_kind, found = last_value_lookup(message[starts], opcode[starts], message[cont])
        kind[cont] = found_kind
        if not found.all() and "text" in df.columns:
            lost = cont[~found]
            kind[lost] = np.where(df["text"].iloc[lost].notna().to_numpy(), 1, 0)
    return kind


# -- latency -------------------------------------------------------------------------


def latency(df: pd.DataFrame) -> pd.DataFrame:
    """Ping -> Pong round trips, matched by payload, both directions.

    One row per Ping, in order: `dir` says who pinged (`tx`: our Ping, answered by the
    peer's Pong; `rx`: the peer's Ping, answered by our Pong), `payload`, `ping` and `pong`
    (frame numbers), `sent_at`, `answered_at`, `rtt` (seconds) and `t_rel` of the Ping.
    A Pong answers the oldest unanswered Ping with the same payload sent the other way
    before it; unanswered Pings have NA / NaT / NaN; unsolicited Pongs are not listed.
    """
    check_columns(df)
    opcode = opcode_codes(df)
    rows = np.flatnonzero((opcode == 9) | (opcode == 10))
    direction = dir_codes(df)
    t = _t_ns(df)
    payload = df["payload"].to_numpy()
    index = df.index.to_numpy()
    pending: dict[tuple[int, bytes], deque[int]] = {}
    pings: list[int] = []
    answer: dict[int, int] = {}
    for i in rows.tolist():
        d = int(direction[i])
        p = bytes(payload[i])
        if opcode[i] == 9:
            pings.append(i)
            pending.setdefault((d, p), deque()).append(i)
        else:
            queue = pending.get((1 - d, p))
            if queue:
                answer[queue.popleft()] = i
    ping = np.array(pings, dtype=np.int64)
    pong = np.array([answer.get(i, -1) for i in pings], dtype=np.int64)
    unanswered = pong < 0
    sent = t[ping] if len(ping) else np.zeros(0, np.int64)
    got = np.where(unanswered, 0, t[np.where(unanswered, 0, pong)]) if len(ping) else np.zeros(0, np.int64)
    rtt_s = np.where(unanswered, np.nan, (got - sent) / 1e9)
    t0 = _t0(df, t)
    return pd.DataFrame(
        {
            "dir": pd.Categorical.from_codes(direction[ping], dtype=DIR_DTYPE),
            "payload": pd.array(payload[ping] if len(ping) else [], dtype=object),
            "ping": index[ping] if len(ping) else np.zeros(0, np.int64),
            "pong": _nullable_ints(index, pong),
            "sent_at": _utc(sent),
            "answered_at": _utc(got, unanswered),
            "rtt": rtt_s,
            "t_rel": (sent - t0) / 1e9,
        }
    )


def _nullable_ints(values: np.ndarray, pos: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """`values[pos]` as Int64, NA where `pos` is negative."""
    missing = pos < 0
    taken = np.asarray(values)[np.where(missing, 0, pos)] if len(pos) else np.zeros(0, np.int64)
    return pd.arrays.IntegerArray(taken.astype(np.int64), missing)


def _t0(df: pd.DataFrame, t: np.ndarray) -> int:
    """The session start (ns) `t_rel` counts from, as recorded in the timeline."""
    if len(t) == 0:
        return 0
    if "t_rel" in df.columns:
        return int(t[0] - round(float(df["t_rel"].iloc[0]) * 1e9))
    return int(t[0])


# -- messages --------------------------------------------------------------------------


def messages(df: pd.DataFrame, control: bool = False) -> pd.DataFrame:
    """Fragments reassembled: one row per message, in the order messages started.

    Index `message`. Columns: `dir`; `type` (opcode category: `text`/`binary`, or
    `continuation` when the message's first frame is not in the timeline, and the control
    opcodes with `control=True`); `frames`; `length` (payload bytes on the wire, whole);
    `first`/`last` (times of its first and last frame) and `t_rel` (of the first);
    `duration` (seconds); `complete` (its first frame and a final `fin` frame are there);
    `capped` (some payload was cut by the recorder's `payload_cap`); `payload` (the kept
    bytes joined); `text` (text messages, decoded, invalid bytes as U+FFFD); `error`
    (the first error of its frames); `first_frame`/`last_frame` (frame numbers).
    Control frames interleaved between fragments are messages of their own: they do not
    break the reassembly.
    """
    check_columns(df)
    opcode = opcode_codes(df)
    kind = message_kinds(df)
    keep = np.ones(len(df), dtype=bool) if control else ((opcode >= 0) & (opcode < 8))
    pos = np.flatnonzero(keep)
    message = df["message"].to_numpy(dtype=np.int64)
    ids = message[pos]
    # Rows of each message together (in timeline order within it), groups by message id.
    srt = pos[np.argsort(ids, kind="stable")]
    sid = message[srt]
    starts = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]]) if len(srt) else np.zeros(0, np.int64)
    counts = np.diff(np.r_[starts, len(srt)]).astype(np.int64)
    group = np.repeat(np.arange(len(starts)), counts)
    first_g, last_g = srt[starts], srt[starts + counts - 1]
    # Output order: by first frame.
    out_order = np.argsort(first_g, kind="stable")
    out_pos = np.empty(len(starts), dtype=np.int64)
    out_pos[out_order] = np.arange(len(starts))
    first, last = first_g[out_order], last_g[out_order]
    frames = counts[out_order]

    length = df["length"].to_numpy(dtype=np.int64)
    payload = df["payload"].to_numpy()
    kept = np.fromiter((len(p) for p in payload), dtype=np.int64, count=len(payload))
    fin = df["fin"].to_numpy(dtype=bool)
    t = _t_ns(df)
    size = np.zeros(len(starts), np.int64)
    capped = np.zeros(len(starts), bool)
    if len(starts):
        size = np.add.reduceat(length[srt], starts)[out_order]
        capped = (np.add.reduceat((kept < length)[srt].astype(np.int64), starts) > 0)[out_order]

    joined = np.empty(len(first), dtype=object)
    single = frames == 1
    joined[single] = payload[first[single]]
    for g in np.flatnonzero(counts > 1).tolist():
        joined[out_pos[g]] = b"".join(payload[srt[starts[g] : starts[g] + counts[g]]].tolist())

    mtype = kind[first]
    is_text = mtype == 1
    if is_text.any():
        text = string_array(decode_utf8(joined, ~is_text))
    else:
        text = string_array(pa.nulls(len(first), pa.large_string()))
    error = string_array(pa.nulls(len(first), pa.large_string()))
    if "error" in df.columns:
        err = df["error"].to_numpy(dtype=object, na_value=None)[srt]
        bad = np.flatnonzero(pd.notna(err))
        if len(bad):
            groups, at = np.unique(group[bad], return_index=True)  # the first error of each message
            error = sparse_strings(len(first), out_pos[groups], err[bad[at]].tolist())
    t_first, t_last = t[first], t[last]
    index = df.index.to_numpy()
    return pd.DataFrame(
        {
            "dir": pd.Categorical.from_codes(np.clip(dir_codes(df)[first], -1, 1), dtype=DIR_DTYPE),
            "type": pd.Categorical.from_codes(mtype, dtype=OPCODE_DTYPE),
            "frames": frames,
            "length": size,
            "first": _utc(t_first),
            "last": _utc(t_last),
            "t_rel": (t_first - _t0(df, t)) / 1e9,
            "duration": (t_last - t_first) / 1e9,
            "complete": (opcode[first] != 0) & fin[last],
            "capped": capped,
            "payload": joined,
            "text": text,
            "error": error,
            "first_frame": index[first],
            "last_frame": index[last],
        },
        index=pd.Index(message[first], name="message"),
    )


# -- request / response ----------------------------------------------------------------

Selector = str | Callable[[pd.DataFrame], Any] | None


def _select(msgs: pd.DataFrame, sel: Selector, default: str) -> np.ndarray:
    if sel is None:
        sel = default
    if isinstance(sel, str):
        selected: np.ndarray
        if sel in ("tx", "rx"):
            selected = (msgs["dir"] == sel).to_numpy(dtype=bool)
        else:
            selected = msgs.index.isin(msgs.query(sel).index)
        return selected
    mask = sel(msgs)
    return np.asarray(mask, dtype=bool)


def rtt(
    df: pd.DataFrame,
    request: Selector = "tx",
    response: Selector = "rx",
    key: Callable[[bytes], Hashable | None] | None = None,
) -> pd.DataFrame:
    """Request/response latency over data messages (fragments reassembled).

    `request` / `response` choose messages: `"tx"` / `"rx"` (the defaults), a
    `DataFrame.query` string on `messages()` (e.g. `"dir == 'tx' and length > 100"`),
    or a function of the `messages()` frame returning a boolean mask. `key(payload)`
    matches a response to the oldest unanswered request with the same key before it
    (for example a message id: `key=lambda p: json.loads(p)["id"]`; a key of None leaves
    the message out); without `key`, responses answer requests in order (first in,
    first out).

    One row per request: `key`, `request` / `response` (message numbers), `sent_at` (its
    last frame), `answered_at` (the response's last frame), `rtt` seconds (NaN when
    unanswered), `t_rel` of the request.
    """
    check_columns(df)
    msgs = messages(df)
    is_req = _select(msgs, request, "tx")
    is_resp = _select(msgs, response, "rx")
    payloads = msgs["payload"].to_numpy()
    last = t_ns(msgs["last"])
    ids = msgs.index.to_numpy()
    reqs: list[int] = []
    keys: list[Any] = []
    answered: dict[int, int] = {}
    pending: dict[Any, deque[int]] = {}
    for j in range(len(msgs)):
        r, s = bool(is_req[j]), bool(is_resp[j])
        if not (r or s):
            continue
        k = key(payloads[j]) if key is not None else None
        if key is not None and k is None:
            continue
        if s:
            queue = pending.get(k)
            if queue:
                answered[queue.popleft()] = j
                continue
        if r:
            reqs.append(j)
            keys.append(k)
            pending.setdefault(k, deque()).append(j)
    req = np.array(reqs, dtype=np.int64)
    resp = np.array([answered.get(j, -1) for j in reqs], dtype=np.int64)
    missing = resp < 0
    safe = np.where(missing, 0, resp)
    sent = last[req] if len(req) else np.zeros(0, np.int64)
    got = np.where(missing, 0, last[safe]) if len(req) else np.zeros(0, np.int64)
    return pd.DataFrame(
        {
            "key": pd.array(keys if key is not None else [None] * len(req), dtype=object),
            "request": ids[req] if len(req) else np.zeros(0, np.int64),
            "response": _nullable_ints(ids, resp),
            "sent_at": _utc(sent),
            "answered_at": _utc(got, missing),
            "rtt": np.where(missing, np.nan, (got - sent) / 1e9),
            "t_rel": msgs["t_rel"].to_numpy()[req] if len(req) else np.zeros(0),
        }
    )


# -- summary ---------------------------------------------------------------------------


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Frames and bytes per direction and opcode, with totals and rates.

    Index (`dir`, `opcode`), with `all` rows per direction and overall. Columns: `frames`,
    `bytes` (payload bytes on the wire), `payload_bytes` (after inflating compressed
    frames), `compression` (`bytes / payload_bytes`: below 1 where permessage-deflate
    saved bytes), `errors`, `first`/`last` (times), `frames_per_s` and `bytes_per_s` (over
    the whole timeline's duration). `attrs` holds `duration` (seconds from the first to
    the last frame), `start`, `end`.
    """
    check_columns(df)
    t = _t_ns(df)
    direction = np.asarray(DIR_DTYPE.categories)[np.clip(dir_codes(df), 0, 1)]
    opcode = opcode_codes(df)
    names = np.array([*OPCODE_NAMES, "unknown"], dtype=object)[np.where(opcode < 0, 16, opcode)]
    err = df["error"].notna().to_numpy() if "error" in df.columns else np.zeros(len(df), bool)
    wire = df["length"].to_numpy(dtype=np.int64)
    plain = wire
    if "inflated_length" in df.columns:
        inflated = df["inflated_length"].to_numpy(dtype=np.float64, na_value=np.nan)
        plain = np.where(np.isnan(inflated), wire, np.nan_to_num(inflated)).astype(np.int64)
    work = pd.DataFrame({"dir": direction, "opcode": names, "bytes": wire, "plain": plain, "err": err, "t": t})
    duration = (int(t.max()) - int(t.min())) / 1e9 if len(t) else 0.0
    parts = []
    for keys in (["dir", "opcode"], ["dir"], []):
        if keys:
            g = work.groupby(keys, sort=True)
            agg = g.agg(
                frames=("bytes", "size"),
                bytes=("bytes", "sum"),
                plain=("plain", "sum"),
                errors=("err", "sum"),
                first=("t", "min"),
                last=("t", "max"),
            )
        else:
            agg = pd.DataFrame(
                {
                    "frames": [len(work)],
                    "bytes": [int(work["bytes"].sum())],
                    "plain": [int(work["plain"].sum())],
                    "errors": [int(err.sum())],
                    "first": [int(t.min()) if len(t) else 0],
                    "last": [int(t.max()) if len(t) else 0],
                }
            )
        agg = agg.reset_index() if keys else agg
        for k in ("dir", "opcode"):
            if k not in agg.columns:
                agg[k] = "all"
        parts.append(agg)
    out = pd.concat(parts, ignore_index=True)
    order = {"tx": 0, "rx": 1, "all": 2}
    out = out.sort_values(
        ["dir", "opcode"], key=lambda s: s.map(order) if s.name == "dir" else s.map(lambda v: (v == "all", v))
    )
    empty = out["frames"].to_numpy() == 0
    result = pd.DataFrame(
        {
            "frames": out["frames"].to_numpy(dtype=np.int64),
            "bytes": out["bytes"].to_numpy(dtype=np.int64),
            "payload_bytes": out["plain"].to_numpy(dtype=np.int64),
            "compression": np.divide(
                out["bytes"].to_numpy(dtype=np.float64),
                out["plain"].to_numpy(dtype=np.float64),
                out=np.full(len(out), np.nan),
                where=out["plain"].to_numpy() > 0,
            ),
            "errors": out["errors"].to_numpy(dtype=np.int64),
            "first": _utc(out["first"].to_numpy(dtype=np.int64), empty),
            "last": _utc(out["last"].to_numpy(dtype=np.int64), empty),
            "frames_per_s": out["frames"].to_numpy() / duration if duration > 0 else np.nan,
            "bytes_per_s": out["bytes"].to_numpy() / duration if duration > 0 else np.nan,
        },
        index=pd.MultiIndex.from_arrays([out["dir"].to_numpy(), out["opcode"].to_numpy()], names=["dir", "opcode"]),
    )
    if not len(df):
        result = result.iloc[:0]
    result.attrs = {
        "duration": duration,
        "start": pd.Timestamp(int(t.min()), tz="UTC") if len(t) else None,
        "end": pd.Timestamp(int(t.max()), tz="UTC") if len(t) else None,
    }
    return result


# -- hexdump ---------------------------------------------------------------------------


class HexDump(str):
    """Text that shows as itself (not quoted) in a notebook, in a `<pre>` block."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        import html

        return f"<pre style='font-size:12px;line-height:1.3'>{html.escape(str(self))}</pre>"


def hexdump(
    df: pd.DataFrame, rows: Any = None, *, width: int = 16, limit: int | None = 256, max_frames: int = 50
) -> HexDump:
    """A hex + ASCII dump of frames: a header line per frame (number, direction, opcode,
    flags, length, time), then offset / hex / ASCII lines of its kept payload (at most
    `limit` bytes each). `rows`: frame numbers (an int, a list, a slice of labels) or a
    boolean mask; default all frames, at most `max_frames` of them."""
    from ..frames import hexdump as dump

    check_columns(df)
    if rows is None:
        sel = df
    elif isinstance(rows, int | np.integer):
        sel = df.loc[[rows]]
    else:
        sel = df.loc[rows]
    more = len(sel) - max_frames
    if more > 0:
        sel = sel.iloc[:max_frames]
    opcode = opcode_codes(sel)
    names = [OPCODE_NAMES[o] if 0 <= o < 16 else "?" for o in opcode.tolist()]
    t_rel = sel["t_rel"].to_numpy() if "t_rel" in sel.columns else None
    errors = sel["error"].to_numpy(dtype=object, na_value=None) if "error" in sel.columns else None
    out: list[str] = []
    for j, (label, row) in enumerate(zip(sel.index.tolist(), sel.itertuples(index=False), strict=True)):
        bits = [f"#{label}", str(row.dir), names[j]]
        if row.fin:
            bits.append("fin")
        for r in ("rsv1", "rsv2", "rsv3"):
            if r in sel.columns and bool(getattr(row, r)):
                bits.append(r)
        data = bytes(row.payload)
        bits.append(f"{int(row.length)} B" + (f" ({len(data)} kept)" if len(data) < int(row.length) else ""))
        if t_rel is not None:
            bits.append(f"t={t_rel[j]:+.6f} s")
        bits.append(f"message {int(row.message)}")
        if errors is not None and errors[j] is not None:
            bits.append(f"error: {errors[j]}")
        out.append(" ".join(bits))
        if data:
            out.append(dump(data, width=width, limit=limit))
    if more > 0:
        out.append(f"… {more} more frames (pass rows= or max_frames=)")
    return HexDump("\n".join(out))


# -- codec decoding --------------------------------------------------------------------


def decode(df: pd.DataFrame, protocol: Any, version: Any = None) -> pd.DataFrame:
    """A copy of `df` with `msg_type`, `fields` and `error` filled by decoding each Binary
    message (fragments joined).

    `protocol` is used duck-typed: a codec (an object with `decode(data)` returning a
    message with `name` and `fields`, and `for_version(version)` when `version` is given;
    None: its newest; see `recorder.codec_decoder`), or a decoder function as
    `Recorder.set_decoder` takes (`data -> (msg_type, fields, error)`; `version` must then
    be None), e.g. `functools.partial(rawws_nb.codec.decode_for_timeline, protocol, version)`
    for the codec's timeline conventions (negotiation frames, several messages per frame),
    as a live session decodes. What decoding raises becomes the error text.

    The result goes on the frame that completes the message; earlier values of
    `msg_type`/`fields` are replaced; an existing `error` is kept (a decode error fills
    `error` only where it was empty). Messages whose payload was capped, or whose first
    frame is missing, get an error instead of a guess."""
    decoder = _decoder(protocol, version)
    check_columns(df)
    out = df.copy()
    msgs = messages(df)
    binary = msgs[(msgs["type"] == "binary") & msgs["complete"]]
    n = len(df)
    pos_of = pd.Series(np.arange(n), index=df.index)
    fields = np.full(n, None, dtype=object)
    names: dict[int, str] = {}
    errors: dict[int, str] = {}
    for label, data, capped in zip(
        binary["last_frame"].tolist(), binary["payload"].tolist(), binary["capped"].tolist(), strict=True
    ):
        i = int(pos_of[label])
        if capped:
            errors[i] = "payload capped; not decoded"
            continue
        name, flds, err = decode_safely(decoder, bytes(data))
        if name is not None:
            names[i] = name
        fields[i] = flds
        if err is not None:
            errors[i] = err
    unknown = msgs[(msgs["type"] == "continuation") & msgs["text"].isna()]
    for label in unknown["last_frame"].tolist():
        errors.setdefault(int(pos_of[label]), "message type unknown (first frame not in the timeline); not decoded")
    out["msg_type"] = sparse_strings(n, list(names), list(names.values()))
    out["fields"] = fields
    old = out["error"].to_numpy(dtype=object, na_value=None) if "error" in out.columns else [None] * n
    merged = {i: e for i, e in enumerate(old) if e is not None}
    for i, e in errors.items():
        merged.setdefault(i, e)
    out["error"] = sparse_strings(n, list(merged), list(merged.values()))
    return out


def _nothing(data: bytes) -> Decoded:
    return None, None, None


def _decoder(protocol: Any, version: Any) -> Decoder:
    """`protocol` as a decoder function (see `decode`); None decodes nothing."""
    if protocol is None:
        return _nothing
    if hasattr(protocol, "decode"):
        return codec_decoder(protocol, version)
    if callable(protocol):
        if version is not None:
            raise TypeError("version applies to a codec; a decoder function decodes as it is")
        decoder: Decoder = protocol
        return decoder
    raise TypeError(
        f"expected a codec (with a decode method) or a decoder function, not {type(protocol).__name__}"
    )
