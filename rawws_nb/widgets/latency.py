"""`LatencyPanel`: ping round trips (and request/response times) as a small live chart."""

from __future__ import annotations

import asyncio
import html
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
import numpy as np
import pandas as pd

from ..errors import RawWsError, SessionClosed
from ..loops import Handle, cancel
from ..session import SessionState
from ._base import DEFAULT_REFRESH_INTERVAL, Panel, describe_error

if TYPE_CHECKING:
    from ..session import RawSession

__all__ = ["LatencyPanel", "ReadingPaused", "latency_stats"]

MIN_INTERVAL = 0.05  # seconds between periodic pings, at least
_SCAN_MAX = 2000  # rows examined per refresh for request/response matching
_PENDING_MAX = 10_000
_PAUSE_POLL = 0.05  # seconds: how often a waiting ping looks whether reading paused


def _auto() -> widgets.Layout:
    return widgets.Layout(width="auto")

_SERIES = {"ping": ("#1f5fa8", "ping"), "request": ("#d35400", "request/response")}


class ReadingPaused(RawWsError, RuntimeError):
    """A ping that could not be measured: reading was paused (`incoming` full), so its
    Pong could not be read. Not a time-out."""


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


def _nice_step(span: float, ticks: int = 4) -> float:
    raw = span / max(ticks, 1)
    if raw <= 0:
        return 1.0
    mag = 10 ** np.floor(np.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return float(m * mag)
    return float(10 * mag)


def _svg_chart(
    series: dict[str, list[tuple[float, float]]],
    timeouts: Iterable[float] = (),
    width: int = 360,
    height: int = 130,
) -> str:
    """An inline SVG chart of round trips (ms) over time since open (s), drawn by the
    browser: axes and labels in `currentColor` (readable in light and dark themes), a
    `<title>` on every point (hover shows its value), time-outs as red marks on top."""
    points = [p for ps in series.values() for p in ps]
    lost = list(timeouts)
    if not points and not lost:
        return ""
    ts = [t for t, _ in points] + lost
    t_lo, t_hi = min(ts), max(ts)
    if t_hi - t_lo < 1e-3:
        t_lo, t_hi = t_lo - 0.5, t_hi + 0.5
    top = max((v for _, v in points), default=0.001) * 1000 * 1.15 or 1.0
    left, right, pad_top, pad_bottom = 46, 8, 10, 22
    inner_w, inner_h = width - left - right, height - pad_top - pad_bottom
    bottom = pad_top + inner_h

    def x(t: float) -> float:
        return left + inner_w * (t - t_lo) / (t_hi - t_lo)

    def y(ms: float) -> float:
        return pad_top + inner_h * (1 - ms / top)

    parts = [
        f"<svg class='rawws-latency-svg' width='{width}' height='{height}' viewBox='0 0 {width} {height}' "
        "xmlns='http://www.w3.org/2000/svg' style='font:10px sans-serif;color:inherit' fill='currentColor'>",
        f"<line x1='{left}' y1='{pad_top}' x2='{left}' y2='{bottom}' stroke='currentColor' stroke-opacity='.6'/>",
        f"<line x1='{left}' y1='{bottom}' x2='{width - right}' y2='{bottom}' stroke='currentColor' "
        "stroke-opacity='.6'/>",
        f"<text x='{left - 4}' y='{pad_top + 4}' text-anchor='end'>{top:.3g} ms</text>",
        f"<text x='{left - 4}' y='{pad_top + inner_h / 2 + 3:.1f}' text-anchor='end'>{top / 2:.3g}</text>",
        f"<text x='{left - 4}' y='{bottom}' text-anchor='end'>0</text>",
    ]
    step = _nice_step(t_hi - t_lo)
    tick = np.ceil(t_lo / step) * step
    while tick <= t_hi + 1e-9:
        xt = x(float(tick))
        parts.append(f"<line x1='{xt:.1f}' y1='{bottom}' x2='{xt:.1f}' y2='{bottom + 3}' stroke='currentColor'/>")
        parts.append(f"<text x='{xt:.1f}' y='{bottom + 13}' text-anchor='middle'>{tick:g}</text>")
        tick += step
    parts.append(f"<text x='{width - right}' y='{height - 1}' text-anchor='end'>s since open</text>")
    for name, ps in series.items():
        if not ps:
            continue
        colour = _SERIES.get(name, ("#888", name))[0]
        label = _SERIES.get(name, ("", name))[1]
        coords = [(x(t), y(v * 1000)) for t, v in ps]
        if len(coords) > 1:
            line = " ".join(f"{a:.1f},{b:.1f}" for a, b in coords)
            parts.append(f"<polyline fill='none' stroke='{colour}' stroke-width='1.5' points='{line}'/>")
        for (a, b), (t, v) in zip(coords[-120:], ps[-120:], strict=True):
            parts.append(
                f"<circle cx='{a:.1f}' cy='{b:.1f}' r='2.2' fill='{colour}'>"
                f"<title>{label} {_ms(v)} ms at {t:.3f} s</title></circle>"
            )
    for t in lost[-120:]:
        a = x(t)
        parts.append(
            f"<g class='rawws-latency-timeout' stroke='#e74c3c' stroke-width='1.5'>"
            f"<line x1='{a - 3:.1f}' y1='{pad_top - 3}' x2='{a + 3:.1f}' y2='{pad_top + 3}'/>"
            f"<line x1='{a - 3:.1f}' y1='{pad_top + 3}' x2='{a + 3:.1f}' y2='{pad_top - 3}'/>"
            f"<title>no pong in time at {t:.3f} s</title></g>"
        )
    parts.append("</svg>")
    return "".join(parts)


class LatencyPanel(Panel):
    """Round trips of pings, live: "ping now", an opt-in periodic ping (the user starts
    it; nothing is sent automatically), p50/p95/p99/max and a chart of the last
    `history` values over time (hover a point for its value; time-outs drawn in red).

    Pings go through `session.ping(payload, timeout)`; the Pong is still delivered to
    `session.incoming` and the timeline, as every frame is. When nobody consumes
    `incoming` and it fills up (`max_queue`), reading pauses and no Pong can be read:
    the panel then says so instead of reporting a time-out (such a ping counts as
    `unmeasured`, not `lost`), the periodic ping waits instead of sending, and the
    "drain incoming" button appears (`on_drain`, set by the Dashboard, or else a one-off
    read of what is waiting).

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
        self.points: dict[str, deque[tuple[float, float]]] = {
            "ping": deque(maxlen=self.history),
            "request": deque(maxlen=self.history),
        }
        self.timeouts: deque[float] = deque(maxlen=self.history)
        self.key = key
        self.pings = 0
        self.lost = 0
        self.unmeasured = 0
        self.on_drain: Callable[[], object] | None = None
        self.drained = 0
        self._seq = 0
        self._version = 0
        self._periodic_handle: Handle | None = None
        self._scanned = session.recorder.total if session.recorder is not None else 0
        self._pending: dict[Hashable, float] = {}
        self._started_ns = time.time_ns()

        self.ping_button = widgets.Button(
            description="ping now", icon="exchange", tooltip="send one Ping, time its Pong", layout=_auto()
        )
        self.ping_button.add_class("rawws-ping-now")
        self.ping_button.on_click(lambda _: self.ping_now())
        self.periodic = widgets.ToggleButton(
            value=False,
            description="periodic ping",
            icon="repeat",
            tooltip="ping every `every (s)` seconds",
            layout=_auto(),
        )
        self.periodic.add_class("rawws-ping-periodic")
        self.periodic.observe(self._on_periodic, "value")
        self.interval = widgets.BoundedFloatText(
            value=max(float(interval), MIN_INTERVAL),
            min=MIN_INTERVAL,
            max=3600.0,
            step=0.1,
            description="every (s)",
            layout=widgets.Layout(width="130px"),
            style={"description_width": "initial"},
        )
        self.interval.add_class("rawws-ping-interval")
        self.timeout = widgets.BoundedFloatText(
            value=float(timeout),
            min=0.01,
            max=600.0,
            step=0.5,
            description="timeout (s)",
            layout=widgets.Layout(width="140px"),
            style={"description_width": "initial"},
        )
        self.timeout.add_class("rawws-ping-timeout")
        self.clear_button = widgets.Button(description="clear", layout=_auto())
        self.clear_button.on_click(lambda _: self.clear())
        self.drain_button = widgets.Button(
            description="drain incoming",
            icon="download",
            button_style="warning",
            tooltip="consume session.incoming so that reading resumes (frames stay in the timeline)",
            layout=widgets.Layout(width="auto", display="none"),
        )
        self.drain_button.add_class("rawws-latency-drain")
        self.drain_button.on_click(lambda _: self.drain())
        self.paused_note = widgets.HTML()
        self.paused_note.add_class("rawws-latency-paused")
        self.stats = widgets.HTML("<small>no round trips yet: press “ping now”</small>")
        self.stats.add_class("rawws-latency-stats")
        self.chart = widgets.HTML()
        self.chart.add_class("rawws-latency-chart")
        wrap = widgets.Layout(flex_flow="row wrap", align_items="center")
        self.children = [
            widgets.HTML("<b>Latency</b>"),
            widgets.HBox([self.ping_button, self.periodic, self.clear_button], layout=wrap),
            widgets.HBox([self.interval, self.timeout], layout=wrap),
            widgets.HBox([self.paused_note, self.drain_button], layout=wrap),
            self.stats,
            self.chart,
            self.status,
        ]
        if autorefresh:
            self.start()

    # -- measuring (on the session's loop) ------------------------------------------

    def _now(self) -> float:
        rec = self.session.recorder
        t0 = rec.t0 if rec is not None and rec.t0 else self._started_ns
        return (time.time_ns() - t0) / 1e9

    def record(self, rtt: float, kind: str = "ping", at: float | None = None) -> None:
        """Add a round trip (seconds) measured `at` seconds since open (default now).
        Call on the session's loop."""
        (self.rtts if kind == "ping" else self.request_rtts).append(float(rtt))
        self.points.setdefault(kind, deque(maxlen=self.history)).append(
            (self._now() if at is None else float(at), float(rtt))
        )
        self._version += 1

    def clear(self) -> None:
        self.rtts.clear()
        self.request_rtts.clear()
        for ps in self.points.values():
            ps.clear()
        self.timeouts.clear()
        self.pings = self.lost = self.unmeasured = 0
        self._version += 1
        self.mark_dirty()

    def paused_text(self) -> str:
        """Why no Pong can be read now ("" when reading is not paused)."""
        s = self.session
        if not s.reading_paused:
            return ""
        return (
            f"reading is paused: incoming is full ({len(s.incoming)} frames waiting, max_queue "
            f"{s.max_queue}), so no Pong can be read; drain incoming (or read it) to measure"
        )

    async def ping_once(self) -> float:
        """One Ping, wait for its Pong; records and returns the round trip (seconds).
        Runs on the session's loop. Raises `TimeoutError` when the Pong did not come in
        time (counted as lost) and `ReadingPaused` when it could not be read because
        reading was paused (counted as unmeasured, never as a time-out)."""
        session = self.session
        if session.reading_paused:
            self.unmeasured += 1
            self._version += 1
            raise ReadingPaused(self.paused_text())
        self._seq += 1
        payload = b"latency-%d" % self._seq
        timeout = float(self.timeout.value) or None
        self.pings += 1
        task = asyncio.ensure_future(session.ping(payload, timeout=timeout))
        paused = False
        try:
            while not task.done():
                await asyncio.wait((task,), timeout=_PAUSE_POLL)
                paused = paused or session.reading_paused
        except asyncio.CancelledError:
            task.cancel()
            raise
        try:
            rtt = task.result()
        except TimeoutError:
            self._version += 1
            if paused or session.reading_paused:
                # The Pong may well have come: it is unread behind a full `incoming`.
                self.unmeasured += 1
                raise ReadingPaused(
                    f"{payload.decode()} not measured: " + (self.paused_text() or "reading was paused meanwhile")
                ) from None
            self.lost += 1
            self.timeouts.append(self._now())
            raise TimeoutError(f"no pong for {payload.decode()} within {timeout:g} s") from None
        self.record(rtt)
        return rtt

    def ping_now(self) -> Handle | None:
        """Send one Ping now (from any thread); the result shows in the panel."""

        async def once() -> float | None:
            try:
                return await self.ping_once()
            except ReadingPaused as exc:
                self.status.busy(str(exc))
                return None

        def shown(rtt: float | None) -> None:
            if rtt is not None:
                self.status.ok(f"pong after {_ms(rtt)} ms")

        return self.run(once, what="ping", on_ok=shown)

    def drain(self) -> Handle | None:
        """What the "drain incoming" button does (from any thread): `on_drain()` when set
        (the Dashboard turns its own drain on), else read what waits in `incoming` now."""
        if self.on_drain is not None:
            try:
                self.on_drain()
            except Exception as exc:
                self.status.error(f"drain: {describe_error(exc)}")
            return None

        async def once() -> int:
            incoming = self.session.incoming
            n = 0
            while len(incoming):
                await incoming.receive()
                n += 1
            self.drained += n
            self.mark_dirty()
            return n

        return self.run(once, what="drain", on_ok=lambda n: self.status.ok(f"drained {n} frames from incoming"))

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
        if self.session.state is not SessionState.OPEN:
            self.status.error(f"periodic ping: the session is {self.session.state.value}")
            if self.periodic.value:
                self.periodic.value = False
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
        session = self.session
        try:
            while session.state is SessionState.OPEN:
                try:
                    await self.ping_once()
                except ReadingPaused as exc:
                    self.status.busy(f"periodic ping waits: {exc}")
                except TimeoutError as exc:
                    self.status.error(str(exc))
                except SessionClosed:
                    break
                await asyncio.sleep(max(float(self.interval.value), MIN_INTERVAL))
            self.status.info(f"periodic ping stopped: the session is {session.state.value}")
        finally:
            if self._periodic_handle is not None:
                self._periodic_handle = None
            if self.periodic.value:
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
                self.record(row["t_rel"] - pending.pop(k), "request", at=row["t_rel"])

    def _change_key(self) -> Hashable:
        self._scan()
        s = self.session
        return (self._version, s.state, s.reading_paused, len(s.incoming) if s.reading_paused else 0)

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
        if self.pings or self.unmeasured:
            counts = f"{self.pings} pings, {self.lost} without a pong in time"
            if self.unmeasured:
                counts += f", {self.unmeasured} not measured (reading paused)"
            lines.append(f"<small>{counts}</small>")
        self.stats.value = (
            "<div style='font-size:90%'>" + "<br>".join(lines) + "</div>"
            if lines
            else html.escape("no round trips yet: press “ping now”")
        )
        self.chart.value = _svg_chart({k: list(v) for k, v in self.points.items()}, self.timeouts)
        paused = self.paused_text()
        self.paused_note.value = (
            f"<span class='rawws-status-busy' style='color:#b9770e;font-size:90%'>⏸ {html.escape(paused)}</span>"
            if paused
            else ""
        )
        self.drain_button.layout.display = None if paused else "none"
        closed = self.session.state is not SessionState.OPEN
        for w in (self.ping_button, self.periodic):
            w.disabled = closed

    def stats_dict(self, kind: str = "ping") -> dict[str, float]:
        """The statistics of the ping (or "request") round trips, in seconds."""
        return latency_stats(self.rtts if kind == "ping" else self.request_rtts)

    def close(self) -> None:
        try:
            self.stop_periodic()
        except Exception:  # closing must not fail (it also runs from __del__ at exit)
            pass
        super().close()
