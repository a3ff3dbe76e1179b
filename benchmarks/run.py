"""The benchmark run: `python -m benchmarks.run [--quick] [--repeat N] [--out DIR]`.

One run starts the echo servers (picows WebSocket echo, plain asyncio TCP echo) in
their own processes, then runs the five tests (seq, pipe, flood, bulk1m, bulk16m) for every
client, interleaved (a fresh warmed-up connection per client and repetition; each test
cut into slices that run round-robin over the clients), repeated; prints medians, ratios
and the targets; then the scaling
figures (1/10/100 concurrent rawws sessions, memory per idle session) and the timeline
benchmarks; saves `latest.json` and `latest.md` in the output directory.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from .clients import CLIENTS, Client, EchoMismatch, client_versions
from .echo_servers import FLOOD_FRAME, FLOOD_PAYLOAD, FLOOD_TRIGGER, ServerProcess, picows_available, start_server

TESTS = ("seq", "pipe", "flood", "bulk1m", "bulk16m")
UNITS = {"seq": "msg/s", "pipe": "msg/s", "flood": "msg/s", "bulk1m": "MB/s", "bulk16m": "MB/s"}
REFERENCES = ("websockets", "picows", "tcp")
MIB = 2**20
MSG_LEN = 16
TEST_TIMEOUT = 120.0

perf = time.perf_counter


@dataclass
class Config:
    repeat: int = 5
    seq_n: int = 1000
    pipe_n: int = 20000
    bulk1m_k: int = 100
    bulk16m_k: int = 10
    flood_n: int = 200_000
    slices: dict[str, int] = field(
        default_factory=lambda: {"seq": 10, "pipe": 5, "flood": 5, "bulk1m": 10, "bulk16m": 5}
    )
    warmup_seq: int = 200
    warmup_pipe: int = 1000
    scaling_sessions: tuple[int, ...] = (1, 10, 100, 1000)
    scaling_total: int = 40000
    scaling_repeat: int = 3
    idle_sessions: int = 200
    clients: tuple[str, ...] = tuple(CLIENTS)
    quick: bool = False

    @classmethod
    def make(cls, quick: bool, repeat: int | None, clients: tuple[str, ...] | None) -> Config:
        cfg = cls(quick=quick)
        if quick:
            cfg.repeat, cfg.pipe_n, cfg.bulk1m_k, cfg.bulk16m_k = 3, 5000, 30, 3
            cfg.slices = {"seq": 10, "pipe": 5, "flood": 3, "bulk1m": 5, "bulk16m": 3}
            cfg.flood_n = 60_000
            cfg.warmup_pipe, cfg.scaling_total, cfg.scaling_repeat, cfg.idle_sessions = 500, 10000, 1, 100
        if repeat is not None:
            cfg.repeat = max(1, repeat)
        if clients:
            cfg.clients = clients
        return cfg


@dataclass
class Workload:
    """Everything a test sends, built once per client before anything is timed."""

    seq: tuple[list[Any], list[Any]]
    pipe: tuple[list[Any], list[Any]]
    bulk1m: bytes
    bulk16m: bytes


@dataclass
class Results:
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


def _texts(prefix: str, n: int) -> list[str]:
    width = MSG_LEN - len(prefix)
    return [f"{prefix}{i:0{width}d}" for i in range(n)]


def _prepare(client: Client, texts: list[str]) -> tuple[list[Any], list[Any]]:
    pairs = [client.prepare_text(t) for t in texts]
    return [p[0] for p in pairs], [p[1] for p in pairs]


# -- the four tests: the same code for every client ------------------------------------
# Each returns the seconds it took; the runner turns them into rates.


async def test_seq(client: Client, msgs: list[Any], expected: list[Any]) -> float:
    """Send one 16-byte text message, await its echo, repeat."""
    send, recv = client.send_text, client.recv
    t0 = perf()
    for i, m in enumerate(msgs):
        await send(m)
        got = await recv(MSG_LEN)
        if got != expected[i]:
            raise EchoMismatch(f"{client.name}: seq echo {i} is {got!r}, sent {expected[i]!r}")
    return perf() - t0


async def test_pipe(client: Client, msgs: list[Any], expected: list[Any]) -> float:
    """Send 16-byte text messages back to back while a reader checks the echoes."""
    send = client.send_text
    reader = asyncio.ensure_future(client.read_echoes(expected))
    await asyncio.sleep(0)  # the reader is waiting before the clock starts
    t0 = perf()
    try:
        for m in msgs:
            await send(m)
        await reader
    finally:
        if not reader.done():
            reader.cancel()
    return perf() - t0


async def test_flood(client: Client, n: int) -> float:
    """The server pushes n 16-byte text frames at once (pre-built); the client receives
    them one by one through its normal API. The TCP floor reads the same bytes."""
    trigger, _ = client.prepare_text(FLOOD_TRIGGER.decode() + str(n))
    _, expected = client.prepare_text(FLOOD_PAYLOAD.decode())
    recv = client.recv
    t0 = perf()
    await client.send_text(trigger)
    if client.uses_tcp:
        got = await recv(n * len(FLOOD_FRAME))
        if len(got) != n * len(FLOOD_FRAME):
            raise EchoMismatch(f"{client.name}: flood returned {len(got)} bytes")
        return perf() - t0
    for _ in range(n - 1):
        await recv(len(FLOOD_PAYLOAD))
    got = await recv(len(FLOOD_PAYLOAD))
    elapsed = perf() - t0
    if got != expected:
        raise EchoMismatch(f"{client.name}: flood frame is {got!r}")
    return elapsed


async def test_bulk(client: Client, payload: bytes, k: int) -> float:
    """Send one binary message, await its echo, k times."""
    send, recv, n = client.send_binary, client.recv, len(payload)
    t0 = perf()
    for i in range(k):
        await send(payload)
        got = await recv(n)
        if got != payload:
            size = len(got) if isinstance(got, bytes | bytearray | str) else "?"
            raise EchoMismatch(f"{client.name}: bulk echo {i} of {n} bytes differs ({size} bytes back)")
    return perf() - t0


async def warm_up(client: Client, work: Workload, cfg: Config) -> None:
    await test_seq(client, work.seq[0][: cfg.warmup_seq], work.seq[1][: cfg.warmup_seq])
    await test_pipe(client, work.pipe[0][: cfg.warmup_pipe], work.pipe[1][: cfg.warmup_pipe])
    await test_bulk(client, work.bulk1m, 2)
    await test_bulk(client, work.bulk16m, 1)


Slice = tuple[float, Callable[[], Awaitable[float]]]


def _slices(client: Client, work: Workload, cfg: Config, test: str) -> list[Slice]:
    """The test cut into slices: (units, run) with units in messages or 10^6 bytes."""
    n = cfg.slices[test]
    if test in ("seq", "pipe"):
        msgs, expected = work.seq if test == "seq" else work.pipe
        size = len(msgs) // n
        fn = test_seq if test == "seq" else test_pipe
        return [
            (size, lambda j=j: fn(client, msgs[j * size : (j + 1) * size], expected[j * size : (j + 1) * size]))
            for j in range(n)
        ]
    if test == "flood":
        per = cfg.flood_n // n
        return [(per, lambda: test_flood(client, per)) for _ in range(n)]
    payload, k = (work.bulk1m, cfg.bulk1m_k) if test == "bulk1m" else (work.bulk16m, cfg.bulk16m_k)
    per = max(k // n, 1)
    return [(len(payload) * per / 1e6, lambda: test_bulk(client, payload, per)) for _ in range(n)]


async def _close_quietly(client: Client) -> None:
    try:
        async with asyncio.timeout(10):
            await client.close()
    except Exception:
        pass


async def run_matrix(cfg: Config, ws: ServerProcess, tcp: ServerProcess) -> Results:
    """Per repetition, a fresh warmed-up connection for every client; then each test runs
    in slices, round-robin over the clients, so each client's figure mixes the same
    moments of machine noise. The order is rotated every slice and reversed every other
    slice: a client runs after a different one each time, so what the previous client
    left in the CPU caches favours nobody (with rotation alone each client always ran
    right after the same one; `rawws-norec` after `rawws`, which put 1.5 points into the
    recording-overhead figure for flood). A sample is units / seconds summed over a
    client's slices."""
    res = Results()
    bulk1m, bulk16m = os.urandom(MIB), os.urandom(16 * MIB)
    seq_texts = _texts("seq ", cfg.seq_n)
    pipe_texts = _texts("p", cfg.pipe_n)
    works: dict[str, Workload] = {}
    names = list(cfg.clients)

    def fail(name: str, rep: int, stage: str, exc: BaseException) -> None:
        res.failures[name] = f"{stage}: {type(exc).__name__}: {exc}"
        print(f"\n!!! {name} FAILED in repetition {rep + 1} ({stage}): {type(exc).__name__}: {exc}", file=sys.stderr)
        traceback.print_exc()

    for rep in range(cfg.repeat):
        clients: dict[str, Client] = {}
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            if name in res.failures:
                continue
            client = CLIENTS[name]()
            if name not in works:
                works[name] = Workload(_prepare(client, seq_texts), _prepare(client, pipe_texts), bulk1m, bulk16m)
            try:
                async with asyncio.timeout(TEST_TIMEOUT):
                    await client.open(ws.url, ws.tcp_port or tcp.port)
                    await warm_up(client, works[name], cfg)
            except Exception as exc:
                fail(name, rep, "open/warm-up", exc)
                await _close_quietly(client)
                continue
            clients[name] = client
        for test in TESTS:
            gc.collect()
            plans = {name: _slices(c, works[name], cfg, test) for name, c in clients.items()}
            units = dict.fromkeys(plans, 0.0)
            seconds = dict.fromkeys(plans, 0.0)
            for j in range(cfg.slices[test]):
                live = [name for name in plans if name in clients]
                shift = (rep + j) % max(len(live), 1)
                order = live[shift:] + live[:shift]
                for name in order[::-1] if (rep + j) % 2 else order:
                    gc.collect(1)  # the young generations: a full collection takes ~40 ms here
                    size, run = plans[name][j]
                    try:
                        async with asyncio.timeout(TEST_TIMEOUT):
                            seconds[name] += await run()
                    except Exception as exc:
                        fail(name, rep, test, exc)
                        await _close_quietly(clients.pop(name))
                        continue
                    units[name] += size
            for name in clients:
                res.samples.setdefault(name, {t: [] for t in TESTS})[test].append(units[name] / seconds[name])
        for name, client in clients.items():
            try:
                async with asyncio.timeout(10):
                    await client.close()
            except Exception as exc:
                fail(name, rep, "close", exc)
        print(f"  repetition {rep + 1}/{cfg.repeat}: {', '.join(clients)}", flush=True)
    # A client that failed midway keeps no samples (its failure is reported instead).
    for name in res.failures:
        res.samples.pop(name, None)
    return res


