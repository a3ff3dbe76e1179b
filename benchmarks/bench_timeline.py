"""Timeline benchmarks (issue 3, item 5): `python -m benchmarks.bench_timeline [--quick]`.

* recording overhead: the pipelined 16-byte echo (send N text messages back to back while
  a reader takes the echoes) against the embedded server in this process, with the
  client's recording on and off: fresh session per run, on/off interleaved (alternating
  which goes first), repeated; the figure is 1 - the median over pairs of repetitions of
  the geometric mean of their on/off ratios (one pair of each order), so drift of the
  machine's speed and an order effect cancel out. The target uses the event loop
  thread's CPU time (client and server both run on it); the wall-clock figure of the
  same runs is given too (equal on an idle machine, noisier on a shared one);
* bytes per recorded frame: tracemalloc growth while recording frames with 16-byte
  payloads, minus the payload bytes themselves (so: columns, list slot and the bytes
  object header), and the columns alone (payload objects allocated beforehand); and
  for sent 16-byte messages (`stage_tx`, as a session records them: payload included) and
  for a received flood (batches of 192 frames whose payloads the reader joined, as a
  session records them), everything kept, payload bytes included;
* the recorder's hot path: nanoseconds per frame of `Recorder.stage_tx` (a timestamp on
  every 16th frame, as for sends within one event-loop turn) and `Recorder.stage_rx`
  (batches of 16 frames), the staged rows materialised included (`count()` at the end),
  and of `Recorder.add` (one explicit row: errors, imports);
* time to build the DataFrame for 1,000,000 frames (16-byte text frames, as the pipe
  test records them, and 16-byte binary frames: text frames also get a text preview):
  the first build and the median of the next ones;
* Parquet write and read of that 1,000,000-frame timeline with
  `rawws_nb.timeline.save_timeline` / `read_timeline` (lossless: checked).

`run(quick=False) -> dict`; run alone, it prints a table (`--json`: and the figures as
JSON, which `benchmarks.run` reads, running this in a process of its own).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from typing import Any

from rawws_nb.frames import RX, Text, header_code, make_frame
from rawws_nb.timeline import Recorder, read_timeline, save_timeline

__all__ = ["run"]

FRAMES = 1_000_000
MEM_FRAMES = 200_000
PAYLOAD = 16
TEXT, BINARY = 1, 2

TARGETS = {
    "recording_overhead": ("<=", 0.05),
    "bytes_per_frame": ("<=", 120),
    "dataframe_build_s": ("<=", 0.5),
}

LABELS = {
    "recording_overhead": "recording overhead, pipelined 16-byte echo, CPU time (1 - on/off)",
    "recording_overhead_wall": "recording overhead, same runs, wall clock (1 - on/off)",
    "pipe_on_msgs_s": "pipe, recording on (msg/s, median)",
    "pipe_off_msgs_s": "pipe, recording off (msg/s, median)",
    "bytes_per_frame": "bytes per recorded frame, 16-byte payload (excluding the 16 payload bytes)",
    "bytes_per_frame_columns": "bytes per recorded frame, columns only (payload object not counted)",
    "bytes_per_frame_flood": "bytes per recorded frame, received flood of 16-byte frames (payload included)",
    "bytes_per_frame_sent": "bytes per recorded frame, 16-byte messages sent (stage_tx; payload included)",
    "stage_tx_ns_per_frame": "Recorder.stage_tx (send path), ns per frame",
    "stage_rx_ns_per_frame": "Recorder.stage_rx (receive path, batches of 16), ns per frame",
    "record_ns_per_frame": "Recorder.add, ns per frame",
    "frames": "frames in the DataFrame and Parquet figures",
    "dataframe_build_s": "DataFrame build, text frames (s, median)",
    "dataframe_build_first_s": "DataFrame build, text frames, first build (s)",
    "dataframe_build_binary_s": "DataFrame build, binary frames (s, median)",
    "parquet_write_s": "Parquet write (s)",
    "parquet_read_s": "Parquet read (s)",
    "parquet_mb": "Parquet file size (MB)",
}


# -- recording overhead --------------------------------------------------------------------


async def _pipe(url: str, record: bool, texts: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds to send `texts` back to back and receive every echo (checked).

    CPU time is this thread's: the event loop runs the client and the server, so it is
    all the work, without the time the thread waited for a CPU on a shared machine."""
    import rawws_nb as rw

    session = await rw.web_socket_raw_session(url, record=record, timeline_capacity=4 * len(texts) + 16)
    send, receive = session.send, session.incoming.receive
    expected = [t.encode() for t in texts]

    async def reader() -> None:
        for want in expected:
            got = (await receive()).data
            if got != want:
                raise AssertionError(f"echo {got!r} != {want!r}")

    try:
        for t in texts[:200]:  # warm-up
            await send(t)
        for _ in range(200):
            await receive()
        task = asyncio.ensure_future(reader())
        await asyncio.sleep(0)
        start, cpu = time.perf_counter(), time.thread_time()
        for t in texts:
            await send(t)
        await task
        return time.perf_counter() - start, time.thread_time() - cpu
    finally:
        await session.close()


