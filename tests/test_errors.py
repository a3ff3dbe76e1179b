"""Bad input gets a clear error and loses nothing: handshakes, limits, violations, drops."""

from __future__ import annotations

import asyncio
import ssl

import pytest

import rawws_nb as rw
from rawws_nb import Frame, HandshakeError, MessageTooBig, PeerProtocolError, SessionClosed


@pytest.mark.parametrize("status", [403, 404, 500])
async def test_refused_handshake_raises_with_status_headers_and_body(server, status):
    path = f"/status/{status}" if status != 404 else "/no-such-path"
    with pytest.raises(HandshakeError) as info:
        await rw.web_socket_raw_session(server.url + path)
    err = info.value
    assert err.status == status
    assert err.header("content-type").startswith("text/plain")
    assert err.body.startswith(b"refused with" if status != 404 else b"no such path")


async def test_redirect_is_reported_not_followed(server):
    with pytest.raises(HandshakeError) as info:
        await rw.web_socket_raw_session(server.url + "/status/302")
    assert info.value.status == 302 and "/echo" in str(info.value) and "not followed" in str(info.value)


async def test_method_is_sent_as_given_and_the_server_refuses_it(server):
    with pytest.raises(HandshakeError) as info:
        await rw.web_socket_raw_session(server.url + "/echo", method="POST")
    assert info.value.status == 400 and b"GET" in info.value.body


async def test_request_builder_sets_headers_and_subprotocols(server):
    def request(builder: rw.RequestBuilder):
        builder.headers["X-Test"] = "yes"
        builder.subprotocols.append("chat.v1")

    session = await rw.web_socket_raw_session(server.url + "/echo", request=request)
    assert session.subprotocol == "chat.v1"
    assert ("X-Test", "yes") in session.request_headers
    await session.close()


async def _silent_server(behaviour):
    async def handle(reader, writer):
        await behaviour(reader, writer)

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    return srv, srv.sockets[0].getsockname()[1]


async def test_a_server_that_never_answers_hits_open_timeout():
    async def never(reader, writer):
        await asyncio.sleep(10)

    srv, port = await _silent_server(never)
    try:
        with pytest.raises(TimeoutError, match="open_timeout"):
            await rw.web_socket_raw_session(f"ws://127.0.0.1:{port}/", open_timeout=0.3)
    finally:
        srv.close()


async def test_wrong_accept_token_is_a_handshake_error():
    async def wrong(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: bm90LXRoZS1yaWdodC10b2tlbg==\r\n\r\n"
        )
        await writer.drain()
        await asyncio.sleep(1)

    srv, port = await _silent_server(wrong)
    try:
        with pytest.raises(HandshakeError, match="Sec-WebSocket-Accept"):
            await rw.web_socket_raw_session(f"ws://127.0.0.1:{port}/", open_timeout=2)
    finally:
        srv.close()


async def test_oversize_frame_fails_with_1009_and_a_clear_exception(server):
    session = await rw.web_socket_raw_session(server.url + "/flood?n=1&size=5000&type=binary", max_message_size=1000)
    with pytest.raises(MessageTooBig) as info:
        await asyncio.wait_for(session.incoming.receive(), 2)
    # Only max_message_size was set: the error names it (not max_frame_size), and
    # close_reason says how the session ended.
    assert info.value.code == 1009 and "message of 5000 bytes exceeds max_message_size=1000" in str(info.value)
    assert "max_frame_size" not in str(info.value)
    await session.wait_closed()
    assert session.close_reason is not None and session.close_reason.code == 1009
    rows = session.timeline
    assert rows.error.iloc[0].startswith("message of 5000 bytes") and rows.length.iloc[0] == 5000
    assert list(rows.query("dir == 'tx'").close_code) == [1009]


