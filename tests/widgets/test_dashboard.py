"""Dashboard: the three panels, one refresh task, state/URL header, Close and drain."""

from __future__ import annotations

import asyncio

from rawws_nb import Frame, SessionState
from rawws_nb.widgets import Dashboard

from .conftest import wait_for


async def test_dashboard_end_to_end(session, received, panels):
    dash = Dashboard(session)
    panels.append(dash)
    assert "rawws-dashboard" in dash._dom_classes
    assert "rawws-status" in dash.header._dom_classes
    assert "rawws-close-button" in dash.close_button._dom_classes
    assert dash.refreshing and not any(p.refreshing for p in dash.panels), "one refresh task for the dashboard"

    await wait_for(lambda: "OPEN" in dash.header.value)
    assert session.url in dash.header.value

    dash.send_panel.payload.value = "via the dashboard"
    dash.send_panel.send_button.click()
    def table() -> str:
        return "\n".join(label for label, _ in dash.timeline_panel.table.options)

    await wait_for(lambda: "→ tx text" in table() and "via the dashboard" in table(), what="the tx row")
    await wait_for(lambda: table().count("via the dashboard") == 2, what="the echo row")
    await wait_for(lambda: "incoming: 1 waiting, read by your code" in dash.header.value)

    dash.latency_panel.ping_button.click()
    await wait_for(lambda: "last" in dash.latency_panel.stats.value, what="a round trip")

    dash.close_button.click()
    await wait_for(lambda: session.state is SessionState.CLOSED)
    await wait_for(lambda: "CLOSED" in dash.header.value and dash.close_button.disabled)
    assert isinstance(received[-1], Frame.Close)
    assert dash.status.kind == "ok" and "closed" in dash.status.text
    await wait_for(lambda: not dash.refreshing, what="the refresh task to end with the session")
    assert " close " in table()


async def test_drain_is_opt_in(session, panels):
    dash = Dashboard(session)
    panels.append(dash)
    for i in range(3):
        await session.send(f"m{i}")
    await wait_for(lambda: len(session.incoming) == 3, what="3 echoes waiting")
    await asyncio.sleep(0.15)
    assert len(session.incoming) == 3 and dash.drained == 0, "nothing consumes incoming by default"
    dash.drain.value = True
    await wait_for(lambda: dash.drained == 3 and len(session.incoming) == 0)
    await wait_for(lambda: "drained by this dashboard (3 frames)" in dash.header.value)
    dash.drain.value = False
    await session.send("kept")
    await wait_for(lambda: len(session.incoming) == 1)
    assert dash.drained == 3


async def test_dashboard_with_a_protocol(session, received, panels):
    from protocols.tlv import PROTOCOL

    dash = Dashboard(session, protocol=PROTOCOL, rows=5, drain=True)
    panels.append(dash)
    assert dash.drain.value
    dash.send_panel.form.set("hello", name="dash")
    dash.send_panel.send_button.click()
    await wait_for(lambda: received and received[0] == PROTOCOL.frame("hello", name="dash"))


async def test_dashboard_drains_into_its_own_view_when_asked(xserver, panels):
    import rawws_nb as rw

    session = await rw.web_socket_raw_session(xserver.url + "/x", max_queue=8, close_timeout=1)
    dash = Dashboard(session, latency={"interval": 0.05, "timeout": 0.3})
    panels.append(dash)
    lat = dash.latency_panel
    lat.start_periodic()
    await wait_for(lambda: session.reading_paused)
    await wait_for(lambda: "reading paused" in dash.header.value, what="the header to say reading paused")
    assert "read by your code" in dash.header.value
    await wait_for(lambda: lat.drain_button.layout.display is None, what="the latency panel's drain offer")
    assert lat.lost == 0
    lat.drain_button.click()  # in a dashboard: the dashboard becomes the consumer
    await wait_for(lambda: dash.drain.value and not session.reading_paused)
    await wait_for(lambda: "drained by this dashboard" in dash.header.value, what="its choice in the header")
    n = len(lat.rtts)
    await wait_for(lambda: len(lat.rtts) >= n + 3, what="round trips again")
    assert lat.lost == 0 and len(session.incoming) <= 1
    lat.stop_periodic()
    await session.close()
    await wait_for(lambda: dash.close_button.disabled and dash.send_panel.send_button.disabled)
    await wait_for(lambda: "close 1000 NORMAL" in dash.header.value, what="a readable close reason")
