"""Compressed variants: `python -m benchmarks.compressed [--repeat N]`.

permessage-deflate on both sides: rawws_nb (`compression="deflate"`) and the websockets
client (`compression="deflate"`, its default) against one websockets echo server with
compression on, in its own process. Tests, interleaved per repetition (a fresh
connection per client and repetition):

* `pipe`: 5,000 text messages of about 200 bytes of JSON-like text, sent back to back
  while a reader checks every echo (msg/s);
* `bulk`: a 1 MiB binary message of mixed compressible content, echoed, 20 times (MB/s
  of payload, not of wire bytes).

Prints medians and the paired ratio rawws / websockets per test, and the target (>= 1.0x
each); writes `compressed.json` and `compressed.md` next to the main run's results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any

from .clients import MAX_SIZE, RawwsClient, WebsocketsClient
from .echo_servers import start_server
from .run import test_bulk, test_pipe

perf = time.perf_counter
TESTS = ("pipe", "bulk")
UNITS = {"pipe": "msg/s", "bulk": "MB/s"}
TARGET = 1.0


class RawwsDeflate(RawwsClient):
    name = "rawws-deflate"

    async def open(self, ws_url: str, tcp_port: int) -> None:
        import rawws_nb as rw

        self.session = await rw.web_socket_raw_session(
            ws_url, record=True, max_message_size=MAX_SIZE, compression="deflate"
        )
        if not self.session.extensions:
            raise RuntimeError("rawws: the server did not accept permessage-deflate")
        self._send = self.session.send
        self._receive = self.session.incoming.receive


class WebsocketsDeflate(WebsocketsClient):
    name = "websockets-deflate"

    async def open(self, ws_url: str, tcp_port: int) -> None:
        from websockets.asyncio.client import connect

        self.ws = await connect(ws_url, compression="deflate", max_size=None, ping_interval=None)
        if "permessage-deflate" not in (self.ws.response.headers.get("Sec-WebSocket-Extensions") or ""):
            raise RuntimeError("websockets: the server did not accept permessage-deflate")
        self._send = self.ws.send
        self._recv = self.ws.recv


CLIENTS = (RawwsDeflate, WebsocketsDeflate)


def _texts(n: int) -> list[str]:
    rng = random.Random(7)
    words = ["price", "volume", "bid", "ask", "symbol", "ts", "seq", "venue", "side", "qty"]
    return [
        json.dumps({w: rng.choice([rng.randint(0, 10**6), rng.random(), w.upper()]) for w in words} | {"i": i})
        for i in range(n)
    ]


def _bulk_payload(size: int = 1 << 20) -> bytes:
    rng = random.Random(11)
    text = " ".join(rng.choice(["alpha", "beta", "gamma", "delta", "omega"]) for _ in range(size // 6)).encode()
    noise = os.urandom(size // 8)
    return (text[: size - len(noise)] + noise)[:size]


async def run(repeat: int, n_pipe: int, k_bulk: int) -> dict[str, Any]:
    server = start_server("websockets-deflate")
    texts = _texts(n_pipe)
    payload = _bulk_payload()
    results: dict[str, dict[str, list[float]]] = {c.name: {t: [] for t in TESTS} for c in CLIENTS}
    try:
        for rep in range(repeat):
            order = CLIENTS if rep % 2 == 0 else tuple(reversed(CLIENTS))
            for cls in order:
                client = cls()
                await client.open(server.url, 0)
                msgs, expected = zip(*(client.prepare_text(t) for t in texts), strict=True)
                await test_pipe(client, list(msgs[:200]), list(expected[:200]))  # warm up
                seconds = await test_pipe(client, list(msgs), list(expected))
                results[cls.name]["pipe"].append(n_pipe / seconds)
                seconds = await test_bulk(client, payload, k_bulk)
                results[cls.name]["bulk"].append(k_bulk * len(payload) / seconds / 1e6)
                await client.close()
    finally:
        server.stop()
    medians = {name: {t: statistics.median(v) for t, v in tests.items()} for name, tests in results.items()}
    a, b = CLIENTS[0].name, CLIENTS[1].name
    paired = {t: statistics.median(x / y for x, y in zip(results[a][t], results[b][t], strict=True)) for t in TESTS}
    return {
        "repeat": repeat,
        "pipe_messages": n_pipe,
        "bulk_rounds": k_bulk,
        "results": results,
        "medians": medians,
        "ratio": paired,
    }


def markdown(data: dict[str, Any]) -> str:
    a, b = CLIENTS[0].name, CLIENTS[1].name
    lines = [
        "## Compressed (permessage-deflate on both sides; websockets echo server with compression)",
        "",
        f"{data['repeat']} interleaved repetitions, medians; pipe: {data['pipe_messages']:,} JSON-like text messages "
        f"(~200 B); bulk: 1 MiB mixed binary x {data['bulk_rounds']}.",
        "",
        "| client | pipe (msg/s) | bulk (MB/s) |",
        "|---|---:|---:|",
    ]
    for name in (a, b):
        m = data["medians"][name]
        lines.append(f"| {name} | {m['pipe']:,.0f} | {m['bulk']:,.0f} |")
    lines += ["", "| target | value | limit | verdict |", "|---|---:|---:|---|"]
    for t in TESTS:
        value = data["ratio"][t]
        verdict = "PASS" if value >= TARGET else "**MISS**"
        lines.append(f"| {t}({a}) vs {b} | {value:.2f}x | >= {TARGET:.2f}x | {verdict} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="3 repetitions, fewer messages")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    repeat, n_pipe, k_bulk = (3, 2000, 8) if args.quick else (args.repeat, 5000, 20)
    data = asyncio.run(run(repeat, n_pipe, k_bulk))
    text = markdown(data)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compressed.json").write_text(json.dumps(data, indent=2))
    (out / "compressed.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
