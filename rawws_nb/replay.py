"""Replay a recorded timeline's sent frames against a server (a tool on top of the
connect API and the timeline).

```python
session = await rw.replay(rw.read_timeline("run.parquet"), server.url + "/echo", speed=2.0)
session.timeline            # what happened this time, recorded as usual
session.replay_stats        # {"frames": sent, "skipped": tx rows with errors, "capped": ...}
```
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .connect import web_socket_raw_session
from .errors import InvalidSend, SessionClosed
from .frames import FRAME_CLASSES, Frame
from .timeline.schema import dir_codes, opcode_codes, rsv_codes, t_ns
from .wire import encode_frame

if TYPE_CHECKING:
    from .session import RawSession

__all__ = ["TxFrame", "replay", "tx_frames"]

# One sent frame of a timeline: (t_ns, opcode, fin, rsv, payload, length, error).
TxFrame = tuple[int, int, bool, int, bytes, int, bool]


def tx_frames(timeline: pd.DataFrame) -> list[TxFrame]:
    """The sent frames of a timeline: `(t_ns, opcode, fin, rsv, payload, length, error)`,
    `error` True for a row with an error."""
    df = timeline[dir_codes(timeline) == 0]
    if not len(df):
        return []
    t = t_ns(df["t"])
    opcode = opcode_codes(df)
    fin = df["fin"].to_numpy(dtype=bool)
    rsv = rsv_codes(df)
    length = df["length"].to_numpy(dtype=np.int64)
    error = df["error"].notna().to_numpy() if "error" in df.columns else np.zeros(len(df), bool)
    return [
        (int(t[i]), int(opcode[i]), bool(fin[i]), int(rsv[i]), bytes(p), int(length[i]), bool(error[i]))
        for i, p in enumerate(df["payload"].tolist())
    ]


async def replay(
    timeline: pd.DataFrame,
    url: str,
    speed: float = 1.0,
    *,
    close: bool = True,
    drain: bool = True,
    linger: float = 0.0,
    **connect: Any,
) -> RawSession:
    """Send the recorded `tx` frames of `timeline` to `url`, with their original spacing
    divided by `speed` (`math.inf`: back to back), and return the new session (its
    `timeline` records this run).

    Each frame goes out with `session.send` as recorded (opcode, fin, rsv bits, payload:
    fragments stay fragments, continuations continue); a frame `send` refuses (an invalid
    close code, a reserved opcode, a frame after Close, ...) goes out with `send_raw`,
    exactly as recorded. Frames whose payload was capped by the recorder are sent with the
    kept bytes only (a `UserWarning` says how many); `tx` rows with an error (incomplete
    frames written with `send_raw`) are skipped. If the peer ends the connection, the
    replay stops there.

    `drain` consumes `incoming` meanwhile (the frames are still recorded), so a chatty
    peer cannot stall the replay; `linger` waits that many seconds after the last frame;
    `close` then closes the session (answering the peer's Close if it sent one).
    `connect` goes to `rawws_nb.web_socket_raw_session` (`timeline_capacity`, `tls`, ...).
    The returned session's `replay_stats` says how many frames were sent, skipped, capped.
    """
    if not speed > 0:
        raise ValueError("speed must be > 0 (math.inf: no waiting)")
    frames = tx_frames(timeline)
    session = await web_socket_raw_session(url, **connect)
    loop = asyncio.get_running_loop()

    async def consume() -> None:
        with contextlib.suppress(SessionClosed):
            async for _ in session.incoming:
                pass

    drainer = session.launch(consume()) if drain else None
    current: type[Frame] | None = None  # the data message being sent, for continuations
    capped = skipped = 0
    start = loop.time()
    first = frames[0][0] if frames else 0
    try:
        for t_ns, op, fin, rsv, payload, length, error in frames:
            if error:
                skipped += 1
                continue
            if length != len(payload):
                capped += 1
            if not math.isinf(speed):
                delay = start + (t_ns - first) / 1e9 / speed - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            cls = current if op == 0 else FRAME_CLASSES.get(op)
            bits = {"rsv1": bool(rsv & 4), "rsv2": bool(rsv & 2), "rsv3": bool(rsv & 1)}
            frame: Frame | None = None
            if cls is not None:
                frame = cls(payload, fin=fin, **bits)
            try:
                if frame is None:
                    raise InvalidSend("not a frame send() takes")
                await session.send(frame)
                if op in (1, 2):
                    current = None if fin else cls
                elif op == 0 and fin:
                    current = None
            except InvalidSend:
                await session.send_raw(encode_frame(op, payload, fin=fin, rsv=rsv, mask=True))
        if linger > 0:
            await asyncio.sleep(linger)
    except SessionClosed:
        pass
    finally:
        if capped:
            warnings.warn(
                f"replay: {capped} frame(s) had capped payloads in the recording; sent with the kept bytes only",
                UserWarning,
                stacklevel=2,
            )
    if close:
        with contextlib.suppress(SessionClosed):
            await session.close()
        if drainer is not None:
            with contextlib.suppress(asyncio.CancelledError, SessionClosed):
                await drainer
    # `RawSession` does not declare `replay_stats`: set as an instance attribute.
    vars(session)["replay_stats"] = {"frames": len(frames) - skipped, "skipped": skipped, "capped": capped}
    return session