async def test_oversize_fragmented_message_fails_with_1009():
    async def fragments(session, request):
        for _ in range(5):
            await session.send(Frame.Binary(b"x" * 400, fin=False))
        await asyncio.sleep(1)

    async with rw.serve(handlers={"/frag": fragments}) as srv:
        session = await rw.web_socket_raw_session(srv.url + "/frag", max_message_size=1000)
        frames = []
        with pytest.raises(MessageTooBig, match="max_message_size=1000"):
            while True:
                frames.append(await asyncio.wait_for(session.incoming.receive(), 2))
        assert len(frames) == 2  # the fragments within the limit were delivered
        await session.wait_closed()


BAD_KINDS = {
    "masked": (1002, "masked"),
    "opcode": (1002, "reserved data opcode"),
    "rsv": (1002, "rsv bits"),
    "utf8": (1007, "UTF-8"),
    "control": (1002, "control frame payload"),
    "ping-fragmented": (1002, "fragmented control"),
    "closecode": (1002, "invalid code 999"),
    "close-utf8": (1007, "not valid UTF-8"),
    "continuation": (1002, "continuation"),
}


@pytest.mark.parametrize("kind", sorted(BAD_KINDS))
async def test_each_bad_server_gives_a_clear_exception_and_an_error_row(server, kind):
    code, words = BAD_KINDS[kind]
    session = await rw.web_socket_raw_session(f"{server.url}/bad/{kind}", close_timeout=1)
    hello = await asyncio.wait_for(session.incoming.receive(), 2)
    assert hello == Frame.Text(f"about to send: {kind}")
    with pytest.raises(PeerProtocolError) as info:
        await asyncio.wait_for(session.incoming.receive(), 2)
    assert info.value.code == code and words in str(info.value)
    await asyncio.wait_for(session.wait_closed(), 2)
    df = session.timeline
    errors = df[df.error.notna()]
    assert len(errors) == 1 and words in errors.error.iloc[0] and errors.dir.iloc[0] == "rx"
    assert df.query("dir == 'tx' and opcode == 'close'").close_code.tolist() == [code]
    assert df.text.iloc[0] == f"about to send: {kind}"  # nothing recorded before the failure is lost
    with pytest.raises(PeerProtocolError):
        await session.incoming.receive()  # ends for good, never hangs


async def test_dropped_tcp_mid_frame_is_1006_with_an_error_row(server):
    session = await rw.web_socket_raw_session(f"{server.url}/bad/drop")
    assert (await session.incoming.receive()).read_text() == "about to send: drop"
    with pytest.raises(SessionClosed) as info:
        await asyncio.wait_for(session.incoming.receive(), 2)
    assert info.value.code == 1006 and not info.value.clean
    assert session.close_reason.code == 1006
    row = session.timeline.iloc[-1]
    assert row.error == "connection dropped in the middle of a frame (10 of 100 payload bytes received)"
    assert row.opcode == "binary" and row.length == 100 and row.payload == bytes(10)


async def test_back_pressure_bounds_memory_when_nobody_reads(server):
    session = await rw.web_socket_raw_session(f"{server.url}/flood?n=200000&size=64", max_queue=100)
    await asyncio.sleep(0.5)
    assert session.reading_paused
    assert len(session.incoming) < 100 + 256 * 1024 // 66  # the queue plus at most one read
    queued = len(session.incoming)
    await asyncio.sleep(0.3)
    assert len(session.incoming) == queued  # nothing more is read while paused
    count = 0
    async for frame in session.incoming:
        count += 1
        if frame == Frame.Text("flood done"):
            break
    assert count == 200001 and not session.reading_paused
    await session.close()


async def test_send_refuses_invalid_frames_and_send_raw_does_not(server):
    async with rw.ws_raw(server.url + "/echo") as session:
        with pytest.raises(rw.InvalidSend, match="125"):
            await session.send(Frame.Ping(b"x" * 126))
        with pytest.raises(rw.InvalidSend, match="close code 1005"):
            await session.send(Frame.Close(rw.CloseReason(1005)))
        await session.send(Frame.Text("a", fin=False))
        with pytest.raises(rw.InvalidSend, match="unfinished"):
            await session.send(Frame.Binary(b"b"))
        await session.send(Frame.Text("b"))
        assert (await session.incoming.receive()).data == b"a"
        await session.send_raw(rw.encode_frame(9, b"x" * 126))
        with pytest.raises(SessionClosed) as info:
            while True:
                await asyncio.wait_for(session.incoming.receive(), 2)
    assert info.value.code == 1002  # the embedded server failed the connection, with a Close
    assert session.close_reason.code == 1002


