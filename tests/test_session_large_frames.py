"""Large frames read straight into their payload buffer (`FrameReader.receive_buffer`).

With the compiled fast path, a session receiving a frame of 64 KiB or more reads the
rest of its payload with `recv_into` (asyncio's `BufferedProtocol`) into the bytes the
frame's `data` will be (without it, through `data_received` as before: the same
frames). Checked here with real sockets: echoes from the websockets library's server,
plain and over TLS, the embedded server, and scripted peers that trickle, break or cut a
large frame.
"""

from __future__ import annotations

import asyncio
import os
import ssl

import pytest
import websockets.asyncio.server

import rawws_nb as rw
from rawws_nb import Frame, PeerProtocolError, SessionClosed
from rawws_nb.wire import COMPILED, FrameReader, encode_frame

from .test_hostile_peers import ScriptedServer, response

SIZES = [65_536, 1_000_003, 5 * 2**20]


@pytest.fixture
def into_calls(monkeypatch):
    """How many times a reader took bytes read into a frame's buffer."""
    calls: list[int] = []
    original = FrameReader.received_into

    def counted(self, n, limit=None):
        calls.append(n)
        return original(self, n, limit)

    monkeypatch.setattr(FrameReader, "received_into", counted)
    return calls


async def _websockets_echo(tls: ssl.SSLContext | None = None):
    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    return await websockets.asyncio.server.serve(
        echo, "127.0.0.1", 0, compression=None, max_size=None, ssl=tls, ping_interval=None
    )


