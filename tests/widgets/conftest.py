"""Fixtures for the widget tests: an embedded server whose /x path records every frame it
receives (and echoes data frames, answers pings, answers Close), a session on it, and a
helper that waits for a condition while the event loop runs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

import rawws_nb as rw
from rawws_nb import Frame, InvalidSend, SessionClosed


class Received(list):
    """The frames the server received on /x, in order."""

    def texts(self) -> list[str]:
        return [f.data.decode("utf-8", "replace") for f in self if isinstance(f, Frame.Text)]


async def wait_for(cond: Callable[[], object], timeout: float = 3.0, what: str = "condition") -> None:
    """Poll `cond()` while the loop runs; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def steady_flood(session: rw.RawSession, request: object) -> None:
    """Text frames of 16 bytes, `batch` per loop turn, until the client's Close (answered)
    or the end of the connection: a flood that yields to the loop (the client and the
    panels keep running)."""
    batch = int(getattr(request, "query", {}).get("batch", 200))
    frame = Frame.Text(b"x" * 16)

    async def answer_close() -> None:
        try:
            async for received in session.incoming:
                if isinstance(received, Frame.Close):
                    await session.close()
                    return
        except SessionClosed:
            return

    session.launch(answer_close())
    try:
        while True:
            for _ in range(batch):
                await session.send(frame)
            await asyncio.sleep(0)
    except (SessionClosed, InvalidSend):
        return


@pytest.fixture
def received() -> Received:
    return Received()


@pytest.fixture
async def xserver(received: Received):
    async def record(session: rw.RawSession, request: object) -> None:
        try:
            while True:
                frame = await session.incoming.receive()
                received.append(frame)
                if isinstance(frame, Frame.Close):
                    await session.close()
                    return
                if isinstance(frame, Frame.Ping):
                    await session.send(Frame.Pong(frame.data))
                elif isinstance(frame, Frame.Text | Frame.Binary):
                    await session.send(frame)
        except SessionClosed:
            return

    async with rw.serve(handlers={"/x": record, "/steady": steady_flood}) as srv:
        yield srv


@pytest.fixture
async def session(xserver):
    s = await rw.web_socket_raw_session(xserver.url + "/x", close_timeout=2)
    yield s
    try:
        await s.close()
    except Exception:
        pass


@pytest.fixture
async def panels():
    """Collects panels to close (stopping their refresh tasks) at the end of a test."""
    made: list = []
    yield made
    for panel in made:
        panel.close()
    await asyncio.sleep(0)