# -- scaling ---------------------------------------------------------------------------


async def run_scaling(cfg: Config, ws: ServerProcess) -> dict[str, Any]:
    """Concurrent rawws sessions to the embedded server (its own process): aggregate
    pipelined echo rate, and the memory each open session holds in the client (tracemalloc)."""
    import rawws_nb  # noqa: F401  (imported before measuring: its modules are not per-session memory)

    from .clients import RawwsClient

    out: dict[str, Any] = {}
    for n in cfg.scaling_sessions:
        per = max(cfg.scaling_total // n, 10)
        texts = _texts("s", per)
        rates = []
        rss_per: list[float] = []
        for _ in range(cfg.scaling_repeat):
            gc.collect()
            # Python-level memory the open sessions hold (RSS deltas in a process that ran
            # the whole matrix before are mostly freed memory being reused: near zero).
            tracemalloc.start()
            clients = [RawwsClient() for _ in range(n)]
            for start in range(0, n, 100):  # open in waves: the server's accept backlog is finite
                await asyncio.gather(*(c.open(ws.url, 0) for c in clients[start : start + 100]))
            held, _peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            rss_per.append(held / n)
            works = [_prepare(c, texts) for c in clients]
            warm = per // 4
            await asyncio.gather(*(test_pipe(c, w[0][:warm], w[1][:warm]) for c, w in zip(clients, works, strict=True)))
            gc.collect()
            t0 = perf()
            await asyncio.gather(*(test_pipe(c, *w) for c, w in zip(clients, works, strict=True)))
            rates.append(per * n / (perf() - t0))
            await asyncio.gather(*(c.close() for c in clients))
        rss = statistics.median(rss_per) if rss_per else None
        out[str(n)] = {
            "sessions": n,
            "msgs_per_session": per,
            "samples": rates,
            "median": statistics.median(rates),
            "rss_bytes_per_session": rss,
        }
        rss_text = f", {rss / 1024:,.1f} KiB per open session (tracemalloc)" if rss is not None else ""
        print(f"  {n:>4} sessions: {statistics.median(rates):>10,.0f} msg/s aggregate{rss_text}", flush=True)
    return out


def _rss_kib() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


async def _open_many(name: str, n: int, url: str, http: Any) -> list[Client]:
    cls = CLIENTS[name]
    clients = [cls(http) if name == "aiohttp" else cls() for _ in range(n)]  # type: ignore[call-arg]
    for i in range(0, n, 50):
        await asyncio.gather(*(c.open(url, 0) for c in clients[i : i + 50]))
    return clients


async def _idle_child(name: str, url: str, n: int) -> dict[str, Any]:
    """In a fresh process: RSS delta (cold), then tracemalloc delta, of n idle sessions."""
    import aiohttp

    # limit=0: the default connector holds at most 100 connections (the 101st would wait).
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        for c in await _open_many(name, 3, url, http):  # imports, caches, first allocations
            await c.close()
        gc.collect()
        before = _rss_kib()
        clients = await _open_many(name, n, url, http)
        await asyncio.sleep(0.05)
        gc.collect()
        after = _rss_kib()
        await asyncio.gather(*(c.close() for c in clients))
        del clients
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        clients = await _open_many(name, n, url, http)
        await asyncio.sleep(0.05)
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        await asyncio.gather(*(c.close() for c in clients))
    rss = (after - before) * 1024 / n if before is not None and after is not None else None
    return {"sessions": n, "rss_bytes_per_session": rss, "tracemalloc_bytes_per_session": traced / n}


def idle_child_main(name: str, url: str, n: int) -> None:
    print(json.dumps(asyncio.run(_idle_child(name, url, n))), flush=True)


async def run_idle_memory(cfg: Config, ws: ServerProcess) -> dict[str, Any]:
    """Memory per idle session, each client measured in a fresh process (clean RSS)."""
    n = cfg.idle_sessions
    out: dict[str, Any] = {}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for name in [c for c in ("rawws", "websockets", "aiohttp", "picows") if c in cfg.clients]:
        code = f"from benchmarks.run import idle_child_main; idle_child_main({name!r}, {ws.url!r}, {n})"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, cwd=root, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            async with asyncio.timeout(60):
                stdout, stderr = await proc.communicate()
        except TimeoutError:
            proc.kill()
            stdout, stderr = await proc.communicate()
            stderr += b"\ntimed out after 60 s"
        if proc.returncode != 0:
            err = stderr.decode(errors="replace").strip().splitlines()
            out[name] = {"error": err[-1] if err else f"exit status {proc.returncode}"}
            print(f"  {name}: FAILED {out[name]['error']}", file=sys.stderr)
            continue
        v = out[name] = json.loads(stdout.decode().strip().splitlines()[-1])
        rss = v["rss_bytes_per_session"]
        rss_text = f"{rss / 1024:7.1f} KiB RSS" if rss is not None else "RSS n/a"
        print(
            f"  {name:<11} {rss_text}, {v['tracemalloc_bytes_per_session'] / 1024:7.1f} KiB traced per idle session",
            flush=True,
        )
    return out


# -- statistics and report -------------------------------------------------------------


def medians(res: Results) -> dict[str, dict[str, float]]:
    return {c: {t: statistics.median(v) for t, v in per.items() if v} for c, per in res.samples.items()}


def spread(values: list[float]) -> float:
    """Half the min-max range, relative to the median."""
    return (max(values) - min(values)) / 2 / statistics.median(values) if len(values) > 1 else 0.0


def paired_ratio(res: Results, a: str, b: str, test: str) -> float | None:
    """Median over repetitions of a/b (paired: the clients ran interleaved)."""
    sa, sb = res.samples.get(a, {}).get(test), res.samples.get(b, {}).get(test)
    if not sa or not sb:
        return None
    k = min(len(sa), len(sb))
    return statistics.median(sa[i] / sb[i] for i in range(k))


def ratios(res: Results) -> dict[str, dict[str, dict[str, float | None]]]:
    return {
        ref: {c: {t: paired_ratio(res, c, ref, t) for t in TESTS} for c in res.samples}
        for ref in REFERENCES
        if ref in res.samples
    }


def targets(res: Results, timeline: dict[str, Any] | None) -> list[dict[str, Any]]:
    rec = paired_ratio(res, "rawws", "rawws-norec", "pipe")
    rec_flood = paired_ratio(res, "rawws", "rawws-norec", "flood")
    rows = [
        ("seq(rawws) vs picows", paired_ratio(res, "rawws", "picows", "seq"), ">=", 1.0, "x"),
        ("seq(rawws) vs tcp floor", paired_ratio(res, "rawws", "tcp", "seq"), ">=", 0.90, "x"),
        ("pipe(rawws) vs picows", paired_ratio(res, "rawws", "picows", "pipe"), ">=", 1.0, "x"),
        ("pipe(rawws, recording on) vs websockets", paired_ratio(res, "rawws", "websockets", "pipe"), ">=", 2.0, "x"),
        ("flood(rawws) vs aiohttp", paired_ratio(res, "rawws", "aiohttp", "flood"), ">=", 1.0, "x"),
        ("flood(rawws) vs picows (how far)", paired_ratio(res, "rawws", "picows", "flood"), ">=", 1.0, "x"),
        ("bulk1m(rawws) vs picows", paired_ratio(res, "rawws", "picows", "bulk1m"), ">=", 1.0, "x"),
        ("bulk16m(rawws) vs picows", paired_ratio(res, "rawws", "picows", "bulk16m"), ">=", 1.0, "x"),
        ("recording overhead (pipe, 1 - rawws/rawws-norec)", None if rec is None else 1 - rec, "<=", 0.05, "%"),
        ("recording overhead (flood)", None if rec_flood is None else 1 - rec_flood, "<=", 0.05, "%"),
    ]
    if timeline and "error" not in timeline:
        rows.append(("timeline bytes per frame (without payload)", timeline.get("bytes_per_frame"), "<=", 120, "B"))
        rows.append(("timeline DataFrame build, 1M frames", timeline.get("dataframe_build_s"), "<=", 0.5, "s"))
        rows.append(
            (
                "timeline recording overhead, in-process pipelined echo (CPU)",
                timeline.get("recording_overhead"),
                "<=",
                0.05,
                "%",
            )
        )
    out = []
    for name, value, op, limit, unit in rows:
        if value is None:
            verdict = "n/a"
        else:
            ok = value >= limit if op == ">=" else value <= limit
            verdict = "PASS" if ok else "MISS"
        out.append({"target": name, "value": value, "op": op, "limit": limit, "unit": unit, "verdict": verdict})
    return out


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "%":
        return f"{value * 100:.1f}%"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "B":
        return f"{value:.0f} B"
    return f"{value:,.0f}"


def markdown(data: dict[str, Any]) -> str:
    res_med, samples = data["medians"], data["samples"]
    lines = [f"# rawws_nb benchmarks ({data['meta']['date']})", ""]
    m = data["meta"]
    lines.append(
        f"Python {m['python']}, {m['cpus']} CPUs, echo server: {m['ws_server']} (separate process), "
        f"{data['config']['repeat']} interleaved repetitions, medians (± half the min-max range)."
    )
    if m.get("warning"):
        lines += ["", f"**Warning:** {m['warning']}."]
    lines += ["", "## Throughput", ""]
    head = "| client | " + " | ".join(f"{t} ({UNITS[t]})" for t in TESTS) + " |"
    lines += [head, "|---|" + "---:|" * len(TESTS)]
    for c in data["config"]["clients"]:
        if c not in res_med:
            lines.append(f"| {c} | " + " | ".join("FAILED" for _ in TESTS) + " |")
            continue
        cells = [f"{res_med[c][t]:,.0f} (±{spread(samples[c][t]) * 100:.0f}%)" for t in TESTS]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    for ref, table in data["ratios"].items():
        lines += ["", f"## Ratio vs {ref} (median of paired per-repetition ratios)", ""]
        lines += ["| client | " + " | ".join(TESTS) + " |", "|---|" + "---:|" * len(TESTS)]
        for c, per in table.items():
            lines.append(f"| {c} | " + " | ".join(_fmt(per[t], "x") for t in TESTS) + " |")
    lines += ["", "## Targets", "", "| target | value | limit | verdict |", "|---|---:|---:|---|"]
    for t in data["targets"]:
        lines.append(
            f"| {t['target']} | {_fmt(t['value'], t['unit'])} | {t['op']} {_fmt(t['limit'], t['unit'])} "
            f"| **{t['verdict']}** |"
        )
    if data.get("scaling"):
        lines += ["", "## Scaling: concurrent rawws sessions to the embedded server (pipe, recording on)", ""]
        lines += [
            "| sessions | msgs per session | aggregate msg/s | client memory / session |",
            "|---:|---:|---:|---:|",
        ]
        for s in data["scaling"].values():
            rss = s.get("rss_bytes_per_session")
            rss_text = f"{rss / 1024:,.1f} KiB" if rss is not None else "n/a"
            lines.append(f"| {s['sessions']} | {s['msgs_per_session']:,} | {s['median']:,.0f} | {rss_text} |")
    if data.get("idle_memory"):
        lines += ["", "## Memory per idle session (client side)", ""]
        lines += ["| client | RSS delta / session | tracemalloc / session |", "|---|---:|---:|"]
        for c, v in data["idle_memory"].items():
            if "error" in v:
                lines.append(f"| {c} | {v['error']} | |")
                continue
            rss = v["rss_bytes_per_session"]
            rss_text = "n/a" if rss is None else f"{rss / 1024:.1f} KiB"
            lines.append(f"| {c} | {rss_text} | {v['tracemalloc_bytes_per_session'] / 1024:.1f} KiB |")
    tl = data.get("timeline")
    if tl:
        lines += ["", "## Timeline (recorder)", ""]
        if "error" in tl:
            lines.append(f"not run: {tl['error']}")
        else:
            lines += ["| figure | value |", "|---|---:|"]
            for key, label in tl.get("labels", {}).items():
                if key in tl:
                    v = tl[key]
                    if key.startswith("recording_overhead"):  # a fraction
                        lines.append(f"| {label} | {v * 100:.1f}% |")
                        continue
                    digits = 0 if not isinstance(v, float) else 3 if key.endswith("_s") else 1
                    lines.append(f"| {label} | {v:,.{digits}f} |")
            for note in tl.get("notes", []):
                lines.append(f"\n{note}")
    if data["failures"]:
        lines += ["", "## Failures", ""]
        lines += [f"- **{c}**: {err}" for c, err in data["failures"].items()]
    return "\n".join(lines) + "\n"


# -- main ------------------------------------------------------------------------------


def _cpu_snapshot() -> tuple[float, float, float] | None:
    """(busy seconds of the whole machine, steal seconds, our process + reaped children)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    t = os.times()
    own = t.user + t.system + t.children_user + t.children_system
    return (user + nice + system + irq + softirq) / tick, steal / tick, own


def _other_load(start: tuple[float, float, float] | None, wall: float) -> dict[str, float] | None:
    """CPU used by processes other than this benchmark (and steal time) during the run."""
    end = _cpu_snapshot()
    if start is None or end is None or wall <= 0:
        return None
    other = max((end[0] - start[0]) - (end[2] - start[2]), 0.0)
    return {
        "other_cpu_s": round(other, 2),
        "other_cpu_share": round(other / wall, 3),
        "steal_s": round(end[1] - start[1], 2),
    }


async def amain(cfg: Config, args: argparse.Namespace) -> dict[str, Any]:
    cpu0, wall0 = _cpu_snapshot(), perf()
    ws_kind = args.server or ("picows" if picows_available() else "websockets")
    ncpu = os.cpu_count() or 1
    ws = start_server(ws_kind)
    tcp = start_server("tcp")
    try:
        tcp_where = f"tcp on {ws.tcp_port} (same process)" if ws.tcp_port else f"tcp on {tcp.port}"
        print(f"echo servers: {ws_kind} on {ws.port}, {tcp_where}; clients: {', '.join(cfg.clients)}")
        t0 = perf()
        res = await run_matrix(cfg, ws, tcp)
        matrix_s = perf() - t0
        scaling: dict[str, Any] = {}
        memory: dict[str, Any] = {}
        if "rawws" in cfg.clients and "rawws" not in res.failures and not args.no_scaling:
            print("scaling (the embedded server in its own process):", flush=True)
            embedded = start_server("rawws")
            try:
                scaling = await run_scaling(cfg, embedded)
            finally:
                embedded.stop()
            print("memory per idle session:", flush=True)
            memory = await run_idle_memory(cfg, ws)
    finally:
        ws.stop()
        tcp.stop()
    timeline = None if args.no_timeline else run_timeline(cfg)
    data: dict[str, Any] = {
        "meta": {
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": ncpu,
            "ws_server": ws_kind,
            "versions": client_versions(),
            "matrix_seconds": round(matrix_s, 1),
        },
        "config": asdict(cfg),
        "units": UNITS,
        "samples": res.samples,
        "medians": medians(res),
        "ratios": ratios(res),
        "failures": res.failures,
        "scaling": scaling,
        "idle_memory": memory,
        "timeline": timeline,
    }
    data["targets"] = targets(res, timeline)
    load = data["meta"]["other_load"] = _other_load(cpu0, perf() - wall0)
    if load and (load["other_cpu_share"] > 0.05 or load["steal_s"] > 0.5):
        data["meta"]["warning"] = (
            f"other processes used {load['other_cpu_s']:.1f} CPU-seconds during the run "
            f"({load['other_cpu_share']:.0%} of one CPU; steal {load['steal_s']:.1f} s): figures are noisier than usual"
        )
    return data


def run_timeline(cfg: Config) -> dict[str, Any] | None:
    """The timeline figures, measured in a process of their own, as `python -m
    benchmarks.bench_timeline` measures them (after the matrix, this process's heap holds
    what every client library left, and the in-process recording figure read 1.5-2.5
    points higher here than alone)."""
    try:
        from .bench_timeline import LABELS
    except ImportError as exc:
        return {"error": f"benchmarks.bench_timeline not importable ({exc})"}
    print("timeline (in its own process):", flush=True)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [sys.executable, "-m", "benchmarks.bench_timeline", "--json"] + (["--quick"] if cfg.quick else [])
    try:
        done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    out = done.stdout
    start = out.rfind("\n{\n")
    if done.returncode != 0 or start < 0:
        err = (done.stderr or out).strip().splitlines()
        return {"error": err[-1] if err else f"exit status {done.returncode}"}
    for line in out[:start].splitlines():
        if line.startswith("  "):  # the child's progress lines
            print(line, flush=True)
    result: dict[str, Any] = json.loads(out[start + 1 :])
    result["labels"] = LABELS
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller workloads, 3 repetitions (~30 s)")
    p.add_argument("--repeat", type=int, default=None, help="interleaved repetitions (default 5, quick 3)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"), help="results directory")
    p.add_argument("--clients", default=None, help=f"comma-separated subset of {','.join(CLIENTS)}")
    p.add_argument("--server", choices=("picows", "websockets"), default=None, help="WebSocket echo server")
    p.add_argument("--no-scaling", action="store_true", help="skip the scaling and idle-memory figures")
    p.add_argument("--no-timeline", action="store_true", help="skip the timeline benchmarks")
    args = p.parse_args(argv)
    chosen = tuple(c.strip() for c in args.clients.split(",")) if args.clients else None
    if chosen:
        unknown = [c for c in chosen if c not in CLIENTS]
        if unknown:
            p.error(f"unknown client(s) {', '.join(unknown)}; known: {', '.join(CLIENTS)}")
    if not _rawws_importable():
        print("rawws_nb.web_socket_raw_session is not importable: running without the rawws clients", file=sys.stderr)
        chosen = tuple(c for c in (chosen or tuple(CLIENTS)) if not c.startswith("rawws"))
    cfg = Config.make(args.quick, args.repeat, chosen)
    t0 = perf()
    data = asyncio.run(amain(cfg, args))
    data["meta"]["total_seconds"] = round(perf() - t0, 1)
    md = markdown(data)
    print()
    print(md)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "latest.json"), "w") as f:
        json.dump(data, f, indent=1, default=str)
    with open(os.path.join(args.out, "latest.md"), "w") as f:
        f.write(md)
    print(f"saved {os.path.join(args.out, 'latest.json')} and latest.md ({data['meta']['total_seconds']} s)")
    return 1 if data["failures"] else 0


def _rawws_importable() -> bool:
    try:
        from rawws_nb import web_socket_raw_session  # noqa: F401
    except Exception:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
