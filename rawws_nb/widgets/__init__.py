"""ipywidgets panels for a `RawSession`: a thin layer, no protocol logic.

```python
from rawws_nb.widgets import Dashboard, LatencyPanel, SendPanel, TimelinePanel

ConnectPanel("ws://…")      # a form (URL, headers, subprotocols, compression, proxy) that opens a session
Dashboard(session)          # all of it: send, live timeline, latency, state, Close
SendPanel(session)          # any frame type, payload as text/hex/base64, or a codec message form
TimelinePanel(session, rows=50)   # the inspector: every kept frame, filters, detail pane, export
LatencyPanel(session)       # "ping now", opt-in periodic ping, p50/p95/p99/max, chart over time
RelayPanel(relay)           # a relay's flows, both legs side by side, intercept, inject
```

Threads and loops: every button or toggle hands its work to the session's loop with
`rawws_nb.loops.submit` (`loop.create_task` when already on it,
`asyncio.run_coroutine_threadsafe` from any other thread, as when JupyterLab runs widget
callbacks on a kernel subshell). Updates flow the
other way from one throttled task per panel (or per dashboard) on the session's loop,
at most 4 renders per second (`refresh_interval=0.25`), only when something changed, and never on the path that
timestamps frames. Errors land in each panel's status line, never in the kernel.

Stable CSS classes (for browser tests and styling): `rawws-send`, `rawws-send-button`,
`rawws-send-payload`, `rawws-send-status`, `rawws-timeline`, `rawws-timeline-rows`,
`rawws-latency`, `rawws-ping-now`, `rawws-ping-periodic`, `rawws-latency-stats`,
`rawws-latency-chart`, `rawws-latency-drain`, `rawws-latency-paused`, `rawws-dashboard`,
`rawws-status`, `rawws-close-button`, `rawws-drain`, `rawws-drain-state`; the inspector's
`rawws-timeline-search`, `rawws-timeline-regex`, `rawws-timeline-opcode`,
`rawws-timeline-dir`, `rawws-timeline-errors`, `rawws-timeline-msg-type`,
`rawws-timeline-min-length`, `rawws-timeline-max-length`, `rawws-timeline-view`,
`rawws-timeline-order`, `rawws-timeline-follow`, `rawws-timeline-nav`,
`rawws-timeline-counters`, `rawws-detail-pane`, `rawws-detail`, `rawws-detail-hexdump`,
`rawws-detail-text`, `rawws-detail-fields`, `rawws-detail-error`, `rawws-detail-resend`,
`rawws-detail-copy`, `rawws-detail-hex`, `rawws-export-format`, `rawws-export-path`,
`rawws-export-button`; every panel's status line also has `rawws-panel-status`.

No false results: while reading is paused (`incoming` full), the latency panel reports
no pong time-out (such a ping raises `ReadingPaused` and counts as `unmeasured`).
"""

from ._base import Panel, StatusLine, describe_close
from .connect import ConnectPanel, parse_headers
from .dashboard import Dashboard
from .form import FormError, MessageForm, PayloadError, parse_payload
from .latency import LatencyPanel, ReadingPaused, latency_stats
from .relay import RelayPanel
from .send import SendPanel
from .timeline import TimelinePanel

__all__ = [
    "ConnectPanel",
    "Dashboard",
    "FormError",
    "LatencyPanel",
    "MessageForm",
    "Panel",
    "PayloadError",
    "ReadingPaused",
    "RelayPanel",
    "SendPanel",
    "StatusLine",
    "TimelinePanel",
    "describe_close",
    "latency_stats",
    "parse_headers",
    "parse_payload",
]
