"""ConnectPanel: the form opens a real session to the embedded server (headers,
subprotocols, compression, proxy choice, keep-alive answers) and shows its Dashboard;
bad input is a clear status, never an exception in the kernel."""

from __future__ import annotations

import threading

import pytest

import rawws_nb as rw
from rawws_nb.widgets import ConnectPanel, Dashboard, parse_headers

from .conftest import wait_for


async def test_the_form_opens_a_session_and_its_dashboard(server):
    panel = ConnectPanel(server.url + "/echo")
    panel.headers.value = "X-Trace: abc\n\nX-Other: 1"
    panel.subprotocols.value = "chat.v2, chat.v1"
    panel.compression.value = True
    panel.proxy.value = "none"
    panel.connect_button.click()
    await wait_for(lambda: panel.status.kind == "ok", what="connected")
    session = panel.session
    assert session is not None and session.state is rw.SessionState.OPEN
    assert session.subprotocol == "chat.v2" and session.extensions == ["permessage-deflate"]
    assert ("X-Trace", "abc") in session.request_headers and ("X-Other", "1") in session.request_headers
    assert isinstance(panel.dashboard, Dashboard) and panel.output.children == (panel.dashboard,)
    assert "connected to" in panel.status.text and "permessage-deflate" in panel.status.text
    await session.send("through the form")
    assert (await session.incoming.receive()).data == b"through the form"
    panel.dashboard.close()
    await session.close()


async def test_a_click_from_another_thread_is_handed_to_the_loop(server):
    panel = ConnectPanel(server.url + "/echo")
    worker = threading.Thread(target=panel.connect_button.click)
    worker.start()
    worker.join()
    await wait_for(lambda: panel.session is not None, what="connected from a thread")
    assert panel.session.loop is panel.loop
    panel.dashboard.close()
    await panel.session.close()


@pytest.mark.parametrize(
    ("url", "headers", "words"),
    [
        ("", "", "give a ws:// or wss:// URL"),
        ("ws://127.0.0.1:1/echo", "", "connect: "),
        ("http://x", "", "connect: "),
        ("ws://127.0.0.1:1/", "no colon here", "header line 1 is not 'Name: value'"),
    ],
)
async def test_bad_input_is_a_clear_status(url, headers, words):
    panel = ConnectPanel(url)
    panel.headers.value = headers
    panel.proxy.value = "none"
    panel.connect_button.click()
    await wait_for(lambda: panel.status.kind == "error", what="an error status")
    assert words in panel.status.text and panel.session is None
    assert not panel.connect_button.disabled  # try again


def test_parse_headers():
    assert parse_headers("A: 1\n B : two words \n\n") == {"A": "1", "B": "two words"}
    with pytest.raises(ValueError, match="line 2"):
        parse_headers("A: 1\nbad")


def test_the_lazy_widget_names_of_the_package_root_work_in_a_fresh_process():
    import subprocess
    import sys

    code = "import rawws_nb as rw, sys; assert 'ipywidgets' not in sys.modules; print(rw.SendPanel.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "SendPanel", out.stderr[-500:]
