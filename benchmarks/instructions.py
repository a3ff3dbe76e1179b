"""Instructions per round trip, counted by callgrind: a figure a busy machine cannot move.

The throughput benchmarks time the wall clock, and on a shared VM the spread between
repetitions is often +-10-35%: a client 3% ahead of another can read as 5% behind. This
counts the instructions the client process executes (valgrind's callgrind: the same
count whatever else the machine runs) for `seq`, one 16-byte text message and its echo
at a time against the picows echo server (in its own process, not counted), each client
through the adapter `benchmarks.run` uses. A run of `--n` round trips and one of
`3 * --n` are counted; their difference over `2 * --n` is the figure, so start-up and the
connection cancel out.

What it is not: a time. Instructions leave out cache misses, page faults, system calls'
kernel work and the wait for the peer; the ratio says how much work each client's own
code does per message, which is the part of `seq` a client controls.

    python -m benchmarks.instructions [--clients rawws,rawws-norec,picows] [--n 2000] [--json]

Needs valgrind (`make bench-instructions` installs it); about a minute per client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_CLIENTS = ("rawws", "rawws-norec", "picows", "aiohttp", "websockets")
# The same count on every run: no hash randomisation, no spinning BLAS threads (numpy
# starts them at import; under valgrind their busy-waiting would be counted).
_ENV = {"PYTHONHASHSEED": "0", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


def _child(port: int, name: str, n: int) -> None:
    from .seq_latency import _adapter

    asyncio.run(_adapter(name, f"ws://127.0.0.1:{port}/", n, 1))


def _count(port: int, name: str, n: int, workdir: Path) -> int:
    """The instructions of one client process making `n` round trips."""
    out = workdir / f"{name}.{n}.callgrind"
    cmd = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        sys.executable,
        "-m",
        "benchmarks.instructions",
        "--child",
        str(port),
        name,
        str(n),
    ]
    env = {**os.environ, **_ENV}
    done = subprocess.run(cmd, cwd=Path(__file__).resolve().parent.parent, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{name}: the counted run failed:\n{done.stderr[-2000:]}")
    for line in out.read_text().splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise RuntimeError(f"{name}: no summary line in {out}")


def run(clients: list[str], n: int) -> dict[str, float]:
    from .echo_servers import start_server

    server = start_server("picows")
    try:
        with tempfile.TemporaryDirectory(prefix="rawws-instructions-") as tmp:
            per_rt = {}
            for name in clients:
                low, high = _count(server.port, name, n, Path(tmp)), _count(server.port, name, 3 * n, Path(tmp))
                per_rt[name] = (high - low) / (2 * n)
                print(f"  {name}: {per_rt[name]:,.0f} instructions per round trip", file=sys.stderr, flush=True)
            return per_rt
    finally:
        server.stop()


def table(per_rt: dict[str, float]) -> str:
    base = per_rt.get("picows")
    lines = [
        "| client | instructions per round trip | vs picows (fewer is better) |",
        "|---|---:|---:|",
    ]
    for name, value in per_rt.items():
        ratio = f"{value / base:.3f}x" if base else "-"
        lines.append(f"| {name} | {value:,.0f} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default=",".join(DEFAULT_CLIENTS))
    parser.add_argument("--n", type=int, default=2000, help="round trips of the shorter counted run")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON after the table")
    parser.add_argument("--child", nargs=3, metavar=("PORT", "CLIENT", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(int(args.child[0]), args.child[1], int(args.child[2]))
        return
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: `make bench-instructions` installs it (Debian package valgrind)")
        sys.exit(2)
    clients = [c for c in args.clients.split(",") if c]
    per_rt = run(clients, args.n)
    print(f"## Instructions per seq round trip (callgrind, {args.n:,} and {3 * args.n:,} round trips)\n")
    print(table(per_rt))
    if args.json:
        print(json.dumps({k: round(v, 1) for k, v in per_rt.items()}))


if __name__ == "__main__":
    main()
