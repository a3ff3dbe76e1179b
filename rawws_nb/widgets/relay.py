"""`RelayPanel`: a relay's flows, both legs side by side, intercept and inject.

```python
relay = await rw.relay(server.url)
RelayPanel(relay)
```

* flows: a dropdown of every flow (id, path, open/ended) and a line per relay;
* both legs side by side: the latest rows of the selected flow's client leg (left) and
  upstream leg (right), `dir` seen from the relay, times since the relay started;
* intercept: while the switch is on, every frame to forward waits in `relay.held`; the
  panel shows the first one (flow, direction, type, payload as text or hex) to forward
  as is, forward edited (the payload box, same type and fin) or drop, one by one;
  switching off forwards what waits, unchanged;
* inject: the `SendPanel` form bound to the selected flow's client or upstream leg.

Threads: every button hands its work to the relay's loop (`rawws_nb.loops.submit` /
`call_soon`); one throttled task on that loop renders, only when something changed.
CSS classes: `rawws-relay`, `rawws-relay-flows`, `rawws-relay-summary`,
`rawws-relay-client-rows`, `rawws-relay-upstream-rows`, `rawws-relay-intercept`,
`rawws-relay-held`, `rawws-relay-held-payload`, `rawws-relay-forward`,
`rawws-relay-forward-edited`, `rawws-relay-drop`, `rawws-relay-inject-leg`,
`rawws-relay-inject`, and the inner SendPanel's `rawws-send...` classes.
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from ..frames import Frame, make_frame
from ..loops import Handle, call_soon, cancel, submit
from ..relay import Flow, HeldFrame, Relay
from ..session import RawSession
from ._base import DEFAULT_REFRESH_INTERVAL, StatusLine, describe_error
from .form import PayloadError, parse_payload
from .send import SendPanel

__all__ = ["RelayPanel"]

_ROW_STYLE = "font-family:monospace;font-size:85%;white-space:pre;"


def _leg_rows(session: RawSession, t_shift: float, n: int) -> str:
    rec = session.recorder
    if rec is None:
        return "<i>recording off</i>"
    rows = rec.recent(n)
    if not rows:
        return "<i>no frames yet</i>"
    lines = []
    for r in rows:
        arrow = "→ tx" if r.dir == "tx" else "← rx"
        if r.opcode == "close":
            preview = f"{r.close_code if r.close_code is not None else '(no code)'} {r.close_reason or ''}".rstrip()
        elif r.text is not None:
            preview = repr(r.text[:40])
        else:
            preview = r.payload[:16].hex(" ")
        fin = "fin" if r.fin else "..."
        line = f"{r.t_rel + t_shift:9.3f} {arrow} {r.opcode:<12} {fin} {r.length:>6} B  {preview}"
        colour = "#c0392b" if r.error else ("#1f5fa8" if r.dir == "tx" else "#2a7a2a")
        title = f" title='{html.escape(r.error)}'" if r.error else ""
        lines.append(f"<div style='color:{colour}'{title}>{html.escape(line)}</div>")
    return f"<div style='{_ROW_STYLE}'>" + "".join(lines) + "</div>"


class RelayPanel(widgets.VBox):  # type: ignore[misc]  # ipywidgets has no type information
    """Watch and steer a running `Relay` (see the module docstring). `rows`: how many
    of each leg's latest rows to show. Programmatic use: `panel.select(flow_id)`,
    `panel.intercept.value = True`, `panel.forward()`, `panel.forward_edited()`,
    `panel.drop()`, `panel.refresh()`."""

    def __init__(
        self,
        relay: Relay,
        *,
        rows: int = 20,
        refresh_interval: float = DEFAULT_REFRESH_INTERVAL,
        autorefresh: bool = True,
    ) -> None:
        super().__init__()
        self.add_class("rawws-relay")
        self.relay = relay
        self.rows = max(int(rows), 1)
        self.refresh_interval = max(float(refresh_interval), 0.02)
        self.renders = 0
        self._key: Hashable = object()
        self._handle: Handle | None = None
        self._shown_held: HeldFrame | None = None
        self._inject_for: tuple[int, str] | None = None
        self.status = StatusLine("rawws-relay-status")

        self.summary = widgets.HTML()
        self.summary.add_class("rawws-relay-summary")
        self.flows = widgets.Dropdown(options=[("no flow yet", 0)], value=0, description="flow")
        self.flows.add_class("rawws-relay-flows")
        self.client_rows = widgets.HTML()
        self.client_rows.add_class("rawws-relay-client-rows")
        self.upstream_rows = widgets.HTML()
        self.upstream_rows.add_class("rawws-relay-upstream-rows")
        half = widgets.Layout(width="50%", overflow="auto")
        legs = widgets.HBox(
            [
                widgets.VBox(
                    [widgets.HTML("<b>client leg</b> (the relay facing the client)"), self.client_rows], layout=half
                ),
                widgets.VBox(
                    [widgets.HTML("<b>upstream leg</b> (the relay facing the server)"), self.upstream_rows], layout=half
                ),
            ]
        )

        self.intercept = widgets.ToggleButton(value=relay.intercept, description="intercept", icon="pause")
        self.intercept.add_class("rawws-relay-intercept")
        self.held = widgets.HTML()
        self.held.add_class("rawws-relay-held")
        self.held_payload = widgets.Textarea(rows=2, layout=widgets.Layout(width="98%"))
        self.held_payload.add_class("rawws-relay-held-payload")
        self.forward_button = widgets.Button(description="Forward", button_style="success")
        self.forward_button.add_class("rawws-relay-forward")
        self.forward_edited_button = widgets.Button(description="Forward edited", button_style="info")
        self.forward_edited_button.add_class("rawws-relay-forward-edited")
        self.drop_button = widgets.Button(description="Drop", button_style="danger")
        self.drop_button.add_class("rawws-relay-drop")
        self.forward_button.on_click(lambda _: self.forward())
        self.forward_edited_button.on_click(lambda _: self.forward_edited())
        self.drop_button.on_click(lambda _: self.drop())
        self.intercept.observe(self._on_intercept, "value")
        held_box = widgets.VBox(
            [
                widgets.HBox([self.intercept, self.held]),
                self.held_payload,
                widgets.HBox([self.forward_button, self.forward_edited_button, self.drop_button]),
            ]
        )

        self.inject_leg = widgets.ToggleButtons(
            options=["client", "upstream"], value="upstream", description="inject on"
        )
        self.inject_leg.add_class("rawws-relay-inject-leg")
        self.inject = widgets.VBox()
        self.inject.add_class("rawws-relay-inject")
        self.send_panel: SendPanel | None = None
        self.flows.observe(lambda _: self._changed(), "value")
        self.inject_leg.observe(lambda _: self._changed(), "value")

        self.export_format = widgets.Dropdown(
            options=[("Parquet", "parquet"), ("pcapng", "pcapng")],
            value="parquet",
            layout=widgets.Layout(width="110px"),
        )
        self.export_format.add_class("rawws-relay-export-format")
        self.export_path = widgets.Text(placeholder="relay-….parquet (default)", layout=widgets.Layout(width="240px"))
        self.export_path.add_class("rawws-relay-export-path")
        self.export_button = widgets.Button(description="export both legs", icon="download")
        self.export_button.add_class("rawws-relay-export")
        self.export_button.on_click(lambda _: self.export_now())
        self.last_export: Path | None = None

        self.children = [
            widgets.HTML("<b>Relay</b>"),
            self.summary,
            self.flows,
            legs,
            held_box,
            self.inject_leg,
            self.inject,
            widgets.HBox([self.export_format, self.export_path, self.export_button]),
            self.status,
        ]
        self.refresh(force=True)
        if autorefresh:
            self.start()

    # -- selection ----------------------------------------------------------------------

    @property
    def flow(self) -> Flow | None:
        """The selected flow (the newest one until another is chosen)."""
        wanted = self.flows.value
        for flow in self.relay.flows:
            if flow.id == wanted:
                return flow
        return self.relay.flows[-1] if self.relay.flows else None

    def select(self, flow_id: int) -> None:
        self.flows.value = flow_id

    def _changed(self) -> None:
        self._key = object()
        call_soon(self.relay.loop, self.refresh)

    # -- intercept ----------------------------------------------------------------------------

    def _on_intercept(self, change: dict[str, Any]) -> None:
        on = bool(change["new"])

        def apply() -> None:
            self.relay.intercept = on
            self.refresh(force=True)

        call_soon(self.relay.loop, apply)

    def _first_held(self) -> HeldFrame | None:
        held = [h for h in self.relay.held if not h.decided]
        return held[0] if held else None

    def forward(self) -> None:
        """Forward the first held frame as it is."""
        held = self._first_held()
        if held is None:
            self.status.info("nothing is held")
            return
        held.forward()
        self.status.ok(f"forwarded {held.frame!r}")

    def forward_edited(self) -> None:
        """Forward the first held frame with the payload box's content (text for Text
        and Close frames, hex otherwise), same type and fin."""
        held = self._first_held()
        if held is None:
            self.status.info("nothing is held")
            return
        frame = held.frame
        encoding = "text" if isinstance(frame, Frame.Text | Frame.Close) else "hex"
        try:
            data = parse_payload(self.held_payload.value, encoding)
        except PayloadError as exc:
            self.status.error(str(exc))
            return
        edited = make_frame(type(frame), data, frame.fin)
        held.forward(edited)
        self.status.ok(f"forwarded edited {edited!r}")

    def drop(self) -> None:
        """Drop the first held frame."""
        held = self._first_held()
        if held is None:
            self.status.info("nothing is held")
            return
        held.drop()
        self.status.ok(f"dropped {held.frame!r}")

    # -- rendering ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._handle is not None and not self._handle.done():
            return
        try:
            self._handle = submit(self.relay.loop, self._refresh_loop())
        except RuntimeError as exc:
            self.status.error(f"live updates: {describe_error(exc)}")

    def stop(self) -> None:
        cancel(self.relay.loop, self._handle)
        self._handle = None

    async def _refresh_loop(self) -> None:
        while True:
            self.refresh()
            await asyncio.sleep(self.refresh_interval)

    def _change_key(self) -> Hashable:
        relay = self.relay
        flow = self.flow
        legs: tuple[Any, ...] = ()
        if flow is not None:
            legs = tuple(
                (leg.recorder.total if leg.recorder is not None else 0, leg.state)
                for leg in (flow.client, flow.upstream)
            )
        ended = sum(1 for f in relay.flows if f.ended)
        held = self._first_held()
        return (len(relay.flows), ended, len(relay.refused), legs, len(relay.held), id(held), relay.intercept)

    def refresh(self, force: bool = False) -> bool:
        """Render if anything changed (meant for the relay's loop); returns whether it did."""
        try:
            key = self._change_key()
            if not force and key == self._key:
                return False
            self._key = key
            self._render()
            self.renders += 1
            return True
        except Exception as exc:  # rendering must never take the loop down
            self.status.error(f"display: {describe_error(exc)}")
            return False

    def _render(self) -> None:
        relay = self.relay
        flows = relay.flows
        active = sum(1 for f in flows if not f.ended)
        where = f"→ {relay.upstream}" if relay.upstream is not None else f"(proxy, {len(relay.tunnels)} tunnels)"
        self.summary.value = html.escape(
            f"{relay.url} {where}: {len(flows)} flows ({active} open), {len(relay.refused)} refused"
        )
        options = [(f"{f.id} {f.path} ({'ended' if f.ended else 'open'})", f.id) for f in flows] or [("no flow yet", 0)]
        if list(self.flows.options) != options:
            current = self.flows.value
            self.flows.options = options
            ids = [value for _, value in options]
            self.flows.value = current if current in ids else ids[-1]
        flow = self.flow
        if flow is None:
            self.client_rows.value = self.upstream_rows.value = "<i>no flow yet</i>"
        else:
            shift_c = (flow.client.started_at - relay.started_at) / 1e9
            shift_u = (flow.upstream.started_at - relay.started_at) / 1e9
            self.client_rows.value = _leg_rows(flow.client, shift_c, self.rows)
            self.upstream_rows.value = _leg_rows(flow.upstream, shift_u, self.rows)
        self._render_held()
        self._render_inject(flow)

    def _render_held(self) -> None:
        held = self._first_held()
        waiting = sum(1 for h in self.relay.held if not h.decided)
        for button in (self.forward_button, self.forward_edited_button, self.drop_button):
            button.disabled = held is None
        if self.intercept.value != self.relay.intercept:
            self.intercept.value = self.relay.intercept
        if held is None:
            self.held.value = (
                "<i>intercept on: nothing held yet</i>" if self.relay.intercept else "<i>intercept off</i>"
            )
            self._shown_held = None
            return
        frame = held.frame
        where = "client → upstream" if held.direction == "up" else "upstream → client"
        self.held.value = html.escape(f"{waiting} held; first: flow {held.flow.id}, {where}: {frame!r}")
        if held is not self._shown_held:
            self._shown_held = held
            if isinstance(frame, Frame.Text | Frame.Close):
                self.held_payload.value = frame.data.decode("utf-8", "replace")
            else:
                self.held_payload.value = frame.data.hex(" ")

    def _render_inject(self, flow: Flow | None) -> None:
        if flow is None:
            self.inject.children = [widgets.HTML("<i>inject: no flow yet</i>")]
            return
        wanted = (flow.id, self.inject_leg.value)
        if wanted == self._inject_for:
            return
        self._inject_for = wanted
        if self.send_panel is not None:
            self.send_panel.close()
        self.send_panel = SendPanel(flow.leg(self.inject_leg.value))
        self.inject.children = [self.send_panel]

    def export(self, fmt: str = "parquet", path: str | Path | None = None) -> Path:
        """Write every flow's rows, both legs (`relay.timeline`), as Parquet or pcapng (one
        TCP connection per flow and leg, for Wireshark); returns the path. Call on the
        relay's loop (the button does it from any thread)."""
        import time as _time

        from ..pcap import to_pcapng
        from ..timeline.persist import save_timeline

        if fmt not in ("parquet", "pcapng"):
            raise ValueError(f"unknown export format {fmt!r} (parquet or pcapng)")
        if path is None or str(path) == "":
            path = f"relay-{_time.strftime('%Y%m%d-%H%M%S')}.{fmt}"
        target = Path(path)
        timeline = self.relay.timeline
        if fmt == "parquet":
            save_timeline(timeline, target)
        else:
            to_pcapng(timeline, target)
        self.last_export = target
        return target

    def export_now(self) -> Handle | None:
        """What the export button does (any thread)."""
        fmt, path = self.export_format.value, self.export_path.value.strip()

        async def go() -> None:
            try:
                target = self.export(fmt, path or None)
            except Exception as exc:
                self.status.error(f"export: {describe_error(exc)}")
                return
            self.status.ok(f"exported to {target}")

        try:
            return submit(self.relay.loop, go())
        except RuntimeError as exc:
            self.status.error(f"export: {exc}")
            return None

    def close(self) -> None:
        """Stop the refresh task and close the widgets."""
        try:
            self.stop()
            if self.send_panel is not None:
                self.send_panel.close()
        except Exception:  # closing must not fail, even at interpreter exit
            pass
        super().close()
