"""Where `seq` time goes: one message, await its echo, against the picows echo server.

Compares, in one run, the rawws_nb client (recording on and off) and the picows client
(through the adapters `benchmarks.run` uses) with a bare asyncio TCP client that writes a
pre-built masked WebSocket frame and waits for the 18-byte echo (no WebSocket library at
all), and the same bare client against the plain TCP echo (the floor). When the bare
client is no faster than rawws_nb, the round trip is set by the machine (process wake-up
latency), not by the client's per-message work. Pin it (`taskset -c 1`) to take the
placement of the processes out of the figures.

    python -m benchmarks.seq_latency [--n 3000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import time

import rawws_nb as rw
from rawws_nb.wire import encode_frame

from .echo_servers import start_server


class _Bare(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = b""
        self.need = 0
        self.waiter: asyncio.Future[None] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.waiter is not None and len(self.buf) >= self.need and not self.waiter.done():
            self.waiter.set_result(None)


async def _bare(port: int, request: bytes, reply: int, handshake: bool, n: int, rounds: int) -> float:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_connection(_Bare, "127.0.0.1", port)
    if handshake:
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        while b"\r\n\r\n" not in proto.buf:
            await asyncio.sleep(0.005)
        proto.buf = b""
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            proto.need = reply
            proto.waiter = loop.create_future()
            transport.write(request)
            if len(proto.buf) < reply:
                await proto.waiter
            proto.buf = proto.buf[reply:]
        best = max(best, n / (time.perf_counter() - start))
    transport.close()
    return best


async def _rawws(port: int, n: int, rounds: int) -> float:
    session = await rw.web_socket_raw_session(f"ws://127.0.0.1:{port}/", record=False)
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            await session.send("x" * 16)
            await session.incoming.receive()
        best = max(best, n / (time.perf_counter() - start))
    await session.close()
    return best


async def _adapter(name: str, url: str, n: int, rounds: int) -> float:
    from .clients import CLIENTS

    client = CLIENTS[name]()
    await client.open(url, 0)
    message, _ = client.prepare_text("x" * 16)
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            await client.send_text(message)
            await client.recv(16)
        best = max(best, n / (time.perf_counter() - start))
    await client.close()
    return best


async def main(n: int, rounds: int) -> None:
    ws, tcp = start_server("picows"), start_server("tcp")
    url = f"ws://127.0.0.1:{ws.port}/"
    try:
        results = {
            "rawws_nb -> picows server (no recording)": await _rawws(ws.port, n, rounds),
            "rawws_nb, benchmark adapter (recording on)": await _adapter("rawws", url, n, rounds),
            "picows client, benchmark adapter": await _adapter("picows", url, n, rounds),
            "bare asyncio client, WebSocket frames -> picows server": await _bare(
                ws.port, encode_frame(1, b"x" * 16, mask=True), 18, True, n, rounds
            ),
            "bare asyncio client, 16 bytes -> TCP echo (the floor)": await _bare(
                tcp.port, b"x" * 16, 16, False, n, rounds
            ),
        }
    finally:
        ws.stop()
        tcp.stop()
    for name, rate in results.items():
        print(f"{name:60s} {rate:10,.0f} msg/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.rounds))
