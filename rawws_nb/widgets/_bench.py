"""Does a live Dashboard distort what it measures? `python -m rawws_nb.widgets._bench`

Runs in a real ipykernel (started with jupyter_client, so widget updates really go out
as comm messages): the embedded server, a session receiving a flood of 16-byte Text
frames (drained by a task), and a second session on `/echo` whose ping round trips are
measured. The default flood (`/steady`, defined here) sends 200 frames per loop turn and
yields, for as long as the session lasts (it answers the client's Close); `--flood-path "/flood?n=100000000"` uses the
server's own path (which needs the transport's back-pressure to yield to the loop).
Conditions alternate round by round: no panels, and a `Dashboard` displayed on the
flooded session (updating 4 times a second). Prints p50/p95 of the round trips
per condition, the ratio (target: within 10%), renders per second and flood throughput.

Options: `--rounds N` (default 4), `--pings N` per round (default 200), `--flood-path`,
`--json PATH`.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from typing import Any

SETUP = textwrap.dedent(
    """
    import asyncio, json, time
    import rawws_nb as rw
    from rawws_nb.widgets import Dashboard
    from IPython.display import display

    async def _steady(session, request):
        frame = rw.Frame.Text(b"x" * 16)

        async def answer_close():
            try:
                async for received in session.incoming:
                    if isinstance(received, rw.Frame.Close):
                        await session.close()
                        return
            except rw.SessionClosed:
                return

        session.launch(answer_close())
        try:
            while True:
                for _ in range(200):
                    await session.send(frame)
                await asyncio.sleep(0)
        except (rw.SessionClosed, rw.InvalidSend):
            return

    _server = await rw.serve(handlers={"/steady": _steady})
    _echo = await rw.web_socket_raw_session(_server.url + "/echo")

    async def _drain(s):
        try:
            async for _ in s.incoming:
                pass
        except rw.SessionClosed:
            pass

    async def _measure(path, n, spacing, with_dashboard):
        flood = await rw.web_socket_raw_session(_server.url + path, close_timeout=0.5, timeline_capacity=200_000)
        task = asyncio.ensure_future(_drain(flood))
        dash = None
        if with_dashboard:
            dash = Dashboard(flood)
            display(dash)
        await asyncio.sleep(0.3)
        start, frames0, renders0 = time.perf_counter(), flood.recorder.total, dash.renders if dash else 0
        rtts = []
        for i in range(n):
            rtts.append(await _echo.ping(b"bench-%d" % i, timeout=5))
            await _echo.incoming.receive()
            await asyncio.sleep(spacing)
        elapsed = time.perf_counter() - start
        frames = flood.recorder.total - frames0
        renders = (dash.renders - renders0) if dash else 0
        await flood.close()
        await task
        if dash is not None:
            dash.close()
        return {"rtts": rtts, "elapsed": elapsed, "frames": frames, "renders": renders}
    """
)

ROUND = "print('RESULT ' + json.dumps(await _measure({path!r}, {pings}, {spacing}, {dash})))"


def _percentiles(values: list[float]) -> dict[str, float]:
    import numpy as np

    p50, p95 = np.percentile(np.asarray(values) * 1000, [50, 95])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "n": len(values)}


def run(rounds: int = 4, pings: int = 200, spacing: float = 0.005, path: str = "/steady") -> dict[str, Any]:
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")
    results: dict[str, list[dict[str, Any]]] = {"none": [], "dashboard": []}
    try:

        def execute(code: str) -> list[str]:
            lines: list[str] = []
            errors: list[str] = []

            def hook(msg: dict[str, Any]) -> None:
                kind, content = msg["msg_type"], msg["content"]
                if kind == "stream":
                    lines.extend(content["text"].splitlines())
                elif kind == "error":
                    errors.append(f"{content['ename']}: {content['evalue']}")

            kc.execute_interactive(code, timeout=120, output_hook=hook)
            if errors:
                raise RuntimeError("; ".join(errors))
            return lines

        execute(SETUP)
        for r in range(rounds):
            order = ("none", "dashboard") if r % 2 == 0 else ("dashboard", "none")
            for cond in order:
                code = ROUND.format(path=path, pings=pings, spacing=spacing, dash=cond == "dashboard")
                out = [line for line in execute(code) if line.startswith("RESULT ")]
                results[cond].append(json.loads(out[-1][7:]))
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)

    summary: dict[str, Any] = {}
    for cond, runs in results.items():
        rtts = [x for run_ in runs for x in run_["rtts"]]
        elapsed = sum(run_["elapsed"] for run_ in runs)
        summary[cond] = {
            **_percentiles(rtts),
            "flood_frames_per_s": sum(run_["frames"] for run_ in runs) / elapsed,
            "renders_per_s": sum(run_["renders"] for run_ in runs) / elapsed,
            "round_p50_ms": [_percentiles(run_["rtts"])["p50_ms"] for run_ in runs],
        }
    base, dash = summary["none"], summary["dashboard"]
    summary["ratio"] = {
        "p50": dash["p50_ms"] / base["p50_ms"],
        "p95": dash["p95_ms"] / base["p95_ms"],
    }
    summary["within_10_percent"] = all(v <= 1.10 for v in summary["ratio"].values())
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--pings", type=int, default=200)
    parser.add_argument("--flood-path", default="/steady")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    summary = run(args.rounds, args.pings, path=args.flood_path)
    for cond in ("none", "dashboard"):
        s = summary[cond]
        print(
            f"{cond:10} ping RTT p50 {s['p50_ms']:.3f} ms  p95 {s['p95_ms']:.3f} ms  (n={s['n']})  "
            f"flood {s['flood_frames_per_s']:,.0f} frames/s  renders {s['renders_per_s']:.1f}/s  "
            f"round p50s {', '.join(f'{v:.3f}' for v in s['round_p50_ms'])}"
        )
    ratio = summary["ratio"]
    verdict = "within" if summary["within_10_percent"] else "NOT within"
    print(f"dashboard / none: p50 x{ratio['p50']:.3f}, p95 x{ratio['p95']:.3f} ({verdict} the 10% target)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(summary, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
