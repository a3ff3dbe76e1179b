"""ipywidgets panels for a `RawSession`: a thin layer, no protocol logic.

```python
from rawws_nb.widgets import Dashboard, LatencyPanel, SendPanel, TimelinePanel

Dashboard(session)          # all of it: send, live timeline, latency, state, Close
SendPanel(session)          # any frame type, payload as text/hex/base64, or a codec message form
TimelinePanel(session, rows=50)
LatencyPanel(session)       # "ping now", opt-in periodic ping, p50/p95/p99/max, chart
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
`rawws-latency-chart`, `rawws-dashboard`, `rawws-status`, `rawws-close-button`,
`rawws-drain`; every panel's status line also has `rawws-panel-status`.
"""

from ._base import Panel, StatusLine
from .dashboard import Dashboard
from .form import FormError, MessageForm, PayloadError, parse_payload
from .latency import LatencyPanel, latency_stats
from .send import SendPanel
from .timeline import TimelinePanel

__all__ = [
    "Dashboard",
    "FormError",
    "LatencyPanel",
    "MessageForm",
    "Panel",
    "PayloadError",
    "SendPanel",
    "StatusLine",
    "TimelinePanel",
    "latency_stats",
    "parse_payload",
]
