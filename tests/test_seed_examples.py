"""Every code example of the seed (Ktor's raw WebSocket page), translated, against the
embedded server. Each test names the seed section it covers."""

from __future__ import annotations

import asyncio
import time

import pytest

import rawws_nb as rw
from rawws_nb import CloseReason, Frame, SessionClosed


async def test_web_socket_raw_session_manual_ping(server):
    """Seed: webSocketRawSession() - manual ping-pong control, direct frame access."""
    raw_session = await rw.web_socket_raw_session(host="127.0.0.1", port=server.port, path="/echo")
    try:
        await raw_session.send(Frame.Ping(b"manual-ping"))
        frame = await raw_session.incoming.receive()
        assert repr(frame) == "PONG 'manual-ping' [11 bytes]"
    finally:
        await raw_session.close()
    assert raw_session.state is rw.SessionState.CLOSED


async def test_web_socket_raw_block_handles_all_frames_manually(server):
    """Seed: webSocketRaw() - raw session with block; every frame type handled by hand."""
    seen = []

    async def block(session):
        await session.send(Frame.Text("Raw WebSocket message"))
        await session.send(Frame.Ping(b"p"))
        await session.send(Frame.Close(CloseReason(CloseReason.Codes.NORMAL, "done")))
        async for frame in session.incoming:
            match frame:
                case Frame.Text():
                    seen.append(f"Text: {frame.read_text()}")
                case Frame.Binary():
                    seen.append(f"Binary: {len(frame.data)} bytes")
                case Frame.Ping():
                    await session.send(Frame.Pong(frame.data))
                case Frame.Pong():
                    seen.append("Pong received")
                case Frame.Close():
                    seen.append(f"Close: {frame.read_reason()}")
                    break
        return "finished"

    result = await rw.web_socket_raw(host="127.0.0.1", port=server.port, path="/echo", block=block)
    assert result == "finished"
    assert seen == ["Text: Raw WebSocket message", "Pong received", "Close: CloseReason(1000 (NORMAL), '')"]


async def test_ws_raw_short_alias_with_url(server):
    """Seed: wsRaw() - short alias, URL form, send(str)."""

    async def block(session):
        await session.send("Raw message via short alias")
        return await session.incoming.receive()

    response = await rw.ws_raw(f"{server.url}/echo", block=block)
    assert response == Frame.Text("Raw message via short alias")


async def test_wss_raw_secure_manual_ping(tls_server, client_tls):
    """Seed: wssRaw() - secure raw WebSocket with manual ping-pong (trustme certificates)."""
    got = []
    async with rw.wss_raw(host="localhost", port=tls_server.port, path="/echo", tls=client_tls) as session:
        await session.send("Secure raw WebSocket message")
        await session.send(Frame.Ping(b"secure-ping"))
        await session.send(Frame.Close(CloseReason(CloseReason.Codes.NORMAL, "")))
        async for frame in session.incoming:
            match frame:
                case Frame.Pong():
                    got.append("Secure pong received")
                case Frame.Text():
                    got.append(f"Secure text: {frame.read_text()}")
                case Frame.Close():
                    break
    assert got == ["Secure text: Secure raw WebSocket message", "Secure pong received"]


async def test_no_automatic_ping_pong_manual_heartbeat_and_pong_replies(server):
    """Seed: No Automatic Ping-Pong - a launched heartbeat, pings answered by hand."""
    async with rw.web_socket_raw(f"{server.url}/ping?n=2&interval=0.05&timeout=1") as session:
        sent = []

        async def heartbeat():
            while True:
                await session.send(Frame.Ping(b"manual-heartbeat"))
                sent.append(time.monotonic())
                await asyncio.sleep(0.05)

        job = session.launch(heartbeat())
        reports = []
        async for frame in session.incoming:
            if isinstance(frame, Frame.Ping):
                await session.send(Frame.Pong(frame.data))  # manual pong response required
            elif isinstance(frame, Frame.Text):
                reports.append(frame.read_text())
                if frame.read_text() == "ping done":
                    break
        assert len(sent) >= 2 and not job.done()
    assert job.cancelled()  # launched jobs end with the session
    assert [r.split(" after")[0] for r in reports[:2]] == ["pong server-ping-1 received", "pong server-ping-2 received"]


