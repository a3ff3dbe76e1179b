"""LatencyPanel: "ping now" shows a round trip, lost pongs are counted, the periodic ping is opt-in."""

from __future__ import annotations

import asyncio

import rawws_nb as rw
from rawws_nb import Frame
from rawws_nb.widgets import LatencyPanel, latency_stats

from .conftest import wait_for


def pings_sent(session) -> int:
    tl = session.timeline
    return int(((tl["dir"] == "tx") & (tl["opcode"] == "ping")).sum())


async def test_ping_now_shows_a_round_trip(session, received, panels):
    panel = LatencyPanel(session)
    panels.append(panel)
    assert "rawws-latency" in panel._dom_classes
    assert "rawws-ping-now" in panel.ping_button._dom_classes
    assert "rawws-latency-stats" in panel.stats._dom_classes
    panel.ping_button.click()
    await wait_for(lambda: len(panel.rtts) == 1, what="one round trip")
    await wait_for(lambda: "last" in panel.stats.value, what="the stats to render")
    assert " ms" in panel.stats.value and "p50" in panel.stats.value and "p99" in panel.stats.value
    assert "max" in panel.stats.value
    assert panel.status.kind == "ok" and panel.status.text.startswith("pong after")
    assert "<svg" in panel.chart.value
    assert isinstance(received[0], Frame.Ping) and received[0].data.startswith(b"latency-")
    # The Pong is not swallowed: it is in incoming, as every frame.
    assert isinstance(await session.incoming.receive(), Frame.Pong)
    panel.ping_button.click()
    await wait_for(lambda: len(panel.rtts) == 2)
    await wait_for(lambda: "polyline" in panel.chart.value, what="a line in the chart")
    stats = panel.stats_dict()
    assert stats["n"] == 2 and 0 < stats["p50"] <= stats["max"] < 1


async def test_no_pong_is_counted_as_lost(server, panels):
    session = await rw.web_socket_raw_session(server.url + "/sink", close_timeout=1)
    panel = LatencyPanel(session, timeout=0.1)
    panels.append(panel)
    panel.ping_now()
    await wait_for(lambda: panel.status.kind == "error", what="the timeout")
    assert "no pong" in panel.status.text and panel.lost == 1 and not panel.rtts
    await wait_for(lambda: "without a pong" in panel.stats.value)
    await session.close()


async def test_periodic_ping_is_opt_in(session, panels):
    panel = LatencyPanel(session, interval=0.05)
    panels.append(panel)
    await asyncio.sleep(0.3)
    assert pings_sent(session) == 0 and panel.pings == 0, "nothing is sent until the user starts it"
    assert "rawws-ping-periodic" in panel.periodic._dom_classes
    panel.periodic.value = True
    await wait_for(lambda: len(panel.rtts) >= 3, what="three periodic round trips")
    panel.periodic.value = False
    await asyncio.sleep(0.1)
    stopped_at = pings_sent(session)
    await asyncio.sleep(0.3)
    assert pings_sent(session) == stopped_at, "the periodic ping stopped"
    assert panel.status.text == "periodic ping stopped"


async def test_periodic_ping_ends_with_the_session(session, panels):
    panel = LatencyPanel(session, interval=0.05)
    panels.append(panel)
    panel.start_periodic()
    assert panel.periodic.value
    await wait_for(lambda: len(panel.rtts) >= 1)
    await session.close()
    await wait_for(lambda: not panel.periodic.value, what="the toggle to switch off")


async def test_request_response_key(session, panels):
    panel = LatencyPanel(session, key=lambda f: f["text"])  # NA for the ping and pong below
    panels.append(panel)
    for i in range(3):
        await session.send(f"req-{i}")
        await session.incoming.receive()
    await session.ping(b"not a request", timeout=2)
    await wait_for(lambda: len(panel.request_rtts) == 3, what="3 request/response times")
    await wait_for(lambda: "request/response" in panel.stats.value)
    panel.refresh()  # scans every frame recorded so far, the ping and pong included
    assert len(panel.request_rtts) == 3 and not panel.rtts


async def test_ping_on_closed_session(session, panels):
    panel = LatencyPanel(session)
    panels.append(panel)
    await session.close()
    panel.ping_button.click()
    await wait_for(lambda: panel.status.kind == "error")
    assert panel.status.text.startswith("ping: the session is closed")


