"""`TimelinePanel`: the frame inspector: a clickable table over the whole recording, filters,
a detail pane, a message view and export."""

from __future__ import annotations

import html
import re
from bisect import bisect_right
from collections.abc import Hashable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ..frames import FRAME_CLASSES, Frame, FrameType, hexdump
from ..loops import Handle
from ._base import DEFAULT_REFRESH_INTERVAL, Panel

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from ..session import RawSession
    from ..timeline.recorder import RecentFrame, Recorder

__all__ = ["EXPORT_FORMATS", "OPCODE_FILTERS", "TimelinePanel"]

OPCODE_FILTERS = ["all", "text", "binary", "continuation", "ping", "pong", "close", "control", "data"]
EXPORT_FORMATS = ("parquet", "har", "csv", "pcapng")
_OPCODE_SETS = {
    "control": {"ping", "pong", "close"},
    "data": {"text", "binary", "continuation"},
}
_ARROWS = {"tx": "→", "rx": "←"}
_OPCODE_NUMBERS = {"continuation": 0, "text": 1, "binary": 2, "close": 8, "ping": 9, "pong": 10}
_PREVIEW = 60
_CONSOLIDATE = 32  # merge the index's chunks when there are more than this many
_HEX_LIMIT = 4096  # bytes of payload shown in the detail pane's hex dump

_CSS = """<style>
.rawws-timeline .rawws-timeline-rows select{font:12px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
  white-space:pre;overflow-x:auto;height:auto}
.rawws-timeline .rawws-timeline-head{font:600 12px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
  white-space:pre;overflow:hidden;padding-left:4px}
.rawws-detail{font-size:12px;min-width:0}
.rawws-detail pre{white-space:pre-wrap;overflow-wrap:anywhere;margin:2px 0 6px 0;max-height:16em;overflow-y:auto;
  font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
  background:var(--jp-layout-color2,rgba(127,127,127,.08));padding:4px;border-radius:3px}
.rawws-detail table.bits td{padding:0 8px 0 0;font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.rawws-detail .err{color:#e74c3c;white-space:pre-wrap;overflow-wrap:anywhere}
.rawws-detail ul{margin:0;padding-left:1.2em}
</style>"""


def _bytes_preview(data: bytes, limit: int = 20) -> str:
    if not data:
        return ""
    head = data[:limit]
    if all(32 <= b < 127 for b in head):
        return repr(head.decode("ascii")) + ("…" if len(data) > limit else "")
    return head.hex(" ") + (" …" if len(data) > limit else "")


def _short(text: str, limit: int = _PREVIEW) -> str:
    text = text.replace("\n", "⏎").replace("\r", "␍").replace("\t", "⇥")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _na(value: Any) -> bool:
    """None, NaN or pandas NA (a missing cell)."""
    if value is None:
        return True
    import pandas as pd

    return bool(pd.api.types.is_scalar(value) and pd.isna(value))


def hexdump_lines(data: bytes, width: int = 16) -> str:
    """Offset, hex and ASCII, `width` bytes a line (`frames.hexdump`, not capped)."""
    return hexdump(data, width, limit=None)


def _tree(value: Any, depth: int = 0) -> str:
    """Decoded codec fields as nested lists (dicts, lists, bytes as hex)."""
    esc = html.escape
    if depth > 8:
        return esc(repr(value))
    if isinstance(value, dict):
        items = "".join(f"<li><b>{esc(str(k))}</b>: {_tree(v, depth + 1)}</li>" for k, v in value.items())
        return f"<ul>{items}</ul>"
    if isinstance(value, list | tuple):
        items = "".join(f"<li>[{i}] {_tree(v, depth + 1)}</li>" for i, v in enumerate(value))
        return f"<ul>{items}</ul>" if items else "[]"
    if isinstance(value, bytes | bytearray):
        return f"<code>{esc(bytes(value).hex(' '))}</code> <small>({len(value)} bytes)</small>"
    return f"<code>{esc(repr(value))}</code>"


class _Index:
    """The panel's copy of the recording as DataFrame chunks, extended incrementally
    (only the rows recorded since the last update are built), for paging and filtering
    over every kept row. Built only while the panel needs it (a filter, paging back, the
    message view, the detail pane): following the newest rows needs none of it."""

    def __init__(self) -> None:
        self.chunks: list[pd.DataFrame] = []
        self.starts: list[int] = []
        self.end = 0  # the next absolute row to load

    def update(self, rec: Recorder) -> bool:
        """Load what was recorded since the last update; drop what the recorder dropped.
        Returns whether anything changed."""
        changed = False
        first = rec.first
        while self.chunks and self.starts[0] + len(self.chunks[0]) <= first:
            self.chunks.pop(0)
            self.starts.pop(0)
            changed = True
        self.end = max(self.end, first)
        total = rec.total
        if total > self.end:
            df = rec.to_dataframe(since=self.end)
            if len(df):
                self.chunks.append(df)
                self.starts.append(int(df.index[0]))
                changed = True
            self.end = total
        if len(self.chunks) > _CONSOLIDATE:
            import pandas as pd

            merged = pd.concat(self.chunks)
            merged.attrs = self.chunks[-1].attrs
            self.chunks, self.starts = [merged], [int(merged.index[0])]
        return changed

    def frame(self, row: int) -> pd.Series | None:
        i = bisect_right(self.starts, row) - 1
        if i < 0:
            return None
        chunk = self.chunks[i]
        pos = row - self.starts[i]
        if pos >= len(chunk):
            return None
        return chunk.iloc[pos]

    def t_before(self, row: int) -> float | None:
        """`t_rel` of the frame before `row` (for deltas)."""
        prev = self.frame(row - 1)
        return None if prev is None else float(prev["t_rel"])

    def whole(self) -> pd.DataFrame:
        import pandas as pd

        from ..timeline.schema import empty_timeline

        if not self.chunks:
            return empty_timeline()
        if len(self.chunks) == 1:
            return self.chunks[0]
        merged = pd.concat(self.chunks)
        merged.attrs = self.chunks[-1].attrs
        self.chunks, self.starts = [merged], [int(merged.index[0])]
        return merged


