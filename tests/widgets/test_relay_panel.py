"""RelayPanel on a real relay: flows listed, both legs rendered, intercept (forward, edit,
drop) through the panel's buttons, inject through its SendPanel, callbacks from another
thread."""

from __future__ import annotations

import asyncio
import threading

import rawws_nb as rw
from rawws_nb import Frame
from rawws_nb.widgets import RelayPanel

from .conftest import wait_for


async def test_flows_and_both_legs_are_rendered(xserver, panels):
    async with rw.relay(xserver.url) as relay:
        panel = RelayPanel(relay, refresh_interval=0.02)
        panels.append(panel)
        assert "rawws-relay" in panel._dom_classes
        assert "no flow yet" in panel.client_rows.value
        session = await rw.web_socket_raw_session(relay.url + "/x")
        await session.send("shown on both legs")
        assert (await session.incoming.receive()).data == b"shown on both legs"
        await wait_for(lambda: "shown on both legs" in panel.upstream_rows.value, what="the upstream leg rows")
        assert "shown on both legs" in panel.client_rows.value
        assert panel.flows.options[0][1] == 1 and "/x" in panel.flows.options[0][0]
        assert "1 flows (1 open)" in panel.summary.value
        await session.close()
        await wait_for(lambda: "(ended)" in panel.flows.options[0][0], what="the flow to show as ended")


async def test_intercept_forward_edit_and_drop_from_the_panel(xserver, received, panels):
    async with rw.relay(xserver.url) as relay:
        panel = RelayPanel(relay, refresh_interval=0.02)
        panels.append(panel)
        panel.intercept.value = True
        await wait_for(lambda: relay.intercept, what="intercept on")
        session = await rw.web_socket_raw_session(relay.url + "/x")
        await session.send("original")
        await wait_for(lambda: "original" in panel.held.value, what="the held frame")
        assert panel.held_payload.value == "original"
        panel.held_payload.value = "edited in the panel"
        panel.forward_edited_button.click()
        await wait_for(lambda: received.texts() == ["edited in the panel"], what="the edited frame upstream")
        await wait_for(lambda: "edited in the panel" in panel.held.value, what="the echo, held on the way down")
        panel.forward_button.click()
        assert (await asyncio.wait_for(session.incoming.receive(), 5)).data == b"edited in the panel"
        await session.send("dropped")
        await wait_for(lambda: "dropped" in panel.held.value, what="the second held frame")
        panel.drop_button.click()
        await wait_for(lambda: not relay.held, what="the drop")
        panel.intercept.value = False
        await wait_for(lambda: not relay.intercept, what="intercept off")
        await session.send("free again")
        assert (await asyncio.wait_for(session.incoming.receive(), 5)).data == b"free again"
        assert received.texts() == ["edited in the panel", "free again"]
        await session.close()


async def test_inject_on_either_leg_with_the_send_form(xserver, received, panels):
    async with rw.relay(xserver.url) as relay:
        panel = RelayPanel(relay, refresh_interval=0.02)
        panels.append(panel)
        session = await rw.web_socket_raw_session(relay.url + "/x")
        await wait_for(lambda: panel.send_panel is not None, what="the inject form")
        panel.send_panel.payload.value = "injected upstream"
        panel.send_panel.send_button.click()
        await wait_for(lambda: received.texts() == ["injected upstream"], what="the injected frame at the server")
        # The server echoes it: the client sees the echo of a frame it never sent.
        assert (await asyncio.wait_for(session.incoming.receive(), 5)).data == b"injected upstream"
        panel.inject_leg.value = "client"
        await wait_for(lambda: panel.send_panel.session is relay.flows[0].client, what="the client-leg form")
        panel.send_panel.kind.value = "ping"
        panel.send_panel.payload.value = "from the relay"
        panel.send_panel.send_button.click()
        assert await asyncio.wait_for(session.incoming.receive(), 5) == Frame.Ping(b"from the relay")
        await session.close()


async def test_buttons_work_from_another_thread(xserver, received, panels):
    async with rw.relay(xserver.url) as relay:
        panel = RelayPanel(relay, refresh_interval=0.02)
        panels.append(panel)
        thread = threading.Thread(target=lambda: setattr(panel.intercept, "value", True))
        thread.start()
        thread.join()
        await wait_for(lambda: relay.intercept, what="intercept on, set from a thread")
        session = await rw.web_socket_raw_session(relay.url + "/x")
        await session.send("via a thread")
        await wait_for(lambda: relay.held, what="the held frame")
        thread = threading.Thread(target=panel.forward_button.click)
        thread.start()
        thread.join()
        await wait_for(lambda: received.texts() == ["via a thread"], what="the forwarded frame")
        relay.intercept = False
        await session.close()


async def test_nothing_held_is_a_status_not_an_error(xserver, panels):
    async with rw.relay(xserver.url) as relay:
        panel = RelayPanel(relay, autorefresh=False)
        panels.append(panel)
        panel.forward()
        assert panel.status.kind == "info" and "nothing is held" in panel.status.text
        assert panel.forward_button.disabled


def test_relaypanel_is_a_lazy_top_level_name():
    assert rw.RelayPanel is RelayPanel


async def test_export_both_legs_as_parquet_and_pcapng(xserver, panels, tmp_path):
    async with rw.relay(xserver.url) as relay:
        panel = RelayPanel(relay, refresh_interval=0.02)
        panels.append(panel)
        session = await rw.web_socket_raw_session(relay.url + "/x")
        await session.send("exported")
        assert (await session.incoming.receive()).data == b"exported"
        await session.close()
        await wait_for(lambda: len(relay.timeline) >= 8, what="both legs recorded")
        table = rw.read_timeline(panel.export("parquet", tmp_path / "relay.parquet"))
        assert set(table["leg"]) == {"client", "upstream"} and (table["text"] == "exported").sum() == 4
        capture = rw.read_pcap(panel.export("pcapng", tmp_path / "relay.pcapng"))
        assert len(capture.attrs["connections"]) == 2  # one per leg
        assert (capture["text"] == "exported").sum() == 4
        panel.export_format.value = "pcapng"
        panel.export_path.value = str(tmp_path / "button.pcapng")
        panel.export_button.click()
        await wait_for(lambda: panel.status.kind == "ok" and "exported to" in panel.status.text)
        assert (tmp_path / "button.pcapng").exists()