async def test_no_pong_means_the_server_reports_it(server):
    """The other half of 'No Automatic Ping-Pong': without our pong, /ping sees none."""
    async with rw.ws_raw(f"{server.url}/ping?n=1&timeout=0.2") as session:
        frames = [await session.incoming.receive() for _ in range(3)]
    assert isinstance(frames[0], Frame.Ping)
    assert frames[1].read_text() == "no pong for server-ping-1 within 0.2 s"


async def test_direct_frame_control(server):
    """Seed: Direct Frame Control - custom ping, fragments, binary, custom close."""
    async with rw.web_socket_raw(f"{server.url}/echo") as session:
        await session.send(Frame.Ping(b"custom-ping-data"))
        await session.send(Frame.Text(fin=False, data=b"Part 1 "))
        await session.send(Frame.Text(fin=False, data=b"Part 2 "))
        await session.send(Frame.Text(fin=True, data=b"Part 3"))
        await session.send(Frame.Binary(fin=True, data=bytes([1, 2, 3, 4, 5])))
        await session.send(Frame.Close(CloseReason(CloseReason.Codes.NORMAL, "Custom close")))
        received = [frame async for frame in session.incoming]
    assert [repr(f) for f in received] == [
        "PONG 'custom-ping-data' [16 bytes]",
        "TEXT 'Part 1 ' [7 bytes, fin=False]",
        "TEXT 'Part 2 ' [7 bytes, fin=False]",
        "TEXT 'Part 3' [6 bytes]",
        "BINARY 01 02 03 04 05 [5 bytes]",
        "CLOSE 1000 (NORMAL) '' [2 bytes]",
    ]
    tx = session.timeline.query("dir == 'tx'")
    assert list(tx.opcode) == ["ping", "text", "continuation", "continuation", "binary", "close"]
    assert tx.close_reason.iloc[-1] == "Custom close"


async def test_performance_1000_messages(server):
    """Seed: Performance Benefits - 1000 messages, each awaited (timed, not asserted)."""

    async def block(session):
        start = time.perf_counter()
        for i in range(1000):
            await session.send(Frame.Text(f"Message {i}"))
            response = await session.incoming.receive()
            assert response.read_text() == f"Message {i}"
        return (time.perf_counter() - start) * 1000

    elapsed = await rw.web_socket_raw(f"{server.url}/echo", block=block)
    print(f"1000 messages in {elapsed:.0f}ms")


@pytest.mark.parametrize(("path", "expect_timeout"), [("/echo", False), ("/sink", True)])
async def test_custom_heartbeat_with_pong_timeout(server, path, expect_timeout):
    """Seed: Custom Heartbeat Implementation - ping-N, wait for the matching pong with a
    timeout while handling other frames, close with GOING_AWAY on timeout."""
    processed = []
    timed_out = asyncio.Event()
    async with rw.web_socket_raw(f"{server.url}{path}") as session:

        async def heartbeat():
            ping_counter = 0
            while True:
                ping_counter += 1
                ping_data = f"ping-{ping_counter}".encode()
                await session.send(Frame.Ping(ping_data))
                try:
                    async with asyncio.timeout(0.3):
                        while True:
                            frame = await session.incoming.receive()
                            if isinstance(frame, Frame.Pong) and frame.data == ping_data:
                                break
                            processed.append(frame)  # handle other frames while waiting
                except TimeoutError:
                    timed_out.set()
                    await session.close(CloseReason(CloseReason.Codes.GOING_AWAY, "Ping timeout"))
                    return
                if ping_counter == 3:
                    await session.close()
                    return
                await asyncio.sleep(0.02)

        job = session.launch(heartbeat())
        await session.send(Frame.Text("app message"))
        await asyncio.wait_for(asyncio.shield(job), 5)
    assert timed_out.is_set() is expect_timeout
    tx_close = session.timeline.query("dir == 'tx' and opcode == 'close'")
    assert list(tx_close.close_code) == [1001 if expect_timeout else 1000]
    if not expect_timeout:
        assert Frame.Text("app message") in processed