class TimelinePanel(Panel):
    """The frame inspector of a session: every kept frame of the recording, not only the
    newest.

    - **Table** (`table`, a list box: click a row to inspect it): frame number, time
      since open and the delta to the frame before it (µs resolution), direction (→
      sent, ← received), the wire opcode (a continuation frame shows as continuation),
      fin/rsv, length, a preview, the codec message type and an error mark. Pages of
      `rows` frames (`first_page`/`prev_page`/`next_page`/`last_page`), newest or oldest
      first (`order`), and `follow` (on by default) keeps the newest page in view.
    - **Filters**: direction, opcode (or control/data), text or regex (`search`,
      `regex`) on the text preview and the payload's hex, length range (`min_length`,
      `max_length`), `errors_only`, codec message type (`msg_type`).
    - **Detail pane** (`detail`) of the selected frame (`select(row)`): header bits
      (fin, rsv1-3, opcode, mask, length), UTC time to the ns, the full payload as
      text, hex + ASCII, decoded codec fields as a tree, the error in full; "resend"
      (`resend()`) and "copy as hex" (`copy_hex()`, into a text box to copy from).
    - **Message view** (`view.value = "messages"`): fragments reassembled, one row per
      message (`df.rawws.messages()`).
    - **Export** (`export(fmt, path)`): Parquet, HAR or CSV of the whole recording (or
      of the filtered rows with `filtered=True`).

    Updates come from one task on the session's loop, at most every `refresh_interval`
    seconds and only when something changed. While following with no filter, a render
    reads the newest `rows` frames only (`Recorder.recent`, no pandas); filters, paging
    back, the message view and the detail pane use an index built incrementally from the
    recorder (only new rows are converted at each tick). Every programmatic trigger
    (setting a widget's value, `select`, `next_page`, ...) renders at once when called on
    the session's loop, else at the next tick.
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
        self.page = 0  # 0: the first page in the current order
        self.pages = 1
        self.matched = 0
        self.shown = 0
        self.selected: int | None = None
        self.last_export: Path | None = None
        self._index = _Index()
        self._matches: np.ndarray | None = None
        self._matches_key: Hashable = None
        self._matched_upto = 0
        self._messages: pd.DataFrame | None = None
        self._messages_at = -1
        self._listed: list[int] = []
        self._rendering = False
        self._filter_error = ""
        self._counted = 0
        self._tx = 0
        self._rx = 0
        self._msg_types: list[str] = []

        small = {"description_width": "initial"}
        self.direction = widgets.ToggleButtons(
            options=[("all", "all"), ("→ tx", "tx"), ("← rx", "rx")], value="all", style={"button_width": "auto"}
        )
        self.direction.add_class("rawws-timeline-dir")
        self.opcode = widgets.Dropdown(
            options=OPCODE_FILTERS, value="all", description="opcode", style=small, layout=_w("150px")
        )
        self.opcode.add_class("rawws-timeline-opcode")
        self.search = widgets.Text(
            value="", placeholder="text or hex in the preview", description="find", style=small, layout=_w("230px")
        )
        self.search.add_class("rawws-timeline-search")
        self.regex = widgets.Checkbox(value=False, description="regex", indent=False, layout=_w("auto"))
        self.regex.add_class("rawws-timeline-regex")
        self.min_length = widgets.IntText(value=0, description="len ≥", style=small, layout=_w("110px"))
        self.min_length.add_class("rawws-timeline-min-length")
        self.max_length = widgets.IntText(value=-1, description="≤", style=small, layout=_w("100px"))
        self.max_length.add_class("rawws-timeline-max-length")
        self.max_length.tooltip = "-1: no upper bound"
        self.errors_only = widgets.Checkbox(value=False, description="errors only", indent=False, layout=_w("auto"))
        self.errors_only.add_class("rawws-timeline-errors")
        self.msg_type = widgets.Dropdown(
            options=["all"], value="all", description="msg type", style=small, layout=_w("170px")
        )
        self.msg_type.add_class("rawws-timeline-msg-type")
        self.view = widgets.ToggleButtons(
            options=[("frames", "frames"), ("messages", "messages")], value="frames", style={"button_width": "auto"}
        )
        self.view.add_class("rawws-timeline-view")
        self.order = widgets.ToggleButtons(
            options=[("newest first", "newest"), ("oldest first", "oldest")],
            value="newest",
            style={"button_width": "auto"},
        )
        self.order.add_class("rawws-timeline-order")
        self.follow = widgets.ToggleButton(
            value=True,
            description="follow",
            icon="arrow-down",
            tooltip="keep the newest frames in view",
            layout=_w("auto"),
        )
        self.follow.add_class("rawws-timeline-follow")
        self.first_button = _nav("fast-backward", "first page", self.first_page)
        self.prev_button = _nav("chevron-left", "previous page", self.prev_page)
        self.next_button = _nav("chevron-right", "next page", self.next_page)
        self.last_button = _nav("fast-forward", "last page", self.last_page)
        self.page_label = widgets.HTML()
        self.page_label.add_class("rawws-timeline-page")
        self.counters = widgets.HTML()
        self.counters.add_class("rawws-timeline-counters")
        self.header = widgets.HTML()
        self.header.add_class("rawws-timeline-head")
        self.table = widgets.Select(options=[], rows=min(self.rows, 20), layout=widgets.Layout(width="100%"))
        self.table.add_class("rawws-timeline-rows")
        self.detail = widgets.HTML("<i>click a row to inspect the frame</i>")
        self.detail.add_class("rawws-detail")
        self.resend_button = widgets.Button(
            description="resend",
            icon="repeat",
            tooltip="send this frame (or message) again",
            layout=_w("auto"),
            disabled=True,
        )
        self.resend_button.add_class("rawws-detail-resend")
        self.resend_button.on_click(lambda _: self.resend())
        self.copy_button = widgets.Button(
            description="copy as hex",
            icon="copy",
            tooltip="the payload as hex, in the box below",
            layout=_w("auto"),
            disabled=True,
        )
        self.copy_button.add_class("rawws-detail-copy")
        self.copy_button.on_click(lambda _: self.copy_hex())
        self.copy_box = widgets.Textarea(
            value="", placeholder="copy as hex puts the payload here", rows=2, layout=widgets.Layout(width="100%")
        )
        self.copy_box.add_class("rawws-detail-hex")
        self.export_format = widgets.Dropdown(
            options=[("Parquet", "parquet"), ("HAR", "har"), ("CSV", "csv"), ("pcapng", "pcapng")],
            value="parquet",
            layout=_w("100px")
        )
        self.export_format.add_class("rawws-export-format")
        self.export_path = widgets.Text(
            value="", placeholder="file (default: timeline-<time>.<ext>)", layout=_w("220px")
        )
        self.export_path.add_class("rawws-export-path")
        self.export_filtered = widgets.Checkbox(
            value=False, description="filtered rows only", indent=False, layout=_w("auto")
        )
        self.export_button = widgets.Button(description="export", icon="save", layout=_w("auto"))
        self.export_button.add_class("rawws-export-button")
        self.export_button.on_click(lambda _: self.export_now())

        for w in (
            self.direction,
            self.opcode,
            self.search,
            self.regex,
            self.min_length,
            self.max_length,
            self.errors_only,
            self.msg_type,
            self.view,
            self.order,
        ):
            w.observe(self._on_filter, "value")
        self.follow.observe(self._on_follow, "value")
        self.table.observe(self._on_pick, "value")

        wrap = widgets.Layout(flex_flow="row wrap", align_items="center", grid_gap="2px 6px")
        self._msg_type_box = widgets.HBox([self.msg_type])
        self._msg_type_box.layout.display = "none"
        listing = widgets.VBox(
            [
                widgets.HBox(
                    [
                        self.view,
                        self.order,
                        self.follow,
                        self.first_button,
                        self.prev_button,
                        self.page_label,
                        self.next_button,
                        self.last_button,
                    ],
                    layout=wrap,
                ),
                self.counters,
                self.header,
                self.table,
            ],
            layout=widgets.Layout(flex="3 1 30em", min_width="0"),
        )
        detail_box = widgets.VBox(
            [widgets.HBox([self.resend_button, self.copy_button], layout=wrap), self.detail, self.copy_box],
            layout=widgets.Layout(flex="2 1 20em", min_width="0", padding="0 0 0 8px"),
        )
        detail_box.add_class("rawws-detail-pane")
        self.children = [
            widgets.HTML(_CSS + "<b>Timeline</b>"),
            widgets.HBox([self.direction, self.opcode, self.search, self.regex], layout=wrap),
            widgets.HBox([self.min_length, self.max_length, self.errors_only, self._msg_type_box], layout=wrap),
            widgets.HBox([listing, detail_box], layout=widgets.Layout(flex_flow="row wrap", width="100%")),
            widgets.HBox([self.export_format, self.export_path, self.export_filtered, self.export_button], layout=wrap),
            self.status,
        ]
        if autorefresh:
            self.start()

    # -- programmatic triggers (any thread) -------------------------------------------

    def set_filter(self, **values: Any) -> None:
        """Set filter widgets by name (`direction`, `opcode`, `search`, `regex`,
        `min_length`, `max_length`, `errors_only`, `msg_type`, `view`, `order`, `follow`)."""
        for name, value in values.items():
            w = getattr(self, name, None)
            if not isinstance(w, widgets.ValueWidget):
                raise AttributeError(f"no filter named {name!r}")
            w.value = value

    def select(self, row: int | None) -> None:
        """Inspect frame `row` (absolute frame number; a message number in the message
        view), as a click on its table row does; None clears the selection."""
        self.selected = None if row is None else int(row)
        self._rerender()

    def first_page(self) -> None:
        self._goto(0)

    def prev_page(self) -> None:
        self._goto(self.page - 1)

    def next_page(self) -> None:
        self._goto(self.page + 1)

    def last_page(self) -> None:
        self._goto(self.pages - 1)

    def _goto(self, page: int) -> None:
        self.page = max(0, min(int(page), max(self.pages - 1, 0)))
        if self.follow.value:
            self._rendering = True
            try:
                self.follow.value = False
            finally:
                self._rendering = False
        self._rerender()

    def _rerender(self) -> None:
        self.mark_dirty()
        from ..loops import call_soon

        call_soon(self.loop, self.refresh)

    # -- observers ----------------------------------------------------------------------

    def _on_filter(self, change: dict[str, Any]) -> None:
        self.page = 0
        if change["owner"] is self.view:
            self.selected = None
        self._rerender()

    def _on_follow(self, change: dict[str, Any]) -> None:
        if self._rendering:
            return
        if change["new"]:
            self.page = 0
        self._rerender()

    def _on_pick(self, change: dict[str, Any]) -> None:
        if self._rendering or change["new"] is None or change["new"] < 0:
            return
        self.select(int(change["new"]))

    # -- filtering (on the session's loop) ------------------------------------------------

    def _filter_key(self) -> tuple[Any, ...]:
        return (
            self.direction.value,
            self.opcode.value,
            self.search.value,
            bool(self.regex.value),
            int(self.min_length.value or 0),
            int(self.max_length.value if self.max_length.value is not None else -1),
            bool(self.errors_only.value),
            self.msg_type.value,
        )

    def filtering(self) -> bool:
        """True when any filter is set."""
        return self._filter_key() != ("all", "all", "", False, 0, -1, False, "all")

    def _mask(self, df: pd.DataFrame) -> np.ndarray:
        import numpy as np

        mask = np.ones(len(df), dtype=bool)
        direction, opcode, search, regex, lo, hi, errors, msg_type = self._filter_key()
        if direction != "all":
            mask &= (df["dir"] == direction).to_numpy(dtype=bool)
        if opcode != "all":
            wanted = _OPCODE_SETS.get(opcode, {opcode})
            mask &= df["opcode"].isin(wanted).to_numpy(dtype=bool)
        if lo:
            mask &= df["length"].to_numpy() >= lo
        if hi >= 0:
            mask &= df["length"].to_numpy() <= hi
        if errors:
            mask &= df["error"].notna().to_numpy(dtype=bool)
        if msg_type != "all" and "msg_type" in df.columns:
            mask &= (df["msg_type"] == msg_type).fillna(False).to_numpy(dtype=bool)
        if search:
            mask &= self._search_mask(df, search, regex)
        return mask

    def _search_mask(self, df: pd.DataFrame, search: str, regex: bool) -> np.ndarray:
        import numpy as np

        if regex:
            try:
                pattern = re.compile(search)
            except re.error as exc:
                self._filter_error = f"bad regex {search!r}: {exc}"
                return np.ones(len(df), dtype=bool)
        else:
            pattern = re.compile(re.escape(search), re.IGNORECASE)
        self._filter_error = ""
        texts = df["text"].to_numpy(dtype=object, na_value=None)
        payloads = df["payload"].to_numpy()
        out = np.zeros(len(df), dtype=bool)
        for i, (text, payload) in enumerate(zip(texts, payloads, strict=True)):
            if text is not None:
                hay = text
            elif df["opcode"].iat[i] == "close" and not _na(df["close_reason"].iat[i]):
                hay = f"{df['close_code'].iat[i]} {df['close_reason'].iat[i]}"
            else:
                p = bytes(payload or b"")
                hay = p[:64].hex(" ") + " " + p[:64].decode("latin-1")
            out[i] = pattern.search(hay) is not None
        return out

    def _update_matches(self) -> np.ndarray:
        """Absolute rows of the kept frames that pass the filters (incremental)."""
        import numpy as np

        idx = self._index
        key = self._filter_key()
        if key != self._matches_key or self._matches is None:
            self._matches_key = key
            self._matched_upto = idx.starts[0] if idx.starts else 0
            self._matches = np.zeros(0, dtype=np.int64)
        first = idx.starts[0] if idx.starts else idx.end
        parts = [self._matches[self._matches >= first]]
        for start, chunk in zip(idx.starts, idx.chunks, strict=True):
            stop = start + len(chunk)
            if stop <= self._matched_upto:
                continue
            part = chunk.iloc[max(self._matched_upto - start, 0) :]
            parts.append(part.index.to_numpy(dtype=np.int64)[self._mask(part)])
        self._matched_upto = idx.end
        self._matches = np.concatenate(parts) if len(parts) > 1 else parts[0]
        return self._matches

    # -- rendering (on the session's loop) ------------------------------------------------

    def _change_key(self) -> Hashable:
        rec = self.session.recorder
        total = rec.total if rec is not None else -1
        return (total, rec.first if rec is not None else 0, self.session.state)

    def _fast(self) -> bool:
        return self.follow.value and not self.filtering() and self.view.value == "frames"

    def _render(self) -> None:
        rec = self.session.recorder
        if rec is None:
            self.counters.value = "<small>recording is off (session opened with record=False)</small>"
            self.table.options = []
            return
        self._rendering = True
        try:
            self._count(rec)
            if self.view.value == "messages":
                self._render_messages(rec)
            else:
                self._render_frames(rec)
            self._render_detail(rec)
        finally:
            self._rendering = False

    def _count(self, rec: Recorder) -> None:
        tx, rx = rec.count(self._counted)
        self._tx += tx
        self._rx += rx
        self._counted = rec.total

    def _counter_line(self, rec: Recorder, what: str) -> None:
        bits = [f"{rec.total} frames", f"→ {self._tx} sent", f"← {self._rx} received"]
        if rec.dropped:
            bits.append(f"{rec.dropped} oldest dropped (capacity)")
        bits.append(what)
        if self._filter_error:
            bits.append(f"<span style='color:#e74c3c'>{html.escape(self._filter_error)}</span>")
        self.counters.value = "<small>" + " · ".join(bits) + "</small>"

    def _paging(self, n: int) -> tuple[int, int]:
        """(start, stop) positions in the ordered listing of `n` rows for the current page."""
        self.pages = max((n + self.rows - 1) // self.rows, 1)
        if self.follow.value:
            self.page = 0 if self.order.value == "newest" else self.pages - 1
        self.page = max(0, min(self.page, self.pages - 1))
        start = self.page * self.rows
        return start, min(start + self.rows, n)

    def _render_frames(self, rec: Recorder) -> None:
        if self._fast():
            recent = rec.recent(self.rows + 1)
            frames = recent[1:] if len(recent) > self.rows else recent
            before = recent[0].t_rel if len(recent) > self.rows else None
            kept = len(rec)
            self.matched = kept
            self.pages = max((kept + self.rows - 1) // self.rows, 1)
            self.page = 0 if self.order.value == "newest" else self.pages - 1
            rows = [
                (f.row, self._line_recent(f, prev))
                for f, prev in zip(frames, [before, *(f.t_rel for f in frames)], strict=False)
            ]
        else:
            self._index.update(rec)
            self._refresh_msg_types()
            matches = self._update_matches()
            self.matched = len(matches)
            ordered = matches if self.order.value == "oldest" else matches[::-1]
            start, stop = self._paging(len(ordered))
            picked = sorted(int(r) for r in ordered[start:stop])
            rows = []
            for r in picked:
                s = self._index.frame(r)
                if s is not None:
                    rows.append((r, self._line_series(r, s)))
        if self.order.value == "newest":
            rows.reverse()
        self._show_rows(rows, _FRAME_HEADER)
        what = f"{self.matched} match the filters" if self.filtering() else f"{self.matched} kept"
        self._counter_line(rec, what + f" · showing {self.shown}")

    def _render_messages(self, rec: Recorder) -> None:
        changed = self._index.update(rec)
        if self._messages is None or changed or self._messages_at != self._index.end:
            self._messages = self._index.whole().rawws.messages()
            self._messages_at = self._index.end
        msgs = self._messages
        mask = self._message_mask(msgs)
        sel = msgs[mask]
        self.matched = len(sel)
        order = list(range(len(sel)))
        if self.order.value == "newest":
            order.reverse()
        start, stop = self._paging(len(order))
        rows = []
        for pos in order[start:stop]:
            m = sel.iloc[pos]
            rows.append((int(sel.index[pos]), self._line_message(int(sel.index[pos]), m)))
        self._show_rows(rows, _MESSAGE_HEADER)
        self._counter_line(rec, f"{len(msgs)} messages, {self.matched} shown in pages · showing {self.shown}")

    def _message_mask(self, msgs: pd.DataFrame) -> np.ndarray:
        import numpy as np

        mask = np.ones(len(msgs), dtype=bool)
        direction, opcode, search, regex, lo, hi, errors, _ = self._filter_key()
        if direction != "all":
            mask &= (msgs["dir"] == direction).to_numpy(dtype=bool)
        if opcode not in ("all", "data"):
            mask &= msgs["type"].isin(_OPCODE_SETS.get(opcode, {opcode})).to_numpy(dtype=bool)
        if lo:
            mask &= msgs["length"].to_numpy() >= lo
        if hi >= 0:
            mask &= msgs["length"].to_numpy() <= hi
        if errors:
            mask &= msgs["error"].notna().to_numpy(dtype=bool)
        if search:
            try:
                pattern = re.compile(search if regex else re.escape(search), 0 if regex else re.IGNORECASE)
            except re.error as exc:
                self._filter_error = f"bad regex {search!r}: {exc}"
                return mask
            self._filter_error = ""
            texts = msgs["text"].to_numpy(dtype=object, na_value=None)
            payloads = msgs["payload"].to_numpy()
            hits = [
                pattern.search(t if t is not None else bytes(p or b"")[:64].hex(" ")) is not None
                for t, p in zip(texts, payloads, strict=True)
            ]
            mask &= np.asarray(hits, dtype=bool)
        return mask

    def _show_rows(self, rows: list[tuple[int, str]], header: str) -> None:
        self.header.value = html.escape(header)
        self.shown = len(rows)
        self._listed = [r for r, _ in rows]
        options = [(label, r) for r, label in rows]
        if not options:
            options = [("(no frames yet)" if not self.filtering() else "(no matching frames)", -1)]
        self.table.options = options
        self.table.rows = max(min(len(options), self.rows, 20), 4)
        self.table.value = self.selected if self.selected in self._listed else None
        label = f"page {self.page + 1} of {self.pages}"
        self.page_label.value = f"<small>{label}</small>"
        self.prev_button.disabled = self.page <= 0
        self.first_button.disabled = self.page <= 0
        self.next_button.disabled = self.page >= self.pages - 1
        self.last_button.disabled = self.page >= self.pages - 1

    def _refresh_msg_types(self) -> None:
        seen = set(self._msg_types)
        for chunk in self._index.chunks[-2:] if self._msg_types else self._index.chunks:
            if "msg_type" in chunk.columns:
                seen.update(str(v) for v in chunk["msg_type"].dropna().unique())
        if seen != set(self._msg_types):
            self._msg_types = sorted(seen)
            self.msg_type.options = ["all", *self._msg_types]
            self._msg_type_box.layout.display = None

    # -- lines ------------------------------------------------------------------------

    @staticmethod
    def _cells(
        row: int,
        t_rel: float,
        prev: float | None,
        d: str,
        opcode: str,
        fin: bool,
        rsv: int,
        length: int,
        preview: str,
        msg_type: Any,
        error: Any,
    ) -> str:
        delta = f"+{(t_rel - prev) * 1e6:,.0f}µs" if prev is not None else ""
        rsv_s = "".join(("1" if rsv & 4 else "-", "2" if rsv & 2 else "-", "3" if rsv & 1 else "-"))
        line = (
            f"{row:>6} {t_rel:>11.6f} {delta:>11} {_ARROWS.get(d, '?')} {d} {opcode:<12} "
            f"{'fin' if fin else '...'} {rsv_s} {length:>7}  {preview}"
        )
        if not _na(msg_type):
            line += f"  [{msg_type}]"
        if not _na(error):
            line += f"  ✗ {_short(str(error), 40)}"
        return line

    def _line_recent(self, f: RecentFrame, prev: float | None) -> str:
        return self._cells(
            f.row,
            f.t_rel,
            prev,
            f.dir,
            f.opcode,
            f.fin,
            f.rsv,
            f.length,
            _preview(f.opcode, f.text, f.payload, f.close_code, f.close_reason),
            f.msg_type,
            f.error,
        )

    def _line_series(self, row: int, s: pd.Series) -> str:
        rsv = (4 if s["rsv1"] else 0) | (2 if s["rsv2"] else 0) | (1 if s["rsv3"] else 0)
        text = None if _na(s["text"]) else str(s["text"])
        code = None if _na(s["close_code"]) else int(s["close_code"])
        reason = None if _na(s["close_reason"]) else str(s["close_reason"])
        return self._cells(
            row,
            float(s["t_rel"]),
            self._index.t_before(row),
            str(s["dir"]),
            str(s["opcode"]),
            bool(s["fin"]),
            rsv,
            int(s["length"]),
            _preview(str(s["opcode"]), text, bytes(s["payload"] or b""), code, reason),
            s.get("msg_type"),
            s["error"],
        )

    @staticmethod
    def _line_message(number: int, m: pd.Series) -> str:
        text = None if _na(m["text"]) else str(m["text"])
        preview = repr(_short(text)) if text is not None else _bytes_preview(bytes(m["payload"] or b""))
        done = "" if m["complete"] else "  (incomplete)"
        err = "" if _na(m["error"]) else f"  ✗ {_short(str(m['error']), 40)}"
        return (
            f"{number:>6} {float(m['t_rel']):>11.6f} {_ARROWS.get(str(m['dir']), '?')} {m['dir']} "
            f"{m['type']!s:<12} {int(m['frames']):>3} fr {int(m['length']):>8}  {preview}{done}{err}"
        )

    # -- the detail pane --------------------------------------------------------------------

    def _render_detail(self, rec: Recorder) -> None:
        row = self.selected
        if row is None:
            self.detail.value = (
                "<i>click a row to inspect the frame</i>"
                if self.view.value == "frames"
                else ("<i>click a row to inspect the message</i>")
            )
            self.resend_button.disabled = self.copy_button.disabled = True
            return
        if self.view.value == "frames" and self._index.frame(row) is None:
            self._index.update(rec)  # only what was recorded since the last update
        if self.view.value == "messages":
            self.detail.value = self._message_detail(row)
        else:
            self.detail.value = self._frame_detail(row)
        self.copy_button.disabled = False
        self.resend_button.disabled = self.session.state.value != "OPEN"

    def frame_info(self, row: int) -> dict[str, Any] | None:
        """The timeline columns of frame `row` as a dict (None when not kept)."""
        s = self._index.frame(row)
        return None if s is None else dict(s)

    def _frame_detail(self, row: int) -> str:
        s = self._index.frame(row)
        esc = html.escape
        if s is None:
            return f"<i>frame {row} is no longer kept (the recorder dropped it)</i>"
        payload = bytes(s["payload"] or b"")
        opcode = str(s["opcode"])
        d = str(s["dir"])
        client = bool(getattr(self.session, "client", True))
        masked = (d == "tx") == client
        length = int(s["length"])
        prev = self._index.t_before(row)
        t = s["t"]
        bits = [
            ("frame", f"{row} (message {int(s['message'])})"),
            ("direction", f"{_ARROWS.get(d, '?')} {d} ({'sent' if d == 'tx' else 'received'})"),
            ("opcode", f"{opcode} (0x{_OPCODE_NUMBERS.get(opcode, 0):x})"),
            ("fin", "1" if s["fin"] else "0"),
            ("rsv1 rsv2 rsv3", " ".join("1" if s[f"rsv{i}"] else "0" for i in (1, 2, 3))),
            ("mask", "1 (masked: client to server)" if masked else "0 (server to client)"),
            ("length", f"{length} bytes" + ("" if len(payload) >= length else f" ({len(payload)} kept)")),
            ("time", f"{t.isoformat() if hasattr(t, 'isoformat') else t} · +{float(s['t_rel']):.6f} s"),
        ]
        if prev is not None:
            bits.append(("delta", f"+{(float(s['t_rel']) - prev) * 1e6:,.1f} µs after frame {row - 1}"))
        for extra in ("compressed", "inflated_length"):
            if extra in s.index and not _na(s[extra]):
                bits.append((extra, str(s[extra])))
        out = [_CSS, "<table class='bits'>"]
        out += [f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in bits]
        out.append("</table>")
        if not _na(s["error"]):
            out.append(f"<b>error</b><div class='err rawws-detail-error'>{esc(str(s['error']))}</div>")
        if opcode == "close" and not _na(s["close_code"]):
            reason = "" if _na(s["close_reason"]) else str(s["close_reason"])
            out.append(f"<b>close</b> <code>{int(s['close_code'])}</code> {esc(repr(reason))}")
        out.append(self._payload_html(payload, length, opcode in ("text", "continuation") and not _na(s["text"])))
        if not _na(s.get("msg_type")):
            out.append(f"<b>decoded</b>: <code>{esc(str(s['msg_type']))}</code>")
            fields = s.get("fields")
            if fields is not None and not _na(fields):
                out.append(f"<div class='rawws-detail-fields'>{_tree(fields)}</div>")
        return "".join(out)

    def _message_detail(self, number: int) -> str:
        msgs = self._messages
        esc = html.escape
        if msgs is None or number not in msgs.index:
            return f"<i>message {number} is not in the view</i>"
        m = msgs.loc[number]
        payload = bytes(m["payload"] or b"")
        bits = [
            ("message", f"{number}: frames {int(m['first_frame'])}..{int(m['last_frame'])} ({int(m['frames'])})"),
            ("direction", f"{_ARROWS.get(str(m['dir']), '?')} {m['dir']}"),
            ("type", str(m["type"])),
            ("length", f"{int(m['length'])} bytes" + (" (some payload capped)" if m["capped"] else "")),
            ("complete", "yes" if m["complete"] else "no (first frame or final fin missing)"),
            ("time", f"+{float(m['t_rel']):.6f} s, lasted {float(m['duration']) * 1e6:,.1f} µs"),
        ]
        out = [_CSS, "<table class='bits'>"]
        out += [f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in bits]
        out.append("</table>")
        if not _na(m["error"]):
            out.append(f"<b>error</b><div class='err rawws-detail-error'>{esc(str(m['error']))}</div>")
        out.append(self._payload_html(payload, int(m["length"]), str(m["type"]) == "text"))
        return "".join(out)

    @staticmethod
    def _payload_html(payload: bytes, length: int, is_text: bool) -> str:
        esc = html.escape
        out = []
        if not payload:
            return "<b>payload</b>: <i>empty</i>"
        if is_text or all(32 <= b < 127 or b in (9, 10, 13) for b in payload[:256]):
            text = payload.decode("utf-8", "replace")
            out.append(f"<b>payload as text</b><pre class='rawws-detail-text'>{esc(text)}</pre>")
        shown = payload[:_HEX_LIMIT]
        more = f" (first {_HEX_LIMIT} of {len(payload)} bytes)" if len(payload) > _HEX_LIMIT else ""
        capped = f" · {length - len(payload)} bytes not kept (payload_cap)" if length > len(payload) else ""
        out.append(
            f"<b>hex + ASCII</b><small>{esc(more + capped)}</small>"
            f"<pre class='rawws-detail-hexdump'>{esc(hexdump_lines(shown))}</pre>"
        )
        return "".join(out)

    # -- actions -------------------------------------------------------------------------

    def _selected_payload(self) -> tuple[str, bytes, dict[str, bool], bool] | None:
        """(opcode, payload, flags, whole) of the selection."""
        row = self.selected
        if row is None:
            return None
        if self.view.value == "messages":
            msgs = self._messages
            if msgs is None or row not in msgs.index:
                return None
            m = msgs.loc[row]
            payload = bytes(m["payload"] or b"")
            return str(m["type"]), payload, {"fin": True}, len(payload) >= int(m["length"]) and bool(m["complete"])
        s = self._index.frame(row)
        if s is None:
            return None
        payload = bytes(s["payload"] or b"")
        flags = {"fin": bool(s["fin"]), "rsv1": bool(s["rsv1"]), "rsv2": bool(s["rsv2"]), "rsv3": bool(s["rsv3"])}
        return str(s["opcode"]), payload, flags, len(payload) >= int(s["length"])

    def copy_hex(self) -> str:
        """The selected frame's (or message's) payload as hex, also put in `copy_box`."""
        picked = self._selected_payload()
        if picked is None:
            self.status.error("copy as hex: select a row first")
            return ""
        text = picked[1].hex(" ")
        self.copy_box.value = text
        self.status.ok(f"{len(picked[1])} bytes as hex in the box below (select it and copy)")
        return text

    def resend(self) -> Handle | None:
        """Send the selected frame again (same opcode, flags and payload), or the selected
        message as one frame; from any thread."""
        picked = self._selected_payload()
        if picked is None:
            self.status.error("resend: select a row first")
            return None
        opcode, payload, flags, whole = picked
        if not whole:
            self.status.error("resend: the payload was not kept whole (payload_cap), not resending a part")
            return None
        if opcode == "continuation":
            self.status.error("resend: a continuation frame alone is not a message; resend it from the message view")
            return None
        frame: Frame = FRAME_CLASSES[FrameType[opcode.upper()]](payload, **flags)
        self.status.busy(f"resending {frame!r} …")
        return self.run(
            lambda: self.session.send(frame), what="resend", on_ok=lambda _: self.status.ok(f"resent {frame!r}")
        )

    def export(self, fmt: str = "parquet", path: str | Path | None = None, *, filtered: bool = False) -> Path:
        """Write the recording (every kept frame, or the filtered rows) as Parquet, HAR,
        CSV (payload as hex) or pcapng (for Wireshark) and return the path. Call on the session's loop (the
        export button does it for you from any thread)."""
        import time as _time

        from ..timeline.har import to_har
        from ..timeline.persist import save_timeline, timeline_metadata

        fmt = fmt.lower()
        if fmt not in EXPORT_FORMATS:
            raise ValueError(f"unknown export format {fmt!r} (parquet, har, csv or pcapng)")
        rec = self.session.recorder
        if rec is None:
            raise ValueError("recording is off: nothing to export")
        self._index.update(rec)
        df = self._index.whole()
        if filtered:
            matches = self._update_matches()
            df = df.loc[df.index.isin(matches)]
        if path is None or str(path) == "":
            path = f"timeline-{_time.strftime('%Y%m%d-%H%M%S')}.{'parquet' if fmt == 'parquet' else fmt}"
        target = Path(path)
        meta = {**timeline_metadata(self.session), "url": self.session.url}
        if fmt == "parquet":
            save_timeline(df, target, metadata=meta)
        elif fmt == "har":
            to_har(df, target, url=self.session.url, metadata=meta)
        elif fmt == "pcapng":
            from ..pcap import to_pcapng

            if filtered:
                df = df.copy()
                df.attrs = meta
                to_pcapng(df, target)
            else:
                to_pcapng(self.session, target)
        else:
            out = df.copy()
            out["payload"] = [bytes(p or b"").hex() for p in out["payload"]]
            out["fields"] = [None if _na(f) else repr(f) for f in out["fields"]]
            out.to_csv(target)
        self.last_export = target
        return target

    def export_now(self) -> Handle | None:
        """What the export button does (any thread): `export()` with the form's values."""
        fmt, path, filtered = self.export_format.value, self.export_path.value.strip(), bool(self.export_filtered.value)

        async def go() -> Path:
            return self.export(fmt, path or None, filtered=filtered)

        return self.run(go, what="export", on_ok=lambda p: self.status.ok(f"exported to {p}"))


_FRAME_HEADER = f"{'#':>6} {'t (s)':>11} {'delta':>11}   dir {'opcode':<12} fin rsv  length  preview"
_MESSAGE_HEADER = f"{'msg':>6} {'t (s)':>11}   dir {'type':<12} frames   length  preview"


def _preview(opcode: str, text: str | None, payload: bytes, code: int | None, reason: str | None) -> str:
    if opcode == "close":
        if code is not None:
            return f"{code} {reason!r}" if reason else str(code)
        return "(no code)" if not payload else _bytes_preview(payload)
    if text is not None:
        return repr(_short(text))
    return _bytes_preview(payload)


def _w(width: str) -> widgets.Layout:
    return widgets.Layout(width=width)


def _nav(icon: str, tip: str, action: Any) -> widgets.Button:
    b = widgets.Button(description="", icon=icon, tooltip=tip, layout=_w("34px"))
    b.add_class("rawws-timeline-nav")
    b.on_click(lambda _: action())
    return b