async def _overhead(n: int, repeat: int) -> dict[str, Any]:
    import rawws_nb as rw

    texts = [f"m{i:015d}" for i in range(n)]
    runs: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    async with rw.serve() as server:
        url = server.url + "/echo"
        for rep in range(repeat):
            for record in (True, False) if rep % 2 == 0 else (False, True):
                gc.collect()
                runs[record].append(await _pipe(url, record, texts))

    def overhead(k: int) -> tuple[float, list[float]]:
        ratios = [off[k] / on[k] for on, off in zip(runs[True], runs[False], strict=True)]  # rate on / rate off
        # Pairs alternate which run goes first; the geometric mean of two neighbouring pairs
        # (one of each order) cancels an order effect, the median of those resists outliers.
        balanced = [(ratios[i] * ratios[i + 1]) ** 0.5 for i in range(0, len(ratios) - 1, 2)]
        return 1 - statistics.median(balanced), ratios

    wall, wall_ratios = overhead(0)
    cpu, cpu_ratios = overhead(1)
    return {
        "recording_overhead": round(cpu, 4),
        "recording_overhead_wall": round(wall, 4),
        "pipe_on_msgs_s": round(n / statistics.median(w for w, _ in runs[True])),
        "pipe_off_msgs_s": round(n / statistics.median(w for w, _ in runs[False])),
        "overhead_ratios_cpu": [round(r, 4) for r in cpu_ratios],
        "overhead_ratios_wall": [round(r, 4) for r in wall_ratios],
        "pipe_messages": n,
        "pipe_repeat": repeat,
    }


# -- recorder ------------------------------------------------------------------------------


def _payloads(n: int) -> list[bytes]:
    return [b"p%015d" % i for i in range(n)]


def _fill(rec: Recorder, opcode: int, payloads: list[bytes], t0: int) -> float:
    """Record frames alternating tx/rx (an echo), as a session would. Returns seconds."""
    add = rec.add
    codes = (header_code(opcode), header_code(opcode, direction=RX))
    start = time.perf_counter()
    for i, p in enumerate(payloads):
        add(t0 + i * 1000, codes[i & 1], p, i >> 1)
    return time.perf_counter() - start


def _stage(payloads: list[bytes], t0: int) -> tuple[float, float]:
    """Seconds to record `payloads` as sent frames with `stage_tx` (a timestamp every 16th
    frame), then as received ones with `stage_rx` (batches of 16), each in a fresh recorder."""
    n = len(payloads)
    tx = Recorder(capacity=n)
    stage_tx = tx.stage_tx
    codes = [header_code(TEXT, length=len(p)) for p in payloads]
    gc.collect()
    start = time.perf_counter()
    for i, p in enumerate(payloads):
        stage_tx(None if i & 15 else t0 + i, codes[i], p)
    tx.count()  # the staged rows materialised too: recording's whole cost, wherever it falls
    tx_s = time.perf_counter() - start
    del tx
    rx = Recorder(capacity=n)
    frames = [make_frame(Text, p) for p in payloads]
    rx_codes = [c | RX for c in codes]
    batches = [(rx_codes[i : i + 16], frames[i : i + 16]) for i in range(0, n, 16)]
    stage_rx = rx.stage_rx
    gc.collect()
    start = time.perf_counter()
    for i, (c, f) in enumerate(batches):
        stage_rx(t0 + i, c, f)
    rx.count()
    return tx_s, time.perf_counter() - start