@pytest.mark.parametrize("use_tls", [False, True], ids=["ws", "wss"])
async def test_large_echoes_from_the_websockets_server_arrive_whole(use_tls, ca, client_tls, into_calls):
    tls = None
    if use_tls:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(tls)
    server = await _websockets_echo(tls)
    port = server.sockets[0].getsockname()[1]
    url = f"{'wss' if use_tls else 'ws'}://127.0.0.1:{port}/"
    try:
        session = await rw.web_socket_raw_session(url, tls=client_tls if use_tls else None, max_message_size=None)
        for size in SIZES:
            payload = os.urandom(size)
            await session.send(payload)
            text = ("ü" * (size // 2)).encode()
            await session.send(text.decode())
            got = [await session.incoming.receive() for _ in range(2)]
            assert got == [Frame.Binary(payload), Frame.Text(text)]
        await session.send("small after large")
        assert (await session.incoming.receive()).data == b"small after large"
        await session.close()
    finally:
        server.close()
        await server.wait_closed()
    assert (sum(into_calls) > 0) is COMPILED  # the payloads really were read into their buffers
    rows = session.timeline
    rx = rows[rows.dir == "rx"]
    assert rx.length.tolist()[:2] == [SIZES[0], SIZES[0] // 2 * 2] and rows.error.isna().all()


async def test_a_trickled_large_frame_with_small_frames_around_it_arrives_in_order(into_calls):
    payload = bytes(range(256)) * 1000
    frame = encode_frame(2, payload, mask=False)

    async def script(reader, writer, request):
        writer.write(response(request) + encode_frame(1, b"before", mask=False) + frame[:5000])
        await writer.drain()
        for start in range(5000, len(frame), 40_000):
            await asyncio.sleep(0.01)  # the rest comes in pieces, while the client waits
            writer.write(frame[start : start + 40_000])
            await writer.drain()
        writer.write(encode_frame(1, b"after", mask=False) + encode_frame(8, b"\x03\xe8", mask=False))
        await writer.drain()
        await asyncio.sleep(1)

    async with ScriptedServer(script) as srv:
        session = await rw.web_socket_raw_session(srv.url)
        got = [await session.incoming.receive() for _ in range(4)]
        await session.close()
    assert got[:3] == [Frame.Text("before"), Frame.Binary(payload), Frame.Text("after")]
    assert isinstance(got[3], Frame.Close) and (len(into_calls) >= 5) is COMPILED


async def test_invalid_utf8_inside_a_large_text_frame_fails_with_1007_before_it_is_complete(into_calls):
    head = encode_frame(1, b"a" * 200_000, mask=False)[:10]  # the header of a 200 kB text frame

    async def script(reader, writer, request):
        writer.write(response(request) + head + b"a" * 1000)
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"a" * 50_000 + b"\xff")  # read into the buffer: checked as it comes
        await writer.drain()
        await asyncio.sleep(2)

    async with ScriptedServer(script) as srv:
        session = await rw.web_socket_raw_session(srv.url)
        with pytest.raises(PeerProtocolError) as info:
            await asyncio.wait_for(session.incoming.receive(), 3)
        await session.wait_closed()
    assert info.value.code == 1007 and "before the frame was complete" in str(info.value)
    errors = session.timeline.dropna(subset=["error"])
    assert len(errors) == 1 and "invalid UTF-8" in errors.error.iloc[0]
    assert bool(into_calls) is COMPILED


async def test_a_connection_dropped_inside_a_large_frame_records_what_had_arrived(into_calls):
    frame = encode_frame(2, b"z" * 300_000, mask=False)

    async def script(reader, writer, request):
        writer.write(response(request) + frame[:2000])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(frame[2000:120_010])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.transport.abort()

    async with ScriptedServer(script) as srv:
        session = await rw.web_socket_raw_session(srv.url)
        with pytest.raises(SessionClosed):
            await asyncio.wait_for(session.incoming.receive(), 3)
    assert session.close_reason is not None and session.close_reason.code == 1006
    error = session.timeline.dropna(subset=["error"]).iloc[-1]
    assert "(120000 of 300000 payload bytes received)" in error.error
    assert bool(into_calls) is COMPILED


async def test_the_embedded_server_reads_a_clients_large_masked_frames_into_their_buffers(server, into_calls):
    from websockets.asyncio.client import connect

    payload, text = os.urandom(3 * 2**20 + 5), "ж" * 100_001
    async with connect(server.url + "/echo", compression=None, max_size=None) as ws:
        await ws.send(payload)
        assert await ws.recv() == payload
        await ws.send(text)
        assert await ws.recv() == text
    assert (sum(into_calls) > 0) is COMPILED  # read into the buffer, unmasked in place


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def test_a_header_claiming_a_huge_frame_commits_no_memory():
    head = encode_frame(2, b"", mask=False)[:1] + bytes([127]) + (200 * 2**20).to_bytes(8, "big")
    measured = asyncio.Event()

    async def script(reader, writer, request):
        writer.write(response(request) + head + b"x" * 70_000)
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.write(b"y" * 1000)  # read into the frame's buffer
        await writer.drain()
        await measured.wait()
        writer.transport.abort()

    async with ScriptedServer(script) as srv:
        before = _rss()
        session = await rw.web_socket_raw_session(srv.url, max_message_size=None)
        await asyncio.sleep(0.4)
        grown = _rss() - before  # while the frame is pending
        measured.set()
        with pytest.raises(SessionClosed):
            await asyncio.wait_for(session.incoming.receive(), 3)
    assert grown < 20 * 2**20  # far below the 200 MiB the header claims
    error = session.timeline.dropna(subset=["error"]).iloc[-1]
    assert "(71000 of 209715200 payload bytes received)" in error.error


async def test_a_large_compressed_frame_that_does_not_inflate_fails_with_1002_and_reading_goes_on():
    # The violation (1002) may wait for the consumer; meanwhile the peer goes on sending:
    # those bytes must be read as data again, not into a buffer that no longer exists.
    broken = encode_frame(2, b"\xff" * 100_000, rsv=4, mask=False)  # rsv1 and no deflate stream
    errors: list[dict] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context))

    async def script(reader, writer, request):
        before = encode_frame(1, b"before", mask=False)  # queued, so the failure waits for it
        writer.write(response(request, "Sec-WebSocket-Extensions: permessage-deflate") + before + broken[:3000])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(broken[3000:])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(encode_frame(1, b"after", mask=False) * 50)
        await writer.drain()
        await asyncio.sleep(1)

    async with ScriptedServer(script) as srv:
        session = await rw.web_socket_raw_session(srv.url, compression="deflate")
        await asyncio.sleep(0.3)
        assert (await session.incoming.receive()).data == b"before"
        with pytest.raises(PeerProtocolError) as info:
            await asyncio.wait_for(session.incoming.receive(), 3)
        await asyncio.wait_for(session.wait_closed(), 3)
    assert info.value.code == 1002 and not errors
