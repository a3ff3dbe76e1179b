"""Widget callbacks fired from a foreign thread running its own event loop (as a kernel
subshell does) hand their work to the session's loop: the coroutines that touch the
session run on the session's thread and loop, never on the caller's."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import warnings
from types import SimpleNamespace

import pytest

from rawws_nb import Frame
from rawws_nb.loops import cancel, submit
from rawws_nb.widgets import Dashboard, LatencyPanel, SendPanel

from .conftest import wait_for


def spy(session, name: str, seen: list) -> None:
    """Wrap `session.<name>` to record the thread and loop it runs on."""
    original = getattr(session, name)

    async def wrapper(*args, **kwargs):
        seen.append((threading.get_ident(), asyncio.get_running_loop()))
        return await original(*args, **kwargs)

    setattr(session, name, wrapper)


async def fire_in_subshell_like_thread(callback) -> dict:
    """Run `callback()` in a new thread inside its own running loop (`asyncio.run`),
    awaiting what it returns if it is a future; wait for the thread without blocking
    the session's loop."""
    info: dict = {}

    async def fire():
        info["thread"] = threading.get_ident()
        info["loop"] = asyncio.get_running_loop()
        result = callback()
        if isinstance(result, concurrent.futures.Future):
            info["result"] = await asyncio.wrap_future(result)

    thread = threading.Thread(target=lambda: asyncio.run(fire()), name="fake-subshell")
    thread.start()
    await asyncio.to_thread(thread.join, 5)
    assert not thread.is_alive()
    return info


async def test_send_click_from_a_foreign_loop_runs_on_the_session_loop(session, received, panels):
    here, loop = threading.get_ident(), asyncio.get_running_loop()
    seen: list = []
    spy(session, "send", seen)
    panel = SendPanel(session)
    panels.append(panel)
    panel.payload.value = "from a subshell"
    info = await fire_in_subshell_like_thread(panel.send_button.click)
    await wait_for(lambda: received.texts() == ["from a subshell"], what="the frame at the server")
    assert info["thread"] != here and info["loop"] is not loop
    assert seen == [(here, loop)]
    await wait_for(lambda: panel.status.kind == "ok")


async def test_send_returns_a_future_when_called_from_another_loop(session, received, panels):
    panel = SendPanel(session)
    panels.append(panel)
    panel.payload.value = "awaited across loops"
    info = await fire_in_subshell_like_thread(panel.send)
    assert "result" in info  # the foreign loop awaited the concurrent future
    await wait_for(lambda: received.texts() == ["awaited across loops"])


async def test_ping_periodic_and_close_from_a_foreign_loop(session, received, panels):
    here, loop = threading.get_ident(), asyncio.get_running_loop()
    pings: list = []
    closes: list = []
    spy(session, "ping", pings)
    spy(session, "close", closes)
    dash = Dashboard(session)
    panels.append(dash)
    lat = dash.latency_panel

    await fire_in_subshell_like_thread(lat.ping_button.click)
    await wait_for(lambda: len(lat.rtts) == 1, what="ping now from the foreign thread")
    assert pings == [(here, loop)]

    lat.interval.value = 0.05
    await fire_in_subshell_like_thread(lambda: setattr(lat.periodic, "value", True))
    await wait_for(lambda: len(lat.rtts) >= 3, what="periodic pings")
    await fire_in_subshell_like_thread(lambda: setattr(lat.periodic, "value", False))
    await asyncio.sleep(0.1)
    n = len(pings)
    await asyncio.sleep(0.2)
    assert len(pings) == n, "the toggle stopped the periodic ping from the foreign thread"
    assert set(pings) == {(here, loop)}

    await fire_in_subshell_like_thread(lambda: setattr(dash.drain, "value", True))
    await wait_for(lambda: len(session.incoming) == 0 and dash.drained >= 1, what="drained incoming")

    await fire_in_subshell_like_thread(dash.close_button.click)
    await wait_for(lambda: "CLOSED" in dash.header.value, what="the dashboard to show CLOSED")
    assert closes[0] == (here, loop)
    assert isinstance(received[-1], Frame.Close)


async def test_click_from_a_plain_thread_without_a_loop(session, received, panels):
    panel = LatencyPanel(session)
    panels.append(panel)
    thread = threading.Thread(target=panel.ping_button.click)
    thread.start()
    await asyncio.to_thread(thread.join, 5)
    await wait_for(lambda: len(panel.rtts) == 1)


async def test_submit_on_the_same_loop_makes_a_task_and_a_closed_loop_is_an_error():
    async def work():
        return threading.get_ident()

    handle = submit(asyncio.get_running_loop(), work())
    assert isinstance(handle, asyncio.Task)
    assert await handle == threading.get_ident()

    other = asyncio.new_event_loop()
    other.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the coroutine is closed, not left un-awaited
        with pytest.raises(RuntimeError, match="closed"):
            submit(other, work())

    blocker = asyncio.get_running_loop().create_task(asyncio.sleep(10))
    cancel(asyncio.get_running_loop(), blocker)
    with pytest.raises(asyncio.CancelledError):
        await blocker


async def test_panel_on_a_closed_loop_reports_instead_of_raising(session, panels):
    panel = SendPanel(session)
    panels.append(panel)
    dead = asyncio.new_event_loop()
    dead.close()
    panel.session = SimpleNamespace(loop=dead, send=session.send)  # as if the session's loop had ended
    panel.payload.value = "x"
    panel.send_button.click()
    assert panel.status.kind == "error" and "event loop is closed" in panel.status.text
