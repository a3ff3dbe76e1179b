"""Capture read speed: `python -m benchmarks.bench_pcap [--frames N]`.

A session's timeline of N text frames each way (an echo of 64-byte messages) is written
with `rw.to_pcapng`, then read back by `rw.read_pcap` (TCP reassembly, every frame parsed
by the core, one DataFrame) and by `tshark -T fields` (opcode and payload length of every
WebSocket frame) on the same file. Prints frames/s and MB/s of capture for both and the
ratio (goal: faster than tshark); best of 3 runs each.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import rawws_nb as rw

perf = time.perf_counter


async def _record(n: int) -> rw.RawSession:
    async with rw.serve() as server:
        session = await rw.web_socket_raw_session(server.url + "/echo", max_queue=4096)
        message = "x" * 64
        for start in range(0, n, 1000):
            for _ in range(min(1000, n - start)):
                session.send_nowait(message)
            for _ in range(min(1000, n - start)):
                await session.incoming.receive()
        await session.close()
    return session


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20_000, help="text frames each way (default 20,000)")
    args = parser.parse_args(argv)
    session = asyncio.run(_record(args.frames))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.pcapng"
        t = perf()
        rw.to_pcapng(session, path)
        write_s = perf() - t
        size_mb = path.stat().st_size / 1e6
        ours = []
        for _ in range(3):
            t = perf()
            df = rw.read_pcap(path)
            ours.append(perf() - t)
        frames = len(df)
        tshark = shutil.which("tshark")
        theirs = []
        counted = None
        if tshark is not None:
            cmd = [tshark, "-r", str(path), "-Y", "websocket", "-T", "fields"]
            cmd += ["-e", "websocket.opcode", "-e", "websocket.payload_length"]
            for _ in range(3):
                t = perf()
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                theirs.append(perf() - t)
            counted = sum(len(line.split("\t")[0].split(",")) for line in out.splitlines() if line)
    best, tbest = min(ours), (min(theirs) if theirs else None)
    print("## Capture read speed (best of 3)\n")
    print(f"{frames:,} frames, {size_mb:.1f} MB pcapng (written by rw.to_pcapng in {write_s:.2f} s)\n")
    print("| reader | seconds | frames/s | MB/s |")
    print("|---|---:|---:|---:|")
    print(f"| rw.read_pcap | {best:.3f} | {frames / best:,.0f} | {size_mb / best:.1f} |")
    if tbest is not None:
        rate = f"{frames / tbest:,.0f} | {size_mb / tbest:.1f}"
        print(f"| tshark -T fields ({counted:,} frames) | {tbest:.3f} | {rate} |")
        verdict = "PASS" if best < tbest else "**MISS**"
        print(f"\nread_pcap vs tshark: {tbest / best:.2f}x faster (goal > 1.00x): {verdict}")
    else:
        print("\ntshark is not installed (make capture-deps): no comparison")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
