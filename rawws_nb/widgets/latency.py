"""`LatencyPanel`: ping round trips (and request/response times) as a small live chart."""

from __future__ import annotations

import asyncio
import html
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
import numpy as np
import pandas as pd

from ..loops import Handle, cancel
from ..session import SessionState
from ._base import DEFAULT_REFRESH_INTERVAL, Panel, describe_error

if TYPE_CHECKING:
    from ..session import RawSession

__all__ = ["LatencyPanel", "latency_stats"]

MIN_INTERVAL = 0.05  # seconds between periodic pings, at least
_SCAN_MAX = 2000  # rows examined per refresh for request/response matching
_PENDING_MAX = 10_000
_SERIES = {"ping": ("#1f5fa8", "ping"), "request": ("#d35400", "request/response")}


def latency_stats(rtts: Iterable[float]) -> dict[str, float]:
    """n, last, p50, p95, p99, max (seconds) of a sequence of round trips."""
    values = np.asarray(list(rtts), dtype=float)
    if not len(values):
        return {"n": 0}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {
        "n": len(values),
        "last": float(values[-1]),
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "max": float(values.max()),
    }


def _ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.2f}" if ms < 10 else f"{ms:.1f}" if ms < 100 else f"{ms:.0f}"


def _svg_chart(series: dict[str, list[float]], width: int = 360, height: int = 110) -> str:
    """An inline SVG line chart (milliseconds): cheap to build, drawn by the browser."""
    values = [v for vs in series.values() for v in vs]
    if not values:
        return ""
    top = max(values) * 1000 * 1.1 or 1.0
    left, right, pad = 44, 6, 8
    inner_w, inner_h = width - left - right, height - 2 * pad
    parts = [
        f"<svg class='rawws-latency-svg' width='{width}' height='{height}' viewBox='0 0 {width} {height}' "
        "xmlns='http://www.w3.org/2000/svg' style='font:10px sans-serif'>",
        f"<line x1='{left}' y1='{pad}' x2='{left}' y2='{height - pad}' stroke='#999'/>",
        f"<line x1='{left}' y1='{height - pad}' x2='{width - right}' y2='{height - pad}' stroke='#999'/>",
        f"<text x='{left - 4}' y='{pad + 4}' text-anchor='end'>{top:.3g} ms</text>",
        f"<text x='{left - 4}' y='{height - pad}' text-anchor='end'>0</text>",
    ]
    for name, vs in series.items():
        if not vs:
            continue
        colour = _SERIES.get(name, ("#333", name))[0]
        n = len(vs)
        step = inner_w / max(n - 1, 1)
        points = " ".join(f"{left + i * step:.1f},{pad + inner_h * (1 - v * 1000 / top):.1f}" for i, v in enumerate(vs))
        if n == 1:
            x, y = points.split(",")
            parts.append(f"<circle cx='{x}' cy='{y}' r='2.5' fill='{colour}'/>")
        else:
            parts.append(f"<polyline fill='none' stroke='{colour}' stroke-width='1.5' points='{points}'/>")
    parts.append("</svg>")
    return "".join(parts)