def _bytes_per_frame(n: int) -> tuple[float, float]:
    t0 = time.time_ns()
    codes = (header_code(TEXT), header_code(TEXT, direction=RX))
    gc.collect()
    # With the payload objects: what recording keeps alive that would otherwise be freed.
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    rec = Recorder(capacity=n)
    for i in range(n):
        rec.add(t0 + i, codes[i & 1], b"p%015d" % i, i >> 1)
    with_payload = (tracemalloc.get_traced_memory()[0] - base) / n - PAYLOAD
    tracemalloc.stop()
    del rec
    gc.collect()
    # Columns only: payload objects exist already (shared with the application).
    payloads = _payloads(n)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    rec = Recorder(capacity=n)
    _fill(rec, TEXT, payloads, t0)
    columns = (tracemalloc.get_traced_memory()[0] - base) / n
    tracemalloc.stop()
    return with_payload, columns


def _bytes_per_flood_frame(n: int, batch: int = 192) -> float:
    """What recording a received flood keeps per frame (the frames themselves freed)."""
    t0 = time.time_ns()
    payload = b"x" * PAYLOAD
    codes = [header_code(TEXT, length=PAYLOAD, direction=RX)] * batch
    frames = [make_frame(Text, payload)] * batch
    from array import array

    codes_array = array("q", codes)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    rec = Recorder(capacity=n)
    for i in range(n // batch):
        rec.stage_rx(t0 + i, codes_array, frames, 0, bytearray(payload * batch))
    rec.count()
    kept = (tracemalloc.get_traced_memory()[0] - base) / (n // batch * batch)
    tracemalloc.stop()
    return kept


def _bytes_per_sent_frame(n: int) -> float:
    """What recording sent messages keeps per frame: each payload a fresh object, dropped
    after it was staged (as a session's send drops the bytes it encoded); a timestamp on
    every 16th frame (the first write of an event-loop turn)."""
    t0 = time.time_ns()
    code = header_code(TEXT, length=PAYLOAD)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    rec = Recorder(capacity=n)
    stage_tx = rec.stage_tx
    for i in range(n):
        stage_tx(None if i & 15 else t0 + i, code, b"p%015d" % i)
    rec.count()
    kept = (tracemalloc.get_traced_memory()[0] - base) / n
    tracemalloc.stop()
    return kept


def _build_times(rec: Recorder, repeat: int) -> tuple[float, float, Any]:
    times = []
    df = None
    for _ in range(repeat + 1):
        df = None
        gc.collect()
        start = time.perf_counter()
        df = rec.to_dataframe()
        times.append(time.perf_counter() - start)
    return times[0], statistics.median(times[1:]), df


def run(quick: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"labels": LABELS, "notes": []}

    n_pipe, rep = (5_000, 10) if quick else (10_000, 30)
    out.update(asyncio.run(_overhead(n_pipe, rep)))
    print(
        f"  recording overhead {out['recording_overhead'] * 100:.1f}% CPU, "
        f"{out['recording_overhead_wall'] * 100:.1f}% wall "
        f"(pipe {out['pipe_on_msgs_s']:,} msg/s on, {out['pipe_off_msgs_s']:,} off)",
        flush=True,
    )

    with_payload, columns = _bytes_per_frame(MEM_FRAMES // 4 if quick else MEM_FRAMES)
    out["bytes_per_frame"] = round(with_payload, 1)
    out["bytes_per_frame_columns"] = round(columns, 1)
    print(f"  {with_payload:.1f} bytes per frame + payload ({columns:.1f} for the columns alone)", flush=True)
    out["bytes_per_frame_flood"] = round(_bytes_per_flood_frame(MEM_FRAMES // 4 if quick else MEM_FRAMES), 1)
    print(f"  {out['bytes_per_frame_flood']:.1f} bytes per frame of a received flood, payload included", flush=True)
    out["bytes_per_frame_sent"] = round(_bytes_per_sent_frame(MEM_FRAMES // 4 if quick else MEM_FRAMES), 1)
    print(f"  {out['bytes_per_frame_sent']:.1f} bytes per frame of sent 16-byte messages, payload included", flush=True)

    n = FRAMES
    payloads = _payloads(n)
    t0 = time.time_ns()
    rec = Recorder(capacity=n)
    gc.collect()
    out["record_ns_per_frame"] = round(_fill(rec, TEXT, payloads, t0) / n * 1e9, 1)
    tx_s, rx_s = _stage(payloads, t0)
    out["stage_tx_ns_per_frame"] = round(tx_s / n * 1e9, 1)
    out["stage_rx_ns_per_frame"] = round(rx_s / n * 1e9, 1)
    out["frames"] = n
    first, median, df = _build_times(rec, 3 if quick else 5)
    out["dataframe_build_first_s"] = round(first, 4)
    out["dataframe_build_s"] = round(median, 4)
    if len(df) != n:
        raise AssertionError(f"DataFrame has {len(df)} rows, recorded {n}")
    print(
        f"  stage_tx {out['stage_tx_ns_per_frame']:.0f} ns/frame, stage_rx {out['stage_rx_ns_per_frame']:.0f}, "
        f"add {out['record_ns_per_frame']:.0f}; DataFrame of {n:,} text frames "
        f"{median:.3f} s (first {first:.3f} s)",
        flush=True,
    )

    rec_b = Recorder(capacity=n)
    _fill(rec_b, BINARY, payloads, t0)
    _, out["dataframe_build_binary_s"], df_b = _build_times(rec_b, 3)
    out["dataframe_build_binary_s"] = round(out["dataframe_build_binary_s"], 4)
    del rec_b, df_b
    print(f"  DataFrame of {n:,} binary frames {out['dataframe_build_binary_s']:.3f} s", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "timeline.parquet")
        gc.collect()
        start = time.perf_counter()
        save_timeline(rec, path)
        out["parquet_write_s"] = round(time.perf_counter() - start, 4)
        out["parquet_mb"] = round(os.path.getsize(path) / 1e6, 1)
        gc.collect()
        start = time.perf_counter()
        back = read_timeline(path)
        out["parquet_read_s"] = round(time.perf_counter() - start, 4)
    if len(back) != n or not back["payload"].equals(df["payload"]) or not back["t"].equals(df["t"]):
        raise AssertionError("Parquet round trip lost frames")
    print(
        f"  Parquet write {out['parquet_write_s']:.3f} s, read {out['parquet_read_s']:.3f} s, {out['parquet_mb']} MB",
        flush=True,
    )
    out["notes"].append(
        "Parquet via rawws_nb.timeline.save_timeline / read_timeline (zstd; payload as binary, lossless)."
    )
    out["targets"] = {
        key: {"value": out[key], "op": op, "limit": limit, "met": out[key] <= limit}
        for key, (op, limit) in TARGETS.items()
    }
    return out


def table(out: dict[str, Any]) -> str:
    """The figures as a Markdown table, targets marked."""
    lines = ["| figure | value | target |", "|---|---:|---|"]
    for key, label in LABELS.items():
        if key not in out:
            continue
        value = out[key]
        if key.startswith("recording_overhead"):
            text = f"{value * 100:.1f}%"
        elif isinstance(value, float):
            text = f"{value:,.3f}" if value < 100 else f"{value:,.1f}"
        else:
            text = f"{value:,}"
        target = ""
        if key in out.get("targets", {}):
            t = out["targets"][key]
            limit = f"{t['limit'] * 100:.0f}%" if key == "recording_overhead" else f"{t['limit']}"
            target = f"{t['op']} {limit}: {'PASS' if t['met'] else 'MISS'}"
        lines.append(f"| {label} | {text} | {target} |")
    return "\n".join(lines)


if __name__ == "__main__":
    result = run(quick="--quick" in sys.argv[1:])
    print()
    print(table(result))
    if "--json" in sys.argv[1:]:
        print(json.dumps({k: v for k, v in result.items() if k != "labels"}, indent=1))
