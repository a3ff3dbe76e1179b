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


async def test_auto_pong_answers_pings_and_says_so_in_the_timeline(server):
    session = await rw.web_socket_raw_session(server.url + "/ping?n=2&interval=0.05&timeout=1", auto_pong=True)
    reports = []
    async for frame in session.incoming:
        if isinstance(frame, Frame.Text):
            reports.append(frame.data.decode())
            if frame.data == b"ping done":
                break
    await session.close()
    assert [r.split(" received")[0] for r in reports[:2]] == ["pong server-ping-1", "pong server-ping-2"]
    df = session.timeline
    pongs = df[(df.dir == "tx") & (df.opcode == "pong")]
    assert len(pongs) == 2 and pongs.automatic.all()
    assert not df[df.opcode != "pong"].automatic.any()
    assert len(df[(df.dir == "rx") & (df.opcode == "ping")]) == 2  # the pings still reached incoming


async def test_ping_interval_sends_keepalive_pings_until_the_session_ends(server):
    session = await rw.web_socket_raw_session(server.url + "/echo", ping_interval=0.1)
    await asyncio.sleep(0.45)
    await session.close()
    sent = session.timeline.query("dir == 'tx' and opcode == 'ping'")
    assert 2 <= len(sent) <= 5 and sent.automatic.all()  # every 0.1 s (a loaded machine may lose one)
    assert sent.payload.iloc[0] == b"keepalive-1"
    count = len(sent)
    await asyncio.sleep(0.25)
    assert len(session.timeline.query("dir == 'tx' and opcode == 'ping'")) == count  # stopped with the session
    with pytest.raises(ValueError, match="positive"):
        await rw.web_socket_raw_session(server.url + "/echo", ping_interval=0)


async def test_a_keepalive_server_closes_a_raw_session_with_1011_unless_it_answers():
    from websockets.asyncio.server import serve as ws_serve

    async def idle(websocket):
        await asyncio.sleep(5)

    async with ws_serve(idle, "127.0.0.1", 0, ping_interval=0.2, ping_timeout=0.3) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        raw = await rw.web_socket_raw_session(url)
        answering = await rw.web_socket_raw_session(url, auto_pong=True)
        await asyncio.wait_for(raw.wait_closed(), 5)
        assert raw.close_reason.code == 1011  # the server's keep-alive policy, not a bug
        assert answering.state is rw.SessionState.OPEN
        await answering.close()


async def test_receive_batch_takes_every_waiting_frame_in_order_and_reading_resumes(server):
    # 5,000 frames through a queue of 8: each batch is what waits; reading pauses and
    # resumes under it, and nothing is lost or reordered.
    session = await rw.web_socket_raw_session(f"{server.url}/flood?n=5000&size=16", max_queue=8)
    got: list[Frame] = []
    sizes: list[int] = []
    while not got or got[-1].data != b"flood done":
        batch = await asyncio.wait_for(session.incoming.receive_batch(), 5)
        assert batch and len(session.incoming) <= 8
        sizes.append(len(batch))
        got += batch
    assert [f.data for f in got[:-1]] == [b"x" * 16] * 5000
    assert max(sizes) > 1  # batches, not one frame at a time
    assert max(sizes) <= 8 + 1  # what incoming held (and the frame that was awaited), not all the socket had
    await session.close()
    assert session.timeline.query("dir == 'rx' and opcode == 'text'").shape[0] == 5001


async def test_receive_batch_stops_before_a_violation_and_raises_at_it():
    async def frames_then_violation(session, request):
        for i in range(5):
            await session.send(f"m{i}")
        await session.send_raw(encode_frame(3, b"reserved opcode", mask=False))
        await asyncio.sleep(1)

    async with rw.serve(handlers={"/v": frames_then_violation}) as srv:
        session = await rw.web_socket_raw_session(srv.url + "/v", close_timeout=None)
        await _until(lambda: len(session.incoming) == 5)
        await asyncio.sleep(0.1)  # the violation has arrived too
        first = await session.incoming.receive_batch(max_frames=2)
        rest = await session.incoming.receive_batch()
        assert [f.data for f in first + rest] == [b"m0", b"m1", b"m2", b"m3", b"m4"]
        assert len(first) == 2
        with pytest.raises(PeerProtocolError) as info:
            await session.incoming.receive_batch()
        assert info.value.code == 1002
        with pytest.raises(ValueError):
            await session.incoming.receive_batch(max_frames=0)


async def test_receive_batch_ends_as_receive_does(server):
    session = await rw.web_socket_raw_session(server.url + "/echo")
    await session.send("one")
    assert [f.data for f in await asyncio.wait_for(session.incoming.receive_batch(), 5)] == [b"one"]
    await session.close()
    rest = await asyncio.wait_for(session.incoming.receive_batch(), 5)
    assert [type(f) for f in rest] == [Frame.Close]  # the peer's Close, delivered like any frame
    with pytest.raises(rw.SessionClosed):
        await asyncio.wait_for(session.incoming.receive_batch(), 5)
