"""`TimelinePanel`: a live table of the most recent frames."""

from __future__ import annotations

import html
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ._base import DEFAULT_REFRESH_INTERVAL, Panel

if TYPE_CHECKING:
    from ..session import RawSession
    from ..timeline.recorder import RecentFrame, Recorder

__all__ = ["TimelinePanel"]

OPCODE_FILTERS = ["all", "text", "binary", "continuation", "ping", "pong", "close", "control", "errors"]
_ARROWS = {"tx": "→", "rx": "←"}
_DIR_COLOURS = {"tx": "#1f5fa8", "rx": "#1d7a38"}
_PREVIEW = 80
_SCAN_FACTOR = 20  # with a filter, look this many times `rows` back for matching frames
_SCAN_MIN = 1000

_STYLE = (
    "<style>.rawws-tl{border-collapse:collapse;font:12px/1.35 ui-monospace,SFMono-Regular,Menlo,monospace}"
    ".rawws-tl td,.rawws-tl th{padding:1px 6px;text-align:left;vertical-align:top;white-space:nowrap}"
    ".rawws-tl th{border-bottom:1px solid #bbb;font-weight:600}"
    ".rawws-tl td.p{white-space:pre-wrap;word-break:break-all;max-width:38em}"
    ".rawws-tl tr.err td{background:#fdecea}</style>"
)


def _bytes_preview(data: bytes, limit: int = 24) -> str:
    if not data:
        return ""
    head = data[:limit]
    if all(32 <= b < 127 for b in head):
        return repr(head.decode("ascii")) + ("…" if len(data) > limit else "")
    return head.hex(" ") + (" …" if len(data) > limit else "")


