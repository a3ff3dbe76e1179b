"""The asyncio session over real sockets: the bound on `incoming`, the fail policy's
timing, and the embedded server's routing."""

from __future__ import annotations

import asyncio

import pytest

import rawws_nb as rw
from rawws_nb import Frame, HandshakeError, PeerProtocolError
from rawws_nb.wire import encode_frame


async def _until(predicate, timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


async def test_max_queue_is_the_bound_and_nothing_is_lost(server):
    session = await rw.web_socket_raw_session(f"{server.url}/flood?n=5000&size=16", max_queue=256)
    await _until(lambda: session.reading_paused)
    await asyncio.sleep(0.1)  # more data arrives and waits in the socket, not in incoming
    assert len(session.incoming) <= 256
    received = 0
    while True:
        frame = await asyncio.wait_for(session.incoming.receive(), 5)
        assert len(session.incoming) <= 256
        if frame.data == b"flood done":
            break
        assert frame.data == b"x" * 16
        received += 1
    assert received == 5000
    await session.close()
    assert session.timeline.query("dir == 'rx' and opcode == 'text'").shape[0] == 5001


async def test_close_timeout_none_lets_earlier_frames_be_answered():
    seen: list[Frame] = []

    async def question_then_violation(session, request):
        await session.send("question")
        await session.send_raw(encode_frame(3, b"reserved opcode", mask=False))
        async for frame in session.incoming:
            seen.append(frame)
            if isinstance(frame, Frame.Close):
                break

    async with rw.serve(handlers={"/q": question_then_violation}) as srv:
        session = await rw.web_socket_raw_session(srv.url + "/q", close_timeout=None)
        await asyncio.sleep(0.3)  # the violation has arrived; nobody has read yet
        assert session.state is rw.SessionState.OPEN
        frame = await session.incoming.receive()
        assert frame.data == b"question"
        await session.send("answer")  # still possible: the connection fails after this
        with pytest.raises(PeerProtocolError) as info:
            await session.incoming.receive()
        assert info.value.code == 1002
        await asyncio.wait_for(session.wait_closed(), 5)
        await _until(lambda: seen and isinstance(seen[-1], Frame.Close))
    assert [f.data for f in seen[:1]] == [b"answer"] and seen[-1].read_reason().code == 1002


async def test_a_private_module_of_protocols_is_not_a_route(server):
    with pytest.raises(HandshakeError) as info:
        await rw.web_socket_raw_session(server.url + "/proto/_serving")
    assert info.value.status == 404