async def test_protocol_implementation_version_and_custom_frame(server):
    """Seed: Protocol Implementation - version bytes 01 00, then [type:1][length:4][payload]."""
    async with rw.web_socket_raw(f"{server.url}/echo") as session:
        await session.send(Frame.Binary(True, bytes([0x01, 0x00])))
        version_frame = await session.incoming.receive()
        assert isinstance(version_frame, Frame.Binary) and version_frame.data[0] == 0x01

        async def send_custom_frame(type_: int, payload: bytes):
            frame = bytes([type_]) + len(payload).to_bytes(4, "big") + payload
            await session.send(Frame.Binary(True, frame))

        await send_custom_frame(0x10, b"Hello Custom Protocol")
        echoed = await session.incoming.receive()
    assert echoed.data == b"\x10\x00\x00\x00\x15Hello Custom Protocol"


async def test_low_level_debugging_logs_every_frame(server, capsys):
    """Seed: Low-Level Debugging - a launched logger prints every frame, pongs by hand."""
    async with rw.web_socket_raw(f"{server.url}/fragments") as session:

        async def log_frames():
            async for frame in session.incoming:
                if isinstance(frame, Frame.Text):
                    print(f"RX Text: {frame.data.decode('utf-8', 'replace')} fin={frame.fin}, len={len(frame.data)}")
                elif isinstance(frame, Frame.Binary):
                    print(f"RX Binary: fin={frame.fin}, len={len(frame.data)}")
                    print(f"RX Binary data: {frame.data.hex(' ')}")
                elif isinstance(frame, Frame.Ping):
                    print(f"RX Ping: {frame.data.hex(' ')}")
                    await session.send(Frame.Pong(frame.data))
                    print(f"TX Pong: {frame.data.hex(' ')}")
                elif isinstance(frame, Frame.Pong):
                    print(f"RX Pong: {frame.data.hex(' ')}")
                elif isinstance(frame, Frame.Close):
                    reason = frame.read_reason()
                    print(f"RX Close: code={reason.code}, message='{reason.message}'")
                    break

        logger = session.launch(log_frames())
        await session.send(Frame.Text("Hello"))
        await session.send(Frame.Binary(True, bytes([1, 2, 3, 4])))
        await session.send(Frame.Ping(b"ping-data"))
        await asyncio.sleep(0.2)
        await session.send(Frame.Close(CloseReason(CloseReason.Codes.NORMAL, "Debug complete")))
        await asyncio.wait_for(logger, 5)
    out = capsys.readouterr().out.splitlines()
    assert "RX Text: Part 1  fin=False, len=7" in out
    assert "RX Ping: 62 65 74 77 65 65 6e 2d 66 72 61 67 6d 65 6e 74 73" in out
    assert "TX Pong: 62 65 74 77 65 65 6e 2d 66 72 61 67 6d 65 6e 74 73" in out
    assert "RX Binary data: 01 02 03 04" in out
    assert "RX Pong: 70 69 6e 67 2d 64 61 74 61" in out
    assert out[-1] == "RX Close: code=1000, message=''"


@pytest.mark.parametrize(
    ("path", "outcome"),
    [
        ("/close?code=1001&reason=maintenance", "Server closed: 1001 - maintenance"),
        ("/bad/drop", "Raw WebSocket error: 1006"),
        ("/sink", "Raw WebSocket operation timed out"),
    ],
)
async def test_error_handling_in_raw_mode(server, path, outcome):
    """Seed: Error Handling in Raw Mode - total timeout, server close, errors -> close codes."""
    log = []
    async with rw.web_socket_raw(f"{server.url}{path}") as session:
        try:
            async with asyncio.timeout(0.5):
                async for frame in session.incoming:
                    if isinstance(frame, Frame.Ping):
                        await session.send(Frame.Pong(frame.data))
                    elif isinstance(frame, Frame.Close):
                        reason = frame.read_reason()
                        log.append(f"Server closed: {reason.code} - {reason.message}")
                        break
        except TimeoutError:
            log.append("Raw WebSocket operation timed out")
            await session.close(CloseReason(CloseReason.Codes.GOING_AWAY, "Client timeout"))
        except SessionClosed as exc:
            log.append(f"Raw WebSocket error: {exc.code}")
            await session.close(CloseReason(CloseReason.Codes.INTERNAL_ERROR, "Client error"))
    assert log == [outcome]
