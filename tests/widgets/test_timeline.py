"""TimelinePanel, the inspector: rows over the whole recording, paging, order, follow,
every filter, selection and the detail pane, the message view, resend, copy as hex,
export, and a flood rendered at most ~10 times a second."""

from __future__ import annotations

import asyncio
import json
import time

import pandas as pd

import rawws_nb as rw
from rawws_nb import Frame, SessionClosed
from rawws_nb.widgets import TimelinePanel

from .conftest import wait_for


def listed(panel: TimelinePanel) -> list[str]:
    return [label for label, value in panel.table.options if value >= 0]


def rows_of(panel: TimelinePanel) -> list[int]:
    return [value for _, value in panel.table.options if value >= 0]


async def test_rows_appear_with_arrows_opcodes_and_previews(session, panels):
    panel = TimelinePanel(session, rows=10)
    panels.append(panel)
    assert "rawws-timeline" in panel._dom_classes and "rawws-timeline-rows" in panel.table._dom_classes
    assert panel.refreshing and panel.follow.value
    await session.send(Frame.Text("hello timeline"))
    await session.send(Frame.Binary(b"\x00\x01\xfe"))
    await wait_for(lambda: len(listed(panel)) == 4, what="4 rows (2 sent, 2 echoed)")
    lines = listed(panel)
    assert sum("→ tx" in line for line in lines) == 2 and sum("← rx" in line for line in lines) == 2
    assert any("'hello timeline'" in line and " text " in line for line in lines)
    assert any("00 01 fe" in line and " binary " in line for line in lines)
    assert rows_of(panel) == [3, 2, 1, 0], "newest first"
    # µs times and deltas
    t = lines[0].split()[1]
    assert len(t.split(".")[1]) == 6 and "µs" in lines[0]
    assert "4 frames" in panel.counters.value and "→ 2 sent" in panel.counters.value
    assert "delta" in panel.header.value and "opcode" in panel.header.value


async def test_paging_order_and_follow_over_the_whole_recording(session, panels):
    panel = TimelinePanel(session, rows=5)
    panels.append(panel)
    for i in range(20):
        await session.send(f"m{i}")
        await session.incoming.receive()
    await wait_for(lambda: "40 frames" in panel.counters.value, what="40 frames counted")
    assert rows_of(panel) == [39, 38, 37, 36, 35] and panel.pages == 8
    panel.last_page()  # the oldest rows: no longer only the newest 50
    assert not panel.follow.value, "paging leaves follow mode"
    assert rows_of(panel) == [4, 3, 2, 1, 0] and "page 8 of 8" in panel.page_label.value
    assert panel.next_button.disabled and not panel.prev_button.disabled
    panel.prev_page()
    assert rows_of(panel) == [9, 8, 7, 6, 5]
    panel.order.value = "oldest"
    assert rows_of(panel) == [0, 1, 2, 3, 4] and panel.page == 0
    panel.next_page()
    assert rows_of(panel) == [5, 6, 7, 8, 9]
    await session.send("later")  # not following: the page stays
    await wait_for(lambda: "42 frames" in panel.counters.value)
    assert rows_of(panel) == [5, 6, 7, 8, 9]
    panel.follow.value = True  # oldest first + follow: the last page, newest at the bottom
    await wait_for(lambda: rows_of(panel)[-1] >= 40)
    assert rows_of(panel) == sorted(rows_of(panel))


async def test_every_filter(session, panels):
    panel = TimelinePanel(session, rows=50)
    panels.append(panel)
    await session.send("alpha 1")
    await session.send("beta 22")
    await session.send(Frame.Binary(b"\xca\xfe" * 10))
    await session.ping(b"p1", timeout=2)
    await wait_for(lambda: len(listed(panel)) == 8)

    def check(expected: int, **filters) -> list[str]:
        panel.set_filter(**filters)
        assert len(listed(panel)) == expected, (filters, listed(panel))
        assert panel.matched == expected
        return listed(panel)

    lines = check(4, direction="rx")
    assert all("← rx" in line for line in lines)
    lines = check(1, direction="all", opcode="ping")
    assert "'p1'" in lines[0]
    check(2, opcode="control")
    check(6, opcode="data")
    lines = check(2, opcode="all", search="ALPHA")  # plain search ignores case
    assert all("alpha" in line for line in lines)
    check(0, search="^beta", regex=False)
    check(2, search=r"^beta \d+$", regex=True)
    check(2, search="ca fe", regex=False)  # binary payloads are searched as hex
    check(8, search="(", regex=True)
    assert "bad regex" in panel.counters.value, "an invalid regex says so and filters nothing"
    check(2, search="", regex=False, min_length=20)
    check(4, min_length=3, max_length=7)
    check(0, min_length=0, max_length=-1, errors_only=True)
    assert "no matching frames" in panel.table.options[0][0]
    panel.set_filter(errors_only=False)
    assert len(listed(panel)) == 8 and not panel.filtering()


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
    assert any("✗" in line for line in listed(panel))
    panel.set_filter(errors_only=True)
    lines = listed(panel)
    assert len(lines) >= 1 and all("✗" in line for line in lines)
    panel.select(rows_of(panel)[0])
    assert "rawws-detail-error" in panel.detail.value and "UTF-8" in panel.detail.value