async def test_sending_after_the_session_ended_raises(server):
    session = await rw.web_socket_raw_session(server.url + "/echo")
    await session.close()
    with pytest.raises(SessionClosed):
        await session.send("late")


async def test_self_signed_server_is_rejected_by_default_and_accepted_with_its_ca(tls_server, client_tls):
    with pytest.raises(ssl.SSLCertVerificationError):
        await rw.web_socket_raw_session(f"wss://localhost:{tls_server.port}/echo")
    async with rw.wss_raw(f"wss://localhost:{tls_server.port}/echo", tls=client_tls) as session:
        await session.send("over tls")
        assert (await session.incoming.receive()).read_text() == "over tls"
    assert tls_server.url.startswith("wss://127.0.0.1:")


async def _hello_then_violation(session, request):
    await session.send_raw(rw.encode_frame(1, b"hello", mask=False) + rw.encode_frame(3, b"bad", mask=False))
    seen = []
    try:
        async for frame in session.incoming:
            seen.append(frame)
    except SessionClosed:
        pass
    request_log.append(seen)


request_log: list = []


async def test_a_violation_fails_the_connection_in_order_so_earlier_frames_can_be_answered():
    request_log.clear()
    async with rw.serve(handlers={"/x": _hello_then_violation}) as srv:
        session = await rw.web_socket_raw_session(srv.url + "/x")
        hello = await asyncio.wait_for(session.incoming.receive(), 2)
        assert hello == Frame.Text("hello")
        await session.send(Frame.Text("echo: hello"))  # still possible: the failure comes next
        with pytest.raises(PeerProtocolError, match="reserved data opcode"):
            await session.incoming.receive()
        await asyncio.wait_for(session.wait_closed(), 2)
        for _ in range(100):
            if request_log:
                break
            await asyncio.sleep(0.01)
    assert [repr(f) for f in request_log[0]] == [
        "TEXT 'echo: hello' [11 bytes]",
        "CLOSE 1002 (PROTOCOL_ERROR) 'reserved data opcode 0x3' [26 bytes]",
    ]
    df = session.timeline
    assert list(df.dir) == ["rx", "rx", "tx", "tx"] and df.error.iloc[1].startswith("reserved data opcode")


async def test_a_violation_nobody_reads_still_fails_after_close_timeout():
    async with rw.serve(handlers={"/x": _hello_then_violation}) as srv:
        session = await rw.web_socket_raw_session(srv.url + "/x", close_timeout=0.2)
        await asyncio.wait_for(session.wait_closed(), 2)
        assert session.state is rw.SessionState.CLOSED
        assert await session.incoming.receive() == Frame.Text("hello")  # nothing is lost
        with pytest.raises(PeerProtocolError):
            await session.incoming.receive()


async def test_sending_without_yielding_still_gets_back_pressure():
    """A loop of sends that never yields must pause on the transport's flow control."""

    async def sink_slowly(session, request):
        await asyncio.sleep(3)  # never reads: the client's writes fill the socket buffers

    async with rw.serve(handlers={"/slow": sink_slowly}) as srv:
        session = await rw.web_socket_raw_session(srv.url + "/slow", record=False)
        sent = 0

        async def flood():
            nonlocal sent
            while True:
                await session.send(b"x" * 1000)
                sent += 1

        task = asyncio.ensure_future(flood())
        await asyncio.sleep(0.5)  # the loop must get turns: the flood task is paused on drain
        assert not task.done() and session.writing_paused
        assert session.transport.get_write_buffer_size() < 1 << 20  # bounded, not 100 MB
        task.cancel()
        session.drop_connection(abort=True)
