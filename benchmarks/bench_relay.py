"""Relay throughput: `python -m benchmarks.bench_relay [--messages N] [--size B] [--repeat R]`.

Three processes on 127.0.0.1: the embedded server (`rawws-nb serve`, /echo) as the
upstream, a client process (a rawws session with `record=False` that pipelines N text
messages and checks every echo), and this process running `rw.relay` between them, with
recording on (both legs, every frame) and no hook, then with a plain pass-through hook
(`lambda frame, flow, direction: frame`). Each message is forwarded twice (up and its
echo down), so forwarded frames/s = 2 N / elapsed. The same client straight to the server
gives the floor without the relay. Best of `--repeat` runs; the relay's timeline is
checked afterwards: every frame in equals every frame out, on both legs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time

import rawws_nb as rw

perf = time.perf_counter


async def _client(url: str, n: int, size: int) -> float:
    """Pipeline `n` messages of `size` bytes with a reader checking each echo; seconds."""
    session = await rw.web_socket_raw_session(url, record=False, max_queue=4096)
    message = "x" * size
    start = perf()

    async def reader() -> None:
        for _ in range(n):
            frame = await session.incoming.receive()
            if frame.data != message.encode():
                raise SystemExit(f"wrong echo: {frame!r}")

    task = asyncio.ensure_future(reader())
    for i in range(n):
        session.send_nowait(message)
        if session.writing_paused or i % 256 == 255:
            await session.drain()
            await asyncio.sleep(0)
    await task
    elapsed = perf() - start
    await session.close()
    return elapsed


def _run_client(url: str, n: int, size: int) -> float:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_relay", "--client", url, "--messages", str(n), "--size", str(size)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"client failed: {out.stderr.strip()}")
    return float(out.stdout.strip())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _through_relay(upstream: str, n: int, size: int, hook: object) -> tuple[float, int]:
    async with rw.relay(upstream, on_frame=hook, max_queue=4096) as relay:
        loop = asyncio.get_running_loop()
        elapsed = await loop.run_in_executor(None, _run_client, relay.url + "/echo", n, size)
        async with asyncio.timeout(30):
            while not all(flow.ended for flow in relay.flows):
                await asyncio.sleep(0.01)
        df = relay.timeline
    data = df[df.opcode.isin(["text", "continuation"]) & df.error.isna()]
    counts = data.groupby(["leg", "dir"], observed=True).size().to_dict()
    if set(counts.values()) != {n} or len(counts) != 4:
        raise SystemExit(f"frames lost in the relay: {counts} (expected {n} on each leg and direction)")
    return elapsed, len(df)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000, help="messages per run (default 20,000)")
    parser.add_argument("--size", type=int, default=16, help="bytes per message (default 16)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case, best kept (default 3)")
    parser.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        print(asyncio.run(_client(args.client, args.messages, args.size)))
        return 0

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "rawws_nb.cli", "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ},
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("the embedded server did not start") from None
                time.sleep(0.05)
        upstream = f"ws://127.0.0.1:{port}"
        n = args.messages
        direct = min(_run_client(upstream + "/echo", n, args.size) for _ in range(args.repeat))
        results = {}
        for name, hook in [("relay, recording, no hook", None), ("relay, recording, pass-through hook", _identity)]:
            runs = [asyncio.run(_through_relay(upstream, n, args.size, hook)) for _ in range(args.repeat)]
            results[name] = min(runs)
        print(f"# Relay throughput ({n:,} messages of {args.size} B pipelined, best of {args.repeat})\n")
        print("| path | elapsed | messages/s | frames forwarded/s | timeline rows |")
        print("|---|---:|---:|---:|---:|")
        print(f"| client -> server directly | {direct:.3f} s | {n / direct:,.0f} | - | - |")
        for name, (elapsed, rows) in results.items():
            print(f"| {name} | {elapsed:.3f} s | {n / elapsed:,.0f} | {2 * n / elapsed:,.0f} | {rows:,} |")
    finally:
        server.terminate()
        server.wait(10)
    return 0


def _identity(frame: rw.Frame, flow: object, direction: str) -> rw.Frame:
    return frame


if __name__ == "__main__":
    sys.exit(main())