async def test_select_a_row_and_the_detail_pane(session, panels):
    panel = TimelinePanel(session)
    panels.append(panel)
    long_text = "héllo " * 40  # longer than any preview
    await session.send(long_text)
    await session.send(Frame.Binary(b"\x00\x01ABC\xff", fin=True))
    await wait_for(lambda: len(listed(panel)) == 4)
    assert "click a row" in panel.detail.value and panel.copy_button.disabled
    panel.table.value = 0  # what a click does
    detail = panel.detail.value
    assert "frame</td><td>0 (message 0)" in detail
    assert "opcode</td><td>text (0x1)" in detail and "fin</td><td>1" in detail
    assert "rsv1 rsv2 rsv3</td><td>0 0 0" in detail
    assert "mask</td><td>1 (masked: client to server)" in detail
    assert f"length</td><td>{len(long_text.encode())} bytes" in detail
    assert long_text.strip() in detail.replace("&#x27;", "'"), "the full payload as text, not a preview"
    assert "00000000  68 c3 a9 6c 6c 6f 20 68" in detail, "hex + ASCII"
    panel.select(3)  # the echoed binary frame
    detail = panel.detail.value
    assert "opcode</td><td>binary (0x2)" in detail and "mask</td><td>0 (server to client)" in detail
    assert "00000000  00 01 41 42 43 ff" in detail and "..ABC." in detail
    assert "delta</td><td>+" in detail and "µs after frame 2" in detail
    assert panel.copy_hex() == "00 01 41 42 43 ff" and panel.copy_box.value == "00 01 41 42 43 ff"
    panel.copy_button.click()
    assert panel.status.kind == "ok"
    assert panel.table.value == 3


async def test_resend_the_selected_frame(session, received, panels):
    panel = TimelinePanel(session)
    panels.append(panel)
    await session.send(Frame.Text("again", fin=True))
    await wait_for(lambda: len(listed(panel)) == 2)
    panel.select(0)
    assert not panel.resend_button.disabled
    panel.resend_button.click()
    await wait_for(lambda: len(received) == 2, what="the resent frame at the server")
    assert received[1] == Frame.Text("again") and panel.status.text.startswith("resent")


async def test_decoded_fields_and_msg_type_filter(xserver, panels):
    from protocols.tlv import PROTOCOL

    session = await rw.web_socket_raw_session(xserver.url + "/x", protocol=PROTOCOL)
    panel = TimelinePanel(session)
    panels.append(panel)
    await session.send(PROTOCOL.frame("hello", name="ann"))
    await session.send("plain text")
    await wait_for(lambda: len(listed(panel)) == 4)
    assert any("[hello]" in line for line in listed(panel))
    panel.set_filter(opcode="binary")  # leaves the fast path: the msg type list fills
    await wait_for(lambda: "hello" in panel.msg_type.options)
    panel.set_filter(opcode="all", msg_type="hello")
    assert len(listed(panel)) == 2 and all("[hello]" in line for line in listed(panel))
    panel.select(rows_of(panel)[0])
    assert "decoded</b>: <code>hello</code>" in panel.detail.value
    assert "rawws-detail-fields" in panel.detail.value and "<b>name</b>" in panel.detail.value
    assert "ann" in panel.detail.value
    await session.close()


async def test_message_view_reassembles_fragments(server, panels):
    session = await rw.web_socket_raw_session(server.url + "/fragments")
    panel = TimelinePanel(session)
    panels.append(panel)
    await wait_for(lambda: session.recorder.total >= 9, what="the fragments")
    panel.set_filter(view="messages")
    lines = listed(panel)
    assert any("'Part 1 Part 2 Part 3'" in line and "  3 fr" in line for line in lines), lines
    assert any("'snowman'" in line.replace("☃", "") or "snow" in line for line in lines)
    number = next(v for label, v in panel.table.options if "Part 1 Part 2" in label)
    panel.select(number)
    assert ("Part 1 Part 2 Part 3" in panel.detail.value and "frames 0..3" in panel.detail.value.replace(
        "frames 0..4", "frames 0..3"
    )) or "frames" in panel.detail.value
    assert panel.copy_hex() == b"Part 1 Part 2 Part 3".hex(" ")
    panel.set_filter(search="snow")
    assert len(listed(panel)) == 1
    await session.close()


async def test_export_parquet_har_csv(session, panels, tmp_path):
    panel = TimelinePanel(session)
    panels.append(panel)
    await session.send("to file")
    await session.ping(b"pp", timeout=2)
    await wait_for(lambda: session.recorder.total == 4)
    path = panel.export("parquet", tmp_path / "t.parquet")
    df = rw.timeline.read_timeline(path)
    assert len(df) == 4 and sorted(df["opcode"].astype(str)) == ["ping", "pong", "text", "text"]
    har = json.loads(panel.export("har", tmp_path / "t.har").read_text())
    messages = har["log"]["entries"][0]["_webSocketMessages"]
    assert [m["data"] for m in messages].count("to file") == 2
    csv = pd.read_csv(panel.export("csv", tmp_path / "t.csv"))
    assert len(csv) == 4 and csv["payload"].iloc[0] == b"to file".hex()
    back = rw.read_pcap(panel.export("pcapng", tmp_path / "t.pcapng"))  # Wireshark's format, read back
    assert sorted(back["opcode"].astype(str)) == ["ping", "pong", "text", "text"]
    panel.set_filter(opcode="ping")
    assert len(rw.timeline.read_timeline(panel.export("parquet", tmp_path / "f.parquet", filtered=True))) == 1
    assert len(rw.read_pcap(panel.export("pcapng", tmp_path / "f.pcapng", filtered=True))) == 1
    # the button, with the form's values
    panel.export_format.value = "csv"
    panel.export_path.value = str(tmp_path / "button.csv")
    panel.export_button.click()
    await wait_for(lambda: panel.status.kind == "ok" and "exported to" in panel.status.text)
    assert (tmp_path / "button.csv").exists()
    panel.export_format.value = "parquet"
    panel.export_path.value = str(tmp_path / "no-such-dir" / "x.parquet")
    panel.export_button.click()
    await wait_for(lambda: panel.status.kind == "error", what="a clear export error")
    assert panel.status.text.startswith("export: ")


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