def test_latency_stats():
    assert latency_stats([]) == {"n": 0}
    s = latency_stats([0.001, 0.002, 0.003, 0.004])
    assert s["n"] == 4 and s["last"] == 0.004 and s["max"] == 0.004 and 0.002 < s["p50"] < 0.003


async def test_no_false_timeout_while_reading_is_paused(xserver, panels):
    """Periodic ping with nobody reading `incoming` (max_queue=8): the Pongs fill it,
    reading pauses, and the panel says so instead of reporting a time-out."""
    session = await rw.web_socket_raw_session(xserver.url + "/x", max_queue=8, close_timeout=1)
    panel = LatencyPanel(session, interval=0.05, timeout=0.3)
    panels.append(panel)
    seen: list[str] = []
    panel.status.observe(lambda change: seen.append(change["new"]), "value")
    panel.start_periodic()
    await wait_for(lambda: session.reading_paused, what="reading to pause (8 unread Pongs)")
    await asyncio.sleep(1.0)  # several periods, each longer than the 0.3 s time-out
    assert panel.lost == 0 and not panel.timeouts
    assert not any("no pong" in text for text in seen), seen
    assert panel.unmeasured >= 1
    await wait_for(lambda: "reading is paused" in panel.paused_note.value, what="the paused note")
    assert panel.drain_button.layout.display is None, "the drain offer is shown"
    assert "periodic ping waits" in panel.status.text and panel.status.kind == "busy"
    assert "not measured (reading paused)" in panel.stats.value
    measured = len(panel.rtts)
    panel.drain_button.click()  # no dashboard: a one-off read of what waits
    await wait_for(lambda: panel.drained >= 8, what="the waiting frames to be drained")
    await wait_for(lambda: len(panel.rtts) > measured, what="a round trip once reading resumed")
    assert panel.lost == 0
    panel.stop_periodic()
    await session.close()


async def test_timeout_is_still_reported_when_reading_is_not_paused(server, panels):
    session = await rw.web_socket_raw_session(server.url + "/sink", max_queue=8, close_timeout=1)
    panel = LatencyPanel(session, interval=0.05, timeout=0.1)
    panels.append(panel)
    panel.start_periodic()
    await wait_for(lambda: panel.lost >= 2, what="two real time-outs")
    assert panel.unmeasured == 0 and not session.reading_paused
    await wait_for(lambda: "rawws-latency-timeout" in panel.chart.value, what="time-outs drawn in the chart")
    panel.stop_periodic()
    await session.close()


async def close_later(session, request) -> None:
    """Answer pings for 0.3 s, then close with 4001 "bye"."""

    async def pong() -> None:
        async for frame in session.incoming:
            if isinstance(frame, Frame.Ping):
                await session.send(Frame.Pong(frame.data))

    task = session.launch(pong())
    await asyncio.sleep(0.3)
    task.cancel()
    await session.close(rw.CloseReason(4001, "bye"))


async def test_periodic_ping_stops_when_the_peer_closes(panels):
    async with rw.serve(handlers={"/later": close_later}) as srv:
        session = await rw.web_socket_raw_session(srv.url + "/later", close_timeout=1)
        await _ping_until_the_peer_closes(session, panels)


async def _ping_until_the_peer_closes(session, panels) -> None:
    panel = LatencyPanel(session, interval=0.05)
    panels.append(panel)
    panel.start_periodic()
    await wait_for(lambda: len(panel.rtts) >= 2, what="round trips before the close")
    try:
        async for _ in session.incoming:
            pass
    except rw.SessionClosed:
        pass
    await session.close()
    await wait_for(lambda: not panel.periodic.value, what="the toggle to switch off")
    await wait_for(lambda: panel.ping_button.disabled and panel.periodic.disabled, what="actions disabled")
    sent = pings_sent(session)
    await asyncio.sleep(0.3)
    assert pings_sent(session) == sent
    assert "periodic ping stopped: the session is" in panel.status.text
    assert panel.lost == 0 and panel.status.kind == "info"


async def test_chart_has_a_time_axis_and_hover_values(session, panels):
    panel = LatencyPanel(session)
    panels.append(panel)
    for _ in range(3):
        await panel.ping_once()
        await session.incoming.receive()
    panel.refresh(force=True)
    chart = panel.chart.value
    assert "s since open" in chart and "currentColor" in chart
    assert chart.count("<title>ping ") == 3 and " ms at " in chart
