"""`Dashboard`: the three panels, the session's state and URL, a Close button."""

from __future__ import annotations

import html
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ..errors import SessionClosed
from ..frames import CloseReason
from ..loops import Handle, cancel
from ..session import SessionState
from ._base import DEFAULT_REFRESH_INTERVAL, Panel, describe_close
from .latency import LatencyPanel
from .send import SendPanel
from .timeline import TimelinePanel

if TYPE_CHECKING:
    from ..session import RawSession

__all__ = ["Dashboard"]

_STATE_COLOURS = {"OPEN": "#2a7a2a", "CLOSING": "#b9770e", "CLOSED": "#777", "CONNECTING": "#1f5fa8"}


class Dashboard(Panel):
    """`SendPanel`, `TimelinePanel` and `LatencyPanel` for one session, with its state,
    URL, counters and a Close button. One refresh task on the session's loop updates
    everything (at most every `refresh_interval` seconds, only what changed).

    "drain incoming" (off by default: nothing is consumed behind your back) makes the
    Dashboard the consumer of `session.incoming`: it reads every frame in the background
    into its own view (the timeline shows them all, `drained` counts them) so that
    reading never pauses while no cell reads. The header always says who reads
    `incoming` ("incoming: N waiting, read by your code" or "drained by this
    dashboard"); when reading pauses, the header and the latency panel say so and offer
    to drain (`drain=True` turns it on from the start).
    """

    def __init__(
        self,
        session: RawSession,
        *,
        protocol: Any = None,
        rows: int = 50,
        drain: bool = False,
        refresh_interval: float = DEFAULT_REFRESH_INTERVAL,
        autorefresh: bool = True,
        latency: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(session, refresh_interval=refresh_interval, status_class="rawws-status-line")
        self.add_class("rawws-dashboard")
        self.send_panel = SendPanel(session, protocol, autorefresh=False)
        self.timeline_panel = TimelinePanel(session, rows, refresh_interval=refresh_interval, autorefresh=False)
        self.latency_panel = LatencyPanel(
            session, refresh_interval=refresh_interval, autorefresh=False, **(latency or {})
        )
        self.header = widgets.HTML()
        self.header.add_class("rawws-status")
        self.close_button = widgets.Button(description="Close", icon="times", button_style="warning")
        self.close_button.add_class("rawws-close-button")
        self.close_button.on_click(lambda _: self.close_session())
        self.drain = widgets.ToggleButton(
            value=False,
            description="drain incoming",
            icon="download",
            tooltip="let this dashboard consume session.incoming in the background (frames stay in the timeline)",
            layout=widgets.Layout(width="auto", min_width="9.5em"),
        )
        self.drain.add_class("rawws-drain")
        self.drain.observe(self._on_drain, "value")
        self.drained = 0
        self._drain_handle: Handle | None = None
        self.latency_panel.on_drain = self.start_drain
        for panel in (self.send_panel, self.latency_panel):
            panel.layout = widgets.Layout(flex="1 1 22em", min_width="0", padding="0 8px 0 0")
        self.close_button.layout = widgets.Layout(width="auto", min_width="6em")
        self.children = [
            widgets.HBox(
                [self.header, self.drain, self.close_button],
                layout=widgets.Layout(align_items="center", flex_flow="row wrap"),
            ),
            self.status,
            widgets.HBox([self.send_panel, self.latency_panel], layout=widgets.Layout(flex_flow="row wrap")),
            self.timeline_panel,
        ]
        self.header.layout = widgets.Layout(flex="1 1 20em", min_width="0")
        if drain:
            self.drain.value = True
        if autorefresh:
            self.start()

    @property
    def panels(self) -> tuple[Panel, ...]:
        return (self.send_panel, self.timeline_panel, self.latency_panel)

    # -- actions --------------------------------------------------------------------

    def close_session(self, reason: CloseReason | None = None) -> Handle | None:
        """Close the session (from any thread); the result shows in the status line."""
        session = self.session
        self.status.busy("closing …")
        return self.run(
            lambda: session.close(reason),
            what="close",
            on_ok=lambda _: self.status.ok(f"closed: {describe_close(session.close_reason)}"),
        )

    def start_drain(self) -> None:
        """Turn "drain incoming" on (any thread): the dashboard consumes `incoming`."""
        if not self.drain.value:
            self.drain.value = True

    def _on_drain(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self._drain_handle = self.run(self._drain_loop, what="drain")
            self.mark_dirty()
        else:
            cancel(self.loop, self._drain_handle)
            self._drain_handle = None
            self.mark_dirty()

    async def _drain_loop(self) -> None:
        receive = self.session.incoming.receive
        try:
            while True:
                await receive()
                self.drained += 1
        except SessionClosed:
            return

    # -- rendering (on the session's loop) ------------------------------------------

    def refresh(self, force: bool = False) -> bool:
        rendered = super().refresh(force)
        for panel in self.panels:
            rendered = panel.refresh(force) or rendered
        return rendered

    def _change_key(self) -> Hashable:
        s = self.session
        rec = s.recorder
        return (
            s.state,
            rec.total if rec is not None else -1,
            len(s.incoming),
            s.reading_paused,
            self.drained,
            s.close_reason,
        )

    def _render(self) -> None:
        s = self.session
        state = s.state.value
        rec = s.recorder
        bits = [
            f"<b style='color:{_STATE_COLOURS.get(state, '#333')}'>{state}</b>",
            f"<code>{html.escape(s.url)}</code>",
            f"{rec.total} frames" if rec is not None else "recording off",
        ]
        waiting = len(s.incoming)
        if self.drain.value:
            bits.append(
                f"<span class='rawws-drain-state'>incoming drained by this dashboard ({self.drained} frames)</span>"
            )
        else:
            bits.append(
                f"<span class='rawws-drain-state'>incoming: {waiting} waiting, read by your code"
                + (f" ({self.drained} drained before)" if self.drained else "")
                + "</span>"
            )
        if s.reading_paused:
            bits.append(
                "<b class='rawws-paused' style='color:#c0392b'>reading paused: incoming is full "
                "(read it, or press “drain incoming”)</b>"
            )
        if s.close_reason is not None:
            bits.append("close " + html.escape(describe_close(s.close_reason)))
        self.header.value = "<span class='rawws-session'>" + " · ".join(bits) + "</span>"
        closed = s.state is SessionState.CLOSED
        self.close_button.disabled = closed
        if closed:
            self.drain.disabled = True

    def close(self) -> None:
        try:
            cancel(self.loop, self._drain_handle)
        except Exception:
            pass
        super().close()