def _short(text: str, limit: int = _PREVIEW) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class TimelinePanel(Panel):
    """The last `rows` frames of the session, newest first: frame number, time since
    open, direction (→ sent, ← received), opcode, fin/rsv, length, a text or hex
    preview, the decoded codec message and any error.

    Filters by direction and opcode, counters, pause/resume. Updates come from one
    task on the session's loop, at most every `refresh_interval` seconds and only when
    frames were recorded, so a flood never floods the browser or starves the kernel.
    """

    def __init__(
        self,
        session: RawSession,
        rows: int = 50,
        *,
        refresh_interval: float = DEFAULT_REFRESH_INTERVAL,
        autorefresh: bool = True,
    ) -> None:
        super().__init__(session, refresh_interval=refresh_interval, status_class="rawws-timeline-status")
        self.add_class("rawws-timeline")
        self.rows = max(int(rows), 1)
        self.direction = widgets.ToggleButtons(
            options=[("all", "all"), ("→ tx", "tx"), ("← rx", "rx")], value="all", style={"button_width": "52px"}
        )
        self.direction.add_class("rawws-timeline-dir")
        self.opcode = widgets.Dropdown(
            options=OPCODE_FILTERS, value="all", description="opcode", layout=widgets.Layout(width="180px")
        )
        self.opcode.add_class("rawws-timeline-opcode")
        self.pause = widgets.ToggleButton(value=False, description="pause", icon="pause", tooltip="freeze the table")
        self.pause.add_class("rawws-timeline-pause")
        self.counters = widgets.HTML()
        self.counters.add_class("rawws-timeline-counters")
        self.table = widgets.HTML(value="<i>no frames yet</i>")
        self.table.add_class("rawws-timeline-rows")
        self.table.layout = widgets.Layout(max_height="360px", overflow="auto")
        for w in (self.direction, self.opcode, self.pause):
            w.observe(self._on_filter, "value")
        self.children = [
            widgets.HTML("<b>Timeline</b> <small>(newest first)</small>"),
            widgets.HBox([self.direction, self.opcode, self.pause]),
            self.counters,
            self.table,
            self.status,
        ]
        self._counted = 0  # absolute row up to which tx/rx were counted
        self._tx = 0
        self._rx = 0
        self.shown = 0  # rows in the table now
        if autorefresh:
            self.start()

    def _on_filter(self, change: dict[str, Any]) -> None:
        if change["owner"] is self.pause:
            self.pause.description = "resume" if change["new"] else "pause"
            self.pause.icon = "play" if change["new"] else "pause"
        self.mark_dirty()

    # -- rendering (on the session's loop) ------------------------------------------

    def _change_key(self) -> Hashable:
        rec = self.session.recorder
        total = rec.total if rec is not None else -1
        return (total, self.session.state)

    def _render(self) -> None:
        rec = self.session.recorder
        if rec is None:
            self.counters.value = "<small>recording is off (session opened with record=False)</small>"
            self.table.value = ""
            return
        self._count(rec)
        bits = [
            f"{rec.total} frames",
            f"→ {self._tx} sent",
            f"← {self._rx} received",
            f"{rec.dropped} dropped (capacity)" if rec.dropped else "",
        ]
        if self.pause.value:
            bits.append("<b>paused</b>")
        else:
            frames = self._select(rec)
            self.shown = len(frames)
            errors = sum(f.error is not None for f in frames)
            bits.append(f"showing {self.shown}" + (f", {errors} with errors" if errors else ""))
            self.table.value = self._table(frames)
        self.counters.value = "<small>" + " · ".join(b for b in bits if b) + "</small>"

    def _count(self, rec: Recorder) -> None:
        """Count tx/rx incrementally over the rows recorded since the last render."""
        tx, rx = rec.count(self._counted)
        self._tx += tx
        self._rx += rx
        self._counted = rec.total

    def _select(self, rec: Recorder) -> list[RecentFrame]:
        """The newest `rows` frames passing the filters (`Recorder.recent`: no pandas)."""
        direction, opcode = self.direction.value, self.opcode.value
        if direction == "all" and opcode == "all":
            return rec.recent(self.rows)
        frames = rec.recent(max(self.rows * _SCAN_FACTOR, _SCAN_MIN))
        if direction != "all":
            frames = [f for f in frames if f.dir == direction]
        if opcode == "errors":
            frames = [f for f in frames if f.error is not None]
        elif opcode == "control":
            frames = [f for f in frames if f.opcode in ("close", "ping", "pong")]
        elif opcode != "all":
            frames = [f for f in frames if f.opcode == opcode]
        return frames[-self.rows :] if self.rows else []

    def _table(self, frames: list[RecentFrame]) -> str:
        if not frames:
            return "<i>no frames yet</i>" if self.direction.value == "all" else "<i>no matching frames</i>"
        has_codec = any(f.msg_type is not None for f in frames)
        head = ["#", "t (s)", "", "opcode", "fin", "rsv", "len", "preview"]
        if has_codec:
            head.append("decoded")
        head.append("error")
        out = [_STYLE, "<table class='rawws-tl'><tr>", *(f"<th>{h}</th>" for h in head), "</tr>"]
        rows = []
        esc = html.escape
        for f in frames:
            if f.opcode == "close":
                if f.close_code is not None:
                    preview = f"{f.close_code} {f.close_reason!r}" if f.close_reason is not None else str(f.close_code)
                else:
                    preview = "(no code)" if not f.payload else _bytes_preview(f.payload)
            elif f.text is not None:
                preview = repr(_short(f.text))
            else:
                preview = _bytes_preview(f.payload)
            rsv = "".join(("1" if f.rsv & 4 else "-", "2" if f.rsv & 2 else "-", "3" if f.rsv & 1 else "-"))
            d = f.dir
            cells = [
                f"<td>{f.row}</td><td>{f.t_rel:.3f}</td>",
                f"<td style='color:{_DIR_COLOURS.get(d, '#333')}' title='{d}'>{_ARROWS.get(d, '?')}</td>",
                f"<td>{esc(f.opcode)}</td><td>{'✓' if f.fin else '…'}</td><td>{rsv}</td><td>{f.length}</td>",
                f"<td class='p'>{esc(preview)}</td>",
            ]
            if has_codec:
                dec = ""
                if f.msg_type is not None:
                    dec = f.msg_type + (" " + _short(repr(f.fields), 60) if f.fields is not None else "")
                cells.append(f"<td class='p'>{esc(dec)}</td>")
            err = f.error
            cells.append(f"<td class='p' style='color:#c0392b'>{esc(err) if err is not None else ''}</td>")
            rows.append(f"<tr class='{'err' if err is not None else ''}'>" + "".join(cells) + "</tr>")
        rows.reverse()  # newest first
        out.extend(rows)
        out.append("</table>")
        return "".join(out)