class LatencyPanel(Panel):
    """Round trips of pings, live: "ping now", an opt-in periodic ping (the user starts
    it; nothing is sent automatically), p50/p95/p99/max and a small chart of the last
    `history` values.

    Pings go through `session.ping(payload, timeout)`; the Pong is still delivered to
    `session.incoming` and the timeline, as every frame is (consume `incoming`, or
    drain it from the Dashboard, so that reading does not pause when it is full).

    `key`: also time requests and responses. A callable that receives each recorded
    frame as a dict of timeline columns (`dir`, `opcode`, `text`, `payload`,
    `msg_type`, `fields`, ...) and returns a key, or None to skip the frame; a received
    frame whose key matches an earlier sent one gives a round trip (recorder timestamps).
    Missing values (a Pong's `text`) come as pandas NA, which counts as None. For example
    `key=lambda f: f["text"]` on /echo, or
    `key=lambda f: f["fields"]["id"] if f["msg_type"] in ("chat", "ack") else None`.
    """

    def __init__(
        self,
        session: RawSession,
        *,
        history: int = 300,
        interval: float = 1.0,
        timeout: float = 2.0,
        key: Callable[[dict[str, Any]], Hashable | None] | None = None,
        refresh_interval: float = DEFAULT_REFRESH_INTERVAL,
        autorefresh: bool = True,
    ) -> None:
        super().__init__(session, refresh_interval=refresh_interval, status_class="rawws-latency-status")
        self.add_class("rawws-latency")
        self.history = max(int(history), 2)
        self.rtts: deque[float] = deque(maxlen=self.history)
        self.request_rtts: deque[float] = deque(maxlen=self.history)
        self.key = key
        self.pings = 0
        self.lost = 0
        self._seq = 0
        self._version = 0
        self._periodic_handle: Handle | None = None
        self._scanned = session.recorder.total if session.recorder is not None else 0
        self._pending: dict[Hashable, float] = {}

        self.ping_button = widgets.Button(
            description="ping now", icon="exchange", tooltip="send one Ping, time its Pong"
        )
        self.ping_button.add_class("rawws-ping-now")
        self.ping_button.on_click(lambda _: self.ping_now())
        self.periodic = widgets.ToggleButton(
            value=False, description="periodic ping", icon="repeat", tooltip="ping every `interval` seconds"
        )
        self.periodic.add_class("rawws-ping-periodic")
        self.periodic.observe(self._on_periodic, "value")
        self.interval = widgets.BoundedFloatText(
            value=max(float(interval), MIN_INTERVAL),
            min=MIN_INTERVAL,
            max=3600.0,
            step=0.1,
            description="every (s)",
            layout=widgets.Layout(width="140px"),
            style={"description_width": "initial"},
        )
        self.interval.add_class("rawws-ping-interval")
        self.timeout = widgets.BoundedFloatText(
            value=float(timeout),
            min=0.01,
            max=600.0,
            step=0.5,
            description="timeout (s)",
            layout=widgets.Layout(width="150px"),
            style={"description_width": "initial"},
        )
        self.timeout.add_class("rawws-ping-timeout")
        self.clear_button = widgets.Button(description="clear", layout=widgets.Layout(width="auto"))
        self.clear_button.on_click(lambda _: self.clear())
        self.stats = widgets.HTML("<small>no round trips yet: press “ping now”</small>")
        self.stats.add_class("rawws-latency-stats")
        self.chart = widgets.HTML()
        self.chart.add_class("rawws-latency-chart")
        self.children = [
            widgets.HTML("<b>Latency</b>"),
            widgets.HBox([self.ping_button, self.periodic, self.clear_button]),
            widgets.HBox([self.interval, self.timeout]),
            self.stats,
            self.chart,
            self.status,
        ]
        if autorefresh:
            self.start()

    # -- measuring (on the session's loop) ------------------------------------------

    def record(self, rtt: float, kind: str = "ping") -> None:
        """Add a round trip (seconds). Call on the session's loop."""
        (self.rtts if kind == "ping" else self.request_rtts).append(float(rtt))
        self._version += 1

    def clear(self) -> None:
        self.rtts.clear()
        self.request_rtts.clear()
        self.pings = self.lost = 0
        self._version += 1
        self.mark_dirty()

    async def ping_once(self) -> float:
        """One Ping, wait for its Pong; records and returns the round trip (seconds).
        Runs on the session's loop; raises `TimeoutError` (counted as lost)."""
        self._seq += 1
        payload = b"latency-%d" % self._seq
        timeout = float(self.timeout.value) or None
        self.pings += 1
        try:
            rtt = await self.session.ping(payload, timeout=timeout)
        except TimeoutError:
            self.lost += 1
            self._version += 1
            raise TimeoutError(f"no pong for {payload.decode()} within {timeout:g} s") from None
        self.record(rtt)
        return rtt

    def ping_now(self) -> Handle | None:
        """Send one Ping now (from any thread); the result shows in the panel."""
        return self.run(self.ping_once, what="ping", on_ok=lambda rtt: self.status.ok(f"pong after {_ms(rtt)} ms"))

    # -- periodic ping (opt-in) -----------------------------------------------------

    def _on_periodic(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self.start_periodic()
        else:
            self.stop_periodic()

    def start_periodic(self) -> None:
        """Ping every `interval` seconds until `stop_periodic()` or the session ends."""
        if self._periodic_handle is not None and not self._periodic_handle.done():
            return
        if not self.periodic.value:
            self.periodic.value = True  # the observer comes back here
            return
        self._periodic_handle = self.run(self._periodic_loop, what="periodic ping")
        if self._periodic_handle is not None:
            self.status.info(f"pinging every {float(self.interval.value):g} s")

    def stop_periodic(self) -> None:
        handle, self._periodic_handle = self._periodic_handle, None
        cancel(self.loop, handle)
        if self.periodic.value:
            self.periodic.value = False
        if handle is not None:
            self.status.info("periodic ping stopped")

    async def _periodic_loop(self) -> None:
        try:
            while self.session.state is SessionState.OPEN:
                try:
                    await self.ping_once()
                except TimeoutError as exc:
                    self.status.error(str(exc))
                await asyncio.sleep(max(float(self.interval.value), MIN_INTERVAL))
            self.status.info(f"periodic ping stopped: session {self.session.state.value}")
        finally:
            if self._periodic_handle is not None:
                self._periodic_handle = None
                self.periodic.value = False

    # -- request/response matching and rendering (on the session's loop) -----------

    def _scan(self) -> None:
        rec = self.session.recorder
        key = self.key
        if rec is None or key is None:
            return
        total = rec.total
        if total == self._scanned:
            return
        since = max(self._scanned, total - _SCAN_MAX)
        self._scanned = total
        df = rec.to_dataframe(since=since)
        pending = self._pending
        for row in df.to_dict("records"):
            try:
                k = key(row)
            except Exception as exc:
                self.key = None
                self.status.error(f"key function failed, request timing off: {describe_error(exc)}")
                return
            if k is None or k is pd.NA:  # NA: a column the frame does not have (text of a Pong)
                continue
            if row["dir"] == "tx":
                if len(pending) >= _PENDING_MAX:
                    pending.pop(next(iter(pending)))
                pending[k] = row["t_rel"]
            elif k in pending:
                self.record(row["t_rel"] - pending.pop(k), "request")

    def _change_key(self) -> Hashable:
        self._scan()
        return (self._version, self.session.state)

    def _render(self) -> None:
        lines = []
        for name, values in (("ping", self.rtts), ("request", self.request_rtts)):
            s = latency_stats(values)
            if not s["n"]:
                continue
            label = _SERIES[name][1]
            lines.append(
                f"<span style='color:{_SERIES[name][0]}'>{label}</span>: last <b>{_ms(s['last'])} ms</b> · "
                f"p50 {_ms(s['p50'])} · p95 {_ms(s['p95'])} · p99 {_ms(s['p99'])} · max {_ms(s['max'])} ms "
                f"<small>(n={s['n']})</small>"
            )
        if self.pings:
            lines.append(f"<small>{self.pings} pings, {self.lost} without a pong in time</small>")
        self.stats.value = (
            "<div style='font-size:90%'>" + "<br>".join(lines) + "</div>"
            if lines
            else html.escape("no round trips yet: press “ping now”")
        )
        self.chart.value = _svg_chart({"ping": list(self.rtts), "request": list(self.request_rtts)})

    def stats_dict(self, kind: str = "ping") -> dict[str, float]:
        """The statistics of the ping (or "request") round trips, in seconds."""
        return latency_stats(self.rtts if kind == "ping" else self.request_rtts)

    def close(self) -> None:
        try:
            self.stop_periodic()
        except Exception:  # closing must not fail (it also runs from __del__ at exit)
            pass
        super().close()
