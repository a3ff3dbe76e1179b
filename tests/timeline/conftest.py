"""Scripted sessions against the embedded server, shared by the timeline tests.

Each returns the closed session; what went over the wire is fixed by the script, so the
tests can state the expected timeline by hand.
"""

from __future__ import annotations

import asyncio

import pytest

import rawws_nb as rw
from rawws_nb import Frame


async def receive_until(session: rw.RawSession, text: str, limit: float = 5.0) -> list[Frame]:
    frames = []
    async with asyncio.timeout(limit):
        while True:
            frame = await session.incoming.receive()
            frames.append(frame)
            if isinstance(frame, Frame.Text) and frame.fin and frame.data == text.encode():
                return frames


async def fragments_script(url: str, **options) -> rw.RawSession:
    """`/fragments` (server: text in 3 parts with a Ping inside, binary in 2, text split
    in a UTF-8 character, `done`), then our own fragmented text with a Ping inside,
    echoed back (the path echoes after `done`), the peer's Ping answered late."""
    session = await rw.web_socket_raw_session(url + "/fragments", **options)
    await receive_until(session, "done")  # frames 0-8
    await session.send(Frame.Text("A", fin=False))  # 9
    await session.send(Frame.Ping(b"mid"))  # 10
    await session.send(Frame.Text("B", fin=True))  # 11
    await session.send(Frame.Pong(b"between-fragments"))  # 12: answers the server's Ping (frame 2)
    async with asyncio.timeout(5):
        for _ in range(3):  # 13 text A, 14 pong mid, 15 continuation B
            await session.incoming.receive()
    await session.close()  # 16 tx close, 17 rx close
    return session


async def sink_script(url: str) -> rw.RawSession:
    """`/sink` answers nothing: two pings stay unanswered; one pong nobody asked for."""
    session = await rw.web_socket_raw_session(url + "/sink")
    await session.send(Frame.Ping(b"one"))  # 0
    await session.send(Frame.Text("hello"))  # 1
    await session.send(Frame.Ping(b"two"))  # 2
    await session.send(Frame.Pong(b"unsolicited"))  # 3
    await session.close()  # 4 tx close, 5 rx close
    return session


@pytest.fixture
async def fragments_session(server):
    return await fragments_script(server.url)


@pytest.fixture
async def sink_session(server):
    return await sink_script(server.url)
