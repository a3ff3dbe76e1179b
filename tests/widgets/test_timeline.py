"""TimelinePanel: rows appear, filters and pause work, and a flood is rendered at most ~10 times a second."""

from __future__ import annotations

import asyncio
import time

import rawws_nb as rw
from rawws_nb import Frame, SessionClosed
from rawws_nb.widgets import TimelinePanel

from .conftest import wait_for


def rows_in(table_html: str) -> int:
    return table_html.count("<tr class=")


async def test_rows_appear_with_arrows_opcodes_and_previews(session, panels):
    panel = TimelinePanel(session, rows=10)
    panels.append(panel)
    assert "rawws-timeline" in panel._dom_classes and "rawws-timeline-rows" in panel.table._dom_classes
    assert panel.refreshing
    await session.send(Frame.Text("hello timeline"))
    await session.send(Frame.Binary(b"\x00\x01\xfe"))
    await wait_for(lambda: rows_in(panel.table.value) == 4, what="4 rows (2 sent, 2 echoed)")
    table = panel.table.value
    assert table.count("→") == 2 and table.count("←") == 2
    assert "hello timeline" in table and "00 01 fe" in table
    assert "<td>text</td>" in table and "<td>binary</td>" in table
    assert table.index("00 01 fe") < table.index("hello timeline")  # newest first
    assert "4 frames" in panel.counters.value and "→ 2 sent" in panel.counters.value


async def test_table_keeps_only_the_last_rows(session, panels):
    panel = TimelinePanel(session, rows=5)
    panels.append(panel)
    for i in range(20):
        await session.send(f"m{i}")
    await wait_for(lambda: "40 frames" in panel.counters.value, what="40 frames counted")
    assert rows_in(panel.table.value) == 5 and panel.shown == 5
    assert "m19" in panel.table.value and "m10" not in panel.table.value


async def test_filters_and_pause(session, panels):
    panel = TimelinePanel(session, rows=50)
    panels.append(panel)
    await session.send("data")
    await session.ping(b"p1", timeout=2)
    await wait_for(lambda: rows_in(panel.table.value) == 4)

    panel.direction.value = "rx"
    await wait_for(lambda: rows_in(panel.table.value) == 2, what="rx rows only")
    assert "→" not in panel.table.value

    panel.direction.value = "all"
    panel.opcode.value = "ping"
    await wait_for(lambda: rows_in(panel.table.value) == 1, what="the ping row only")
    assert "<td>ping</td>" in panel.table.value and "&#x27;p1&#x27;" in panel.table.value

    panel.opcode.value = "all"
    await wait_for(lambda: rows_in(panel.table.value) == 4)
    panel.pause.value = True
    assert panel.pause.description == "resume"
    frozen = panel.table.value
    await session.send("while paused")
    await wait_for(lambda: "paused" in panel.counters.value and "6 frames" in panel.counters.value)
    assert panel.table.value == frozen
    panel.pause.value = False
    await wait_for(lambda: "while paused" in panel.table.value, what="the table to resume")


async def test_errors_filter_and_final_render_after_close(server, panels):
    session = await rw.web_socket_raw_session(server.url + "/bad/utf8")
    panel = TimelinePanel(session)
    panels.append(panel)
    try:
        async for _ in session.incoming:
            pass
    except SessionClosed:
        pass
    await session.wait_closed()
    await wait_for(lambda: not panel.refreshing, what="the refresh task to end after the close")
    assert "invalid UTF-8" in panel.table.value or "utf-8" in panel.table.value.lower()
    panel.opcode.value = "errors"
    panel.refresh()
    assert rows_in(panel.table.value) >= 1 and "class='err'" in panel.table.value


async def test_recording_off(server, panels):
    session = await rw.web_socket_raw_session(server.url + "/echo", record=False)
    panel = TimelinePanel(session)
    panels.append(panel)
    await wait_for(lambda: panel.renders >= 1)
    assert "recording is off" in panel.counters.value
    await session.close()


async def test_flood_is_rendered_at_most_ten_times_a_second(xserver, panels):
    session = await rw.web_socket_raw_session(xserver.url + "/steady?batch=200", close_timeout=1)
    panel = TimelinePanel(session, rows=50)
    panels.append(panel)

    async def drain():
        try:
            async for _ in session.incoming:
                pass
        except SessionClosed:
            pass

    task = asyncio.create_task(drain())
    start_renders = panel.renders
    start = time.perf_counter()
    await asyncio.sleep(1.0)
    elapsed = time.perf_counter() - start
    renders = panel.renders - start_renders
    total = session.recorder.total
    await session.close()  # the flood answers the Close
    await asyncio.wait_for(task, 5)
    assert total > 2000, "the flood should have delivered thousands of frames"
    assert 3 <= renders <= elapsed * 10 + 2, f"{renders} renders in {elapsed:.2f} s"
    assert panel.shown <= 50
    assert panel.last_render_ms < 50, f"a render took {panel.last_render_ms:.1f} ms"
